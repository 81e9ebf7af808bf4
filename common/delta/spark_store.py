"""Delta tables through the JVM delta-spark connector (clusters, and local sessions
once ``shoplake jars`` has fetched the jars).

Needs the delta-spark jars on the classpath and the Delta SQL extension in the
session (``--packages io.delta:delta-spark_4.2_2.13:4.4.0`` on a cluster; see
:mod:`common.delta.jars` and :func:`common.delta.delta_spark_available`). Every
operation is a single Delta commit made by delta-spark itself, so atomicity and conflict detection are
delta-spark's (optimistic concurrency, WriteSerializable by default).

Each write tags its commit with a unique ``userMetadata`` so the version it
created can be found in the history even when another writer commits right
after it.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.delta.base import Commit, DeltaStore
from common.errors import InputError, WriteConflict
from common.tables import TableSpec

log = logging.getLogger(__name__)

USER_METADATA_CONF = "spark.databricks.delta.commitInfo.userMetadata"
AUTO_MERGE_CONF = "spark.databricks.delta.schema.autoMerge.enabled"  # MERGE adds new spec columns
RETENTION_CHECK_CONF = "spark.databricks.delta.retentionDurationCheck.enabled"
# VACUUM lists the table folder with this many Spark tasks. Spark's default (10,000) is a
# legacy value that delta-spark's maintainers advise lowering on small clusters
# (delta-io/delta#220): on 2 local cores it made VACUUM of a one-file table take 130 s.
LISTING_PARALLELISM_CONF = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
SPARK_DEFAULT_LISTING_PARALLELISM = "10000"
# delta-spark's optimistic-concurrency failures (io.delta.exceptions.*), most specific first.
_CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DeltaConcurrentModificationException",
)
# How far back to look for this store's own commit when working out the version it wrote.
_HISTORY_SEARCH = 100


class SparkDeltaStore(DeltaStore):
    """Delta tables read and written by delta-spark.

    Args:
        spark: a session with the Delta extension and catalog configured.
        root: the lake root (any URI the cluster's Hadoop filesystems can open).
        target_file_rows: most rows in one data file (``maxRecordsPerFile``).
    """

    backend = "delta-spark"

    def __init__(self, spark: SparkSession, root: str, target_file_rows: int = 2_000_000) -> None:
        super().__init__(spark, root)
        self.target_file_rows = target_file_rows

    # -- reading ----------------------------------------------------------------
    def exists(self, table: TableSpec) -> bool:
        return bool(self._delta_table_cls().isDeltaTable(self.spark, self.path(table)))

    def version(self, table: TableSpec) -> int | None:
        if not self.exists(table):
            return None
        return int(self._table(table).history(1).select("version").first()[0])

    def _schema_json(self, table: TableSpec) -> dict[str, Any] | None:
        if not self.exists(table):
            return None
        return json.loads(self.spark.read.format("delta").load(self.path(table)).schema.json())

    def read(self, table: TableSpec, version: int | None = None) -> DataFrame:
        self._require_table(table)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        try:
            df = reader.load(self.path(table))
        except AnalysisException as exc:
            if version is None:
                raise
            raise InputError(
                f"{table.name}: version {version} of the Delta table at {self.path(table)} cannot be read ({exc})"
            ) from exc
        # A version written before the spec gained a column reads it as null.
        return df.select(
            *(df[f.name] if f.name in df.columns else F.lit(None).cast(f.dataType).alias(f.name) for f in table.schema)
        )

    def history(self, table: TableSpec, limit: int | None = None) -> list[Commit]:
        self._require_table(table)
        rows = (
            self._table(table)
            .history(limit)
            .select(
                "version",
                F.expr("unix_millis(timestamp)").alias("timestamp_ms"),
                "operation",
                "operationParameters",
            )
            .orderBy(F.col("version").desc())
            .collect()
        )
        return [
            Commit(
                version=int(r["version"]),
                timestamp_ms=int(r["timestamp_ms"]),
                operation=str(r["operation"]),
                parameters=dict(r["operationParameters"] or {}),
            )
            for r in rows
        ]

    def changes(self, table: TableSpec, start_version: int, end_version: int | None = None) -> DataFrame:
        self._require_table(table)
        reader = self.spark.read.format("delta").option("readChangeFeed", "true")
        reader = reader.option("startingVersion", start_version)
        if end_version is not None:
            reader = reader.option("endingVersion", end_version)
        try:
            df = reader.load(self.path(table))
            return df.select(*table.columns, "_change_type", "_commit_version", "_commit_timestamp")
        except AnalysisException as exc:
            raise InputError(
                f"{table.name}: no change data from version {start_version} at {self.path(table)} "
                f"(Change Data Feed off for those versions, or versions missing): {str(exc).splitlines()[0]}"
            ) from exc

    # -- writing ----------------------------------------------------------------
    def overwrite(self, table: TableSpec, df: DataFrame) -> int:
        write_id = self._write_id()
        with self._conflicts_named(table, "overwrite"):
            self._writer(table, self.conform(table, df), "overwrite", write_id).save(self.path(table))
        return self._version_of(table, write_id)

    def append(self, table: TableSpec, df: DataFrame) -> int:
        conformed = self.conform(table, df)
        if self.exists(table) and conformed.isEmpty():
            # delta-spark would commit an empty version; the contract is "nothing".
            return self._require_version(table)
        write_id = self._write_id()
        with self._conflicts_named(table, "append"):
            self._writer(table, conformed, "append", write_id).save(self.path(table))
        return self._version_of(table, write_id)

    def append_once(self, table: TableSpec, df: DataFrame, app_id: str, txn_version: int) -> int:
        write_id = self._write_id()
        with self._conflicts_named(table, "append"):
            (
                self._writer(table, self.conform(table, df), "append", write_id)
                # delta-spark skips the write when the table has this app id at this version or later.
                .option("txnAppId", app_id)
                .option("txnVersion", txn_version)
                .save(self.path(table))
            )
        return self._require_version(table)

    def start_stream(
        self,
        table: TableSpec,
        df: DataFrame,
        checkpoint: str,
        trigger: dict[str, Any],
        name: str,
        after_batch: Callable[[DataFrame, int], None] | None = None,
    ) -> StreamingQuery:
        """Delta's own streaming sink: it records the query id and batch id in each commit
        and skips a batch it already committed, so it is exactly once by itself. With
        ``after_batch``, ``foreachBatch`` and Delta's idempotent writes (``txnAppId``,
        ``txnVersion``: :meth:`append_once`) instead, which Delta documents for this."""
        if after_batch is not None:
            return super().start_stream(table, df, checkpoint, trigger, name, after_batch)
        writer = (
            self.conform(table, df)
            .writeStream.format("delta")
            .queryName(name)
            .outputMode("append")
            .option("checkpointLocation", checkpoint)
            .option("maxRecordsPerFile", self.target_file_rows)
            .option("mergeSchema", "true")
            .trigger(**trigger)
        )
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        return writer.start(self.path(table))

    def replace_where(self, table: TableSpec, df: DataFrame, predicate: str) -> int:
        """Delete rows matching ``predicate`` and add ``df`` in one commit (``replaceWhere``).

        Raises:
            SchemaMismatch: when a row of ``df`` does not match ``predicate``.
        """
        conformed = self.conform(table, df)
        # delta-spark checks this too while writing, but reports it as an engine
        # error raised inside a task; checking first gives the same error as the
        # delta-rs backend and applies when the table does not exist yet.
        self._require_rows_match(table, conformed, predicate)
        write_id = self._write_id()
        writer = self._writer(table, conformed, "overwrite", write_id)
        if self.exists(table):
            writer = writer.option("replaceWhere", predicate)
        with self._conflicts_named(table, "replace_where"):
            writer.save(self.path(table))
        return self._version_of(table, write_id)

    def merge(self, table: TableSpec, df: DataFrame, keys: Sequence[str] | None = None) -> int:
        """Upsert ``df`` on ``keys`` with ``MERGE``; null keys never match and are inserted.

        Raises:
            SchemaMismatch: when ``df`` repeats a key, or a key is not a column.
        """
        merge_keys = self._merge_keys(table, keys)
        source = self.conform(table, df)
        self._require_unique_keys(table, source, merge_keys)
        if not self.exists(table):
            write_id = self._write_id()
            with self._conflicts_named(table, "merge"):
                self._writer(table, source, "append", write_id).save(self.path(table))
            return self._version_of(table, write_id)
        condition = " AND ".join(f"t.`{k}` = s.`{k}`" for k in merge_keys)
        write_id = self._write_id()
        with (
            self._conflicts_named(table, "merge"),
            self._temporary_conf({USER_METADATA_CONF: write_id, AUTO_MERGE_CONF: "true"}),
        ):
            (
                self._table(table)
                .alias("t")
                .merge(source.alias("s"), condition)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
                .execute()
            )
        return self._version_of(table, write_id)

    def delete_where(self, table: TableSpec, predicate: str) -> int:
        if not self.exists(table):
            return -1
        # Data skipping keeps this probe cheap, and it avoids an empty DELETE commit.
        if self.read(table).where(F.expr(predicate)).isEmpty():
            return self._require_version(table)
        write_id = self._write_id()
        with self._conflicts_named(table, "delete"), self._temporary_conf({USER_METADATA_CONF: write_id}):
            self._table(table).delete(predicate)
        return self._version_of(table, write_id)

    # -- maintenance ------------------------------------------------------------
    def vacuum(self, table: TableSpec, retention_hours: float = 168) -> list[str]:
        """Delete unreferenced files older than ``retention_hours`` (0 is allowed).

        The retention safety check is turned off for this call only: the caller
        chose the retention, and erasure needs 0 to remove superseded copies of
        personal data. Returns the deleted paths (from a dry run just before).
        """
        if retention_hours < 0:
            raise ValueError(f"retention_hours must be >= 0, got {retention_hours}")
        self._require_table(table)
        quoted = self.path(table).replace("`", "``")
        conf = {RETENTION_CHECK_CONF: "false"}
        if self.spark.conf.get(LISTING_PARALLELISM_CONF) == SPARK_DEFAULT_LISTING_PARALLELISM:
            # Unless someone chose a value: a task per core (twice, for uneven folders).
            conf[LISTING_PARALLELISM_CONF] = str(2 * self.spark.sparkContext.defaultParallelism)
        with self._temporary_conf(conf):
            doomed = self.spark.sql(f"VACUUM delta.`{quoted}` RETAIN {retention_hours:g} HOURS DRY RUN").collect()
            self._table(table).vacuum(float(retention_hours))
        removed = [str(r[0]) for r in doomed]
        log.info("vacuum %s: %d files removed", table.name, len(removed))
        return removed

    def optimize(self, table: TableSpec, zorder_by: Sequence[str] = ()) -> dict[str, Any]:
        """Compact small files (``OPTIMIZE``, ``ZORDER BY zorder_by`` when given);
        returns delta-spark's metrics."""
        self._check_zorder(table, zorder_by)
        self._require_table(table)
        builder = self._table(table).optimize()
        result = (builder.executeZOrderBy(*zorder_by) if zorder_by else builder.executeCompaction()).collect()
        metrics = result[0]["metrics"].asDict(recursive=True) if result else {}
        log.info("optimize %s: %s", table.name, metrics)
        return metrics

    # -- internals ----------------------------------------------------------------
    def _delta_table_cls(self) -> Any:
        # Spark Connect sessions need delta's Connect client; classic ones the py4j API.
        if type(self.spark).__module__.startswith("pyspark.sql.connect"):
            from delta.connect.tables import DeltaTable
        else:
            from delta.tables import DeltaTable
        return DeltaTable

    def _table(self, table: TableSpec) -> Any:
        return self._delta_table_cls().forPath(self.spark, self.path(table))

    def _require_table(self, table: TableSpec) -> None:
        if not self.exists(table):
            raise InputError(f"{table.name}: no Delta table at {self.path(table)}")

    def _require_version(self, table: TableSpec) -> int:
        version = self.version(table)
        if version is None:
            raise InputError(f"{table.name}: no Delta table at {self.path(table)}")
        return version

    @contextmanager
    def _conflicts_named(self, table: TableSpec, operation: str) -> Iterator[None]:
        """Turn delta-spark's concurrent-modification errors (another writer committed
        first, optimistic concurrency) into one line a person can act on."""
        try:
            yield
        except Exception as exc:
            text = f"{type(exc).__name__}: {exc}"
            if not any(name in text for name in _CONFLICTS):
                raise
            kind = next(name for name in _CONFLICTS if name in text)
            raise WriteConflict(
                f"{table.name}: {operation} conflicted with a concurrent commit to {self.path(table)} ({kind}); "
                "nothing was written, re-run it"
            ) from exc

    @staticmethod
    def _write_id() -> str:
        return f"shoplake:{uuid.uuid4().hex}"

    def _writer(self, table: TableSpec, df: DataFrame, mode: str, write_id: str) -> DataFrameWriter:
        if table.partition_by:
            # One task per partition value: files of up to maxRecordsPerFile rows
            # per partition instead of one small file per task and partition.
            df = df.repartition(*table.partition_by)
        writer = (
            df.write.format("delta")
            .mode(mode)
            .option("maxRecordsPerFile", self.target_file_rows)
            .option("userMetadata", write_id)
            # Columns the spec added since the table was created are added to it;
            # conform() has refused any change of an existing column's type.
            .option("mergeSchema", "true")
        )
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        if table.change_data_feed:
            # A table property: takes effect when this write creates the table.
            writer = writer.option("delta.enableChangeDataFeed", "true")
        return writer

    def _version_of(self, table: TableSpec, write_id: str) -> int:
        """The version whose commit carries ``write_id`` (the latest if not found)."""
        history = self._table(table).history(_HISTORY_SEARCH)
        match = history.where(F.col("userMetadata") == write_id).select("version").first()
        if match is not None:
            return int(match[0])
        return int(history.select(F.max("version")).first()[0])
