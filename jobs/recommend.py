"""Recommend: candidate models on implicit feedback (ALS, item-kNN, SAR, most
popular), chosen by validation NDCG@k and reported side by side on held-back data,
then top-N recommendations from the winner and similar items as of a date.

1. Interactions (common.interactions) up to the as-of day.
2. Split. ``time``: train on days up to the cutoff (default as-of minus
   ``test_days``), test on purchases after it. ``random`` (data without useful
   times): a seeded per-user holdout of ``test_fraction`` of each user's bought
   items. Validation is carved from the training side the same way, so the
   hyperparameters (``recommend.grid``) never see the test period. ALS's point
   (rank, regParam, alpha, iterations and the common.confidence transform of the
   strength) comes from ``recommend.search``: every grid point, or successive halving
   over a seeded sample (common.search), within ``search_budget_s``. Every
   candidate of ``recommend.candidates`` is scored on validation (ALS at its chosen
   point) and the best NDCG@k wins (ties: the earlier candidate). All of them,
   plus the category-popularity baseline, are evaluated once on test through the
   same code.

   - item-kNN: each item's ``knn.neighbours`` most cosine-similar items (columns of
     the user x item strength matrix); a user's score for an item is the sum of its
     similarities to the user's items.
   - SAR: each item's ``sar.neighbours`` most similar items by Jaccard (or lift) of
     their co-occurrence counts (users who touched both); a user's score is the sum
     of affinity x similarity over the user's items, the affinity being the
     interaction strength decayed with ``sar.half_life_days``.

   Both score through user-items x item-neighbours joins (common.neighbours finds the
   neighbours exactly without a pair table), so no list joins users with the catalogue.
3. Relevant items are test-period purchases the user had not touched in
   training: already-seen items are excluded from every list and from scoring.
4. Publish: the winner refitted on everything up to the as-of day (ALS model, or the
   item-kNN/SAR neighbour table, saved under common.artifacts.model_dir); every
   customer gets ``top_n`` items, from the winner where it knows them (reason
   ``model``) and from the popularity list for the rest and for short lists (reason
   ``fallback``). Users with fewer than ``content.fill_below`` items also get their
   items' content neighbours (reason ``content``), before or after the model's
   picks or not at all, as validation decides for such users
   (:func:`evaluate_content_fill`; at least ``fill_min_users`` of them).
   ``recommendForAllUsers`` asks ALS for ``top_n`` plus the user's seen-item
   margin (capped), and fallbacks come from one bounded popular list, so nothing
   joins every user with every item.
5. ``gold.similar_items``: each item's ``similar_items`` nearest neighbours by
   cosine of the ALS item factors with a positive similarity, exact, from
   common.neighbours (blocked matrix products on the executors: no pair table, no
   shuffle); ties go to the smaller item id, whichever candidate won (ALS is fitted
   for it when ``similar_items`` is set). Items ALS has not seen get their content
   neighbours (common.content: cosine of product-attribute vectors, reason
   ``content``) when ``recommend.content.enabled``, else (or without any) their
   category's most popular items (reason ``fallback``, similarity 0).
   ``similar_items: 0`` skips the table. Items x rank x 8 bytes of factors above
   ``similar_max_mb`` fail before anything is fitted, naming the counts.
6. Cold start (time split, ``recommend.content.enabled``): content picks against
   random picks from the user's categories for products nobody touched before the
   test period (protocol in :func:`evaluate_cold_start`), in metrics ``cold_start``
   and the report.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import date, timedelta
from functools import reduce
from typing import Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import artifacts, markdown, ranking
from common.asof import on_or_before, publish_as_of, resolve_as_of
from common.confidence import RAW, apply_confidence
from common.config import Bm25Config, RecommendConfig, ShopLakeConfig
from common.content import content_neighbours, content_scores, item_vectors
from common.delta import DeltaStore, open_store
from common.errors import InputError
from common.interactions import IdMap, aggregate, purchases_between, raw_interactions
from common.neighbours import check_dense_size, dense_top_k, sparse_top_k
from common.paths import is_local
from common.runlog import JobResult, new_run_id
from common.search import Trial, grid_search, sample_points, successive_halving
from common.tables import (
    GOLD_RECOMMENDATIONS,
    GOLD_SIMILAR_ITEMS,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
)

log = logging.getLogger(__name__)

MODEL, FALLBACK, CONTENT = "model", "fallback", "content"
# Where a sparse user's content picks go (recommend.content.fill_below), chosen on
# validation; a tie goes to the earlier, so content must earn its place.
FILL_NONE, FILL_AFTER, FILL_BEFORE = "none", "after_model", "before_model"
FILL_PLACEMENTS = (FILL_NONE, FILL_AFTER, FILL_BEFORE)
ALS_METHOD, ITEM_KNN, SAR, MOST_POPULAR, CATEGORY_POPULAR = (
    "als",
    "item_knn",
    "sar",
    "most_popular",
    "category_popular",
)
# Test-table order; category_popular is a baseline only, never published.
METHODS = (ALS_METHOD, ITEM_KNN, SAR, MOST_POPULAR, CATEGORY_POPULAR)
NEIGHBOUR = "neighbour_id"
# Extra candidates asked of ALS to survive the seen-item exclusion, at most this many.
MAX_SEEN_MARGIN = 200
NO_CATEGORY = "(none)"


@dataclass(frozen=True)
class AlsParams:
    rank: int
    reg_param: float
    alpha: float
    max_iter: int
    confidence: str = RAW  # common.confidence transform of the strength

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "reg_param": self.reg_param,
            "alpha": self.alpha,
            "max_iter": self.max_iter,
            "confidence": self.confidence,
        }


def grid(cfg: RecommendConfig) -> list[AlsParams]:
    g = cfg.grid
    combos = itertools.product(g.rank, g.reg_param, g.alpha, g.max_iter, g.confidence)
    return [AlsParams(*combo) for combo in combos]


# ---------------------------------------------------------------------------- fitting
def fit_als(train: DataFrame, params: AlsParams, seed: int, bm25: Bm25Config | None = None) -> tuple[ALSModel, IdMap]:
    """Fit implicit-preference ALS on ``user_key, item_id, strength`` rows, the strength
    first transformed by ``params.confidence`` (``bm25``: that transform's k1 and b)."""
    bm25 = bm25 or Bm25Config()
    ids = IdMap.fit(train)
    weighted = apply_confidence(train, params.confidence, bm25.k1, bm25.b)
    indexed = ids.to_index(weighted).select("user_idx", "item_idx", "strength")
    als = ALS(
        rank=params.rank,
        regParam=params.reg_param,
        alpha=params.alpha,
        maxIter=params.max_iter,
        implicitPrefs=True,
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="strength",
        coldStartStrategy="drop",
        nonnegative=False,
        seed=seed,
        numUserBlocks=2,
        numItemBlocks=2,
    )
    return als.fit(indexed), ids


def seen_margin(train: DataFrame) -> int:
    """How many extra candidates a user's seen items can remove (largest seen count, capped)."""
    most = train.groupBy("user_key").count().agg(F.max("count")).first()[0] or 0
    return int(min(most, MAX_SEEN_MARGIN))


def als_candidates(model: ALSModel, ids: IdMap, train: DataFrame, users: DataFrame | None, n: int) -> DataFrame:
    """``user_key, item_id, score`` from ALS: top ``n`` unseen items per known user."""
    fetch = n + seen_margin(train)
    if users is None:
        raw = model.recommendForAllUsers(fetch)
    else:
        raw = model.recommendForUserSubset(ids.user_lookup(users).select("user_idx"), fetch)
    user_keys = ids.user_lookup(train)
    item_ids = ids.item_lookup(train)
    return (
        raw.select("user_idx", F.explode("recommendations").alias("r"))
        .select("user_idx", F.col("r.item_idx").alias("item_idx"), F.col("r.rating").cast("double").alias("score"))
        .join(user_keys, "user_idx")
        .join(item_ids, "item_idx")
        .select("user_key", "item_id", "score")
        .join(train.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti")
    )


def catalogue_size(products: DataFrame, raw: DataFrame, as_of: date) -> int:
    """Items a list could hold: the product table's and every item touched up to ``as_of``,
    so a lake without a product table still has a catalogue for coverage@k."""
    touched = raw.where(on_or_before("ts", as_of)).select("item_id")
    return products.select("item_id").unionByName(touched).distinct().count()


def popularity(train: DataFrame) -> DataFrame:
    """``item_id, popularity``: distinct users who interacted with the item."""
    return train.groupBy("item_id").agg(F.countDistinct("user_key").cast("double").alias("popularity"))


def popular_candidates(train: DataFrame, users: DataFrame, n: int) -> DataFrame:
    """``user_key, item_id, score``: the ``n`` most popular items each user has not seen.

    Users meet one bounded list (``n`` + the seen margin), not the catalogue."""
    m = n + seen_margin(train)
    window = Window.orderBy(F.col("popularity").desc(), F.col("item_id"))
    top = popularity(train).withColumn("_r", F.row_number().over(window)).where(F.col("_r") <= m)
    return (
        users.select("user_key")
        .distinct()
        .crossJoin(F.broadcast(top.select("item_id", F.col("popularity").alias("score"))))
        .join(train.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti")
    )


def category_popular_candidates(
    train: DataFrame, products: DataFrame, users: DataFrame, n: int, preferred: int
) -> DataFrame:
    """``user_key, item_id, score``: the most popular unseen items in each user's
    ``preferred`` favourite top-level categories (by interaction strength).
    Users without a history get nothing here (the global fallback fills in)."""
    m = n + seen_margin(train)
    cats = products.select("item_id", F.coalesce("category_l1", F.lit(NO_CATEGORY)).alias("category")).dropDuplicates(
        ["item_id"]
    )
    with_cat = train.join(cats, "item_id", "left").fillna({"category": NO_CATEGORY})
    by_user = with_cat.groupBy("user_key", "category").agg(F.sum("strength").alias("_s"))
    favourite = by_user.withColumn(
        "_r", F.row_number().over(Window.partitionBy("user_key").orderBy(F.col("_s").desc(), "category"))
    ).where(F.col("_r") <= preferred)
    pop = popularity(train).join(cats, "item_id", "left").fillna({"category": NO_CATEGORY})
    top = pop.withColumn(
        "_r", F.row_number().over(Window.partitionBy("category").orderBy(F.col("popularity").desc(), "item_id"))
    ).where(F.col("_r") <= m)
    return (
        favourite.join(users.select("user_key").distinct(), "user_key")
        .select("user_key", "category")
        .join(top.select("category", "item_id", F.col("popularity").alias("score")), "category")
        .groupBy("user_key", "item_id")
        .agg(F.max("score").alias("score"))
        .join(train.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti")
    )


def knn_neighbours(train: DataFrame, k: int) -> DataFrame:
    """``item_id, neighbour_id, similarity``: each item's ``k`` most cosine-similar items,
    the items being columns of the user x item strength matrix."""
    return sparse_top_k(train, k, "user_key", "item_id", "strength", NEIGHBOUR).drop("rank")


def sar_neighbours(train: DataFrame, k: int, similarity: str) -> DataFrame:
    """``item_id, neighbour_id, similarity``: each item's ``k`` best by ``jaccard`` or ``lift``
    of the co-occurrence counts (users who touched both items)."""
    return sparse_top_k(train, k, "user_key", "item_id", "strength", NEIGHBOUR, similarity=similarity).drop("rank")


def sar_affinity(raw: DataFrame, train: DataFrame, until: date, half_life_days: float | None) -> DataFrame:
    """``user_key, item_id, weight``: the training pairs' strength up to ``until``, each touch
    decayed by ``half_life_days`` (SAR's time-aware user affinity)."""
    decayed = aggregate(raw, until, half_life_days)
    return decayed.join(train.select("user_key", "item_id"), ["user_key", "item_id"], "left_semi").select(
        "user_key", "item_id", F.col("strength").alias("weight")
    )


def neighbour_candidates(
    weights: DataFrame, neighbours: DataFrame, seen: DataFrame, users: DataFrame | None = None
) -> DataFrame:
    """``user_key, item_id, score``: sum over the user's items ``i`` of weight(user, i) x
    similarity(i, item), for the neighbours of the user's items that the user has not seen.

    Rows scale with the users' items x neighbours per item, never users x catalogue."""
    if users is not None:
        weights = weights.join(users.select("user_key"), "user_key", "left_semi")
    return (
        weights.join(neighbours, "item_id")
        .groupBy("user_key", F.col(NEIGHBOUR).alias("item_id"))
        .agg(F.sum(F.col("weight") * F.col("similarity")).alias("score"))
        .join(seen.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti")
    )


@dataclass
class Fitted:
    """What a candidate learnt from a training side: ALS model and ids, or an item-neighbour table."""

    method: str
    als: tuple[ALSModel, IdMap] | None = None
    neighbours: DataFrame | None = None


def fit_candidate(method: str, train: DataFrame, rc: RecommendConfig, params: AlsParams | None = None) -> Fitted:
    """Fit ``method`` on ``train``; the neighbour tables are persisted (callers unpersist via release)."""
    if method == ALS_METHOD:
        assert params is not None
        return Fitted(method, als=fit_als(train, params, rc.seed, rc.bm25))
    if method == ITEM_KNN:
        return Fitted(method, neighbours=knn_neighbours(train, rc.knn.neighbours).persist())
    if method == SAR:
        return Fitted(method, neighbours=sar_neighbours(train, rc.sar.neighbours, rc.sar.similarity).persist())
    return Fitted(method)


def release(fitted: Fitted) -> None:
    if fitted.neighbours is not None:
        fitted.neighbours.unpersist()


def model_candidates(
    fitted: Fitted,
    train: DataFrame,
    raw: DataFrame,
    until: date,
    rc: RecommendConfig,
    users: DataFrame | None,
    n: int,
    products: DataFrame | None = None,
) -> DataFrame:
    """``user_key, item_id, score`` of the fitted candidate for ``users`` (None: everyone in
    ``train``), seen items excluded; empty for most-popular (the fallback list is its list)."""
    if fitted.method == ALS_METHOD:
        assert fitted.als is not None
        return als_candidates(*fitted.als, train, users, n)
    if fitted.method == ITEM_KNN:
        # Unweighted: a user's score is the sum of similarities to the items they touched.
        weights = train.select("user_key", "item_id", F.lit(1.0).alias("weight"))
        return neighbour_candidates(weights, fitted.neighbours, train, users)
    if fitted.method == SAR:
        weights = sar_affinity(raw, train, until, rc.sar.half_life_days)
        return neighbour_candidates(weights, fitted.neighbours, train, users)
    if fitted.method == CATEGORY_POPULAR:
        assert products is not None and users is not None
        return category_popular_candidates(train, products, users, n, rc.preferred_categories)
    return train.select("user_key", "item_id", F.lit(0.0).alias("score")).limit(0)


def top_n_in_tiers(tiers: list[tuple[DataFrame, str]], n: int) -> DataFrame:
    """``user_key, rank, item_id, score, reason``: each user's items of the first tier (by
    score), then of the next tiers the items not already listed, to ``n`` per user;
    ``reason`` names the tier an item came from."""
    parts = [
        df.select("user_key", "item_id", "score", F.lit(i).alias("_tier"), F.lit(reason).alias("reason"))
        for i, (df, reason) in enumerate(tiers)
    ]
    both = reduce(DataFrame.unionByName, parts)
    first = Window.partitionBy("user_key", "item_id").orderBy("_tier")
    order = Window.partitionBy("user_key").orderBy("_tier", F.col("score").desc(), "item_id")
    return (
        both.withColumn("_k", F.row_number().over(first))
        .where("_k = 1")
        .withColumn("rank", F.row_number().over(order))
        .where(F.col("rank") <= n)
        .select("user_key", "rank", "item_id", "score", "reason")
    )


def top_n_with_fallback(
    primary: DataFrame, fallback: DataFrame, n: int, content: DataFrame | None = None, placement: str = FILL_NONE
) -> DataFrame:
    """The primary list (reason ``model``) topped up from the fallback list (reason
    ``fallback``) to ``n`` per user; with ``content`` picks placed ``before_model`` or
    ``after_model``, those come first or between the two (reason ``content``)."""
    tiers = [(primary, MODEL), (fallback, FALLBACK)]
    if content is not None and placement != FILL_NONE:
        tiers.insert(0 if placement == FILL_BEFORE else 1, (content, CONTENT))
    return top_n_in_tiers(tiers, n)


def sparse_users(train: DataFrame, below: int) -> DataFrame:
    """``user_key`` of the users with fewer than ``below`` distinct items in ``train``."""
    counts = train.groupBy("user_key").agg(F.countDistinct("item_id").alias("_items"))
    return counts.where(F.col("_items") < below).select("user_key")


def content_fill_candidates(train: DataFrame, neighbours: DataFrame, users: DataFrame) -> DataFrame:
    """``user_key, item_id, score``: for ``users``, the content neighbours of their items
    that they have not seen, scored by the sum of cosines to their items."""
    weights = train.select("user_key", "item_id", F.lit(1.0).alias("weight"))
    return neighbour_candidates(weights, neighbours, train, users)


# ---------------------------------------------------------------------------- splitting
@dataclass
class Split:
    train: DataFrame  # aggregated interactions: user_key, item_id, strength, purchases, last_ts
    relevant: DataFrame  # user_key, item_id bought in the held-out part, unseen in train
    description: dict[str, Any]
    until: date  # the training side's last day (SAR's affinity decays towards its end)


def time_split(raw: DataFrame, cutoff: date, end: date, half_life: float | None) -> Split:
    train = aggregate(raw, cutoff, half_life)
    relevant = purchases_between(raw, cutoff, end).join(
        train.select("user_key", "item_id"), ["user_key", "item_id"], "left_anti"
    )
    description = {"kind": "time", "train_until": cutoff.isoformat(), "test_until": end.isoformat()}
    return Split(train, relevant, description, cutoff)


def random_split(interactions: DataFrame, fraction: float, seed: int, until: date) -> Split:
    """Per user, a seeded ``fraction`` of the bought items is held out (at least one item
    stays in training, so every evaluated user is known to the model)."""
    bought = interactions.where(F.col("purchases") > 0)
    draw = Window.partitionBy("user_key").orderBy(F.rand(seed), "item_id")
    sized = bought.withColumn("_i", F.row_number().over(draw)).withColumn(
        "_n", F.count("*").over(Window.partitionBy("user_key"))
    )
    held = sized.where((F.col("_n") >= 2) & (F.col("_i") <= F.floor(F.col("_n") * fraction))).select(
        "user_key", "item_id"
    )
    train = interactions.join(held, ["user_key", "item_id"], "left_anti")
    return Split(train, held, {"kind": "random", "test_fraction": fraction, "seed": seed}, until)


# ---------------------------------------------------------------------------- evaluation
def rank_lists(
    fitted: Fitted, split: Split, raw: DataFrame, products: DataFrame, cfg: RecommendConfig, k: int
) -> DataFrame:
    """Top-k lists of the fitted candidate for the users with relevant items (popular fallback for all)."""
    users = split.relevant.select("user_key").distinct()
    fallback = popular_candidates(split.train, users, k)
    primary = model_candidates(fitted, split.train, raw, split.until, cfg, users, k, products)
    return top_n_with_fallback(primary, fallback, k)


def evaluate_method(lists: DataFrame, split: Split, k: int, catalogue_size: int) -> dict[str, Any]:
    cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
    return ranking.evaluate(lists, split.relevant, k, catalogue_size, cols)


def evaluate_methods(
    split: Split,
    raw: DataFrame,
    products: DataFrame,
    cfg: RecommendConfig,
    params: AlsParams,
    catalogue_size: int,
    methods: tuple[str, ...] | list[str],
) -> dict[str, dict[str, Any]]:
    """Metrics of each of ``methods`` fitted on the split's training side, in that order."""
    k = cfg.k
    out = {}
    for method in methods:
        fitted = fit_candidate(method, split.train, cfg, params)
        lists = rank_lists(fitted, split, raw, products, cfg, k).persist()
        try:
            out[method] = evaluate_method(lists, split, k, catalogue_size)
        finally:
            lists.unpersist()
            release(fitted)
    return out


def evaluate_content_fill(
    split: Split,
    raw: DataFrame,
    products: DataFrame,
    rc: RecommendConfig,
    params: AlsParams,
    method: str,
    neighbours: DataFrame,
    catalogue_size: int,
    min_users: int = 1,
) -> dict[str, Any]:
    """``{placement: metrics}`` of ``method``'s lists with the content picks placed each
    way (:data:`FILL_PLACEMENTS`), for the split's sparse users: fewer than
    ``content.fill_below`` training items and a relevant item; skipped (nothing fitted)
    on fewer than ``min_users`` of them."""
    k = rc.k
    sparse = (
        sparse_users(split.train, rc.content.fill_below)
        .join(split.relevant.select("user_key").distinct(), "user_key")
        .persist()
    )
    cached = [sparse]
    try:
        users = sparse.count()
        if users < max(min_users, 1):
            who = f"users with fewer than {rc.content.fill_below} training items bought a new item"
            return {"skipped": f"no {who}" if not users else f"{users} {who}, fewer than fill_min_users {min_users}"}
        fitted = fit_candidate(method, split.train, rc, params)
        try:
            primary = model_candidates(fitted, split.train, raw, split.until, rc, sparse, k, products).persist()
            content = content_fill_candidates(split.train, neighbours, sparse).persist()
            cached += [primary, content]
            fallback = popular_candidates(split.train, sparse, k)
            relevant = split.relevant.join(sparse, "user_key", "left_semi")
            cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
            return {
                placement: ranking.evaluate(
                    top_n_with_fallback(primary, fallback, k, content, placement), relevant, k, catalogue_size, cols
                )
                for placement in FILL_PLACEMENTS
            }
        finally:
            release(fitted)
    finally:
        for df in cached:
            df.unpersist()


def choose_placement(validation: dict[str, Any], k: int, min_users: int = 1) -> str:
    """The placement with the best validation NDCG@k (ties: the earlier); none when not
    evaluated or on fewer than ``min_users`` users."""
    scored = [p for p in FILL_PLACEMENTS if isinstance(validation.get(p), dict)]
    if not scored or validation[scored[0]]["users"] < min_users:
        return FILL_NONE
    return max(scored, key=lambda p: (validation[p][f"ndcg@{k}"], -FILL_PLACEMENTS.index(p)))


def choose_params(
    split: Split, raw: DataFrame, products: DataFrame, cfg: RecommendConfig, catalogue_size: int
) -> tuple[AlsParams, list[dict[str, Any]], dict[str, Any]]:
    """The ALS point with the best validation NDCG@k, by ``recommend.search``: every grid
    point (``grid``, ties: first in grid order) or successive halving over a seeded sample
    (``halving``), within ``search_budget_s``. Returns the point, every trial as a
    ``validation`` row and the search's description (strategy, seed, chosen row)."""
    s, k = cfg.search, cfg.k
    described: dict[str, Any] = {"strategy": s.strategy, "seed": cfg.seed, "budget_s": s.search_budget_s}
    if split.train.limit(1).count() == 0 or split.relevant.limit(1).count() == 0:
        return grid(cfg)[0], [], {**described, "skipped": "no training or validation purchases"}

    def evaluate(params: AlsParams, iterations: int | None) -> tuple[float, dict[str, Any]]:
        if iterations is not None:
            params = replace(params, max_iter=iterations)
        fitted = fit_candidate(ALS_METHOD, split.train, cfg, params)
        metrics = evaluate_method(rank_lists(fitted, split, raw, products, cfg, k), split, k, catalogue_size)
        return metrics[f"ndcg@{k}"], {n: metrics[n] for n in (f"precision@{k}", "users")}

    started = time.monotonic()
    if s.strategy == "grid":
        result = grid_search(grid(cfg), evaluate, s.search_budget_s)
    else:
        sampled = sample_points(halving_points(cfg), s.points, cfg.seed)
        described["points"] = len(sampled)
        result = successive_halving(sampled, evaluate, s.min_iter, max(cfg.grid.max_iter), s.keep, s.search_budget_s)
    tried = [_tried_row(t, k) for t in result.trials]
    chosen = replace(result.best, max_iter=result.best_trial.iterations or result.best.max_iter)
    described |= {
        "rung_iterations": result.rung_iterations,
        "fits": len(tried),
        "stopped_by_budget": result.stopped_by_budget,
        "seconds": round(time.monotonic() - started, 1),
        "chosen": _tried_row(result.best_trial, k),
    }
    if result.stopped_by_budget:
        log.warning(
            "recommend: ALS search stopped by recommend.search.search_budget_s (%s s) after %d fits; "
            "keeping the best so far: %s",
            s.search_budget_s,
            len(tried),
            chosen.as_dict(),
        )
    log.info(
        "recommend: ALS %s search, %d fits in %.0f s, chosen %s", s.strategy, len(tried), described["seconds"], chosen
    )
    return chosen, tried, described


def halving_points(cfg: RecommendConfig) -> list[AlsParams]:
    """One point per (rank, reg_param, alpha, confidence), at the largest ``max_iter``
    (halving sets each rung's iterations itself)."""
    g = cfg.grid
    combos = itertools.product(g.rank, g.reg_param, g.alpha, g.confidence)
    return [AlsParams(rank, reg, alpha, max(g.max_iter), conf) for rank, reg, alpha, conf in combos]


def _tried_row(trial: Trial[AlsParams], k: int) -> dict[str, Any]:
    """A ``validation`` row: the point as fitted, its rung, validation metrics and seconds."""
    point = trial.point if trial.iterations is None else replace(trial.point, max_iter=trial.iterations)
    return {
        **point.as_dict(),
        "rung": trial.rung,
        f"ndcg@{k}": trial.score,
        **trial.extras,
        "seconds": round(trial.seconds, 1),
    }


def choose_candidate(validation: dict[str, dict[str, Any]], order: list[str], k: int) -> str:
    """The candidate with the best validation NDCG@k (ties: earlier in ``order``); the first
    candidate when nothing could be validated."""
    scored = [m for m in order if m in validation]
    if not scored:
        return order[0]
    return max(scored, key=lambda m: (validation[m][f"ndcg@{k}"], -order.index(m)))


# ---------------------------------------------------------------------------- similar items
def similar_items(
    model: ALSModel,
    ids: IdMap,
    train: DataFrame,
    products: DataFrame,
    k: int,
    max_bytes: int = 1 << 30,
    content: DataFrame | None = None,
) -> DataFrame:
    """``item_id, rank, similar_item_id, similarity, reason`` (see the module docstring).

    Similarities are rounded to the 6 decimals gold publishes before ranking, so the
    published order is exactly similarity descending, then ``similar_item_id``.
    ``content`` (``item_id, rank, similar_item_id, similarity`` from common.content):
    items ALS has not seen take their content neighbours (reason ``content``) before
    the category fallback."""
    factors = (
        model.itemFactors.select(F.col("id").alias("item_idx"), "features")
        .join(ids.item_lookup(train), "item_idx")
        .select("item_id", "features")
    )
    # Positive cosine only: a negatively correlated item is not "similar", whatever the rank.
    pairs = dense_top_k(
        factors, k, "item_id", "features", "similar_item_id", min_similarity=0.0, decimals=6, max_bytes=max_bytes
    ).withColumn("reason", F.lit(MODEL))
    # Items ALS has not seen: the most popular items of their category.
    cats = products.select("item_id", F.coalesce("category_l1", F.lit(NO_CATEGORY)).alias("category")).dropDuplicates(
        ["item_id"]
    )
    pop = popularity(train).join(cats, "item_id")
    top = pop.withColumn(
        "_r", F.row_number().over(Window.partitionBy("category").orderBy(F.col("popularity").desc(), "item_id"))
    ).where(F.col("_r") <= k)
    cold = cats.join(factors.select("item_id"), "item_id", "left_anti")
    by_content = None
    if content is not None:
        by_content = (
            content.where(F.col("rank") <= k)
            .join(cold.select("item_id"), "item_id", "left_semi")
            .select("item_id", "rank", "similar_item_id", "similarity", F.lit(CONTENT).alias("reason"))
        )
        cold = cold.join(by_content.select("item_id"), "item_id", "left_anti")
    fallback = (
        cold.join(top.select("category", F.col("item_id").alias("similar_item_id"), "_r"), "category")
        .where(F.col("item_id") != F.col("similar_item_id"))
        .select(
            "item_id",
            F.row_number().over(Window.partitionBy("item_id").orderBy("_r")).alias("rank"),
            "similar_item_id",
            F.lit(0.0).alias("similarity"),
            F.lit(FALLBACK).alias("reason"),
        )
    )
    out = pairs.unionByName(fallback)
    return out if by_content is None else out.unionByName(by_content)


# ---------------------------------------------------------------------------- cold start
RANDOM_SAME_CATEGORY = "random_same_category"


def cold_start_split(raw: DataFrame, products: DataFrame, cutoff: date, end: date) -> tuple[Split, DataFrame]:
    """The cold-start split: ``train`` is everything touched up to ``cutoff``; the pool of
    cold items (returned with the split) is every product nobody touched up to ``cutoff``;
    ``relevant`` holds the purchases after ``cutoff`` up to ``end`` of cold items by users
    with a training history."""
    train = aggregate(raw, cutoff)
    cold = products.select("item_id").distinct().join(train.select("item_id"), "item_id", "left_anti")
    relevant = (
        purchases_between(raw, cutoff, end)
        .join(cold, "item_id", "left_semi")
        .join(train.select("user_key"), "user_key", "left_semi")
    )
    return Split(train, relevant, {"kind": "cold_start", "train_until": cutoff.isoformat()}, cutoff), cold


def _top(scored: DataFrame, k: int) -> DataFrame:
    order = Window.partitionBy("user_key").orderBy(F.col("score").desc(), "item_id")
    return scored.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k)


def cold_start_lists(
    vectors: DataFrame, products: DataFrame, split: Split, cold: DataFrame, k: int, seed: int
) -> dict[str, DataFrame]:
    """``user_key, rank, item_id`` lists of cold items for the users with relevant cold purchases.

    - ``content``: cold items ranked by the sum of their content cosines to the user's
      training items (common.content.content_scores);
    - ``random_same_category``: ``k`` cold items drawn at random (seeded hash of user and
      item) from the top-level categories of the user's training items."""
    users = split.relevant.select("user_key").distinct()
    history = split.train.join(users, "user_key", "left_semi").select("user_key", "item_id")
    content = _top(content_scores(vectors, history, cold), k)
    cats = products.select("item_id", F.coalesce("category_l1", F.lit(NO_CATEGORY)).alias("category")).dropDuplicates(
        ["item_id"]
    )
    user_cats = history.join(cats, "item_id").select("user_key", "category").distinct()
    draw = F.xxhash64(F.lit(seed), "user_key", "item_id").cast("double")
    random = _top(user_cats.join(cats.join(cold, "item_id", "left_semi"), "category").withColumn("score", draw), k)
    return {CONTENT: content, RANDOM_SAME_CATEGORY: random}


def evaluate_cold_start(
    raw: DataFrame, products: DataFrame, vectors: DataFrame, cutoff: date, end: date, k: int, seed: int
) -> dict[str, Any]:
    """Hit rate@k (and NDCG@k) of content picks against random same-category picks for
    products first bought after ``cutoff``.

    Protocol: the pool is every product nobody touched up to ``cutoff``; a test case is a
    user with training history who bought pool products between ``cutoff`` and ``end``;
    each method ranks the pool for that user (content: by summed content cosine to the
    user's training items; baseline: ``k`` random pool products of the user's training
    categories, seeded); a hit is a bought pool product in the top ``k``."""
    split, cold = cold_start_split(raw, products, cutoff, end)
    split.train, split.relevant = split.train.persist(), split.relevant.persist()
    try:
        cold_items = cold.count()
        bought = split.relevant.select("item_id").distinct().count()
        out: dict[str, Any] = {"train_until": cutoff.isoformat(), "pool_items": cold_items, "bought_cold_items": bought}
        if not bought:
            return {**out, "skipped": "no cold item bought after the cutoff"}
        cols = ranking.Columns(user="user_key", item="item_id", rank="rank")
        for method, lists in cold_start_lists(vectors, products, split, cold, k, seed).items():
            metrics = ranking.evaluate(lists, split.relevant, k, max(cold_items, 1), cols)
            out[method] = {n: metrics[n] for n in (f"hit_rate@{k}", f"ndcg@{k}", f"recall@{k}", "users")}
        log.info(
            "recommend: cold start on %d buyers of %d cold items (pool %d): hit_rate@%d content %.4f, random %.4f",
            out[CONTENT]["users"],
            bought,
            cold_items,
            k,
            out[CONTENT][f"hit_rate@{k}"],
            out[RANDOM_SAME_CATEGORY][f"hit_rate@{k}"],
        )
        return out
    finally:
        split.train.unpersist()
        split.relevant.unpersist()


def check_similar_items_size(rc: RecommendConfig, items: int) -> None:
    """Fail before any fitting when ``items`` factors of the grid's largest rank exceed the bound."""
    if rc.similar_items:
        check_dense_size(
            items,
            max(rc.grid.rank),
            rc.similar_max_mb * 2**20,
            what="recommend: gold.similar_items",
            advice="raise recommend.similar_max_mb if the driver and executors have the memory, "
            "or set recommend.similar_items: 0 to skip the table",
        )


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
        check_similar_items_size(rc, raw.select("item_id").distinct().count())
        vectors = neighbours = None
        if rc.content.enabled and products.limit(1).count():
            vectors = content_vectors(products, rc).persist()
            neighbours = vectors.transform(content_neighbours(rc.content.neighbours, NEIGHBOUR)).persist()
            cached += [vectors, neighbours]
        evaluation = _evaluate(raw, products, rc, as_of, catalogue, cached, neighbours)
        if vectors is not None:
            evaluation["cold_start"] = _cold_start(raw, products, vectors, rc, as_of)
        placement = evaluation["content_fill"]["placement"]
        params = AlsParams(**evaluation["chosen_params"])
        chosen = evaluation["chosen_model"]
        # Publish: everything up to the as-of day.
        interactions = aggregate(raw, as_of, rc.half_life_days).persist()
        cached.append(interactions)
        registered = customers.where(F.col("registered_at").isNull() | on_or_before("registered_at", as_of)).select(
            "user_key"
        )
        users = registered.unionByName(interactions.select("user_key")).distinct().persist()
        cached.append(users)
        fallback = popular_candidates(interactions, users, rc.top_n)
        folder = neighbours_dir = None
        primary = fallback.limit(0)
        similar = None
        if interactions.limit(1).count():
            if chosen == ALS_METHOD or rc.similar_items:
                model, ids = fit_als(interactions, params, rc.seed, rc.bm25)
                folder = artifacts.model_dir(cfg, "recommend_als", as_of.isoformat())
                model.write().overwrite().save(f"{folder}/als")
                ids.save(folder)
                if chosen == ALS_METHOD:
                    primary = als_candidates(model, ids, interactions, None, rc.top_n)
                if rc.similar_items:
                    content = None if neighbours is None else neighbours.withColumnRenamed(NEIGHBOUR, "similar_item_id")
                    similar = similar_items(
                        model, ids, interactions, products, rc.similar_items, rc.similar_max_mb * 2**20, content
                    )
            if chosen in (ITEM_KNN, SAR):
                fitted = fit_candidate(chosen, interactions, rc)
                cached.append(fitted.neighbours)
                # Saved so lists can be rescored from new interactions without refitting.
                neighbours_dir = artifacts.model_dir(cfg, f"recommend_{chosen}", as_of.isoformat())
                fitted.neighbours.write.mode("overwrite").parquet(f"{neighbours_dir}/neighbours")
                primary = model_candidates(fitted, interactions, raw, as_of, rc, None, rc.top_n)
        elif rc.similar_items:
            similar = spark.createDataFrame([], GOLD_SIMILAR_ITEMS.schema).drop("as_of")
        fill = None
        if placement != FILL_NONE and neighbours is not None:
            sparse = sparse_users(interactions, rc.content.fill_below)
            fill = content_fill_candidates(interactions, neighbours, sparse)
        recs = top_n_with_fallback(primary, fallback, rc.top_n, fill, placement).withColumn(
            "score", F.round("score", 6)
        )
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
        reasons = {r["reason"]: r["count"] for r in published.groupBy("reason").count().collect()}
        coverage = ranking.catalogue_coverage(published, catalogue, rc.top_n, ranking.Columns(item="item_id"))
        published_users = published.select("user_key").distinct().count()
    finally:
        for df in cached:
            df.unpersist()
    k = rc.k
    test = evaluation.get("test", {})
    chosen_ndcg, pop_ndcg = (test.get(m, {}).get(f"ndcg@{k}") for m in (chosen, MOST_POPULAR))
    result.metrics = {
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
        # Of the published (chosen) model.
        f"ndcg@{k}_relative_gain_vs_most_popular": (chosen_ndcg / pop_ndcg - 1.0)
        if chosen_ndcg is not None and pop_ndcg
        else None,
        "published": {
            "users": published_users,
            "model": chosen,
            "reasons": dict(sorted(reasons.items())),
            f"coverage@{rc.top_n}": coverage,
            "model_dir": folder,
            "neighbours_dir": neighbours_dir,
        },
    }
    result.metrics["report"] = write_report(cfg, run_id, result.metrics, k)
    result.summary = _summary(result.metrics, k)
    return result


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
        cached.extend([split.train, split.relevant])
    k = rc.k
    candidates = list(dict.fromkeys(rc.candidates))
    validated = validation.train.limit(1).count() and validation.relevant.limit(1).count()
    params, tried, search = grid(rc)[0], [], {"skipped": "als is not a candidate"}
    if ALS_METHOD in candidates:
        params, tried, search = choose_params(validation, raw, products, rc, catalogue_size)
    scores: dict[str, dict[str, Any]] = {}
    if validated:
        others = [m for m in candidates if m != ALS_METHOD]
        for method, metrics in evaluate_methods(validation, raw, products, rc, params, catalogue_size, others).items():
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
        out["test"] = evaluate_methods(test, raw, products, rc, params, catalogue_size, methods)
    else:
        out["test"] = {}
        log.warning("recommend: no training interactions or test purchases; evaluation skipped")
    out["content_fill"] = _content_fill(test, validation, raw, products, rc, params, chosen, content, catalogue_size)
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


def _test_cells(row: dict[str, Any] | None, names: list[str]) -> list[str]:
    """One method's test metrics as report cells (``n/a`` when it was not evaluated)."""
    if row is None:
        return ["n/a"] * len(names)
    return [str(row[n]) if n == "users" else f"{row[n]:.4f}" for n in names]


def write_report(cfg: ShopLakeConfig, run_id: str, metrics: dict[str, Any], k: int) -> str:
    """``<lake>/reports/recommend/<run_id>.json`` and ``.md``; returns the markdown path."""
    path = artifacts.report_path(cfg, "recommend", f"{run_id}.md")
    with open(path.removesuffix(".md") + ".json", "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)
    names = [f"precision@{k}", f"recall@{k}", f"ndcg@{k}", f"map@{k}", "map", f"hit_rate@{k}", f"coverage@{k}", "users"]
    lines = [
        f"# Recommendation report {run_id}",
        "",
        f"As of {metrics['as_of']}; split: `{json.dumps(metrics['split'], sort_keys=True)}`.",
        f"Chosen ALS parameters (validation NDCG@{k}): `{json.dumps(metrics['chosen_params'], sort_keys=True)}`.",
        f"Published model (best validation NDCG@{k}): **{metrics['chosen_model']}**.",
        "",
        "## Candidates",
        "",
        *markdown.table(
            [
                "candidate",
                f"validation ndcg@{k}",
                f"validation precision@{k}",
                f"test ndcg@{k}",
                f"test precision@{k}",
                "chosen",
            ],
            [
                [
                    method,
                    *_test_cells(metrics["validation_candidates"].get(method), [f"ndcg@{k}", f"precision@{k}"]),
                    *_test_cells(metrics["test"].get(method), [f"ndcg@{k}", f"precision@{k}"]),
                    "yes" if method == metrics["chosen_model"] else "",
                ]
                for method in dict.fromkeys([*metrics["validation_candidates"], metrics["chosen_model"]])
            ],
        ),
        "",
        "## Test metrics (relevant: purchases of items unseen in training)",
        "",
        *markdown.table(
            ["method", *names], [[method, *_test_cells(metrics["test"].get(method), names)] for method in METHODS]
        ),
    ]
    lines += _search_lines(metrics.get("search", {}), metrics["validation"], k)
    lines += _cold_start_lines(metrics.get("cold_start"), k)
    lines += _content_fill_lines(metrics.get("content_fill", {}), k)
    pub = metrics["published"]
    lines += [
        "",
        "## Published recommendations",
        "",
        f"- users: {pub['users']}",
        f"- coverage@{cfg.recommend.top_n}: {pub[f'coverage@{cfg.recommend.top_n}']:.4f}",
        "- reasons: " + ", ".join(f"{r} {n}" for r, n in pub["reasons"].items()),
        "",
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return path if is_local(path) else ""


SEARCH_COLUMNS = ("rung", "rank", "reg_param", "alpha", "confidence", "max_iter")


def _search_lines(search: dict[str, Any], tried: Any, k: int) -> list[str]:
    """The report's ALS search section: how it searched and every trial on validation."""
    lines = ["", f"## ALS search (validation NDCG@{k})", ""]
    if not isinstance(tried, list) or not tried:
        return [*lines, f"Not searched: {search.get('skipped', tried)}."]
    budget = search.get("budget_s")
    lines += [
        f"Strategy `{search['strategy']}`, seed {search['seed']}, {search['fits']} fits in {search['seconds']} s "
        f"(budget {'none' if budget is None else f'{budget:g} s'}"
        f"{', reached: best so far kept' if search['stopped_by_budget'] else ''}); "
        f"iterations per rung: {search['rung_iterations']}.",
        "",
    ]
    names = [f"ndcg@{k}", f"precision@{k}"]
    rows = [[str(t[c]) for c in SEARCH_COLUMNS] + [f"{t[n]:.4f}" for n in names] + [str(t["seconds"])] for t in tried]
    return [*lines, *markdown.table([*SEARCH_COLUMNS, *names, "seconds"], rows)]


def _cold_start_lines(cold: Any, k: int) -> list[str]:
    """The report's cold-start section (see :func:`evaluate_cold_start`)."""
    lines = ["", "## Cold start (products nobody touched before the test period)", ""]
    if not isinstance(cold, dict) or "skipped" in cold:
        reason = cold if not isinstance(cold, dict) else cold["skipped"]
        return [*lines, f"Not evaluated: {reason}."]
    names = [f"hit_rate@{k}", f"ndcg@{k}", f"recall@{k}", "users"]
    return [
        *lines,
        f"Pool: {cold['pool_items']} products untouched up to {cold['train_until']}, "
        f"{cold['bought_cold_items']} of them bought after it. Each test buyer's pool ranked by content "
        f"cosine to their training items, against {k} random pool products of their training categories.",
        "",
        *markdown.table(
            ["method", *names],
            [[m, *_test_cells(cold.get(m), names)] for m in (CONTENT, RANDOM_SAME_CATEGORY)],
        ),
    ]


def _content_fill_lines(fill: dict[str, Any], k: int) -> list[str]:
    """The report's section on content picks for users with few items (see :func:`evaluate_content_fill`)."""
    lines = ["", f"## Content picks for users with fewer than {fill.get('fill_below')} items", ""]
    if "skipped" in fill:
        return [*lines, f"Not evaluated: {fill['skipped']}."]
    names = [f"ndcg@{k}", f"precision@{k}", "users"]
    rows = []
    for placement in FILL_PLACEMENTS:
        cells = [placement]
        for side in ("validation", "test"):
            cells += _test_cells(fill.get(side, {}).get(placement), names)
        rows.append([*cells, "yes" if placement == fill["placement"] else ""])
    skipped = [f"{side}: {fill[side]['skipped']}" for side in ("validation", "test") if "skipped" in fill.get(side, {})]
    return [
        *lines,
        "The published model's lists for these users with their items' content neighbours placed before the "
        "model's picks, after them (ahead of the popular fallback) or not at all; the best validation "
        f"NDCG@{k} is published (a tie keeps the earlier row)."
        + (f" Not evaluated on {'; '.join(skipped)}." if skipped else ""),
        "",
        *markdown.table(
            ["content picks", *[f"{side} {n}" for side in ("validation", "test") for n in names], "chosen"], rows
        ),
    ]


def _summary(metrics: dict[str, Any], k: int) -> str:
    lines = [
        f"recommend: as of {metrics['as_of']}, {metrics['published']['users']:,} users, "
        f"published model {metrics['chosen_model']} (best validation ndcg@{k})"
    ]
    for method, row in metrics["test"].items():
        lines.append(f"  {method:<17} ndcg@{k} {row[f'ndcg@{k}']:.4f}  precision@{k} {row[f'precision@{k}']:.4f}")
    cold = metrics.get("cold_start")
    if isinstance(cold, dict) and CONTENT in cold:
        lines.append(
            f"  cold start hit_rate@{k}: content {cold[CONTENT][f'hit_rate@{k}']:.4f}"
            f"  random same category {cold[RANDOM_SAME_CATEGORY][f'hit_rate@{k}']:.4f}"
        )
    fill = metrics.get("content_fill", {})
    lines.append(f"  content picks for users with fewer than {fill.get('fill_below')} items: {fill.get('placement')}")
    lines.append(f"  reasons: {metrics['published']['reasons']}  report: {metrics['report']}")
    return "\n".join(lines)
