"""``shoplake report``: one self-contained static HTML page for a run.

Sections: the pipeline's steps (status, durations, counts, table versions from
``ops.run_log``), the data-quality gates clean kept under
``<lake>/reports/quality/<run_id>/``, the RFM heatmap (gold.profiles), segment sizes
and profiles (gold.segments), churn scores (gold.churn_scores), top association rules
(gold.association_rules), recommendation reasons (gold.recommendations) and every
job's run-log ``metrics``, rendered generically (nested dicts and lists of dicts as
tables) with specific charts from :data:`CHARTS`.

Two halves: :func:`collect` reads the lake with Spark and keeps small aggregates only
(counts per score, per segment, per bin), and :func:`render` turns them into HTML
without Spark, so rendering is unit-testable. Charts are matplotlib figures inlined
as SVG: the page is one file, loads nothing from the network and needs no server.
A section whose source is missing says so instead of failing the report.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import runlog
from common.charts import figure, svg
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
from jobs.clean import CLEAN_METRICS_FILE, IDENTITY_MODEL_FILE

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


# ---------------------------------------------------------------------------- charts (matplotlib)
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _points(value: Any, x_keys: Iterable[str], y_keys: Iterable[str]) -> list[tuple[float, float]]:
    """(x, y) pairs from a list of dicts (first matching key each) or a dict of two lists."""
    x_keys, y_keys = list(x_keys), list(y_keys)
    if isinstance(value, Mapping):
        xs = next((value[k] for k in x_keys if isinstance(value.get(k), list)), None)
        ys = next((value[k] for k in y_keys if isinstance(value.get(k), list)), None)
        pairs = list(zip(xs or [], ys or []))
    elif isinstance(value, list):
        pairs = []
        for item in value:
            if isinstance(item, Mapping):
                x = next((item[k] for k in x_keys if k in item), None)
                y = next((item[k] for k in y_keys if k in item), None)
                pairs.append((x, y))
    else:
        return []
    return [(float(x), float(y)) for x, y in pairs if _num(x) is not None and _num(y) is not None]


def _find(metrics: Mapping[str, Any], *names: str) -> Any:
    """The first value under one of ``names``, at the top level or one level down."""
    for name in names:
        if name in metrics:
            return metrics[name]
    for value in metrics.values():
        if isinstance(value, Mapping):
            for name in names:
                if name in value:
                    return value[name]
    return None


def roc_chart(metrics: Mapping[str, Any]):
    """``roc``: [{fpr, tpr}, ...] (or {fpr: [...], tpr: [...]}), with the AUC when logged."""
    pts = sorted(_points(_find(metrics, "roc", "roc_curve"), ["fpr", "false_positive_rate", "x"], ["tpr", "y"]))
    if len(pts) < 2:
        return None
    fig = figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    auc = _num(_find(metrics, "roc_auc", "auc"))
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""))
    ax.legend(loc="lower right")
    return fig


def calibration_chart(metrics: Mapping[str, Any]):
    """``calibration``: [{bin, mean_predicted, observed}, ...]."""
    pts = _points(
        _find(metrics, "calibration"), ["mean_predicted", "predicted", "mean_probability"], ["observed", "actual"]
    )
    if len(pts) < 2:
        return None
    fig = figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return fig


def lift_chart(metrics: Mapping[str, Any]):
    """``lift`` / ``lift_by_decile``: [{decile, lift}, ...]."""
    pts = sorted(_points(_find(metrics, "lift_by_decile", "lift", "lift_curve"), ["decile", "bin", "x"], ["lift", "y"]))
    if not pts:
        return None
    fig = figure(5.2, 3.4)
    ax = fig.add_subplot()
    ax.bar([p[0] for p in pts], [p[1] for p in pts], color="#4c72b0")
    ax.axhline(1.0, linestyle="--", color="grey")
    ax.set(xlabel="decile (1 = highest scores)", ylabel="lift", title="Lift by decile")
    return fig


def comparison_chart(metrics: Mapping[str, Any]):
    """Model vs baselines: the first dict of dicts whose members share numeric metrics,
    e.g. ``{"als": {"precision@10": ...}, "popularity": {...}}``, as grouped bars."""
    candidates = [metrics, *[v for v in metrics.values() if isinstance(v, Mapping)]]
    for cand in candidates:
        groups = {k: v for k, v in cand.items() if isinstance(v, Mapping)}
        if len(groups) < 2:
            continue
        shared = set.intersection(*[{m for m, x in g.items() if _num(x) is not None} for g in groups.values()])
        if not shared:
            continue
        names = sorted(shared)[:8]
        fig = figure(6.4, 3.4)
        ax = fig.add_subplot()
        width = 0.8 / len(groups)
        for i, (label, values) in enumerate(groups.items()):
            ax.bar([j + i * width for j in range(len(names))], [float(values[n]) for n in names], width, label=label)
        ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(names))], names, rotation=20)
        ax.set_title("Model vs baselines")
        ax.legend()
        return fig
    return None


def interval_chart(metrics: Mapping[str, Any]):
    """Estimates with confidence intervals: any list of dicts carrying an estimate and
    (ci_low, ci_high) or (lower, upper), e.g. campaign effects per variant."""
    bounds = (("ci_low", "ci_high"), ("lower", "upper"), ("ci_lower", "ci_upper"))
    for value in [metrics, *metrics.values()]:
        items = value if isinstance(value, list) else None
        if isinstance(value, Mapping):
            items = next((v for v in value.values() if isinstance(v, list)), None)
        if not items or not all(isinstance(i, Mapping) for i in items):
            continue
        keys = next((b for b in bounds if all(b[0] in i and b[1] in i for i in items)), None)
        if keys is None:
            continue
        rows = []
        for i, item in enumerate(items):
            label = next(
                (str(item[k]) for k in ("label", "variant", "campaign_id", "name", "arm") if k in item), str(i)
            )
            if "campaign_id" in item and "variant" in item:
                label = f"{item['campaign_id']} {item['variant']}"
            lo, hi = _num(item[keys[0]]), _num(item[keys[1]])
            est = next((_num(item[k]) for k in ("estimate", "effect", "uplift", "lift", "rate") if k in item), None)
            if lo is not None and hi is not None:
                rows.append((label, lo, hi, est if est is not None else (lo + hi) / 2))
        if not rows:
            continue
        fig = figure(6.4, 0.5 + 0.45 * len(rows))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))
        ax.errorbar(
            [r[3] for r in rows],
            ys,
            xerr=[[r[3] - r[1] for r in rows], [r[2] - r[3] for r in rows]],
            fmt="o",
            capsize=4,
        )
        ax.axvline(0, linestyle="--", color="grey")
        ax.set_yticks(ys, [r[0] for r in rows])
        ax.set_title("Estimates with intervals")
        return fig
    return None


def silhouette_chart(metrics: Mapping[str, Any]):
    """``silhouette``: {k: score} or [{k, silhouette}, ...]."""
    value = _find(metrics, "silhouette_by_k", "silhouette")
    if isinstance(value, Mapping) and all(_num(k) is not None for k in value):
        pts = sorted((float(k), float(v)) for k, v in value.items() if _num(v) is not None)
    else:
        pts = sorted(_points(value, ["k"], ["silhouette", "score"]))
    if len(pts) < 2:
        return None
    fig = figure(4.8, 3.2)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    ax.set(xlabel="k", ylabel="silhouette", title="Silhouette by number of segments")
    return fig


def match_weight_chart(metrics: Mapping[str, Any]):
    """clean's ``identity.match_weights``: {comparison: {level: weight}}, one bar per
    level (log2 Bayes factor; right of zero is evidence for the same person)."""
    weights = (metrics.get("identity") or {}).get("match_weights")
    if not isinstance(weights, Mapping):
        return None
    bars = [
        (f"{comparison}: {level}", float(w))
        for comparison, levels in weights.items()
        for level, w in levels.items()
        if _num(w) is not None
    ]
    if not bars:
        return None
    fig = figure(6.4, 0.6 + 0.28 * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [w for _, w in bars], color=["#4c72b0" if w >= 0 else "#c44e52" for _, w in bars])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(ys, [label for label, _ in bars], fontsize=7)
    ax.set(xlabel="match weight (log2 Bayes factor)", title="Identity model: match weight per comparison level")
    return fig


ChartFn = Callable[[Mapping[str, Any]], Any]

# Charts drawn from a job's run-log metrics, by job: each function returns a Figure, or
# None when the metrics it reads are absent. Add a job's charts here; the tables of the
# generic renderer are shown either way.
CHARTS: dict[str, list[ChartFn]] = {
    "clean": [match_weight_chart],
    "segment": [silhouette_chart],
    "recommend": [comparison_chart],
    "churn": [roc_chart, calibration_chart, lift_chart],
    "campaign": [interval_chart, comparison_chart],
}


# ---------------------------------------------------------------------------- HTML
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (Mapping, list)) for v in value):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def table(rows: list[Mapping[str, Any]], columns: list[str] | None = None, css: str = "") -> str:
    """An HTML table of dicts; columns: the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{render_value(r.get(c), inline=True)}</td>" for c in columns) + "</tr>" for r in rows
    )
    cls = f' class="{esc(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_value(value: Any, inline: bool = False, depth: int = 0) -> str:
    """Any JSON value as HTML: dicts of scalars as key/value tables, nested dicts as
    titled sub-blocks, lists of dicts as tables, everything else as escaped text."""
    if isinstance(value, Mapping):
        if not value:
            return "<span class='muted'>(empty)</span>"
        scalars = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list)) or _is_flat_list(v)}
        nested = {k: v for k, v in value.items() if k not in scalars}
        parts = []
        if scalars:
            rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in scalars.items())
            parts.append(f"<table class='kv'><tbody>{rows}</tbody></table>")
        level = min(4 + depth, 6)
        for k, v in nested.items():
            parts.append(f"<div class='nested'><h{level}>{esc(k)}</h{level}>{render_value(v, depth=depth + 1)}</div>")
        return "".join(parts)
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            return table(list(value))
        if _is_flat_list(value):
            return esc(_fmt(value))
        return "<ul>" + "".join(f"<li>{render_value(v, depth=depth + 1)}</li>" for v in value) + "</ul>"
    return esc(_fmt(value))


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (Mapping, list)) for v in value)


def chart_block(chart_id: str, title: str, fig) -> str:
    return (
        f"<figure class='chart' data-chart='{esc(chart_id)}'>{svg(fig, chart_id)}"
        f"<figcaption>{esc(title)}</figcaption></figure>"
    )


def missing(reason: str) -> str:
    return f"<p class='missing'>Not available: {esc(reason)}</p>"


def _source_line(source: GoldSource) -> str:
    origin = "written by this run" if source.written_by_run else "latest version; not written by this run"
    as_of = source.as_of.isoformat() if source.as_of else "-"
    return f"<p class='source'>{esc(source.table)} v{esc(source.version)} ({origin}), as of {esc(as_of)}</p>"


def section_pipeline(data: ReportData) -> str:
    steps = data.steps
    rows = [
        {
            "step": i,
            "job": s.job,
            "status": s.status,
            "started (UTC)": s.started_at,
            "seconds": round(s.duration_s, 1),
            "rows written": s.row_counts,
            "read (table: version)": s.input_versions,
            "wrote (table: version)": s.output_versions,
            "error": s.error,
        }
        for i, s in enumerate(steps, start=1)
    ]
    fig = figure(6.4, 0.6 + 0.45 * len(steps))
    ax = fig.add_subplot()
    colours = ["#55a868" if s.status == "succeeded" else "#c44e52" for s in steps]
    ax.barh([s.job for s in steps][::-1], [s.duration_s for s in steps][::-1], color=colours[::-1])
    ax.set(xlabel="seconds", title="Step durations (red: failed)")
    failed = [s.job for s in steps if s.status != "succeeded"]
    verdict = f"failed at {failed[0]}" if failed else "all steps succeeded"
    total = sum(s.duration_s for s in steps)
    return (
        f"<p>{len(steps)} step(s), {esc(verdict)}, {total:,.1f} s in total.</p>"
        + chart_block("pipeline_durations", "Seconds per step", fig)
        + table(rows, css="steps")
    )


def section_quality(quality: dict[str, Any] | Unavailable) -> str:
    if isinstance(quality, Unavailable):
        return missing(quality.reason)
    gates = quality["gates"]
    summary, problems = [], []
    for gate in gates:
        outcomes = gate.get("outcomes") or []
        passed = sum(1 for o in outcomes if o.get("success"))
        summary.append(
            {
                "table": gate.get("table"),
                "gate": "passed" if gate.get("success") else "FAILED",
                "rows checked": gate.get("row_count"),
                "checks": len(outcomes),
                "passed": passed,
                "failed": len(outcomes) - passed,
                "rows with findings": sum(o.get("unexpected") or 0 for o in outcomes),
                "error": gate.get("error"),
            }
        )
        for o in outcomes:
            if o.get("unexpected") or not o.get("success"):
                problems.append(
                    {
                        "table": gate.get("table"),
                        "check": o.get("label") or o.get("name"),
                        "level": o.get("level"),
                        "passed": o.get("success"),
                        "unexpected rows": o.get("unexpected"),
                        "of rows": o.get("checked"),
                        "allowed share": o.get("allowed_share"),
                        "error": o.get("error"),
                    }
                )
    fig = figure(6.4, 0.6 + 0.4 * len(summary))
    ax = fig.add_subplot()
    names = [str(s["table"]) for s in summary][::-1]
    ax.barh(names, [s["passed"] for s in summary][::-1], color="#55a868", label="passed")
    ax.barh(names, [s["failed"] for s in summary][::-1], left=[s["passed"] for s in summary][::-1],
            color="#c44e52", label="failed")  # fmt: skip
    ax.set(xlabel="checks", title="Data-quality checks per silver table")
    ax.legend(loc="lower right")
    parts = [f"<p class='source'>Gate results of clean run {esc(quality['clean_run_id'])}.</p>"]
    if quality["note"]:
        parts.append(f"<p class='note'>{esc(quality['note'])}</p>")
    parts.append(chart_block("quality_checks", "Checks passed and failed per table", fig))
    parts.append(table(summary, css="quality"))
    if problems:
        parts.append("<h3>Checks with findings</h3>" + table(problems, css="findings"))
    else:
        parts.append("<p>No check found any unexpected row.</p>")
    if quality.get("data_docs"):
        parts.append(f"<p>Great Expectations data docs: <code>{esc(quality['data_docs'])}</code></p>")
    return "".join(parts)


def section_rfm(rfm: dict[str, Any] | Unavailable) -> str:
    if isinstance(rfm, Unavailable):
        return missing(rfm.reason)
    cells = rfm["cells"]
    if not cells:
        return _source_line(rfm["source"]) + missing("no customer has both an R and an F score")
    r_values = sorted({c["r_score"] for c in cells})
    f_values = sorted({c["f_score"] for c in cells})
    grid = [[0] * len(f_values) for _ in r_values]
    for c in cells:
        grid[r_values.index(c["r_score"])][f_values.index(c["f_score"])] = c["count"]
    fig = figure(5.4, 4.4)
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    peak = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count < peak * 0.6 else "black")
    ax.set_xticks(range(len(f_values)), [str(v) for v in f_values])
    ax.set_yticks(range(len(r_values)), [str(v) for v in r_values])
    ax.set(xlabel="f_score (frequency)", ylabel="r_score (recency)", title="Customers per R x F score")
    fig.colorbar(image, ax=ax, label="customers")
    rows = [{"r_score": r, **{f"f={f}": grid[i][j] for j, f in enumerate(f_values)}} for i, r in enumerate(r_values)]
    note = f"<p>{rfm['unscored']:,} customer(s) without an R or F score are not shown.</p>" if rfm["unscored"] else ""
    return _source_line(rfm["source"]) + chart_block("rfm_heatmap", "RFM heatmap", fig) + table(rows, css="rfm") + note


def section_segments(seg: dict[str, Any] | Unavailable) -> str:
    if isinstance(seg, Unavailable):
        return missing(seg.reason)
    sizes = seg["sizes"]
    if not sizes:
        return _source_line(seg["source"]) + missing("no segment rows for this date")
    total = sum(s["count"] for s in sizes)
    fig = figure(6.4, 0.6 + 0.45 * len(sizes))
    ax = fig.add_subplot()
    ordered = sorted(sizes, key=lambda s: s["count"])
    ax.barh([s["segment_name"] for s in ordered], [s["count"] for s in ordered], color="#4c72b0")
    ax.set(xlabel="customers", title="Segment sizes")
    rows = [
        {"segment_id": s["segment_id"], "segment_name": s["segment_name"], "customers": s["count"],
         "share": round(s["count"] / total, 4)}
        for s in sorted(sizes, key=lambda s: -s["count"])
    ]  # fmt: skip
    parts = [_source_line(seg["source"]), chart_block("segment_sizes", "Customers per segment", fig)]
    parts.append(table(rows, css="segments"))
    if seg.get("profiles"):
        parts.append("<h3>Segment profiles (gold.profiles, same date)</h3>" + table(seg["profiles"], css="profiles"))
    return "".join(parts)


def section_churn(churn: dict[str, Any] | Unavailable) -> str:
    if isinstance(churn, Unavailable):
        return missing(churn.reason)
    hist = churn["histogram"]
    width = 1.0 / len(hist)
    fig = figure(6.4, 3.4)
    ax = fig.add_subplot()
    ax.bar([i * width for i in range(len(hist))], hist, width=width, align="edge", color="#dd8452", edgecolor="white")
    ax.set(xlabel="churn probability", ylabel="customers", xlim=(0, 1), title="Churn probability distribution")
    parts = [_source_line(churn["source"]), chart_block("churn_histogram", "Churn probabilities", fig)]
    tiers = churn["tiers"]
    if tiers:
        fig2 = figure(4.8, 3.2)
        ax2 = fig2.add_subplot()
        ax2.bar([t["risk_tier"] for t in tiers], [t["count"] for t in tiers], color="#c44e52")
        ax2.set(ylabel="customers", title="Risk tiers")
        parts.append(chart_block("churn_tiers", "Customers per risk tier", fig2))
        parts.append(table(tiers, css="tiers"))
    parts.append(f"<p>Model version(s): {esc(_fmt(churn['model_versions']))}</p>")
    return "".join(parts)


def section_rules(rules: dict[str, Any] | Unavailable) -> str:
    if isinstance(rules, Unavailable):
        return missing(rules.reason)
    top = rules["top"]
    if not top:
        return _source_line(rules["source"]) + missing("the table holds no rules for this date")
    fig = figure(5.6, 3.8)
    ax = fig.add_subplot()
    points = ax.scatter([r["support"] for r in top], [r["confidence"] for r in top], c=[r["lift"] for r in top])
    fig.colorbar(points, ax=ax, label="lift")
    ax.set(xlabel="support", ylabel="confidence", title=f"Top {len(top)} rules by lift")
    rows = [
        {"if bought": r["antecedent"], "then also": r["consequent"], "support": r["support"],
         "confidence": r["confidence"], "lift": r["lift"]}
        for r in top
    ]  # fmt: skip
    return (
        _source_line(rules["source"])
        + f"<p>{rules['total']:,} rule(s); the {len(top)} with the highest lift:</p>"
        + chart_block("rules_scatter", "Support and confidence of the top rules", fig)
        + table(rows, css="rules")
    )


def section_recommendations(rec: dict[str, Any] | Unavailable) -> str:
    if isinstance(rec, Unavailable):
        return missing(rec.reason)
    reasons = rec["reasons"]
    if not reasons:
        return _source_line(rec["source"]) + missing("no recommendations for this date")
    fig = figure(6.0, 0.6 + 0.45 * len(reasons))
    ax = fig.add_subplot()
    ax.barh([r["reason"] for r in reasons][::-1], [r["rows"] for r in reasons][::-1], color="#8172b3")
    ax.set(xlabel="recommendations", title="Recommendations by reason")
    return (
        _source_line(rec["source"])
        + f"<p>{rec['customers']:,} customers, {rec['items']:,} distinct items recommended.</p>"
        + chart_block("recommendation_reasons", "Recommendations per reason", fig)
        + table(reasons, css="reasons")
    )


def section_streaming(stream: dict[str, Any] | Unavailable) -> str:
    if isinstance(stream, Unavailable):
        return missing(stream.reason)
    batches = sum(q["batches"] for q in stream["queries"])
    return (
        f"<p class='source'>Latest stream run <code>{esc(stream['run_id'])}</code> "
        f"(ops.stream_progress): {batches:,} micro-batch(es). Input rows are what each query's "
        "source read (files, for a landing folder; silver.events' query reads each twice). Late rows "
        "arrived more than stream.watermark_seconds behind the newest event: not in the stream's silver.</p>"
        + table(stream["queries"], css="streaming")
    )


def section_metrics(steps: list[RunStep], charts: Mapping[str, list[ChartFn]] | None = None) -> str:
    """One block per step: its registered charts, then its metrics as tables."""
    charts = CHARTS if charts is None else charts
    parts = []
    for step in steps:
        blocks = []
        for fn in charts.get(step.job, []):
            try:
                fig = fn(step.metrics)
            except Exception as exc:  # noqa: BLE001 - one odd metric must not cost the whole report
                log.warning("report: chart %s for %s failed: %s", fn.__name__, step.job, exc)
                blocks.append(f"<p class='missing'>Chart {esc(fn.__name__)} could not be drawn: {esc(exc)}</p>")
                continue
            if fig is not None:
                blocks.append(chart_block(f"{step.job}_{fn.__name__}", f"{step.job}: {fn.__name__}", fig))
        body = render_value(step.metrics) if step.metrics else "<p class='muted'>No metrics recorded.</p>"
        parts.append(
            f"<div class='job-metrics' data-job='{esc(step.job)}'><h3>{esc(step.job)}</h3>{''.join(blocks)}{body}</div>"
        )
    return "".join(parts) or missing("the run recorded no steps")


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{esc(title)}</h2>{body}</section>"


def _guarded(render_fn: Callable[[], str]) -> str:
    try:
        return render_fn()
    except Exception as exc:  # noqa: BLE001 - a section that cannot be drawn says why, the rest still renders
        log.exception("report: a section failed to render")
        return missing(f"this section could not be rendered: {type(exc).__name__}: {exc}")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:1rem 2rem}header h1{margin:0 0 .3rem}
nav{padding:.5rem 2rem;background:#e9eef3}nav a{margin-right:1rem}
main{padding:0 2rem 2rem}section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}th,td{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}thead th{background:#f0f3f6}table.kv th{background:#f7f7f7;font-weight:normal}
figure.chart{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}
figure.chart svg{max-width:100%;height:auto}
figcaption{font-size:.8rem;color:#555}.missing{color:#8a5a00;background:#fff6e0;padding:.4rem .6rem}
.muted,.source{color:#666;font-size:.85rem}.note{color:#444}.nested{margin-left:1rem}
"""

# Marks the page once laid out: how many charts have a visible size. Headless tests read
# the attribute from the DOM; nothing is fetched.
SCRIPT = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('figure.chart');
  var drawn = 0;
  charts.forEach(function (c) {
    var g = c.querySelector('svg, img');
    if (g) { var box = g.getBoundingClientRect(); if (box.width > 0 && box.height > 0) { drawn += 1; } }
  });
  document.body.setAttribute('data-charts-drawn', String(drawn));
});
"""

SECTIONS = (
    ("pipeline", "Pipeline summary"),
    ("quality", "Data quality"),
    ("rfm", "RFM heatmap"),
    ("segments", "Segments"),
    ("churn", "Churn"),
    ("rules", "Top association rules"),
    ("recommendations", "Recommendations"),
    ("streaming", "Streaming"),
    ("metrics", "Metrics per job"),
)


def render(data: ReportData, charts: Mapping[str, list[ChartFn]] | None = None) -> str:
    """The report as one HTML document (inline CSS, SVG and a few lines of script)."""
    bodies = {
        "pipeline": lambda: section_pipeline(data),
        "quality": lambda: section_quality(data.quality),
        "rfm": lambda: section_rfm(data.rfm),
        "segments": lambda: section_segments(data.segments),
        "churn": lambda: section_churn(data.churn),
        "rules": lambda: section_rules(data.rules),
        "recommendations": lambda: section_recommendations(data.recommendations),
        "streaming": lambda: section_streaming(data.streaming),
        "metrics": lambda: section_metrics(data.steps, charts),
    }
    nav = "".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t in SECTIONS)
    sections = "".join(_section(a, t, _guarded(bodies[a])) for a, t in SECTIONS)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ShopLake report {esc(data.run_id)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>ShopLake run report</h1><div>run <code>{esc(data.run_id)}</code> - lake "
        f"<code>{esc(data.lake_root)}</code> - generated {esc(_fmt(data.generated_at))} UTC</div></header>"
        f"<nav>{nav}</nav><main>{sections}</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_report(
    spark: SparkSession, cfg: ShopLakeConfig, run_id: str | None = None, out: str | None = None
) -> tuple[str, ReportData]:
    """Collect, render and write the report; returns its path and the data shown.

    Raises:
        InputError: no run log, or ``run_id`` is not in it.
    """
    from common.artifacts import report_path

    data = collect(spark, cfg, run_id)
    path = out or report_path(cfg, "report", f"{data.run_id}.html")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(data))
    log.info("report for run %s written to %s", data.run_id, path)
    return path, data
