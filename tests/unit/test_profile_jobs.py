"""bench/profile_jobs.py: the event log and py-spy stacks summarised per job, on hand-made input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("profile_jobs", PROJECT / "bench" / "profile_jobs.py")
profile_jobs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(profile_jobs)


def test_covered_seconds_counts_overlapping_jobs_once():
    # 0-4 s and 2-6 s overlap (6 s together), 10-11 s apart, 10.5-10.8 inside it.
    intervals = [(2000, 6000), (0, 4000), (10_000, 11_000), (10_500, 10_800)]
    assert profile_jobs.covered_seconds(intervals) == pytest.approx(7.0)
    assert profile_jobs.covered_seconds([]) == 0.0


def _events() -> list[dict]:
    def start(job, at, group, site, stages):
        props = {"spark.jobGroup.id": group, "callSite.short": site}
        return {"Event": "SparkListenerJobStart", "Job ID": job, "Submission Time": at, "Stage IDs": stages,
                "Properties": props}  # fmt: skip

    def task(stage, run_ms, shuffle_written=0):
        metrics = {"Executor Run Time": run_ms, "Input Metrics": {"Bytes Read": 1024 * 1024},
                   "Shuffle Write Metrics": {"Shuffle Bytes Written": shuffle_written}}  # fmt: skip
        return {"Event": "SparkListenerTaskEnd", "Stage ID": stage, "Task Metrics": metrics}

    return [
        start(0, 1000, "clean", "count at gate.py:10", [0]),
        task(0, 500),
        task(0, 700),
        {"Event": "SparkListenerStageCompleted", "Stage Info": {"Stage ID": 0}},
        {"Event": "SparkListenerJobEnd", "Job ID": 0, "Completion Time": 3000},
        start(1, 3500, "clean", "count at gate.py:10", [1, 2]),  # stage 2 skipped: never completes
        task(1, 300, shuffle_written=2 * 1024 * 1024),
        {"Event": "SparkListenerStageCompleted", "Stage Info": {"Stage ID": 1}},
        {"Event": "SparkListenerJobEnd", "Job ID": 1, "Completion Time": 4500},
        start(2, 5000, "recommend", "fit at als.py:3", [3]),
        {"Event": "SparkListenerJobEnd", "Job ID": 2, "Completion Time": 9000},
    ]


def test_event_log_totals_and_costliest_call_sites_per_job(tmp_path):
    # Spark 4 writes a rolling log: a folder of events_<n>_<app> files, read in order.
    folder = tmp_path / "eventlog_v2_local-1"
    folder.mkdir()
    lines = [json.dumps(e) for e in _events()]
    (folder / "events_2_local-1").write_text("\n".join(lines[5:]) + "\n")
    (folder / "events_1_local-1").write_text("\n".join(lines[:5]) + "\n")
    (folder / "appstatus_local-1").write_text("")
    groups = profile_jobs.read_event_log(str(folder))
    assert set(groups) == {"clean", "recommend"}

    window = {"job": "clean", "start_ms": 0, "end_ms": 10_000}
    clean = profile_jobs.job_summary(window, groups["clean"])
    assert (clean["wall_s"], clean["spark_s"], clean["driver_only_s"]) == (10.0, 3.0, 7.0)
    assert (clean["spark_jobs"], clean["stages"], clean["tasks"]) == (2, 2, 3)
    assert clean["task_s"] == pytest.approx(1.5)
    assert (clean["input_mb"], clean["shuffle_write_mb"]) == (3.0, 2.0)
    assert clean["top_sites"] == [{"site": "count at gate.py:10", "jobs": 2, "s": 3.0}]
    assert profile_jobs.job_summary({"job": "basket", "start_ms": 0, "end_ms": 500}, None)["spark_jobs"] == 0


def test_py_spy_samples_go_to_the_job_and_its_deepest_project_frame(tmp_path, monkeypatch):
    monkeypatch.setattr(profile_jobs, "PROJECT_ROOT", Path("/p"))
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "main (/p/shoplake/registry.py:5);run (/p/jobs/clean/job.py:20);validate_table (/p/common/quality/gate.py:70);"
        "run (/venv/great_expectations/v.py:9) 30\n"
        "main (/p/shoplake/registry.py:5);run (/p/jobs/clean/job.py:21) 10\n"
        "main (/p/shoplake/registry.py:5);run (/p/jobs/basket.py:8) 4\n"
        "main (/p/shoplake/registry.py:5);sleep (/venv/x.py:1) 99\n"
    )
    stacks = profile_jobs.read_py_spy(raw, ["clean", "basket"])
    assert stacks["clean"] == {
        "validate_table (common/quality/gate.py:70)": 30,
        "run (jobs/clean/job.py:21)": 10,
    }
    assert stacks["basket"] == {"run (jobs/basket.py:8)": 4}
