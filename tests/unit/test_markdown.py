"""The Markdown table renderer (common.markdown)."""

from __future__ import annotations

from common import markdown


def test_table_lines():
    assert markdown.table(["a", "b"], [[1, None], ["x|y", 2.5]]) == [
        "| a | b |",
        "|---|---|",
        "| 1 |  |",
        "| x\\|y | 2.5 |",
    ]


def test_dict_table_leaves_missing_keys_empty():
    assert markdown.dict_table([{"a": 1}], ["a", "b"]) == ["| a | b |", "|---|---|", "| 1 |  |"]
