"""FP-growth rules and measures on tiny hand-made baskets, and arules' support threshold."""

from __future__ import annotations

import math

import pytest
from pyspark.ml.fpm import FPGrowth

from common.config import BasketConfig
from jobs.basket import bundles, cross_sell, min_count, mine, spark_min_support

# supp: a 4/5, b 4/5, c 2/5, ab 3/5, ac 2/5, bc 1/5, abc 1/5
BASKETS = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b"], ["a", "b"]]


@pytest.fixture(scope="module")
def baskets(spark):
    rows = [(f"o{i}", items, {i: 1.0 for i in items}) for i, items in enumerate(BASKETS)]
    return spark.createDataFrame(rows, "order_id string, items array<string>, _revenue_by_item map<string,double>")


def test_rules_carry_support_confidence_lift_leverage_and_conviction(baskets):
    mined = mine(baskets, BasketConfig(min_support=0.4, min_confidence=0.0, min_lift=0.0, max_itemset_size=3))
    assert mined.baskets == 5
    itemsets = sorted((tuple(r["items"]), r["basket_count"]) for r in mined.itemsets.collect())
    assert itemsets == [(("a",), 4), (("a", "b"), 3), (("a", "c"), 2), (("b",), 4), (("c",), 2)]
    rules = {(tuple(r["antecedent"]), tuple(r["consequent"])): r for r in mined.rules.collect()}
    assert sorted(rules) == [(("a",), ("b",)), (("a",), ("c",)), (("b",), ("a",)), (("c",), ("a",))]
    a_c = rules[("a",), ("c",)]
    assert (a_c["support"], a_c["confidence"], a_c["lift"], a_c["leverage"], a_c["conviction"]) == pytest.approx(
        (0.4, 0.5, 1.25, 0.4 - 0.8 * 0.4, (1 - 0.4) / (1 - 0.5))
    )
    a_b = rules[("a",), ("b",)]
    assert (a_b["confidence"], a_b["lift"], a_b["leverage"], a_b["conviction"]) == pytest.approx(
        (0.75, 0.75 / 0.8, 0.6 - 0.64, 0.2 / 0.25)
    )
    assert rules[("c",), ("a",)]["confidence"] == 1.0
    assert rules[("c",), ("a",)]["conviction"] is None  # always holds: infinite conviction


def test_min_lift_max_size_and_empty_antecedent_rules(baskets):
    lifted = mine(baskets, BasketConfig(min_support=0.4, min_confidence=0.0, min_lift=1.1, max_itemset_size=3))
    assert sorted((r["antecedent"], r["consequent"]) for r in lifted.rules.collect()) == [
        (["a"], ["c"]),
        (["c"], ["a"]),
    ]
    singles = mine(baskets, BasketConfig(min_support=0.2, min_confidence=0.0, min_lift=0.0, max_itemset_size=1))
    assert singles.itemsets.count() == 3 and singles.rules.count() == 0
    # arules minlen=1 adds {} => {item} for items whose support reaches the confidence (a and b:
    # 0.8); c => a (confidence 1) is the one ordinary rule that passes.
    empty = mine(baskets, BasketConfig(min_support=0.4, min_confidence=0.8, min_lift=0.0, min_rule_items=1))
    got = sorted((r["antecedent"], r["consequent"], r["confidence"]) for r in empty.rules.collect())
    assert got == [([], ["a"], 0.8), ([], ["b"], 0.8), (["c"], ["a"], 1.0)]


def test_support_threshold_is_arules_count_based_not_float_ceil(spark):
    # 0.07 x 100 is 7.000000000000001 in floating point: Spark's ceil() would demand 8 baskets.
    assert 0.07 * 100 > 7 and math.ceil(0.07 * 100) == 8
    assert min_count(0.07, 100) == 7
    assert math.ceil(spark_min_support(7, 100) * 100) == 7
    rows = [(["x", "y"],)] * 7 + [(["y"],)] * 93
    df = spark.createDataFrame(rows, "items array<string>")
    naive = {tuple(r["items"]) for r in FPGrowth(minSupport=0.07).fit(df).freqItemsets.collect()}
    assert ("x",) not in naive  # what plain Spark gives
    mined = mine(df, BasketConfig(min_support=0.07, min_confidence=0.0, min_lift=0.0))
    assert {tuple(r["items"]) for r in mined.itemsets.collect()} == {("x",), ("y",), ("x", "y")}


def test_cross_sell_ranks_by_lift_and_bundles_sum_revenue(baskets):
    mined = mine(baskets, BasketConfig(min_support=0.2, min_confidence=0.0, min_lift=0.0, max_itemset_size=3))
    top = {(r["item_id"], r["rank"]): r["suggested_item_id"] for r in cross_sell(mined.rules, 1).collect()}
    # a: lift(a=>c) 1.25 > lift(a=>b) 0.9375; b: lift(b=>a) 0.9375 > lift(b=>c) 0.625; c: c=>a 1.25.
    assert top == {("a", 1): "c", ("b", 1): "a", ("c", 1): "a"}
    rows = {tuple(r["items"]): r for r in bundles(mined.itemsets, baskets, keep=10).collect()}
    assert sorted(rows) == [("a", "b"), ("a", "b", "c"), ("a", "c"), ("b", "c")]
    # abc: support 0.2 / (0.8 * 0.8 * 0.4); revenue 1 per item per basket holding all of them.
    assert rows[("a", "b", "c")]["lift"] == pytest.approx(0.2 / (0.8 * 0.8 * 0.4))
    assert rows[("a", "b")]["revenue"] == 6.0 and rows[("a", "b", "c")]["revenue"] == 3.0
    # Lifts: ac 1.25, ab 0.9375, abc 0.78125, bc 0.625.
    assert [k for k, _ in sorted(rows.items(), key=lambda kv: kv[1]["rank"])] == [
        ("a", "c"),
        ("a", "b"),
        ("a", "b", "c"),
        ("b", "c"),
    ]
