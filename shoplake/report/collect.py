"""What the run report shows, read with Spark: the run's steps, quality gates and the gold tables."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import runlog
from common.config import ShopLakeConfig
from common.errors import InputError
from common.paths import local_path
from common.runlog import RunStep
from common.tables import (
    ALL_TABLES,
    GOLD_CHURN_SCORES,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    OPS_STREAM_PROGRESS,
    TableSpec,
)
from jobs.clean.job import CLEAN_METRICS_FILE, IDENTITY_MODEL_FILE

log = logging.getLogger(__name__)

CHURN_BINS = 20
TOP_RULES = 15


# ---------------------------------------------------------------------------- collected data
@dataclass(frozen=True)
class Unavailable:
    """A section's source is missing; ``reason`` is shown in its place."""

    reason: str


@dataclass
class GoldSource:
    """Where a gold section's numbers come from: table, version, as-of date."""

    table: str
    version: int | None
    as_of: date | None
    written_by_run: bool


@dataclass
class ReportData:
    """Everything :func:`render` needs: small, plain Python values only."""

    run_id: str
    lake_root: str
    generated_at: datetime
    steps: list[RunStep]
    quality: dict[str, Any] | Unavailable
    rfm: dict[str, Any] | Unavailable
    segments: dict[str, Any] | Unavailable
    churn: dict[str, Any] | Unavailable
    rules: dict[str, Any] | Unavailable
    recommendations: dict[str, Any] | Unavailable
    streaming: dict[str, Any] | Unavailable = Unavailable("no stream progress was collected")


# ---------------------------------------------------------------------------- collecting (Spark)
def read_run(spark: SparkSession, store, run_id: str | None) -> tuple[str, list[RunStep]]:
    """The run's steps in start order; ``run_id`` None: the latest pipeline run.

    Raises:
        InputError: no run log, or the run id is not in it (the message lists recent ids).
    """
    from shoplake.registry import ON_DEMAND

    if not runlog.has_run_log(store):
        raise InputError(f"ops.run_log does not exist in {store.root}: run the pipeline before `shoplake report`")
    if run_id is None:
        # Any job but the on-demand ones (erasure): a pipeline job not registered in this
        # installation still counts, so a lake written by a newer version reports fine.
        latest = runlog.latest_run(store, exclude_jobs=list(ON_DEMAND))
        if latest is None:
            raise InputError(f"ops.run_log in {store.root} holds no pipeline job run: run the pipeline first")
        run_id = latest.run_id
    steps = runlog.run_steps(store, run_id)
    if not steps:
        recent = ", ".join(runlog.recent_run_ids(store, 5))
        raise InputError(f"--run-id {run_id}: not in ops.run_log; recent runs: {recent}")
    return run_id, steps


def read_quality(spark: SparkSession, store, cfg: ShopLakeConfig, run_id: str, steps: list[RunStep]):
    """The gate results of this run's clean step, else of the latest clean run before it."""
    from common.quality import default_reports_dir

    clean_run = run_id if any(s.job == "clean" for s in steps) else None
    note = ""
    if clean_run is None and runlog.has_run_log(store):
        first_start = min(s.started_at for s in steps)
        row = runlog.latest_run(
            store, jobs=["clean"], status="succeeded", started_by=first_start, order_by="started_at"
        )
        if row is None:
            return Unavailable("no clean run at or before this run: no data-quality results to show")
        clean_run = row.run_id
        note = f"This run has no clean step; the results are from the latest clean run before it, {clean_run}."
    folder = os.path.join(local_path(default_reports_dir(cfg)), clean_run)
    if not os.path.isdir(folder):
        return Unavailable(f"no quality results folder {folder} (clean keeps them there for local lakes)")
    gates = []
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".json") or name in (CLEAN_METRICS_FILE, IDENTITY_MODEL_FILE):
            continue
        with open(os.path.join(folder, name), encoding="utf-8") as handle:
            try:
                gates.append(json.load(handle))
            except ValueError as exc:
                gates.append({"table": name, "success": False, "error": f"unreadable result file: {exc}"})
    if not gates:
        return Unavailable(f"{folder} holds no gate results")
    docs = os.path.join(folder, "data_docs", "index.html")
    return {
        "clean_run_id": clean_run,
        "note": note,
        "gates": gates,
        "data_docs": docs if os.path.isfile(docs) else None,
    }


def _gold(store, spec: TableSpec | None, name: str, steps: list[RunStep]) -> tuple[DataFrame, GoldSource] | Unavailable:
    """The table's rows for the as-of date this run computed (or its latest date)."""
    job = spec.written_by if spec else "?"
    if spec is None:
        return Unavailable(f"{name} is not declared in common.tables (the {job} job is not installed)")
    if not store.exists(spec):
        return Unavailable(f"{name} does not exist in this lake: run the {job} job")
    step = next((s for s in steps if name in s.output_versions), None)
    version = step.output_versions[name] if step else None
    df = store.read(spec, version)
    as_of = None
    if step and isinstance(step.metrics.get("as_of"), str):
        try:
            as_of = date.fromisoformat(step.metrics["as_of"][:10])
        except ValueError:
            as_of = None
    if "as_of" in df.columns:
        if as_of is None:
            as_of = df.agg(F.max("as_of")).first()[0]
        if as_of is None:
            return Unavailable(f"{name} is empty")
        df = df.where(F.col("as_of") == F.lit(as_of))
    return df, GoldSource(name, version if version is not None else store.version(spec), as_of, step is not None)


def _counts(df: DataFrame, *cols: str) -> list[dict[str, Any]]:
    """Row counts per value of ``cols`` (few groups by construction: scores, names, bins)."""
    return [r.asDict() for r in df.groupBy(*cols).count().orderBy(*cols).collect()]


def read_rfm(store, steps):
    got = _gold(store, GOLD_PROFILES, GOLD_PROFILES.name, steps)
    if isinstance(got, Unavailable):
        return got
    df, source = got
    cells = _counts(df.where("r_score IS NOT NULL AND f_score IS NOT NULL"), "r_score", "f_score")
    unscored = df.where("r_score IS NULL OR f_score IS NULL").count()
    return {"source": source, "cells": cells, "unscored": unscored}


def read_segments(store, steps):
    got = _gold(store, GOLD_SEGMENTS, GOLD_SEGMENTS.name, steps)
    if isinstance(got, Unavailable):
        return got
    df, source = got
    sizes = _counts(df, "segment_id", "segment_name")
    out: dict[str, Any] = {"source": source, "sizes": sizes, "profiles": None}
    profiles = _gold(store, GOLD_PROFILES, GOLD_PROFILES.name, steps)
    if not isinstance(profiles, Unavailable):
        prof, psource = profiles
        if psource.as_of == source.as_of:
            joined = df.select("user_key", "segment_name").join(prof, "user_key")
            out["profiles"] = [
                r.asDict()
                for r in joined.groupBy("segment_name")
                .agg(
                    F.count("*").alias("customers"),
                    F.round(F.avg("recency_days"), 1).alias("avg_recency_days"),
                    F.round(F.avg("frequency"), 2).alias("avg_frequency"),
                    F.round(F.avg("monetary"), 2).cast("double").alias("avg_monetary"),
                    F.round(F.avg(F.col("marketing_consent").cast("int")), 3).alias("consent_share"),
                )
                .orderBy("segment_name")
                .collect()
            ]
    return out


def read_churn(store, steps):
    got = _gold(store, GOLD_CHURN_SCORES, GOLD_CHURN_SCORES.name, steps)
    if isinstance(got, Unavailable):
        return got
    df, source = got
    # Bin on the executors; probability 1.0 joins the last bin.
    binned = df.select(F.least(F.floor(F.col("probability") * CHURN_BINS), F.lit(CHURN_BINS - 1)).alias("bin"))
    by_bin = {r["bin"]: r["count"] for r in _counts(binned, "bin")}
    tiers = [r.asDict() for r in df.groupBy("risk_tier").agg(
        F.count("*").alias("count"), F.round(F.avg("probability"), 4).alias("mean_probability")
    ).orderBy("mean_probability").collect()]  # fmt: skip
    versions = sorted({r["model_version"] for r in df.select("model_version").distinct().limit(10).collect()})
    return {
        "source": source,
        "histogram": [int(by_bin.get(i, 0)) for i in range(CHURN_BINS)],
        "tiers": tiers,
        "model_versions": versions,
    }


def read_rules(store, steps):
    spec = ALL_TABLES.get("gold.association_rules")
    got = _gold(store, spec, "gold.association_rules", steps)
    if isinstance(got, Unavailable):
        return got
    df, source = got
    needed = ["antecedent", "consequent", "support", "confidence", "lift"]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        return Unavailable(f"gold.association_rules lacks columns {missing} (has {df.columns})")
    top = df.select(*needed).orderBy(F.desc("lift"), F.desc("confidence")).limit(TOP_RULES).collect()
    return {"source": source, "total": df.count(), "top": [r.asDict() for r in top]}


def read_recommendations(store, steps):
    got = _gold(store, GOLD_RECOMMENDATIONS, GOLD_RECOMMENDATIONS.name, steps)
    if isinstance(got, Unavailable):
        return got
    df, source = got
    reasons = [
        r.asDict()
        for r in df.groupBy("reason")
        .agg(F.count("*").alias("rows"), F.countDistinct("user_key").alias("customers"))
        .orderBy(F.desc("rows"), "reason")
        .collect()
    ]
    totals = df.agg(F.countDistinct("user_key").alias("customers"), F.countDistinct("item_id").alias("items")).first()
    return {"source": source, "reasons": reasons, "customers": totals["customers"], "items": totals["items"]}


def read_streaming(store) -> dict[str, Any] | Unavailable:
    """The latest ``shoplake stream`` run's micro-batches, summarised per query."""
    if not store.exists(OPS_STREAM_PROGRESS):
        return Unavailable("no stream has run on this lake (`shoplake stream`)")
    df = store.read(OPS_STREAM_PROGRESS)
    latest = df.orderBy(F.desc("started_at"), F.desc("run_id")).select("run_id").first()
    if latest is None:
        return Unavailable("ops.stream_progress is empty")
    run = df.where(F.col("run_id") == latest["run_id"])
    queries = [
        r.asDict()
        for r in run.groupBy("query")
        .agg(
            F.count("*").alias("batches"),
            F.sum("input_rows").alias("input_rows"),
            F.round(F.avg("processed_rows_per_second"), 1).alias("mean_processed_rows_per_s"),
            F.max("batch_duration_ms").alias("longest_batch_ms"),
            F.max("watermark").alias("watermark"),
            F.max_by("state_rows", "batch_id").alias("state_rows"),
            F.coalesce(F.sum("late_rows"), F.lit(0)).alias("late_rows"),
            F.min("started_at").alias("first_batch"),
            F.max("started_at").alias("last_batch"),
        )
        .orderBy("query")
        .collect()
    ]
    return {"run_id": latest["run_id"], "queries": queries}


def collect(spark: SparkSession, cfg: ShopLakeConfig, run_id: str | None = None, store=None) -> ReportData:
    """Read the run log, the quality results and the gold tables' aggregates for a run."""
    from common.delta import open_store

    store = store or open_store(spark, cfg)
    run_id, steps = read_run(spark, store, run_id)
    return ReportData(
        run_id=run_id,
        lake_root=cfg.lake_root,
        generated_at=datetime.now(timezone.utc),
        steps=steps,
        quality=read_quality(spark, store, cfg, run_id, steps),
        rfm=read_rfm(store, steps),
        segments=read_segments(store, steps),
        churn=read_churn(store, steps),
        rules=read_rules(store, steps),
        recommendations=read_recommendations(store, steps),
        streaming=read_streaming(store),
    )
