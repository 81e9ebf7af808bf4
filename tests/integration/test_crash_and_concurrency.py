"""Crash safety and concurrent runs (issue 9, items 1 and 3).

Jobs run as real ``python -m shoplake.cli`` subprocesses (own JVM, own process group)
and are SIGKILLed at chosen points of their write path, found by polling the lake
folder: while the first table is being staged (nothing committed; basket into
gold), with some tables committed and others not (clean into silver), and with
bronze committed but the files not yet marked ingested (the ingest commit point).
After each kill every Delta table must be readable at a complete version; a re-run
must finish without duplicating or losing rows.

Cost: every kill starts a JVM, so each kill point proves something the others do
not. Staging is the same ``RsDeltaStore`` code for every layer, so one kill while
staging the first table of a run (basket's, into gold) covers it; clean is killed
once some silver tables are published. The uninterrupted reference lake the clean
test compares with is built once per module and its bronze is clean's starting point.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from common.tables import ALL_TABLES, BRONZE_DATA_TABLES, BRONZE_QUARANTINE
from shoplake.generate import generate
from shoplake.registry import run_job
from tests.conftest import SUBPROCESS_SPARK_CONF, make_config, requires_delta_spark

pytestmark = pytest.mark.slow  # every test starts one or more Spark JVMs as subprocesses

PROJECT = Path(__file__).resolve().parents[2]
SECRET = {"SHOPLAKE_PSEUDONYM_SECRET": "test-secret-not-for-production"}
STAGING = "_shoplake_staging"


# ----------------------------------------------------------------------- helpers
def cli_args(tmp: Path, job: str, backend: str | None = None) -> list[str]:
    args = [sys.executable, "-m", "shoplake.cli", "run", job]
    for item in [*SUBPROCESS_SPARK_CONF, f"lake.root={tmp / 'lake'}", f"landing.root={tmp / 'landing'}"]:
        args += ["--set", item]
    return args + (["--set", f"lake.backend={backend}"] if backend else [])


def start(tmp: Path, job: str, env: dict | None = None, backend: str | None = None) -> subprocess.Popen:
    # A session of its own, so a kill takes the JVM down with the Python driver,
    # as a crash of the machine or the container would.
    return subprocess.Popen(
        cli_args(tmp, job, backend),
        cwd=PROJECT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_when(proc: subprocess.Popen, condition: Callable[[], bool], timeout: float = 600) -> None:
    """SIGKILL ``proc``'s process group as soon as ``condition()`` holds.

    Fails when the job ends (or the timeout passes) before the condition was seen,
    so a test never silently checks an uninterrupted run. The timeout only guards
    against a hang: on a loaded shared machine a job can take minutes to get there.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"job ended (exit {proc.returncode}) before the kill point:\n{out}\n{err}")
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    pytest.fail(f"kill point not reached within {timeout}s")


def staging_in(lake: Path, layer: str, table: str = "*") -> Callable[[], bool]:
    """True once a write to ``<layer>/<table>`` has started staging Parquet files."""
    return lambda: any(lake.glob(f"{layer}/{table}/{STAGING}/*"))


def committed_in(lake: Path, layer: str) -> Callable[[], bool]:
    """True once the first table of ``layer`` has committed a version."""
    return lambda: any(lake.glob(f"{layer}/*/_delta_log/*.json"))


def delta_tables(lake: Path) -> dict[str, Path]:
    """Every Delta table under the lake, by registry name."""
    return {f"{p.parent.parent.name}.{p.parent.name}": p.parent for p in lake.glob("*/*/_delta_log")}


def read_all(lake: Path) -> dict[str, list[dict]]:
    """Each table's rows at its latest version; fails when a table is not readable.

    The latest version must be complete: its row count equals the sum of its add
    actions' record counts, and every file it lists exists.
    """
    rows = {}
    for name, path in delta_tables(lake).items():
        dt = DeltaTable(str(path))
        table = dt.to_pyarrow_table()
        adds = pa.table(dt.get_add_actions(flatten=True)).to_pydict()
        assert all((path / f).is_file() for f in adds["path"]), name
        assert table.num_rows == sum(adds["num_records"]), name
        rows[name] = table.to_pylist()
    return rows


def assert_no_duplicates(rows: dict[str, list[dict]]) -> None:
    """Bronze: no (file, line) twice; silver and bookkeeping tables: keys unique."""
    for name, table_rows in rows.items():
        spec = ALL_TABLES[name]
        keys = ("_file_sha256", "_source_line") if name in BRONZE_DATA_TABLES else spec.keys
        if not keys:
            continue
        counts = Counter(tuple(r[k] for k in keys) for r in table_rows)
        repeated = [k for k, n in counts.items() if n > 1]
        assert not repeated, f"{name}: {len(repeated)} keys {keys} repeated, e.g. {repeated[:3]}"


def assert_bronze_reconciles(rows: dict[str, list[dict]], manifest: dict, landing: Path) -> None:
    """Every generated record is in bronze exactly once: loaded or quarantined, and
    every landing file is marked ingested once."""
    for name, expected in manifest["valid_records_expected"].items():
        assert len(rows[name]) == expected, name
    quarantined = Counter((r["target_table"], r["reason"]) for r in rows[BRONZE_QUARANTINE.name])
    planted = Counter(
        {(t, reason): n for t, reasons in manifest["quarantine_expected"].items() for reason, n in reasons.items()}
    )
    assert quarantined == planted
    files = sorted(r["path"] for r in rows["bronze.ingested_files"])
    assert files == sorted(str(p) for p in (landing / "shop").glob("*/*") if p.is_file())


def assert_some_silver_published(lake: Path) -> None:
    """After a kill mid-publish: some silver tables committed, not all, none partly."""
    rows = read_all(lake)
    published = [name for name in rows if name.startswith("silver.")]
    assert published and len(published) < len([t for t in ALL_TABLES if t.startswith("silver.")])
    assert_no_duplicates(rows)


def versions(lake: Path) -> dict[str, int]:
    return {name: DeltaTable(str(path)).version() for name, path in delta_tables(lake).items()}


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def generate_landing(root: Path) -> dict:
    return generate(root / "landing", users=60, days=3, seed=9, start_date=date(2024, 1, 1))


@pytest.fixture()
def landing(tmp_path) -> tuple[Path, dict]:
    return tmp_path, generate_landing(tmp_path)


@pytest.fixture(scope="module")
def reference(spark, tmp_path_factory) -> tuple[Path, dict]:
    """The same landing data taken through ingest and clean without interruption."""
    root = tmp_path_factory.mktemp("uninterrupted")
    manifest = generate_landing(root)
    cfg = make_config(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(*next(iter(SECRET.items())))
        run_job(spark, cfg, "ingest")
        run_job(spark, cfg, "clean")
    return root, manifest


# ------------------------------------------------------------------------- tests
def test_ingest_killed_mid_write_is_repaired_by_the_next_run(spark, landing):
    tmp, manifest = landing
    lake = tmp / "lake"

    # 1. Killed after every bronze table is committed but before the files are marked
    #    ingested (the commit point): bronze holds this attempt's rows, once.
    kill_when(start(tmp, "ingest"), staging_in(lake, "bronze", "ingested_files"))
    rows = read_all(lake)
    assert "bronze.ingested_files" not in rows
    assert set(rows) == {*manifest["valid_records_expected"], BRONZE_QUARANTINE.name}
    assert_no_duplicates(rows)
    for name, expected in manifest["valid_records_expected"].items():
        assert len(rows[name]) == expected, name

    # 2. The re-run replaces the killed attempt's rows instead of adding to them, and
    #    marks every file ingested once (so a further run has nothing to add; the
    #    concurrency test below runs that third ingest).
    result = run_job(spark, make_config(tmp), "ingest")
    assert result.row_counts["records_in"] == sum(manifest["records_expected"].values())
    rows = read_all(lake)
    assert_no_duplicates(rows)
    assert_bronze_reconciles(rows, manifest, tmp / "landing")


def test_clean_killed_mid_publish_is_repaired_by_the_next_run(spark, reference, tmp_path, secret_env):
    ref, manifest = reference
    tmp, lake = tmp_path, tmp_path / "lake"
    cfg = make_config(tmp, f"landing.root={ref / 'landing'}")
    shutil.copytree(ref / "lake" / "bronze", lake / "bronze")  # ingested, never cleaned

    # Killed after the first silver table is published but (with seven more to merge)
    # before the last one. (A kill while staging, before anything is published: the gold test.)
    kill_when(start(tmp, "clean", SECRET), committed_in(lake, "silver"))
    assert_some_silver_published(lake)

    run_job(spark, cfg, "clean")
    rows = read_all(lake)
    assert_no_duplicates(rows)
    assert_bronze_reconciles(rows, manifest, ref / "landing")  # clean never writes bronze
    counts = {name: len(r) for name, r in rows.items() if name.startswith("silver.")}

    # The repaired silver equals a clean run that was never interrupted.
    fresh_counts = {name: len(r) for name, r in read_all(ref / "lake").items() if name.startswith("silver.")}
    assert counts == fresh_counts


def test_gold_job_killed_mid_publish_is_repaired_by_the_next_run(spark, reference, tmp_path):
    """Gold: basket (several gold tables per run) killed while staging its first
    table; the re-run's tables equal those of a run that was never interrupted."""
    ref, _ = reference
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    for root in (killed, straight):
        shutil.copytree(ref / "lake" / "bronze", root / "lake" / "bronze")
        shutil.copytree(ref / "lake" / "silver", root / "lake" / "silver")

    kill_when(start(killed, "basket"), staging_in(killed / "lake", "gold"))
    rows = read_all(killed / "lake")
    assert not [name for name in rows if name.startswith("gold.")]
    assert_no_duplicates(rows)

    run_job(spark, make_config(killed), "basket")
    run_job(spark, make_config(straight), "basket")

    def gold(root: Path) -> dict[str, list[str]]:
        return {n: sorted(map(repr, r)) for n, r in read_all(root / "lake").items() if n.startswith("gold.")}

    repaired = gold(killed)
    assert repaired == gold(straight)
    assert any(repaired.values()), "basket wrote no gold rows: the comparison would prove nothing"


@pytest.mark.parametrize("backend", ["delta-rs", pytest.param("delta-spark", marks=requires_delta_spark)])
def test_two_ingest_runs_at_once_serialise_or_one_fails_cleanly(spark, landing, backend):
    tmp, manifest = landing
    lake = tmp / "lake"
    procs = [start(tmp, "ingest", backend=backend), start(tmp, "ingest", backend=backend)]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        outcomes.append((proc.returncode, out, err))
    codes = sorted(code for code, _, _ in outcomes)
    assert codes[0] == 0, outcomes
    for code, _, err in outcomes:
        if code != 0:
            assert "another ingest run holds the lake lock" in one_error_line(err)

    rows = read_all(lake)
    assert_no_duplicates(rows)
    assert_bronze_reconciles(rows, manifest, tmp / "landing")

    before = versions(lake)
    result = run_job(spark, make_config(tmp, f"lake.backend={backend}"), "ingest")
    assert "no new files" in result.summary
    after = versions(lake)
    assert after.pop("ops.run_log") == before.pop("ops.run_log") + 1
    assert after == before


@requires_delta_spark
def test_delta_spark_ingest_and_clean_killed_mid_publish_are_repaired(spark, reference, landing, secret_env):
    """The kill tests above on delta-spark, which writes data files into the table folder
    and commits them with one log entry: killed once the first bronze (then silver) table
    has committed, every table reads at a complete version, and the re-run equals an
    uninterrupted run (the reference lake, built by the default backend)."""
    tmp, manifest = landing
    lake, cfg = tmp / "lake", make_config(tmp, "lake.backend=delta-spark")

    kill_when(start(tmp, "ingest", backend="delta-spark"), committed_in(lake, "bronze"))
    rows = read_all(lake)
    assert "bronze.ingested_files" not in rows and set(rows) <= {
        *manifest["valid_records_expected"],
        BRONZE_QUARANTINE.name,
    }
    assert_no_duplicates(rows)
    run_job(spark, cfg, "ingest")
    rows = read_all(lake)
    assert_no_duplicates(rows)
    assert_bronze_reconciles(rows, manifest, tmp / "landing")

    kill_when(start(tmp, "clean", SECRET, backend="delta-spark"), committed_in(lake, "silver"))
    assert_some_silver_published(lake)
    run_job(spark, cfg, "clean")
    rows = read_all(lake)
    assert_no_duplicates(rows)
    silver = {name: sorted(map(repr, r)) for name, r in rows.items() if name.startswith("silver.")}
    reference_rows = read_all(reference[0] / "lake")
    assert silver == {n: sorted(map(repr, r)) for n, r in reference_rows.items() if n.startswith("silver.")}
    # The tables are delta-spark's own (the reference lake's are delta-rs').
    first_commit = (lake / "silver" / "orders" / "_delta_log" / f"{0:020d}.json").read_text()
    assert "Delta-Lake/" in first_commit
