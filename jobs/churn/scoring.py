"""Scores as of a date (risk tiers, top contributors) and CLV (BG/NBD x Gamma-Gamma) with its
holdout check."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.feature import StringIndexerModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.btyd import MEAN_SPEND, T_CAL, T_X, GammaGammaParams, X, bgnbd_expected_purchases, fit_gamma_gamma, with_clv
from common.churn_features import (
    BTYD_PERIOD_DAYS,
    btyd_fit_as_of,
)
from common.config import ChurnConfig
from common.tables import (
    GOLD_CLV,
)
from jobs.churn.frame import CONTEXT_COLUMNS, ChurnInputs, build_frame
from jobs.churn.models import raw_scores, score_frame, scoring_part

log = logging.getLogger(__name__)


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
