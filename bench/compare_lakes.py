"""Compare the tables of two lakes row for row: did a change keep the outputs?

    python bench/compare_lakes.py LAKE_BEFORE LAKE_AFTER [--layers gold] [--ignore model_version]

Each Delta table at its latest version is read with delta-rs (no Spark), the
ignored columns (run-specific: which model version or run wrote a row) are
dropped, and the rows are compared as a multiset (order does not matter; floats
to ``--digits`` decimals, so a different summation order is not a change).
Prints one line per table and exits 1 when any table differs or exists on one
side only. Used for issue #18's "every gold table has the same content before
and after" check: build the sample shop at two commits, then compare.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from deltalake import DeltaTable

DEFAULT_IGNORE = ("model_version",)


def tables_in(lake: Path, layers: list[str]) -> dict[str, Path]:
    """``<layer>.<table>`` -> folder, for every Delta table of the given layers."""
    found = {}
    for layer in layers:
        for log in sorted((lake / layer).glob("*/_delta_log")):
            found[f"{layer}.{log.parent.name}"] = log.parent
    return found


def _cell(value, digits: int):
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, list):
        return tuple(_cell(v, digits) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _cell(v, digits)) for k, v in value.items()))
    return value


def rows_of(path: Path, ignore: set[str], digits: int) -> tuple[list[str], Counter]:
    table = DeltaTable(str(path)).to_pyarrow_table()
    columns = [c for c in table.column_names if c not in ignore]
    rows = Counter(tuple(_cell(r[c], digits) for c in columns) for r in table.select(columns).to_pylist())
    return columns, rows


def compare(before: Path, after: Path, layers: list[str], ignore: set[str], digits: int) -> list[str]:
    """One line per table; lines of tables that differ start with ``DIFF``."""
    left, right = tables_in(before, layers), tables_in(after, layers)
    lines = []
    for name in sorted(set(left) | set(right)):
        if name not in left or name not in right:
            lines.append(f"DIFF {name}: only in {'after' if name in right else 'before'}")
            continue
        cols_a, rows_a = rows_of(left[name], ignore, digits)
        cols_b, rows_b = rows_of(right[name], ignore, digits)
        if cols_a != cols_b:
            lines.append(f"DIFF {name}: columns {cols_a} -> {cols_b}")
        elif rows_a != rows_b:
            gone, new = rows_a - rows_b, rows_b - rows_a
            example = next(iter(gone or new))
            lines.append(
                f"DIFF {name}: {sum(rows_a.values())} -> {sum(rows_b.values())} rows, "
                f"{sum(gone.values())} only before, {sum(new.values())} only after; e.g. {dict(zip(cols_a, example))}"
            )
        else:
            lines.append(f"same {name}: {sum(rows_a.values())} rows")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--layers", default="gold", help="comma-separated layers [gold]")
    parser.add_argument("--ignore", default=",".join(DEFAULT_IGNORE), help="comma-separated columns to leave out")
    parser.add_argument("--digits", type=int, default=9, help="decimals floats are compared to [9]")
    args = parser.parse_args(argv)
    ignore = set(filter(None, args.ignore.split(",")))
    lines = compare(args.before, args.after, args.layers.split(","), ignore, args.digits)
    print("\n".join(lines))
    return 1 if any(line.startswith("DIFF") for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
