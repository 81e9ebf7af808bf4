"""The run log (``ops.run_log``): one row per job run with its parameters, the
table versions it read and wrote, row counts, metrics, duration and status.

Written by :func:`record_run`; read back only through :func:`run_steps`,
:func:`latest_run` and :func:`recent_run_ids`, which parse the JSON columns once."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from common.tables import OPS_RUN_LOG

log = logging.getLogger(__name__)


def new_run_id(job: str, now: datetime | None = None) -> str:
    """``<job>-<UTC time>-<random>``: sortable by start time and unique across machines."""
    now = now or datetime.now(timezone.utc)
    return f"{job}-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class JobResult:
    """What a job reports back: versions read and written, counts, metrics and a
    human summary the CLI prints."""

    job: str
    run_id: str
    inputs: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, int] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


def record_run(
    spark: SparkSession,
    store,
    *,
    run_id: str,
    job: str,
    env: str,
    parameters: dict[str, Any],
    started_at: datetime,
    finished_at: datetime,
    status: str,
    result: JobResult | None = None,
    error: str | None = None,
) -> int:
    """Append one row to ``ops.run_log``; returns the run log's new version."""
    row = {
        "run_id": run_id,
        "job": job,
        "env": env,
        "status": status,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": round((finished_at - started_at).total_seconds(), 3),
        "parameters": json.dumps(parameters, sort_keys=True, default=str),
        "input_versions": dict(result.inputs) if result else {},
        "output_versions": dict(result.outputs) if result else {},
        "row_counts": dict(result.row_counts) if result else {},
        "metrics": json.dumps(result.metrics, sort_keys=True, default=str) if result else None,
        "error": error,
    }
    df = spark.createDataFrame([row], OPS_RUN_LOG.schema)
    version = store.append(OPS_RUN_LOG, df)
    log.info("run log: %s %s %s (v%s)", job, run_id, status, version)
    return version


# ---------------------------------------------------------------------------- reading
@dataclass
class RunStep:
    """One row of ``ops.run_log`` with its JSON columns parsed."""

    job: str
    status: str
    started_at: datetime
    finished_at: datetime
    duration_s: float
    run_id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    input_versions: dict[str, int] = field(default_factory=dict)
    output_versions: dict[str, int] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def parse_json(text: str | None) -> Any:
    """A JSON column of the run log: ``{}`` when empty, ``{"unparsed": text}`` when not JSON."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return {"unparsed": text}


def to_step(row: Row) -> RunStep:
    """A run log row as a :class:`RunStep`."""
    return RunStep(
        job=row["job"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        duration_s=row["duration_s"],
        run_id=row["run_id"],
        parameters=parse_json(row["parameters"]),
        input_versions=dict(row["input_versions"] or {}),
        output_versions=dict(row["output_versions"] or {}),
        row_counts=dict(row["row_counts"] or {}),
        metrics=parse_json(row["metrics"]),
        error=row["error"],
    )


def has_run_log(store) -> bool:
    return store.exists(OPS_RUN_LOG)


def _runs(store) -> DataFrame:
    return store.read(OPS_RUN_LOG)


def run_steps(store, run_id: str, order_by: str = "started_at") -> list[RunStep]:
    """The steps of run ``run_id`` ordered by ``order_by`` (``[]`` for an unknown id).

    One run's few rows: small enough to bring to the driver.
    """
    return [to_step(r) for r in _runs(store).where(F.col("run_id") == run_id).orderBy(order_by).collect()]


def latest_run(
    store,
    *,
    jobs: list[str] | None = None,
    exclude_jobs: list[str] | None = None,
    status: str | None = None,
    started_by: datetime | None = None,
    order_by: str = "finished_at",
) -> RunStep | None:
    """The latest step (by ``order_by``) of one of ``jobs`` (any job when None), none of
    ``exclude_jobs``, with ``status`` and started at or before ``started_by`` when given."""
    runs = _runs(store)
    if jobs is not None:
        runs = runs.where(F.col("job").isin(list(jobs)))
    if exclude_jobs:
        runs = runs.where(~F.col("job").isin(list(exclude_jobs)))
    if status is not None:
        runs = runs.where(F.col("status") == status)
    if started_by is not None:
        runs = runs.where(F.col("started_at") <= started_by)
    row = runs.orderBy(F.desc(order_by)).first()
    return None if row is None else to_step(row)


def recent_run_ids(store, n: int = 5) -> list[str]:
    """The ``n`` run ids that finished last, latest first."""
    latest = _runs(store).groupBy("run_id").agg(F.max("finished_at").alias("last")).orderBy(F.desc("last")).take(n)
    return [r["run_id"] for r in latest]
