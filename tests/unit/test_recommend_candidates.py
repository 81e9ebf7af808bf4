"""jobs.recommend pieces on tiny DataFrames with hand-computed answers: the catalogue
behind coverage@k, and the item-kNN and SAR candidates (similarities and user scores)."""

from __future__ import annotations

from datetime import date, datetime

from jobs.recommend import catalogue_size

RAW = "user_key string, item_id string, kind string, ts timestamp, weight double, quantity int"


def test_catalogue_is_the_touched_items_when_there_is_no_product_table(spark):
    raw = spark.createDataFrame(
        [
            ("u1", "a", "view", datetime(2024, 1, 1), 1.0, 0),
            ("u2", "b", "purchase", datetime(2024, 1, 2, 23, 59), 5.0, 1),
            ("u2", "a", "purchase", datetime(2024, 1, 2), 5.0, 1),
            ("u3", "c", "view", datetime(2024, 1, 3), 1.0, 0),  # after the as-of day
        ],
        RAW,
    )
    no_products = spark.createDataFrame([], "item_id string")
    assert catalogue_size(no_products, raw, date(2024, 1, 2)) == 2
    # A product table adds its untouched items; touched items it lacks still count.
    products = spark.createDataFrame([("a",), ("x",)], "item_id string")
    assert catalogue_size(products, raw, date(2024, 1, 2)) == 3
