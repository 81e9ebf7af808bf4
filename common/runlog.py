"""The run log (``ops.run_log``): one row per job run with its parameters, the
table versions it read and wrote, row counts, metrics, duration and status."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

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
