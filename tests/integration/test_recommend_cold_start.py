"""Content-based picks for new products (issue #19, item 3) on a generated shop whose
catalogue holds back a fifth of its products until the last two weeks (``new_products``).

The cold-start evaluation is called directly on the shop's silver tables (the recommend
job runs the same function; tests/integration/test_recommend.py checks its report)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from common.config import RecommendConfig
from common.delta import open_store
from common.interactions import raw_interactions
from common.tables import SILVER_EVENTS, SILVER_ORDER_LINES, SILVER_ORDERS, SILVER_PRODUCTS
from jobs.recommend.evaluation import evaluate_cold_start
from jobs.recommend.job import content_vectors

TEST_DAYS = 14


@pytest.fixture(scope="module")
def cold_start(spark, silver_lake):
    shop = silver_lake(users=300, days=45, seed=11, new_products=0.2)
    store = open_store(spark, shop.cfg)
    rc = RecommendConfig()
    events, orders, lines, products = (
        store.read(s) for s in (SILVER_EVENTS, SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_PRODUCTS)
    )
    raw = raw_interactions(events, orders, lines, rc.event_weights).persist()
    as_of = raw.agg(F.max("ts")).first()[0].date()
    cutoff = as_of - timedelta(days=TEST_DAYS)
    vectors = content_vectors(products, rc).persist()
    try:
        yield shop, cutoff, evaluate_cold_start(raw, products, vectors, cutoff, as_of, rc.k, rc.seed)
    finally:
        raw.unpersist()
        vectors.unpersist()


def test_launches_fall_in_the_test_period_and_sell_there(cold_start):
    shop, cutoff, cold = cold_start
    launches = shop.manifest["new_products"]
    assert len(launches) == 40  # a fifth of the default 200-product catalogue of 300 users
    # Launch days are shop-local; a launch on the day after the cutoff may touch its last UTC hours.
    assert min(p["launch_date"] for p in launches) > cutoff.isoformat()
    assert cold["pool_items"] >= len(launches) - 5 and cold["bought_cold_items"] >= 10


def test_content_beats_random_same_category_picks_on_new_products(cold_start):
    _, _, cold = cold_start
    content, random = cold["content"], cold["random_same_category"]
    # The same test cases for both: buyers of products nobody touched before the cutoff.
    assert content["users"] == random["users"] >= 15
    assert content["hit_rate@10"] > random["hit_rate@10"]
    assert content["ndcg@10"] > random["ndcg@10"]
