"""Churn: candidate churn models chosen on validation, honest evaluation, and BTYD-based CLV.

Protocol (all dates inclusive, UTC days; see docs/architecture.md):

- Cutoffs are time-based and ordered: training < validation < test <= as-of, each
  followed by a label window of the same length (``label_days``), so calibration
  fitted at validation means the same thing at test and at the as-of date. Defaults:
  test = as_of - label_days, validation = test - label_days, training = validation -
  label_days. Every label the models and their tuning saw was known by the test cutoff.
- At each cutoff the population is the customers with a purchase in the
  ``activity_days`` before it; ``churned`` = no purchase in the label window after it.
  Features use only data up to the cutoff (common.churn_features), including a BG/NBD
  model fitted on that data (P(alive), expected purchases in the label window).
- Candidates: two baselines without a fitted model (recency; BG/NBD expected
  purchases), a logistic regression and a GBTClassifier (grid). The candidate with the
  best validation ROC-AUC on its raw scores is published, so the job never publishes
  something its best baseline beats on validation.
- Ranking metrics (ROC-AUC, PR-AUC, lift/capture by decile) are computed on raw
  scores; the published candidate's probabilities come from a ranking-preserving
  calibration (Platt or tie-broken isotonic, chosen by cross-validated log-loss on the
  validation rows, common.calibration) and are assessed separately at test.
- The as-of date is scored with the saved pipeline (``model_dir``), which a later run
  can reuse without retraining (``churn.score_with_model``). gold.clv is BG/NBD x
  Gamma-Gamma, fitted on the data up to the as-of date (common.btyd), and the report
  checks BG/NBD on a calibration/holdout split.
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

import numpy as np
import pandas as pd
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, StringIndexer, StringIndexerModel, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import markdown
from common.artifacts import model_dir, report_path
from common.asof import publish_as_of, resolve_as_of
from common.btyd import MEAN_SPEND, T_CAL, T_X, GammaGammaParams, X, bgnbd_expected_purchases, fit_gamma_gamma, with_clv
from common.calibration import bootstrap_auc_difference, fit_calibrator
from common.churn_features import (
    BTYD_FEATURES,
    BTYD_PERIOD_DAYS,
    active_customers,
    btyd_features,
    btyd_fit_as_of,
    churn_labels,
    feature_columns,
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
# Baselines without a fitted model: name -> (column, sign); raw score = sign x column, higher = riskier.
BASELINES = {
    "recency": ("recency_days", 1.0),
    "frequency": ("frequency", -1.0),
    "bgnbd": ("btyd_expected_purchases", -1.0),
    "bgnbd_p_alive": ("btyd_p_alive", -1.0),
}
# The baselines that compete for publication (frequency and P(alive) are reported only).
BASELINE_CANDIDATES = ("recency", "bgnbd")
CANDIDATE_ORDER = (*BASELINE_CANDIDATES, "logistic", "gbt")  # ties on validation go to the simpler
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
    """Training, validation and test cutoffs (configured or derived from ``as_of``), one
    label length (``label_days``) at all three.

    Raises:
        ConfigError: naming the key when ``churn.training_label_days`` differs from
            ``churn.label_days`` (calibration fitted on one label length is wrong for
            another), or when a label window would reach past the next cutoff (the model
            would learn from the period it is tested on) or past as_of.
    """
    if churn.training_label_days is not None and churn.training_label_days != churn.label_days:
        raise ConfigError(
            f"churn.training_label_days={churn.training_label_days} differs from churn.label_days="
            f"{churn.label_days}: labels must have the same length at every cutoff so that probabilities "
            "calibrated at validation hold at test; set churn.training_label_days to null"
        )
    n = churn.label_days
    test = churn.test_cutoff or as_of - timedelta(days=n)
    validation = churn.validation_cutoff or test - timedelta(days=n)
    train = churn.train_cutoff or validation - timedelta(days=n)
    checks = (
        ("churn.train_cutoff", train, validation, "churn.validation_cutoff"),
        ("churn.validation_cutoff", validation, test, "churn.test_cutoff"),
        ("churn.test_cutoff", test, as_of, "gold.as_of"),
    )
    for key, cutoff, limit, limit_key in checks:
        if cutoff + timedelta(days=n) > limit:
            raise ConfigError(
                f"{key}={cutoff}: its {n}-day label window ends {cutoff + timedelta(days=n)}, after "
                f"{limit_key}={limit}; move the cutoff earlier or shorten the label window"
            )
    return Cutoffs(train, validation, test, as_of, n, n)


def history_problem(first_purchase: date | None, cutoffs: Cutoffs) -> str | None:
    """Why the history cannot support this plan (None when it can): the training cutoff
    must come after the first purchase, and the message says which label length fits."""
    if first_purchase is None:
        return "no purchases in silver.orders"
    if cutoffs.train > first_purchase:
        return None
    days = (cutoffs.score - first_purchase).days
    supported = max((days - 1) // 3, 0)
    return (
        f"history {first_purchase}..{cutoffs.score} ({days} days) is too short for {cutoffs.label_days}-day labels "
        f"at the training, validation and test cutoffs (training cutoff {cutoffs.train}); it supports "
        f"churn.label_days <= {supported}"
    )


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
    store.require(SILVER_ORDERS)
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
    """Features (and the label when ``label_days`` is given) of the customers active at ``cutoff``.

    The BG/NBD features look ``churn.label_days`` ahead (the window the label covers)."""
    population = active_customers(inputs.orders, cutoff, churn.activity_days)
    feats = point_in_time_features(
        population, inputs.orders, inputs.events, inputs.customers, cutoff, churn.windows, churn.channels
    ).join(btyd_features(inputs.orders, cutoff, churn.label_days), "user_key", "left")
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
    gbt.setProbabilityCol("model_probability").setRawPredictionCol("gbt_raw")
    return Pipeline(stages=[*indexers, assembler, gbt])


def logistic_pipeline(features: list[str], reg_param: float) -> Pipeline:
    """Standardised numeric features into an L2 logistic regression (class-balancing weights)."""
    assembler = VectorAssembler(inputCols=features, outputCol="lr_features_raw")
    scaler = StandardScaler(inputCol="lr_features_raw", outputCol="lr_features", withMean=True, withStd=True)
    lr = LogisticRegression(
        labelCol=LABEL,
        weightCol="weight",
        featuresCol="lr_features",
        predictionCol="lr_prediction",
        probabilityCol="model_probability",
        rawPredictionCol="lr_raw",
        regParam=reg_param,
        maxIter=200,
    )
    return Pipeline(stages=[assembler, scaler, lr])


def baseline_scorer(name: str) -> PipelineModel:
    """A baseline as a (fit-free) pipeline: ``raw_score`` = sign x its column."""
    column, sign = BASELINES[name]
    return PipelineModel(
        stages=[SQLTransformer(statement=f"SELECT *, CAST({sign!r} * {column} AS DOUBLE) AS raw_score FROM __THIS__")]
    )


def raw_scores(scorer: PipelineModel, df: DataFrame) -> DataFrame:
    """``raw_score`` of a candidate's scoring stages (the positive-class probability of a
    fitted classifier, or the baseline's signed column)."""
    out = scorer.transform(df)
    if "raw_score" not in out.columns:
        out = out.withColumn("raw_score", vector_to_array("model_probability")[1])
    return out


def scoring_part(model: PipelineModel) -> PipelineModel:
    """A published pipeline without its last stage (the calibration map)."""
    return PipelineModel(stages=model.stages[:-1])


def roc_auc(df: DataFrame, score: str) -> float:
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=LABEL, metricName="areaUnderROC")
    return float(evaluator.evaluate(df))


def pr_auc(df: DataFrame, score: str) -> float:
    evaluator = BinaryClassificationEvaluator(rawPredictionCol=score, labelCol=LABEL, metricName="areaUnderPR")
    return float(evaluator.evaluate(df))


def score_frame(model: PipelineModel, df: DataFrame) -> DataFrame:
    """``raw_score`` and the calibrated ``probability`` (clipped to [0, 1]) of a published pipeline."""
    out = model.stages[-1].transform(raw_scores(scoring_part(model), df))
    return out.withColumn("probability", F.least(F.lit(1.0), F.greatest(F.lit(0.0), F.col("probability"))))


def fit_candidates(
    train: DataFrame, validation: DataFrame, features: list[str], categorical: list[str], churn: ChurnConfig
) -> dict[str, dict[str, Any]]:
    """Every candidate's scoring pipeline and validation ROC-AUC (raw scores).

    The baselines have nothing to fit; the logistic regression and the GBT grid are
    trained at the training cutoff with class-balancing weights."""
    out: dict[str, dict[str, Any]] = {}
    for name in BASELINE_CANDIDATES:
        scorer = baseline_scorer(name)
        out[name] = {"scorer": scorer, "validation_roc_auc": roc_auc(raw_scores(scorer, validation), "raw_score")}
    weighted = with_class_weights(train).persist()
    try:
        lr = logistic_pipeline(features, churn.logistic_reg_param).fit(weighted)
        coefficients = lr.stages[-1].coefficients.toArray()
        out["logistic"] = {
            "scorer": lr,
            "validation_roc_auc": roc_auc(raw_scores(lr, validation), "raw_score"),
            "chosen": {"reg_param": churn.logistic_reg_param},
            "importances": sorted(
                ({"feature": n, "importance": round(float(abs(c)), 6)} for n, c in zip(features, coefficients)),
                key=lambda x: (-x["importance"], x["feature"]),
            ),
        }
        grid, tried, best = churn.grid, [], None
        for depth, iters, step in product(grid.max_depth, grid.max_iter, grid.step_size):
            params = {"max_depth": depth, "max_iter": iters, "step_size": step}
            fitted = gbt_pipeline(features, categorical, params, churn.seed).fit(weighted)
            auc = roc_auc(raw_scores(fitted, validation), "raw_score")
            tried.append({**params, "validation_roc_auc": round(auc, 6)})
            if best is None or auc > best[0]:
                best = (auc, params, fitted)
    finally:
        weighted.unpersist()
    assert best is not None
    auc, params, fitted = best
    names = [*features, *categorical]
    out["gbt"] = {
        "scorer": fitted,
        "validation_roc_auc": auc,
        "grid": tried,
        "chosen": params,
        "importances": sorted(
            ({"feature": n, "importance": round(float(v), 6)}
             for n, v in zip(names, fitted.stages[-1].featureImportances.toArray())),
            key=lambda x: (-x["importance"], x["feature"]),
        ),
    }  # fmt: skip
    for name in out:
        out[name]["validation_roc_auc"] = round(out[name]["validation_roc_auc"], 6)
    return out


def choose(candidates: dict[str, dict[str, Any]]) -> str:
    """The candidate with the best validation ROC-AUC (ties: the simpler, in CANDIDATE_ORDER)."""
    ranked = sorted(CANDIDATE_ORDER, key=lambda n: (-candidates[n]["validation_roc_auc"], CANDIDATE_ORDER.index(n)))
    return ranked[0]


def calibrate(scorer: PipelineModel, validation: DataFrame, seed: int) -> tuple[PipelineModel, dict[str, Any]]:
    """The published pipeline: ``scorer`` plus a ranking-preserving calibration map
    (a SQLTransformer of ``raw_score``) fitted on the validation rows."""
    local = raw_scores(scorer, validation).select("raw_score", LABEL).toPandas()
    calibrator = fit_calibrator(local["raw_score"].to_numpy(), local[LABEL].to_numpy(), seed)
    stage = SQLTransformer(statement=f"SELECT *, {calibrator.sql('raw_score')} AS probability FROM __THIS__")
    return PipelineModel(stages=[*scorer.stages, stage]), {"method": calibrator.method, **calibrator.info}


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


def ranking_metrics(scored: DataFrame, score: str = "raw_score") -> dict[str, Any]:
    """ROC-AUC, PR-AUC and the decile table of a raw score (no calibration in between:
    a monotone map with ties would change the ranking being judged)."""
    scored = scored.select("user_key", LABEL, score).persist()
    try:
        return {
            "roc_auc": round(roc_auc(scored, score), 6),
            "pr_auc": round(pr_auc(scored, score), 6),
            "deciles": decile_table(scored, score),
        }
    finally:
        scored.unpersist()


def evaluate(scored: DataFrame) -> dict[str, Any]:
    """Ranking metrics on ``raw_score`` and the calibration table of ``probability``."""
    scored = scored.select("user_key", LABEL, "raw_score", "probability").persist()
    try:
        return {**ranking_metrics(scored), "calibration": calibration_table(scored)}
    finally:
        scored.unpersist()


def summary_row(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The headline test figures of one scorer."""
    deciles = evaluation["deciles"]
    return {
        "roc_auc": evaluation["roc_auc"],
        "pr_auc": evaluation["pr_auc"],
        "top_decile_lift": deciles[0]["lift"],
        "top3_capture": deciles[min(2, len(deciles) - 1)]["capture"],
    }


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
    """Per customer, the features whose value raises the raw score most: each candidate is
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
        raw_scores(scoring_part(model), stacked)
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
    clv = clv_as_of(inputs, churn.clv, as_of).join(
        scores.select("user_key", F.col("probability").alias("churn_probability")), "user_key"
    )
    return scores, clv.select(*(f.name for f in GOLD_CLV.schema.fields if f.name not in ("as_of", "model_version")),
                              F.lit(version).alias("model_version"))  # fmt: skip


def fit_spend(local: pd.DataFrame) -> tuple[GammaGammaParams | None, float]:
    """Gamma-Gamma on the repeat buyers of a driver-side summary, and the fallback spend
    (mean repeat spend, 0 without repeat buyers) used when no valid fit exists: the
    expected spend needs q > 1."""
    repeat = local[(local[X] > 0) & (local[MEAN_SPEND] > 0)]
    fallback = float(repeat[MEAN_SPEND].mean()) if len(repeat) else 0.0
    try:
        gg = fit_gamma_gamma(repeat[X], repeat[MEAN_SPEND])
    except ValueError:
        return None, fallback
    return (gg if gg.q > 1.0 else None), fallback


def clv_as_of(inputs: ChurnInputs, clv_cfg: Any, as_of: date) -> DataFrame:
    """Every customer's CLV terms as of ``as_of`` (BG/NBD and Gamma-Gamma fitted on the
    data up to that day); the caller keeps the scored population."""
    summary, bgnbd, local = btyd_fit_as_of(inputs.orders, as_of)
    if bgnbd is None:
        log.warning("churn: no BG/NBD fit possible as of %s; CLV terms are 0", as_of)
        return summary.select(
            "user_key",
            F.lit(0.0).alias("clv"),
            F.lit(1.0).alias("p_alive"),
            *(F.lit(0.0).alias(c) for c in ("expected_transactions", "discounted_transactions", "expected_spend")),
            F.lit(float(clv_cfg.margin)).alias("margin"),
            F.col(X).alias("repeat_purchases"),
            F.col(T_X).alias("recency_weeks"),
            F.col(T_CAL).alias("age_weeks"),
            MEAN_SPEND,
        )
    gg, fallback = fit_spend(local)
    return with_clv(
        summary,
        bgnbd,
        gg,
        fallback,
        clv_cfg.period_days,
        clv_cfg.horizon_periods,
        clv_cfg.annual_discount_rate,
        clv_cfg.margin,
        BTYD_PERIOD_DAYS,
    ).select(
        "user_key",
        "clv",
        "p_alive",
        "expected_transactions",
        "discounted_transactions",
        "expected_spend",
        "margin",
        F.col(X).alias("repeat_purchases"),
        F.col(T_X).alias("recency_weeks"),
        F.col(T_CAL).alias("age_weeks"),
        MEAN_SPEND,
    )


def clv_validation(orders: DataFrame, calibration_end: date, holdout_end: date) -> dict[str, Any]:
    """BG/NBD fitted on purchases up to ``calibration_end`` against the purchase days each
    of those customers actually made in (calibration_end, holdout_end]: per-customer MAE,
    totals, and actual vs predicted by calibration repeat purchases (0..7+)."""
    summary, params, _ = btyd_fit_as_of(orders, calibration_end)
    if params is None:
        return {"status": "no BG/NBD fit possible"}
    actual = (
        orders.where(F.col("user_key").isNotNull())
        .where(F.lower(F.coalesce("status", F.lit("paid"))) != "cancelled")
        .where(F.to_date("order_time").between(F.lit(calibration_end + timedelta(days=1)), F.lit(holdout_end)))
        .groupBy("user_key")
        .agg(F.countDistinct(F.to_date("order_time")).cast("double").alias("actual"))
    )
    local = (
        summary.join(actual, "user_key", "left")
        .fillna({"actual": 0.0})
        .orderBy("user_key")
        .select(X, T_X, T_CAL, "actual")
        .toPandas()
    )
    weeks = ((holdout_end - calibration_end).days) / BTYD_PERIOD_DAYS
    local["predicted"] = bgnbd_expected_purchases(params, weeks, local[X], local[T_X], local[T_CAL])
    local["group"] = np.minimum(local[X], 7).astype(int)
    by_x = local.groupby("group").agg(n=("actual", "size"), actual=("actual", "mean"), predicted=("predicted", "mean"))
    total_actual, total_predicted = float(local["actual"].sum()), float(local["predicted"].sum())
    return {
        "calibration_end": calibration_end.isoformat(),
        "holdout": [(calibration_end + timedelta(days=1)).isoformat(), holdout_end.isoformat()],
        "customers": len(local),
        "bgnbd": params.as_dict(),
        "mae": round(float(np.abs(local["predicted"] - local["actual"]).mean()), 4),
        "total_actual": round(total_actual, 1),
        "total_predicted": round(total_predicted, 1),
        "total_error": round((total_predicted - total_actual) / total_actual, 4) if total_actual else None,
        "by_repeat_purchases": [
            {"repeat_purchases": f"{g}+" if g == 7 else str(g), "n": int(r.n),
             "actual": round(float(r.actual), 3), "predicted": round(float(r.predicted), 3)}
            for g, r in by_x.iterrows()
        ],
    }  # fmt: skip


# ---------------------------------------------------------------------------- report
def render_report(report: dict[str, Any]) -> str:
    """The evaluation report as Markdown: protocol, candidates, baselines, calibration, CLV check."""
    p, m = report["protocol"], report["model"]
    best, published = report["best_baseline"], report["published"]
    cut = p["cutoffs"]
    candidate_rows = []
    for name, c in report["candidates"].items():
        t = c["test"]
        mark = " (published)" if name == published else ""
        candidate_rows.append([f"{name}{mark}", c["validation_roc_auc"], t["roc_auc"], t["pr_auc"],
                               t["top_decile_lift"], t["top3_capture"]])  # fmt: skip
    baseline_rows = []
    for name, b in report["baselines"].items():
        column, sign = BASELINES[name]
        t = summary_row(b)
        baseline_rows.append([name, f"{'-' if sign < 0 else ''}{column}", t["roc_auc"], t["pr_auc"],
                              t["top_decile_lift"], t["top3_capture"]])  # fmt: skip
    lines = [
        f"# Churn model report, as of {report['as_of']}",
        "",
        f"Model version `{report['model_version']}`; run `{report['run_id']}`.",
        "",
        "## Protocol",
        "",
        f"- Training cutoff {cut['train']}, validation cutoff {cut['validation']}, "
        f"label window {cut['label_days']} days after each (the same length as at test).",
        f"- Test cutoff {cut['test']}: features from data up to the end of that day; "
        f"label window {p['test_label_window'][0]}..{p['test_label_window'][1]} ({cut['label_days']} days).",
        f"- Population at each cutoff: customers with a purchase (order not cancelled) in the "
        f"{p['activity_days']} days up to it. Churned = no purchase in the label window.",
        "- Every label the models or their tuning saw ends on or before the test cutoff (no leakage across time).",
        "- Candidates: recency (days since the last purchase) and BG/NBD (expected purchases in the label window, "
        "fitted on the data up to each cutoff) without a fitted model; a logistic regression; a GBTClassifier "
        f"(grid {p['grid']}, class-balancing weights, BG/NBD P(alive) and expected purchases among its features). "
        "Published: the best validation ROC-AUC on raw scores.",
        "- Ranking metrics (ROC-AUC, PR-AUC, lift, capture) on raw scores; baselines are scored by the same code "
        "on the same test rows. Calibration: a ranking-preserving map (Platt or isotonic with ties broken by the "
        "raw score) chosen by cross-validated log-loss on the validation rows, assessed at test.",
        f"- Rows (churners) per split: {p['rows']}.",
        f"- Profile/segment context used: {p['context'] or 'none (tables absent for the cutoffs)'}.",
        "",
        f"**Published: `{published}`** (validation ROC-AUC {report['candidates'][published]['validation_roc_auc']}). "
        f"Strongest baseline at test: `{best['name']}` (ROC-AUC {best['roc_auc']}); published minus it: "
        f"{best['difference']:+.4f}, bootstrap 95% interval [{best['ci95_low']:+.4f}, {best['ci95_high']:+.4f}] "
        f"({best['samples']} resamples of the test rows).",
        "",
        "## Candidates (validation ROC-AUC; test figures on raw scores)",
        "",
        *markdown.table(
            ["candidate", "validation ROC-AUC", "test ROC-AUC", "test PR-AUC", "lift, top decile",
             "capture, top 3 deciles"],
            candidate_rows,
        ),
        "",
        "## Baselines on the test rows (no fitted model)",
        "",
        *markdown.table(
            ["baseline", "score", "ROC-AUC", "PR-AUC", "lift, top decile", "capture, top 3 deciles"], baseline_rows
        ),
    ]  # fmt: skip
    decile_cols = ["decile", "n", "churners", "churn_rate", "mean_score", "lift", "capture"]
    lines += [
        "",
        f"## Lift and capture by decile (1 = riskiest): published ({published}), raw scores",
        "",
        *markdown.dict_table(m["deciles"], decile_cols),
        "",
        f"## Lift and capture by decile (1 = riskiest): strongest baseline ({best['name']})",
        "",
        *markdown.dict_table(report["baselines"][best["name"]]["deciles"], decile_cols),
        "",
        f"## Calibration (deciles of predicted probability): published, {m['calibration_method']['method']} "
        f"(cross-validated log-loss on validation: {m['calibration_method']['cv_log_loss']})",
        "",
        *markdown.dict_table(m["calibration"], ["bin", "n", "predicted", "observed", "gap"]),
        "",
    ]
    if m.get("importances"):
        lines += [f"## Feature importances ({published})", "", *markdown.dict_table(m["importances"][:20],
                  ["feature", "importance"]), ""]  # fmt: skip
    v = report.get("clv_validation") or {}
    if "total_actual" in v:
        lines += [
            "## CLV check: BG/NBD on a calibration/holdout split",
            "",
            f"- Fitted on purchases up to {v['calibration_end']} ({v['customers']} customers, parameters "
            f"{v['bgnbd']}); holdout {v['holdout'][0]}..{v['holdout'][1]}.",
            f"- Holdout purchase days: predicted {v['total_predicted']}, actual {v['total_actual']} "
            f"(total error {v['total_error']:+.2%}); mean absolute error per customer {v['mae']}.",
            "",
            *markdown.dict_table(v["by_repeat_purchases"], ["repeat_purchases", "n", "actual", "predicted"]),
            "",
        ]
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
    first = inputs.orders.where(F.col("user_key").isNotNull()).agg(F.min(F.to_date("order_time"))).first()[0]
    problem = history_problem(first, cutoffs)
    if problem:
        log.warning("churn: %s; no model trained", problem)
        return _publish_empty(spark, store, result, as_of, f"insufficient_history: {problem}")
    context = context_available(inputs, [cutoffs.train, cutoffs.validation, cutoffs.test, as_of])
    features = [*feature_columns(churn.windows, churn.channels), *BTYD_FEATURES]
    frames = {
        "train": build_frame(inputs, churn, cutoffs.train, context, cutoffs.label_days),
        "validation": build_frame(inputs, churn, cutoffs.validation, context, cutoffs.label_days),
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
            result = _publish_empty(spark, store, result, as_of, f"insufficient_data: {', '.join(short)}")
            result.summary = f"churn as of {as_of}: not enough labelled customers ({rows}); empty scores published"
            return result

        version = model_version(cfg, as_of, inputs.versions)
        candidates = fit_candidates(frames["train"], frames["validation"], features, context, churn)
        published = choose(candidates)
        model, calibration_info = calibrate(candidates[published]["scorer"], frames["validation"], churn.seed)
        test_scored = score_frame(model, frames["test"]).persist()
        model_eval = {
            **evaluate(test_scored),
            "calibration_method": calibration_info,
            **{k: v for k, v in candidates[published].items() if k in ("chosen", "importances", "grid")},
        }
        baselines = {name: ranking_metrics(raw_scores(baseline_scorer(name), frames["test"])) for name in BASELINES}
        for name, c in candidates.items():
            c["test"] = summary_row(
                model_eval if name == published else ranking_metrics(raw_scores(c["scorer"], frames["test"]))
            )
        best_name = max(BASELINES, key=lambda n: (baselines[n]["roc_auc"], -list(BASELINES).index(n)))
        paired = (
            test_scored.select("user_key", LABEL, F.col("raw_score").alias("published"))
            .join(raw_scores(baseline_scorer(best_name), frames["test"]).select("user_key", "raw_score"), "user_key")
            .orderBy("user_key")
            .toPandas()
        )
        test_scored.unpersist()
    finally:
        for v in frames.values():
            v.unpersist()
    best = {
        "name": best_name,
        "roc_auc": baselines[best_name]["roc_auc"],
        **bootstrap_auc_difference(
            paired[LABEL], paired["published"], paired["raw_score"], churn.bootstrap_samples, churn.seed
        ),
    }
    holdout_days = churn.clv.validation_holdout_days or cutoffs.label_days
    clv_check = clv_validation(inputs.orders, as_of - timedelta(days=holdout_days), as_of)

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
        "published": published,
        "model": model_eval,
        # The recency baseline under its historical key (raw days since the last purchase).
        "baseline": {**baselines["recency"], "importances": [{"feature": "recency_days", "importance": 1.0}]},
        "baselines": baselines,
        "candidates": {n: {k: v for k, v in c.items() if k != "scorer"} for n, c in candidates.items()},
        "best_baseline": best,
        "clv_validation": clv_check,
    }
    result.metrics.update(
        {
            "status": "trained",
            "model_version": version,
            "model_path": path,
            "published": published,
            "report": write_report(cfg, report),
            "context_features": context,
            "chosen_params": model_eval.get("chosen", {}),
            "calibration_method": calibration_info["method"],
            "test": {
                "model": summary_row(model_eval),
                "baseline": summary_row(baselines["recency"]),
                "baselines": {n: summary_row(b) for n, b in baselines.items()},
                "candidates": {
                    n: {"validation_roc_auc": c["validation_roc_auc"], **c["test"]} for n, c in candidates.items()
                },
                "best_baseline": best,
                "max_calibration_gap": max(abs(b["gap"]) for b in model_eval["calibration"]),
            },  # fmt: skip
            "clv_validation": {k: clv_check.get(k) for k in ("total_actual", "total_predicted", "total_error", "mae")},
            "top_importances": model_eval.get("importances", [])[:5],
        }
    )
    # The same candidates a later run scoring with the saved model derives (identical rows).
    return _publish(spark, store, cfg, result, model, inputs, as_of, version, _attribution_from(model))


def _publish_empty(spark: SparkSession, store: DeltaStore, result: JobResult, as_of: date, status: str) -> JobResult:
    result.metrics["status"] = status
    for spec in (GOLD_CHURN_SCORES, GOLD_CLV):
        result.outputs[spec.name] = publish_as_of(store, spec, _empty(spark, spec), as_of)
        result.row_counts[spec.name] = 0
    result.summary = f"churn as of {as_of}: {status}; empty scores published"
    return result


def _attribution_from(model: PipelineModel) -> list[str]:
    """Attribution candidates of a loaded model: its numeric inputs by importance (GBT),
    by absolute standardised coefficient (logistic regression), or the baseline's column."""
    sql = [s for s in model.stages[:-1] if isinstance(s, SQLTransformer)]
    if sql:
        return [c for c, _ in BASELINES.values() if f" {c} AS DOUBLE) AS raw_score" in sql[0].getStatement()][:1]
    assembler = next(s for s in model.stages if isinstance(s, VectorAssembler))
    names = assembler.getInputCols()
    gbt = next((s for s in model.stages if hasattr(s, "featureImportances")), None)
    weights = gbt.featureImportances.toArray() if gbt is not None else np.abs(model.stages[-2].coefficients.toArray())
    ranked = sorted(zip(names, weights), key=lambda x: (-x[1], x[0]))
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
    auc = (
        f"; published {result.metrics['published']}, test ROC-AUC {test['model']['roc_auc']} vs best baseline "
        f"{test['best_baseline']['name']} {test['best_baseline']['roc_auc']}"
        if test
        else ""
    )
    result.summary = f"churn as of {as_of}: {sum(tiers.values())} customers scored with {version}{auc}; tiers {tiers}"
    if "report" in result.metrics and os.path.exists(result.metrics["report"]):
        result.summary += f"; report {result.metrics['report']}"
    return result
