"""The churn job: plan, fit and choose, evaluate, publish (see :mod:`jobs.churn`)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml import PipelineModel
from pyspark.ml.feature import SQLTransformer, VectorAssembler
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.artifacts import model_dir
from common.asof import publish_as_of, resolve_as_of
from common.calibration import bootstrap_auc_difference
from common.churn_features import (
    BTYD_FEATURES,
    feature_columns,
)
from common.config import ChurnConfig, ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    TableSpec,
)
from jobs.churn.evaluation import evaluate, ranking_metrics, summary_row
from jobs.churn.frame import (
    LABEL,
    ChurnInputs,
    Cutoffs,
    build_frame,
    context_available,
    history_problem,
    plan_cutoffs,
    read_inputs,
)
from jobs.churn.models import BASELINES, baseline_scorer, calibrate, choose, fit_candidates, raw_scores, score_frame
from jobs.churn.report import write_report
from jobs.churn.scoring import clv_validation, score_as_of

log = logging.getLogger(__name__)


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
    splits = {"train": cutoffs.train, "validation": cutoffs.validation, "test": cutoffs.test}
    frames = {k: build_frame(inputs, churn, cutoff, context, cutoffs.label_days) for k, cutoff in splits.items()}
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
        trained = _fit_and_test(frames, features, context, churn)
    finally:
        for v in frames.values():
            v.unpersist()
    version = model_version(cfg, as_of, inputs.versions)
    best = _best_baseline(trained, churn.bootstrap_samples, churn.seed)
    holdout_days = churn.clv.validation_holdout_days or cutoffs.label_days
    clv_check = clv_validation(inputs.orders, as_of - timedelta(days=holdout_days), as_of)

    path = model_dir(cfg, "churn", version)
    trained.model.write().overwrite().save(path)
    report = {
        "as_of": as_of.isoformat(),
        "model_version": version,
        "run_id": run_id,
        "protocol": _protocol(cutoffs, churn, rows, context, inputs.versions),
        **_evaluation_report(trained, best, clv_check),
    }
    result.metrics.update(_trained_metrics(trained, best, clv_check, version, path, write_report(cfg, report), context))
    # The same candidates a later run scoring with the saved model derives (identical rows).
    return _publish(spark, store, cfg, result, trained.model, inputs, as_of, version, _attribution_from(trained.model))


@dataclass
class _Trained:
    """The published (calibrated) model and how it, the other candidates and the baselines did at test."""

    model: PipelineModel
    published: str
    calibration_info: dict[str, Any]
    model_eval: dict[str, Any]
    candidates: dict[str, dict[str, Any]]
    baselines: dict[str, dict[str, Any]]
    best_name: str
    # user_key, label, the published and the strongest baseline's raw scores on the test rows.
    paired: pd.DataFrame


def _fit_and_test(
    frames: dict[str, DataFrame], features: list[str], context: list[str], churn: ChurnConfig
) -> _Trained:
    """Fit the candidates on train, publish the best on validation, calibrate it on validation,
    and score it, the other candidates and the baselines on the same test rows."""
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
    return _Trained(model, published, calibration_info, model_eval, candidates, baselines, best_name, paired)


def _best_baseline(trained: _Trained, samples: int, seed: int) -> dict[str, Any]:
    """The strongest baseline at test, and the published model's ROC-AUC minus its (bootstrapped)."""
    paired = trained.paired
    return {
        "name": trained.best_name,
        "roc_auc": trained.baselines[trained.best_name]["roc_auc"],
        **bootstrap_auc_difference(paired[LABEL], paired["published"], paired["raw_score"], samples, seed),
    }


def _protocol(
    cutoffs: Cutoffs, churn: ChurnConfig, rows: dict[str, str], context: list[str], versions: dict[str, int]
) -> dict[str, Any]:
    return {
        "cutoffs": cutoffs.as_dict(),
        "test_label_window": [
            (cutoffs.test + timedelta(days=1)).isoformat(),
            (cutoffs.test + timedelta(days=cutoffs.label_days)).isoformat(),
        ],
        "activity_days": churn.activity_days,
        "grid": churn.grid.model_dump(),
        "rows": rows,
        "context": context,
        "input_versions": versions,
    }


def _evaluation_report(trained: _Trained, best: dict[str, Any], clv_check: dict[str, Any]) -> dict[str, Any]:
    baselines = trained.baselines
    return {
        "published": trained.published,
        "model": trained.model_eval,
        # The recency baseline under its historical key (raw days since the last purchase).
        "baseline": {**baselines["recency"], "importances": [{"feature": "recency_days", "importance": 1.0}]},
        "baselines": baselines,
        "candidates": {n: {k: v for k, v in c.items() if k != "scorer"} for n, c in trained.candidates.items()},
        "best_baseline": best,
        "clv_validation": clv_check,
    }


def _trained_metrics(
    trained: _Trained,
    best: dict[str, Any],
    clv_check: dict[str, Any],
    version: str,
    path: str,
    report: str,
    context: list[str],
) -> dict[str, Any]:
    model_eval, baselines = trained.model_eval, trained.baselines
    return {
        "status": "trained",
        "model_version": version,
        "model_path": path,
        "published": trained.published,
        "report": report,
        "context_features": context,
        "chosen_params": model_eval.get("chosen", {}),
        "calibration_method": trained.calibration_info["method"],
        "test": {
            "model": summary_row(model_eval),
            "baseline": summary_row(baselines["recency"]),
            "baselines": {n: summary_row(b) for n, b in baselines.items()},
            "candidates": {
                n: {"validation_roc_auc": c["validation_roc_auc"], **c["test"]} for n, c in trained.candidates.items()
            },
            "best_baseline": best,
            "max_calibration_gap": max(abs(b["gap"]) for b in model_eval["calibration"]),
        },  # fmt: skip
        "clv_validation": {k: clv_check.get(k) for k in ("total_actual", "total_predicted", "total_error", "mae")},
        "top_importances": model_eval.get("importances", [])[:5],
    }


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
