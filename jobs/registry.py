"""The one explicit job registry used by the CLI, the spark-submit entry and the
pipeline. Adding a job means adding a module with ``run(spark, cfg, run_id)``
and one entry here."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from common.config import ShopLakeConfig
from common.runlog import JobResult, new_run_id, record_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    summary: str
    # Config sections whose values are the job's parameters (recorded in the run log).
    config_sections: tuple[str, ...] = ()


JOBS: dict[str, JobSpec] = {
    spec.name: spec
    for spec in (
        JobSpec(
            "ingest",
            "jobs.ingest",
            "landing files -> one bronze Delta table per source table; records that cannot be "
            "parsed or typed go to bronze.quarantine with file, line and reason; incremental "
            "by file content hash",
            ("landing", "ingest"),
        ),
        JobSpec(
            "clean",
            "jobs.clean",
            "bronze -> silver: deduplicate, merge customer registrations into people, standardise, "
            "pseudonymise (user_key = HMAC with $SHOPLAKE_PSEUDONYM_SECRET), data-quality gates, publish",
            ("clean", "privacy"),
        ),
    )
}

# Jobs run on demand only, never by the pipeline.
ON_DEMAND = {
    "forget": JobSpec(
        "forget",
        "jobs.forget",
        "erase people (source ids or user keys) from every layer and vacuum old versions",
        ("privacy",),
    ),
}

# The order `shoplake pipeline` runs jobs in.
PIPELINE = tuple(JOBS)


def get_job(name: str) -> JobSpec:
    try:
        return JOBS.get(name) or ON_DEMAND[name]
    except KeyError:
        raise KeyError(f"unknown job {name!r}; known jobs: {', '.join(JOBS)}") from None


def job_parameters(spec: JobSpec, cfg: ShopLakeConfig) -> dict[str, Any]:
    params: dict[str, Any] = {"lake.root": cfg.lake_root, "lake.backend": cfg.lake.backend}
    for section in spec.config_sections:
        params[section] = getattr(cfg, section).model_dump(mode="json")
    return params


def run_job(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    name: str,
    run_id: str | None = None,
    recorded_parameters: dict[str, Any] | None = None,
    **job_args: Any,
) -> JobResult:
    """Run one job and record it in the run log, failed runs included (then re-raise).

    ``job_args`` go to the job's ``run``; ``recorded_parameters`` are added to the
    run log in their place (e.g. a count instead of the identities to erase).
    """
    from common.delta import open_store

    spec = get_job(name)
    run_id = run_id or new_run_id(name)
    module = importlib.import_module(spec.module)
    store = open_store(spark, cfg)
    started = datetime.now(timezone.utc)
    params = {**job_parameters(spec, cfg), **(recorded_parameters or {})}
    try:
        result: JobResult = module.run(spark, cfg, run_id=run_id, store=store, **job_args)
    except Exception as exc:
        record_run(
            spark,
            store,
            run_id=run_id,
            job=name,
            env=cfg.env,
            parameters=params,
            started_at=started,
            finished_at=datetime.now(timezone.utc),
            status="failed",
            error=f"{type(exc).__name__}: {exc}".splitlines()[0][:2000],
        )
        raise
    finished = datetime.now(timezone.utc)
    version = record_run(
        spark,
        store,
        run_id=run_id,
        job=name,
        env=cfg.env,
        parameters=params,
        started_at=started,
        finished_at=finished,
        status="succeeded",
        result=result,
    )
    result.outputs.setdefault("ops.run_log", version)
    return result
