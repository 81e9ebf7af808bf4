"""What each candidate recommends: ALS, item-kNN, SAR and the popularity lists, and how a
published list is assembled from them in tiers (model, content, fallback)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from functools import reduce
from typing import Any

from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.asof import on_or_before
from common.confidence import RAW, apply_confidence
from common.config import Bm25Config, RecommendConfig
from common.interactions import IdMap, aggregate
from common.neighbours import DEFAULT_MAX_BYTES, sparse_top_k, top_unseen, top_unseen_neighbours

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
# Extra candidates per category a user's seen items can remove in the category baseline, at most this many.
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
def fit_als(
    train: DataFrame, params: AlsParams, seed: int, bm25: Bm25Config | None = None, ids: IdMap | None = None
) -> tuple[ALSModel, IdMap]:
    """Fit implicit-preference ALS on ``user_key, item_id, strength`` rows, the strength
    first transformed by ``params.confidence`` (``bm25``: that transform's k1 and b);
    ``ids``: an IdMap already fitted on ``train`` (the search's fits share one)."""
    bm25 = bm25 or Bm25Config()
    ids = ids or IdMap.fit(train)
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
    return int(min(_most_seen(train), MAX_SEEN_MARGIN))


def _most_seen(train: DataFrame) -> int:
    return train.groupBy("user_key").count().agg(F.max("count")).first()[0] or 0


def als_candidates(
    model: ALSModel,
    ids: IdMap,
    train: DataFrame,
    users: DataFrame | None,
    n: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> DataFrame:
    """``user_key, item_id, score`` from ALS: the top ``n`` unseen items of each known user
    (of ``users``, or of everyone), exact (common.neighbours.top_unseen on the factors);
    ``max_bytes`` bounds the broadcast item factors."""
    user_factors = model.userFactors.select(F.col("id").alias("user_idx"), "features")
    if users is not None:
        user_factors = user_factors.join(ids.user_lookup(users).select("user_idx"), "user_idx", "left_semi")
    item_factors = model.itemFactors.select(F.col("id").alias("item_idx"), "features")
    seen = ids.to_index(train.select("user_key", "item_id")).select("user_idx", "item_idx")
    # item_idx follows item_id (alphabetAsc), so ties go to the smaller item id.
    top = top_unseen(user_factors, item_factors, seen, n, "user_idx", "item_idx", max_bytes=max_bytes)
    return (
        top.join(ids.user_lookup(train), "user_idx")
        .join(F.broadcast(ids.item_lookup(train)), "item_idx")
        .select("user_key", "item_id", "score")
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

    Only the ``n`` + largest-seen-count most popular items can be anyone's, so those are
    broadcast and each user's seen ones masked (common.neighbours.top_unseen): the
    users meet a bounded list, not the catalogue."""
    top = popularity(train).orderBy(F.col("popularity").desc(), "item_id").limit(n + _most_seen(train))
    items = top.select("item_id", F.array("popularity").alias("features"))
    queries = users.select("user_key").distinct().withColumn("features", F.array(F.lit(1.0)))
    return top_unseen(queries, items, train, n, "user_key", "item_id").select("user_key", "item_id", "score")


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
    weights: DataFrame, neighbours: DataFrame, seen: DataFrame, n: int, users: DataFrame | None = None
) -> DataFrame:
    """``user_key, item_id, score``: each user's best ``n`` by the sum over the user's items
    ``i`` of weight(user, i) x similarity(i, item), among the neighbours of the user's items
    that the user has not seen (common.neighbours.top_unseen_neighbours: sparse products on
    the executors, no user-item x neighbour rows)."""
    if users is not None:
        weights = weights.join(users.select("user_key"), "user_key", "left_semi")
        seen = seen.join(users.select("user_key"), "user_key", "left_semi")
    top = top_unseen_neighbours(
        weights, neighbours, seen.select("user_key", "item_id"), n, "user_key", "item_id", NEIGHBOUR
    )
    return top.select("user_key", "item_id", "score")


@dataclass
class Fitted:
    """What a candidate learnt from a training side: ALS model and ids, or an item-neighbour table."""

    method: str
    als: tuple[ALSModel, IdMap] | None = None
    neighbours: DataFrame | None = None


def fit_candidate(
    method: str, train: DataFrame, rc: RecommendConfig, params: AlsParams | None = None, ids: IdMap | None = None
) -> Fitted:
    """Fit ``method`` on ``train`` (ALS: ``ids`` as in fit_als); the neighbour tables are
    persisted (callers unpersist via release)."""
    if method == ALS_METHOD:
        assert params is not None
        return Fitted(method, als=fit_als(train, params, rc.seed, rc.bm25, ids))
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
        return als_candidates(*fitted.als, train, users, n, rc.similar_max_mb * 2**20)
    if fitted.method == ITEM_KNN:
        # Unweighted: a user's score is the sum of similarities to the items they touched.
        weights = train.select("user_key", "item_id", F.lit(1.0).alias("weight"))
        return neighbour_candidates(weights, fitted.neighbours, train, n, users)
    if fitted.method == SAR:
        weights = sar_affinity(raw, train, until, rc.sar.half_life_days)
        return neighbour_candidates(weights, fitted.neighbours, train, n, users)
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


def content_fill_candidates(train: DataFrame, neighbours: DataFrame, users: DataFrame, n: int) -> DataFrame:
    """``user_key, item_id, score``: for ``users``, the best ``n`` content neighbours of their
    items that they have not seen, scored by the sum of cosines to their items."""
    weights = train.select("user_key", "item_id", F.lit(1.0).alias("weight"))
    return neighbour_candidates(weights, neighbours, train, n, users)
