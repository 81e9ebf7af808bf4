"""The staging and publishing protocol of the delta-rs store (see :mod:`common.delta.rs_store`).

A write goes through three places: a private staging folder inside the table
folder (``<table>/_shoplake_staging/<uuid>/``, invisible to Delta readers, Spark
and vacuum because the name starts with ``_``), the table folder itself, and the
transaction log. This module holds the steps that need no Spark session:

- inspecting the staged Parquet files (footers only) and dropping staging folders;
- publishing: moving staged files into the table folder as ``add`` actions, and
  taking them back out when the commit fails;
- the commit itself: one delta-rs transaction with the adds and the ``remove``
  actions of rewritten files, and the errors a failed commit is reported as.
"""

from __future__ import annotations

import logging
import math
import os
import posixpath
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)

from common.delta.rs_arrow import delta_schema, parquet_file_stats, partition_values_from_path, stats_json
from common.delta.rs_snapshot import Location, TableFile
from common.errors import (
    DISK_FULL_TEXT,
    DiskFull,
    SchemaMismatch,
    ShopLakeError,
    UnsupportedTableProtocol,
    WriteConflict,
    is_disk_full,
)
from common.tables import TableSpec

log = logging.getLogger(__name__)

STAGING_DIR = "_shoplake_staging"
# Keys this store adds to each commitInfo: the logical operation (the engine
# records every file-level commit as WRITE) and an id to find the commit again.
OPERATION_KEY = "shoplake.operation"
WRITE_ID_KEY = "shoplake.writeId"
# Settings the Parquet files must be written with to be valid Delta data files:
# UTC-adjusted microsecond timestamps, standard (non-legacy) decimal and list
# encodings, and proleptic Gregorian dates as the Delta protocol specifies.
PARQUET_WRITE_CONF = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.writeLegacyFormat": "false",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
}


@dataclass
class StagedFile:
    rel_path: str  # relative to the staging folder, and to the table once published
    size: int
    rows: int
    partition_values: dict[str, str | None]
    stats: dict[str, Any]


@dataclass
class Staging:
    fs_path: str
    spark_uri: str
    files: list[StagedFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)


def disk_full_error(table: TableSpec, loc: Location, step: str) -> DiskFull:
    return DiskFull(
        f"{table.name}: disk full ({DISK_FULL_TEXT}) while {step} at {loc.delta_uri}; nothing was "
        "committed and the table is at its previous version: free space and re-run"
    )


# ------------------------------------------------------------------ staging folders
def new_staging(loc: Location) -> Staging:
    """A fresh, not yet created staging folder of the table at ``loc``."""
    name = uuid.uuid4().hex
    return Staging(
        fs_path=f"{loc.fs_path}/{STAGING_DIR}/{name}",
        spark_uri=f"{loc.spark_uri}/{STAGING_DIR}/{name}",
    )


def inspect_staged_files(table: TableSpec, loc: Location, staging: Staging) -> list[StagedFile]:
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
            StagedFile(
                rel_path=rel,
                size=int(info.size),
                rows=metadata.num_rows,
                partition_values=partition_values_from_path(rel, table.partition_by),
                stats=parquet_file_stats(metadata, table.schema, string_bounds=table.layer != "bronze"),
            )
        )
    return sorted(files, key=lambda f: f.rel_path)


def too_fragmented(table: TableSpec, staging: Staging, target_file_rows: int) -> bool:
    """True when an unpartitioned write came out as many small files.

    Spark writes one file per task, so a small DataFrame after a wide shuffle
    lands as dozens of tiny files. Rewriting the staged files is cheap (they
    are local Parquet, the upstream plan is not recomputed) and only happens
    when the files average under a quarter of the target.
    """
    if table.partition_by or len(staging.files) <= 1:
        return False
    needed = max(1, math.ceil(staging.rows / target_file_rows))
    return len(staging.files) > needed and staging.rows / len(staging.files) < (target_file_rows / 4)


def check_not_null(table: TableSpec, staging: Staging) -> None:
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


def drop_staging(loc: Location, staging: Staging) -> None:
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


def drop_stale_staging(loc: Location, older_than_hours: float) -> list[str]:
    root = f"{loc.fs_path}/{STAGING_DIR}"
    selector = pafs.FileSelector(root, recursive=False, allow_not_found=True)
    cutoff = time.time() - older_than_hours * 3600
    dropped = []
    for info in loc.fs.get_file_info(selector):
        if info.type == pafs.FileType.Directory and info.mtime and info.mtime.timestamp() < cutoff:
            loc.fs.delete_dir(info.path)
            dropped.append(posixpath.relpath(info.path, loc.fs_path))
    return dropped


# ----------------------------------------------------------------------- publishing
def publish(loc: Location, staging: Staging) -> list[AddAction]:
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


def unpublish(loc: Location, adds: Sequence[AddAction]) -> None:
    """Take published files that were never committed back out of the table folder."""
    for add in adds:
        try:
            loc.fs.delete_file(f"{loc.fs_path}/{add.path}")
        except OSError:
            log.warning("could not remove uncommitted file %s", add.path)


def remove_actions(removes: Sequence[TableFile]) -> list[RemoveAction]:
    """The remove actions that take ``removes`` out of the table."""
    now_ms = int(time.time() * 1000)
    return [
        RemoveAction(
            path=f.rel_path,
            data_change=True,
            deletion_timestamp=now_ms,
            size=f.size,
            partition_values=f.partition_values,
        )
        for f in removes
    ]


# -------------------------------------------------------------------------- commits
def commit_properties(
    operation: str,
    parameters: dict[str, str],
    write_id: str,
    *,
    strict: bool,
    transactions: Sequence[Transaction],
) -> CommitProperties:
    """commitInfo keys, retry policy and ``txn`` actions of one commit (see ``RsDeltaStore._commit``)."""
    return CommitProperties(
        custom_metadata={
            OPERATION_KEY: operation,
            WRITE_ID_KEY: write_id,
            "operationParameters": parameters,
        },
        max_commit_retries=0 if strict else None,
        app_transactions=list(transactions) or None,
    )


def write_commit(
    table: TableSpec,
    loc: Location,
    dt: DeltaTable | None,
    adds: list[AddAction],
    removes: Sequence[TableFile],
    *,
    mode: str,
    props: CommitProperties,
) -> None:
    """Commit ``adds`` and ``removes`` as one version: the table's first when ``dt`` is None."""
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
        actions: list[AddAction | RemoveAction] = [*adds]
        actions.extend(remove_actions(removes))
        dt.create_write_transaction(
            actions,
            mode=mode,
            schema=delta_schema(table),
            partition_by=list(table.partition_by),
            commit_properties=props,
        )


def commit_failure(
    table: TableSpec, loc: Location, exc: BaseException, *, operation: str, read_version: int
) -> ShopLakeError | None:
    """The error a failed commit is reported as, or None to re-raise ``exc`` unchanged."""
    if is_disk_full(exc):
        return disk_full_error(table, loc, "committing")
    if isinstance(exc, CommitFailedError) and "Unsupported table features" in str(exc):
        return UnsupportedTableProtocol(
            f"{table.name}: the Delta table at {loc.delta_uri} was written by a newer Delta writer "
            f"({str(exc).splitlines()[0]}); nothing was written, upgrade ShopLake or use "
            "lake.backend=delta-spark"
        )
    if isinstance(exc, CommitFailedError):
        return WriteConflict(
            f"{table.name}: {operation} conflicted with a concurrent commit to "
            f"{loc.delta_uri} (read version {read_version}); nothing was written, "
            f"re-run it: {exc}"
        )
    return None


def committed_version(loc: Location, write_id: str, read_version: int) -> int:
    """The version holding this write's commit (a concurrent writer may be past it)."""
    dt = DeltaTable(loc.delta_uri)
    latest = dt.version()
    for info in dt.history(max(1, latest - read_version)):
        if info.get(WRITE_ID_KEY) == write_id:
            return int(info["version"])
    return latest
