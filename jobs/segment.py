"""Segment: gold.profiles -> gold.segments and gold.segment_summary (k-means).

The customers of one as-of date are clustered on configured profile features:
nulls count as 0, skewed amounts are taken as ln(1 + x), everything is
standardised, and k-means runs with a fixed seed for every k in
[``segment.k_min``, ``segment.k_max``]; each fit keeps the cheapest of
``segment.restarts`` runs (:func:`fit_kmeans`). The k with the best silhouette
wins; the within-cluster cost per k (the elbow curve) is reported beside it.
Stability is the mean pairwise adjusted Rand index of fits with other seeds at that k.

Segment ids are ordered by size (largest 0), names come from the centroid's
coordinates in standard deviations from the population mean (e.g. "frequent,
high spend, recent"), and the fitted pipeline (feature SQL, assembler, scaler,
k-means, id and name mapping) is saved under ``models/segment/<version>``: loading
it and calling ``transform`` on gold.profiles rows scores new customers without
refitting (:func:`score`).
"""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common.artifacts import model_dir
from common.asof import publish_as_of, resolve_as_of
from common.clustering import adjusted_rand_index
from common.config import SegmentConfig, ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import ConfigError, InputError
from common.runlog import JobResult, new_run_id
from common.tables import GOLD_PROFILES, GOLD_SEGMENT_SUMMARY, GOLD_SEGMENTS

log = logging.getLogger(__name__)

FEATURES_COL = "_features"
SCALED_COL = "_scaled"
CLUSTER_COL = "_cluster"
CONCURRENT_FITS = 4  # k-means restarts submitted at once (threads of the driver)

# How a centroid coordinate reads: (above the population, below it).
FEATURE_WORDS = {
    "frequency": ("frequent", "rarely buys"),
    "monetary": ("high spend", "low spend"),
    "avg_order_value": ("big baskets", "small baskets"),
    "recency_days": ("lapsed", "recent"),
    "views": ("heavy browsing", "light browsing"),
    "sessions": ("many visits", "few visits"),
    "add_to_carts": ("fills carts", "few carts"),
    "view_to_purchase_rate": ("converts", "browses without buying"),
    "cart_abandonment_rate": ("abandons carts", "completes carts"),
    "discount_order_share": ("discount-driven", "pays full price"),
    "night_share": ("night shopper", "daytime shopper"),
    "registration_days": ("long-standing", "recently joined"),
    "brand_loyalty_index": ("brand loyal", "brand hopping"),
    "refund_amount": ("refunds a lot", "rarely refunds"),
}


def _words(feature: str) -> tuple[str, str]:
    return FEATURE_WORDS.get(feature, (f"high {feature}", f"low {feature}"))


def feature_sql(features: list[str], log_features: list[str]) -> str:
    """The SQLTransformer statement adding one ``_f_<feature>`` column per feature:
    nulls as 0, ln(1 + max(x, 0)) for the skewed ones."""
    parts = []
    for name in features:
        value = f"coalesce(CAST(`{name}` AS DOUBLE), 0D)"
        if name in log_features:
            value = f"ln(1D + greatest({value}, 0D))"
        parts.append(f"{value} AS `_f_{name}`")
    return f"SELECT *, {', '.join(parts)} FROM __THIS__"


def preparation(cfg: SegmentConfig) -> Pipeline:
    """Feature SQL, assembler and scaler: the unfitted first half of the model."""
    return Pipeline(
        stages=[
            SQLTransformer(statement=feature_sql(cfg.features, cfg.log_features)),
            VectorAssembler(inputCols=[f"_f_{f}" for f in cfg.features], outputCol=FEATURES_COL),
            StandardScaler(inputCol=FEATURES_COL, outputCol=SCALED_COL, withMean=True, withStd=True),
        ]
    )


def kmeans(k: int, seed: int, max_iter: int) -> KMeans:
    return KMeans(
        k=k, seed=seed, maxIter=max_iter, featuresCol=SCALED_COL, predictionCol=CLUSTER_COL, initMode="k-means||"
    )


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The seeds of one fit's k-means runs: ``seed`` itself first (one restart is a plain
    k-means run), then ``seed * 1000 + r``."""
    return [seed] + [seed * 1000 + r for r in range(1, restarts)]


def fit_kmeans(data: DataFrame, k: int, seed: int, cfg: SegmentConfig) -> KMeansModel:
    """The lowest-cost of ``cfg.restarts`` k-means runs at ``k``: each run stops in the local
    optimum its initial centres lead to, so one run's answer depends on the seed.

    The runs are submitted from a few threads at once: on small data a fit is mostly
    job scheduling, which overlaps (1.7x faster with four threads on two cores); the
    result does not depend on the order they finish in."""
    seeds = restart_seeds(seed, cfg.restarts)
    with ThreadPoolExecutor(max_workers=min(len(seeds), CONCURRENT_FITS)) as pool:
        models = list(pool.map(lambda s: kmeans(k, s, cfg.max_iter).fit(data), seeds))
    return min(models, key=lambda m: m.summary.trainingCost)


def describe_centroid(features: list[str], centre: list[float], threshold: float, terms: int) -> tuple[str, str]:
    """(name, description) of a centroid given in standard deviations from the population
    mean: the name lists the ``terms`` strongest coordinates beyond ``threshold``."""
    ranked = sorted(zip(features, centre, strict=True), key=lambda fc: (-abs(fc[1]), fc[0]))
    strong = [(f, c) for f, c in ranked if abs(c) >= threshold]
    words = [_words(f)[0 if c > 0 else 1] for f, c in strong[:terms]]
    name = ", ".join(words) if words else "typical"
    detail = ", ".join(f"{f} {c:+.2f} sd" for f, c in ranked)
    return name, detail


def label_clusters(
    features: list[str], centres: list[list[float]], sizes: dict[int, int], threshold: float, terms: int
) -> dict[int, dict[str, Any]]:
    """Per raw k-means cluster: stable ``segment_id`` (by size, largest 0, ties by centroid),
    unique ``name`` and ``description``."""
    order = sorted(range(len(centres)), key=lambda c: (-sizes.get(c, 0), [round(x, 9) for x in centres[c]]))
    labels: dict[int, dict[str, Any]] = {}
    seen: dict[str, int] = {}
    for segment_id, cluster in enumerate(order):
        name, detail = describe_centroid(features, centres[cluster], threshold, terms)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name} ({seen[name]})"
        labels[cluster] = {"segment_id": segment_id, "name": name, "description": detail}
    return labels


def naming_stage(labels: dict[int, dict[str, Any]]) -> SQLTransformer:
    """A pipeline stage mapping the raw cluster to ``segment_id`` and ``segment_name``, so the
    saved model outputs the published ids and names."""

    def quote(text: str) -> str:
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    ids = " ".join(f"WHEN {c} THEN {v['segment_id']}" for c, v in sorted(labels.items()))
    names = " ".join(f"WHEN {c} THEN {quote(v['name'])}" for c, v in sorted(labels.items()))
    return SQLTransformer(
        statement=f"SELECT *, CAST(CASE `{CLUSTER_COL}` {ids} END AS INT) AS segment_id, "
        f"CASE `{CLUSTER_COL}` {names} END AS segment_name FROM __THIS__"
    )


def score(model: PipelineModel, profiles: DataFrame) -> DataFrame:
    """``user_key, segment_id, segment_name`` for gold.profiles rows with a fitted (or loaded) model."""
    return model.transform(profiles).select("user_key", "segment_id", "segment_name")


def check_features(cfg: SegmentConfig) -> None:
    unknown = [f for f in cfg.features if f not in GOLD_PROFILES.columns]
    if unknown:
        raise ConfigError(f"segment.features: {unknown} are not gold.profiles columns ({list(GOLD_PROFILES.columns)})")


def fit_segments(spark: SparkSession, profiles: DataFrame, cfg: SegmentConfig) -> tuple[PipelineModel, dict[str, Any]]:
    """Fit the segmentation on ``profiles`` (one as-of date): k by silhouette, stability across
    seeds, named clusters. Returns the full pipeline model and the facts to report."""
    prep = preparation(cfg).fit(profiles)
    raw = [f"_f_{f}" for f in cfg.features]
    data = prep.transform(profiles).select("user_key", SCALED_COL, *raw).persist()
    try:
        n = data.count()
        distinct = data.select(*raw).distinct().limit(cfg.k_max + 1).count()
        # Fewer distinct points than k cannot make k clusters; tiny lakes get what they can.
        k_high = min(cfg.k_max, distinct)
        k_low = min(cfg.k_min, k_high)
        evaluator = ClusteringEvaluator(featuresCol=SCALED_COL, predictionCol=CLUSTER_COL)
        silhouette: dict[int, float] = {}
        cost: dict[int, float] = {}
        fits = {}
        for k in range(max(k_low, 2), k_high + 1):
            model = fit_kmeans(data, k, cfg.seed, cfg)
            predicted = model.transform(data)
            clusters = predicted.select(CLUSTER_COL).distinct().count()
            cost[k] = round(float(model.summary.trainingCost), 6)
            silhouette[k] = round(float(evaluator.evaluate(predicted)), 6) if clusters > 1 else float("nan")
            fits[k] = model
        scored = {k: s for k, s in silhouette.items() if s == s}  # NaN: one cluster only
        if scored:
            best_k = max(scored, key=lambda k: (scored[k], -k))
            best = fits[best_k]
        else:  # one distinct point (or none): a single segment
            best_k = 1
            best = fit_kmeans(data, 1, cfg.seed, cfg) if n else None
        stability, pair_ari = _stability(data, best_k, cfg) if n and best_k > 1 else (1.0, [])
        if best is None:
            raise InputError("segment: gold.profiles holds no customers to segment for this date")
        centres = [[float(x) for x in c] for c in best.clusterCenters()]
        sizes = {r[0]: r[1] for r in best.transform(data).groupBy(CLUSTER_COL).count().collect()}
    finally:
        data.unpersist()
    labels = label_clusters(cfg.features, centres, sizes, cfg.name_threshold, cfg.name_terms)
    model = PipelineModel(stages=[*prep.stages, best, naming_stage(labels)])
    facts = {
        "customers": n,
        "k_range": [cfg.k_min, cfg.k_max],
        "k_evaluated": sorted(silhouette),
        "silhouette": {str(k): (v if v == v else None) for k, v in sorted(silhouette.items())},
        "elbow_cost": {str(k): v for k, v in sorted(cost.items())},
        "k": best_k,
        "chosen_silhouette": silhouette.get(best_k, 0.0) if silhouette.get(best_k) == silhouette.get(best_k) else 0.0,
        "seed": cfg.seed,
        "restarts": cfg.restarts,
        "stability_seeds": list(cfg.stability_seeds),
        "stability_mean_ari": round(stability, 6),
        "stability_pair_ari": [round(x, 6) for x in pair_ari],
        "centres": {v["segment_id"]: dict(zip(cfg.features, centres[c], strict=True)) for c, v in labels.items()},
        "labels": labels,
    }
    return model, facts


def _stability(data: DataFrame, k: int, cfg: SegmentConfig) -> tuple[float, list[float]]:
    """Mean pairwise ARI of fits at ``k`` with the stability seeds (each the best of its restarts)."""
    labelled = data
    columns = []
    for i, seed in enumerate(cfg.stability_seeds):
        column = f"_seed_{i}"
        labelled = fit_kmeans(data, k, seed, cfg).transform(labelled).withColumnRenamed(CLUSTER_COL, column)
        columns.append(column)
    labelled = labelled.persist()
    try:
        pairs = [adjusted_rand_index(labelled, a, b) for a, b in itertools.combinations(columns, 2)]
    finally:
        labelled.unpersist()
    return sum(pairs) / len(pairs), pairs


def summarise(assigned: DataFrame, facts: dict[str, Any], version: str) -> DataFrame:
    """gold.segment_summary rows (without as_of) from profiles with segment ids and names."""
    total = facts["customers"]

    def top(column: str, alias: str) -> DataFrame:
        counts = assigned.where(F.col(column).isNotNull()).groupBy("segment_id", column).count()
        window = Window.partitionBy("segment_id").orderBy(F.col("count").desc(), F.col(column))
        return (
            counts.withColumn("_r", F.row_number().over(window))
            .where("_r = 1")
            .select("segment_id", F.col(column).alias(alias))
        )

    def avg(column: str) -> F.Column:
        return F.round(F.avg(F.col(column).cast("double")), 4)

    sizes = assigned.groupBy("segment_id", "segment_name").agg(
        F.count(F.lit(1)).alias("customers"),
        avg("recency_days").alias("avg_recency_days"),
        avg("frequency").alias("avg_frequency"),
        avg("monetary").alias("avg_monetary"),
        avg("avg_order_value").alias("avg_order_value"),
        avg("views").alias("avg_views"),
        avg("discount_order_share").alias("avg_discount_order_share"),
        avg("night_share").alias("avg_night_share"),
    )
    spark = assigned.sparkSession
    described = spark.createDataFrame(
        [(v["segment_id"], v["description"], facts["centres"][v["segment_id"]]) for v in facts["labels"].values()],
        "segment_id int, description string, centroid map<string, double>",
    )
    return (
        sizes.join(described, "segment_id")
        .join(top("lifecycle_stage", "top_lifecycle_stage"), "segment_id", "left")
        .join(top("rfm_segment", "top_rfm_segment"), "segment_id", "left")
        .withColumns(
            {
                "share": F.round(F.col("customers") / F.lit(total), 6),
                "k": F.lit(facts["k"]),
                "silhouette": F.lit(float(facts["chosen_silhouette"])),
                "model_version": F.lit(version),
            }
        )
    )


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Segment the customers of gold.profiles for ``gold.as_of`` (default: the data's last day)."""
    run_id = run_id or new_run_id("segment")
    check_features(cfg.segment)
    store = store or open_store(spark, cfg)
    as_of = resolve_as_of(store, cfg)
    profiles = _profiles_of(store, as_of, cfg.segment)
    version = f"as_of_{as_of.isoformat()}"
    result = JobResult("segment", run_id, inputs={GOLD_PROFILES.name: store.version(GOLD_PROFILES)})
    model, facts = fit_segments(spark, profiles, cfg.segment)
    path = model_dir(cfg, "segment", version)
    model.write().overwrite().save(path)
    assigned = model.transform(profiles).drop(FEATURES_COL, SCALED_COL, CLUSTER_COL).persist()
    try:
        segments = assigned.select("user_key", "segment_id", "segment_name", F.lit(version).alias("model_version"))
        result.outputs[GOLD_SEGMENTS.name] = publish_as_of(store, GOLD_SEGMENTS, segments, as_of)
        summary = summarise(assigned, facts, version)
        result.outputs[GOLD_SEGMENT_SUMMARY.name] = publish_as_of(store, GOLD_SEGMENT_SUMMARY, summary, as_of)
        sizes = {r["segment_id"]: r["customers"] for r in summary.select("segment_id", "customers").collect()}
    finally:
        assigned.unpersist()
    result.row_counts = {GOLD_SEGMENTS.name: facts["customers"], GOLD_SEGMENT_SUMMARY.name: len(sizes)}
    result.metrics = {
        "as_of": as_of.isoformat(),
        "model_path": path,
        "model_version": version,
        **{k: v for k, v in facts.items() if k not in ("labels", "centres")},
        "segments": {
            str(v["segment_id"]): {"name": v["name"], "customers": sizes.get(v["segment_id"], 0)}
            for v in sorted(facts["labels"].values(), key=lambda v: v["segment_id"])
        },
    }
    result.summary = _summary(result.metrics)
    return result


def _profiles_of(store: DeltaStore, as_of: date, cfg: SegmentConfig) -> DataFrame:
    store.require(GOLD_PROFILES)
    profiles = store.read(GOLD_PROFILES).where(F.col("as_of") == F.lit(as_of))
    if cfg.where:
        try:
            profiles = profiles.where(F.expr(cfg.where))
            profiles.schema  # noqa: B018 - analysis happens here: a bad filter fails now, naming the key
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"segment.where: invalid filter {cfg.where!r}: {first}") from None
    if profiles.limit(1).count() == 0:
        raise InputError(
            f"{GOLD_PROFILES.name} has no customers for as_of {as_of.isoformat()}"
            + (f" matching segment.where {cfg.where!r}" if cfg.where else "")
            + ": run `shoplake run profile` for that date first"
        )
    return profiles


def _summary(m: dict[str, Any]) -> str:
    sil = ", ".join(f"k={k}: {v:.3f}" if v is not None else f"k={k}: n/a" for k, v in m["silhouette"].items())
    lines = [
        f"segment: {m['customers']:,} customers as of {m['as_of']} in k={m['k']} segments "
        f"(chosen by silhouette; seed {m['seed']}), stability mean ARI {m['stability_mean_ari']:.3f} "
        f"over seeds {m['stability_seeds']}",
        f"  silhouette: {sil or 'n/a'}",
        "  elbow (within-cluster cost): " + ", ".join(f"k={k}: {v:,.1f}" for k, v in m["elbow_cost"].items()),
    ]
    for seg_id, seg in m["segments"].items():
        lines.append(f"  {seg_id}: {seg['name']} ({seg['customers']:,})")
    lines.append(f"  model: {m['model_path']}")
    return "\n".join(lines)
