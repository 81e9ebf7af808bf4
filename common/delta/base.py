"""The one Delta table API every job uses.

Two implementations sit behind it: :class:`common.delta.spark_store.SparkDeltaStore`
(the JVM delta-spark connector, used on clusters) and
:class:`common.delta.rs_store.RsDeltaStore` (delta-rs via the ``deltalake``
package, the embedded default where the Delta jars are not on the classpath).
Jobs never import either library directly; they get a store from
:func:`common.delta.open_store`.

Tables are addressed by :class:`common.tables.TableSpec`; a table lives at
``<lake root>/<layer>/<table>``. Every write validates the DataFrame's columns
against the spec, writes in the spec's column order, and returns the table's
new version. Predicates are SQL strings both engines understand (comparisons,
``IN``, ``AND``/``OR``, ``IS NULL``).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from common.errors import InputError, SchemaMismatch
from common.session_conf import temporary_conf
from common.tables import TableSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp_ms: int
    operation: str
    parameters: dict[str, Any]


class DeltaStore(ABC):
    """Read and write the lake's Delta tables."""

    backend: str = "abstract"

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.root = root.rstrip("/")

    def path(self, table: TableSpec) -> str:
        """Where ``table`` lives (a local path or a URI)."""
        return f"{self.root}/{table.relative_path()}"

    def conform(self, table: TableSpec, df: DataFrame) -> DataFrame:
        """Check columns against the spec and cast to the declared types and order.

        Also checks the spec against the table's current schema (:meth:`schema_changes`),
        so a write never starts on a table it cannot write.
        """
        table.check_columns(df.columns)
        added = self.schema_changes(table)
        if added:
            self._add_columns(table, added)
        return df.select([df[f.name].cast(f.dataType).alias(f.name) for f in table.schema.fields])

    def schema_changes(self, table: TableSpec) -> tuple[str, ...]:
        """Columns the spec (``common/tables.py``) adds to the existing table; the next
        write adds them (schema evolution; older rows read them as null).

        Raises:
            SchemaMismatch: in one line naming the table and column, when a column's
                declared type differs from the table's (an incompatible change).
        """
        current = self._schema_json(table)
        if current is None:
            return ()
        have = {f["name"]: f["type"] for f in current["fields"]}
        for field in json.loads(table.schema.json())["fields"]:
            name, want = field["name"], field["type"]
            if name in have and have[name] != want:
                raise SchemaMismatch(
                    f"{table.name}: column {name} is {json.dumps(have[name])} in the Delta table at "
                    f"{self.path(table)} but {json.dumps(want)} in common/tables.py, an incompatible change: "
                    "restore the declared type or rebuild the table"
                )
        added = tuple(c for c in table.columns if c not in have)
        if added:
            log.info("%s: adding columns %s to the Delta table (schema evolution)", table.name, list(added))
        return added

    def _add_columns(self, table: TableSpec, columns: Sequence[str]) -> None:
        """Add ``columns`` (of the spec) to the existing table before a write. The default
        does nothing: an engine whose writes merge the schema adds them in the same commit."""
        return None

    @abstractmethod
    def _schema_json(self, table: TableSpec) -> dict[str, Any] | None:
        """The table's current schema as Delta's JSON (``{"fields": [...]}``), or None
        when the table does not exist."""

    # -- reading ----------------------------------------------------------------
    @abstractmethod
    def exists(self, table: TableSpec) -> bool:
        """True when a Delta table exists at the table's path."""

    @abstractmethod
    def version(self, table: TableSpec) -> int | None:
        """The latest version, or None when the table does not exist."""

    @abstractmethod
    def read(self, table: TableSpec, version: int | None = None) -> DataFrame:
        """The table as a Spark DataFrame (latest, or as of ``version``)."""

    def row_count(self, table: TableSpec) -> int:
        """Rows at the latest version. This default counts with Spark; an engine that reads
        the log's per-file record counts answers without reading the data."""
        return self.read(table).count()

    def version_at(self, table: TableSpec, when: datetime) -> int:
        """Time travel by timestamp: the latest version committed at or before ``when``
        (Delta's ``timestampAsOf``), for :meth:`read`. Naive datetimes are UTC.

        Raises:
            InputError: when the table's first commit is later than ``when``.
        """
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        millis = int(when.timestamp() * 1000)
        history = self.history(table)
        earlier = [c.version for c in history if c.timestamp_ms <= millis]
        if not earlier:
            first = min(history, key=lambda c: c.version)
            raise InputError(
                f"{table.name}: no version at {when.isoformat()}: the first commit is at "
                f"{datetime.fromtimestamp(first.timestamp_ms / 1000, timezone.utc).isoformat()}"
            )
        return max(earlier)

    def require(self, *tables: TableSpec) -> None:
        """Raise :class:`InputError` for the first of ``tables`` that does not exist
        yet, naming the job that writes it (the table's ``written_by``)."""
        for table in tables:
            if not self.exists(table):
                raise InputError(
                    f"{table.name} does not exist at {self.path(table)}: run `shoplake run {table.written_by}` first"
                )

    def read_or_empty(self, table: TableSpec) -> DataFrame:
        """The table, or an empty frame of its schema when it does not exist yet (a
        source that never delivered that kind of record)."""
        if self.exists(table):
            return self.read(table)
        log.info("%s does not exist: read as empty", table.name)
        return self.spark.createDataFrame([], table.schema)

    def changes(self, table: TableSpec, start_version: int, end_version: int | None = None) -> DataFrame:
        """Row-level changes between two versions (inclusive): the spec's columns plus
        ``_change_type`` (insert, update_preimage, update_postimage, delete),
        ``_commit_version`` and ``_commit_timestamp``; Delta's Change Data Feed.

        Raises:
            InputError: when the engine or the table does not record changes.
        """
        raise InputError(
            f"{table.name}: reading changes needs Delta's Change Data Feed, which the {self.backend} "
            "store does not write: use lake.backend=delta-spark"
        )

    @abstractmethod
    def history(self, table: TableSpec, limit: int | None = None) -> list[Commit]:
        """Commits, newest first."""

    def check_supported(self, table: TableSpec) -> None:
        """Raise when ``table`` exists but needs a newer Delta reader or writer than
        this engine; a missing table passes. Jobs call it for every table before
        writing anything, so such a lake is refused before it is changed.

        The default does nothing: delta-spark checks the protocol itself.
        """
        return None

    # -- writing ----------------------------------------------------------------
    @abstractmethod
    def overwrite(self, table: TableSpec, df: DataFrame) -> int:
        """Replace the table's content with ``df`` (creating the table if needed)."""

    @abstractmethod
    def append(self, table: TableSpec, df: DataFrame) -> int:
        """Add ``df``'s rows. An empty ``df`` on an existing table commits nothing."""

    @abstractmethod
    def replace_where(self, table: TableSpec, df: DataFrame, predicate: str) -> int:
        """Delete rows matching ``predicate`` and add ``df`` (whose rows must match it)."""

    @abstractmethod
    def merge(self, table: TableSpec, df: DataFrame, keys: Sequence[str] | None = None) -> int:
        """Upsert on ``keys`` (default: the spec's keys): matched rows are updated,
        the rest inserted. ``df`` must be unique on the keys."""

    @abstractmethod
    def delete_where(self, table: TableSpec, predicate: str) -> int:
        """Delete rows matching ``predicate``; a missing table or no match commits nothing.

        Returns the table's version after the call (-1 when the table does not exist)."""

    @abstractmethod
    def append_once(self, table: TableSpec, df: DataFrame, app_id: str, txn_version: int) -> int:
        """Append ``df`` unless the table already has a commit of ``app_id`` at ``txn_version``
        or later (Delta transaction identifiers, the ``txn`` action the commit records): a
        retried write, e.g. a stream's micro-batch after a crash, is then skipped.

        Returns the table's version after the call (unchanged when skipped)."""

    # -- streaming --------------------------------------------------------------
    def start_stream(
        self,
        table: TableSpec,
        df: DataFrame,
        checkpoint: str,
        trigger: dict[str, Any],
        name: str,
        after_batch: Callable[[DataFrame, int], None] | None = None,
    ) -> StreamingQuery:
        """Start appending the streaming ``df`` to ``table``, each micro-batch exactly once.

        Progress (files read, batch ids) is kept in ``checkpoint``; a restart resumes from
        it. This default writes every micro-batch with :meth:`append_once`, its app id the
        query's id (kept in the checkpoint: the same after a restart, new with a new
        checkpoint) and its version the batch id, so a batch replayed after a crash
        between the commit and the checkpoint is skipped.

        Args:
            trigger: keyword arguments of ``DataStreamWriter.trigger``, e.g.
                ``{"availableNow": True}`` or ``{"processingTime": "10 seconds"}``.
            after_batch: called with each micro-batch's rows and id once they are in the
                table, also when a replayed batch was skipped: it must be idempotent.
        """
        conformed = self.conform(table, df)

        def write(batch: DataFrame, batch_id: int) -> None:
            # Spark sets the query id as a local property of the thread running the batch.
            query_id = batch.sparkSession.sparkContext.getLocalProperty("sql.streaming.queryId")
            if not query_id:
                raise RuntimeError(f"{table.name}: no streaming query id in batch {batch_id}")
            if after_batch is None:
                self.append_once(table, batch, query_id, batch_id)
                return
            # Computed once for both uses (a local checkpoint: Spark 4.2 cannot write a
            # persisted batch of a stateful plan, `key not found` on one of its columns).
            # Its blocks go when the DataFrame is garbage-collected (Spark's ContextCleaner).
            rows = batch.localCheckpoint(eager=True)
            self.append_once(table, rows, query_id, batch_id)
            after_batch(rows, batch_id)

        return (
            conformed.writeStream.queryName(name)
            .option("checkpointLocation", checkpoint)
            .trigger(**trigger)
            .foreachBatch(write)
            .start()
        )

    # -- maintenance ------------------------------------------------------------
    @abstractmethod
    def vacuum(self, table: TableSpec, retention_hours: float = 168) -> list[str]:
        """Physically delete files no longer referenced and older than the retention."""

    @abstractmethod
    def optimize(self, table: TableSpec, zorder_by: Sequence[str] = ()) -> dict[str, Any]:
        """Compact small files, Z-ordered by ``zorder_by`` (the columns readers filter
        on, e.g. the spec's keys) when given; returns the engine's metrics."""

    @staticmethod
    def _check_zorder(table: TableSpec, zorder_by: Sequence[str]) -> None:
        """Z-order columns must be data columns: partition columns are already clustered."""
        bad = [c for c in zorder_by if c not in table.columns or c in table.partition_by]
        if bad:
            raise SchemaMismatch(
                f"{table.name}: cannot Z-order by {bad}: Z-order columns must be non-partition columns of "
                f"{[c for c in table.columns if c not in table.partition_by]}"
            )

    # -- checks shared by the engines ---------------------------------------------
    @staticmethod
    def _merge_keys(table: TableSpec, keys: Sequence[str] | None) -> tuple[str, ...]:
        """The merge keys: ``keys`` when given, else the spec's; each must be a column."""
        chosen = tuple(keys) if keys is not None else table.keys
        if not chosen:
            raise SchemaMismatch(f"{table.name}: merge needs keys; none were given and the spec declares none")
        unknown = [k for k in chosen if k not in table.columns]
        if unknown:
            raise SchemaMismatch(
                f"{table.name}: merge keys {unknown} are not columns; columns are {list(table.columns)}"
            )
        return chosen

    @staticmethod
    def _require_unique_keys(table: TableSpec, df: DataFrame, keys: Sequence[str]) -> None:
        """Raise :class:`SchemaMismatch` with an example when ``df`` repeats a key.

        A merge source with repeated keys has no single "new" row for a target row,
        so which one wins would depend on task order.
        """
        dup = df.groupBy(*keys).count().where(F.col("count") > 1).limit(1).collect()
        if dup:
            example = {k: dup[0][k] for k in keys}
            raise SchemaMismatch(
                f"{table.name}: merge source is not unique on keys {list(keys)}: "
                f"e.g. {example} appears {dup[0]['count']} times; deduplicate it first"
            )

    @staticmethod
    def _require_rows_match(table: TableSpec, df: DataFrame, predicate: str) -> None:
        """Raise :class:`SchemaMismatch` when a row of ``df`` falls outside ``predicate``.

        replace_where deletes only what the predicate selects, so a row outside it
        would survive the next replace of the same slice and be duplicated.
        """
        outside = df.where(F.expr(f"NOT coalesce(({predicate}), false)"))
        if outside.limit(1).count():
            raise SchemaMismatch(
                f"{table.name}: replace_where({predicate!r}) was given {outside.count()} rows "
                "that do not match the predicate"
            )

    @contextmanager
    def _temporary_conf(self, conf: Mapping[str, str]) -> Iterator[None]:
        """Set session settings for one operation and put the previous values back: only
        settings an operation needs (timestamp encoding, a retention check, the width of
        VACUUM's listing), not general tuning."""
        with temporary_conf(self.spark, conf):
            yield
