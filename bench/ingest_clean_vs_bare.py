"""Ingest + clean (landing -> bronze -> silver) next to a bare Spark read-and-write of
the same landing files, in the same process (issue #21's acceptance: median ratio <= 2).

For each scale: generate the sample shop once (seeded, not timed). Each run then times,
one after the other in the same Spark session,

- **bare**: every landing feed read as Spark reads it with no help (CSV with a header and
  an inferred schema, JSON lines with an inferred schema), written as Parquet, and the
  Parquet counted back;
- **shoplake**: ``ingest`` then ``clean`` into a fresh lake (typing, quarantine with
  reasons, reconciliation, bronze Delta commits, deduplication, identity, pseudonyms,
  quality gates, silver MERGEs).

The bare job goes first in odd runs and second in even runs, so neither always gets
the warmer JVM. The ratio is shoplake / bare; the median over the runs is reported.

Usage::

    SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/ingest_clean_vs_bare.py \\
        --scale 10000x90 --scale 100000x90 --runs 3 --out bench/results/ingest_clean_vs_bare.md
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import time
from datetime import date
from functools import partial
from pathlib import Path

from benchargs import bench_parser, emit, per_scale, run_scales, scales_of


def bare_read_write(spark, landing: Path, out: Path) -> int:
    """Read each landing feed (schema inferred), write it as Parquet, count it back; rows moved."""
    shutil.rmtree(out, ignore_errors=True)
    rows = 0
    for feed in sorted(p for p in (landing / "shop").iterdir() if p.is_dir()):
        files = [str(f) for f in sorted(feed.iterdir()) if f.is_file()]
        if all(".csv" in f for f in files):
            df = spark.read.csv(files, header=True, inferSchema=True)
        else:
            df = spark.read.json(files)
        df.write.mode("overwrite").parquet(str(out / feed.name))
        rows += spark.read.parquet(str(out / feed.name)).count()
    return rows


def ingest_and_clean(spark, cfg, lake: Path) -> dict:
    """Both jobs into a fresh lake; their row counts."""
    from shoplake.registry import run_job

    shutil.rmtree(lake, ignore_errors=True)
    ingested = run_job(spark, cfg, "ingest")
    cleaned = run_job(spark, cfg, "clean")
    return {**ingested.row_counts, **cleaned.row_counts}


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path, overrides: tuple = ()) -> list[dict]:
    from common.config import load_config
    from shoplake.generate import generate

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}", *overrides])
    results = []
    for run in range(1, runs + 1):
        timings: dict[str, float] = {}
        steps = [("bare", lambda: bare_read_write(spark, landing, work / "bare")),
                 ("shoplake", lambda: ingest_and_clean(spark, cfg, lake))]  # fmt: skip
        outputs = {}
        for name, step in steps if run % 2 else reversed(steps):
            began = time.perf_counter()
            outputs[name] = step()
            timings[name] = time.perf_counter() - began
        counts = outputs["shoplake"]
        results.append(
            {
                "users": users, "days": days, "run": run, "landing_records": outputs["bare"],
                "silver_events": counts.get("silver.events", 0), "bare_s": timings["bare"],
                "shoplake_s": timings["shoplake"], "ratio": timings["shoplake"] / timings["bare"],
                "first": "bare" if run % 2 else "shoplake",
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    return results


def main() -> None:
    parser = bench_parser(__doc__, runs=3, seed=42)
    # e.g. --set spark.conf.spark.driver.memory=12g at 10M events
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = parser.parse_args()
    scales = scales_of(args, ["10000x90", "100000x90"])
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local", args.set))
    rows = run_scales(spark, partial(run_scale, overrides=tuple(args.set)), scales, args, "ingest-clean-vs-bare")
    scale_args = " ".join(f"--scale {u}x{d}" for u, d in scales)
    lines = [
        "# Ingest + clean vs a bare Spark read-and-write of the same landing files",
        "",
        f"Command: `SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/ingest_clean_vs_bare.py {scale_args} "
        f"--runs {args.runs} --seed {args.seed}" + "".join(f" --set {o}" for o in args.set) + "`",
        "",
        f"Machine: {platform.platform()}, 2 CPUs (shared, noisy), Spark local, conf/local.yaml, the lake backend "
        "it picks. Both timings of a row come from the same process; the job that ran first alternates.",
        "",
        "| users | days | run | landing records | silver events | first | bare s | ingest + clean s | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['landing_records']:,} | {r['silver_events']:,} | "
            f"{r['first']} | {r['bare_s']:.1f} | {r['shoplake_s']:.1f} | {r['ratio']:.1f}x |"
        )
    lines.append("")
    lines += per_scale(
        rows,
        scales,
        lambda mine: (
            f"median bare {statistics.median(r['bare_s'] for r in mine):.1f} s, median ingest + clean "
            f"{statistics.median(r['shoplake_s'] for r in mine):.1f} s, median ratio "
            f"{statistics.median(r['ratio'] for r in mine):.1f}x (target <= 2.0)"
        ),
    )
    emit(lines, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
