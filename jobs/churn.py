"""Churn: a calibrated gradient-boosted churn model and customer lifetime value.

Protocol (all dates inclusive, UTC days; see docs/architecture.md):

- Cutoffs are time-based and ordered: training < validation < test <= as-of.
  Defaults derive from the as-of date: test = as_of - label_days (its label
  window ends on the as-of day), validation = test - training_label_days,
  training = validation - training_label_days, so every label the model and its
  tuning saw was known by the test cutoff: nothing leaks from the test period.
- At each cutoff the population is the customers with a purchase in the
  ``activity_days`` before it; ``churned`` = no purchase in the label window
  after it. Features use only data up to the cutoff (common.churn_features).
- A pyspark.ml Pipeline (indexers, assembler, GBTClassifier with class-balancing
  weights) is trained at the training cutoff for each grid point; the one with the
  best validation ROC-AUC wins; an IsotonicRegression on its validation scores
  calibrates it and becomes the pipeline's last stage. The test cutoff is scored
  once, for the report. A recency-only model goes through the same code.
- The as-of date is scored with that saved pipeline (``model_dir``), which a later
  run can reuse without retraining (``churn.score_with_model``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import product
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StringIndexer, StringIndexerModel, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.ml.regression import IsotonicRegression
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.artifacts import model_dir, report_path
from common.asof import publish_as_of, resolve_as_of
from common.churn_features import (
    active_customers,
    churn_labels,
    clv_frame,
    feature_columns,
    orders_as_of,
    point_in_time_features,
)
from common.config import ChurnConfig, ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import ConfigError
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_SEGMENTS,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDERS,
    TableSpec,
)

log = logging.getLogger(__name__)

LABEL = "churned"
BASELINE_FEATURES = ("recency_days",)
# Optional context from the profile and segment jobs: (table, column).
CONTEXT_COLUMNS = ((GOLD_PROFILES, "lifecycle_stage"), (GOLD_PROFILES, "rfm_segment"), (GOLD_SEGMENTS, "segment_id"))


# ---------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Cutoffs:
    train: date
    validation: date
    test: date
    score: date
    training_label_days: int
    label_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": self.train.isoformat(),
            "validation": self.validation.isoformat(),
            "test": self.test.isoformat(),
            "score": self.score.isoformat(),
            "training_label_days": self.training_label_days,
            "label_days": self.label_days,
        }


def plan_cutoffs(churn: ChurnConfig, as_of: date) -> Cutoffs:
    """Training, validation and test cutoffs (configured or derived from ``as_of``).

    Raises:
        ConfigError: naming the key when a label window would reach past the next
            cutoff (the model would learn from the period it is tested on) or past as_of.
    """
    n_train = churn.training_label_days or churn.label_days
    test = churn.test_cutoff or as_of - timedelta(days=churn.label_days)
    validation = churn.validation_cutoff or test - timedelta(days=n_train)
    train = churn.train_cutoff or validation - timedelta(days=n_train)
    checks = (
        ("churn.train_cutoff", train, n_train, validation, "churn.validation_cutoff"),
        ("churn.validation_cutoff", validation, n_train, test, "churn.test_cutoff"),
        ("churn.test_cutoff", test, churn.label_days, as_of, "gold.as_of"),
    )
    for key, cutoff, days, limit, limit_key in checks:
        if cutoff + timedelta(days=days) > limit:
            raise ConfigError(
                f"{key}={cutoff}: its {days}-day label window ends {cutoff + timedelta(days=days)}, after "
                f"{limit_key}={limit}; move the cutoff earlier or shorten the label window"
            )
    return Cutoffs(train, validation, test, as_of, n_train, churn.label_days)


@dataclass
class ChurnInputs:
    orders: DataFrame
    events: DataFrame | None
    customers: DataFrame | None
    profiles: DataFrame | None = None
    segments: DataFrame | None = None
    versions: dict[str, int] = field(default_factory=dict)


def read_inputs(store: DeltaStore) -> ChurnInputs:
    """Silver orders (required), events and customers, gold profiles and segments when present."""
    store.require(SILVER_ORDERS, producer="clean")
    versions: dict[str, int] = {}

    def read(spec: TableSpec) -> DataFrame | None:
        if not store.exists(spec):
            return None
        versions[spec.name] = store.version(spec)
        return store.read(spec)

    return ChurnInputs(
        orders=read(SILVER_ORDERS),
        events=read(SILVER_EVENTS),
        customers=read(SILVER_CUSTOMERS),
        profiles=read(GOLD_PROFILES),
        segments=read(GOLD_SEGMENTS),
        versions=versions,
    )


def context_available(inputs: ChurnInputs, dates: list[date]) -> list[str]:
    """Profile/segment columns usable as features: only when their table holds every
    cutoff date (a feature the training cutoff lacks cannot be learned)."""
    usable = []
    for spec, column in CONTEXT_COLUMNS:
        df = inputs.profiles if spec is GOLD_PROFILES else inputs.segments
        if df is None:
            continue
        present = {r[0] for r in df.where(F.col("as_of").isin(dates)).select("as_of").distinct().collect()}
        if set(dates) <= present:
            usable.append(column)
    return usable


def build_frame(
    inputs: ChurnInputs,
    churn: ChurnConfig,
    cutoff: date,
    context: list[str],
    label_days: int | None = None,
) -> DataFrame:
    """Features (and the label when ``label_days`` is given) of the customers active at ``cutoff``."""
    population = active_customers(inputs.orders, cutoff, churn.activity_days)
    feats = point_in_time_features(
        population, inputs.orders, inputs.events, inputs.customers, cutoff, churn.windows, churn.channels
    )
    for spec, column in CONTEXT_COLUMNS:
        if column in context:
            source = inputs.profiles if spec is GOLD_PROFILES else inputs.segments
            values = source.where(F.col("as_of") == F.lit(cutoff)).select(
                "user_key", F.col(column).cast("string").alias(column)
            )
            feats = feats.join(values, "user_key", "left").fillna({column: "unknown"})
    if label_days is not None:
        feats = feats.join(churn_labels(inputs.orders, population, cutoff, label_days), "user_key")
    return feats


# ---------------------------------------------------------------------------- model
def with_class_weights(df: DataFrame) -> DataFrame:
    """``weight`` = n / (2 x n_class): both classes weigh the same in the loss."""
    counts = {r[0]: r[1] for r in df.groupBy(LABEL).count().collect()}
    n = sum(counts.values())
    weights = {k: n / (2.0 * v) for k, v in counts.items()}
    return df.withColumn("weight", F.when(F.col(LABEL) == 1.0, weights.get(1.0, 1.0)).otherwise(weights.get(0.0, 1.0)))


def gbt_pipeline(features: list[str], categorical: list[str], params: dict[str, Any], seed: int) -> Pipeline:
    indexers = [
        StringIndexer(inputCol=c, outputCol=f"{c}_index", handleInvalid="keep", stringOrderType="alphabetAsc")
        for c in categorical
    ]
    assembler = VectorAssembler(inputCols=[*features, *(f"{c}_index" for c in categorical)], outputCol="features")
    gbt = GBTClassifier(
        labelCol=LABEL,
        weightCol="weight",
        featuresCol="features",
        predictionCol="gbt_prediction",
        maxDepth=params["max_depth"],
        maxIter=params["max_iter"],
        stepSize=params["step_size"],
        maxBins=64,
        featureSubsetStrategy="all",
        seed=seed,
    )
    # Not constructor arguments in pyspark, but Params of the model.
    gbt.setProbabilityCol("gbt_probability").setRawPredictionCol("gbt_raw")
    return Pipeline(stages=[*indexers, assembler, gbt])


def raw_score(df: DataFrame) -> DataFrame:
    return df.withColumn("raw_score", vector_to_array("gbt_probability")[1])


def roc_auc(df: DataFrame, score: str) -> float:
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=LABEL, metricName="areaUnderROC")
    return float(evaluator.evaluate(df))


def pr_auc(df: DataFrame, score: str) -> float:
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=LABEL, metricName="areaUnderPR")
    return float(evaluator.evaluate(df))


def score_frame(model: PipelineModel, df: DataFrame) -> DataFrame:
    """Calibrated ``probability`` (clipped to [0, 1]) and the GBT's ``raw_score``."""
    out = raw_score(model.transform(df))
    return out.withColumn("probability", F.least(F.lit(1.0), F.greatest(F.lit(0.0), F.col("calibrated"))))


def train_calibrated(
    train: DataFrame, validation: DataFrame, features: list[str], categorical: list[str], churn: ChurnConfig
) -> tuple[PipelineModel, dict[str, Any]]:
    """Grid search on the validation cutoff, then isotonic calibration on its scores."""
    weighted = with_class_weights(train).persist()
    grid = churn.grid
    tried = []
    best: tuple[float, dict[str, Any], PipelineModel] | None = None
    for depth, iters, step in product(grid.max_depth, grid.max_iter, grid.step_size):
        params = {"max_depth": depth, "max_iter": iters, "step_size": step}
        fitted = gbt_pipeline(features, categorical, params, churn.seed).fit(weighted)
        auc = roc_auc(raw_score(fitted.transform(validation)), "raw_score")
        tried.append({**params, "validation_roc_auc": round(auc, 6)})
        if best is None or auc > best[0]:
            best = (auc, params, fitted)
    weighted.unpersist()
    assert best is not None
    _, params, fitted = best
    isotonic = IsotonicRegression(
        featuresCol="gbt_probability", featureIndex=1, labelCol=LABEL, predictionCol="calibrated", isotonic=True
    ).fit(fitted.transform(validation))
    model = PipelineModel(stages=[*fitted.stages, isotonic])
    gbt = fitted.stages[-1]
    names = [*features, *categorical]
    importances = sorted(
        ({"feature": n, "importance": round(float(v), 6)} for n, v in zip(names, gbt.featureImportances.toArray())),
        key=lambda x: (-x["importance"], x["feature"]),
    )
    return model, {"grid": tried, "chosen": params, "importances": importances}


# ---------------------------------------------------------------------------- evaluation
def decile_table(scored: DataFrame, score: str = "probability") -> list[dict[str, Any]]:
    """Lift and capture by decile of ``score`` (decile 1 = riskiest; ties broken by user_key)."""
    ranked = scored.withColumn("decile", F.ntile(10).over(Window.orderBy(F.col(score).desc(), "user_key")))
    rows = (
        ranked.groupBy("decile")
        .agg(F.count("*").alias("n"), F.sum(LABEL).alias("churners"), F.avg(score).alias("mean_score"))
        .orderBy("decile")
        .collect()
    )
    total = sum(r.n for r in rows)
    churners = sum(r.churners for r in rows)
    base = churners / total if total else 0.0
    out, cumulative = [], 0.0
    for r in rows:
        cumulative += r.churners
        rate = r.churners / r.n
        out.append(
            {
                "decile": r.decile,
                "n": r.n,
                "churners": int(r.churners),
                "churn_rate": round(rate, 4),
                "mean_score": round(float(r.mean_score), 4),
                "lift": round(rate / base, 3) if base else None,
                "capture": round(cumulative / churners, 4) if churners else None,
            }
        )
    return out


def calibration_table(scored: DataFrame, score: str = "probability") -> list[dict[str, Any]]:
    """Per decile of predicted probability (1 = lowest): mean prediction vs observed churn rate.

    Equal predictions share a bin (a customer's bin is where the first of their tie
    group would fall): isotonic calibration outputs steps, and splitting a step
    between two bins by user_key would make the observed rates depend on the
    pseudonyms. A bin can therefore hold more or less than a tenth, and a step wider
    than a tenth leaves the bins it covers empty (they are not listed)."""
    ordered = Window.orderBy(F.col(score))
    everyone = Window.partitionBy()
    ranked = scored.withColumn(
        "bin", (F.floor((F.rank().over(ordered) - 1) * 10 / F.count("*").over(everyone)) + 1).cast("int")
    )
    rows = (
        ranked.groupBy("bin")
        .agg(F.count("*").alias("n"), F.avg(score).alias("predicted"), F.avg(LABEL).alias("observed"))
        .orderBy("bin")
        .collect()
    )
    return [
        {
            "bin": r.bin,
            "n": r.n,
            "predicted": round(float(r.predicted), 4),
            "observed": round(float(r.observed), 4),
            "gap": round(float(r.observed - r.predicted), 4),
        }
        for r in rows
    ]


def evaluate(scored: DataFrame) -> dict[str, Any]:
    scored = scored.select("user_key", LABEL, "probability").persist()
    try:
        return {
            "roc_auc": round(roc_auc(scored, "probability"), 6),
            "pr_auc": round(pr_auc(scored, "probability"), 6),
            "deciles": decile_table(scored),
            "calibration": calibration_table(scored),
        }
    finally:
        scored.unpersist()


# ---------------------------------------------------------------------------- scoring
def risk_tier(churn: ChurnConfig, rank: str = "risk_rank") -> F.Column:
    """Tier from configured thresholds, or 'high' for exactly the ``high_risk_capacity`` riskiest."""
    tiers = sorted(churn.risk_thresholds.items(), key=lambda kv: -kv[1])
    expr = None
    for name, low in tiers:
        if churn.high_risk_capacity and name == "high":
            continue
        cond = F.col("probability") >= F.lit(low)
        expr = F.when(cond, F.lit(name)) if expr is None else expr.when(cond, F.lit(name))
    expr = F.lit("low") if expr is None else expr.otherwise(F.lit("low"))
    if churn.high_risk_capacity:
        return F.when(F.col(rank) <= churn.high_risk_capacity, F.lit("high")).otherwise(expr)
    return expr


def top_contributors(model: PipelineModel, feats: DataFrame, candidates: list[str], top_n: int) -> DataFrame:
    """Per customer, the features whose value raises the GBT score most: each candidate is
    set to the population median in turn and the drop in raw score measured (one
    transform of the stacked variants, no Python UDF)."""
    if not candidates or top_n == 0:
        return feats.select("user_key", F.array().cast("array<string>").alias("top_features"))
    medians = feats.agg(*(F.percentile_approx(c, 0.5, 10000).alias(c) for c in candidates)).first().asDict()
    variants = [feats.withColumn("variant", F.lit(""))]
    for c in candidates:
        variants.append(feats.withColumn(c, F.lit(float(medians[c]))).withColumn("variant", F.lit(c)))
    stacked = variants[0]
    for v in variants[1:]:
        stacked = stacked.unionByName(v)
    scored = (
        raw_score(model.transform(stacked))
        .groupBy("user_key")
        .pivot("variant", ["", *candidates])
        .agg(F.first("raw_score"))
    )
    deltas = F.array(*(F.struct((F.col("``") - F.col(f"`{c}`")).alias("delta"), F.lit(c).alias("name"))
                       for c in candidates))  # fmt: skip
    positive = F.filter(F.sort_array(deltas, asc=False), lambda s: s["delta"] > 1e-9)
    return scored.select(
        "user_key", F.transform(F.slice(positive, 1, top_n), lambda s: s["name"]).alias("top_features")
    )


def score_as_of(
    model: PipelineModel,
    inputs: ChurnInputs,
    churn: ChurnConfig,
    as_of: date,
    version: str,
    attribution: list[str],
    cached: list[DataFrame],
) -> tuple[DataFrame, DataFrame]:
    """(gold.churn_scores rows, gold.clv rows) for the customers active at ``as_of``."""
    indexed = {s.getInputCol() for s in model.stages if isinstance(s, StringIndexerModel)}
    context = [c for _, c in CONTEXT_COLUMNS if c in indexed]
    feats = build_frame(inputs, churn, as_of, context).persist()
    cached.append(feats)
    scored = score_frame(model, feats)
    rank = Window.orderBy(F.col("probability").desc(), "user_key")
    scores = (
        scored.withColumn("risk_rank", F.row_number().over(rank))
        .join(top_contributors(model, feats, attribution, churn.top_features), "user_key")
        .select(
            "user_key",
            "probability",
            risk_tier(churn).alias("risk_tier"),
            F.lit(version).alias("model_version"),
            "top_features",
            "raw_score",
        )
    ).persist()
    cached.append(scores)
    recent = (
        orders_as_of(inputs.orders, as_of)
        .where(F.col("is_purchase") & (F.col("days_ago") < churn.activity_days))
        .groupBy("user_key")
        .agg(F.count("*").cast("double").alias("recent_orders"))
    )
    clv_cfg = churn.clv
    clv = clv_frame(
        scores.select("user_key", "probability")
        .join(feats.select("user_key", "frequency", "monetary"), "user_key")
        .join(recent, "user_key", "left")
        .fillna({"recent_orders": 0.0}),
        label_days=churn.label_days,
        period_days=clv_cfg.period_days,
        horizon_periods=clv_cfg.horizon_periods,
        annual_discount_rate=clv_cfg.annual_discount_rate,
        margin=clv_cfg.margin,
        activity_days=churn.activity_days,
    ).select(
        "user_key",
        "clv",
        F.col("probability").alias("churn_probability"),
        "expected_orders_per_period",
        "avg_margin",
        "survival_per_period",
        F.lit(version).alias("model_version"),
    )
    return scores, clv


# ---------------------------------------------------------------------------- report
def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in columns) + " |" for r in rows]
    return lines


def render_report(report: dict[str, Any]) -> str:
    """The evaluation report as Markdown: protocol, then model and baseline side by side."""
    p, m, b = report["protocol"], report["model"], report["baseline"]
    lines = [
        f"# Churn model report, as of {report['as_of']}",
        "",
        f"Model version `{report['model_version']}`; run `{report['run_id']}`.",
        "",
        "## Protocol",
        "",
        f"- Training cutoff {p['cutoffs']['train']}, validation cutoff {p['cutoffs']['validation']}, "
        f"label window {p['cutoffs']['training_label_days']} days after each.",
        f"- Test cutoff {p['cutoffs']['test']}: features from data up to the end of that day; "
        f"label window {p['test_label_window'][0]}..{p['test_label_window'][1]} ({p['cutoffs']['label_days']} days).",
        f"- Population at each cutoff: customers with a purchase (order not cancelled) in the "
        f"{p['activity_days']} days up to it. Churned = no purchase in the label window.",
        "- Every label the model or its tuning saw ends on or before the test cutoff (no leakage across time).",
        f"- Model: GBTClassifier in a Pipeline, class-balancing weights, grid {p['grid']} tuned on "
        "validation ROC-AUC, isotonic calibration fitted on the validation scores.",
        "- Baseline: the same code (pipeline, weights, tuning, calibration, evaluation) with recency_days as "
        "its only feature.",
        f"- Rows (churners) per split: {p['rows']}.",
        f"- Profile/segment context used: {p['context'] or 'none (tables absent for the cutoffs)'}.",
        "",
        "## Test metrics",
        "",
        "| metric | model | recency baseline |",
        "|---|---|---|",
        f"| ROC-AUC | {m['roc_auc']} | {b['roc_auc']} |",
        f"| PR-AUC | {m['pr_auc']} | {b['pr_auc']} |",
        f"| lift, top decile | {m['deciles'][0]['lift']} | {b['deciles'][0]['lift']} |",
        f"| capture, top 3 deciles | {m['deciles'][min(2, len(m['deciles']) - 1)]['capture']} | "
        f"{b['deciles'][min(2, len(b['deciles']) - 1)]['capture']} |",
        f"| chosen parameters | {m['chosen']} | {b['chosen']} |",
        "",
    ]
    for title, key, cols in (
        ("Lift and capture by decile (1 = riskiest)", "deciles",
         ["decile", "n", "churners", "churn_rate", "mean_score", "lift", "capture"]),
        ("Calibration (deciles of predicted probability)", "calibration", ["bin", "n", "predicted", "observed", "gap"]),
    ):  # fmt: skip
        for name, part in (("Model", m), ("Recency baseline", b)):
            lines += [f"## {title}: {name}", "", *_table(part[key], cols), ""]
    lines += ["## Feature importances (model)", "", *_table(m["importances"][:20], ["feature", "importance"]), ""]
    return "\n".join(lines)


def write_report(cfg: ShopLakeConfig, report: dict[str, Any]) -> str:
    path = report_path(cfg, "churn", f"churn_report_{report['as_of']}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_report(report))
    with open(path.removesuffix(".md") + ".json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True, default=str)
    return path


# ---------------------------------------------------------------------------- job
def model_version(cfg: ShopLakeConfig, as_of: date, versions: dict[str, int]) -> str:
    """Deterministic: the same inputs and parameters give the same version (idempotent runs)."""
    basis = json.dumps({"churn": cfg.churn.model_dump(mode="json"), "inputs": versions}, sort_keys=True)
    return f"{as_of.isoformat()}-{hashlib.sha256(basis.encode()).hexdigest()[:10]}"


def _empty(spark: SparkSession, spec: TableSpec) -> DataFrame:
    schema = T.StructType([f for f in spec.schema.fields if f.name != "as_of"])
    return spark.createDataFrame([], schema)


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Train, evaluate and save the churn model as of ``gold.as_of``; score and value customers."""
    run_id = run_id or new_run_id("churn")
    store = store or open_store(spark, cfg)
    churn = cfg.churn
    result = JobResult("churn", run_id)
    as_of = resolve_as_of(store, cfg)
    inputs = read_inputs(store)
    result.inputs = dict(inputs.versions)
    result.metrics["as_of"] = as_of.isoformat()

    if churn.score_with_model:
        version = churn.score_with_model
        model = PipelineModel.load(model_dir(cfg, "churn", version))
        result.metrics.update({"status": "scored_with_saved_model", "model_version": version})
        return _publish(spark, store, cfg, result, model, inputs, as_of, version, _attribution_from(model))

    cutoffs = plan_cutoffs(churn, as_of)
    result.metrics["cutoffs"] = cutoffs.as_dict()
    context = context_available(inputs, [cutoffs.train, cutoffs.validation, cutoffs.test, as_of])
    features = feature_columns(churn.windows, churn.channels)
    frames = {
        "train": build_frame(inputs, churn, cutoffs.train, context, cutoffs.training_label_days),
        "validation": build_frame(inputs, churn, cutoffs.validation, context, cutoffs.training_label_days),
        "test": build_frame(inputs, churn, cutoffs.test, context, cutoffs.label_days),
    }
    frames = {k: v.persist() for k, v in frames.items()}
    try:
        counts = {k: {r[0]: r[1] for r in v.groupBy(LABEL).count().collect()} for k, v in frames.items()}
        rows = {k: f"{sum(c.values())} ({int(c.get(1.0, 0))})" for k, c in counts.items()}
        result.metrics["rows"] = {
            k: {"rows": sum(c.values()), "churners": int(c.get(1.0, 0))} for k, c in counts.items()
        }
        short = [k for k, c in counts.items() if min(c.get(0.0, 0), c.get(1.0, 0)) < churn.min_class_rows]
        if short:
            # Too little history (a new shop, a tiny sample): say so, publish empty scores.
            log.warning("churn: splits %s have fewer than %s churners or stayers; no model trained", short,
                        churn.min_class_rows)  # fmt: skip
            result.metrics["status"] = f"insufficient_data: {', '.join(short)}"
            for spec in (GOLD_CHURN_SCORES, GOLD_CLV):
                result.outputs[spec.name] = publish_as_of(store, spec, _empty(spark, spec), as_of)
                result.row_counts[spec.name] = 0
            result.summary = f"churn as of {as_of}: not enough labelled customers ({rows}); empty scores published"
            return result

        version = model_version(cfg, as_of, inputs.versions)
        model, fit = train_calibrated(frames["train"], frames["validation"], features, context, churn)
        base_model, base_fit = train_calibrated(
            frames["train"], frames["validation"], list(BASELINE_FEATURES), [], churn
        )
        model_eval = {**evaluate(score_frame(model, frames["test"])), **fit}
        base_eval = {**evaluate(score_frame(base_model, frames["test"])), **base_fit}
    finally:
        for v in frames.values():
            v.unpersist()

    path = model_dir(cfg, "churn", version)
    model.write().overwrite().save(path)
    report = {
        "as_of": as_of.isoformat(),
        "model_version": version,
        "run_id": run_id,
        "protocol": {
            "cutoffs": cutoffs.as_dict(),
            "test_label_window": [
                (cutoffs.test + timedelta(days=1)).isoformat(),
                (cutoffs.test + timedelta(days=cutoffs.label_days)).isoformat(),
            ],
            "activity_days": churn.activity_days,
            "grid": churn.grid.model_dump(),
            "rows": rows,
            "context": context,
            "input_versions": inputs.versions,
        },
        "model": model_eval,
        "baseline": base_eval,
    }
    result.metrics.update(
        {
            "status": "trained",
            "model_version": version,
            "model_path": path,
            "report": write_report(cfg, report),
            "context_features": context,
            "chosen_params": fit["chosen"],
            "test": {
                "model": {k: model_eval[k] for k in ("roc_auc", "pr_auc")}
                | {"top_decile_lift": model_eval["deciles"][0]["lift"]},
                "baseline": {k: base_eval[k] for k in ("roc_auc", "pr_auc")}
                | {"top_decile_lift": base_eval["deciles"][0]["lift"]},
            },
            "top_importances": fit["importances"][:5],
        }
    )
    # The same candidates a later run scoring with the saved model derives (identical rows).
    return _publish(spark, store, cfg, result, model, inputs, as_of, version, _attribution_from(model))


def _attribution_from(model: PipelineModel) -> list[str]:
    """Attribution candidates of a loaded model: its numeric inputs by importance."""
    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    gbt = next(s for s in model.stages if hasattr(s, "featureImportances"))
    names = assembler.getInputCols()
    ranked = sorted(zip(names, gbt.featureImportances.toArray()), key=lambda x: (-x[1], x[0]))
    return [n for n, _ in ranked if not n.endswith("_index")]


def _publish(
    spark: SparkSession,
    store: DeltaStore,
    cfg: ShopLakeConfig,
    result: JobResult,
    model: PipelineModel,
    inputs: ChurnInputs,
    as_of: date,
    version: str,
    attribution: list[str],
) -> JobResult:
    cached: list[DataFrame] = []
    try:
        scores, clv = score_as_of(
            model, inputs, cfg.churn, as_of, version, attribution[: cfg.churn.attribution_features], cached
        )
        result.outputs[GOLD_CHURN_SCORES.name] = publish_as_of(store, GOLD_CHURN_SCORES, scores, as_of)
        result.outputs[GOLD_CLV.name] = publish_as_of(store, GOLD_CLV, clv, as_of)
        tiers = {r[0]: r[1] for r in scores.groupBy("risk_tier").count().collect()}
    finally:
        for df in cached:
            df.unpersist()
    result.row_counts[GOLD_CHURN_SCORES.name] = sum(tiers.values())
    result.row_counts[GOLD_CLV.name] = sum(tiers.values())
    result.metrics["risk_tiers"] = tiers
    test = result.metrics.get("test")
    auc = f"; test ROC-AUC {test['model']['roc_auc']} vs recency {test['baseline']['roc_auc']}" if test else ""
    result.summary = f"churn as of {as_of}: {sum(tiers.values())} customers scored with {version}{auc}; tiers {tiers}"
    if "report" in result.metrics and os.path.exists(result.metrics["report"]):
        result.summary += f"; report {result.metrics['report']}"
    return result
