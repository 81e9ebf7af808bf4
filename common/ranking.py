"""Ranking metrics for top-k recommendations, computed in Spark for every user.

Inputs are two DataFrames: ``recommended`` (user, item, rank 1..) and ``relevant``
(user, item: what the user actually went on to take, already-seen items removed
by the caller). Definitions, for a user with ``R`` relevant items and hits at
ranks ``r`` (only ranks <= k count for the @k metrics):

- precision@k = hits@k / k (the list is always judged as k long, so a short
  list is not rewarded);
- recall@k = hits@k / R;
- NDCG@k = sum over hits of 1/log2(r + 1), divided by the ideal DCG
  sum_{i=1..min(R, k)} 1/log2(i + 1): a user with fewer relevant items than k
  can still reach 1;
- AP@k = sum over hits of precision@r, divided by min(R, k); MAP@k is its mean.
  MAP (no cut-off) uses every recommended rank and divides by R;
- hit rate@k = 1 when hits@k > 0;
- catalogue coverage@k = distinct items in anybody's top k / catalogue size.

Users with no relevant items are left out of every average (no metric is
defined for them) and counted in ``users_without_relevant``; users with relevant
items but no recommendations score 0 everywhere and stay in the averages, so a
model cannot look better by recommending to fewer people.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

USER, ITEM, RANK = "user", "item", "rank"
METRICS = ("precision", "recall", "ndcg", "map_at_k", "map", "hit_rate")


@dataclass(frozen=True)
class Columns:
    """Column names of the inputs (defaults: user, item, rank)."""

    user: str = USER
    item: str = ITEM
    rank: str = RANK


def _discount(rank):
    return F.lit(1.0) / F.log2(rank.cast("double") + F.lit(1.0))


def per_user_metrics(recommended: DataFrame, relevant: DataFrame, k: int, cols: Columns = Columns()) -> DataFrame:
    """One row per user with relevant items: ``user, n_relevant, hits, precision, recall,
    ndcg, map_at_k, map, hit_rate`` (see the module docstring)."""
    rel = relevant.select(F.col(cols.user).alias(USER), F.col(cols.item).alias(ITEM)).distinct()
    n_rel = rel.groupBy(USER).agg(F.count("*").alias("n_relevant"))
    recs = recommended.select(
        F.col(cols.user).alias(USER), F.col(cols.item).alias(ITEM), F.col(cols.rank).cast("int").alias(RANK)
    )
    hits = recs.join(rel.withColumn("_hit", F.lit(1)), [USER, ITEM], "inner")
    # Precision at each hit's rank: hits so far / rank (for average precision).
    so_far = Window.partitionBy(USER).orderBy(RANK).rowsBetween(Window.unboundedPreceding, 0)
    hits = hits.withColumn("_prec_at_r", F.count("*").over(so_far) / F.col(RANK))
    at_k = F.col(RANK) <= k
    per_user_hits = hits.groupBy(USER).agg(
        F.sum(F.when(at_k, 1).otherwise(0)).alias("hits"),
        F.sum(F.when(at_k, _discount(F.col(RANK))).otherwise(0.0)).alias("_dcg"),
        F.sum(F.when(at_k, F.col("_prec_at_r")).otherwise(0.0)).alias("_ap_k_sum"),
        F.sum("_prec_at_r").alias("_ap_sum"),
    )
    ideal_n = F.least(F.col("n_relevant"), F.lit(k))
    idcg = F.aggregate(F.sequence(F.lit(1), ideal_n), F.lit(0.0), lambda acc, i: acc + _discount(i))
    return (
        n_rel.join(per_user_hits, USER, "left")
        .fillna(0, ["hits", "_dcg", "_ap_k_sum", "_ap_sum"])
        .select(
            USER,
            "n_relevant",
            F.col("hits").cast("long").alias("hits"),
            (F.col("hits") / F.lit(float(k))).alias("precision"),
            (F.col("hits") / F.col("n_relevant")).alias("recall"),
            (F.col("_dcg") / idcg).alias("ndcg"),
            (F.col("_ap_k_sum") / ideal_n).alias("map_at_k"),
            (F.col("_ap_sum") / F.col("n_relevant")).alias("map"),
            F.when(F.col("hits") > 0, 1.0).otherwise(0.0).alias("hit_rate"),
        )
        .withColumnRenamed(USER, cols.user)
    )


def catalogue_coverage(recommended: DataFrame, catalogue_size: int, k: int, cols: Columns = Columns()) -> float:
    """Share of the catalogue that appears in at least one user's top k."""
    if catalogue_size <= 0:
        return 0.0
    distinct = recommended.where(F.col(cols.rank) <= k).select(cols.item).distinct().count()
    return distinct / catalogue_size


def evaluate(
    recommended: DataFrame,
    relevant: DataFrame,
    k: int,
    catalogue_size: int,
    cols: Columns = Columns(),
    users_without_relevant: int | None = None,
) -> dict[str, float | int]:
    """Mean of every metric over users with relevant items, plus coverage and user counts.

    Keys: ``precision@k, recall@k, ndcg@k, map@k, map, hit_rate@k, coverage@k, users``.
    """
    # Two actions read the lists (the metrics, then coverage): computed once, not twice (a
    # model's lists are its most expensive part), unless the caller already cached them.
    owned = not recommended.is_cached
    if owned:
        recommended = recommended.persist()
    try:
        per_user = per_user_metrics(recommended, relevant, k, cols)
        row = per_user.agg(F.count("*").alias("users"), *[F.avg(m).alias(m) for m in METRICS]).first()
        coverage = catalogue_coverage(recommended, catalogue_size, k, cols)
    finally:
        if owned:
            recommended.unpersist()
    out: dict[str, float | int] = {
        f"precision@{k}": row["precision"] or 0.0,
        f"recall@{k}": row["recall"] or 0.0,
        f"ndcg@{k}": row["ndcg"] or 0.0,
        f"map@{k}": row["map_at_k"] or 0.0,
        "map": row["map"] or 0.0,
        f"hit_rate@{k}": row["hit_rate"] or 0.0,
        f"coverage@{k}": coverage,
        "users": int(row["users"]),
    }
    if users_without_relevant is not None:
        out["users_without_relevant"] = users_without_relevant
    return out
