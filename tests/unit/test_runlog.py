"""Reading ops.run_log back (common.runlog) on a tiny hand-made log."""

from __future__ import annotations

from datetime import datetime

from common import runlog
from common.tables import OPS_RUN_LOG


def _row(run_id, job, status, minute, parameters='{"a": 1}', metrics=None):
    at = datetime(2024, 3, 1, 8, minute)
    return (run_id, job, "local", status, at, at, 1.0, parameters, {}, {"t": 2}, {}, metrics, None)


class _Store:
    def __init__(self, df):
        self.df = df

    def exists(self, spec):
        return spec is OPS_RUN_LOG

    def read(self, spec):
        return self.df


def _store(spark):
    rows = [
        _row("r1", "ingest", "succeeded", 0, metrics='{"files": 3}'),
        _row("r1", "clean", "failed", 1),
        _row("r2", "clean", "succeeded", 5, parameters="not json", metrics='{"kept": 9}'),
        _row("r3", "forget", "succeeded", 9),
    ]
    return _Store(spark.createDataFrame(rows, OPS_RUN_LOG.schema))


def test_parse_json_keeps_what_it_cannot_read():
    assert runlog.parse_json(None) == {}
    assert runlog.parse_json('{"x": [1]}') == {"x": [1]}
    assert runlog.parse_json("oops") == {"unparsed": "oops"}


def test_run_steps_in_order_with_json_parsed(spark):
    steps = runlog.run_steps(_store(spark), "r1")
    assert [(s.job, s.status) for s in steps] == [("ingest", "succeeded"), ("clean", "failed")]
    assert steps[0].parameters == {"a": 1} and steps[0].metrics == {"files": 3}
    assert steps[0].output_versions == {"t": 2} and steps[0].run_id == "r1"
    assert runlog.run_steps(_store(spark), "nope") == []


def test_latest_run_filters(spark):
    store = _store(spark)
    assert runlog.latest_run(store).run_id == "r3"
    assert runlog.latest_run(store, exclude_jobs=["forget"]).run_id == "r2"
    clean = runlog.latest_run(store, jobs=["clean"], status="succeeded")
    assert clean.metrics == {"kept": 9} and clean.parameters == {"unparsed": "not json"}
    assert runlog.latest_run(store, jobs=["clean"], started_by=datetime(2024, 3, 1, 8, 2)).status == "failed"
    assert runlog.latest_run(store, jobs=["segment"]) is None
    assert runlog.recent_run_ids(store, 2) == ["r3", "r2"]
