"""Typing raw text: numbers, booleans, dates and timestamps, never raising on bad data."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from common import parse


def typed(spark, values, fn):
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, v string")
    return [r.t for r in df.select("i", fn(F.col("v")).alias("t")).orderBy("i").collect()]


def test_integers_accept_full_width_and_thousands_separators(spark):
    got = typed(spark, ["12", " -3 ", "１２３", "1,234,567", "12a", "1,23", "99999999999", None], parse.parse_integer)
    assert got == [12, -3, 123, 1234567, None, None, None, None]


def test_decimals_round_to_scale_and_reject_garbage(spark):
    got = typed(spark, ["2.95", "12.3.4", "abc", ".5", "1,000.25", "-0.004"], lambda c: parse.parse_decimal(c, 18, 2))
    assert got == [Decimal("2.95"), None, None, Decimal("0.50"), Decimal("1000.25"), Decimal("0.00")]


def test_booleans(spark):
    got = typed(spark, ["true", "FALSE", "1", "0", "yes", "N", "maybe", ""], parse.parse_boolean)
    assert got == [True, False, True, False, True, False, None, None]


def test_naive_timestamps_are_read_in_the_source_zone_and_stored_utc(spark):
    fn = lambda c: parse.parse_timestamp(c, ["yyyy-MM-dd HH:mm:ss"], "Asia/Shanghai")  # noqa: E731
    got = typed(spark, ["2024-01-01 08:30:00", "2024-13-45 99:99", "2024-02-30 00:00:00"], fn)
    # Session time zone is UTC, so collected datetimes are UTC wall-clock.
    assert got == [datetime(2024, 1, 1, 0, 30), None, None]


def test_epoch_millis_and_offsets_are_instants(spark):
    ms = typed(
        spark, ["1704067200123", "17e11", "-5"], lambda c: parse.parse_timestamp(c, ["epoch_ms"], "Asia/Shanghai")
    )
    assert ms == [datetime(2024, 1, 1, 0, 0, 0, 123000), None, None]
    iso = typed(
        spark,
        ["2024-01-01T08:00:00+08:00"],
        lambda c: parse.parse_timestamp(c, ["yyyy-MM-dd'T'HH:mm:ssXXX"], "Europe/London"),
    )
    assert iso == [datetime(2024, 1, 1, 0, 0)]


def test_first_matching_format_wins(spark):
    fn = lambda c: parse.parse_timestamp(c, ["M/d/yyyy H:mm", "yyyyMMdd"], "UTC")  # noqa: E731
    assert typed(spark, ["12/1/2010 13:04", "19970101", "1/32/2010 1:00"], fn) == [
        datetime(2010, 12, 1, 13, 4),
        datetime(1997, 1, 1),
        None,
    ]


def test_dates_reject_impossible_days(spark):
    fn = lambda c: parse.parse_date(c, ["yyyy-MM-dd"])  # noqa: E731
    assert typed(spark, ["1990-05-17", "2023-02-29", "2024-02-29"], fn) == [date(1990, 5, 17), None, date(2024, 2, 29)]


@pytest.mark.parametrize(
    "pattern,zoned", [("yyyy-MM-dd HH:mm:ss", False), ("yyyy-MM-dd'T'HH:mm:ssXXX", True), ("'Z'yyyy", False)]
)
def test_zone_detection_ignores_quoted_literals(pattern, zoned):
    assert parse._has_zone(pattern) is zoned
