"""Delta tables written by Spark and committed by delta-rs (the ``deltalake`` package).

This is the embedded backend, used where the delta-spark jars are not on the
classpath. The data never passes through the Python driver:

1. Spark writes the DataFrame as Parquet into a private staging folder inside
   the table folder (``<table>/_shoplake_staging/<uuid>/``, hive-style partition
   folders, at most ``target_file_rows`` rows per file). Names starting with
   ``_`` are ignored by Delta readers, Spark and vacuum, so a crashed write leaves
   nothing a reader can see.
2. The driver reads only the Parquet footers (row counts, min/max/null counts)
   with pyarrow, checks NOT NULL columns, and moves the files to their final
   place in the table folder. Spark's ``_SUCCESS`` and ``.crc`` files stay behind
   in the staging folder, which is then deleted.
3. One delta-rs transaction commits ``add`` actions for the new files, together
   with ``remove`` actions for the files a merge/replace/delete rewrites, so
   every write is atomic: readers see all of it or none of it.

Reads list the snapshot's files with delta-rs and hand them to Spark's Parquet
reader, so the result is an ordinary lazy Spark DataFrame.

Merge, replace_where and delete_where rewrite whole files, copy-on-write like
delta-spark without deletion vectors: Spark finds the files holding affected
rows (``_metadata.file_path``) in the snapshot that was read, writes their
surviving rows next to the new rows, and the commit swaps the file sets. The
commit is made against the snapshot that was read, with no automatic retry, so
a concurrent change to the table makes it fail instead of losing rows.
"""

from __future__ import annotations

import json
import logging
import math
import os
import posixpath
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.delta.base import Commit, DeltaStore
from common.errors import (
    DISK_FULL_TEXT,
    DiskFull,
    EnvironmentProblem,
    InputError,
    SchemaMismatch,
    ShopLakeError,
    UnsupportedTableProtocol,
    WriteConflict,
    is_disk_full,
)
from common.paths import has_scheme
from common.tables import TableSpec

log = logging.getLogger(__name__)

STAGING_DIR = "_shoplake_staging"
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Keys this store adds to each commitInfo: the logical operation (the engine
# records every file-level commit as WRITE) and an id to find the commit again.
OPERATION_KEY = "shoplake.operation"
WRITE_ID_KEY = "shoplake.writeId"
# Delta-spark truncates string statistics to a prefix; do the same so the log stays small.
STRING_STATS_PREFIX = 32
# Settings the Parquet files must be written with to be valid Delta data files:
# UTC-adjusted microsecond timestamps, standard (non-legacy) decimal and list
# encodings, and proleptic Gregorian dates as the Delta protocol specifies.
PARQUET_WRITE_CONF = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.writeLegacyFormat": "false",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
}
_FILE_COL = "__shoplake_file"
# The newest protocol this store writes correctly: reader 3 / writer 7 with these
# table features (the Delta protocol's features known to deltalake 1.6). A table
# asking for more was written by a newer Delta writer; committing to it could
# break a rule this store does not know, so it is refused before any write.
MAX_READER_VERSION = 3
MAX_WRITER_VERSION = 7
KNOWN_READER_FEATURES = frozenset(
    {"columnMapping", "deletionVectors", "timestampNtz", "v2Checkpoint", "vacuumProtocolCheck"}
)
KNOWN_WRITER_FEATURES = KNOWN_READER_FEATURES | {
    "appendOnly",
    "invariants",
    "checkConstraints",
    "changeDataFeed",
    "generatedColumns",
    "identityColumns",
    "domainMetadata",
    "rowTracking",
    "inCommitTimestamp",
    "icebergCompatV1",
}


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


# ------------------------------------------------------------------- the store
@dataclass(frozen=True)
class _Location:
    """Where a table lives, spelled for each library that touches it."""

    delta_uri: str  # for deltalake.DeltaTable
    spark_uri: str  # for Spark readers and writers
    fs: pafs.FileSystem
    fs_path: str  # for pyarrow.fs


@dataclass
class _StagedFile:
    rel_path: str  # relative to the staging folder, and to the table once published
    size: int
    rows: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any]


@dataclass
class _Staging:
    fs_path: str
    spark_uri: str
    files: list[_StagedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


@dataclass(frozen=True)
class _TableFile:
    rel_path: str  # decoded: the path below the table folder
    size: int
    partition_values: dict[str, str | None]


class RsDeltaStore(DeltaStore):
    """Delta tables through Spark (data) and delta-rs (transaction log).

    Args:
        spark: the session that reads and writes the data files.
        root: the lake root (a local folder, or a URI both Spark and pyarrow can open).
        target_file_rows: most rows in one data file.
    """

    backend = "delta-rs"

    def __init__(self, spark: SparkSession, root: str, target_file_rows: int = 2_000_000) -> None:
        super().__init__(spark, root)
        self.target_file_rows = target_file_rows

    # -- reading ----------------------------------------------------------------
    def exists(self, table: TableSpec) -> bool:
        return DeltaTable.is_deltatable(self._locate(table).delta_uri)

    def version(self, table: TableSpec) -> int | None:
        dt = self._open(table, required=False)
        return None if dt is None else dt.version()

    def check_supported(self, table: TableSpec) -> None:
        """Raise :class:`UnsupportedTableProtocol` when ``table`` needs a newer Delta
        reader or writer (delta-rs refuses unknown reader requirements when opening)."""
        dt = self._open(table, required=False)
        if dt is None:
            return
        protocol = dt.protocol()
        unknown = sorted(
            {*(protocol.reader_features or [])} - KNOWN_READER_FEATURES
            | {*(protocol.writer_features or [])} - KNOWN_WRITER_FEATURES
        )
        if protocol.min_writer_version > MAX_WRITER_VERSION or unknown:
            raise UnsupportedTableProtocol(
                f"{table.name}: the Delta table at {self._locate(table).delta_uri} was written by a newer "
                f"Delta writer (protocol minReaderVersion {protocol.min_reader_version}, minWriterVersion "
                f"{protocol.min_writer_version}" + (f", unknown features {unknown}" if unknown else "") + "); "
                f"this ShopLake writes up to reader {MAX_READER_VERSION} / writer {MAX_WRITER_VERSION}: "
                "nothing was written, upgrade ShopLake or use lake.backend=delta-spark"
            )

    def _schema_json(self, table: TableSpec) -> dict[str, Any] | None:
        dt = self._open(table, required=False)
        return None if dt is None else json.loads(dt.schema().to_json())

    def _add_columns(self, table: TableSpec, columns: Sequence[str]) -> None:
        # delta-rs commits data with the table's schema, so the columns are added first,
        # in a commit of their own (older rows read them as null).
        wanted = [f for f in delta_schema(table).fields if f.name in columns]
        self._open(table).alter.add_columns(wanted)

    def read(self, table: TableSpec, version: int | None = None) -> DataFrame:
        loc = self._locate(table)
        dt = self._open(table, version=version)
        files = self._snapshot_files(table, dt)
        try:
            return self._scan(table, loc, [f.rel_path for f in files]).select(*table.columns)
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            raise InputError(
                f"{table.name}: version {dt.version()} of {loc.delta_uri} lists data files that "
                "are gone (removed by vacuum, or deleted outside Delta)"
            ) from exc

    def history(self, table: TableSpec, limit: int | None = None) -> list[Commit]:
        dt = self._open(table)
        commits = []
        for info in dt.history(limit):
            commits.append(
                Commit(
                    version=int(info["version"]),
                    timestamp_ms=int(info.get("timestamp", 0)),
                    operation=str(info.get(OPERATION_KEY) or info.get("operation", "UNKNOWN")),
                    parameters=dict(info.get("operationParameters") or {}),
                )
            )
        return commits

    # -- writing ----------------------------------------------------------------
    def overwrite(self, table: TableSpec, df: DataFrame) -> int:
        loc = self._locate(table)
        staging = self._stage(table, loc, self.conform(table, df))
        try:
            dt = self._open(table, required=False)
            return self._commit(
                table,
                loc,
                dt,
                staging=[staging],
                mode="overwrite",
                operation="WRITE",
                parameters={"mode": "Overwrite"},
            )
        finally:
            self._drop_staging(loc, staging)

    def append(self, table: TableSpec, df: DataFrame) -> int:
        return self._append(table, df)

    def append_once(self, table: TableSpec, df: DataFrame, app_id: str, txn_version: int) -> int:
        dt = self._open(table, required=False)
        done = None if dt is None else dt.transaction_version(app_id)
        if done is not None and done >= txn_version:
            log.info("%s: %s version %d is committed already (at %d); skipped", table.name, app_id, txn_version, done)
            # Still compute the rows, writing nothing: a stream's replayed micro-batch must run
            # its stateful operators, or Spark refuses the batch (state store commit
            # validation) and the state of a batch killed before its checkpoint is lost.
            df.write.format("noop").mode("overwrite").save()
            return dt.version()
        return self._append(table, df, (Transaction(app_id, txn_version),))

    def _append(self, table: TableSpec, df: DataFrame, transactions: Sequence[Transaction] = ()) -> int:
        loc = self._locate(table)
        staging = self._stage(table, loc, self.conform(table, df))
        try:
            dt = self._open(table, required=False)
            if dt is not None and not staging.files:
                return dt.version()
            return self._commit(
                table,
                loc,
                dt,
                staging=[staging],
                mode="append",
                operation="WRITE",
                parameters={"mode": "Append"},
                transactions=transactions,
            )
        finally:
            self._drop_staging(loc, staging)

    def replace_where(self, table: TableSpec, df: DataFrame, predicate: str) -> int:
        """Delete rows matching ``predicate`` and add ``df``, in one commit.

        Raises:
            SchemaMismatch: when a row of ``df`` does not match ``predicate``.
        """
        loc = self._locate(table)
        new = self._stage(table, loc, self.conform(table, df))
        try:
            self._require_rows_match(table, self._scan_staging(table, new), predicate)
            return self._rewrite(
                table,
                loc,
                new,
                affected=lambda target: target.where(F.expr(predicate)),
                survivors=lambda rows: rows.where(F.expr(f"NOT coalesce(({predicate}), false)")),
                operation="WRITE",
                parameters={"mode": "Overwrite", "predicate": predicate},
            )
        finally:
            self._drop_staging(loc, new)

    def merge(self, table: TableSpec, df: DataFrame, keys: Sequence[str] | None = None) -> int:
        """Upsert ``df`` on ``keys``, rewriting only the files that hold matched keys.

        Rows whose key is null never match (as in SQL MERGE) and are inserted.

        Raises:
            SchemaMismatch: when ``df`` repeats a key, or a key is not a column.
        """
        # Spark computes the rewrite (target files with a matching key, minus the
        # matched rows, plus the source) and delta-rs commits it with the source
        # files in one transaction. This keeps the source out of the driver and
        # uses Spark's join semantics, where delta-rs' own merge would need the
        # source streamed through Python and rewrites with a second engine.
        merge_keys = self._merge_keys(table, keys)
        loc = self._locate(table)
        new = self._stage(table, loc, self.conform(table, df))
        try:
            source = self._scan_staging(table, new)
            self._require_unique_keys(table, source, merge_keys)
            source_keys = source.select(*merge_keys)
            return self._rewrite(
                table,
                loc,
                new,
                affected=lambda target: target.join(source_keys, list(merge_keys), "left_semi"),
                survivors=lambda rows: rows.join(source_keys, list(merge_keys), "left_anti"),
                operation="MERGE",
                parameters={"predicate": " AND ".join(f"t.{k} = s.{k}" for k in merge_keys)},
            )
        finally:
            self._drop_staging(loc, new)

    def delete_where(self, table: TableSpec, predicate: str) -> int:
        return self._rewrite(
            table,
            self._locate(table),
            None,
            affected=lambda target: target.where(F.expr(predicate)),
            survivors=lambda rows: rows.where(F.expr(f"NOT coalesce(({predicate}), false)")),
            operation="DELETE",
            parameters={"predicate": predicate},
        )

    # -- maintenance ------------------------------------------------------------
    def vacuum(self, table: TableSpec, retention_hours: float = 168) -> list[str]:
        """Delete unreferenced files older than ``retention_hours`` (0 is allowed).

        The retention safety check is off for this call: the caller chose the
        retention, and erasure needs 0 to remove superseded copies of personal
        data. Abandoned staging folders of failed writes go too (when older than
        the retention, and never younger than an hour, so running writes keep theirs).
        """
        if retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
        loc = self._locate(table)
        dt = self._open(table)
        removed = dt.vacuum(
            retention_hours=math.ceil(retention_hours),
            dry_run=False,
            enforce_retention_duration=False,
        )
        removed = list(removed) + self._drop_stale_staging(loc, max(retention_hours, 1.0))
        log.info("vacuum %s: %d files removed", table.name, len(removed))
        return removed

    def optimize(self, table: TableSpec, zorder_by: Sequence[str] = ()) -> dict[str, Any]:
        """Compact small files with delta-rs (``OPTIMIZE``, Z-ordered by ``zorder_by``
        when given); the rows are unchanged."""
        self._check_zorder(table, zorder_by)
        dt = self._open(table)
        metrics = dt.optimize.z_order(list(zorder_by)) if zorder_by else dt.optimize.compact()
        log.info("optimize %s: %s", table.name, metrics)
        return dict(metrics)

    # -- internals: locating and opening ------------------------------------------
    def _locate(self, table: TableSpec) -> _Location:
        path = self.path(table)
        if not has_scheme(path):
            local = os.path.abspath(path)
            return _Location(local, "file://" + local, pafs.LocalFileSystem(), local)
        fs, fs_path = pafs.FileSystem.from_uri(path)
        return _Location(path, path, fs, fs_path.rstrip("/"))

    def _open(self, table: TableSpec, version: int | None = None, *, required: bool = True) -> DeltaTable | None:
        """The table (at ``version``), or None when it is missing and not ``required``.

        Raises:
            InputError: when the table (or the version) is missing and ``required``.
        """
        uri = self._locate(table).delta_uri
        try:
            return DeltaTable(uri, version=version)
        except TableNotFoundError:
            if not required:
                return None
            raise InputError(f"{table.name}: no Delta table at {uri}") from None
        except DeltaError as exc:
            if "Unsupported" in str(exc):
                # delta-rs refuses a reader version or reader feature it does not know.
                raise UnsupportedTableProtocol(
                    f"{table.name}: the Delta table at {uri} was written by a newer Delta writer and "
                    f"needs a newer reader (delta-rs: {str(exc).splitlines()[0]}); nothing was written, "
                    "upgrade ShopLake or use lake.backend=delta-spark"
                ) from exc
            if version is None:
                raise
            raise InputError(
                f"{table.name}: version {version} of the Delta table at {uri} cannot be read ({exc})"
            ) from exc

    def _snapshot_files(self, table: TableSpec, dt: DeltaTable) -> list[_TableFile]:
        """The data files of ``dt``'s snapshot.

        Raises:
            EnvironmentProblem: when the table uses features this reader cannot honour
                (column mapping renames Parquet columns; deletion vectors hide rows).
        """
        protocol = dt.protocol()
        features = set(protocol.reader_features or [])
        if "columnMapping" in features or protocol.min_reader_version == 2:
            raise EnvironmentProblem(
                f"{table.name}: the table uses column mapping, which the delta-rs backend "
                "cannot read through Spark; use lake.backend=delta-spark"
            )
        if "deletionVectors" in features and dt.deletion_vectors().read_all().num_rows:
            raise EnvironmentProblem(
                f"{table.name}: the table has deletion vectors, which the delta-rs backend "
                "cannot apply through Spark; run OPTIMIZE/REORG with delta-spark or use "
                "lake.backend=delta-spark"
            )
        actions = pa.table(dt.get_add_actions(flatten=True))
        if actions.num_rows == 0:
            return []
        rows = actions.to_pylist()
        return [
            _TableFile(
                rel_path=unquote(row["path"]),
                size=int(row["size_bytes"]),
                partition_values={c: delta_partition_string(row.get(f"partition.{c}")) for c in table.partition_by},
            )
            for row in rows
        ]

    def _scan(self, table: TableSpec, loc: _Location, rel_paths: Sequence[str]) -> DataFrame:
        """Spark DataFrame over some of the table's files, typed by the spec."""
        if not rel_paths:
            return self.spark.createDataFrame([], table.schema)
        reader = self.spark.read.schema(table.schema)
        if table.partition_by:
            # Partition columns live in the folder names; basePath makes Spark read
            # them from there, typed by the spec (e.g. DateType, not string).
            reader = reader.option("basePath", loc.spark_uri)
        return reader.parquet(*(f"{loc.spark_uri}/{p}" for p in rel_paths))

    def _scan_staging(self, table: TableSpec, staging: _Staging) -> DataFrame:
        """Spark DataFrame over staged files (before they are published)."""
        if not staging.files:
            return self.spark.createDataFrame([], table.schema).select(*table.columns)
        reader = self.spark.read.schema(table.schema)
        if table.partition_by:
            reader = reader.option("basePath", staging.spark_uri)
        paths = (f"{staging.spark_uri}/{f.rel_path}" for f in staging.files)
        return reader.parquet(*paths).select(*table.columns)

    # -- internals: staging ------------------------------------------------------
    def _stage(self, table: TableSpec, loc: _Location, df: DataFrame) -> _Staging:
        """Write ``df`` (already conformed) as Parquet into a new staging folder.

        Raises:
            SchemaMismatch: when a NOT NULL column of the spec holds nulls.
        """
        name = uuid.uuid4().hex
        staging = _Staging(
            fs_path=f"{loc.fs_path}/{STAGING_DIR}/{name}",
            spark_uri=f"{loc.spark_uri}/{STAGING_DIR}/{name}",
        )
        try:
            if table.partition_by:
                # One task per partition value, so each partition folder gets
                # files of up to target_file_rows rows instead of one per task.
                df = df.repartition(*table.partition_by)
            self._write_parquet(table, df, staging.spark_uri)
            staging.files = self._inspect(table, loc, staging)
            if self._too_fragmented(table, staging):
                staging = self._restage(table, loc, staging)
            self._check_not_null(table, staging)
        except BaseException as exc:
            self._drop_staging(loc, staging)
            if is_disk_full(exc):
                raise self._disk_full(table, loc, "staging its files") from exc
            raise
        return staging

    def _write_parquet(self, table: TableSpec, df: DataFrame, uri: str) -> None:
        writer = df.write.mode("errorifexists").option("maxRecordsPerFile", self.target_file_rows)
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        with self._temporary_conf(PARQUET_WRITE_CONF):
            writer.parquet(uri)

    def _inspect(self, table: TableSpec, loc: _Location, staging: _Staging) -> list[_StagedFile]:
        """Footers of the staged data files; empty files are deleted, not committed."""
        selector = pafs.FileSelector(staging.fs_path, recursive=True, allow_not_found=True)
        files = []
        for info in loc.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            rel = posixpath.relpath(info.path, staging.fs_path)
            # Spark's markers (_SUCCESS, _temporary/) and checksums (.crc) are not data.
            if any(part.startswith(("_", ".")) for part in rel.split("/")):
                continue
            if not rel.endswith(".parquet"):
                continue
            with loc.fs.open_input_file(info.path) as handle:
                metadata = pq.read_metadata(handle)
            if metadata.num_rows == 0:
                loc.fs.delete_file(info.path)
                continue
            files.append(
                _StagedFile(
                    rel_path=rel,
                    size=int(info.size),
                    rows=metadata.num_rows,
                    partition_values=partition_values_from_path(rel, table.partition_by),
                    stats=parquet_file_stats(metadata, table.schema, string_bounds=table.layer != "bronze"),
                )
            )
        return sorted(files, key=lambda f: f.rel_path)

    def _too_fragmented(self, table: TableSpec, staging: _Staging) -> bool:
        """True when an unpartitioned write came out as many small files.

        Spark writes one file per task, so a small DataFrame after a wide shuffle
        lands as dozens of tiny files. Rewriting the staged files is cheap (they
        are local Parquet, the upstream plan is not recomputed) and only happens
        when the files average under a quarter of the target.
        """
        if table.partition_by or len(staging.files) <= 1:
            return False
        needed = max(1, math.ceil(staging.rows / self.target_file_rows))
        return len(staging.files) > needed and staging.rows / len(staging.files) < (self.target_file_rows / 4)

    def _restage(self, table: TableSpec, loc: _Location, staging: _Staging) -> _Staging:
        needed = max(1, math.ceil(staging.rows / self.target_file_rows))
        log.debug("%s: re-staging %d small files as %d", table.name, len(staging.files), needed)
        name = uuid.uuid4().hex
        compact = _Staging(
            fs_path=f"{loc.fs_path}/{STAGING_DIR}/{name}",
            spark_uri=f"{loc.spark_uri}/{STAGING_DIR}/{name}",
        )
        try:
            self._write_parquet(table, self._scan_staging(table, staging).coalesce(needed), compact.spark_uri)
            compact.files = self._inspect(table, loc, compact)
        except BaseException:
            self._drop_staging(loc, compact)
            raise
        self._drop_staging(loc, staging)
        return compact

    def _check_not_null(self, table: TableSpec, staging: _Staging) -> None:
        nulls: dict[str, int] = {}
        for f in table.schema.fields:
            if f.nullable:
                continue
            if f.name in table.partition_by:
                count = sum(f2.rows for f2 in staging.files if f2.partition_values[f.name] is None)
            else:
                count = sum(s.stats["nullCount"].get(f.name, 0) for s in staging.files)
            if count:
                nulls[f.name] = count
        if nulls:
            raise SchemaMismatch(f"{table.name}: NOT NULL columns hold nulls (column: null rows): {nulls}")

    def _drop_staging(self, loc: _Location, staging: _Staging) -> None:
        try:
            loc.fs.delete_dir(staging.fs_path)
        except FileNotFoundError:
            pass
        except OSError as exc:  # cleanup must not hide the error that got us here
            log.warning("could not remove staging folder %s: %s", staging.fs_path, exc)
        if isinstance(loc.fs, pafs.LocalFileSystem):
            # rmdir only removes an empty folder, so a concurrent write's staging survives.
            try:
                os.rmdir(posixpath.dirname(staging.fs_path))
            except OSError:
                pass

    def _drop_stale_staging(self, loc: _Location, older_than_hours: float) -> list[str]:
        root = f"{loc.fs_path}/{STAGING_DIR}"
        selector = pafs.FileSelector(root, recursive=False, allow_not_found=True)
        cutoff = time.time() - older_than_hours * 3600
        dropped = []
        for info in loc.fs.get_file_info(selector):
            if info.type == pafs.FileType.Directory and info.mtime and info.mtime.timestamp() < cutoff:
                loc.fs.delete_dir(info.path)
                dropped.append(posixpath.relpath(info.path, loc.fs_path))
        return dropped

    # -- internals: committing ---------------------------------------------------
    def _publish(self, loc: _Location, staging: _Staging) -> list[AddAction]:
        """Move staged files into the table folder; the add actions that commit them."""
        now_ms = int(time.time() * 1000)
        adds = []
        for f in staging.files:
            target = f"{loc.fs_path}/{f.rel_path}"
            loc.fs.create_dir(posixpath.dirname(target), recursive=True)
            loc.fs.move(f"{staging.fs_path}/{f.rel_path}", target)
            adds.append(
                AddAction(
                    path=f.rel_path,
                    size=f.size,
                    partition_values=f.partition_values,
                    modification_time=now_ms,
                    data_change=True,
                    stats=stats_json(f.stats),
                )
            )
        return adds

    def _commit(
        self,
        table: TableSpec,
        loc: _Location,
        dt: DeltaTable | None,
        *,
        staging: Sequence[_Staging],
        mode: str,
        operation: str,
        parameters: dict[str, str],
        removes: Sequence[_TableFile] = (),
        strict: bool = False,
        transactions: Sequence[Transaction] = (),
    ) -> int:
        """Publish the staged files and commit them (and ``removes``) as one version.

        Args:
            dt: the snapshot the write was computed from; None creates the table.
            mode: ``append`` or ``overwrite`` (overwrite removes every current file).
            strict: fail instead of retrying when another commit landed since ``dt``
                (for writes whose content depends on what they read).
            transactions: app ids and versions recorded in the commit (``txn`` actions,
                see :meth:`append_once`).

        Returns:
            The version this commit created.
        """
        write_id = uuid.uuid4().hex
        props = CommitProperties(
            custom_metadata={
                OPERATION_KEY: operation,
                WRITE_ID_KEY: write_id,
                "operationParameters": parameters,
            },
            max_commit_retries=0 if strict else None,
            app_transactions=list(transactions) or None,
        )
        read_version = -1 if dt is None else dt.version()
        adds: list[AddAction] = []
        try:
            for part in staging:
                adds.extend(self._publish(loc, part))
            if dt is None:
                create_table_with_add_actions(
                    loc.delta_uri,
                    delta_schema(table),
                    adds,
                    mode="error",
                    partition_by=list(table.partition_by),
                    name=table.short_name,
                    description=table.description or None,
                    commit_properties=props,
                )
            else:
                now_ms = int(time.time() * 1000)
                actions: list[AddAction | RemoveAction] = [*adds]
                actions.extend(
                    RemoveAction(
                        path=f.rel_path,
                        data_change=True,
                        deletion_timestamp=now_ms,
                        size=f.size,
                        partition_values=f.partition_values,
                    )
                    for f in removes
                )
                dt.create_write_transaction(
                    actions,
                    mode=mode,
                    schema=delta_schema(table),
                    partition_by=list(table.partition_by),
                    commit_properties=props,
                )
        except BaseException as exc:
            # The files were never committed: take them back out of the table folder.
            for add in adds:
                try:
                    loc.fs.delete_file(f"{loc.fs_path}/{add.path}")
                except OSError:
                    log.warning("could not remove uncommitted file %s", add.path)
            if is_disk_full(exc):
                raise self._disk_full(table, loc, "committing") from exc
            if isinstance(exc, CommitFailedError) and "Unsupported table features" in str(exc):
                raise UnsupportedTableProtocol(
                    f"{table.name}: the Delta table at {loc.delta_uri} was written by a newer Delta writer "
                    f"({str(exc).splitlines()[0]}); nothing was written, upgrade ShopLake or use "
                    "lake.backend=delta-spark"
                ) from exc
            if isinstance(exc, CommitFailedError):
                raise WriteConflict(
                    f"{table.name}: {operation} conflicted with a concurrent commit to "
                    f"{loc.delta_uri} (read version {read_version}); nothing was written, "
                    f"re-run it: {exc}"
                ) from exc
            raise
        version = self._committed_version(loc, write_id, read_version)
        log.info(
            "%s %s: version %d (+%d files, -%d files)",
            operation,
            table.name,
            version,
            len(adds),
            len(removes),
        )
        return version

    @staticmethod
    def _disk_full(table: TableSpec, loc: _Location, step: str) -> DiskFull:
        return DiskFull(
            f"{table.name}: disk full ({DISK_FULL_TEXT}) while {step} at {loc.delta_uri}; nothing was "
            "committed and the table is at its previous version: free space and re-run"
        )

    def _committed_version(self, loc: _Location, write_id: str, read_version: int) -> int:
        """The version holding this write's commit (a concurrent writer may be past it)."""
        dt = DeltaTable(loc.delta_uri)
        latest = dt.version()
        for info in dt.history(max(1, latest - read_version)):
            if info.get(WRITE_ID_KEY) == write_id:
                return int(info["version"])
        return latest

    def _rewrite(
        self,
        table: TableSpec,
        loc: _Location,
        new: _Staging | None,
        *,
        affected: Callable[[DataFrame], DataFrame],
        survivors: Callable[[DataFrame], DataFrame],
        operation: str,
        parameters: dict[str, str],
    ) -> int:
        """Copy-on-write: replace the files holding affected rows by their survivors
        plus ``new``, in one commit against the snapshot that was read.

        Args:
            new: staged rows to add (None for a delete).
            affected: target DataFrame -> the target rows that make their file change.
            survivors: rows of the changed files -> the rows to keep.
        """
        dt = self._open(table, required=False)
        if dt is None:
            if new is None:
                return -1
            return self._commit(
                table,
                loc,
                None,
                staging=[new],
                mode="append",
                operation=operation,
                parameters=parameters,
            )
        files = self._snapshot_files(table, dt)
        by_path = {f.rel_path: f for f in files}
        changed: list[_TableFile] = []
        if files:
            target = self._scan(table, loc, list(by_path)).select(
                *table.columns, F.col("_metadata.file_path").alias(_FILE_COL)
            )
            # spark_uri is used literally (not %-decoded) by Spark, file_path comes back encoded.
            base = urlparse(loc.spark_uri).path
            for row in affected(target).select(_FILE_COL).distinct().collect():
                rel = posixpath.relpath(unquote(urlparse(row[_FILE_COL]).path), base)
                if rel not in by_path:
                    raise ShopLakeError(
                        f"{table.name}: Spark read a file that is not in the snapshot: {row[_FILE_COL]}"
                    )
                changed.append(by_path[rel])
        if not changed and (new is None or not new.files):
            return dt.version()  # nothing to delete or add: no empty commit
        staging = [new] if new is not None else []
        kept: _Staging | None = None
        try:
            if changed:
                rows = self._scan(table, loc, [f.rel_path for f in changed]).select(*table.columns)
                kept = self._stage(table, loc, self.conform(table, survivors(rows)))
                staging.append(kept)
            return self._commit(
                table,
                loc,
                dt,
                staging=staging,
                mode="append",
                operation=operation,
                parameters=parameters,
                removes=changed,
                strict=True,
            )
        finally:
            if kept is not None:
                self._drop_staging(loc, kept)
