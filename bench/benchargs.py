"""Command-line options shared by the per-scale bench scripts (run as
``python bench/<script>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def bench_parser(doc: str, *, runs: int, seed: int) -> argparse.ArgumentParser:
    """``--scale USERSxDAYS`` (repeatable), ``--runs``, ``--seed`` and ``--out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--scale", action="append", default=[], help="USERSxDAYS (repeatable)")
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--seed", type=int, default=seed)
    parser.add_argument("--out", default=None, help="Markdown file to write the results to")
    return parser


def scales_of(args: argparse.Namespace, default: list[str]) -> list[tuple[int, int]]:
    """The ``--scale`` values (or ``default``) as (users, days) pairs."""
    return [tuple(int(x) for x in s.split("x")) for s in (args.scale or default)]


def run_scales(spark, run_scale, scales: list[tuple[int, int]], args: argparse.Namespace, name: str) -> list[dict]:
    """``run_scale(spark, users, days, runs, seed, work)`` for every scale, in one temporary
    folder removed afterwards; the rows of every run."""
    work = Path(tempfile.mkdtemp(prefix=f"shoplake-{name}-bench-"))
    try:
        return [r for users, days in scales for r in run_scale(spark, users, days, args.runs, args.seed, work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)


def per_scale(rows: list[dict], scales: list[tuple[int, int]], describe) -> list[str]:
    """One Markdown bullet per scale: ``- users=U, days=D: <describe(that scale's rows)>``."""
    lines = []
    for users, days in scales:
        mine = [r for r in rows if (r["users"], r["days"]) == (users, days)]
        lines.append(f"- users={users:,}, days={days}: {describe(mine)}")
    return lines


def emit(lines: list[str], out: str | None) -> None:
    """Print the Markdown and write it to ``out`` when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
