"""The stream job: start the queries, wait, stop cleanly (see :mod:`jobs.stream`)."""

from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.runlog import JobResult, new_run_id
from common.tables import (
    BRONZE_DATA_TABLES,
    BRONZE_EVENTS,
    BRONZE_INGESTED_FILES,
    BRONZE_QUARANTINE,
    SILVER_EVENTS,
    SILVER_PRODUCTS,
    SILVER_USER_KEY_MAP,
)
from jobs.stream.live import LiveRefresh
from jobs.stream.progress import ProgressLog, no_run_id, stop_requests, stream_result, wait_for_queries
from jobs.stream.source import checkpoint_folder, kafka_messages, landing_files, silver_events, stream_feed, stream_rows

log = logging.getLogger(__name__)


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
    before = {n: store.row_count(s) for n, s in specs.items() if no_run_id(s) and store.exists(s)}
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
        with stop_requests() as stop:
            wait_for_queries(queries, stop, progress, store, live)
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
        progress.record(queries)
        progress.flush(store)
    if live:
        live.refresh(every_table=True)  # the last batches' (not after a failure: the next run does it)
    return stream_result(store, specs, progress, run_id, checkpoints, time.monotonic() - started, before)
