"""`shoplake pipeline`: one run id for every step, a failed step stops the run with
the resume command, and `--resume` runs only the unfinished steps with the
recorded settings, ending with the same tables as a straight run."""

from __future__ import annotations

import json
import os
from datetime import date

import pytest
from pyspark.sql import functions as F

import jobs.clean.job as clean_job
from common.delta import open_store
from common.errors import InputError
from common.runlog import JobResult
from common.tables import ALL_TABLES, BRONZE_DATA_TABLES, OPS_RUN_LOG, SILVER_EVENTS, SILVER_ORDERS
from shoplake import registry
from shoplake.cli import main
from shoplake.generate import generate
from shoplake.pipeline import ResumeRefused, resume_pipeline, run_pipeline
from shoplake.registry import JobSpec
from tests.conftest import TEST_SECRET, TEST_SPARK_CONF, make_config

# A stand-in gold step (reads the `gold` section like every gold job): it records
# the gold.as_of it ran with, and fails on demand.
PROBE = JobSpec("probe_gold", __name__, "test-only gold step", ("gold",))
PROBE_FAIL_ENV = "SHOPLAKE_TEST_PROBE_FAIL"
JOB_LIST = ["ingest", "clean", "probe_gold"]
# Provenance that names the run or the wall-clock time, so differs between two runs by design.
RUN_SPECIFIC_COLUMNS = {"_ingest_run_id", "_ingested_at", "ingest_run_id", "ingested_at"}


def run(spark, cfg, run_id, store, **_):
    if os.environ.get(PROBE_FAIL_ENV) == "1":
        raise InputError(f"probe_gold told to fail by ${PROBE_FAIL_ENV}")
    return JobResult("probe_gold", run_id, metrics={"as_of": cfg.gold.as_of.isoformat()}, summary="probe ok")


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipeline-landing")
    generate(folder, users=80, days=4, seed=3, start_date=date(2024, 2, 1))
    return folder


@pytest.fixture()
def probe(monkeypatch):
    monkeypatch.setitem(registry.JOBS, PROBE.name, PROBE)


def run_log(spark, cfg, run_id: str) -> list[tuple[str, str]]:
    rows = open_store(spark, cfg).read(OPS_RUN_LOG).where(F.col("run_id") == run_id).orderBy("finished_at").collect()
    return [(r["job"], r["status"]) for r in rows]


def recorded_parameters(spark, cfg, run_id: str, job: str) -> list[dict]:
    rows = (
        open_store(spark, cfg)
        .read(OPS_RUN_LOG)
        .where((F.col("run_id") == run_id) & (F.col("job") == job))
        .orderBy("finished_at")
        .collect()
    )
    return [json.loads(r["parameters"]) for r in rows]


def tables(spark, cfg) -> dict[str, list[tuple]]:
    store = open_store(spark, cfg)
    out = {}
    for name, spec in ALL_TABLES.items():
        if name != "ops.run_log" and store.exists(spec):
            df = store.read(spec)
            df = df.drop(*[c for c in df.columns if c in RUN_SPECIFIC_COLUMNS])
            out[name] = sorted(map(tuple, df.collect()), key=repr)
    return out


def last_data_day(spark, cfg) -> date:
    store = open_store(spark, cfg)
    days = [
        store.read(SILVER_EVENTS).agg(F.max(F.to_date("event_time"))).first()[0],
        store.read(SILVER_ORDERS).agg(F.max(F.to_date("order_time"))).first()[0],
    ]
    return max(days)


def _clean_fails_through_the_cli(spark, cfg, landing, lake, capsys) -> tuple[str, dict]:
    """Step 1 of the resume test: ``shoplake pipeline`` stops at clean with one error line that
    says how to resume; ingest's work stays. The run id and bronze's versions."""
    sets = [a for o in TEST_SPARK_CONF for a in ("--set", o)]
    with pytest.raises(SystemExit) as exit_info:
        lake_and_landing = ["--set", f"lake.root={lake}", "--set", f"landing.root={landing}"]
        main(["pipeline", "--jobs", ",".join(JOB_LIST), *sets, *lake_and_landing])
    err = capsys.readouterr().err
    assert exit_info.value.code == 4  # InputError's code, not a generic 1
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    message = error_lines[0]
    run_id = message.split("pipeline run ")[1].split()[0]
    assert "stopped at step 2/3 (clean): InputError: bronze.customers: simulated failure inside clean" in message
    assert message.endswith(f"resume with `shoplake pipeline --resume {run_id}` (finished steps are not redone)")
    assert "[1/3] ingest ..." in err and "[1/3] ingest done in" in err and "[2/3] clean FAILED in" in err
    assert run_log(spark, cfg, run_id) == [("ingest", "succeeded"), ("clean", "failed")]
    store = open_store(spark, cfg)
    bronze_versions = {name: store.version(spec) for name, spec in BRONZE_DATA_TABLES.items()}
    assert any(v is not None for v in bronze_versions.values())
    return run_id, bronze_versions


def _assert_clean_row_records_versions(store, run_id: str, bronze_versions: dict) -> None:
    """The resumed clean's run-log row: versions read are bronze's current ones, versions
    written silver's current ones, row counts silver's."""
    clean_row = (
        store.read(OPS_RUN_LOG)
        .where((F.col("run_id") == run_id) & (F.col("job") == "clean") & (F.col("status") == "succeeded"))
        .first()
    )
    assert clean_row["input_versions"] == {
        name: v for name, v in bronze_versions.items() if name in clean_row["input_versions"]
    }
    assert "bronze.customers" in clean_row["input_versions"]
    assert clean_row["output_versions"]["silver.customers"] == store.version(ALL_TABLES["silver.customers"])
    silver_rows = store.read(ALL_TABLES["silver.customers"]).count()
    assert clean_row["row_counts"]["silver.customers"] == silver_rows


def test_failed_step_stops_the_run_and_resume_finishes_only_the_rest(
    spark, landing, tmp_path, monkeypatch, capsys, probe
):
    cfg = make_config(tmp_path / "resumed", f"landing.root={landing}")
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    # A missing secret is refused before any step runs (tests/integration/test_env_errors.py),
    # so clean is made to fail from inside instead.
    real_build_silver = clean_job.build_silver

    def failing_build_silver(*args, **kwargs):
        raise InputError("bronze.customers: simulated failure inside clean")

    monkeypatch.setattr(clean_job, "build_silver", failing_build_silver)

    # 1. Through the CLI: clean fails, ingest's work stays.
    run_id, bronze_versions = _clean_fails_through_the_cli(spark, cfg, landing, tmp_path / "resumed" / "lake", capsys)
    store = open_store(spark, cfg)

    # 2. Clean fixed, but the gold step fails: clean runs, ingest does not.
    monkeypatch.setattr(clean_job, "build_silver", real_build_silver)
    monkeypatch.setenv(PROBE_FAIL_ENV, "1")
    with pytest.raises(Exception, match=rf"stopped at step 3/3 \(probe_gold\).*--resume {run_id}`"):
        resume_pipeline(spark, cfg, run_id)
    pinned = recorded_parameters(spark, cfg, run_id, "probe_gold")[0]["gold"]["as_of"]
    assert pinned == last_data_day(spark, cfg).isoformat()

    # 3. Fixed: only the gold step runs, with the date pinned by the first attempt.
    monkeypatch.delenv(PROBE_FAIL_ENV)
    result = resume_pipeline(spark, cfg, run_id)
    assert [(s.name, s.status) for s in result.steps] == [
        ("ingest", "skipped"),
        ("clean", "skipped"),
        ("probe_gold", "succeeded"),
    ]
    assert result.steps[-1].result.metrics == {"as_of": pinned}
    assert run_log(spark, cfg, run_id) == [
        ("ingest", "succeeded"),
        ("clean", "failed"),
        ("clean", "succeeded"),
        ("probe_gold", "failed"),
        ("probe_gold", "succeeded"),
    ]
    assert {name: store.version(spec) for name, spec in BRONZE_DATA_TABLES.items()} == bronze_versions
    steps = [p["pipeline"]["step"] for p in recorded_parameters(spark, cfg, run_id, "clean")]
    assert steps == [2, 2]
    _assert_clean_row_records_versions(store, run_id, bronze_versions)

    # 4. A straight run on another lake ends with the same tables.
    straight_cfg = make_config(tmp_path / "straight", f"landing.root={landing}")
    straight = run_pipeline(spark, straight_cfg, JOB_LIST)
    assert [s.status for s in straight.steps] == ["succeeded"] * 3
    assert {job for job, _ in run_log(spark, straight_cfg, straight.run_id)} == set(JOB_LIST)
    assert tables(spark, cfg) == tables(spark, straight_cfg)

    # 5. Refusals: a finished run, an unknown run id, a different configuration.
    with pytest.raises(ResumeRefused, match="every step succeeded; nothing to resume"):
        resume_pipeline(spark, straight_cfg, straight.run_id)
    with pytest.raises(ResumeRefused, match="unknown run id"):
        resume_pipeline(spark, cfg, "pipeline-20240101T000000Z-deadbeef")
