"""FP-growth against the published arules figures on the real Groceries baskets.

Part one mines the file directly (one basket per line); part two runs the basket
job end to end on the same file through ingest and clean (one module fixture),
without gold.as_of: the undated baskets count as of the day they were ingested.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pyspark.sql import functions as F

from common.config import BasketConfig
from common.tables import GOLD_ASSOCIATION_RULES, GOLD_BUNDLES, GOLD_CROSS_SELL
from jobs.basket import mine
from tests.conftest import TEST_SECRET, make_config


@pytest.fixture(scope="module")
def groceries(spark, shared_data):
    path = shared_data / "groceries" / "groceries.csv"
    df = spark.read.text(str(path)).select(F.array_sort(F.array_distinct(F.split("value", ","))).alias("items"))
    df = df.persist()
    yield df
    df.unpersist()


def test_support_0001_confidence_05_gives_13492_itemsets_and_5668_rules(groceries):
    mined = mine(groceries, BasketConfig(min_support=0.001, min_confidence=0.5, min_lift=0.0, max_itemset_size=10))
    assert mined.baskets == 9835
    assert mined.itemsets.count() == 13_492  # every size, single items included, as arules counts
    rules = mined.rules.persist()
    assert rules.count() == 5_668
    # Spark's rules never have more than one item on the right-hand side (arules' apriori too).
    assert rules.where(F.size("consequent") != 1).count() == 0
    rules.unpersist()


def test_support_0006_confidence_025_gives_463_rules_led_by_herbs_root_vegetables(groceries):
    cfg = BasketConfig(min_support=0.006, min_confidence=0.25, min_lift=0.0, max_itemset_size=10)
    rules = mine(groceries, cfg).rules.persist()
    assert rules.count() == 463
    top = rules.orderBy(F.col("lift").desc()).first()
    assert (top["antecedent"], top["consequent"]) == (["herbs"], ["root vegetables"])
    assert round(top["lift"], 3) == 3.956
    assert (round(top["support"], 5), round(top["confidence"], 4)) == (0.00702, 0.4313)
    # arules minlen=1 adds {} => {whole milk} (support 0.2555 >= 0.25): 464.
    with_empty = mine(groceries, cfg.model_copy(update={"min_rule_items": 1})).rules
    assert with_empty.count() == 464
    rules.unpersist()


@pytest.fixture(scope="module")
def basket_lake(spark, shared_data, tmp_path_factory, secret_env_module):
    from shoplake.registry import run_job

    root = tmp_path_factory.mktemp("groceries")
    cfg = make_config(
        root,
        f"landing.root={shared_data}",
        "landing.sources=[groceries]",
        "basket.min_support=0.006",
        "basket.min_confidence=0.25",
        "basket.min_lift=0.0",
        "basket.max_itemset_size=10",
    )
    before = datetime.now(timezone.utc).date()
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    result = run_job(spark, cfg, "basket")
    return cfg, result, {before, datetime.now(timezone.utc).date()}


@pytest.fixture(scope="module")
def secret_env_module():
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    yield
    mp.undo()


def test_basket_job_end_to_end_reproduces_the_reference(spark, basket_lake):
    from common.delta import open_store

    cfg, result, ingest_days = basket_lake
    store = open_store(spark, cfg)
    # No gold.as_of and no times in the data: the baskets count as of their ingest day.
    assert result.metrics["as_of"] in {d.isoformat() for d in ingest_days}
    assert result.metrics["baskets"] == 9835
    assert result.metrics["rules"] == 463
    assert result.metrics["top_rules"][0]["rule"] == "{herbs} => {root vegetables}"
    assert result.metrics["top_rules"][0]["lift"] == 3.956
    rules = store.read(GOLD_ASSOCIATION_RULES)
    assert rules.count() == 463 == rules.select("rule_id").distinct().count()
    cross = store.read(GOLD_CROSS_SELL)
    assert cross.groupBy("item_id", "rank").count().where("count > 1").count() == 0
    herbs = cross.where("item_id = 'herbs' AND rank = 1").first()
    assert herbs["suggested_item_id"] == "root vegetables"
    bundles = store.read(GOLD_BUNDLES).orderBy("rank").collect()
    assert {b["size"] for b in bundles} <= {2, 3}
    assert [b["lift"] for b in bundles] == sorted((b["lift"] for b in bundles), reverse=True)
