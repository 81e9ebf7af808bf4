"""Markdown for the jobs' reports: one table renderer."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def cell(value: Any) -> str:
    """A value as table cell text: ``""`` for None, ``str`` otherwise, ``|`` escaped."""
    return ("" if value is None else str(value)).replace("|", "\\|")


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """The lines of a Markdown table: header, rule and one line per row (cells through :func:`cell`)."""
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def dict_table(rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> list[str]:
    """:func:`table` of dict rows, one column per key in ``columns`` (a missing key is empty)."""
    return table(columns, ([r.get(c) for c in columns] for r in rows))
