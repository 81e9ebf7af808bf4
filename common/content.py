"""Content-based item vectors and neighbours from product attributes (issue #19, item 3).

An item's vector has one block per feature of ``recommend.content.features``, each
block scaled to unit length and the whole vector normalised again, so the cosine of
two items is the mean of their per-feature cosines over the features both have
(with all features present: ``(cos_name + cos_category + cos_brand + cos_price) / 4``):

- ``name``: TF-IDF of the product name's tokens (latin words and single Han
  characters, lower-cased) and their bigrams, hashed into ``num_features`` buckets;
- ``category``: the category path as tokens ``l1``, ``l1/l2``, ``l1/l2/l3`` (binary),
  so same third level = 1, same second level only = 2/3, same top level only = 1/3;
- ``brand``: the brand (binary: same brand = 1);
- ``price_band``: the price's quantile band within its top-level category (binary).

Neighbours are exact cosines computed as a sparse dot product: each vector is
exploded into ``(item, bucket, value)`` entries, self-joined on the bucket and
summed per pair. Pairs are blocked by top-level category (only items of one
``category_l1`` meet), so a pair row exists only for items that share a category
and a token: the catalogue is small (hundreds to a few thousand products), items
x items within one category is cheap, and a cross-category pair's content signal
would rest on stray name tokens anyway. No full items x items cross join is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import (
    IDF,
    HashingTF,
    NGram,
    Normalizer,
    RegexTokenizer,
    SQLTransformer,
    VectorAssembler,
)
from pyspark.ml.linalg import SparseVector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

FEATURES = ("name", "category", "brand", "price_band")
NO_BLOCK = "(none)"
# Latin words and digits, or one Han character: names here are Chinese or English/German.
TOKEN_PATTERN = r"\p{IsHan}|[\p{L}\p{N}]+"

_ENTRY = T.ArrayType(T.StructType([T.StructField("bucket", T.IntegerType()), T.StructField("value", T.DoubleType())]))


@F.udf(returnType=_ENTRY)
def _entries(vector):  # no type hints: pandas-style inference would reject them
    """``[(bucket, value)]`` of a vector's non-zero entries."""
    if vector is None:
        return []
    if isinstance(vector, SparseVector):
        return [(int(i), float(v)) for i, v in zip(vector.indices, vector.values) if v != 0.0]
    return [(int(i), float(v)) for i, v in enumerate(vector.toArray()) if v != 0.0]


def with_attribute_tokens(price_bands: int) -> Callable[[DataFrame], DataFrame]:
    """Adds ``_category_tokens``, ``_brand_tokens``, ``_price_band_tokens`` (string arrays) and
    ``block`` (the top-level category, ``(none)`` when missing) to silver products."""

    def transform(products: DataFrame) -> DataFrame:
        l1 = F.coalesce(F.trim("category_l1"), F.lit(""))
        l2 = F.coalesce(F.trim("category_l2"), F.lit(""))
        l3 = F.coalesce(F.trim("category_l3"), F.lit(""))
        band = F.ntile(price_bands).over(Window.partitionBy(l1).orderBy(F.col("price").asc_nulls_first(), "item_id"))
        return (
            products.withColumn("block", F.when(l1 == "", F.lit(NO_BLOCK)).otherwise(l1))
            .withColumn(
                "_category_tokens",
                F.filter(
                    F.array(
                        F.when(l1 != "", F.concat(F.lit("c1:"), l1)),
                        F.when(l2 != "", F.concat_ws("/", F.lit("c2:"), l1, l2)),
                        F.when(l3 != "", F.concat_ws("/", F.lit("c3:"), l1, l2, l3)),
                    ),
                    lambda t: t.isNotNull(),
                ),
            )
            .withColumn(
                "_brand_tokens",
                F.when(F.trim("brand") != "", F.array(F.concat(F.lit("b:"), F.lower(F.trim("brand"))))).otherwise(
                    F.array().cast("array<string>")
                ),
            )
            .withColumn(
                "_price_band_tokens",
                F.when(
                    F.col("price").isNotNull(), F.array(F.concat(F.lit("p:"), l1, F.lit(":"), band.cast("string")))
                ).otherwise(F.array().cast("array<string>")),
            )
            .withColumn("product_name", F.coalesce("product_name", F.lit("")))
        )

    return transform


def vector_pipeline(features: Sequence[str], num_features: int) -> Pipeline:
    """The pyspark.ml pipeline from the token columns to ``features`` (unit length):
    one normalised block per feature, assembled and normalised again."""
    unknown = sorted(set(features) - set(FEATURES))
    if unknown or not features:
        raise ValueError(f"content features must be among {list(FEATURES)}, got {list(features)}")
    stages: list = []
    blocks = []
    for feature in dict.fromkeys(features):
        if feature == "name":
            stages += [
                RegexTokenizer(inputCol="product_name", outputCol="_words", pattern=TOKEN_PATTERN, gaps=False),
                NGram(n=2, inputCol="_words", outputCol="_bigrams"),
                SQLTransformer(statement="SELECT *, concat(_words, _bigrams) AS _name_tokens FROM __THIS__"),
                HashingTF(inputCol="_name_tokens", outputCol="_name_tf", numFeatures=num_features),
                IDF(inputCol="_name_tf", outputCol="_name_raw"),
            ]
        else:
            stages.append(
                HashingTF(
                    inputCol=f"_{feature}_tokens", outputCol=f"_{feature}_raw", numFeatures=num_features, binary=True
                )
            )
        stages.append(Normalizer(inputCol=f"_{feature}_raw", outputCol=f"_{feature}_unit", p=2.0))
        blocks.append(f"_{feature}_unit")
    stages += [
        VectorAssembler(inputCols=blocks, outputCol="_assembled"),
        Normalizer(inputCol="_assembled", outputCol="features", p=2.0),
    ]
    return Pipeline(stages=stages)


def item_vectors(
    features: Sequence[str] = FEATURES, num_features: int = 4096, price_bands: int = 5
) -> Callable[[DataFrame], DataFrame]:
    """Silver products -> ``item_id, block, features`` (one row per item, unit vectors)."""

    def transform(products: DataFrame) -> DataFrame:
        tokens = products.dropDuplicates(["item_id"]).transform(with_attribute_tokens(price_bands))
        model: PipelineModel = vector_pipeline(features, num_features).fit(tokens)
        return model.transform(tokens).select("item_id", "block", "features")

    return transform


def entries(vectors: DataFrame) -> DataFrame:
    """``item_id, block, bucket, value``: the non-zero entries of each item's vector."""
    return vectors.select("item_id", "block", F.explode(_entries("features")).alias("e")).select(
        "item_id", "block", F.col("e.bucket").alias("bucket"), F.col("e.value").alias("value")
    )


def content_neighbours(
    k: int, neighbour_col: str = "similar_item_id", decimals: int = 6
) -> Callable[[DataFrame], DataFrame]:
    """Vectors -> ``item_id, rank, <neighbour_col>, similarity``: each item's ``k`` most
    cosine-similar items of its block (positive similarity; rounded to ``decimals``
    before ranking, ties to the smaller id)."""

    def transform(vectors: DataFrame) -> DataFrame:
        e = entries(vectors)
        other = e.select(F.col("item_id").alias(neighbour_col), "block", "bucket", F.col("value").alias("_other_value"))
        sims = (
            e.join(other, ["block", "bucket"])
            .where(F.col("item_id") != F.col(neighbour_col))
            .groupBy("item_id", neighbour_col)
            .agg(F.round(F.sum(F.col("value") * F.col("_other_value")), decimals).alias("similarity"))
            .where(F.col("similarity") > 0)
        )
        order = Window.partitionBy("item_id").orderBy(F.col("similarity").desc(), F.col(neighbour_col))
        return (
            sims.withColumn("rank", F.row_number().over(order))
            .where(F.col("rank") <= k)
            .select("item_id", "rank", neighbour_col, "similarity")
        )

    return transform


def content_scores(vectors: DataFrame, history: DataFrame, candidates: DataFrame) -> DataFrame:
    """``user_key, item_id, score``: for each user of ``history`` (``user_key, item_id``) and
    each item of ``candidates`` (``item_id``) in a block of the user's items, the sum of the
    cosines between the candidate and the user's items (a dot product with the user's
    summed profile). Candidates sharing no token with the user's items get no row."""
    e = entries(vectors)
    profile = (
        history.select("user_key", "item_id")
        .distinct()
        .join(e, "item_id")
        .groupBy("user_key", "block", "bucket")
        .agg(F.sum("value").alias("_weight"))
    )
    cand = e.join(candidates.select("item_id").distinct(), "item_id")
    return (
        profile.join(cand, ["block", "bucket"])
        .groupBy("user_key", "item_id")
        .agg(F.sum(F.col("_weight") * F.col("value")).alias("score"))
    )
