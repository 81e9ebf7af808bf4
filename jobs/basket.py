"""Basket: FP-growth association rules, cross-sell suggestions and bundle candidates.

Baskets are the paid orders on or before the as-of day (refunded and cancelled
orders, and returned lines, are not baskets). Basket files without times (the
Groceries data) have no order time: they count as known before any as-of date.

Semantics follow the R package arules, so figures match its published ones:

- Support threshold: an itemset is frequent when its count >= min_support x n
  (count-based, inclusive). Spark's FPGrowth keeps counts >= ceil(minSupport x n);
  the two agree in exact arithmetic, but ``min_support x n`` in floating point can
  land a hair above an integer (0.07 x 100 = 7.000000000000001) and Spark would
  then demand one basket more. :func:`min_count` computes the count with a
  tolerance and hands Spark a threshold half a basket below it, so ceil() lands on
  exactly that count.
- Rules: Spark's ``associationRules`` only ever has one item on the right-hand side
  (verified in tests/unit/test_basket_groceries.py), which is arules' apriori
  behaviour. arules' ``minlen=1`` also yields rules with an empty antecedent
  ({} => {item}, confidence = support of the item): ``basket.min_rule_items: 1``
  adds them; the default 2 ("rules with at least two items") leaves them out.
- Itemsets are counted at every size, single items included, up to
  ``max_itemset_size`` (arules' maxlen), as arules counts them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from pyspark.ml.fpm import FPGrowth
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common.asof import on_or_before, publish_as_of, resolve_as_of
from common.config import BasketConfig, ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import InputError
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_ASSOCIATION_RULES,
    GOLD_BUNDLES,
    GOLD_CROSS_SELL,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
)

log = logging.getLogger(__name__)

# Rules and bundles shown in the run log / summary.
TOP_SHOWN = 5


def min_count(min_support: float, baskets: int) -> int:
    """Smallest basket count with ``count >= min_support x baskets`` (arules' threshold),
    tolerant of floating-point noise in the product."""
    return max(1, math.ceil(min_support * baskets - 1e-9))


def spark_min_support(count: int, baskets: int) -> float:
    """A minSupport for which Spark's ``ceil(minSupport x n)`` is exactly ``count``."""
    return (count - 0.5) / baskets


# ---------------------------------------------------------------------------- baskets
def baskets_from_silver(orders: DataFrame, lines: DataFrame, as_of) -> DataFrame:
    """One row per paid order on or before ``as_of``: ``order_id``, ``items`` (distinct,
    sorted) and ``revenue`` per item (map item -> line amount, for bundle revenue)."""
    paid = orders.where(
        (F.col("status") == "paid") & (F.col("order_time").isNull() | on_or_before("order_time", as_of))
    ).select("source_system", "order_id")
    kept = lines.where(F.coalesce(F.col("quantity"), F.lit(1)) > 0).join(paid, ["source_system", "order_id"])
    return kept.groupBy("source_system", "order_id").agg(
        F.array_sort(F.collect_set("item_id")).alias("items"),
        F.map_from_entries(
            F.collect_list(F.struct("item_id", F.coalesce(F.col("line_amount"), F.lit(0)).cast("double")))
        ).alias("_revenue_by_item"),
    )


@dataclass
class Mined:
    baskets: int
    itemsets: DataFrame  # items (sorted), size, basket_count, support
    rules: (
        DataFrame  # antecedent, consequent, rule_items, basket_count, support, confidence, lift, leverage, conviction
    )


def mine(baskets: DataFrame, cfg: BasketConfig, items_col: str = "items") -> Mined:
    """Frequent itemsets and rules of ``baskets`` (one array of distinct items per row).

    The caller should persist ``baskets``; it is scanned for the count and by FP-growth.
    """
    n = baskets.count()
    if n == 0:
        raise InputError("basket: no baskets (paid orders with lines) on or before the as-of date")
    count = min_count(cfg.min_support, n)
    model = FPGrowth(
        itemsCol=items_col,
        minSupport=spark_min_support(count, n),
        minConfidence=cfg.min_confidence,
    ).fit(baskets.select(items_col))
    itemsets = (
        model.freqItemsets.select(F.array_sort("items").alias("items"), F.col("freq").alias("basket_count"))
        .withColumn("size", F.size("items"))
        .where(F.col("size") <= cfg.max_itemset_size)
        .withColumn("support", F.col("basket_count") / F.lit(n))
    )
    single = itemsets.where("size = 1").select(
        F.col("items")[0].alias("_item"), F.col("support").alias("_item_support")
    )
    antecedents = itemsets.select(F.col("items").alias("_ante"), F.col("support").alias("_ante_support"))
    rules = (
        model.associationRules.select(
            F.array_sort("antecedent").alias("antecedent"), "consequent", "confidence", "support"
        )
        .withColumn("rule_items", (F.size("antecedent") + F.size("consequent")).cast("int"))
        .where(F.col("rule_items") <= cfg.max_itemset_size)
        .join(single, F.col("consequent")[0] == F.col("_item"))
        .join(antecedents, F.col("antecedent") == F.col("_ante"))
        .select(
            "antecedent",
            "consequent",
            "rule_items",
            F.round(F.col("support") * n).cast("long").alias("basket_count"),
            "support",
            "confidence",
            (F.col("confidence") / F.col("_item_support")).alias("lift"),
            (F.col("support") - F.col("_ante_support") * F.col("_item_support")).alias("leverage"),
            _conviction(F.col("_item_support"), F.col("confidence")).alias("conviction"),
        )
    )
    if cfg.min_rule_items == 1:
        # arules minlen=1: {} => {item} whenever the item alone reaches the confidence.
        empty = itemsets.where((F.col("size") == 1) & (F.col("support") >= cfg.min_confidence)).select(
            F.array().cast("array<string>").alias("antecedent"),
            F.col("items").alias("consequent"),
            F.lit(1).alias("rule_items"),
            "basket_count",
            "support",
            F.col("support").alias("confidence"),
            F.lit(1.0).alias("lift"),
            F.lit(0.0).alias("leverage"),
            F.lit(1.0).alias("conviction"),
        )
        rules = rules.unionByName(empty)
    rules = rules.where(F.col("lift") >= cfg.min_lift)
    return Mined(n, itemsets, rules)


def _conviction(consequent_support, confidence):
    # (1 - supp(Y)) / (1 - conf); infinite (null here) for rules that always hold.
    return F.when(confidence < 1.0, (F.lit(1.0) - consequent_support) / (F.lit(1.0) - confidence))


# ---------------------------------------------------------------------------- gold outputs
def with_rule_id(rules: DataFrame) -> DataFrame:
    return rules.withColumn(
        "rule_id",
        F.substring(
            F.sha2(
                F.concat_ws(" => ", F.array_join("antecedent", "\u0001"), F.array_join("consequent", "\u0001")), 256
            ),
            1,
            24,
        ),
    )


def cross_sell(rules: DataFrame, per_item: int) -> DataFrame:
    """For each item, the consequents of its single-item rules, best lift first."""
    window = Window.partitionBy("item_id").orderBy(
        F.col("lift").desc(), F.col("confidence").desc(), F.col("suggested_item_id")
    )
    return (
        rules.where(F.size("antecedent") == 1)
        .select(
            F.col("antecedent")[0].alias("item_id"),
            F.col("consequent")[0].alias("suggested_item_id"),
            "support",
            "confidence",
            "lift",
        )
        .withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= per_item)
    )


def bundles(itemsets: DataFrame, baskets: DataFrame, keep: int) -> DataFrame:
    """Itemsets of 2-3 items, ranked by lift (support over the product of the items'
    supports) and then by the revenue of those items in the baskets holding them all."""
    single = itemsets.where("size = 1").select(F.col("items")[0].alias("_item"), F.col("support").alias("_s"))
    candidates = itemsets.where(F.col("size").between(2, 3))
    expected = (
        candidates.select("items", F.explode("items").alias("_item"))
        .join(single, "_item")
        .groupBy("items")
        .agg(F.exp(F.sum(F.log("_s"))).alias("_independent"))
    )
    # Revenue: each basket holding the whole bundle contributes the bundle items' line amounts.
    # Baskets are joined on the bundle's first item (an equi-join), so each bundle only meets
    # the baskets that hold that item, never every basket.
    by_item = baskets.select(F.explode("items").alias("_first"), F.col("items").alias("_basket"), "_revenue_by_item")
    revenue = (
        candidates.select("items")
        .join(by_item, F.col("items")[0] == F.col("_first"))
        .where(F.size(F.array_except("items", "_basket")) == 0)
        .select(
            "items",
            F.aggregate(
                F.transform("items", lambda i: F.col("_revenue_by_item")[i]), F.lit(0.0), lambda a, b: a + b
            ).alias("_r"),
        )
        .groupBy("items")
        .agg(F.sum("_r").alias("revenue"))
    )
    window = Window.orderBy(F.col("lift").desc(), F.col("revenue").desc(), F.array_join("items", "\u0001"))
    return (
        candidates.join(expected, "items")
        .join(revenue, "items", "left")
        .select(
            F.substring(F.sha2(F.array_join("items", "\u0001"), 256), 1, 24).alias("bundle_id"),
            "items",
            "size",
            "basket_count",
            "support",
            (F.col("support") / F.col("_independent")).alias("lift"),
            F.coalesce("revenue", F.lit(0.0)).alias("revenue"),
        )
        .withColumn("rank", F.row_number().over(window))
        .where(F.col("rank") <= keep)
    )


# ---------------------------------------------------------------------------- job
def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Mine the as-of date's baskets and publish rules, cross-sell and bundles."""
    run_id = run_id or new_run_id("basket")
    store = store or open_store(spark, cfg)
    store.require(SILVER_ORDERS, SILVER_ORDER_LINES)
    as_of = resolve_as_of(store, cfg)
    result = JobResult("basket", run_id)
    result.inputs = {spec.name: store.version(spec) for spec in (SILVER_ORDERS, SILVER_ORDER_LINES)}
    baskets = baskets_from_silver(store.read(SILVER_ORDERS), store.read(SILVER_ORDER_LINES), as_of).persist()
    try:
        mined = mine(baskets, cfg.basket)
        itemsets = mined.itemsets.persist()
        rules = with_rule_id(mined.rules).persist()
        try:
            outputs = {
                GOLD_ASSOCIATION_RULES: rules,
                GOLD_CROSS_SELL: cross_sell(rules, cfg.basket.cross_sell_per_item),
                GOLD_BUNDLES: bundles(itemsets, baskets, cfg.basket.bundles),
            }
            for spec, df in outputs.items():
                result.outputs[spec.name] = publish_as_of(store, spec, df, as_of)
                result.row_counts[spec.name] = store.read(spec).where(F.col("as_of") == F.lit(as_of)).count()
            sizes = {str(r["size"]): r["count"] for r in itemsets.groupBy("size").count().collect()}
            top = rules.orderBy(F.col("lift").desc(), F.col("confidence").desc(), "rule_id").limit(TOP_SHOWN).collect()
        finally:
            itemsets.unpersist()
            rules.unpersist()
    finally:
        baskets.unpersist()
    result.metrics = {
        "as_of": as_of.isoformat(),
        "baskets": mined.baskets,
        "min_basket_count": min_count(cfg.basket.min_support, mined.baskets),
        "frequent_itemsets": sum(sizes.values()),
        "itemsets_by_size": dict(sorted(sizes.items(), key=lambda kv: int(kv[0]))),
        "rules": result.row_counts[GOLD_ASSOCIATION_RULES.name],
        "top_rules": [
            {
                "rule": f"{{{', '.join(r['antecedent'])}}} => {{{', '.join(r['consequent'])}}}",
                "support": round(r["support"], 5),
                "confidence": round(r["confidence"], 4),
                "lift": round(r["lift"], 3),
            }
            for r in top
        ],
    }
    lines = [
        f"basket: {mined.baskets:,} baskets as of {as_of}: {result.metrics['frequent_itemsets']:,} frequent "
        f"itemsets, {result.metrics['rules']:,} rules",
        *(f"  {t['rule']}  lift {t['lift']}  confidence {t['confidence']}" for t in result.metrics["top_rules"]),
    ]
    result.summary = "\n".join(lines)
    return result
