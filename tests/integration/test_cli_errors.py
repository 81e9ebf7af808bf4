"""Failures end with one clear line on stderr, a non-zero exit code, and no data change."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from common.tables import ALL_TABLES
from shoplake.registry import run_job
from tests.conftest import PROJECT_ROOT, SUBPROCESS_SPARK_CONF, make_config

SHOPLAKE = [sys.executable, "-m", "shoplake.cli"]


def shoplake(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SHOPLAKE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parents[2],
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def versions(store) -> dict[str, int | None]:
    return {name: store.version(spec) for name, spec in ALL_TABLES.items() if name != "ops.run_log"}


@pytest.fixture()
def lake_with_data(spark, tmp_path, shared_data):
    """A lake holding the CDNOW preset, and a landing copy we can break."""
    from common.delta import open_store

    landing = tmp_path / "landing"
    (landing / "cdnow_sample").mkdir(parents=True)
    shutil.copy(shared_data / "cdnow_sample" / "CDNOW_sample.txt", landing / "cdnow_sample" / "a.txt")
    cfg = make_config(tmp_path, "landing.sources=[cdnow]")
    run_job(spark, cfg, "ingest")
    return tmp_path, open_store(spark, cfg)


def cli_sets(tmp_path: Path) -> list[str]:
    args = []
    for item in [
        *SUBPROCESS_SPARK_CONF,
        f"lake.root={tmp_path / 'lake'}",
        f"landing.root={tmp_path / 'landing'}",
        "landing.sources=[cdnow]",
    ]:
        args += ["--set", item]
    return args


def test_broken_config_names_the_key(tmp_path):
    proc = shoplake("run", "ingest", *cli_sets(tmp_path), "--set", "ingest.max_quarantine_shar=0.1")
    assert proc.returncode == 2
    assert "ingest.max_quarantine_shar: unknown key" in one_error_line(proc)
    assert not (tmp_path / "lake").exists()


def conf_with(tmp_path: Path, name: str, old: str, new: str) -> tuple[Path, Path]:
    """A copy of conf/ with one edit in ``name``; returns (conf folder, edited file)."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    path = conf / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return conf, path


@pytest.mark.parametrize(
    "old,new,key",
    [
        ("clv_top_share:", "clv_top_shar:", "campaigns.0.select.clv_top_shar: unknown key"),
        ("    channel: email\n", "    channel: email\n    chanel: sms\n", "campaigns.0.chanel: unknown key"),
    ],
)
def test_campaign_typo_stops_the_pipeline_before_any_job(tmp_path, old, new, key):
    conf, path = conf_with(tmp_path, "campaigns.yaml", old, new)
    proc = shoplake("pipeline", "--conf-dir", str(conf), *cli_sets(tmp_path), env={"SHOPLAKE_PSEUDONYM_SECRET": "x"})
    assert proc.returncode == 2, proc.stderr
    line = one_error_line(proc)
    assert f"({path}): {key}" in line, line
    # Nothing started: no Spark session (it logs its version), no job, no run log, no lake.
    assert "Spark" not in proc.stderr and "[1/" not in proc.stderr and not proc.stdout
    assert not (tmp_path / "lake").exists()


def test_tags_typo_stops_a_single_job_that_does_not_read_them(tmp_path):
    conf, path = conf_with(tmp_path, "tags.yaml", "tags:", "tag:")
    proc = shoplake("run", "ingest", "--conf-dir", str(conf), *cli_sets(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert f"({path}): tags: Field required; tag: unknown key" in one_error_line(proc)
    assert "Spark" not in proc.stderr and not (tmp_path / "lake").exists()


def test_unknown_job_is_refused(tmp_path):
    proc = shoplake("run", "ingestt")
    assert proc.returncode != 0 and "ingestt" in proc.stderr


def test_missing_landing_folder_changes_nothing(lake_with_data):
    tmp_path, store = lake_with_data
    before = versions(store)
    shutil.rmtree(tmp_path / "landing" / "cdnow_sample")
    proc = shoplake("run", "ingest", *cli_sets(tmp_path))
    assert proc.returncode == 4
    assert "landing folder" in one_error_line(proc) and "cdnow_sample" in proc.stderr
    assert versions(store) == before
    last = store.read(ALL_TABLES["ops.run_log"]).orderBy("started_at", ascending=False).first()
    assert last.status == "failed" and "does not exist" in last.error


def test_unreadable_file_changes_nothing(lake_with_data):
    tmp_path, store = lake_with_data
    before = versions(store)
    # Root reads any mode, so make the file unreadable for everyone: a dangling link.
    (tmp_path / "landing" / "cdnow_sample" / "b.txt").symlink_to(tmp_path / "gone.txt")
    proc = shoplake("run", "ingest", *cli_sets(tmp_path))
    assert proc.returncode == 4
    assert "b.txt" in one_error_line(proc)
    assert versions(store) == before
