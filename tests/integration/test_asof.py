"""Point-in-time helpers every gold job builds on."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from pyspark.sql import types as T

from common.asof import publish_as_of, resolve_as_of, up_to
from common.errors import InputError
from common.tables import gold
from tests.conftest import make_config

# A gold table of the test's own, so jobs extending their schemas cannot break it.
PROBE = gold("asof_probe", "test table", ("user_key", T.StringType(), False), ("as_of", T.DateType(), False),
             ("clv", T.DoubleType()), keys=("user_key", "as_of"), written_by="probe")  # fmt: skip


def test_publishing_a_date_replaces_only_that_date(spark, store):
    df = spark.createDataFrame([("u1", date(2024, 1, 1), 1.0)], "user_key string, as_of date, clv double")
    publish_as_of(store, PROBE, df, date(2024, 1, 1))
    publish_as_of(store, PROBE, df.withColumn("clv", df.clv + 1), date(2024, 1, 2))
    publish_as_of(store, PROBE, df.withColumn("clv", df.clv + 5), date(2024, 1, 1))
    rows = sorted(tuple(r) for r in store.read(PROBE).collect())
    assert rows == [("u1", date(2024, 1, 1), 6.0), ("u1", date(2024, 1, 2), 2.0)]


def test_up_to_keeps_the_whole_as_of_day_and_nothing_after(spark):
    times = [(datetime(2024, 1, 1, 0, 0),), (datetime(2024, 1, 1, 23, 59, 59, 999999),), (datetime(2024, 1, 2),)]
    df = spark.createDataFrame(times, "t timestamp")
    assert [r.t for r in up_to(df, "t", date(2024, 1, 1)).collect()] == [t for (t,) in times[:2]]


def test_as_of_comes_from_config_or_fails_clearly_on_an_empty_lake(store, tmp_path):
    assert resolve_as_of(store, make_config(tmp_path, "gold.as_of=2024-03-05")) == date(2024, 3, 5)
    with pytest.raises(InputError, match="gold.as_of is not set"):
        resolve_as_of(store, make_config(tmp_path))
