"""Pure helpers of the delta-rs store: schema mapping, partition paths, file statistics."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import types as T

from common.delta.rs_arrow import (
    delta_partition_string,
    delta_schema,
    parquet_file_stats,
    partition_values_from_path,
    spark_schema_to_arrow,
    stats_json,
)
from common.errors import SchemaMismatch
from common.tables import OPS_RUN_LOG, SILVER_EVENTS, TableSpec


def test_delta_schema_from_spark_types():
    schema = T.StructType(
        [
            T.StructField("id", T.LongType(), False),
            T.StructField("n", T.IntegerType()),
            T.StructField("money", T.DecimalType(18, 2)),
            T.StructField("at", T.TimestampType()),
            T.StructField("day", T.DateType()),
            T.StructField("flag", T.BooleanType()),
            T.StructField("tags", T.ArrayType(T.StringType(), False)),
            T.StructField("counts", T.MapType(T.StringType(), T.LongType())),
        ]
    )
    fields = json.loads(delta_schema(TableSpec("ops.t", schema)).to_json())["fields"]
    assert [(f["name"], f["type"], f["nullable"]) for f in fields] == [
        ("id", "long", False),
        ("n", "integer", True),
        ("money", "decimal(18,2)", True),
        ("at", "timestamp", True),
        ("day", "date", True),
        ("flag", "boolean", True),
        ("tags", {"type": "array", "elementType": "string", "containsNull": False}, True),
        (
            "counts",
            {"type": "map", "keyType": "string", "valueType": "long", "valueContainsNull": True},
            True,
        ),
    ]


def test_every_registered_table_maps_to_delta():
    for spec in (SILVER_EVENTS, OPS_RUN_LOG):
        arrow = spark_schema_to_arrow(spec.schema)
        assert arrow.names == list(spec.columns)
        assert json.loads(delta_schema(spec).to_json())["fields"]


def test_unsupported_type_names_itself():
    with pytest.raises(SchemaMismatch, match="interval"):
        spark_schema_to_arrow(T.StructType([T.StructField("x", T.DayTimeIntervalType())]))


def test_partition_values_are_unescaped_from_hive_folders():
    assert partition_values_from_path("event_date=2024-01-02/part-0.parquet", ["event_date"]) == {
        "event_date": "2024-01-02"
    }
    assert partition_values_from_path("s=x%3Ay%3Dz%25/t=__HIVE_DEFAULT_PARTITION__/f.parquet", ["s", "t"]) == {
        "s": "x:y=z%",
        "t": None,
    }
    with pytest.raises(ValueError, match="no partition folder"):
        partition_values_from_path("f.parquet", ["event_date"])


def test_delta_partition_strings():
    assert delta_partition_string(date(2024, 1, 2)) == "2024-01-02"
    assert delta_partition_string(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc)) == (
        "2024-01-02 03:04:05.000006"
    )
    assert delta_partition_string(True) == "true"
    assert delta_partition_string(None) is None
    assert delta_partition_string(Decimal("1.50")) == "1.50"


def test_stats_json_keeps_decimals_exact():
    text = stats_json({"minValues": {"m": Decimal("12345678901234567.89"), "s": 'q"'}, "n": 1})
    assert text == '{"minValues":{"m":12345678901234567.89,"s":"q\\""},"n":1}'


def test_parquet_footer_stats(tmp_path):
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("s", T.StringType()),
            T.StructField("money", T.DecimalType(18, 2)),
            T.StructField("at", T.TimestampType()),
            T.StructField("day", T.DateType()),
            T.StructField("x", T.DoubleType()),
            T.StructField("counts", T.MapType(T.StringType(), T.LongType())),
        ]
    )
    utc = timezone.utc
    table = pa.table(
        {
            "id": [3, 1, None, 7],
            "s": ["b", "a" * 40, None, "c" * 40],
            "money": [Decimal("1.10"), Decimal("-2.00"), None, Decimal("9.99")],
            "at": [
                datetime(2024, 1, 1, 0, 0, 0, 1500, tzinfo=utc),
                datetime(2024, 1, 1, 0, 0, 0, 999, tzinfo=utc),
                None,
                datetime(2024, 1, 2, tzinfo=utc),
            ],
            "day": [date(2024, 1, 1), None, None, date(2024, 1, 9)],
            "x": [1.0, float("nan"), None, 2.0],
            "counts": [[("a", 1)], None, None, []],
        },
        schema=spark_schema_to_arrow(schema),
    )
    path = tmp_path / "f.parquet"
    pq.write_table(table, path, row_group_size=2)

    stats = parquet_file_stats(pq.read_metadata(path), schema)

    assert stats["numRecords"] == 4
    assert stats["nullCount"] == {"id": 1, "s": 1, "money": 1, "at": 1, "day": 2, "x": 1}
    assert stats["minValues"]["id"] == 1 and stats["maxValues"]["id"] == 7
    assert stats["minValues"]["money"] == Decimal("-2.00")
    assert stats["maxValues"]["money"] == Decimal("9.99")
    assert stats["minValues"]["at"] == "2024-01-01T00:00:00.000Z"  # 999 us, rounded down
    assert stats["maxValues"]["at"] == "2024-01-02T00:00:00.000Z"
    assert stats["minValues"]["day"] == "2024-01-01" and stats["maxValues"]["day"] == "2024-01-09"
    # Long strings: a prefix still bounds the minimum, but a cut maximum would not.
    assert stats["minValues"]["s"] == "a" * 32
    assert "s" not in stats["maxValues"]
    assert "counts" not in stats["minValues"] and "counts" not in stats["nullCount"]
