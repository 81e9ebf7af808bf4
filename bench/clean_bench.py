"""Clean-stage throughput (bronze -> silver) next to a bare Spark read-and-write
of the same bronze data, measured in the same process and run.

For each scale: generate the sample shop (seeded), ingest it once (not timed),
then per run time (a) a bare copy: read every bronze table through the Delta
store and write it as plain Parquet, and (b) the clean job into a fresh silver
layer. The ratio (b)/(a) is the price of deduplication, identity resolution,
pseudonymisation and quality gates over just moving the bytes.

Usage::

    SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/clean_bench.py --scale 2000x60 --scale 10000x90 \\
        --runs 2 --out bench/results/clean.md
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from benchargs import bench_parser, emit, per_scale, run_scales, scales_of


def bare_copy(spark, store, out: Path) -> int:
    """Read each bronze data table and write it as Parquet; returns rows moved."""
    from common.tables import BRONZE_DATA_TABLES

    rows = 0
    for name, spec in BRONZE_DATA_TABLES.items():
        if not store.exists(spec):
            continue
        df = store.read(spec)
        df.write.mode("overwrite").parquet(str(out / name))
        rows += spark.read.parquet(str(out / name)).count()
    return rows


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path) -> list[dict]:
    from common.config import load_config
    from common.delta import open_store
    from shoplake.generate import generate
    from shoplake.registry import run_job

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}"])
    store = open_store(spark, cfg)
    run_job(spark, cfg, "ingest")
    results = []
    for run in range(1, runs + 1):
        began = time.perf_counter()
        rows = bare_copy(spark, store, work / "copy")
        bare = time.perf_counter() - began
        shutil.rmtree(lake / "silver", ignore_errors=True)
        began = time.perf_counter()
        result = run_job(spark, cfg, "clean")
        clean = time.perf_counter() - began
        results.append(
            {
                "users": users, "days": days, "run": run, "bronze_rows": rows, "bare_s": bare, "clean_s": clean,
                "rows_per_s": rows / clean, "ratio": clean / bare,
                "silver_events": result.row_counts.get("silver.events", 0),
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    return results


def main() -> None:
    parser = bench_parser(__doc__, runs=2, seed=42)
    args = parser.parse_args()
    scales = scales_of(args, ["2000x60", "10000x90"])
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local"))
    rows = run_scales(spark, run_scale, scales, args, "clean")
    scale_args = " ".join(f"--scale {u}x{d}" for u, d in scales)
    lines = [
        "# Clean benchmark (bronze -> silver) vs a bare read-and-write of the same bronze data",
        "",
        f"Command: `SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/clean_bench.py {scale_args} "
        f"--runs {args.runs} --seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, 2 CPUs (shared, noisy), Spark local[2], conf/local.yaml. Both timings "
        "of a row come from the same process, one after the other; compare the ratio, not absolute seconds.",
        "",
        "| users | days | run | bronze rows | bare read+write s | clean s | clean rows/s | clean / bare"
        " | silver events |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['bronze_rows']:,} | {r['bare_s']:.1f} | "
            f"{r['clean_s']:.1f} | {r['rows_per_s']:,.0f} | {r['ratio']:.1f}x | {r['silver_events']:,} |"
        )
    lines.append("")
    lines += per_scale(
        rows,
        scales,
        lambda mine: (
            f"median clean {statistics.median(r['clean_s'] for r in mine):.1f} s "
            f"({statistics.median(r['rows_per_s'] for r in mine):,.0f} bronze rows/s), median "
            f"{statistics.median(r['ratio'] for r in mine):.1f}x a bare read-and-write"
        ),
    )
    emit(lines, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
