"""bench/compare_lakes.py: two lakes' tables compared row for row, without Spark."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
from deltalake import write_deltalake

PROJECT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare_lakes", PROJECT / "bench" / "compare_lakes.py")
compare_lakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_lakes)


def write(lake: Path, name: str, rows: list[dict]) -> None:
    write_deltalake(str(lake / "gold" / name), pa.Table.from_pylist(rows))


def test_same_rows_in_another_order_and_other_model_versions_are_the_same(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "scores", [{"k": 1, "p": 0.1 + 0.2, "model_version": 3}, {"k": 2, "p": 0.5, "model_version": 3}])
    write(b, "scores", [{"k": 2, "p": 0.5, "model_version": 4}, {"k": 1, "p": 0.3, "model_version": 4}])
    assert compare_lakes.main([str(a), str(b)]) == 0
    assert compare_lakes.compare(a, b, ["gold"], set(), 9)[0].startswith("DIFF gold.scores: 2 -> 2 rows")


def test_a_changed_value_a_lost_duplicate_and_a_missing_table_are_differences(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "rules", [{"k": 1, "lift": 1.25}, {"k": 1, "lift": 1.25}])
    write(b, "rules", [{"k": 1, "lift": 1.25}])
    write(a, "bundles", [{"k": 1, "lift": 2.0}])
    write(b, "bundles", [{"k": 1, "lift": 2.001}])
    write(a, "only_before", [{"k": 1}])
    lines = compare_lakes.compare(a, b, ["gold"], set(), 9)
    assert lines == [
        "DIFF gold.bundles: 1 -> 1 rows, 1 only before, 1 only after; e.g. {'k': 1, 'lift': 2.0}",
        "DIFF gold.only_before: only in before",
        "DIFF gold.rules: 2 -> 1 rows, 1 only before, 0 only after; e.g. {'k': 1, 'lift': 1.25}",
    ]
    assert compare_lakes.main([str(a), str(b)]) == 1
