"""The DeltaStore contract, run against every backend on temporary lakes.

Both halves run in CI. The delta-spark half needs the jars that `make jars`
fetches into ``jars/`` (the shared test session loads them); without them it is
skipped with the reason, except under ``CI``, where that is an error.

Besides the contract, every test checks that delta-rs itself
(``deltalake.DeltaTable(path).to_pyarrow_table()``) reads the same rows, so the
tables are real Delta tables and not only readable by the code that wrote them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.testing import assertDataFrameEqual

from common.config import ShopLakeConfig
from common.delta import DeltaStore, delta_spark_available
from common.delta.rs_store import STAGING_DIR, RsDeltaStore
from common.delta.spark_store import SparkDeltaStore
from common.errors import InputError, SchemaMismatch, ShopLakeError, WriteConflict
from common.tables import TableSpec
from tests.conftest import DELTA_SPARK_SKIP, requires_delta_spark

# ------------------------------------------------------------------ backends


BACKENDS = [
    pytest.param("delta-rs", id="delta-rs"),
    pytest.param(
        "delta-spark",
        id="delta-spark",
        marks=[
            pytest.mark.delta_spark,
            requires_delta_spark,
        ],
    ),
]


def make_store(backend: str, spark: SparkSession, root: str, target_file_rows: int = 2_000_000) -> DeltaStore:
    """A store of ``backend``; delta-spark needs the shared session to load Delta."""
    if backend == "delta-spark":
        if not delta_spark_available(spark):
            pytest.fail(
                "the test session cannot load Delta although the jars are there: the spark fixture builds "
                "its session with lake.backend=auto, which adds them (common.spark.delta_session_conf)"
            )
        return SparkDeltaStore(spark, root, target_file_rows=target_file_rows)
    return RsDeltaStore(spark, root, target_file_rows=target_file_rows)


@pytest.fixture(params=BACKENDS)
def dstore(request, spark: SparkSession, cfg: ShopLakeConfig) -> DeltaStore:
    """A store of each backend on a fresh temporary lake."""
    return make_store(request.param, spark, cfg.lake_root, cfg.lake.target_file_rows)


@pytest.fixture()
def rs_store(spark: SparkSession, cfg: ShopLakeConfig) -> RsDeltaStore:
    return RsDeltaStore(spark, cfg.lake_root, target_file_rows=cfg.lake.target_file_rows)


# --------------------------------------------------------------------- tables

ORDERS = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("customer", T.StringType()),
        T.StructField("amount", T.DecimalType(18, 2)),
    ]
)
EVENTS = T.StructType(
    [
        T.StructField("event_id", T.StringType(), False),
        T.StructField("event_date", T.DateType(), False),
        T.StructField("kind", T.StringType()),
    ]
)
ALL_TYPES = T.StructType(
    [
        T.StructField("id", T.LongType(), False),
        T.StructField("s", T.StringType()),
        T.StructField("i", T.IntegerType()),
        T.StructField("x", T.DoubleType()),
        T.StructField("money", T.DecimalType(18, 2)),
        T.StructField("flag", T.BooleanType()),
        T.StructField("day", T.DateType()),
        T.StructField("at", T.TimestampType()),
        T.StructField("counts", T.MapType(T.StringType(), T.LongType())),
    ]
)


def orders_spec(name: str = "silver.t_contract_orders") -> TableSpec:
    return TableSpec(name, ORDERS, keys=("id",))


def events_spec() -> TableSpec:
    return TableSpec("silver.t_contract_events", EVENTS, keys=("event_id",), partition_by=("event_date",))


def orders(spark: SparkSession, *rows: tuple) -> DataFrame:
    return spark.createDataFrame([(i, c, Decimal(a) if a is not None else None) for i, c, a in rows], ORDERS)


def events(spark: SparkSession, *rows: tuple) -> DataFrame:
    return spark.createDataFrame([(e, date.fromisoformat(d), k) for e, d, k in rows], EVENTS)


def _plain(value):
    """Arrow's Python values as Spark returns them (UTC instants as naive UTC, maps as dicts)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return dict(value)
    return value


def assert_table(store: DeltaStore, spec: TableSpec, expected: DataFrame, version: int | None = None):
    """The table reads back as ``expected`` through the store and through delta-rs."""
    actual = store.read(spec, version)
    assert [(f.name, f.dataType) for f in actual.schema.fields] == [(f.name, f.dataType) for f in spec.schema.fields]
    want = expected.collect()
    assertDataFrameEqual(actual.collect(), want)  # whole rows, any order
    # Cross-reader check: the log and files are readable by delta-rs on their own.
    arrow = DeltaTable(store.path(spec), version=version).to_pyarrow_table()
    assert arrow.schema.names == list(spec.columns)
    got = sorted((tuple(_plain(r[c]) for c in spec.columns) for r in arrow.to_pylist()), key=repr)
    assert got == sorted((tuple(r) for r in want), key=repr)


def live_files(store: DeltaStore, spec: TableSpec) -> list[str]:
    return DeltaTable(store.path(spec)).file_uris()


# ---------------------------------------------------------------- the contract


def test_overwrite_append_and_time_travel(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    assert not dstore.exists(spec)
    assert dstore.version(spec) is None

    v0 = dstore.overwrite(spec, orders(spark, (1, "a", "1.10"), (2, "b", "2.20")))
    v1 = dstore.append(spec, orders(spark, (3, "c", "3.30")))
    v2 = dstore.overwrite(spec, orders(spark, (9, "z", "9.90")))

    assert (v0, v1, v2) == (0, 1, 2)
    assert dstore.exists(spec) and dstore.version(spec) == 2
    assert_table(dstore, spec, orders(spark, (9, "z", "9.90")))
    assert_table(dstore, spec, orders(spark, (1, "a", "1.10"), (2, "b", "2.20")), version=0)
    assert_table(dstore, spec, orders(spark, (1, "a", "1.10"), (2, "b", "2.20"), (3, "c", "3.30")), version=1)


def test_silver_tables_record_row_changes_on_delta_spark(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()  # a silver table: Change Data Feed on (common.tables.TableSpec.change_data_feed)
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00")))
    if dstore.backend == "delta-rs":
        with pytest.raises(InputError, match="lake.backend=delta-spark"):
            dstore.changes(spec, 0)
        return
    dstore.merge(spec, orders(spark, (2, "b", "2.50"), (3, "c", "3.00")))
    dstore.delete_where(spec, "id = 1")

    got = {(r["id"], r["_change_type"], r["_commit_version"]) for r in dstore.changes(spec, 1).collect()}
    assert got == {(2, "update_preimage", 1), (2, "update_postimage", 1), (3, "insert", 1), (1, "delete", 2)}
    assert {r["_change_type"] for r in dstore.changes(spec, 0, 0).collect()} == {"insert"}


def test_time_travel_by_timestamp(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.10")))
    first = dstore.history(spec)[0]
    dstore.overwrite(spec, orders(spark, (2, "b", "2.20")))
    second = dstore.history(spec)[0]
    between = datetime.fromtimestamp(first.timestamp_ms / 1000, timezone.utc)

    assert second.timestamp_ms > first.timestamp_ms
    assert dstore.version_at(spec, between) == 0
    assert dstore.version_at(spec, datetime.fromtimestamp(second.timestamp_ms / 1000, timezone.utc)) == 1
    assert_table(dstore, spec, orders(spark, (1, "a", "1.10")), version=dstore.version_at(spec, between))
    with pytest.raises(InputError, match="no version at"):
        dstore.version_at(spec, datetime(2000, 1, 1))


def test_empty_append_creates_missing_table_and_otherwise_commits_nothing(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    empty = spark.createDataFrame([], ORDERS)

    assert dstore.append(spec, empty) == 0
    assert dstore.exists(spec)
    created = dstore.read(spec)
    assert [(f.name, f.dataType) for f in created.schema.fields] == [(f.name, f.dataType) for f in ORDERS.fields]
    assert created.count() == 0

    assert dstore.append(spec, orders(spark, (1, "a", "1.00"))) == 1
    assert dstore.append(spec, empty) == 1
    assert dstore.version(spec) == 1
    assert_table(dstore, spec, orders(spark, (1, "a", "1.00")))


def test_missing_table_and_version_raise_input_errors(dstore: DeltaStore, spark: SparkSession):
    spec = dataclasses.replace(orders_spec("silver.t_contract_missing"), written_by="clean")
    with pytest.raises(InputError, match=r"silver\.t_contract_missing.*t_contract_missing"):
        dstore.read(spec)
    with pytest.raises(InputError, match="silver.t_contract_missing"):
        dstore.history(spec)
    with pytest.raises(InputError, match=r"silver\.t_contract_missing does not exist at .*: run `shoplake run clean`"):
        dstore.require(spec)
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00")))
    dstore.require(spec)  # exists now: no error
    with pytest.raises(InputError, match="version 7"):
        dstore.read(spec, version=7)


def test_schema_mismatch_names_missing_and_extra_columns(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    wrong = orders(spark, (1, "a", "1.00")).drop("amount").withColumn("colour", F.lit("red"))
    with pytest.raises(SchemaMismatch, match=r"missing \['amount'\], unexpected \['colour'\]"):
        dstore.overwrite(spec, wrong)
    assert not dstore.exists(spec)


def test_replace_where_swaps_one_partition(dstore: DeltaStore, spark: SparkSession):
    spec = events_spec()
    dstore.overwrite(
        spec,
        events(
            spark,
            ("e1", "2024-01-01", "view"),
            ("e2", "2024-01-02", "view"),
            ("e3", "2024-01-02", "cart"),
            ("e4", "2024-01-03", "view"),
        ),
    )
    new = events(spark, ("e5", "2024-01-02", "buy"))

    version = dstore.replace_where(spec, new, "event_date = DATE'2024-01-02'")

    assert version == 1
    assert_table(
        dstore,
        spec,
        events(
            spark,
            ("e1", "2024-01-01", "view"),
            ("e5", "2024-01-02", "buy"),
            ("e4", "2024-01-03", "view"),
        ),
    )
    # Running it again gives the same table (idempotent publish of a slice).
    dstore.replace_where(spec, new, "event_date = DATE'2024-01-02'")
    assert dstore.read(spec).count() == 3


def test_replace_where_rejects_rows_outside_the_predicate(dstore: DeltaStore, spark: SparkSession):
    spec = events_spec()
    dstore.overwrite(spec, events(spark, ("e1", "2024-01-01", "view")))
    stray = events(spark, ("e2", "2024-01-02", "view"), ("e3", "2024-01-05", "view"))
    with pytest.raises(SchemaMismatch, match="do not match the predicate"):
        dstore.replace_where(spec, stray, "event_date = DATE'2024-01-02'")
    assert dstore.version(spec) == 0
    assert_table(dstore, spec, events(spark, ("e1", "2024-01-01", "view")))


def test_merge_updates_matches_and_inserts_the_rest(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00"), (3, "c", "3.00")))

    version = dstore.merge(spec, orders(spark, (2, "b2", "20.00"), (4, "d", "4.00")))

    assert version == 1
    assert_table(
        dstore,
        spec,
        orders(spark, (1, "a", "1.00"), (2, "b2", "20.00"), (3, "c", "3.00"), (4, "d", "4.00")),
    )
    # Merging into a missing table creates it.
    other = orders_spec("silver.t_contract_new")
    assert dstore.merge(other, orders(spark, (7, "g", "7.00"))) == 0
    assert_table(dstore, other, orders(spark, (7, "g", "7.00")))


def test_row_count_follows_every_kind_of_write(dstore: DeltaStore, spark: SparkSession):
    """row_count (delta-rs: from the log's per-file record counts) equals a Spark count of
    the latest version after overwrite, merge, append and delete, and after an empty write."""
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00"), (3, "c", "3.00")))
    assert dstore.row_count(spec) == 3
    dstore.merge(spec, orders(spark, (2, "b2", "20.00"), (4, "d", "4.00")))
    assert dstore.row_count(spec) == 4
    dstore.append(spec, orders(spark, (5, "e", "5.00")))
    dstore.delete_where(spec, "id <= 2")
    assert dstore.row_count(spec) == dstore.read(spec).count() == 3
    dstore.overwrite(spec, orders(spark))
    assert dstore.row_count(spec) == 0


def test_merge_rejects_duplicate_keys_in_the_source(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00")))
    dupes = orders(spark, (5, "x", "1.00"), (5, "y", "2.00"), (6, "z", "3.00"))
    with pytest.raises(SchemaMismatch, match=r"not unique on keys \['id'\].*'id': 5.*2 times"):
        dstore.merge(spec, dupes)
    with pytest.raises(SchemaMismatch, match=r"merge keys \['nope'\] are not columns"):
        dstore.merge(spec, orders(spark, (7, "x", "1.00")), keys=["nope"])
    assert dstore.version(spec) == 0


def test_delete_where(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    assert dstore.delete_where(spec, "id = 1") == -1  # missing table: nothing to do
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00"), (3, None, None)))

    assert dstore.delete_where(spec, "id >= 2 AND customer IS NOT NULL") == 1
    assert_table(dstore, spec, orders(spark, (1, "a", "1.00"), (3, None, None)))
    assert dstore.delete_where(spec, "id = 42") == 1  # no match: no new version
    assert dstore.version(spec) == 1


def test_history_is_newest_first_with_operations(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00")))
    dstore.append(spec, orders(spark, (3, "c", "3.00")))
    dstore.merge(spec, orders(spark, (1, "a2", "1.50")))
    dstore.delete_where(spec, "id = 2")

    history = dstore.history(spec)

    assert [c.version for c in history] == [3, 2, 1, 0]
    assert [c.operation for c in history] == ["DELETE", "MERGE", "WRITE", "WRITE"]
    assert history[0].parameters.get("predicate", "").find("id") >= 0
    stamps = [c.timestamp_ms for c in history]
    assert stamps == sorted(stamps, reverse=True)
    assert [c.version for c in dstore.history(spec, limit=2)] == [3, 2]


def test_vacuum_zero_removes_superseded_files(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "secret", "1.00")))
    old_files = DeltaTable(dstore.path(spec), version=0).file_uris()
    dstore.overwrite(spec, orders(spark, (2, "kept", "2.00")))
    listing = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
    session_listing = spark.conf.get(listing)

    removed = dstore.vacuum(spec, retention_hours=0)

    # delta-spark lists with a task per core or two, then gives the shared session its value back.
    assert spark.conf.get(listing) == session_listing
    assert len(removed) >= len(old_files) >= 1
    assert not [f for f in old_files if os.path.exists(f)]
    with pytest.raises(Exception):  # noqa: B017 - each engine fails its own way
        dstore.read(spec, version=0).collect()
    assert_table(dstore, spec, orders(spark, (2, "kept", "2.00")))


def test_optimize_compacts_files_and_keeps_rows(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00")))
    for i in range(2, 5):
        dstore.append(spec, orders(spark, (i, f"c{i}", f"{i}.00")))
    before = live_files(dstore, spec)

    metrics = dstore.optimize(spec)

    assert isinstance(metrics, dict)
    assert len(live_files(dstore, spec)) < len(before)
    assert_table(
        dstore,
        spec,
        orders(spark, (1, "a", "1.00"), (2, "c2", "2.00"), (3, "c3", "3.00"), (4, "c4", "4.00")),
    )


def test_optimize_z_orders_by_key_and_refuses_partition_columns(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (5, "e", "5.00"), (1, "a", "1.00")))
    dstore.append(spec, orders(spark, (3, "c", "3.00")))

    dstore.optimize(spec, zorder_by=["id"])

    (only,) = live_files(dstore, spec)
    latest = dstore.history(spec, limit=1)[0]
    assert latest.operation == "OPTIMIZE"
    if dstore.backend == "delta-spark":  # delta-spark records the Z-order columns
        assert json.loads(latest.parameters["zOrderBy"]) == ["id"]
    else:  # delta-rs records none, but sorts the rewritten file by the Z-value
        assert pq.read_table(only.removeprefix("file://"), columns=["id"])["id"].to_pylist() == [1, 3, 5]
    assert_table(dstore, spec, orders(spark, (5, "e", "5.00"), (1, "a", "1.00"), (3, "c", "3.00")))
    with pytest.raises(SchemaMismatch, match=r"cannot Z-order by \['event_date'\]"):
        dstore.optimize(events_spec(), zorder_by=["event_date"])


ORDERS_V2 = T.StructType([*ORDERS.fields, T.StructField("channel", T.StringType())])


def test_a_column_added_to_the_spec_migrates_the_table(dstore: DeltaStore, spark: SparkSession):
    """Schema evolution: the table gains the declared column; older rows read it as null."""
    v1, v2 = orders_spec(), TableSpec("silver.t_contract_orders", ORDERS_V2, keys=("id",))
    dstore.overwrite(v1, orders(spark, (1, "a", "1.00")))

    assert dstore.schema_changes(v2) == ("channel",)
    version = dstore.append(v2, spark.createDataFrame([(2, "b", Decimal("2.00"), "app")], ORDERS_V2))
    dstore.merge(v2, spark.createDataFrame([(1, "a", Decimal("1.50"), "web")], ORDERS_V2))

    # delta-spark adds the column in the append's own commit, delta-rs in one before it.
    assert version in (1, 2) and dstore.schema_changes(v2) == ()
    assert_table(
        dstore,
        v2,
        spark.createDataFrame([(1, "a", Decimal("1.50"), "web"), (2, "b", Decimal("2.00"), "app")], ORDERS_V2),
    )
    # Version 0 predates the column: it reads as null through the new spec.
    assertDataFrameEqual(
        dstore.read(v2, version=0), spark.createDataFrame([(1, "a", Decimal("1.00"), None)], ORDERS_V2)
    )


def test_an_incompatible_type_change_stops_with_the_table_and_column(dstore: DeltaStore, spark: SparkSession):
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (1, "a", "1.00")))
    changed = T.StructType([*ORDERS.fields[:2], T.StructField("amount", T.StringType())])
    retyped = TableSpec(spec.name, changed, keys=("id",))

    with pytest.raises(SchemaMismatch) as raised:
        dstore.append(retyped, spark.createDataFrame([(2, "b", "2.00")], changed))

    message = str(raised.value)
    assert "\n" not in message
    assert "silver.t_contract_orders: column amount" in message and '"decimal(18,2)"' in message
    assert dstore.version(spec) == 0
    assert_table(dstore, spec, orders(spark, (1, "a", "1.00")))


def test_concurrent_merges_serialise_or_one_fails_with_a_clear_conflict(dstore: DeltaStore, spark: SparkSession):
    """Two merges into one table at once: each either commits or fails with one line
    naming the conflict (nothing written); re-running the loser loses and repeats nothing."""
    spec = orders_spec()
    dstore.overwrite(spec, orders(spark, (0, "z", "0.00")))
    batches = [orders(spark, *[(i, f"w{w}", "1.00") for i in range(w * 100, w * 100 + 40)]) for w in (1, 2)]
    start = threading.Barrier(2)

    def merge(batch: DataFrame) -> str | None:
        start.wait()
        try:
            dstore.merge(spec, batch)
        except WriteConflict as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(merge, batches))

    for outcome in filter(None, outcomes):
        assert "conflicted with a concurrent commit" in outcome and "\n" not in outcome, outcome
    for batch, outcome in zip(batches, outcomes):
        if outcome:
            dstore.merge(spec, batch)
    ids = sorted(r["id"] for r in dstore.read(spec).select("id").collect())
    assert ids == [0, *range(100, 140), *range(200, 240)]


@pytest.mark.parametrize(
    "writer, reader",
    [
        pytest.param("delta-rs", "delta-spark", id="rs-to-spark"),
        pytest.param("delta-spark", "delta-rs", id="spark-to-rs"),
    ],
)
def test_either_store_reads_and_continues_the_others_tables(
    writer: str, reader: str, spark: SparkSession, cfg: ShopLakeConfig
):
    """Same rows at every version and the same version history through the other store
    (and through delta-rs' own reader, in assert_table), for a plain and a partitioned table."""
    if DELTA_SPARK_SKIP:
        pytest.skip(DELTA_SPARK_SKIP)
    first, second = (make_store(b, spark, cfg.lake_root) for b in (writer, reader))
    spec, parted = orders_spec(), events_spec()
    first.overwrite(spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00")))
    first.merge(spec, orders(spark, (2, "b", "2.50"), (3, "c", "3.00")))
    first.delete_where(spec, "id = 1")
    first.overwrite(parted, events(spark, ("e1", "2024-01-01", "view"), ("e2", "2024-01-02", "buy")))
    first.replace_where(parted, events(spark, ("e3", "2024-01-02", "cart")), "event_date = DATE'2024-01-02'")

    for table in (spec, parted):
        assert [c.version for c in second.history(table)] == [c.version for c in first.history(table)]
        for version in range(first.version(table) + 1):
            assertDataFrameEqual(second.read(table, version), first.read(table, version))
    assert_table(second, spec, orders(spark, (2, "b", "2.50"), (3, "c", "3.00")))
    assert_table(second, parted, events(spark, ("e1", "2024-01-01", "view"), ("e3", "2024-01-02", "cart")))

    # The other store writes on: its commit is the next version, read back by the first.
    assert second.append(spec, orders(spark, (4, "d", "4.00"))) == 3
    assert_table(first, spec, orders(spark, (2, "b", "2.50"), (3, "c", "3.00"), (4, "d", "4.00")))


def test_partitioned_table_round_trip(dstore: DeltaStore, spark: SparkSession):
    spec = events_spec()
    data = events(
        spark,
        ("e1", "2024-01-01", "view"),
        ("e2", "2024-01-02", None),
        ("e3", "2024-02-29", "buy"),
    )
    dstore.overwrite(spec, data)

    read = dstore.read(spec)
    assert read.schema["event_date"].dataType == T.DateType()
    assert_table(dstore, spec, data)
    folders = sorted(p.name for p in Path(dstore.path(spec)).iterdir() if not p.name.startswith("_"))
    assert folders == ["event_date=2024-01-01", "event_date=2024-01-02", "event_date=2024-02-29"]
    assert DeltaTable(dstore.path(spec)).metadata().partition_columns == ["event_date"]
    # Partition pruning works on the declared type.
    assert read.where(F.col("event_date") > date(2024, 1, 1)).count() == 2


ALL_TYPE_ROWS = [
    (
        1,
        "naïve ünïcode ✓",
        2_147_483_647,
        0.1,
        Decimal("1234567890123456.78"),
        True,
        date(1970, 1, 1),
        datetime(2024, 3, 31, 23, 59, 59, 999_999),
        {"views": 9_007_199_254_740_993},
    ),
    (
        2,
        "",
        -2_147_483_648,
        -1.5e300,
        Decimal("-0.01"),
        False,
        date(2099, 12, 31),
        datetime(1999, 12, 31, 0, 0, 0, 1),
        {},
    ),
    (3, None, None, None, None, None, None, None, None),
]


def test_all_types_round_trip_exactly(dstore: DeltaStore, spark: SparkSession):
    spec = TableSpec("gold.t_contract_types", ALL_TYPES, keys=("id",))
    dstore.overwrite(spec, spark.createDataFrame(ALL_TYPE_ROWS, ALL_TYPES))
    dstore.append(spec, spark.createDataFrame([(4, *ALL_TYPE_ROWS[0][1:])], ALL_TYPES))
    expected = [*ALL_TYPE_ROWS, (4, *ALL_TYPE_ROWS[0][1:])]

    read = dstore.read(spec)
    assert [(f.name, f.dataType) for f in read.schema.fields] == [(f.name, f.dataType) for f in ALL_TYPES.fields]
    assert [tuple(r) for r in read.orderBy("id").collect()] == expected  # exact, not approximate

    arrow = DeltaTable(dstore.path(spec)).to_pyarrow_table().sort_by("id")
    assert arrow.schema.field("at").type == pa.timestamp("us", tz="UTC")
    assert arrow.schema.field("money").type == pa.decimal128(18, 2)
    assert [tuple(_plain(v) for v in r.values()) for r in arrow.to_pylist()] == expected

    # Files rewritten by the engine's own compaction read back the same.
    dstore.optimize(spec)
    assert [tuple(r) for r in dstore.read(spec).orderBy("id").collect()] == expected


# ------------------------------------------------------- delta-rs specifics


def test_rs_writes_clean_table_folders_with_file_stats(rs_store: RsDeltaStore, spark: SparkSession):
    spec = events_spec()
    rs_store.overwrite(spec, events(spark, ("e1", "2024-01-01", "view"), ("e2", "2024-01-01", None)))
    rs_store.merge(spec, events(spark, ("e2", "2024-01-01", "buy"), ("e3", "2024-01-02", "view")))

    root = Path(rs_store.path(spec))
    names = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    junk = [n for n in names if not n.startswith("_delta_log/") and not n.endswith(".parquet")]
    assert junk == []
    assert not (root / STAGING_DIR).exists()
    assert not [n for n in names if "/." in n or n.startswith(".")]

    log = [json.loads(line) for line in (root / "_delta_log/00000000000000000000.json").open()]
    adds = [a["add"] for a in log if "add" in a]
    assert [a["partitionValues"] for a in adds] == [{"event_date": "2024-01-01"}]
    stats = json.loads(adds[0]["stats"])
    assert stats == {
        "numRecords": 2,
        "minValues": {"event_id": "e1", "kind": "view"},
        "maxValues": {"event_id": "e2", "kind": "view"},
        "nullCount": {"event_id": 0, "kind": 1},
    }
    assert adds[0]["size"] == (root / adds[0]["path"]).stat().st_size


def test_rs_timestamp_and_decimal_stats_bound_the_data(rs_store: RsDeltaStore, spark: SparkSession):
    spec = TableSpec("gold.t_contract_types", ALL_TYPES, keys=("id",))
    rs_store.overwrite(spec, spark.createDataFrame(ALL_TYPE_ROWS[:2], ALL_TYPES).coalesce(1))
    log_file = Path(rs_store.path(spec)) / "_delta_log/00000000000000000000.json"
    add = next(json.loads(line)["add"] for line in log_file.open() if '"add"' in line)
    # Exact decimal text, not a float; timestamps widened outwards to whole milliseconds.
    assert '"money":-0.01' in add["stats"] and '"money":1234567890123456.78' in add["stats"]
    stats = json.loads(add["stats"])
    assert stats["minValues"]["at"] == "1999-12-31T00:00:00.000Z"
    assert stats["maxValues"]["at"] == "2024-04-01T00:00:00.000Z"
    assert "counts" not in stats["nullCount"]


def test_rs_rejects_nulls_in_not_null_columns(rs_store: RsDeltaStore, spark: SparkSession):
    spec = orders_spec()
    nullable = T.StructType([T.StructField(f.name, f.dataType, True) for f in ORDERS.fields])
    bad = spark.createDataFrame([(None, "a", Decimal("1.00"))], nullable)
    with pytest.raises(SchemaMismatch, match=r"NOT NULL.*'id': 1"):
        rs_store.overwrite(spec, bad)
    assert not rs_store.exists(spec)


def test_rs_file_sizing_follows_target_file_rows(spark: SparkSession, cfg: ShopLakeConfig):
    spec = TableSpec("silver.t_contract_ids", T.StructType([T.StructField("id", T.LongType())]))
    small_files = RsDeltaStore(spark, cfg.lake_root, target_file_rows=10)
    small_files.overwrite(spec, spark.range(35).repartition(2))
    actions = pa.table(DeltaTable(small_files.path(spec)).get_add_actions(flatten=True))
    counts = actions["num_records"].to_pylist()
    assert sum(counts) == 35 and max(counts) <= 10

    # Many tiny tasks are gathered into one file instead of one file per task.
    big_files = RsDeltaStore(spark, cfg.lake_root, target_file_rows=1000)
    big_files.overwrite(spec, spark.range(40).repartition(8))
    assert len(live_files(big_files, spec)) == 1
    assert big_files.read(spec).count() == 40


def test_rs_rewrite_fails_on_a_concurrent_commit(rs_store: RsDeltaStore, spark: SparkSession, monkeypatch):
    """A merge computed from one snapshot must not commit over a newer one."""
    spec = orders_spec()
    rs_store.overwrite(spec, orders(spark, (1, "a", "1.00")))
    real_open = rs_store._open
    stale = real_open(spec)
    rs_store.append(spec, orders(spark, (2, "b", "2.00")))  # lands after the snapshot

    def open_stale(table, version=None, *, required=True):
        return stale if table == spec and version is None else real_open(table, version, required=required)

    monkeypatch.setattr(rs_store, "_open", open_stale)
    with pytest.raises(ShopLakeError, match="concurrent commit"):
        rs_store.merge(spec, orders(spark, (1, "a2", "1.50")))
    monkeypatch.undo()
    assert rs_store.version(spec) == 1
    assert_table(rs_store, spec, orders(spark, (1, "a", "1.00"), (2, "b", "2.00")))
