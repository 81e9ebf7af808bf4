"""`shoplake stream` on a tiny generated clickstream (4 event files, 356 records with 8
planted bad ones): the same bronze and quarantine rows as the batch ingest, every record
exactly once across restarts and replayed batches, and idempotent per-batch writes."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from common.delta import open_store
from common.tables import BRONZE_EVENTS, BRONZE_QUARANTINE, OPS_STREAM_PROGRESS
from jobs.generate import generate
from jobs.registry import run_job
from jobs.stream import checkpoint_folder
from tests.conftest import DELTA_SPARK_SKIP, make_config

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
def test_stream_writes_the_rows_batch_ingest_writes(spark, tmp_path, clickstream, backend):
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
    assert result.row_counts == {
        "bronze.events": manifest["valid_records_expected"]["bronze.events"],
        "bronze.quarantine": sum(manifest["quarantine_expected"]["bronze.events"].values()),
        "ops.stream_progress": 4,
    }
    assert result.metrics["bronze.events"] == {"files": 4, "batches": 2}
    # Each query's micro-batches are in ops.stream_progress: two of two files each.
    progress = open_store(spark, stream_cfg).read(OPS_STREAM_PROGRESS).where(F.col("run_id") == result.run_id)
    batches = sorted((r.query, r.batch_id, r.input_rows) for r in progress.collect())
    assert batches == [(t, b, 2) for t in ("bronze.events", "bronze.quarantine") for b in (0, 1)]
    assert progress.where("batch_duration_ms <= 0 OR watermark IS NOT NULL OR state_rows != 0").count() == 0

    # A stream started on the lake ingest loaded skips the files in bronze.ingested_files:
    # the tables equal their versions before it (time travel: pinned, unlike a plain read).
    store = open_store(spark, batch_cfg)
    before = {spec: store.version(spec) for spec in (BRONZE_EVENTS, BRONZE_QUARANTINE)}
    run_job(spark, batch_cfg, "stream", once=True)
    for spec, version in before.items():
        assertDataFrameEqual(store.read(spec), store.read(spec, version=version))


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_event_exactly_once_across_restarts_and_replays(spark, tmp_path, clickstream, backend):
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
        return {
            "versions": (store.version(BRONZE_EVENTS), store.version(BRONZE_QUARANTINE)),
            "events": ev.count(),
            "event_keys": ev.select(*KEYS).distinct().count(),
            "bad": bad.count(),
            "bad_keys": bad.select(*KEYS).distinct().count(),
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
    assert valid + bad == manifest["records_expected"]["bronze.events"]
    assert full["events"] > first["events"]

    # Nothing new: nothing runs, no version is added.
    run_job(spark, cfg, "stream", once=True)
    assert state() == full

    # A crash after the table commit but before the checkpoint's commit: Spark runs the
    # last batch again, and the write skips it (Delta's sink, or append_once's txn check).
    for table in ("bronze.events", "bronze.quarantine"):
        commits = Path(checkpoint_folder(cfg)) / table / "commits"
        last = max((p for p in commits.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        last.unlink()
        (commits / f".{last.name}.crc").unlink(missing_ok=True)  # Hadoop's checksum of it
    run_job(spark, cfg, "stream", once=True)
    assert state() == full


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
