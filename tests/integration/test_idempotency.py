"""Every registered job, run twice in a row, leaves every table's content identical.

Parametrised over the job registry, so a new job is covered the day it is added.
One tiny lake goes through the pipeline once: each job runs, the lake is
snapshotted, the job runs again at once, and every table (the run log aside) is
compared row for row. Running each job twice in pipeline order proves the same as
rebuilding the lake for every job, for a fraction of the time.
"""

from __future__ import annotations

from datetime import date

import pytest

from common.tables import ALL_TABLES
from jobs.generate import generate
from jobs.registry import JOBS, PIPELINE, run_job
from tests.conftest import TEST_SECRET, make_config


def snapshot(store) -> dict[str, list[tuple]]:
    tables = {}
    for name, spec in ALL_TABLES.items():
        if name != "ops.run_log" and store.exists(spec):
            tables[name] = sorted(map(tuple, store.read(spec).collect()), key=repr)
    return tables


@pytest.fixture(scope="module")
def twice(spark, tmp_path_factory) -> dict[str, tuple[dict, dict]]:
    """job -> (tables after its first run, tables after its second run)."""
    from common.delta import open_store

    folder = tmp_path_factory.mktemp("idempotency")
    generate(folder / "landing", users=80, days=4, seed=3, start_date=date(2024, 2, 1))
    cfg = make_config(folder)
    store = open_store(spark, cfg)
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    outcome = {}
    try:
        for job in PIPELINE:
            run_job(spark, cfg, job)
            first = snapshot(store)
            run_job(spark, cfg, job)
            outcome[job] = (first, snapshot(store))
    finally:
        mp.undo()
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
