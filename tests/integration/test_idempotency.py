"""Every registered job, run twice in a row, leaves every table's content identical.

Parametrised over the job registry, so a new job is covered the day it is added:
the lake is prepared by the jobs before it in the pipeline, then the job runs
twice and every table (the run log aside) is compared row for row.
"""

from __future__ import annotations

from datetime import date

import pytest

from common.tables import ALL_TABLES
from jobs.generate import generate
from jobs.registry import JOBS, PIPELINE, run_job
from tests.conftest import make_config


def snapshot(store) -> dict[str, list[tuple]]:
    tables = {}
    for name, spec in ALL_TABLES.items():
        if name != "ops.run_log" and store.exists(spec):
            tables[name] = sorted(map(tuple, store.read(spec).collect()), key=repr)
    return tables


@pytest.fixture(scope="module")
def landing(tmp_path_factory):
    folder = tmp_path_factory.mktemp("idempotency-landing")
    generate(folder, users=80, days=4, seed=3, start_date=date(2024, 2, 1))
    return folder


@pytest.mark.parametrize("job", list(JOBS))
def test_running_a_job_twice_changes_no_table(job, spark, landing, tmp_path, secret_env):
    from common.delta import open_store

    cfg = make_config(tmp_path, f"landing.root={landing}")
    store = open_store(spark, cfg)
    for earlier in PIPELINE[: PIPELINE.index(job)]:
        run_job(spark, cfg, earlier)
    run_job(spark, cfg, job)
    first = snapshot(store)
    run_job(spark, cfg, job)
    second = snapshot(store)
    assert first, f"{job} wrote no table"
    assert second.keys() == first.keys()
    for name in first:
        assert second[name] == first[name], f"{job} twice changed {name}"
