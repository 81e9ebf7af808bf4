"""Locating and opening delta-rs tables (see :mod:`common.delta.rs_store`).

- where a table lives, spelled for delta-rs, Spark and pyarrow;
- opening a table (at a version) with the errors the store reports;
- the Delta protocols this store reads and writes correctly;
- the data files of a snapshot, for Spark's Parquet reader.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError
from deltalake.table import ProtocolVersions

from common.delta.rs_arrow import delta_partition_string
from common.errors import EnvironmentProblem, InputError, UnsupportedTableProtocol
from common.paths import has_scheme
from common.tables import TableSpec

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


@dataclass(frozen=True)
class Location:
    """Where a table lives, spelled for each library that touches it."""

    delta_uri: str  # for deltalake.DeltaTable
    spark_uri: str  # for Spark readers and writers
    fs: pafs.FileSystem
    fs_path: str  # for pyarrow.fs


@dataclass(frozen=True)
class TableFile:
    rel_path: str  # decoded: the path below the table folder
    size: int
    partition_values: dict[str, str | None]
    records: int | None = None  # the add action's stats numRecords, when written


def locate(path: str) -> Location:
    """The :class:`Location` of the table folder at ``path`` (a local folder or a URI)."""
    if not has_scheme(path):
        local = os.path.abspath(path)
        return Location(local, "file://" + local, pafs.LocalFileSystem(), local)
    fs, fs_path = pafs.FileSystem.from_uri(path)
    return Location(path, path, fs, fs_path.rstrip("/"))


def open_table(table: TableSpec, uri: str, version: int | None, *, required: bool) -> DeltaTable | None:
    """The table at ``uri`` (at ``version``), or None when it is missing and not ``required``.

    Raises:
        InputError: when the table (or the version) is missing and ``required``.
    """
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
        raise InputError(f"{table.name}: version {version} of the Delta table at {uri} cannot be read ({exc})") from exc


def require_writable_protocol(table: TableSpec, uri: str, protocol: ProtocolVersions) -> None:
    """Raise :class:`UnsupportedTableProtocol` when ``protocol`` is newer than this store writes."""
    unknown = sorted(
        {*(protocol.reader_features or [])} - KNOWN_READER_FEATURES
        | {*(protocol.writer_features or [])} - KNOWN_WRITER_FEATURES
    )
    if protocol.min_writer_version > MAX_WRITER_VERSION or unknown:
        raise UnsupportedTableProtocol(
            f"{table.name}: the Delta table at {uri} was written by a newer "
            f"Delta writer (protocol minReaderVersion {protocol.min_reader_version}, minWriterVersion "
            f"{protocol.min_writer_version}" + (f", unknown features {unknown}" if unknown else "") + "); "
            f"this ShopLake writes up to reader {MAX_READER_VERSION} / writer {MAX_WRITER_VERSION}: "
            "nothing was written, upgrade ShopLake or use lake.backend=delta-spark"
        )


def snapshot_files(table: TableSpec, dt: DeltaTable) -> list[TableFile]:
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
        TableFile(
            rel_path=unquote(row["path"]),
            size=int(row["size_bytes"]),
            partition_values={c: delta_partition_string(row.get(f"partition.{c}")) for c in table.partition_by},
            records=row.get("num_records"),
        )
        for row in rows
    ]
