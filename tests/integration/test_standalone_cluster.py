"""The packaged pipeline on a real Spark standalone cluster on this machine.

A master and one worker (1 core, 1 GB) bound to 127.0.0.1 are started with
`$SPARK_HOME/bin/spark-class`, the package is built with `shoplake package`, and
`spark-submit --master spark://127.0.0.1:PORT --jars <delta-spark jars> --py-files dist/<zip>
dist/main.py pipeline --env cluster ...` runs on a small generated shop, writing through
delta-spark. Executors must import ShopLake from
the shipped zip with the venv's Python; the tables must reconcile with the
generator's manifest. The cluster's process groups are killed in a finally.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pyspark
import pytest

from common.delta import open_store
from common.delta.jars import local_delta_jars
from common.tables import ALL_TABLES, BRONZE_DATA_TABLES, GOLD_PROFILES, OPS_RUN_LOG, SILVER_CUSTOMERS, get_table
from jobs.clean.silver import SILVER_SPECS
from shoplake.generate import generate
from shoplake.package import build_dist
from tests.conftest import PROJECT_ROOT, TEST_SECRET, make_config, requires_delta_spark

# The jobs submitted to the cluster: bronze, silver and a gold job, through delta-spark.
CLUSTER_JOBS = ("ingest", "clean", "profile")
SPARK_HOME = Path(pyspark.__file__).resolve().parent
SILVER_EXPECTED = {
    "silver.events": "events",
    "silver.customers": "persons",
    "silver.user_key_map": "customers",
    "silver.products": "products",
    "silver.orders": "orders",
    "silver.order_lines": "order_lines",
    "silver.campaign_touches": "campaign_touches",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


@contextmanager
def standalone_cluster(work: Path):
    """Yield the master URL of a running master + worker; kill both process groups after."""
    work.mkdir(parents=True, exist_ok=True)
    port, ui, worker_port, worker_ui = free_port(), free_port(), free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        "SPARK_HOME": str(SPARK_HOME),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "PYSPARK_PYTHON": sys.executable,
    }
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    commands = {
        "master": [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1"]
        + ["--port", str(port), "--webui-port", str(ui)],
        "worker": [spark_class, "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}"]
        + ["--host", "127.0.0.1", "--port", str(worker_port), "--webui-port", str(worker_ui)]
        + ["--cores", "1", "--memory", "1g", "--work-dir", str(work / "worker")],
    }
    procs: dict[str, subprocess.Popen] = {}
    try:
        for name, command in commands.items():
            with open(work / f"{name}.log", "wb") as out:
                procs[name] = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True
                )
            if name == "master":
                wait_for(lambda: master_state(ui) is not None, procs, work, "the master's web UI")
        wait_for(lambda: alive_workers(master_state(ui)) == 1, procs, work, "the worker to register")
        yield f"spark://127.0.0.1:{port}", ui
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def master_state(ui: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as response:
            return json.load(response)
    except OSError:
        return None


def alive_workers(state: dict | None) -> int:
    return sum(1 for w in (state or {}).get("workers", []) if w.get("state") == "ALIVE")


def wait_for(condition, procs: dict[str, subprocess.Popen], work: Path, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = log_tail(work / f"{name}.log")
                pytest.fail(f"the {name} exited ({proc.returncode}) while waiting for {what}:\n{log}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{log_tail(work / 'worker.log')}")


@requires_delta_spark
def test_pipeline_runs_on_a_standalone_cluster_from_the_package(spark, tmp_path):
    manifest = generate(tmp_path / "landing", users=120, days=5, seed=11, start_date=date(2024, 3, 1))
    built = build_dist(tmp_path / "dist", wheel=False)
    lake = tmp_path / "lake"
    # The submitting process: the venv's Python everywhere, the secret in its
    # environment (client deploy mode), and no PYTHONPATH pointing at a checkout.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SHOPLAKE_PSEUDONYM_SECRET=TEST_SECRET,
    )
    with standalone_cluster(tmp_path / "cluster") as (master, ui):
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "spark-submit"), "--master", master, "--deploy-mode", "client"]
            + ["--conf", "spark.executor.memory=640m", "--conf", "spark.cores.max=1"]
            + ["--conf", "spark.ui.enabled=false", "--jars", ",".join(local_delta_jars(PROJECT_ROOT / "jars"))]
            + ["--py-files", str(built["zip"]), str(built["entry"])]
            + ["pipeline", "--env", "cluster", "--jobs", ",".join(CLUSTER_JOBS)]
            + ["--set", f"lake.root={lake}", "--set", f"landing.root={tmp_path / 'landing'}"]
            + ["--set", "spark.conf.spark.sql.shuffle.partitions=2"]
            + ["--set", "spark.conf.spark.databricks.delta.snapshotPartitions=2"],
            capture_output=True,
            text=True,
            timeout=1500,  # generous: a shared 2-core machine, one executor core
            env=env,
            cwd=tmp_path,
        )
        state = master_state(ui)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"master {master}" in output
    assert "Delta backend: delta-spark (lake.backend is delta-spark; delta-spark jars from the launcher" in output
    # spark-submit merges the Python driver's stderr (progress lines) into its stdout.
    n = len(CLUSTER_JOBS)
    assert [f"[{i}/{n}] {job} done in" in output for i, job in enumerate(CLUSTER_JOBS, 1)] == [True] * n
    assert f"succeeded: ran {', '.join(CLUSTER_JOBS)}" in output
    # The application really ran on the cluster's executor, and finished there.
    assert [app["name"] for app in state["completedapps"]] == ["shoplake"]

    # Driver and executor imported ShopLake from the zip (not the editable install)
    # with the venv's interpreter.
    code_line = next(line for line in output.splitlines() if "code: driver " in line)
    driver, executor = code_line.split("code: driver ")[1].split("; executors ")
    assert driver == f"{built['zip']}/common/__init__.py ({sys.executable})"
    executor_file, executor_python = executor.rsplit(" (", 1)
    assert executor_file.endswith(f"/{built['zip'].name}/common/__init__.py")
    assert str(tmp_path / "cluster" / "worker") in executor_file  # the worker's copy of the shipped zip
    assert executor_python == f"{sys.executable})"
    # conf/ came from the zip: the run used the packaged base.yaml (cwd has no conf/).
    assert not (tmp_path / "conf").exists()

    cfg = make_config(tmp_path, f"lake.root={lake}")
    store = open_store(spark, cfg)
    run_rows = store.read(OPS_RUN_LOG).collect()
    assert sorted((r["job"], r["status"]) for r in run_rows) == sorted((j, "succeeded") for j in CLUSTER_JOBS)
    assert len({r["run_id"] for r in run_rows}) == 1
    assert all(json.loads(r["parameters"])["pipeline"]["jobs"] == list(CLUSTER_JOBS) for r in run_rows)

    # Bronze: every generated record is loaded or quarantined, as planted.
    quarantine = store.read(get_table("bronze.quarantine"))
    for table, expected in manifest["records_expected"].items():
        loaded = store.read(BRONZE_DATA_TABLES[table]).count()
        assert loaded == manifest["valid_records_expected"][table], table
        assert loaded + quarantine.where(quarantine.target_table == table).count() == expected, table
    # Silver: one row per real thing, keys unique.
    for name, key in SILVER_EXPECTED.items():
        assert store.read(ALL_TABLES[name]).count() == manifest["silver_expected"][key], name
    for name, spec in SILVER_SPECS.items():
        assert store.read(spec).groupBy(*spec.keys).count().where("count > 1").count() == 0, name
    # Gold: one profile per registered customer, written by delta-spark on the cluster.
    profiles = {r["user_key"] for r in store.read(GOLD_PROFILES).select("user_key").collect()}
    customers = {r["user_key"] for r in store.read(SILVER_CUSTOMERS).select("user_key").collect()}
    assert store.read(GOLD_PROFILES).count() == len(profiles) == len(customers)
    assert profiles == customers
    for spec in (GOLD_PROFILES, SILVER_CUSTOMERS, get_table("bronze.orders")):
        first_commit = Path(store.path(spec), "_delta_log", f"{0:020d}.json").read_text()
        assert "Delta-Lake/" in first_commit, spec.name  # delta-spark's engineInfo
