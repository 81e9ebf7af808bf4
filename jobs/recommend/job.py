"""The recommend job: evaluate, choose on validation, publish (see :mod:`jobs.recommend`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import artifacts, ranking
from common.asof import on_or_before, publish_as_of, resolve_as_of
from common.config import RecommendConfig, ShopLakeConfig
from common.content import content_neighbours, item_vectors
from common.delta import DeltaStore, open_store
from common.errors import InputError
from common.interactions import aggregate, raw_interactions
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_RECOMMENDATIONS,
    GOLD_SIMILAR_ITEMS,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
)
from jobs.recommend.candidates import (
    ALS_METHOD,
    CATEGORY_POPULAR,
    FILL_NONE,
    ITEM_KNN,
    METHODS,
    MOST_POPULAR,
    NEIGHBOUR,
    SAR,
    AlsParams,
    als_candidates,
    catalogue_size,
    content_fill_candidates,
    fit_als,
    fit_candidate,
    grid,
    model_candidates,
    popular_candidates,
    sparse_users,
    top_n_with_fallback,
)
from jobs.recommend.evaluation import (
    Split,
    choose_candidate,
    choose_params,
    choose_placement,
    evaluate_cold_start,
    evaluate_content_fill,
    evaluate_methods,
    random_split,
    sample_users,
    time_split,
    with_fallback,
)
from jobs.recommend.report import console_summary, write_report
from jobs.recommend.similar import check_item_factors_size, similar_items

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- job
def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Evaluate ALS against the baselines, then publish recommendations and similar items."""
    run_id = run_id or new_run_id("recommend")
    store = store or open_store(spark, cfg)
    rc = cfg.recommend
    store.require(SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_PRODUCTS)
    as_of = resolve_as_of(store, cfg)
    inputs = (SILVER_EVENTS, SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_PRODUCTS, SILVER_CUSTOMERS)
    result = JobResult("recommend", run_id)
    result.inputs = {spec.name: store.version(spec) for spec in inputs if store.exists(spec)}
    events, orders, lines, products, customers = (store.read_or_empty(spec) for spec in inputs)
    raw = raw_interactions(events, orders, lines, rc.event_weights).persist()
    catalogue = catalogue_size(products, raw, as_of)
    cached: list[DataFrame] = [raw]
    try:
        # Every item touched so far bounds the factor table ALS will publish.
        check_item_factors_size(rc, raw.select("item_id").distinct().count())
        vectors = neighbours = None
        if rc.content.enabled and products.limit(1).count():
            vectors = content_vectors(products, rc).persist()
            neighbours = vectors.transform(content_neighbours(rc.content.neighbours, NEIGHBOUR)).persist()
            cached += [vectors, neighbours]
        evaluated, sample = sample_users(raw, rc.evaluation_users, rc.seed)
        if evaluated is not raw:
            evaluated = evaluated.persist()
            cached.append(evaluated)
        evaluation = _evaluate(evaluated, products, rc, as_of, catalogue, cached, neighbours)
        evaluation["split"]["users"] = sample
        if vectors is not None:
            evaluation["cold_start"] = _cold_start(raw, products, vectors, rc, as_of)
        placement = evaluation["content_fill"]["placement"]
        params = AlsParams(**evaluation["chosen_params"])
        chosen = evaluation["chosen_model"]
        # Publish: everything up to the as-of day.
        interactions = aggregate(raw, as_of, rc.half_life_days).persist()
        cached.append(interactions)
        users = _users_as_of(customers, interactions, as_of).persist()
        cached.append(users)
        fallback = popular_candidates(interactions, users, rc.top_n)
        models = _fit_published(spark, cfg, chosen, params, interactions, raw, products, neighbours, as_of, cached)
        primary = fallback.limit(0) if models.primary is None else models.primary
        fill = None
        if placement != FILL_NONE and neighbours is not None:
            sparse = sparse_users(interactions, rc.content.fill_below)
            fill = content_fill_candidates(interactions, neighbours, sparse, rc.top_n)
        recs = top_n_with_fallback(primary, fallback, rc.top_n, fill, placement).withColumn(
            "score", F.round("score", 6)
        )
        published = _publish(store, result, recs, models.similar, as_of, cached)
        published_metrics = _published_metrics(published, catalogue, rc.top_n, chosen, models)
    finally:
        for df in cached:
            df.unpersist()
    result.metrics = _metrics(as_of, evaluation, rc.k, published_metrics)
    result.metrics["report"] = write_report(cfg, run_id, result.metrics, rc.k)
    result.summary = console_summary(result.metrics, rc.k)
    return result


def _users_as_of(customers: DataFrame, interactions: DataFrame, as_of: date) -> DataFrame:
    """``user_key`` of every customer registered by ``as_of`` (or without a date) or with an interaction."""
    registered = customers.where(F.col("registered_at").isNull() | on_or_before("registered_at", as_of))
    return registered.select("user_key").unionByName(interactions.select("user_key")).distinct()


@dataclass
class _PublishedModel:
    """The chosen model's lists (None for a popularity baseline), the similar items (None when
    ``recommend.similar_items`` is 0) and where the fitted models were saved."""

    primary: DataFrame | None = None
    similar: DataFrame | None = None
    model_dir: str | None = None
    neighbours_dir: str | None = None


def _fit_published(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    chosen: str,
    params: AlsParams,
    interactions: DataFrame,
    raw: DataFrame,
    products: DataFrame,
    content: DataFrame | None,
    as_of: date,
    cached: list[DataFrame],
) -> _PublishedModel:
    """Fit and save the chosen model (and ALS, when similar items are asked for) on every
    interaction up to the as-of day (``content``: item neighbours, or None)."""
    rc = cfg.recommend
    out = _PublishedModel()
    if not interactions.limit(1).count():
        if rc.similar_items:
            out.similar = spark.createDataFrame([], GOLD_SIMILAR_ITEMS.schema).drop("as_of")
        return out
    if chosen == ALS_METHOD or rc.similar_items:
        model, ids = fit_als(interactions, params, rc.seed, rc.bm25)
        out.model_dir = artifacts.model_dir(cfg, "recommend_als", as_of.isoformat())
        model.write().overwrite().save(f"{out.model_dir}/als")
        ids.save(out.model_dir)
        if chosen == ALS_METHOD:
            out.primary = als_candidates(model, ids, interactions, None, rc.top_n, rc.similar_max_mb * 2**20)
        if rc.similar_items:
            similar_content = None if content is None else content.withColumnRenamed(NEIGHBOUR, "similar_item_id")
            out.similar = similar_items(
                model, ids, interactions, products, rc.similar_items, rc.similar_max_mb * 2**20, similar_content
            )
    if chosen in (ITEM_KNN, SAR):
        fitted = fit_candidate(chosen, interactions, rc)
        cached.append(fitted.neighbours)
        # Saved so lists can be rescored from new interactions without refitting.
        out.neighbours_dir = artifacts.model_dir(cfg, f"recommend_{chosen}", as_of.isoformat())
        fitted.neighbours.write.mode("overwrite").parquet(f"{out.neighbours_dir}/neighbours")
        out.primary = model_candidates(fitted, interactions, raw, as_of, rc, None, rc.top_n)
    return out


def _publish(
    store: DeltaStore,
    result: JobResult,
    recs: DataFrame,
    similar: DataFrame | None,
    as_of: date,
    cached: list[DataFrame],
) -> DataFrame:
    """Publish the lists (and the similar items, when there are any) as of ``as_of`` and record
    their row counts; returns the published lists, read back (persisted, added to ``cached``)."""
    outputs = [(GOLD_RECOMMENDATIONS, recs)] + ([(GOLD_SIMILAR_ITEMS, similar)] if similar is not None else [])
    for spec, df in outputs:
        result.outputs[spec.name] = publish_as_of(store, spec, df, as_of)
    published = store.read(GOLD_RECOMMENDATIONS).where(F.col("as_of") == F.lit(as_of)).persist()
    cached.append(published)
    result.row_counts[GOLD_RECOMMENDATIONS.name] = published.count()
    if similar is not None:
        result.row_counts[GOLD_SIMILAR_ITEMS.name] = (
            store.read(GOLD_SIMILAR_ITEMS).where(F.col("as_of") == F.lit(as_of)).count()
        )
    else:
        log.info("recommend: recommend.similar_items is 0; gold.similar_items not written")
    return published


def _published_metrics(
    published: DataFrame, catalogue: int, top_n: int, chosen: str, models: _PublishedModel
) -> dict[str, Any]:
    reasons = {r["reason"]: r["count"] for r in published.groupBy("reason").count().collect()}
    coverage = ranking.catalogue_coverage(published, catalogue, top_n, ranking.Columns(item="item_id"))
    return {
        "users": published.select("user_key").distinct().count(),
        "model": chosen,
        "reasons": dict(sorted(reasons.items())),
        f"coverage@{top_n}": coverage,
        "model_dir": models.model_dir,
        "neighbours_dir": models.neighbours_dir,
    }


def _metrics(as_of: date, evaluation: dict[str, Any], k: int, published: dict[str, Any]) -> dict[str, Any]:
    chosen = evaluation["chosen_model"]
    test = evaluation.get("test", {})
    chosen_ndcg, pop_ndcg = (test.get(m, {}).get(f"ndcg@{k}") for m in (chosen, MOST_POPULAR))
    return {
        "as_of": as_of.isoformat(),
        "split": evaluation["split"],
        "chosen_model": chosen,
        "chosen_params": evaluation["chosen_params"],
        "validation": evaluation["validation"],
        "test": test,
        # After "test": the report's comparison chart draws the first dict of method dicts.
        "validation_candidates": evaluation["validation_candidates"],
        "search": evaluation["search"],
        "cold_start": evaluation.get("cold_start", "skipped: recommend.content.enabled is false or no products"),
        "content_fill": evaluation["content_fill"],
        "seconds": evaluation["seconds"],
        # Of the published (chosen) model.
        f"ndcg@{k}_relative_gain_vs_most_popular": (chosen_ndcg / pop_ndcg - 1.0)
        if chosen_ndcg is not None and pop_ndcg
        else None,
        "published": published,
    }


def content_vectors(products: DataFrame, rc: RecommendConfig) -> DataFrame:
    """``item_id, block, features`` of every product (common.content, ``recommend.content``)."""
    c = rc.content
    return products.transform(item_vectors(c.features, c.num_features, c.price_bands))


def _cold_start(raw: DataFrame, products: DataFrame, vectors: DataFrame, rc: RecommendConfig, as_of: date):
    """The cold-start evaluation on the time split's test period (a random split has no launches)."""
    if rc.split != "time":
        return "skipped: cold start needs the time split"
    cutoff = rc.eval_cutoff or as_of - timedelta(days=rc.test_days)
    return evaluate_cold_start(raw, products, vectors, cutoff, as_of, rc.k, rc.seed)


def _evaluate(
    raw: DataFrame,
    products: DataFrame,
    rc: RecommendConfig,
    as_of: date,
    catalogue_size: int,
    cached: list,
    content: DataFrame | None = None,
) -> dict[str, Any]:
    """Choose ALS hyperparameters, then the candidate, then where sparse users' content
    picks go (``content``: item neighbours, or None) on validation; score every method
    and placement once on test."""
    if rc.split == "time":
        cutoff = rc.eval_cutoff or as_of - timedelta(days=rc.test_days)
        if cutoff >= as_of:
            raise InputError(f"recommend.eval_cutoff {cutoff} must be before the as-of date {as_of}")
        val_cutoff = cutoff - timedelta(days=rc.validation_days)
        test = time_split(raw, cutoff, as_of, rc.half_life_days)
        validation = time_split(raw, val_cutoff, cutoff, rc.half_life_days)
    else:
        everything = aggregate(raw, as_of, rc.half_life_days)
        test = random_split(everything, rc.test_fraction, rc.seed, as_of)
        validation = random_split(test.train, rc.test_fraction, rc.seed + 1, as_of)
    for split in (test, validation):
        split.train = split.train.persist()
        split.relevant = split.relevant.persist()
        cached.extend([split.train, split.relevant, with_fallback(split, rc.k)])
    k = rc.k
    candidates = list(dict.fromkeys(rc.candidates))
    seconds: dict[str, Any] = {"validation": {}, "test": {}}
    validated = validation.train.limit(1).count() and validation.relevant.limit(1).count()
    params, tried, search = grid(rc)[0], [], {"skipped": "als is not a candidate"}
    if ALS_METHOD in candidates:
        params, tried, search = choose_params(validation, raw, products, rc, catalogue_size)
    scores: dict[str, dict[str, Any]] = {}
    if validated:
        others = [m for m in candidates if m != ALS_METHOD]
        validated_methods = evaluate_methods(
            validation, raw, products, rc, params, catalogue_size, others, seconds["validation"]
        )
        for method, metrics in validated_methods.items():
            scores[method] = {n: metrics[n] for n in (f"ndcg@{k}", f"precision@{k}", "users")}
        if "chosen" in search:
            scores[ALS_METHOD] = {n: search["chosen"][n] for n in (f"ndcg@{k}", f"precision@{k}", "users")}
    chosen = choose_candidate(scores, candidates, k)
    log.info("recommend: chosen on validation NDCG@%d: %s", k, chosen)
    out: dict[str, Any] = {
        "split": {**test.description, "validation": validation.description},
        "chosen_model": chosen,
        "chosen_params": params.as_dict(),
        "validation": tried or "skipped: no training or validation purchases",
        "search": search,
        "validation_candidates": {m: scores[m] for m in candidates if m in scores},
    }
    tested = test.train.limit(1).count() and test.relevant.limit(1).count()
    if tested:
        methods = [m for m in METHODS if m in candidates or m in (MOST_POPULAR, CATEGORY_POPULAR)]
        out["test"] = evaluate_methods(test, raw, products, rc, params, catalogue_size, methods, seconds["test"])
    else:
        out["test"] = {}
        log.warning("recommend: no training interactions or test purchases; evaluation skipped")
    out["content_fill"] = _content_fill(test, validation, raw, products, rc, params, chosen, content, catalogue_size)
    out["seconds"] = {"search": search.get("seconds"), **seconds}
    return out


def _content_fill(
    test: Split,
    validation: Split,
    raw: DataFrame,
    products: DataFrame,
    rc: RecommendConfig,
    params: AlsParams,
    chosen: str,
    content: DataFrame | None,
    catalogue_size: int,
) -> dict[str, Any]:
    """Where the chosen model's sparse users get content picks: validated, then tested."""
    below = rc.content.fill_below
    fill: dict[str, Any] = {"fill_below": below, "placement": FILL_NONE}
    if content is None or not below:
        return {**fill, "skipped": "recommend.content is off, fill_below is 0 or there are no products"}
    least = rc.content.fill_min_users
    fill["validation"] = evaluate_content_fill(
        validation, raw, products, rc, params, chosen, content, catalogue_size, least
    )
    fill["placement"] = choose_placement(fill["validation"], rc.k, least)
    if "skipped" in fill["validation"]:
        fill["test"] = {"skipped": "not evaluated on validation"}
    else:
        fill["test"] = evaluate_content_fill(test, raw, products, rc, params, chosen, content, catalogue_size)
    log.info("recommend: content picks for users with fewer than %d items: %s", below, fill["placement"])
    return fill
