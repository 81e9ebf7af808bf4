"""Arrow and Parquet helpers of the delta-rs store (no Spark session, no I/O).

- the Arrow schema delta-rs turns into the Delta schema Spark uses for a spec;
- partition values in the log's string form, from hive-style folder names and
  from the typed values delta-rs returns;
- Delta per-file ``stats`` read from Parquet footers, and their JSON text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema
from pyspark.sql import types as T

from common.errors import SchemaMismatch
from common.tables import TableSpec

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Delta-spark truncates string statistics to a prefix; do the same so the log stays small.
STRING_STATS_PREFIX = 32


# ------------------------------------------------------------------------- schema
def spark_type_to_arrow(dtype: T.DataType) -> pa.DataType:
    """The Arrow type delta-rs maps to the Delta type Spark uses for ``dtype``.

    Raises:
        SchemaMismatch: for types Delta has no equivalent for (intervals, variants).
    """
    simple: dict[type, pa.DataType] = {
        T.StringType: pa.string(),
        T.BinaryType: pa.binary(),
        T.BooleanType: pa.bool_(),
        T.ByteType: pa.int8(),
        T.ShortType: pa.int16(),
        T.IntegerType: pa.int32(),
        T.LongType: pa.int64(),
        T.FloatType: pa.float32(),
        T.DoubleType: pa.float64(),
        T.DateType: pa.date32(),
        # Delta `timestamp` is an instant stored as UTC microseconds.
        T.TimestampType: pa.timestamp("us", tz="UTC"),
        T.TimestampNTZType: pa.timestamp("us"),
    }
    for spark_cls, arrow_type in simple.items():
        if type(dtype) is spark_cls:
            return arrow_type
    if isinstance(dtype, T.DecimalType):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, T.ArrayType):
        return pa.list_(pa.field("element", spark_type_to_arrow(dtype.elementType), dtype.containsNull))
    if isinstance(dtype, T.MapType):
        return pa.map_(
            pa.field("key", spark_type_to_arrow(dtype.keyType), False),
            pa.field("value", spark_type_to_arrow(dtype.valueType), dtype.valueContainsNull),
        )
    if isinstance(dtype, T.StructType):
        return pa.struct([spark_field_to_arrow(f) for f in dtype.fields])
    raise SchemaMismatch(f"Spark type {dtype.simpleString()} has no Delta equivalent")


def spark_field_to_arrow(f: T.StructField) -> pa.Field:
    """One Spark field as an Arrow field (same name and nullability)."""
    return pa.field(f.name, spark_type_to_arrow(f.dataType), f.nullable)


def spark_schema_to_arrow(schema: T.StructType) -> pa.Schema:
    """A Spark schema as the Arrow schema delta-rs turns into the same Delta schema."""
    return pa.schema([spark_field_to_arrow(f) for f in schema.fields])


def delta_schema(table: TableSpec) -> DeltaSchema:
    """The Delta schema of ``table``, derived from its declared Spark schema."""
    return DeltaSchema.from_arrow(spark_schema_to_arrow(table.schema))


# -------------------------------------------------------------- paths and values
def partition_values_from_path(rel_path: str, partition_by: Sequence[str]) -> dict[str, str | None]:
    """Partition values of a file from its hive-style folders (``col=value/...``).

    Spark escapes special characters in folder names as ``%XX`` and writes nulls
    (and empty strings) as ``__HIVE_DEFAULT_PARTITION__``; Delta wants the plain
    string form and None for null.

    Raises:
        ValueError: when a partition column has no folder in the path.
    """
    found: dict[str, str | None] = {}
    for segment in rel_path.split("/")[:-1]:
        if "=" in segment:
            name, raw = segment.split("=", 1)
            value = unquote(raw)
            found[unquote(name)] = None if value == HIVE_NULL else value
    missing = [c for c in partition_by if c not in found]
    if missing:
        raise ValueError(f"{rel_path}: no partition folder for {missing}")
    return {c: found[c] for c in partition_by}


def delta_partition_string(value: Any) -> str | None:
    """A typed partition value (as delta-rs returns it) in the log's string form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


# ---------------------------------------------------------------------- file stats
def _timestamp_micros(raw: int, unit: str) -> int:
    return {"MILLIS": raw * 1000, "MICROS": raw, "NANOS": raw // 1000}[unit]


def _format_timestamp_ms(millis: int) -> str:
    moment = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def _stat_values(dtype: T.DataType, st: pq.Statistics, logical: dict[str, Any]) -> tuple[Any, Any] | None:
    """(min, max) as they go into Delta stats, or None when they cannot be trusted."""
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        unit = str(logical.get("timeUnit", "")).upper()
        unit = {"MILLISECONDS": "MILLIS", "MICROSECONDS": "MICROS", "NANOSECONDS": "NANOS"}.get(unit, unit)
        if unit not in ("MILLIS", "MICROS", "NANOS") or not isinstance(st.min_raw, int):
            return None
        lo, hi = _timestamp_micros(st.min_raw, unit), _timestamp_micros(st.max_raw, unit)
        # Delta stats hold milliseconds: round the bounds outwards so they still
        # bound the data (a reader that prunes on them never drops a matching file).
        return _format_timestamp_ms(lo // 1000), _format_timestamp_ms(-(-hi // 1000))
    lo, hi = st.min, st.max
    if isinstance(dtype, T.DateType):
        if not isinstance(lo, date):
            return None
        return lo.isoformat(), hi.isoformat()
    if isinstance(dtype, T.DecimalType):
        if not isinstance(lo, Decimal):
            return None
        return lo, hi
    if isinstance(dtype, T.StringType):
        if not isinstance(lo, str) or not isinstance(hi, str):
            return None
        if len(hi) > STRING_STATS_PREFIX:
            # A truncated max would be below the real one; leave it out.
            hi = None
        return lo[:STRING_STATS_PREFIX], hi
    if isinstance(dtype, (T.FloatType, T.DoubleType)):
        if not (isinstance(lo, float) and math.isfinite(lo) and math.isfinite(hi)):
            return None
        return lo, hi
    if isinstance(dtype, (T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType)):
        return lo, hi
    return None


def parquet_file_stats(metadata: pq.FileMetaData, schema: T.StructType, string_bounds: bool = True) -> dict[str, Any]:
    """Delta per-file statistics from a Parquet footer (no data pages are read).

    Top-level primitive columns get ``nullCount`` and, when every row group has
    usable bounds, ``minValues``/``maxValues``; nested and binary columns get
    none, which Delta readers treat as "unknown" and never prune on.
    ``string_bounds=False`` leaves string columns unbounded: min/max values live
    in the transaction log forever, so bronze (the zone with raw personal data)
    must not copy names, phone numbers or customer ids there: erasure could not
    remove them.
    """
    fields = {f.name: f.dataType for f in schema.fields}
    leaves = {
        metadata.schema.column(i).path: i
        for i in range(metadata.num_columns)
        if metadata.schema.column(i).path in fields
    }
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, index in leaves.items():
        dtype = fields[name]
        if isinstance(dtype, (T.BinaryType, T.ArrayType, T.MapType, T.StructType)):
            continue
        if not string_bounds and isinstance(dtype, T.StringType):
            continue
        logical = json.loads(metadata.schema.column(index).logical_type.to_json() or "{}")
        null_count = 0
        lows: list[Any] = []
        highs: list[Any] = []
        bounded = True
        for rg in range(metadata.num_row_groups):
            chunk = metadata.row_group(rg).column(index)
            st = chunk.statistics
            if st is None or not st.has_null_count:
                break
            null_count += st.null_count
            if chunk.num_values == st.null_count:
                continue  # only nulls here: nothing to bound
            values = _stat_values(dtype, st, logical) if st.has_min_max else None
            if values is None:
                bounded = False
                continue
            lows.append(values[0])
            highs.append(values[1])
        else:
            nulls[name] = null_count
            if bounded and lows:
                # Timestamp bounds are fixed-width ISO strings, so they order as text.
                mins[name] = min(lows)
                if None not in highs:
                    maxs[name] = max(highs)
    return {"numRecords": metadata.num_rows, "minValues": mins, "maxValues": maxs, "nullCount": nulls}


def stats_json(value: Any) -> str:
    """JSON text for Delta stats; decimals are written as exact numbers, not floats."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{stats_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value)
