"""Ranking metrics on raw scores, deciles and the calibration table."""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.churn.frame import LABEL
from jobs.churn.models import pr_auc, roc_auc


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
