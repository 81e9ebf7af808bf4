"""Spark's query progress reports -> ops.stream_progress rows (jobs.stream.batch_progress),
on reports shaped like those PySpark's ``StreamingQuery.recentProgress`` returns."""

from __future__ import annotations

from datetime import datetime

from jobs.stream.progress import batch_progress

BATCH = {
    "id": "3c9d",
    "runId": "7f1e",
    "name": "stream_shop_events_bronze_events",
    "timestamp": "2024-03-01T10:00:05.250Z",
    "batchId": 3,
    "batchDuration": 1840,
    "numInputRows": 2,
    "inputRowsPerSecond": 0.4,
    "processedRowsPerSecond": 1.0869565217391304,
    "durationMs": {"addBatch": 1500, "getBatch": 12, "latestOffset": 30, "triggerExecution": 1840},
    "eventTime": {"watermark": "2024-03-01T09:50:00.000Z", "max": "2024-03-01T09:59:58.000Z"},
    "stateOperators": [{"numRowsTotal": 120, "numRowsUpdated": 7, "numRowsDroppedByWatermark": 3}, {"numRowsTotal": 5}],
    "sources": [],
    "sink": {},
}


def test_a_batch_becomes_one_row_with_utc_times():
    row = batch_progress(BATCH, "run-1", "bronze.events")
    assert row == {
        "run_id": "run-1",
        "query": "bronze.events",
        "batch_id": 3,
        "started_at": datetime(2024, 3, 1, 10, 0, 5, 250000),
        "input_rows": 2,
        "input_rows_per_second": 0.4,
        "processed_rows_per_second": 1.0869565217391304,
        "batch_duration_ms": 1840,
        "watermark": datetime(2024, 3, 1, 9, 50),
        "state_rows": 125,
        "late_rows": 3,
    }


def test_an_idle_trigger_is_not_a_batch():
    idle = {**BATCH, "numInputRows": 0, "durationMs": {"latestOffset": 3, "triggerExecution": 3}}
    assert batch_progress(idle, "run-1", "bronze.events") is None


def test_no_watermark_no_state_and_nan_rates():
    plain = {
        **BATCH,
        "eventTime": {},
        "stateOperators": [],
        "inputRowsPerSecond": float("nan"),
        "processedRowsPerSecond": float("nan"),
    }
    row = batch_progress(plain, "run-1", "bronze.quarantine")
    assert row["watermark"] is None and row["state_rows"] == 0 and row["late_rows"] == 0
    assert row["input_rows_per_second"] is None and row["processed_rows_per_second"] is None
