"""Shared fixtures: one local Spark session for the whole run, temporary lakes,
and the real public datasets in ../shared/data (tests needing them skip when absent)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest

from common.config import ShopLakeConfig, load_config

# pytest-xdist workers run under `python -c` (execnet), so __main__ has no __file__;
# pyspark.sql.connect (imported by Great Expectations) takes that for a doctest run
# and calls sys.exit(0) when grpc is not installed. Give the worker's __main__ a name.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHOPLAKE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

# The Delta backend of every test lake unless a test picks one: delta-rs (the embedded
# path); SHOPLAKE_TEST_BACKEND=delta-spark runs them through the JVM connector. The
# shared session loads the delta-spark jars either way (when fetched: `make jars`), so
# tests of both stores share it.
TEST_BACKEND = os.environ.get("SHOPLAKE_TEST_BACKEND", "delta-rs")

# Small and quiet: tests move tiny data, so one task slot, one partition per shuffle and no UI.
# `make test` runs two xdist workers on the two cores, so each worker's Spark has one core
# anyway; a second task thread only adds contention (two processes each running the pipeline on
# the 80-user shop, warm: 69 s per process with local[2] and two partitions, 62.5 s with this;
# bench/results/suite_durations.md).
TEST_SPARK_CONF = [
    f"lake.backend={TEST_BACKEND}",
    "spark.master=local[1]",
    "spark.conf.spark.sql.shuffle.partitions=1",
    "spark.conf.spark.databricks.delta.snapshotPartitions=1",
    "spark.conf.spark.default.parallelism=1",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.driver.memory=2g",
    "spark.conf.spark.sql.adaptive.enabled=false",
    # Interpreted plans: on the suite's toy lakes, compiling generated Java for every new
    # query costs more than it saves (six integration files: 536 s -> 426 s on 2 workers;
    # bench/results/suite_durations.md). Results are the same; the shipped configuration
    # keeps code generation, and the standalone-cluster test and bench/ run with it.
    "spark.conf.spark.sql.codegen.wholeStage=false",
    "spark.conf.spark.sql.codegen.factoryMode=NO_CODEGEN",  # but see splink_spark below
    # One k-means run per fit: the tests that measure segmentation set the shipped default back.
    "segment.restarts=1",
    # Exact keys only: Splink adds about 40-50 s to every clean here (2 cores), and the suite
    # cleans dozens of lakes. Tests about identity set clean.identity.method=splink themselves.
    "clean.identity.method=exact",
    # Two ALS fits, not the default search's twelve: most tests only need recommendations to
    # exist. tests/integration/test_recommend.py sets the halving search back and checks it.
    "recommend.search.strategy=grid",
    "recommend.grid.rank=[16]",
    "recommend.grid.reg_param=[0.3]",
    "recommend.grid.alpha=[5.0, 20.0]",
    "recommend.grid.confidence=[raw]",
]


# The same for jobs a test starts as a process of their own (``python -m shoplake.cli``, notebook
# kernels), whose JVMs live for one job: the C1 compiler alone and the serial collector. The suite
# keeps both cores busy, so CPU is its time, and C2's compile threads and G1's concurrent threads
# spend CPU that a short-lived JVM never earns back. Not for the shared session, which lives for
# the whole run: there C2 pays (bench/results/suite_durations.md). C1's frames are larger, so ALS's
# deep task deserialisation needs a larger thread stack than the default.
SUBPROCESS_SPARK_CONF = [
    *TEST_SPARK_CONF,
    "spark.conf.spark.driver.extraJavaOptions=-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss16m",
]


def delta_spark_skip_reason() -> str | None:
    """Why tests of the delta-spark store cannot run here, or None. Under CI they must
    run: missing jars are an error there, not a skip."""
    from common.delta.jars import jar_folder, local_delta_jars

    if local_delta_jars(PROJECT_ROOT / "jars"):
        return None
    reason = f"no delta-spark jars in {jar_folder(PROJECT_ROOT / 'jars')}: run `make jars` (needs Maven)"
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must test the delta-spark store, but {reason}")
    return reason


# The test files that take longest, longest first (seconds in the rehearsal of stop 40: 320, 318,
# 314, 305, 212, 177, 165, 157, 104, 97, 96, 70, 65, 55). `make test` hands whole files to its
# two workers in collection order (--no-loadscope-reorder), so these start first and the short
# files fill the gaps at the end. pytest-xdist's own order (most tests first) started the churn
# file last: replaying the last three rehearsals' per-file times, this order ends 0-70 s sooner.
LONGEST_FILES_FIRST = (
    "test_churn.py",
    "test_crash_and_concurrency.py",
    "test_stream.py",
    "test_idempotency.py",
    "test_profile_segment.py",
    "test_recommend.py",
    "test_delta_contract.py",
    "test_notebooks.py",
    "test_standalone_cluster.py",
    "test_env_errors.py",
    "test_campaign.py",
    "test_clean.py",
    "test_identity_splink.py",
    "test_identity_generated.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: other files keep their order


DELTA_SPARK_SKIP = delta_spark_skip_reason()
# For tests that write through delta-spark (the shared session loads its jars).
requires_delta_spark = pytest.mark.skipif(DELTA_SPARK_SKIP is not None, reason=DELTA_SPARK_SKIP or "")


def make_config(tmp_path: Path, *overrides: str, env: str = "local") -> ShopLakeConfig:
    """A local config whose lake and landing folders live under ``tmp_path``."""
    return load_config(
        env,
        overrides=[
            *TEST_SPARK_CONF,
            f"lake.root={tmp_path / 'lake'}",
            f"landing.root={tmp_path / 'landing'}",
            f"generate.out={tmp_path / 'landing'}",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from common.spark import build_spark

    cfg = make_config(tmp_path_factory.mktemp("spark"), "lake.backend=auto")
    session = build_spark(cfg)
    yield session
    session.stop()


# Spark's defaults for the two settings TEST_SPARK_CONF changes.
SHIPPED_CODEGEN = {"spark.sql.codegen.wholeStage": "true", "spark.sql.codegen.factoryMode": "FALLBACK"}


@pytest.fixture(scope="module")
def splink_spark(spark):
    """The shared session with code generation as shipped, for a module that runs Splink.
    Splink lists tables through ``spark.catalog``, whose rows the interpreted object factory
    cannot decode (EXPRESSION_DECODING_FAILED), and its million-pair u sample is more than
    a toy lake, where generated code pays for its compilation."""
    previous = {key: spark.conf.get(key) for key in SHIPPED_CODEGEN}
    for key, value in SHIPPED_CODEGEN.items():
        spark.conf.set(key, value)
    yield spark
    for key, value in previous.items():
        spark.conf.set(key, value)


@pytest.fixture()
def cfg(tmp_path) -> ShopLakeConfig:
    return make_config(tmp_path)


@pytest.fixture()
def store(spark, cfg):
    from common.delta import open_store

    return open_store(spark, cfg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (set SHOPLAKE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def secret_env(monkeypatch):
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", "test-secret-not-for-production")
    return "SHOPLAKE_PSEUDONYM_SECRET"


TEST_SECRET = "test-secret-not-for-production"


@dataclass(frozen=True)
class SilverLake:
    """A generated shop taken through ingest and clean. Shared: never modify it;
    tests that write bronze or silver work on ``copy_to(tmp_path)``."""

    root: Path
    manifest: dict
    cfg: ShopLakeConfig

    def copy_to(self, tmp_path: Path, *overrides: str) -> ShopLakeConfig:
        shutil.copytree(self.root / "lake", tmp_path / "lake")
        shutil.copytree(self.root / "landing", tmp_path / "landing")
        return make_config(tmp_path, *overrides)


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created when missing) across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def silver_lake(spark, tmp_path_factory):
    """Factory ``silver_lake(users=, days=, seed=, start_date=, attrition=, segment_style=, new_products=)``:
    a silver lake built once per parameter set per test run, so gold-layer tests share the costly part.

    Under pytest-xdist the workers share it too: the first worker to ask builds it in the run's
    common temporary folder while holding a lock, and the others wait and read it (the pattern
    pytest-xdist documents for session fixtures). It is read-only to every test, so sharing
    it across processes is safe."""
    from shoplake.generate import generate
    from shoplake.generate.helpers import MANIFEST_NAME
    from shoplake.registry import run_job

    # One folder per test run: the workers' base folders (popen-gwN) share a parent.
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent
    built: dict[tuple, SilverLake] = {}
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)

    def build(
        users: int = 600,
        days: int = 120,
        seed: int = 7,
        start_date: date = date(2024, 1, 1),
        attrition: float = 0.0,
        segment_style: str = "overlapping",
        new_products: float = 0.0,
    ) -> SilverLake:
        key = (users, days, seed, start_date, attrition, segment_style, new_products)
        if key not in built:
            root = shared / "silver_lakes" / "_".join(map(str, key))
            finished = root / "built"  # written last: a half-built lake (a killed run) is rebuilt
            with exclusive_lock(root.with_name(root.name + ".lock")):
                if not finished.exists():
                    shutil.rmtree(root, ignore_errors=True)
                    generate(
                        root / "landing",
                        users=users,
                        days=days,
                        seed=seed,
                        start_date=start_date,
                        attrition=attrition,
                        segment_style=segment_style,
                        new_products=new_products,
                    )
                    cfg = make_config(root)
                    run_job(spark, cfg, "ingest")
                    run_job(spark, cfg, "clean")
                    finished.touch()
            manifest = json.loads((root / "landing" / "shop" / MANIFEST_NAME).read_text())
            built[key] = SilverLake(root, manifest, make_config(root))
        return built[key]

    yield build
    mp.undo()


def string_cells(store, layers: tuple[str, ...]):
    """``(table, column, value)`` for every string cell of every existing table in ``layers``:
    the privacy tests scan them all for personal data."""
    from common.tables import ALL_TABLES

    for name, spec in ALL_TABLES.items():
        if spec.layer not in layers or not store.exists(spec):
            continue
        df = store.read(spec)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() == "string"]
        for row in df.select(*strings).collect():
            yield from ((name, column, value) for column, value in zip(strings, row))


def with_missing_columns(df, spec):
    """``df`` plus ``spec``'s other columns: tests that stand in for a gold job write
    its contract columns only, whatever the job adds besides. Nullable extras are
    null; NOT NULL extras (the store enforces them) get their type's zero value."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    def filler(field):
        dtype = field.dataType
        if field.nullable:
            value = F.lit(None)
        elif isinstance(dtype, T.ArrayType):
            value = F.array()
        elif isinstance(dtype, T.MapType):
            value = F.create_map()
        elif isinstance(dtype, T.StringType):
            value = F.lit("")
        elif isinstance(dtype, T.BooleanType):
            value = F.lit(False)
        elif isinstance(dtype, (T.DateType, T.TimestampType)):
            value = F.lit("1970-01-01")
        else:
            value = F.lit(0)
        return value.cast(dtype).alias(field.name)

    missing = [f for f in spec.schema.fields if f.name not in df.columns and f.name != "as_of"]
    return df.select("*", *[filler(f) for f in missing])
