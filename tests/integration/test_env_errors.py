"""Configuration and environment errors (issue 9, item 6) through the real CLI:
unknown job, missing secret, an unusable lake path, a Delta table written by a
newer protocol, a full disk.

Each ends with one line on stderr (no traceback), the exit code of its
``common.errors`` class, and the lake's files byte for byte as before (the run
log, which records failed runs, and the lock files excepted). Unknown config
key: tests/integration/test_cli_errors.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from common.errors import ConfigError, DiskFull, EnvironmentProblem, MissingSecretError, UnsupportedTableProtocol
from common.tables import ALL_TABLES, BRONZE_ORDERS
from shoplake.generate import generate
from shoplake.registry import run_job
from tests.conftest import SUBPROCESS_SPARK_CONF, make_config
from tests.integration.test_crash_and_concurrency import assert_no_duplicates, read_all

PROJECT = Path(__file__).resolve().parents[2]
# Not part of what must stay unchanged: the run log records the failed run, and
# the lock file holds the pid of the last run.
BOOKKEEPING = ("ops/run_log/", "_locks/")


def shoplake(
    *args: str, tmp: Path, lake: Path, prelude: str | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``python -m shoplake.cli ARGS --set ...`` on ``lake``; ``prelude`` is Python run
    first in the same process (to make the environment fail from inside)."""
    sets = [*SUBPROCESS_SPARK_CONF, f"lake.root={lake}", f"landing.root={tmp / 'landing'}"]
    command = [sys.executable, "-m", "shoplake.cli"] if prelude is None else [sys.executable, "-c", prelude]
    return subprocess.run(
        [*command, *args, *(a for s in sets for a in ("--set", s))],
        capture_output=True,
        text=True,
        timeout=900,  # a hang guard only: a loaded shared machine can take minutes to start Spark
        cwd=PROJECT,
        env=env or {**os.environ, "PYTHONPATH": str(PROJECT)},
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def lake_files(lake: Path) -> dict[str, str]:
    """Every file (and symlink) under ``lake`` -> a digest of its content."""
    if lake.is_file():
        return {".": hashlib.sha256(lake.read_bytes()).hexdigest()}
    found = {}
    for path in sorted(lake.rglob("*")):
        rel = path.relative_to(lake).as_posix()
        if path.is_dir() and not path.is_symlink() or rel.startswith(BOOKKEEPING):
            continue
        found[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def add_landing_files(tmp: Path, seed: int) -> dict:
    """Deliver a second generated shop into the landing folder under new file names."""
    extra = tmp / f"extra-{seed}"
    manifest = generate(extra, users=40, days=2, seed=seed, start_date=date(2024, 2, 1))
    for path in (extra / "shop").glob("*/*"):
        shutil.copy(path, tmp / "landing" / "shop" / path.parent.name / f"s{seed}_{path.name}")
    return manifest


@pytest.fixture(scope="module")
def ingested_once(spark, tmp_path_factory) -> Path:
    """A tiny generated shop ingested once per module (tests work on copies)."""
    root = tmp_path_factory.mktemp("ingested")
    generate(root / "landing", users=40, days=2, seed=9, start_date=date(2024, 1, 1))
    run_job(spark, make_config(root), "ingest")
    return root


@pytest.fixture()
def ingested(ingested_once, tmp_path) -> tuple[Path, Path]:
    """A copy of the ingested shop: landing in ``<tmp>/landing``, lake in ``<tmp>/lake``."""
    for folder in ("landing", "lake"):
        shutil.copytree(ingested_once / folder, tmp_path / folder, symlinks=True)
    return tmp_path, tmp_path / "lake"


# ---------------------------------------------- unknown job, missing secret
@pytest.mark.parametrize(
    ("args", "code"),
    [(("run", "ingestt"), ConfigError.exit_code), (("pipeline", "--jobs", "ingest,ingestt"), ConfigError.exit_code)],
    ids=["run", "pipeline"],
)
def test_unknown_job_is_one_line_naming_it(tmp_path, args, code):
    proc = shoplake(*args, tmp=tmp_path, lake=tmp_path / "lake")
    assert proc.returncode == code
    line = one_error_line(proc)
    assert "'ingestt'" in line and "clean" in line  # the unknown name and the known ones
    assert not (tmp_path / "lake").exists()


def test_missing_secret_stops_a_pipeline_before_anything_runs(ingested):
    tmp, lake = ingested
    add_landing_files(tmp, seed=10)  # ingest would have work to do
    before = lake_files(lake)
    env = {k: v for k, v in os.environ.items() if k != "SHOPLAKE_PSEUDONYM_SECRET"}
    proc = shoplake("pipeline", tmp=tmp, lake=lake, env={**env, "PYTHONPATH": str(PROJECT)})
    assert proc.returncode == MissingSecretError.exit_code
    assert "SHOPLAKE_PSEUDONYM_SECRET is not set" in one_error_line(proc)
    assert "Spark" not in proc.stderr  # refused before the JVM started
    assert lake_files(lake) == before


# ------------------------------------------------------------ unusable lake path
def _lake_is_a_file(tmp: Path) -> Path:
    lake = tmp / "lake"
    lake.write_text("not a lake\n")
    return lake


def _lake_below_a_file(tmp: Path) -> Path:
    (tmp / "notes.txt").write_text("a file where a folder is expected\n")
    return tmp / "notes.txt" / "lake"


def _lake_is_a_dangling_link(tmp: Path) -> Path:
    lake = tmp / "lake"
    lake.symlink_to(tmp / "unmounted-volume" / "lake")
    return lake


@pytest.mark.parametrize(
    ("make_lake", "expected"),
    [
        (_lake_is_a_file, "is a file, not a folder"),
        (_lake_below_a_file, "notes.txt is a file, not a folder"),
        (_lake_is_a_dangling_link, "which does not exist"),
    ],
    ids=["file", "below-a-file", "dangling-symlink"],
)
def test_unusable_lake_path_fails_before_spark_starts(tmp_path, make_lake, expected):
    lake = make_lake(tmp_path)
    before = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")}
    proc = shoplake("run", "ingest", tmp=tmp_path, lake=lake)
    assert proc.returncode == EnvironmentProblem.exit_code
    line = one_error_line(proc)
    assert f"lake.root {lake}" in line and expected in line
    assert "Spark" not in proc.stderr  # refused before the JVM started
    assert {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")} == before
    if lake.is_file():
        assert lake.read_text() == "not a lake\n"


# --------------------------------------------------------- newer Delta protocol
def commit_newer_protocol(table: Path, protocol: dict) -> None:
    """Commit a protocol upgrade to ``table`` as a newer Delta writer would."""
    log = table / "_delta_log"
    version = max(int(p.stem) for p in log.glob("*.json")) + 1
    actions = [
        {"commitInfo": {"timestamp": 1767225600000, "operation": "UPGRADE PROTOCOL", "engineInfo": "future"}},
        {"protocol": protocol},
    ]
    (log / f"{version:020d}.json").write_text("".join(json.dumps(a) + "\n" for a in actions))


def last_run(lake: Path) -> dict:
    from deltalake import DeltaTable

    run_log = DeltaTable(str(lake / ALL_TABLES["ops.run_log"].relative_path())).to_pyarrow_table().to_pylist()
    return max(run_log, key=lambda r: r["started_at"])


def test_table_with_newer_protocol_is_refused_before_any_write(ingested):
    tmp, lake = ingested
    # bronze.orders is written after bronze.customers and .events: refusing it when
    # its turn comes would leave those written.
    commit_newer_protocol(lake / BRONZE_ORDERS.relative_path(), {"minReaderVersion": 4, "minWriterVersion": 8})
    add_landing_files(tmp, seed=11)  # there is something to write
    before = lake_files(lake)

    proc = shoplake("run", "ingest", tmp=tmp, lake=lake)

    assert proc.returncode == UnsupportedTableProtocol.exit_code, proc.stderr
    line = one_error_line(proc)
    assert "bronze.orders" in line and "newer Delta writer" in line
    assert "Unsupported minimum reader version 4" in line
    assert lake_files(lake) == before
    assert last_run(lake)["status"] == "failed" and "bronze.orders" in last_run(lake)["error"]


# The same refusal in-process (no JVM to start) for the protocol's other ways of
# asking for a newer engine: table features this ShopLake does not know.
@pytest.mark.parametrize(
    ("protocol", "named"),
    [
        ({"minReaderVersion": 1, "minWriterVersion": 7, "writerFeatures": ["futureWrites"]}, "['futureWrites']"),
        (
            {"minReaderVersion": 3, "minWriterVersion": 7, "readerFeatures": ["x"], "writerFeatures": ["x"]},
            "Feature 'x' is not supported",
        ),
    ],
    ids=["unknown-writer-feature", "unknown-reader-feature"],
)
def test_unknown_table_features_are_refused_before_any_write(spark, ingested, protocol, named):
    tmp, lake = ingested
    commit_newer_protocol(lake / BRONZE_ORDERS.relative_path(), protocol)
    add_landing_files(tmp, seed=11)
    before = lake_files(lake)
    with pytest.raises(UnsupportedTableProtocol) as refused:
        run_job(spark, make_config(tmp), "ingest")
    assert str(refused.value).startswith("bronze.orders: ") and named in str(refused.value)
    assert lake_files(lake) == before
    assert last_run(lake)["status"] == "failed"


# -------------------------------------------------------------------- disk full
# Run the real CLI with the Delta log write failing as on a full disk: the data
# files are already moved into the table folder when the commit fails.
# __file__: under `python -c` the main module has none, and pyspark.sql.connect (imported by
# Great Expectations when validate_all reads the quality rules) then takes the process for a
# doctest run and exits 0 before the job starts.
ENOSPC_PRELUDE = """
__file__ = "<enospc prelude>"
import errno, sys
from deltalake import DeltaTable

def full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "_delta_log")

DeltaTable.create_write_transaction = full_disk
from shoplake.cli import main
main(["run", "ingest", *sys.argv[1:]])
"""


def test_disk_full_mid_commit_leaves_the_old_version_and_a_rerun_completes(spark, ingested):
    tmp, lake = ingested
    manifest = add_landing_files(tmp, seed=12)
    before = lake_files(lake)

    proc = shoplake(tmp=tmp, lake=lake, prelude=ENOSPC_PRELUDE)

    assert proc.returncode == DiskFull.exit_code, proc.stderr
    line = one_error_line(proc)
    assert "disk full" in line and "free space and re-run" in line and "bronze." in line
    assert lake_files(lake) == before  # no uncommitted data file, no staging folder left behind

    # Space is back: the re-run loads the new files, once.
    result = run_job(spark, make_config(tmp), "ingest")
    assert result.row_counts["records_in"] == sum(manifest["records_expected"].values())
    assert_no_duplicates(read_all(lake))


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if proc.returncode != 0:
        reason = proc.stderr.decode().strip()
        pytest.skip(f"cannot mount a small tmpfs here ({reason}); the failing-writer test covers disk full")


def test_real_full_file_system_changes_nothing_and_a_rerun_completes(spark, ingested_once, tmp_path):
    """A real 32 MB tmpfs filled up to the last pages: Spark's Parquet write hits ENOSPC."""
    mount = tmp_path / "fs"
    _mount_tmpfs(mount, "32m")
    try:
        lake = mount / "lake"
        shutil.copytree(ingested_once / "landing", tmp_path / "landing")
        shutil.copytree(ingested_once / "lake", lake)
        cfg = make_config(tmp_path, f"lake.root={lake}")
        manifest = add_landing_files(tmp_path, seed=13)
        ballast = mount / "ballast"
        free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
        with open(ballast, "wb") as handle:  # leave two pages free
            handle.write(b"\0" * (free - 8192))
        before = lake_files(lake)

        proc = shoplake("run", "ingest", tmp=tmp_path, lake=lake)

        assert proc.returncode == DiskFull.exit_code, proc.stderr
        assert "disk full" in one_error_line(proc)
        assert lake_files(lake) == before

        ballast.unlink()  # free the space
        result = run_job(spark, cfg, "ingest")
        assert result.row_counts["records_in"] == sum(manifest["records_expected"].values())
        assert_no_duplicates(read_all(lake))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
