"""The one explicit job registry used by the CLI, the spark-submit entry and the
pipeline. Adding a job means adding a module with ``run(spark, cfg, run_id)``
and one entry here."""

from __future__ import annotations

import fcntl
import importlib
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import SparkSession

from common.config import ShopLakeConfig
from common.errors import ConfigError, EnvironmentProblem, ShopLakeError
from common.paths import is_local, local_path
from common.runlog import JobResult, new_run_id, record_run
from common.tables import (
    ALL_TABLES,
    BRONZE_DATA_TABLES,
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    TableSpec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    name: str
    module: str
    summary: str
    # Config sections whose values are the job's parameters (recorded in the run log).
    config_sections: tuple[str, ...] = ()
    # "module:function" loaders of the config files the job reads, each taking the config
    # and raising ConfigError; validate_all calls them all before Spark starts.
    config_files: tuple[str, ...] = ()
    # Tables the job cannot run without (it calls store.require on them) and tables it
    # uses when they exist. Both order the pipeline: a job runs after their writers.
    reads: tuple[TableSpec, ...] = ()
    reads_if_present: tuple[TableSpec, ...] = ()

    @property
    def writes(self) -> tuple[TableSpec, ...]:
        """The tables this job owns (``TableSpec.written_by``), besides ops.run_log."""
        return tuple(t for t in ALL_TABLES.values() if t.written_by == self.name)

    @property
    def inputs(self) -> tuple[TableSpec, ...]:
        return self.reads + self.reads_if_present


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
            ("common.sources:check_sources",),
        ),
        JobSpec(
            "clean",
            "jobs.clean",
            "bronze -> silver: deduplicate, merge customer registrations into people, standardise, "
            "pseudonymise (user_key = HMAC with $SHOPLAKE_PSEUDONYM_SECRET), data-quality gates, publish",
            ("clean", "privacy"),
            ("common.quality:load_quality_rules",),
            reads_if_present=tuple(BRONZE_DATA_TABLES.values()),
        ),
        JobSpec(
            "profile",
            "jobs.profiles",
            "silver -> gold.profiles as of a date: attributes, RFM scores and segments, behaviour, "
            "interests, lifecycle stage and YAML-driven tags (conf/tags.yaml), point-in-time",
            ("gold", "profile"),
            ("jobs.profiles.tags:load_tag_rules",),
            reads=(SILVER_CUSTOMERS,),
            reads_if_present=(SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_EVENTS, SILVER_PRODUCTS),
        ),
        JobSpec(
            "segment",
            "jobs.segment",
            "gold.profiles -> gold.segments + gold.segment_summary: k-means on scaled features, k by "
            "silhouette, stability across seeds (ARI), named segments, saved scoring pipeline",
            ("gold", "segment"),
            reads=(GOLD_PROFILES,),
        ),
        JobSpec(
            "recommend",
            "jobs.recommend",
            "silver -> gold.recommendations (ALS, item-kNN or SAR, chosen by validation NDCG@k; popularity "
            "fallback; content picks) and gold.similar_items; every candidate tested on held-back data, report per run",
            ("gold", "recommend"),
            reads=(SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_PRODUCTS),
            reads_if_present=(SILVER_CUSTOMERS, SILVER_EVENTS),
        ),
        JobSpec(
            "basket",
            "jobs.basket",
            "silver orders -> gold.association_rules (FP-growth, arules semantics), gold.cross_sell, gold.bundles",
            ("gold", "basket"),
            reads=(SILVER_ORDERS, SILVER_ORDER_LINES),
        ),
        JobSpec(
            "churn",
            "jobs.churn",
            "silver (+ gold.profiles/segments when present) -> gold.churn_scores and gold.clv: point-in-time "
            "features incl. BG/NBD, candidates (recency, BG/NBD, logistic, GBT) chosen on validation ROC-AUC, "
            "ranking-preserving calibration, report against every baseline, BG/NBD x Gamma-Gamma CLV, saved model",
            ("gold", "churn"),
            reads=(SILVER_ORDERS,),
            reads_if_present=(SILVER_CUSTOMERS, SILVER_EVENTS, GOLD_PROFILES, GOLD_SEGMENTS),
        ),
        JobSpec(
            "campaign",
            "jobs.campaign",
            "gold -> campaign audiences (consent, frequency cap, hash hold-out, k-anonymous exports) "
            "and effect evaluation (KPIs, A/B and hold-out tests, campaign report)",
            ("gold", "campaign"),
            ("jobs.campaign.definitions:load_definitions",),
            # Which of these an audience needs depends on conf/campaigns.yaml.
            reads_if_present=(
                SILVER_CUSTOMERS,
                SILVER_ORDERS,
                SILVER_EVENTS,
                SILVER_CAMPAIGN_TOUCHES,
                GOLD_PROFILES,
                GOLD_SEGMENTS,
                GOLD_CHURN_SCORES,
                GOLD_CLV,
                GOLD_RECOMMENDATIONS,
            ),
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
    "stream": JobSpec(
        "stream",
        "jobs.stream",
        "Structured Streaming: new clickstream landing files -> bronze.events and bronze.quarantine as they "
        "arrive (the ingest parsing and quarantine rules), silver.events (clean's rules) and the live gold "
        "tables (funnel, trending, cart-abandonment triggers), exactly once, checkpointed; --once stops when done",
        ("landing", "stream"),
        ("jobs.stream.source:check_stream",),
    ),
}


def pipeline_order(jobs: dict[str, JobSpec]) -> tuple[str, ...]:
    """The jobs in an order where each runs after the writers of every table it reads;
    among jobs free to run, the one declared first goes first.

    Raises:
        ValueError: a job reads a table no job writes, or the reads form a cycle.
    """
    writer = {t.name: t.written_by for t in ALL_TABLES.values() if t.written_by}
    after: dict[str, set[str]] = {}
    for spec in jobs.values():
        for table in spec.inputs:
            if writer.get(table.name) not in jobs:
                raise ValueError(f"job {spec.name} reads {table.name}, which no registered job writes")
        after[spec.name] = {writer[t.name] for t in spec.inputs} - {spec.name}
    order: list[str] = []
    while len(order) < len(jobs):
        ready = [name for name in jobs if name not in order and after[name] <= set(order)]
        if not ready:
            raise ValueError(f"jobs {sorted(set(jobs) - set(order))} read each other's tables in a cycle")
        order.append(ready[0])
    return tuple(order)


# The order `shoplake pipeline` runs jobs in, derived from what each job reads.
PIPELINE = pipeline_order(JOBS)


def check_job_order(names: list[str] | tuple[str, ...]) -> None:
    """Refuse a job list that runs a job before the writer of a table it reads
    (``--jobs segment,profile``): it would read the previous run's table, or none.

    Raises:
        ConfigError: naming both jobs and the table.
    """
    position = {name: i for i, name in enumerate(names)}
    for name in names:
        for table in get_job(name).inputs:
            writer = table.written_by
            if writer in position and position[writer] > position[name]:
                raise ConfigError(
                    f"--jobs: {name} reads {table.name}, which {writer} writes, but {writer} is listed after it; "
                    f"pipeline order: {','.join(PIPELINE)}"
                )


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


def validate_all(cfg: ShopLakeConfig) -> None:
    """Parse every configuration file with the model its job uses, without Spark.

    ``cfg`` itself (base and env files, ``--set``, the ``clean.identity`` rules) is
    validated by :func:`~common.config.load_config`; this adds the files it names:
    source mappings, quality rules, tags and campaign definitions. Called for every
    run, whichever jobs it runs, so a typo anywhere stops it before the first job.

    Raises:
        ConfigError: the first bad file, naming it and the key.
    """
    for spec in (*JOBS.values(), *ON_DEMAND.values()):
        for loader in spec.config_files:
            module, _, function = loader.partition(":")
            getattr(importlib.import_module(module), function)(cfg)


def check_lake_root(cfg: ShopLakeConfig) -> None:
    """Fail before Spark starts when ``lake.root`` (a local path) cannot hold a lake.

    A missing folder is fine (the first write creates it) as long as its nearest
    existing ancestor is a folder; a file, a path below a file, or a symbolic link
    to nothing is refused with the path named.

    Raises:
        EnvironmentProblem: naming ``lake.root`` and what is wrong with it.
    """
    if not is_local(cfg.lake_root):
        return  # object stores: the first read or write reports access problems
    root = local_path(cfg.lake_root)
    path = os.path.abspath(root)
    for candidate in (path, *_ancestors(path)):
        if os.path.islink(candidate) and not os.path.exists(candidate):
            raise EnvironmentProblem(
                f"lake.root {root}: {candidate} is a symbolic link to {os.readlink(candidate)}, "
                "which does not exist; point lake.root at a folder"
            )
        if not os.path.exists(candidate):
            continue
        if not os.path.isdir(candidate):
            where = "is a file" if candidate == path else f"cannot be created: {candidate} is a file"
            raise EnvironmentProblem(f"lake.root {root} {where}, not a folder; point lake.root at a folder")
        if not os.access(candidate, os.R_OK | os.W_OK | os.X_OK):
            raise EnvironmentProblem(f"lake.root {root}: {candidate} is not readable and writable by this user")
        return


def _ancestors(path: str) -> Iterator[str]:
    while (parent := os.path.dirname(path)) != path:
        yield parent
        path = parent


def check_table_protocols(store) -> None:
    """Refuse a lake holding a table this store cannot safely write, before any write.

    Raises:
        UnsupportedTableProtocol: naming the table and its protocol.
    """
    from common.tables import ALL_TABLES

    for spec in ALL_TABLES.values():
        store.check_supported(spec)


@contextmanager
def lake_lock(cfg: ShopLakeConfig, job: str, run_id: str) -> Iterator[None]:
    """Hold ``<lake root>/_locks/<job>.lock`` exclusively while ``job`` runs.

    Two runs of one job on one lake would both see the same files as new, both
    write them and both mark them ingested (each table's commits succeed one after
    the other, so delta-rs' conflict check does not catch it): the second run is
    refused instead. The OS releases the lock when the process dies, so a crashed
    run never leaves the lake locked. Lakes on object stores have no flock; there
    the scheduler must not start overlapping runs.

    Raises:
        ShopLakeError: when another run of ``job`` holds the lock.
    """
    if not is_local(cfg.lake_root):
        yield
        return
    root = local_path(cfg.lake_root)
    folder = os.path.join(root, "_locks")
    path = os.path.join(folder, f"{job}.lock")
    try:
        os.makedirs(folder, exist_ok=True)
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise EnvironmentProblem(
            f"lake.root {root}: cannot create the lake lock {path} ({exc.strerror}); nothing was written"
        ) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise ShopLakeError(
                f"another {job} run holds the lake lock {path} (held by {holder}); nothing was "
                "written: wait for it to finish and re-run"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, run {run_id}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
    check_lake_root(cfg)
    run_id = run_id or new_run_id(name)
    module = importlib.import_module(spec.module)
    store = open_store(spark, cfg)
    started = datetime.now(timezone.utc)
    params = {**job_parameters(spec, cfg), **(recorded_parameters or {})}

    def record(status: str, **outcome: Any) -> int:
        return record_run(
            spark, store, run_id=run_id, job=name, env=cfg.env, parameters=params, started_at=started,
            finished_at=datetime.now(timezone.utc), status=status, **outcome,
        )  # fmt: skip

    # One run of a job per lake at a time (see lake_lock).
    with lake_lock(cfg, name, run_id):
        try:
            check_table_protocols(store)
            result: JobResult = module.run(spark, cfg, run_id=run_id, store=store, **job_args)
        except Exception as exc:
            try:
                record("failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:2000])
            except Exception as log_exc:  # noqa: BLE001 - e.g. the disk is full: report the job's error
                log.warning("could not record the failed run %s in ops.run_log: %s", run_id, log_exc)
            raise
        version = record("succeeded", result=result)
        result.outputs.setdefault("ops.run_log", version)
        return result
