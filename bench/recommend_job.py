"""The whole recommend job with its shipped search at several scales (issue #19): wall
time, the ALS search's share, and each candidate's time on validation and test.

For each scale the sample shop is generated (seeded) and ingested and cleaned once, not
timed; with ``--lakes DIR`` the landing files and the lake are kept in ``DIR/USERSxDAYS``
and reused by later invocations (a 100,000 x 90 lake takes about half an hour to build).
Each run is then ``run_job(spark, cfg, "recommend")`` on that lake with ``conf/local.yaml``
and the ``--set`` overrides (none: the shipped configuration). From the job's own metrics
it records the users evaluated (``recommend.evaluation_users``), the search's fits and
seconds, the seconds of every candidate (fit, lists, metrics) on validation and on test,
the chosen model and its test NDCG@10 against most popular's.

Usage::

    SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/recommend_job.py \\
        --scale 1000x90 --scale 10000x90 --runs 2 --lakes /tmp/reco-lakes \\
        --results bench/results/recommend_job.jsonl --out bench/results/recommend_job.md
    # the largest scale on its own, with the driver memory it needs
    SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/recommend_job.py --scale 100000x90 --runs 1 \\
        --lakes /tmp/reco-lakes --set spark.conf.spark.driver.memory=12g \\
        --set spark.conf.spark.sql.shuffle.partitions=16 \\
        --results bench/results/recommend_job.jsonl --out bench/results/recommend_job.md
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from benchargs import bench_parser, emit, scales_of

BUILT = ".built"  # written once ingest and clean finished, so a half-built lake is rebuilt


def build_lake(spark, cfg, landing: Path, lake: Path, users: int, days: int, seed: int) -> float:
    """Generate, ingest and clean the shop unless ``lake`` was built before; seconds taken."""
    from shoplake.generate import generate
    from shoplake.registry import run_job

    if (lake / BUILT).exists():
        return 0.0
    began = time.perf_counter()
    shutil.rmtree(landing, ignore_errors=True)
    shutil.rmtree(lake, ignore_errors=True)
    generate(landing, users, days, seed, date(2024, 1, 1))
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    (lake / BUILT).write_text(f"{users}x{days} seed {seed}\n")
    return time.perf_counter() - began


def run_scale(spark, users: int, days: int, args, work: Path) -> list[dict]:
    from common.config import load_config
    from common.delta import open_store
    from common.tables import SILVER_EVENTS
    from shoplake.registry import run_job

    landing, lake = work / f"{users}x{days}" / "landing", work / f"{users}x{days}" / "lake"
    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}", *args.set])
    build_s = build_lake(spark, cfg, landing, lake, users, days, args.seed)
    events = open_store(spark, cfg).row_count(SILVER_EVENTS)
    rows = []
    for run in range(1, args.runs + 1):
        began = time.perf_counter()
        result = run_job(spark, cfg, "recommend")
        wall = time.perf_counter() - began
        m = result.metrics
        test = m["test"]
        rows.append(
            {
                "users": users, "days": days, "run": run, "silver_events": events, "build_s": build_s,
                "wall_s": wall, "evaluated": m["split"]["users"], "search_fits": m["search"].get("fits"),
                "seconds": m["seconds"], "chosen": m["chosen_model"],
                "chosen_ndcg": test.get(m["chosen_model"], {}).get("ndcg@10"),
                "popular_ndcg": test.get("most_popular", {}).get("ndcg@10"),
                "published_users": m["published"]["users"], "overrides": args.set, "code": args.label,
            }
        )  # fmt: skip
        print("RESULT " + json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], command: str) -> list[str]:
    lines = [
        "# The recommend job at three scales: wall time and time per candidate",
        "",
        f"Command: `{command}` (each scale's rows from `--results`; overrides per row).",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Spark local (conf/local.yaml). Seconds are "
        "wall-clock on a shared machine; compare within a table.",
        "",
        "| users x days | code | overrides | silver events | run | evaluated users | search fits | search s "
        "| total s | chosen | chosen / popular NDCG@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ev = r["evaluated"]
        ratio = r["chosen_ndcg"] / r["popular_ndcg"] if r["chosen_ndcg"] and r["popular_ndcg"] else None
        lines.append(
            f"| {r['users']:,} x {r['days']} | {r.get('code', '')} | {_overrides(r)} | {r['silver_events']:,} "
            f"| {r['run']} "
            f"| {ev['users']:,} of {ev['of']:,} "
            f"| {r['search_fits']} | {r['seconds']['search']} | {r['wall_s']:.0f} | {r['chosen']} "
            f"| {'n/a' if ratio is None else f'{ratio:.2f}'} |"
        )
    lines += ["", "Seconds per candidate (fit, lists and metrics on the evaluated users):", ""]
    methods = sorted({m for r in rows for side in ("validation", "test") for m in r["seconds"][side]})
    lines += [
        "| users x days | code | overrides | run | " + " | ".join(f"{m} val / test" for m in methods) + " |",
        "|---|---|---|---|" + "---|" * len(methods),
    ]
    for r in rows:
        cells = [f"{r['seconds']['validation'].get(m, '-')} / {r['seconds']['test'].get(m, '-')}" for m in methods]
        lines.append(
            f"| {r['users']:,} x {r['days']} | {r.get('code', '')} | {_overrides(r)} | {r['run']} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    for key in dict.fromkeys((r["users"], r["days"], _overrides(r), r.get("code", "")) for r in rows):
        walls = [r["wall_s"] for r in rows if (r["users"], r["days"], _overrides(r), r.get("code", "")) == key]
        median = statistics.median(walls)
        code = f", code {key[3]}" if key[3] else ""
        lines.append(
            f"- users={key[0]:,}, days={key[1]}, {key[2]}{code}: median {median:.0f} s over {len(walls)} run(s)"
        )
    return lines


NOTES = "Notes"  # hand-written notes below the tables start with this word; a rerun keeps them


def _kept_notes(out: str | None) -> list[str]:
    """The notes section of the existing ``out`` file (from its first line starting with
    ``Notes``), so regenerating the tables does not lose what was written about the runs."""
    if not out or not Path(out).exists():
        return []
    lines = Path(out).read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(NOTES)), None)
    return [] if start is None else ["", *lines[start:]]


def _git_label() -> str:
    """The checkout's short commit, with ``+dirty`` when files differ from it; "" outside git."""

    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    # The results this script writes do not make the code dirty.
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return commit + ("+dirty" if commit and changed else "")


def _overrides(row: dict) -> str:
    """The row's ``--set`` overrides, or "shipped" when there were none."""
    return ", ".join(f"`{o}`" for o in row["overrides"]) or "shipped"


def main(argv: list[str] | None = None) -> int:
    from common.config import load_config
    from common.spark import build_spark

    parser = bench_parser(__doc__, runs=1, seed=42)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--lakes", default=None, help="folder keeping each scale's landing files and lake")
    parser.add_argument("--results", default=None, help="JSON-lines file: earlier runs are kept, new ones appended")
    parser.add_argument("--label", default=_git_label(), help="which code ran (default: the git commit, +dirty)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")
    command = "python bench/recommend_job.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(args.lakes or tempfile.mkdtemp(prefix="shoplake-recommend-job-bench-"))
    rows = []
    if args.results and Path(args.results).exists():
        rows = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    spark = build_spark(load_config("local", list(args.set)))
    try:
        for users, days in scales_of(args, ["1000x90"]):
            new = run_scale(spark, users, days, args, work)
            rows += new
            if args.results:
                with open(args.results, "a") as sink:
                    sink.writelines(json.dumps(r) + "\n" for r in new)
            emit(markdown(rows, command) + _kept_notes(args.out), args.out)
    finally:
        spark.stop()
        if not args.lakes:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
