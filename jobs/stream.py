"""Stream: one feed's landing folder (the clickstream by default) -> bronze, continuously.

A Spark Structured Streaming job: new files in the feed's folder (``stream.source``,
``stream.feed``) are read as they arrive, at most ``stream.max_files_per_trigger``
per micro-batch, one micro-batch every ``stream.trigger_seconds``; ``once=True``
(``shoplake stream --once``) processes what is there and stops (``availableNow``).

Records are split, typed and mapped by :mod:`common.records`, the code of the batch
``ingest`` job: the same schema, reasons and bronze rows. Valid records go to the
feed's bronze tables, the rest to ``bronze.quarantine``, each table by its own query
with its own checkpoint (``<lake>/_checkpoints/stream_<source>_<feed>/<table>``), so a
stopped or killed stream resumes where it was. Each write is exactly once
(:meth:`common.delta.DeltaStore.start_stream`: Delta's streaming sink on delta-spark,
``foreachBatch`` with Delta transaction ids on delta-rs).

Not done by the stream (the batch ``ingest`` does them): the per-file
``ingest.max_quarantine_share`` stop, ``bronze.ingested_files`` and the read-back
reconciliation. Files already in ``bronze.ingested_files`` when the stream starts
are skipped, so a stream after ``ingest`` does not load them twice.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming import StreamingQuery

from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import ConfigError, InputError
from common.paths import is_local, local_path
from common.records import read_options, to_bronze_rows, to_quarantine_rows, tokenize, type_records
from common.runlog import JobResult, new_run_id
from common.sources import FeedSpec, SourceMapping, load_source
from common.tables import BRONZE_DATA_TABLES, BRONZE_INGESTED_FILES, BRONZE_QUARANTINE, TableSpec

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
# How often the driver wakes up while waiting for the queries (stop signals, failures).
_POLL_SECONDS = 1.0


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
    files = landing_files(spark, mapping, feed, cfg)
    if store.exists(BRONZE_INGESTED_FILES):
        # Files the batch ingest loaded before the stream started are not loaded again.
        done = store.read(BRONZE_INGESTED_FILES).select(F.col("file_sha256").alias("_file_sha"))
        files = files.join(F.broadcast(done), "_file_sha", "left_anti")
    rows = stream_rows(files, mapping, feed, cfg, run_id)
    specs = {name: BRONZE_QUARANTINE if name == BRONZE_QUARANTINE.name else BRONZE_DATA_TABLES[name] for name in rows}
    trigger = {"availableNow": True} if once else {"processingTime": f"{cfg.stream.trigger_seconds} seconds"}
    checkpoints = checkpoint_folder(cfg)
    queries: dict[str, StreamingQuery] = {}
    started = time.monotonic()
    try:
        for name, df in rows.items():
            query_name = f"stream_{mapping.name}_{feed.name}_{name.replace('.', '_')}"
            queries[name] = store.start_stream(specs[name], df, f"{checkpoints}/{name}", trigger, query_name)
        log.info("stream: %s/%s -> %s (%s; checkpoints %s)", mapping.name, feed.name, ", ".join(rows), trigger,
                 checkpoints)  # fmt: skip
        with _stop_requests() as stop:
            _wait(queries, stop)
    finally:
        for query in queries.values():
            if query.isActive:
                query.stop()
    return _result(store, specs, queries, run_id, checkpoints, time.monotonic() - started)


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


def _wait(queries: dict[str, StreamingQuery], stop: threading.Event) -> None:
    """Until every query has finished (``availableNow``), one fails, or a stop is requested."""
    while (active := [q for q in queries.values() if q.isActive]) and not stop.is_set():
        _raise_failure(queries)
        active[0].awaitTermination(_POLL_SECONDS)
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
    queries: dict[str, StreamingQuery],
    run_id: str,
    checkpoints: str,
    seconds: float,
) -> JobResult:
    result = JobResult("stream", run_id)
    lines = []
    for name, spec in specs.items():
        progress = queries[name].recentProgress if name in queries else []
        files = sum(int(p.get("numInputRows", 0)) for p in progress)
        batches = len([p for p in progress if p.get("numInputRows", 0)])
        written = 0
        if store.exists(spec):
            result.outputs[name] = store.version(spec)
            written = store.read(spec).where(F.col("_ingest_run_id") == run_id).count()
        result.row_counts[name] = written
        result.metrics[name] = {"files": files, "batches": batches}
        lines.append(f"  {name:<18} +{written:,} rows from {files:,} file(s) in {batches} batch(es)")
    result.metrics["checkpoints"] = checkpoints
    result.metrics["seconds"] = round(seconds, 1)
    result.summary = "\n".join([f"stream: {seconds:.1f}s, checkpoints in {checkpoints}", *lines])
    return result
