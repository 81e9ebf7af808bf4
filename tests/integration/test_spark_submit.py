"""`spark-submit shoplake/main.py <job>` works and the master comes from spark-submit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from shoplake.main import to_cli_args

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_entry_maps_job_names_to_the_run_command():
    assert to_cli_args(["ingest", "--env", "cluster"]) == ["run", "ingest", "--env", "cluster"]
    assert to_cli_args(["pipeline"]) == ["pipeline"]
    assert to_cli_args(["stream", "--once"]) == ["stream", "--once"]  # a command with its own options
    assert to_cli_args([]) == ["--help"]


def test_spark_submit_runs_ingest_on_the_submitted_master(tmp_path, shared_data):
    landing = tmp_path / "landing" / "cdnow_sample"
    landing.mkdir(parents=True)
    shutil.copy(shared_data / "cdnow_sample" / "CDNOW_sample.txt", landing)
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    proc = subprocess.run(
        [
            str(spark_submit),
            "--master",
            "local[1]",
            "--conf",
            "spark.ui.enabled=false",
            str(PROJECT_ROOT / "shoplake" / "main.py"),
            "ingest",
            # local.yaml says local[2]; spark-submit's local[1] must win.
            "--set",
            f"lake.root={tmp_path / 'lake'}",
            "--set",
            f"landing.root={tmp_path / 'landing'}",
            "--set",
            "landing.sources=[cdnow]",
            "--set",
            "spark.conf.spark.sql.shuffle.partitions=2",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "6,919 records in, 6,919 loaded, 0 quarantined" in proc.stdout
    assert (tmp_path / "lake" / "bronze" / "orders" / "_delta_log").is_dir()
    assert "master local[1]" in proc.stdout + proc.stderr
