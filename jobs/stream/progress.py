"""Query progress into ops.stream_progress, waiting for the queries and stopping on a signal,
and the job's result."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.delta import DeltaStore
from common.runlog import JobResult
from common.tables import (
    OPS_STREAM_PROGRESS,
    TableSpec,
)
from jobs.stream.live import LiveRefresh

log = logging.getLogger(__name__)

# Landing-folder scans per micro-batch of a query: silver.events' query reads the folder in
# two branches (events with ids, events without), and Spark counts the rows of both.
_SCANS = {"silver.events": 2}
# How often the driver wakes up while waiting for the queries (stop signals, failures).
_POLL_SECONDS = 1.0
# How often a running stream appends the progress of its finished batches to ops.stream_progress.
_FLUSH_SECONDS = 60.0


def no_run_id(spec: TableSpec) -> bool:
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
def stop_requests() -> Iterator[threading.Event]:
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


def wait_for_queries(
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


def stream_result(
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
            if no_run_id(spec):
                written = store.row_count(spec) - before.get(name, 0)
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
