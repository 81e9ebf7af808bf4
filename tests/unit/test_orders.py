"""The orders-as-of rule (common.orders): which orders count on a day, with which status."""

from __future__ import annotations

from datetime import date, datetime

from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from common.orders import orders_as_of

AS_OF = date(2024, 3, 10)
SCHEMA = T.StructType(
    [
        T.StructField("order_id", T.StringType(), False),
        T.StructField("user_key", T.StringType()),
        T.StructField("order_time", T.TimestampType()),
        T.StructField("status", T.StringType()),
        T.StructField("updated_at", T.TimestampType()),
    ]
)


def ts(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def test_an_order_counts_with_the_status_it_had_at_the_end_of_the_day(spark):
    rows = [
        ("paid", "a", "2024-03-01 10:00:00", "paid", "2024-03-01 10:00:00"),
        ("refunded_before", "a", "2024-03-02 10:00:00", "refunded", "2024-03-10 23:59:59"),
        ("refunded_after", "a", "2024-03-03 10:00:00", "refunded", "2024-03-11 00:00:00"),
        ("cancelled_before", "a", "2024-03-04 10:00:00", "cancelled", "2024-03-04 11:00:00"),
        ("cancelled_after", "b", "2024-03-05 10:00:00", "cancelled", "2024-03-12 09:00:00"),
        ("no_update_time", "b", "2024-03-06 10:00:00", "Refunded", None),
        ("no_status", "b", "2024-03-07 10:00:00", None, None),
        ("placed_last_second", "b", "2024-03-10 23:59:59", "paid", "2024-03-10 23:59:59"),
        ("placed_after", "b", "2024-03-11 00:00:00", "paid", "2024-03-11 00:00:00"),
        ("no_customer", None, "2024-03-01 10:00:00", "paid", "2024-03-01 10:00:00"),
        ("no_order_time", "b", None, "paid", None),
    ]
    orders = spark.createDataFrame([(o, u, ts(t), s, ts(up)) for o, u, t, s, up in rows], SCHEMA)

    got = orders.transform(orders_as_of(AS_OF)).select("order_id", "status")

    expected = [
        ("paid", "paid"),
        ("refunded_before", "refunded"),
        ("refunded_after", "paid"),
        ("cancelled_before", "cancelled"),
        ("cancelled_after", "paid"),
        ("no_update_time", "refunded"),
        ("no_status", "paid"),
        ("placed_last_second", "paid"),
    ]
    assertDataFrameEqual(got, spark.createDataFrame(expected, "order_id string, status string"))


def test_every_column_is_kept(spark):
    orders = spark.createDataFrame([("o", "a", ts("2024-03-01 10:00:00"), "paid", None)], SCHEMA)
    assert orders.transform(orders_as_of(AS_OF)).columns == SCHEMA.fieldNames()
