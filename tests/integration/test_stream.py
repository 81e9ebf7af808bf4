"""`shoplake stream` on a tiny generated clickstream (4 event files, 356 records with 8
planted bad ones): the same bronze and quarantine rows as the batch ingest, every record
exactly once across restarts and replayed batches, and idempotent per-batch writes; the
streamed silver.events equal the batch clean's, and late and duplicate events are
dropped as configured (hand-written files)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from common import privacy
from common.delta import open_store
from common.live import live_funnel, live_trending
from common.tables import (
    BRONZE_EVENTS,
    BRONZE_INGESTED_FILES,
    BRONZE_QUARANTINE,
    GOLD_CART_ABANDONMENT_TRIGGERS,
    GOLD_LIVE_FUNNEL,
    GOLD_LIVE_TRENDING,
    OPS_STREAM_PROGRESS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_USER_KEY_MAP,
)
from jobs.stream.live import refresh_live_tables
from jobs.stream.source import checkpoint_folder
from shoplake.generate import generate
from shoplake.generate.live import replay
from shoplake.registry import run_job
from shoplake.report import read_streaming
from tests.conftest import (
    DELTA_SPARK_SKIP,
    PROJECT_ROOT,
    SUBPROCESS_SPARK_CONF,
    TEST_SECRET,
    make_config,
    with_missing_columns,
)

# Differ between any two loads of the same files, batch or stream: which run, and when.
RUN_COLUMNS = ["_ingest_run_id", "_ingested_at"]
KEYS = ["_file_sha256", "_source_line"]

BACKENDS = [
    "delta-rs",
    pytest.param("delta-spark", marks=pytest.mark.skipif(DELTA_SPARK_SKIP is not None, reason=DELTA_SPARK_SKIP or "")),
]


@pytest.fixture(scope="module")
def clickstream(tmp_path_factory) -> tuple[Path, dict]:
    """A generated shop's landing folder, its event files only (batch ingest of the other
    feeds would only cost time), and its manifest."""
    root = tmp_path_factory.mktemp("clickstream")
    manifest = generate(root / "landing", users=60, days=4, seed=5, start_date=date(2024, 3, 1))
    for folder in (root / "landing" / "shop").iterdir():
        if folder.is_dir() and folder.name != "events":
            shutil.rmtree(folder)
    return root / "landing", manifest


def _config(tmp_path: Path, landing: Path, backend: str, lake: str = "lake"):
    return make_config(
        tmp_path,
        f"lake.backend={backend}",
        f"lake.root={tmp_path / lake}",
        f"landing.root={landing}",
        "stream.max_files_per_trigger=2",  # 4 files: two micro-batches per query
    )


def _events_quarantine(store):
    quarantine = store.read(BRONZE_QUARANTINE).where(F.col("target_table") == "bronze.events")
    return store.read(BRONZE_EVENTS), quarantine


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_writes_the_rows_batch_ingest_writes(spark, tmp_path, clickstream, backend, secret_env):
    landing, manifest = clickstream
    batch_cfg = _config(tmp_path, landing, backend, lake="batch_lake")
    stream_cfg = _config(tmp_path, landing, backend, lake="stream_lake")
    run_job(spark, batch_cfg, "ingest")
    result = run_job(spark, stream_cfg, "stream", once=True)

    batch_events, batch_bad = _events_quarantine(open_store(spark, batch_cfg))
    stream_events, stream_bad = _events_quarantine(open_store(spark, stream_cfg))
    assert stream_events.count() == manifest["valid_records_expected"]["bronze.events"]
    assert stream_bad.count() == sum(manifest["quarantine_expected"]["bronze.events"].values())
    assertDataFrameEqual(stream_events.drop(*RUN_COLUMNS), batch_events.drop(*RUN_COLUMNS))
    assertDataFrameEqual(stream_bad.drop(*RUN_COLUMNS), batch_bad.drop(*RUN_COLUMNS))
    # Run columns are filled in, with this run's id.
    assert {r[0] for r in stream_events.select("_ingest_run_id").distinct().collect()} == {result.run_id}
    assert stream_events.where(F.col("_ingested_at").isNull()).count() == 0
    # silver.events: the planted exact duplicates gone, as the generator's manifest expects.
    assert manifest["duplicates"]["exact_duplicate_events"] > 0
    silver = open_store(spark, stream_cfg).read(SILVER_EVENTS)
    assert silver.count() == silver.select("event_id").distinct().count() == manifest["silver_expected"]["events"]
    progress = open_store(spark, stream_cfg).read(OPS_STREAM_PROGRESS).where(F.col("run_id") == result.run_id)
    assert result.row_counts == {
        "bronze.events": manifest["valid_records_expected"]["bronze.events"],
        "bronze.quarantine": sum(manifest["quarantine_expected"]["bronze.events"].values()),
        "silver.events": manifest["silver_expected"]["events"],
        "ops.stream_progress": progress.count(),
    }
    assert (
        result.metrics["bronze.events"]
        == result.metrics["silver.events"]
        == {
            "files": 4,
            "batches": 2,
            "late_rows": 0,
        }
    )
    # Each query's micro-batches are in ops.stream_progress: two of two files each (silver's
    # query reads them twice, in two branches). Silver's may add a batch without data, which
    # moves the watermark on and evicts state.
    batches = sorted((r.query, r.batch_id, r.input_rows) for r in progress.where("input_rows > 0").collect())
    reads = {"bronze.events": 2, "bronze.quarantine": 2, "silver.events": 4}
    assert batches == [(t, b, n) for t, n in reads.items() for b in (0, 1)]
    assert progress.where("input_rows = 0 AND query != 'silver.events'").count() == 0
    assert progress.where("input_rows = 0").count() <= 1
    bronze = progress.where(F.col("query") != "silver.events")
    assert bronze.where("batch_duration_ms <= 0 OR watermark IS NOT NULL OR state_rows != 0").count() == 0
    # Silver's deduplication keeps state and moves an event-time watermark.
    last = progress.where("query = 'silver.events' AND batch_id = 1").first()
    assert last.state_rows > 0 and last.watermark is not None and last.late_rows == 0

    # A stream started on the lake ingest loaded skips the files in bronze.ingested_files:
    # the tables equal their versions before it (time travel: pinned, unlike a plain read).
    store = open_store(spark, batch_cfg)
    before = {spec: store.version(spec) for spec in (BRONZE_EVENTS, BRONZE_QUARANTINE, SILVER_EVENTS)}
    run_job(spark, batch_cfg, "stream", once=True)
    for spec, version in before.items():
        assertDataFrameEqual(store.read(spec), store.read(spec, version=version))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_event_exactly_once_across_restarts_and_replays(spark, tmp_path, clickstream, backend, secret_env):
    source, manifest = clickstream
    landing = tmp_path / "landing"
    events = sorted((source / "shop" / "events").glob("*.jsonl"))
    (landing / "shop" / "events").mkdir(parents=True)
    cfg = _config(tmp_path, landing, backend)
    store = open_store(spark, cfg)

    def deliver(files):
        for f in files:
            shutil.copy(f, landing / "shop" / "events" / f.name)

    def state():
        ev, bad = _events_quarantine(store)
        silver = store.read(SILVER_EVENTS)
        return {
            "versions": (store.version(BRONZE_EVENTS), store.version(BRONZE_QUARANTINE), store.version(SILVER_EVENTS)),
            "events": ev.count(),
            "event_keys": ev.select(*KEYS).distinct().count(),
            "bad": bad.count(),
            "bad_keys": bad.select(*KEYS).distinct().count(),
            "silver": silver.count(),
            "silver_keys": silver.select("event_id").distinct().count(),
        }

    deliver(events[:2])
    run_job(spark, cfg, "stream", once=True)
    first = state()
    assert first["events"] == first["event_keys"] > 0
    deliver(events[2:])
    run_job(spark, cfg, "stream", once=True)
    full = state()
    valid = manifest["valid_records_expected"]["bronze.events"]
    bad = sum(manifest["quarantine_expected"]["bronze.events"].values())
    assert (full["events"], full["event_keys"], full["bad"], full["bad_keys"]) == (valid, valid, bad, bad)
    assert full["silver"] == full["silver_keys"] == manifest["silver_expected"]["events"]
    assert valid + bad == manifest["records_expected"]["bronze.events"]
    assert full["events"] > first["events"]

    # Nothing new: nothing runs, no version is added.
    run_job(spark, cfg, "stream", once=True)
    assert state() == full

    # A crash after the table commit but before the checkpoint's commit: Spark runs the
    # last batch again, and the write skips it (Delta's sink, or append_once's txn check).
    for table in ("bronze.events", "bronze.quarantine", "silver.events"):
        commits = Path(checkpoint_folder(cfg)) / table / "commits"
        last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        last.unlink()
        (commits / f".{last.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of it
    run_job(spark, cfg, "stream", once=True)
    assert state() == full


def test_streamed_silver_events_equal_the_batch_clean(spark, silver_lake, tmp_path, secret_env):
    """On a whole shop's lake (registered customers, a catalogue), taken through ingest and
    clean: with its events removed from bronze and silver, the stream's silver.events equal
    what clean published, person keys and unknown-item flags included."""
    lake = silver_lake(users=150, days=30)
    # Triggers for every cart of the month, so the consent and cap checks below see many.
    cfg = lake.copy_to(tmp_path, "stream.max_files_per_trigger=100", "stream.live.trigger_max_age_minutes=50000")
    store = open_store(spark, cfg)
    for spec in (BRONZE_EVENTS, SILVER_EVENTS):
        shutil.rmtree(store.path(spec))
    store.delete_where(BRONZE_INGESTED_FILES, "feed = 'events'")
    result = run_job(spark, cfg, "stream", once=True)

    published = open_store(spark, lake.cfg).read(SILVER_EVENTS)
    streamed = store.read(SILVER_EVENTS)
    assert result.row_counts["silver.events"] == published.count() == lake.manifest["silver_expected"]["events"]
    # The comparison covers events of registered people (keys from silver.user_key_map:
    # merged registrations share one) and of anonymous visitors (no key), not one kind only.
    people = open_store(spark, lake.cfg).read(SILVER_USER_KEY_MAP).select("user_key").distinct()
    registered = published.join(people, "user_key").count()
    assert 0 < registered == published.where(F.col("user_key").isNotNull()).count() < published.count()
    assertDataFrameEqual(streamed, published)

    # The month's cart-abandonment triggers, checked with pandas: consenting customers only,
    # carts whose item the customer did not buy within 30 minutes, at most 2 messages
    # (campaign touches sent and triggers) in any 7 days.
    triggers = store.read(GOLD_CART_ABANDONMENT_TRIGGERS).toPandas()
    customers = store.read(SILVER_CUSTOMERS).select("user_key", "marketing_consent").toPandas()
    consent = dict(zip(customers.user_key, customers.marketing_consent))
    assert len(triggers) >= 20 and all(consent.get(u) is True for u in triggers.user_key)
    events = published.select("event_id", "user_key", "event_type", "item_id", "event_time").toPandas()
    clock = events.event_time.max()
    buys = events[events.event_type == "purchase"]
    adds = events[(events.event_type == "add_to_cart") & events.user_key.map(consent).eq(True)]
    wait = timedelta(minutes=30)
    abandoned = {
        a.event_id: a.event_time + wait
        for a in adds.itertuples()
        if a.event_time + wait <= clock
        and not buys[(buys.user_key == a.user_key) & (buys.item_id == a.item_id)]
        .event_time.between(a.event_time, a.event_time + wait)
        .any()
    }
    assert set(triggers.trigger_id) <= set(abandoned)
    touches = store.read(SILVER_CAMPAIGN_TOUCHES).where("variant <> 'control' AND user_key IS NOT NULL").toPandas()
    messages = pd.concat([touches[["user_key", "sent_at"]], triggers.rename(columns={"due_at": "sent_at"})])

    def sent_in_week_before(user, due) -> int:
        sent = messages[messages.user_key == user].sent_at
        return int(((sent > due - timedelta(days=7)) & (sent <= due)).sum())

    for t in triggers.itertuples():
        assert sent_in_week_before(t.user_key, t.due_at) <= 2, t
    # Every abandoned cart left out was left out by the cap; here the cap left out some.
    capped = adds.set_index("event_id").loc[sorted(set(abandoned) - set(triggers.trigger_id))]
    assert len(capped) >= 10
    for event_id, cart in capped.iterrows():
        assert sent_in_week_before(cart.user_key, abandoned[event_id]) >= 2, event_id


def _event(ts: datetime, event_id: str | None, user: str = "C1", product: str = "P1") -> dict:
    line = {"user_id": user, "session_id": "S1", "event_type": "view", "product_id": product, "page": "product_detail"}
    line["ts"] = int(ts.timestamp() * 1000)
    line["context"] = {"channel": "app", "device": "Pixel 8", "ip": "10.1.2.3"}
    return line if event_id is None else {"event_id": event_id, **line}


def _write_event_files(landing: Path, files: list[list[dict]]) -> None:
    """The shop's event files ``events_<n>.jsonl``, modified a second apart: read in this order."""
    folder = landing / "shop" / "events"
    folder.mkdir(parents=True)
    for n, lines in enumerate(files):
        path = folder / f"events_{n}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        os.utime(path, (1_700_000_000 + n, 1_700_000_000 + n))


def test_late_and_duplicate_events_are_dropped_as_configured(spark, tmp_path, secret_env):
    """Three files, one micro-batch each (watermark 60 s): duplicates by id within and
    across batches, id-less copies within the 10 s dedup window of the previous copy
    (across batches too), and an event an hour behind the newest one seen."""
    t0 = datetime(2024, 3, 1, 10, 0)
    at = lambda seconds: t0 + timedelta(seconds=seconds)  # noqa: E731
    files = [
        # A, B; A again; id-less X at +100, its copy 5 s later (dropped), X again at +200 (kept)
        [_event(at(150), "A"), _event(at(60), "B"), _event(at(150), "A"), _event(at(100), None),
         _event(at(105), None), _event(at(200), None)],
        # A a third time (its state is kept: +150 is inside the watermark); X 5 s after +200: a
        # copy across batches; C an hour later moves the watermark to +3540
        [_event(at(150), "A"), _event(at(205), None), _event(at(3600), "C")],
        # D at +30 is late (behind the watermark); E is not
        [_event(at(30), "D"), _event(at(3601), "E")],
    ]  # fmt: skip
    _write_event_files(tmp_path / "landing", files)
    cfg = make_config(tmp_path, "stream.max_files_per_trigger=1", "stream.watermark_seconds=60")
    result = run_job(spark, cfg, "stream", once=True)

    store = open_store(spark, cfg)
    assert store.read(BRONZE_EVENTS).count() == 11  # bronze keeps every record
    silver = store.read(SILVER_EVENTS)
    ids = sorted(r.event_id for r in silver.where(F.col("event_id").isin("A", "B", "C", "D", "E")).collect())
    assert ids == ["A", "B", "C", "E"]
    copies = sorted(r.event_time for r in silver.where(F.col("event_id").startswith("h-")).collect())
    assert copies == [at(100), at(200)]
    assert result.metrics["silver.events"]["late_rows"] == 1
    late = store.read(OPS_STREAM_PROGRESS).where(F.col("query") == "silver.events").agg(F.sum("late_rows")).first()[0]
    assert late == 1
    # The report's Streaming section shows it.
    summary = {q["query"]: q for q in read_streaming(store)["queries"]}
    assert (summary["silver.events"]["late_rows"], summary["bronze.events"]["late_rows"]) == (1, 0)

    # The batch clean of the same files (another lake; with the catalogue clean's gate wants)
    # keeps the late event and drops the same copies.
    products = tmp_path / "landing" / "shop" / "products"
    products.mkdir()
    (products / "products.csv").write_text(
        "product_id,product_name,category_l1,category_l2,category_l3,brand,price,updated_at\n"
        "P1,Shirt,Apparel,Tops,Shirts,Acme,19.90,2024-02-01 00:00:00\n"
    )
    batch = make_config(tmp_path / "batch", f"landing.root={tmp_path / 'landing'}")
    run_job(spark, batch, "ingest")
    run_job(spark, batch, "clean")
    cleaned = open_store(spark, batch).read(SILVER_EVENTS)
    assert sorted(r.event_id for r in cleaned.where(~F.col("event_id").startswith("h-")).collect()) == [*"ABCDE"]
    assert sorted(r.event_time for r in cleaned.where(F.col("event_id").startswith("h-")).collect()) == copies


def _cart_event(minutes: float, user: str, event_type: str, product: str) -> dict:
    line = _event(datetime(2024, 3, 1, 10, 0) + timedelta(minutes=minutes), f"{user}-{event_type}-{product}-{minutes}")
    return {**line, "user_id": user, "session_id": f"S-{user}", "event_type": event_type, "product_id": product}


@pytest.mark.parametrize("backend", BACKENDS)
def test_live_tables_follow_silver_and_triggers_respect_consent_and_the_cap(spark, tmp_path, backend, secret_env):
    """Hand-written carts in two files (abandoned after 30 minutes, at most 2 messages a
    week): C1 abandons three carts and buys a fourth item (two triggers, the third capped),
    C2 has not consented, C3 had a campaign touch two days before (one trigger of two),
    an anonymous visitor gets none, and C4's cart falls due only when the second file moves
    the clock. The funnel and trending tables equal their definitions on the final silver."""
    cart = _cart_event
    files = [
        [cart(0, "C1", "add_to_cart", "P1"), cart(5, "C1", "add_to_cart", "P2"), cart(10, "C1", "add_to_cart", "P3"),
         cart(15, "C1", "add_to_cart", "P4"), cart(20, "C1", "purchase", "P2"), cart(0, "C2", "add_to_cart", "P1"),
         cart(0, "C3", "add_to_cart", "P1"), cart(1, "C3", "add_to_cart", "P2"), cart(0, "V9", "add_to_cart", "P1"),
         cart(70, "C4", "add_to_cart", "P5"), cart(90, "C1", "view", "P1")],
        [cart(105, "C4", "view", "P1")],
    ]  # fmt: skip
    _write_event_files(tmp_path / "landing", files)
    cfg = make_config(tmp_path, f"lake.backend={backend}", "stream.max_files_per_trigger=1")
    store = open_store(spark, cfg)
    secret = TEST_SECRET.encode()
    key = {c: privacy.pseudonym(secret, f"shop:{c}", "user") for c in ("C1", "C2", "C3", "C4", "V9")}
    customers = spark.createDataFrame(
        [(key[c], 1, c != "C2") for c in ("C1", "C2", "C3", "C4")],
        "user_key string, source_records int, marketing_consent boolean",
    )
    store.overwrite(SILVER_CUSTOMERS, with_missing_columns(customers, SILVER_CUSTOMERS))
    touch = spark.createDataFrame(
        [("shop", "T1", "K1", key["C3"], "email", "A", datetime(2024, 2, 28, 9)),
         ("shop", "T2", "K1", key["C1"], "email", "control", datetime(2024, 2, 28, 9))],  # hold-out: not sent
        "source_system string, touch_id string, campaign_id string, user_key string, channel string, "
        "variant string, sent_at timestamp",
    )  # fmt: skip
    store.overwrite(SILVER_CAMPAIGN_TOUCHES, with_missing_columns(touch, SILVER_CAMPAIGN_TOUCHES))

    result = run_job(spark, cfg, "stream", once=True)
    assert result.metrics["silver.events"]["batches"] == 2
    triggers = store.read(GOLD_CART_ABANDONMENT_TRIGGERS)
    got = sorted((r.user_key, r.item_id, r.due_at.strftime("%H:%M")) for r in triggers.collect())
    assert got == sorted(
        [(key["C1"], "P1", "10:30"), (key["C1"], "P3", "10:40"), (key["C3"], "P1", "10:30"), (key["C4"], "P5", "11:40")]
    )
    silver = store.read(SILVER_EVENTS)
    assertDataFrameEqual(store.read(GOLD_LIVE_FUNNEL), live_funnel(silver))
    clock = datetime(2024, 3, 1, 11, 45)
    assertDataFrameEqual(
        store.read(GOLD_LIVE_TRENDING), live_trending(silver, clock, 60, 20, cfg.recommend.event_weights)
    )
    assert [r.item_id for r in store.read(GOLD_LIVE_TRENDING).orderBy("rank").collect()] == ["P5", "P1"]

    # Run again (nothing new) and refresh by hand as a replayed batch would: nothing changes.
    before = {spec.name: store.version(spec) for spec in (GOLD_CART_ABANDONMENT_TRIGGERS, GOLD_LIVE_FUNNEL)}
    run_job(spark, cfg, "stream", once=True)
    assert {spec.name: store.version(spec) for spec in (GOLD_CART_ABANDONMENT_TRIGGERS, GOLD_LIVE_FUNNEL)} == before
    refresh_live_tables(store, cfg, datetime(2024, 3, 1, 10, 0), datetime(2024, 3, 1, 11, 30))
    assert store.read(GOLD_CART_ABANDONMENT_TRIGGERS).count() == 4
    assertDataFrameEqual(store.read(GOLD_LIVE_FUNNEL), live_funnel(silver))


def test_a_live_delivery_reconciles_with_its_manifest(spark, tmp_path, secret_env):
    """`generate --stream`'s files (5% of the unique events held back an hour), streamed a
    file per micro-batch with a 10-minute watermark: bronze holds every record, the held-back
    events are dropped from silver as late, silver holds the shop's other events, and the
    live funnel built batch by batch is the funnel of that silver table."""
    shop = {"users": 60, "days": 4, "seed": 5, "start_date": date(2024, 3, 1)}
    pace = {"rate": 40, "chunk_seconds": 1, "late_share": 0.05, "late_by_seconds": 3600}
    manifest = replay(tmp_path / "landing", sleep=lambda _: None, **pace, **shop)
    for n, f in enumerate(manifest["files"]):  # delivered a second apart
        os.utime(tmp_path / "landing" / "shop" / "events" / f["name"], (1_700_000_000 + n, 1_700_000_000 + n))
    cfg = make_config(tmp_path, "stream.max_files_per_trigger=1")
    result = run_job(spark, cfg, "stream", once=True)

    store = open_store(spark, cfg)
    expected = manifest["shop"]
    late = set(manifest["late_event_ids"])
    assert len(late) >= 5 and len(manifest["files"]) >= 9
    assert store.read(BRONZE_EVENTS).count() == expected["valid_records_expected"]["bronze.events"]
    silver = store.read(SILVER_EVENTS)
    assert silver.where(F.col("event_id").isin(*late)).count() == 0
    assert silver.count() == silver.select("event_id").distinct().count()
    assert silver.count() == expected["silver_expected"]["events"] - len(late)
    # Late rows also count exact copies delivered long after their original (dropped either way).
    assert result.metrics["silver.events"]["late_rows"] >= len(late)
    # Each micro-batch rewrote the funnel's minutes from its first event on: together, the
    # funnel of the whole silver table.
    assert result.metrics["silver.events"]["batches"] >= 9
    assertDataFrameEqual(store.read(GOLD_LIVE_FUNNEL), live_funnel(silver))


@pytest.mark.parametrize("backend", ["delta-rs"])
def test_a_killed_stream_resumes_with_every_record_once(spark, tmp_path, clickstream, backend, secret_env):
    """`shoplake stream` in a process of its own, killed with SIGKILL (its whole process
    group: the Python driver and its JVM) as soon as silver's first micro-batch is
    committed, then started again: every record once in bronze, quarantine and silver.
    On delta-rs, whose foreachBatch writer replays the killed batch (it failed before a
    skipped batch computed its rows: Spark's state store commit check). delta-spark's
    streaming sink passed it too (2026-12-06, by hand: about 3 minutes per backend here)."""
    landing, manifest = clickstream
    cfg = _config(tmp_path, landing, backend)
    sets = [*SUBPROCESS_SPARK_CONF, f"lake.backend={backend}", f"lake.root={tmp_path / 'lake'}"]
    sets += [f"landing.root={landing}", "stream.max_files_per_trigger=1", "stream.trigger_seconds=1"]
    command = [sys.executable, "-m", "shoplake.cli", "stream", *(a for s in sets for a in ("--set", s))]
    store = open_store(spark, cfg)
    first_commit = Path(store.path(SILVER_EVENTS)) / "_delta_log" / f"{0:020d}.json"
    with open(tmp_path / "stream.log", "wb") as log:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 300
        while not first_commit.exists():
            assert proc.poll() is None, (tmp_path / "stream.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no silver commit within 300 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    silver_expected = manifest["silver_expected"]["events"]
    assert store.read(SILVER_EVENTS).count() < silver_expected  # killed part-way (4 files, 1 a batch)

    run_job(spark, cfg, "stream", once=True)
    events, bad = _events_quarantine(store)
    valid = manifest["valid_records_expected"]["bronze.events"]
    quarantined = sum(manifest["quarantine_expected"]["bronze.events"].values())
    assert events.count() == events.select(*KEYS).distinct().count() == valid
    assert bad.count() == bad.select(*KEYS).distinct().count() == quarantined
    silver = store.read(SILVER_EVENTS)
    assert silver.count() == silver.select("event_id").distinct().count() == silver_expected
    # The live funnel missed nothing the killed run had noted but not refreshed.
    assertDataFrameEqual(store.read(GOLD_LIVE_FUNNEL), live_funnel(silver))


@pytest.mark.parametrize("backend", BACKENDS)
def test_append_once_skips_a_batch_it_has_committed(spark, tmp_path, backend):
    cfg = make_config(tmp_path, f"lake.backend={backend}")
    store = open_store(spark, cfg)
    rows = spark.createDataFrame(
        [("app", "E1", "u1", "s1", "view", "2024-03-01 10:00:00", "shop", "f.jsonl", 1, "sha", "run", "2024-03-01")],
        "source_system string, event_id string, user_id string, session_id string, event_type string, "
        "event_time string, _source string, _source_file string, _source_line long, _file_sha256 string, "
        "_ingest_run_id string, _ingested_at string",
    )
    rows = rows.withColumn("event_time", F.to_timestamp("event_time"))
    rows = rows.withColumn("_ingested_at", F.to_timestamp("_ingested_at"))
    for name in BRONZE_EVENTS.columns:
        if name not in rows.columns:
            rows = rows.withColumn(name, F.lit(None).cast(BRONZE_EVENTS.schema[name].dataType))

    v0 = store.append_once(BRONZE_EVENTS, rows, "query-a", 0)
    assert store.append_once(BRONZE_EVENTS, rows, "query-a", 0) == v0  # replayed: skipped
    v1 = store.append_once(BRONZE_EVENTS, rows, "query-a", 1)
    assert v1 == v0 + 1
    assert store.append_once(BRONZE_EVENTS, rows, "query-a", 0) == v1  # an older batch: skipped too
    v2 = store.append_once(BRONZE_EVENTS, rows, "query-b", 0)  # another query (new checkpoint)
    assert v2 == v1 + 1
    assert store.read(BRONZE_EVENTS).count() == 3
