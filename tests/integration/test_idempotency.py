"""Every registered job, run twice in a row, leaves every table's content identical.

Parametrised over the job registry, so a new job is covered the day it is added.
One tiny lake goes through the pipeline once: each job runs, the lake is
snapshotted, the job runs again at once, and every table (the run log aside) is
compared row for row. Running each job twice in pipeline order proves the same as
rebuilding the lake for every job, for a fraction of the time.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from common.tables import ALL_TABLES
from shoplake.generate import generate
from shoplake.registry import JOBS, PIPELINE, run_job
from tests.conftest import TEST_BACKEND, TEST_SECRET, make_config, requires_delta_spark


def snapshot(store, known: dict[tuple[str, int], list[tuple]] | None = None) -> dict[str, list[tuple]]:
    """Every table's sorted rows (the run log aside). ``known`` caches rows by (table,
    Delta version): a table without a new commit has the rows it had, so only the
    tables a run committed to are read again (the suite snapshots 40 tables 16 times)."""
    known = {} if known is None else known
    tables = {}
    for name, spec in ALL_TABLES.items():
        if name != "ops.run_log" and store.exists(spec):
            key = (name, store.version(spec))
            if key not in known:
                known[key] = sorted(map(tuple, store.read(spec).collect()), key=repr)
            tables[name] = known[key]
    return tables


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("idempotency")
    generate(folder / "landing", users=80, days=4, seed=3, start_date=date(2024, 2, 1))
    return folder / "landing"


def run_pipeline_jobs(spark, cfg, after_each=None) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
        for job in PIPELINE:
            run_job(spark, cfg, job)
            if after_each:
                after_each(job)


@pytest.fixture(scope="module")
def twice(spark, landing, tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """job -> (tables after its first run, tables after its second run), on the test
    backend (delta-rs unless SHOPLAKE_TEST_BACKEND says otherwise)."""
    from common.delta import open_store

    cfg = make_config(tmp_path_factory.mktemp("twice"), f"landing.root={landing}")
    store = open_store(spark, cfg)
    outcome = {}
    known: dict[tuple[str, int], list[tuple]] = {}

    def again(job: str) -> None:
        first = snapshot(store, known)
        run_job(spark, cfg, job)
        outcome[job] = (first, snapshot(store, known))

    run_pipeline_jobs(spark, cfg, after_each=again)
    return outcome


@pytest.mark.parametrize("job", list(JOBS))
def test_running_a_job_twice_changes_no_table(job, twice):
    assert job in PIPELINE, f"{job} is registered but not in the pipeline, so nothing runs it twice here"
    first, second = twice[job]
    before = twice[PIPELINE[PIPELINE.index(job) - 1]][1] if PIPELINE.index(job) else {}
    assert first != before, f"{job} wrote no table"
    assert second.keys() == first.keys()
    for name in first:
        assert second[name] == first[name], f"{job} twice changed {name}"


# The deterministic tables of issue 17 (item 7); ingest's run id and clock aside.
SAME_ON_EVERY_BACKEND = [
    *(n for n in ALL_TABLES if n.startswith(("bronze.", "silver.")) and n != "bronze.ingested_files"),
    "gold.profiles",
    "gold.association_rules",
    "gold.cross_sell",
    "gold.audiences",
]
RUN_SPECIFIC = {"_ingest_run_id", "_ingested_at"}


@requires_delta_spark
def test_the_pipeline_writes_the_same_tables_on_the_other_backend(spark, landing, twice, tmp_path):
    """Every job on the same landing files through the other Delta engine (delta-spark
    when the suite runs on delta-rs): the deterministic tables are equal row for row."""
    from common.delta import open_store

    other = "delta-spark" if TEST_BACKEND == "delta-rs" else "delta-rs"
    cfg = make_config(tmp_path, f"landing.root={landing}", f"lake.backend={other}")
    run_pipeline_jobs(spark, cfg)
    store = open_store(spark, cfg)
    assert store.backend == other
    reference = twice[PIPELINE[-1]][1]

    for name in SAME_ON_EVERY_BACKEND:
        spec = ALL_TABLES[name]
        kept = [i for i, c in enumerate(spec.columns) if c not in RUN_SPECIFIC]
        ours = sorted((tuple(row[i] for i in kept) for row in store.read(spec).collect()), key=repr)
        theirs = sorted((tuple(row[i] for i in kept) for row in reference[name]), key=repr)
        assert ours == theirs, f"{name} differs between {TEST_BACKEND} and {other}"
    assert any(reference[name] for name in ("gold.association_rules", "gold.audiences")), "nothing to compare"
