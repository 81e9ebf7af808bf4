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

This module holds the store and the steps that run Spark; the rest is in
:mod:`~common.delta.rs_staging` (staging folders, publishing, the commit),
:mod:`~common.delta.rs_snapshot` (locating and opening tables, protocol checks,
snapshot file lists) and :mod:`~common.delta.rs_arrow` (Arrow types, partition
values, Parquet file statistics).
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import uuid
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from deltalake import DeltaTable
from deltalake.transaction import AddAction, Transaction
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.delta.base import Commit, DeltaStore
from common.delta.rs_arrow import delta_schema
from common.delta.rs_snapshot import Location, TableFile, locate, open_table, require_writable_protocol, snapshot_files
from common.delta.rs_staging import (
    OPERATION_KEY,
    PARQUET_WRITE_CONF,
    STAGING_DIR,
    Staging,
    check_not_null,
    commit_failure,
    commit_properties,
    committed_version,
    disk_full_error,
    drop_staging,
    drop_stale_staging,
    inspect_staged_files,
    new_staging,
    publish,
    too_fragmented,
    unpublish,
    write_commit,
)
from common.errors import InputError, ShopLakeError, is_disk_full
from common.tables import TableSpec

# STAGING_DIR is part of this module's interface: tests look for leftover staging folders.
__all__ = ["STAGING_DIR", "RsDeltaStore"]

log = logging.getLogger(__name__)

_FILE_COL = "__shoplake_file"


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
        require_writable_protocol(table, self._locate(table).delta_uri, dt.protocol())

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
        files = snapshot_files(table, dt)
        try:
            return self._scan(table, loc, [f.rel_path for f in files]).select(*table.columns)
        except AnalysisException as exc:
            if "PATH_NOT_FOUND" not in str(exc):
                raise
            raise InputError(
                f"{table.name}: version {dt.version()} of {loc.delta_uri} lists data files that "
                "are gone (removed by vacuum, or deleted outside Delta)"
            ) from exc

    def row_count(self, table: TableSpec) -> int:
        """The sum of the snapshot's per-file record counts (``numRecords``, which this store
        and delta-spark write into every add action's stats); Spark counts when a file has none."""
        # snapshot_files refuses, as read does, tables whose files do not hold every row.
        counts = [f.records for f in snapshot_files(table, self._open(table))]
        if any(c is None for c in counts):
            return super().row_count(table)
        return int(sum(counts))

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
            drop_staging(loc, staging)

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
            drop_staging(loc, staging)

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
            drop_staging(loc, new)

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
            drop_staging(loc, new)

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
        removed = list(removed) + drop_stale_staging(loc, max(retention_hours, 1.0))
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
    def _locate(self, table: TableSpec) -> Location:
        return locate(self.path(table))

    def _open(self, table: TableSpec, version: int | None = None, *, required: bool = True) -> DeltaTable | None:
        """The table (at ``version``), or None when it is missing and not ``required``.

        Raises:
            InputError: when the table (or the version) is missing and ``required``.
        """
        return open_table(table, self._locate(table).delta_uri, version, required=required)

    def _scan(self, table: TableSpec, loc: Location, rel_paths: Sequence[str]) -> DataFrame:
        """Spark DataFrame over some of the table's files, typed by the spec."""
        if not rel_paths:
            return self.spark.createDataFrame([], table.schema)
        reader = self.spark.read.schema(table.schema)
        if table.partition_by:
            # Partition columns live in the folder names; basePath makes Spark read
            # them from there, typed by the spec (e.g. DateType, not string).
            reader = reader.option("basePath", loc.spark_uri)
        return reader.parquet(*(f"{loc.spark_uri}/{p}" for p in rel_paths))

    def _scan_staging(self, table: TableSpec, staging: Staging) -> DataFrame:
        """Spark DataFrame over staged files (before they are published)."""
        if not staging.files:
            return self.spark.createDataFrame([], table.schema).select(*table.columns)
        reader = self.spark.read.schema(table.schema)
        if table.partition_by:
            reader = reader.option("basePath", staging.spark_uri)
        paths = (f"{staging.spark_uri}/{f.rel_path}" for f in staging.files)
        return reader.parquet(*paths).select(*table.columns)

    # -- internals: staging (the steps without Spark are in rs_staging) ------------
    def _stage(self, table: TableSpec, loc: Location, df: DataFrame) -> Staging:
        """Write ``df`` (already conformed) as Parquet into a new staging folder.

        Raises:
            SchemaMismatch: when a NOT NULL column of the spec holds nulls.
        """
        staging = new_staging(loc)
        try:
            if table.partition_by:
                # One task per partition value, so each partition folder gets
                # files of up to target_file_rows rows instead of one per task.
                df = df.repartition(*table.partition_by)
            self._write_parquet(table, df, staging.spark_uri)
            staging.files = inspect_staged_files(table, loc, staging)
            if too_fragmented(table, staging, self.target_file_rows):
                staging = self._restage(table, loc, staging)
            check_not_null(table, staging)
        except BaseException as exc:
            drop_staging(loc, staging)
            if is_disk_full(exc):
                raise disk_full_error(table, loc, "staging its files") from exc
            raise
        return staging

    def _write_parquet(self, table: TableSpec, df: DataFrame, uri: str) -> None:
        writer = df.write.mode("errorifexists").option("maxRecordsPerFile", self.target_file_rows)
        if table.partition_by:
            writer = writer.partitionBy(*table.partition_by)
        with self._temporary_conf(PARQUET_WRITE_CONF):
            writer.parquet(uri)

    def _restage(self, table: TableSpec, loc: Location, staging: Staging) -> Staging:
        needed = max(1, math.ceil(staging.rows / self.target_file_rows))
        log.debug("%s: re-staging %d small files as %d", table.name, len(staging.files), needed)
        compact = new_staging(loc)
        try:
            self._write_parquet(table, self._scan_staging(table, staging).coalesce(needed), compact.spark_uri)
            compact.files = inspect_staged_files(table, loc, compact)
        except BaseException:
            drop_staging(loc, compact)
            raise
        drop_staging(loc, staging)
        return compact

    # -- internals: committing ---------------------------------------------------
    def _commit(
        self,
        table: TableSpec,
        loc: Location,
        dt: DeltaTable | None,
        *,
        staging: Sequence[Staging],
        mode: str,
        operation: str,
        parameters: dict[str, str],
        removes: Sequence[TableFile] = (),
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
        # The id finds this commit in the history again, even when a concurrent writer is past it.
        write_id = uuid.uuid4().hex
        props = commit_properties(operation, parameters, write_id, strict=strict, transactions=transactions)
        read_version = -1 if dt is None else dt.version()
        adds: list[AddAction] = []
        try:
            for part in staging:
                adds.extend(publish(loc, part))
            write_commit(table, loc, dt, adds, removes, mode=mode, props=props)
        except BaseException as exc:
            # The files were never committed: take them back out of the table folder.
            unpublish(loc, adds)
            failure = commit_failure(table, loc, exc, operation=operation, read_version=read_version)
            if failure is None:
                raise
            raise failure from exc
        version = committed_version(loc, write_id, read_version)
        log.info("%s %s: version %d (+%d files, -%d files)", operation, table.name, version, len(adds), len(removes))
        return version

    def _rewrite(
        self,
        table: TableSpec,
        loc: Location,
        new: Staging | None,
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
        files = snapshot_files(table, dt)
        by_path = {f.rel_path: f for f in files}
        changed: list[TableFile] = []
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
        kept: Staging | None = None
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
                drop_staging(loc, kept)
