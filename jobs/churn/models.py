"""The churn candidates (baselines, logistic regression, GBT), their fitting and choice on
validation, and the calibration of the published one."""

from __future__ import annotations

from itertools import product
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.calibration import fit_calibrator
from common.config import ChurnConfig
from jobs.churn.frame import LABEL

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


def varying_features(df: DataFrame, features: list[str]) -> list[str]:
    """The features that vary in ``df`` beyond rounding noise, in their order.

    Standardising a feature that is constant up to rounding divides later values by that
    noise: when the training cutoff's BG/NBD fit has no dropout, P(alive) is 1 for everyone
    (standard deviation 1.7e-14), and the logistic regression then ranked the validation
    rows by P(alive) alone (ROC-AUC 0.377 on the churn test shop; 0.842 without it).
    """
    stats = df.select(
        *(F.stddev_pop(f).alias(f"sd{i}") for i, f in enumerate(features)),
        *(F.avg(f).alias(f"mean{i}") for i, f in enumerate(features)),
    ).first()
    return [
        f for i, f in enumerate(features)
        if (stats[f"sd{i}"] or 0.0) > 1e-9 * max(1.0, abs(stats[f"mean{i}"] or 0.0))
    ]  # fmt: skip


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
        varying = varying_features(weighted, features)
        lr = logistic_pipeline(varying, churn.logistic_reg_param).fit(weighted)
        coefficients = lr.stages[-1].coefficients.toArray()
        out["logistic"] = {
            "scorer": lr,
            "validation_roc_auc": roc_auc(raw_scores(lr, validation), "raw_score"),
            "chosen": {
                "reg_param": churn.logistic_reg_param,
                "constant_in_training": [f for f in features if f not in varying],
            },
            "importances": sorted(
                ({"feature": n, "importance": round(float(abs(c)), 6)} for n, c in zip(varying, coefficients)),
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
