"""Command-line options shared by the per-scale bench scripts (run as
``python bench/<script>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import argparse


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
