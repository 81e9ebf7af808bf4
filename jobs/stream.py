"""Stream: one feed's landing folder (the clickstream by default) -> bronze, continuously.

A Spark Structured Streaming job: new files in the feed's folder (``stream.source``,
``stream.feed``) are read as they arrive, at most ``stream.max_files_per_trigger``
per micro-batch, one micro-batch every ``stream.trigger_seconds``; ``once=True``
(``shoplake stream --once``) processes what is there and stops (``availableNow``).
With ``stream.kafka.bootstrap_servers`` set, the messages of a Kafka topic take the
place of the files (:func:`kafka_messages`).

Records are split, typed and mapped by :mod:`common.records`, the code of the batch
``ingest`` job: the same schema, reasons and bronze rows. Valid records go to the
feed's bronze tables, the rest to ``bronze.quarantine``, each table by its own query
with its own checkpoint (``<lake>/_checkpoints/stream_<source>_<feed>/<table>``), so a
stopped or killed stream resumes where it was.

With ``stream.silver`` (the default) a feed that writes ``bronze.events`` also feeds
``silver.events`` (:func:`silver_events`): duplicates dropped as the batch ``clean``
drops them (by event id; id-less copies within ``clean.event_dedup_window_seconds``),
remembered for ``stream.watermark_seconds`` of event time; events later than that are
dropped from the stream's silver and counted (``late_rows``; bronze keeps them and the
next ``clean`` restores them). Users get the person's key from ``silver.user_key_map``
as the last ``clean`` published it, others the keyed hash of their id, as in clean; the
rows are formed by :mod:`common.events`, clean's own code. Each write is exactly once
(:meth:`common.delta.DeltaStore.start_stream`: Delta's streaming sink on delta-spark,
``foreachBatch`` with Delta transaction ids on delta-rs).

With ``stream.live.enabled`` (the default) the driver brings the live gold tables up to
date as silver micro-batches commit (:class:`LiveRefresh`, :func:`refresh_live_tables`,
:mod:`common.live`): the funnel per minute and channel, trending products and
cart-abandonment triggers.

Each micro-batch's progress (rows read, rates, duration, watermark, state rows) is
logged as it completes and appended to ``ops.stream_progress`` (at most every
``_FLUSH_SECONDS`` while running, and when the stream stops), so a scheduler or the
report can see how a long-running stream keeps up.

Not done by the stream (the batch ``ingest`` does them): the per-file
``ingest.max_quarantine_share`` stop, ``bronze.ingested_files`` and the read-back
reconciliation. Files already in ``bronze.ingested_files`` when the stream starts
are skipped, so a stream after ``ingest`` does not load them twice.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from common import privacy
from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.delta.jars import kafka_connector_coordinate
from common.errors import ConfigError, EnvironmentProblem, InputError
from common.events import content_event_id, event_content_hash, flag_unknown_items, to_silver_values
from common.live import abandoned_carts, live_funnel, live_trending, within_frequency_cap
from common.paths import is_local, local_path, write_atomically
from common.records import read_options, to_bronze_rows, to_quarantine_rows, tokenize, type_records
from common.runlog import JobResult, new_run_id
from common.sources import FeedSpec, SourceMapping, load_source
from common.tables import (
    BRONZE_DATA_TABLES,
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
    SILVER_PRODUCTS,
    SILVER_USER_KEY_MAP,
    TableSpec,
)
from common.touches import was_sent

log = logging.getLogger(__name__)

# Spark's binaryFile source; a file stream needs its schema up front.
BINARY_FILE_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType(), False),
        T.StructField("modificationTime", T.TimestampType(), False),
        T.StructField("length", T.LongType(), False),
        T.StructField("content", T.BinaryType()),
    ]
)
# Landing-folder scans per micro-batch of a query: silver.events' query reads the folder in
# two branches (events with ids, events without), and Spark counts the rows of both.
_SCANS = {"silver.events": 2}
# How often the driver wakes up while waiting for the queries (stop signals, failures).
_POLL_SECONDS = 1.0
# How often a running stream appends the progress of its finished batches to ops.stream_progress.
_FLUSH_SECONDS = 60.0


def check_stream(cfg: ShopLakeConfig) -> None:
    """``stream.source`` names a mapping with the feed ``stream.feed``, whose outputs a
    stream can compute; called by ``validate_all`` before Spark starts.

    Raises:
        ConfigError: naming the key.
    """
    stream_feed(cfg)


def stream_feed(cfg: ShopLakeConfig) -> tuple[SourceMapping, FeedSpec]:
    """The mapping and feed ``stream.source`` / ``stream.feed`` name."""
    folder = Path(cfg.conf_dir) / "sources"
    if not (folder / f"{cfg.stream.source}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"stream.source: no source mapping {folder / cfg.stream.source}.yaml (known: {known})")
    mapping = load_source(cfg.stream.source, cfg)
    feed = next((f for f in mapping.feeds if f.name == cfg.stream.feed), None)
    if feed is None:
        names = ", ".join(f.name for f in mapping.feeds)
        raise ConfigError(f"stream.feed: source {mapping.name} has no feed {cfg.stream.feed!r} (its feeds: {names})")
    windowed = [o.table for o in feed.outputs if o.distinct_on]
    if windowed:
        # distinct_on ranks the rows of a whole file (a window), which a stream cannot do.
        raise ConfigError(
            f"stream.feed: feed {feed.name} of source {mapping.name} writes {', '.join(windowed)} with "
            "distinct_on, which a stream cannot compute; load it with `shoplake run ingest`"
        )
    return mapping, feed


def checkpoint_folder(cfg: ShopLakeConfig) -> str:
    """Where this feed's queries keep their checkpoints (one subfolder per table)."""
    root = cfg.resolve_path(cfg.stream.checkpoints) if cfg.stream.checkpoints else f"{cfg.lake_root}/_checkpoints"
    return f"{root.rstrip('/')}/stream_{cfg.stream.source}_{cfg.stream.feed}"


def landing_files(spark: SparkSession, mapping: SourceMapping, feed: FeedSpec, cfg: ShopLakeConfig) -> DataFrame:
    """New files of the feed as a stream of (_path, _file_sha, content) rows."""
    folder = mapping.folder_path(cfg)
    if is_local(folder) and not os.path.isdir(local_path(folder)):
        raise InputError(f"source {mapping.name}: landing folder {folder} does not exist")
    return (
        spark.readStream.schema(BINARY_FILE_SCHEMA)
        .format("binaryFile")
        .option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
        .load(f"{folder.rstrip('/')}/{feed.pattern}")
        .select(
            F.regexp_replace("path", "^file:", "").alias("_path"),
            F.sha2("content", 256).alias("_file_sha"),
            "content",
        )
    )


def kafka_messages(spark: SparkSession, cfg: ShopLakeConfig) -> DataFrame:
    """New messages of ``stream.kafka.topic`` as a stream of (_path, _file_sha, content)
    rows, each message a file of its own: its value is parsed as a landing file's
    content; ``kafka://<topic>/<partition>/<offset>`` stands for the file and a hash of
    that for its content hash (bronze's key with the line number)."""
    kafka = cfg.stream.kafka
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", kafka.topic)
        .option("startingOffsets", kafka.starting_offsets)
        .options(**{f"kafka.{key}": value for key, value in kafka.options.items()})
    )
    if kafka.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", kafka.max_offsets_per_trigger)
    try:
        messages = reader.load()
    except AnalysisException as exc:
        if "kafka" not in str(exc).lower():
            raise
        raise EnvironmentProblem(
            f"stream.kafka: Spark has no Kafka source: run `shoplake jars` (fetches {kafka_connector_coordinate()}), "
            f"or pass --packages {kafka_connector_coordinate()} to spark-submit"
        ) from exc
    where = F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset")
    return messages.select(where.alias("_path"), F.sha2(where, 256).alias("_file_sha"), F.col("value").alias("content"))


def stream_rows(
    files: DataFrame, mapping: SourceMapping, feed: FeedSpec, cfg: ShopLakeConfig, run_id: str
) -> dict[str, DataFrame]:
    """Streaming rows per table: the feed's bronze tables and ``bronze.quarantine``."""
    typed = type_records(tokenize(files, read_options(feed)), feed, mapping.feed_time_zone(feed, cfg))
    # Each micro-batch's start, to the second as ingest's run time.
    at = F.date_trunc("second", F.current_timestamp())
    valid = typed.where(F.col("_reason").isNull())
    rows = {o.table: to_bronze_rows(valid, mapping, feed, o, run_id, at) for o in feed.outputs}
    bad = typed.where(F.col("_reason").isNotNull())
    rows[BRONZE_QUARANTINE.name] = to_quarantine_rows(bad, mapping, feed, run_id, at)
    return rows


def silver_events(
    bronze_events: DataFrame, key_map: DataFrame, products: DataFrame, cfg: ShopLakeConfig, secret: bytes
) -> DataFrame:
    """Streaming silver.events rows from the stream's bronze.events rows.

    The Python UDFs (pseudonyms, normalised text, IP prefixes) run before the stateful
    deduplication, on the rows as read: Spark 4.2 feeds a stateful operator's output rows
    to a Python UDF in a form it cannot read (ClassCastException to UnsafeRow).

    Args:
        key_map: ``silver.user_key_map`` (static): registered ids -> their person's key.
        products: ``silver.products`` (static): the catalogue items are checked against.
    """
    content = F.when(F.col("event_id").isNull(), event_content_hash())
    values = to_silver_values(
        with_user_keys(bronze_events.withColumn("_content", content), key_map, secret),
        cfg,
        "_content",
        "_source_file",
        "_source_line",
    )
    delay_ms = int(cfg.stream.watermark_seconds * 1000)
    events = values.withWatermark("event_time", f"{delay_ms} milliseconds")
    with_id = (
        events.where(F.col("event_id").isNotNull())
        .dropDuplicatesWithinWatermark(["source_system", "event_id"])
        .drop("_content", "_source_file", "_source_line")
    )
    without_id = first_of_near_copies(events.where(F.col("event_id").isNull()), cfg.clean.event_dedup_window_seconds)
    return flag_unknown_items(with_id.unionByName(without_id), products)


def first_of_near_copies(events: DataFrame, window_seconds: float) -> DataFrame:
    """Id-less events (with their ``_content`` hash), the first of each run of copies: a
    copy within ``window_seconds`` of the previous one is dropped, as clean's
    ``dedup_events`` does; the id is clean's too. The last time seen per content is kept
    in state until the watermark has passed it by the window."""
    columns = [c for c in events.columns if c not in ("_source_file", "_source_line")]
    out = T.StructType([f for f in events.schema.fields if f.name in columns])
    state = T.StructType([T.StructField("last_seconds", T.DoubleType())])
    return (
        events.groupBy("_content")
        .applyInPandasWithState(
            _keep_first_copies(window_seconds, columns),
            outputStructType=out,
            stateStructType=state,
            outputMode="append",
            timeoutConf=GroupStateTimeout.EventTimeTimeout,
        )
        .withColumn("event_id", content_event_id(F.col("_content"), F.col("event_time")))
        .drop("_content")
    )


def _keep_first_copies(window_seconds: float, columns: list[str]):
    def keep(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        frame = pd.concat(list(frames), ignore_index=True)
        frame = frame.sort_values(["event_time", "_source_file", "_source_line"], kind="stable")
        seconds = (frame["event_time"] - pd.Timestamp(0)).dt.total_seconds()
        previous = seconds.shift(1)
        if state.exists:
            previous.iloc[0] = state.get[0]
        keep_rows = previous.isna() | (seconds - previous > window_seconds)
        last = float(seconds.iloc[-1])
        state.update((last,))
        # Forget the content once the watermark has passed the window after its last copy.
        state.setTimeoutTimestamp(max(int((last + window_seconds) * 1000), state.getCurrentWatermarkMs() + 1))
        yield frame.loc[keep_rows, columns]

    return keep


def with_user_keys(events: DataFrame, key_map: DataFrame, secret: bytes) -> DataFrame:
    """``user_key`` for each event with a user id: its person's key when the id is a
    registered customer's (``silver.user_key_map`` holds the keyed hash of every
    ``source_system:customer_id``), else the keyed hash of the id itself, as clean does."""
    id_text = F.concat_ws(":", "source_system", "user_id")
    known = key_map.select(F.col("source_key").alias("_source_key"), F.col("user_key").alias("_known_key"))
    has_id = F.col("user_id").isNotNull()
    own_key = privacy.pseudonym_col(id_text, secret, "user")
    return (
        events.withColumn("_source_key", F.when(has_id, privacy.pseudonym_col(id_text, secret, "source")))
        .join(F.broadcast(known), "_source_key", "left")
        .withColumn("user_key", F.when(has_id, F.coalesce("_known_key", own_key)))
        .drop("_source_key", "_known_key")
    )


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
    once: bool = False,
) -> JobResult:
    """Stream the feed's new files into bronze until stopped (Ctrl-C, SIGTERM) or, with
    ``once``, until the files there at the start are processed."""
    run_id = run_id or new_run_id("stream")
    store = store or open_store(spark, cfg)
    mapping, feed = stream_feed(cfg)
    from_kafka = cfg.stream.kafka.bootstrap_servers is not None
    files = kafka_messages(spark, cfg) if from_kafka else landing_files(spark, mapping, feed, cfg)
    if not from_kafka and store.exists(BRONZE_INGESTED_FILES):
        # Files the batch ingest loaded before the stream started are not loaded again.
        done = store.read(BRONZE_INGESTED_FILES).select(F.col("file_sha256").alias("_file_sha"))
        files = files.join(F.broadcast(done), "_file_sha", "left_anti")
    rows = stream_rows(files, mapping, feed, cfg, run_id)
    specs = {name: BRONZE_QUARANTINE if name == BRONZE_QUARANTINE.name else BRONZE_DATA_TABLES[name] for name in rows}
    if cfg.stream.silver and BRONZE_EVENTS.name in rows:
        secret = cfg.pseudonym_secret()  # fails first, naming the variable, when unset
        key_map, products = store.read_or_empty(SILVER_USER_KEY_MAP), store.read_or_empty(SILVER_PRODUCTS)
        rows[SILVER_EVENTS.name] = silver_events(rows[BRONZE_EVENTS.name], key_map, products, cfg, secret)
        specs[SILVER_EVENTS.name] = SILVER_EVENTS
        # Silver's two branches (events with ids, without) each carry the watermark; Spark's
        # default takes the slower one's, so a few id-less events would hold every late
        # event back. One source, one event-time clock: the newest event counts.
        spark.conf.set("spark.sql.streaming.multipleWatermarkPolicy", "max")
        # A batch without new rows only evicts deduplication state (it writes no row): the
        # next batch with rows evicts it as well, so the query is not kept busy by them.
        spark.conf.set("spark.sql.streaming.noDataMicroBatches.enabled", "false")
    # Silver rows carry no run id: what a run added is the difference of the counts.
    before = {n: store.read(s).count() for n, s in specs.items() if _no_run_id(s) and store.exists(s)}
    trigger = {"availableNow": True} if once else {"processingTime": f"{cfg.stream.trigger_seconds} seconds"}
    # Nothing live reads bronze: with silver in the stream, bronze takes fewer, larger batches.
    bronze_seconds = cfg.stream.bronze_trigger_seconds if SILVER_EVENTS.name in rows and not once else None
    bronze_trigger = {"processingTime": f"{bronze_seconds} seconds"} if bronze_seconds else trigger
    queries: dict[str, StreamingQuery] = {}
    progress = ProgressLog(run_id)
    started = time.monotonic()
    checkpoints = checkpoint_folder(cfg)
    live = LiveRefresh(store, cfg, checkpoints) if cfg.stream.live.enabled and SILVER_EVENTS.name in rows else None
    after = {SILVER_EVENTS.name: live.note_batch} if live else {}
    try:
        for name, df in rows.items():
            query_name = f"stream_{mapping.name}_{feed.name}_{name.replace('.', '_')}"
            queries[name] = store.start_stream(
                specs[name],
                df,
                f"{checkpoints}/{name}",
                trigger if name == SILVER_EVENTS.name else bronze_trigger,
                query_name,
                after.get(name),
            )
        log.info("stream: %s/%s -> %s (%s; checkpoints %s)", mapping.name, feed.name, ", ".join(rows), trigger,
                 checkpoints)  # fmt: skip
        if live:
            live.refresh(every_table=True)  # what a stopped or killed run left pending
        with _stop_requests() as stop:
            _wait(queries, stop, progress, store, live)
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
        progress.record(queries)
        progress.flush(store)
    if live:
        live.refresh(every_table=True)  # the last batches' (not after a failure: the next run does it)
    return _result(store, specs, progress, run_id, checkpoints, time.monotonic() - started, before)


class LiveRefresh:
    """The live tables' refresh, off the silver query's thread: each silver micro-batch
    notes its event-time range (``note_batch``, its after-batch hook) and the driver's
    loop refreshes from the ranges noted since (``refresh``) while the next batch runs, so
    silver never waits for the live tables. gold.live_funnel is refreshed whenever a batch
    was noted; gold.live_trending and the cart-abandonment triggers (an hour's window, a
    30-minute rule: seconds do not matter to them) at most every
    ``stream.live.trending_refresh_seconds``, so they do not hold the funnel back.

    What is pending is also kept in ``<checkpoints>/live_pending.json``, written before
    the batch's checkpoint commit: a run stopped or killed before refreshing leaves it
    for the next run. Each refresh that completes appends the table, the silver batch ids
    it covered and when to ``live_refreshes.jsonl`` there (``bench/stream.py`` reads it)."""

    def __init__(self, store: DeltaStore, cfg: ShopLakeConfig, checkpoints: str) -> None:
        self.store, self.cfg = store, cfg
        self.lock = threading.Lock()
        # Per part ("funnel", "trending"): the event-time range and batch ids not refreshed yet.
        self.pending: dict[str, dict[str, Any] | None] = {"funnel": None, "trending": None}
        self.last_trending = float("-inf")
        self.noted = threading.Event()  # set by each noted batch: wakes the driver's loop
        # Checkpoints in an object store (a cluster): no local file to keep the pending range
        # in, so each batch refreshes before it commits, on the query's thread.
        self.in_batch = not is_local(checkpoints)
        if self.in_batch:
            return
        folder = Path(local_path(checkpoints))
        folder.mkdir(parents=True, exist_ok=True)
        self.pending_file = folder / "live_pending.json"
        self.refreshes_file = folder / "live_refreshes.jsonl"
        if self.pending_file.exists():
            self.pending.update(json.loads(self.pending_file.read_text(encoding="utf-8")))

    def note_batch(self, batch: DataFrame, batch_id: int) -> None:
        since, newest = batch.agg(F.min("event_time"), F.max("event_time")).first()
        if since is None:  # no rows (all duplicates or late): the live tables are up to date with it
            if not self.in_batch:
                for table in (GOLD_LIVE_FUNNEL, GOLD_LIVE_TRENDING):
                    self._log(table, [batch_id])
            return
        if self.in_batch:
            refresh_live_tables(self.store, self.cfg, since, newest)
            return
        with self.lock:
            for part, pending in self.pending.items():
                self.pending[part] = _widen(pending, _iso(since), _iso(newest), batch_id)
            self._save()
        self.noted.set()

    def refresh(self, every_table: bool = False) -> bool:
        """Refresh what is pending: the funnel, and trending and triggers when their interval
        has passed or ``every_table``. False when nothing was refreshed."""
        self.noted.clear()  # a batch noted from here on wakes the next wait
        done = False
        if funnel := self._take("funnel"):
            refresh_live_funnel(self.store, datetime.fromisoformat(funnel["since"]))
            self._finished(GOLD_LIVE_FUNNEL, funnel)
            done = True
        due = every_table or time.monotonic() - self.last_trending >= self.cfg.stream.live.trending_refresh_seconds
        if due and (trending := self._take("trending")):
            refresh_trending_and_triggers(self.store, self.cfg, datetime.fromisoformat(trending["newest"]))
            self.last_trending = time.monotonic()
            self._finished(GOLD_LIVE_TRENDING, trending)
            done = True
        return done

    def _take(self, part: str) -> dict[str, Any] | None:
        with self.lock:
            todo, self.pending[part] = self.pending[part], None
            return todo  # still on disk until refreshed: a kill meanwhile leaves it for the next run

    def _finished(self, table: TableSpec, todo: dict[str, Any]) -> None:
        with self.lock:
            self._save()  # ranges noted during the refresh stay pending (in memory and on disk)
        self._log(table, todo["batches"])

    def _log(self, table: TableSpec, batches: list[int]) -> None:
        with self.lock, self.refreshes_file.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"table": table.name, "batches": batches, "finished": time.time()}) + "\n")

    def _save(self) -> None:
        if any(self.pending.values()):
            write_atomically(self.pending_file, json.dumps(self.pending).encode())
        else:
            self.pending_file.unlink(missing_ok=True)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")  # fixed width: the strings order as the times


def _widen(pending: dict[str, Any] | None, since: str, newest: str, batch_id: int) -> dict[str, Any]:
    if pending is None:
        return {"since": since, "newest": newest, "batches": [batch_id]}
    return {
        "since": min(pending["since"], since),
        "newest": max(pending["newest"], newest),
        "batches": sorted({*pending["batches"], batch_id}),
    }


def refresh_live_tables(store: DeltaStore, cfg: ShopLakeConfig, since: datetime, newest: datetime) -> None:
    """Bring the live gold tables up to date with silver.events after rows from ``since``
    to ``newest`` (event time) were added. Each is recomputed from the tables, so a
    repeated refresh (a replayed batch) changes nothing."""
    refresh_live_funnel(store, since)
    refresh_trending_and_triggers(store, cfg, newest)


def refresh_live_funnel(store: DeltaStore, since: datetime) -> None:
    """gold.live_funnel's minutes from ``since``'s on, recomputed from silver.events."""
    first_minute = since.replace(second=0, microsecond=0)
    recent = store.read(SILVER_EVENTS).where(
        (F.col("event_date") >= F.lit(first_minute.date())) & (F.col("event_time") >= F.lit(first_minute))
    )
    store.replace_where(GOLD_LIVE_FUNNEL, live_funnel(recent), f"minute >= TIMESTAMP'{first_minute:%Y-%m-%d %H:%M:%S}'")


def refresh_trending_and_triggers(store: DeltaStore, cfg: ShopLakeConfig, newest: datetime) -> None:
    """gold.live_trending replaced (its window ends at the newest event in silver, on
    ``newest``'s day or later) and the triggers now due appended to
    gold.cart_abandonment_triggers."""
    live = cfg.stream.live
    events = store.read(SILVER_EVENTS)
    clock = events.where(F.col("event_date") >= F.lit(newest.date())).agg(F.max("event_time")).first()[0] or newest
    window_events = events.where(
        F.col("event_date") >= F.lit((clock - timedelta(minutes=live.trending_minutes)).date())
    )
    store.overwrite(
        GOLD_LIVE_TRENDING,
        live_trending(window_events, clock, live.trending_minutes, live.trending_top, cfg.recommend.event_weights),
    )
    new_triggers = due_triggers(store, cfg, events, clock)
    if new_triggers:
        store.merge(
            GOLD_CART_ABANDONMENT_TRIGGERS,
            store.spark.createDataFrame(new_triggers, GOLD_CART_ABANDONMENT_TRIGGERS.schema),
        )
    log.info("stream: live trending and triggers refreshed (clock %s): %d new triggers", clock, len(new_triggers))


def due_triggers(store: DeltaStore, cfg: ShopLakeConfig, events: DataFrame, clock: datetime) -> list[dict[str, Any]]:
    """Cart-abandonment triggers due by ``clock`` and not sent yet, for customers who
    consented (silver.customers), within campaign.frequency_cap: campaign touches sent
    (silver.campaign_touches) and earlier triggers count as messages."""
    live, cap = cfg.stream.live, cfg.campaign.frequency_cap
    first_add = clock - timedelta(minutes=live.abandon_minutes + live.trigger_max_age_minutes)
    carts = abandoned_carts(
        events.where(F.col("event_date") >= F.lit(first_add.date())), clock, live.abandon_minutes,
        live.trigger_max_age_minutes,
    )  # fmt: skip
    consenting = store.read_or_empty(SILVER_CUSTOMERS).where(F.col("marketing_consent")).select("user_key")
    carts = carts.join(consenting, "user_key", "left_semi")
    earlier = store.read_or_empty(GOLD_CART_ABANDONMENT_TRIGGERS)
    candidates = [r.asDict() for r in carts.join(earlier.select("trigger_id"), "trigger_id", "left_anti").collect()]
    if not candidates:
        return []
    period = timedelta(days=cap.period_days)
    users = sorted({r["user_key"] for r in candidates})
    since = min(r["due_at"] for r in candidates) - period
    touches = store.read_or_empty(SILVER_CAMPAIGN_TOUCHES).where(was_sent() & (F.col("sent_at") > F.lit(since)))
    earlier_sent = earlier.where(F.col("due_at") > F.lit(since)).select("user_key", F.col("due_at").alias("sent_at"))
    sent = touches.select("user_key", "sent_at").unionByName(earlier_sent).where(F.col("user_key").isin(users))
    return within_frequency_cap(candidates, [tuple(r) for r in sent.collect()], cap.max_touches, period)


def _no_run_id(spec: TableSpec) -> bool:
    return "_ingest_run_id" not in spec.columns


def batch_progress(progress: Mapping[str, Any], run_id: str, query: str) -> dict[str, Any] | None:
    """An ``ops.stream_progress`` row from one of Spark's query progress reports, or None
    for the reports of an idle trigger (no batch ran: no ``addBatch`` time)."""
    durations = progress.get("durationMs") or {}
    if "addBatch" not in durations:
        return None
    watermark = (progress.get("eventTime") or {}).get("watermark")
    return {
        "run_id": run_id,
        "query": query,
        "batch_id": int(progress["batchId"]),
        "started_at": _timestamp(progress["timestamp"]),
        "input_rows": int(progress.get("numInputRows") or 0),
        "input_rows_per_second": _rate(progress.get("inputRowsPerSecond")),
        "processed_rows_per_second": _rate(progress.get("processedRowsPerSecond")),
        "batch_duration_ms": int(progress.get("batchDuration") or durations.get("triggerExecution") or 0),
        "watermark": _timestamp(watermark) if watermark else None,
        "state_rows": sum(int(op.get("numRowsTotal") or 0) for op in progress.get("stateOperators") or []),
        "late_rows": sum(int(op.get("numRowsDroppedByWatermark") or 0) for op in progress.get("stateOperators") or []),
    }


def _timestamp(text: str) -> datetime:
    # Spark writes UTC instants as 2024-03-01T10:00:00.000Z; the lake keeps naive UTC.
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)


def _rate(value: Any) -> float | None:
    # Spark reports NaN when a rate has no time to divide by (the first, empty trigger).
    return float(value) if value is not None and value == value else None


class ProgressLog:
    """The finished batches of a run's queries: logged once each, appended to
    ``ops.stream_progress`` by :meth:`flush`."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.rows: list[dict[str, Any]] = []
        self._seen: set[tuple[str, int]] = set()
        self._written = 0

    def record(self, queries: Mapping[str, StreamingQuery]) -> None:
        for table, query in queries.items():
            for report in query.recentProgress:
                row = batch_progress(report, self.run_id, table)
                if row is None or (table, row["batch_id"]) in self._seen:
                    continue
                self._seen.add((table, row["batch_id"]))
                self.rows.append(row)
                log.info("stream: %s batch %d: %d input rows in %d ms (%s rows/s)", table, row["batch_id"],
                         row["input_rows"], row["batch_duration_ms"], row["processed_rows_per_second"])  # fmt: skip

    def flush(self, store: DeltaStore) -> None:
        """Append the batches not written yet (one commit)."""
        pending = self.rows[self._written :]
        if pending:
            store.append(OPS_STREAM_PROGRESS, store.spark.createDataFrame(pending, OPS_STREAM_PROGRESS.schema))
            self._written = len(self.rows)

    def for_query(self, table: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["query"] == table]


@contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM (a scheduler, ``kill``) while the
    stream runs. The handlers only set it: an exception raised inside a py4j call
    would break the connection to the JVM before the queries could be stopped."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only (e.g. a notebook's worker)
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(
    queries: dict[str, StreamingQuery],
    stop: threading.Event,
    progress: ProgressLog,
    store: DeltaStore,
    live: LiveRefresh | None,
) -> None:
    """Until every query has finished (``availableNow``), one fails, or a stop is requested;
    finished batches are logged as they come and written out every ``_FLUSH_SECONDS``, and
    the live tables are refreshed whenever silver batches have committed since the last time."""
    last_flush = time.monotonic()
    while (active := [q for q in queries.values() if q.isActive]) and not stop.is_set():
        _raise_failure(queries)
        if live is None:
            active[0].awaitTermination(_POLL_SECONDS)
        elif not live.refresh():
            live.noted.wait(_POLL_SECONDS)  # until the next silver batch is noted
        progress.record(queries)
        if time.monotonic() - last_flush >= _FLUSH_SECONDS:
            progress.flush(store)
            last_flush = time.monotonic()
    if stop.is_set():
        log.info("stream: stop requested; stopping the queries (the checkpoints keep their progress)")
    _raise_failure(queries)


def _raise_failure(queries: dict[str, StreamingQuery]) -> None:
    for name, query in queries.items():
        failure = query.exception()
        if failure is not None:
            log.error("stream into %s failed", name)
            raise failure


def _result(
    store: DeltaStore,
    specs: dict[str, TableSpec],
    progress: ProgressLog,
    run_id: str,
    checkpoints: str,
    seconds: float,
    before: Mapping[str, int],
) -> JobResult:
    result = JobResult("stream", run_id)
    lines = []
    for name, spec in specs.items():
        batches_run = progress.for_query(name)
        files = sum(r["input_rows"] for r in batches_run) // _SCANS.get(name, 1)
        batches = len([r for r in batches_run if r["input_rows"]])
        written = 0
        if store.exists(spec):
            result.outputs[name] = store.version(spec)
            if _no_run_id(spec):
                written = store.read(spec).count() - before.get(name, 0)
            else:
                written = store.read(spec).where(F.col("_ingest_run_id") == run_id).count()
        result.row_counts[name] = written
        late = sum(r["late_rows"] for r in batches_run)
        result.metrics[name] = {"files": files, "batches": batches, "late_rows": late}
        lines.append(f"  {name:<18} +{written:,} rows from {files:,} file(s) in {batches} batch(es)")
    if store.exists(OPS_STREAM_PROGRESS):
        result.outputs[OPS_STREAM_PROGRESS.name] = store.version(OPS_STREAM_PROGRESS)
    result.row_counts[OPS_STREAM_PROGRESS.name] = len(progress.rows)
    result.metrics["checkpoints"] = checkpoints
    result.metrics["seconds"] = round(seconds, 1)
    result.summary = "\n".join([f"stream: {seconds:.1f}s, checkpoints in {checkpoints}", *lines])
    return result
