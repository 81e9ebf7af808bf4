"""``gold.similar_items``: exact top-k cosine of the ALS item factors, content neighbours
or category popularity for items ALS has not seen."""

from __future__ import annotations

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common.config import RecommendConfig
from common.interactions import IdMap
from common.neighbours import check_dense_size, dense_top_k
from jobs.recommend.candidates import ALS_METHOD, CONTENT, FALLBACK, MODEL, NO_CATEGORY, popularity


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


def check_item_factors_size(rc: RecommendConfig, items: int) -> None:
    """Fail before any fitting when ``items`` factors of the grid's largest rank exceed the
    bound: they are broadcast for ALS's lists and for ``gold.similar_items``."""
    if rc.similar_items or ALS_METHOD in rc.candidates:
        check_dense_size(
            items,
            max(rc.grid.rank),
            rc.similar_max_mb * 2**20,
            what="recommend: the ALS item factors",
            advice="raise recommend.similar_max_mb if the driver and executors have the memory, "
            "or set recommend.similar_items: 0 and leave als out of recommend.candidates",
        )
