"""Ingest throughput (landing -> bronze through the delta-rs store) at several scales.

For each scale it generates the sample shop (seeded), then, per run, ingests it
into a fresh lake in local mode and records wall time and records/s. Every run
also checks the acceptance properties on the spot: quarantine counts per
(table, reason) equal the generator's planted counts exactly, and a second
ingest changes no table version except the run log.

Usage::

    .venv/bin/python bench/ingest_bench.py --scale 2000x60 --scale 10000x90 --runs 2 \\
        --out bench/results/ingest.md
"""

from __future__ import annotations

import platform
import shutil
import statistics
import time
from datetime import date
from pathlib import Path

from benchargs import bench_parser, emit, per_scale, run_scales, scales_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _versions(store) -> dict:
    from common.tables import ALL_TABLES

    return {name: store.version(spec) for name, spec in ALL_TABLES.items()}


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path) -> list[dict]:
    from common.config import load_config
    from common.delta import open_store
    from common.tables import get_table
    from shoplake.generate import generate
    from shoplake.registry import run_job

    landing = work / f"landing-{users}x{days}"
    shutil.rmtree(landing, ignore_errors=True)
    manifest = generate(landing, users, days, seed, date(2024, 1, 1))
    planted = {(t, r): n for t, reasons in manifest["quarantine_expected"].items() for r, n in reasons.items()}
    results = []
    for run in range(1, runs + 1):
        lake = work / f"lake-{users}x{days}-{run}"
        shutil.rmtree(lake, ignore_errors=True)
        cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}"])
        store = open_store(spark, cfg)
        began = time.perf_counter()
        result = run_job(spark, cfg, "ingest")
        wall = time.perf_counter() - began
        rows = store.read(get_table("bronze.quarantine")).groupBy("target_table", "reason").count().collect()
        found = {(r.target_table, r.reason): r["count"] for r in rows}
        before = _versions(store)
        began = time.perf_counter()
        run_job(spark, cfg, "ingest")
        rerun = time.perf_counter() - began
        after = _versions(store)
        only_run_log = after.pop("ops.run_log") == before.pop("ops.run_log") + 1 and after == before
        records = result.row_counts["records_in"]
        results.append(
            {
                "users": users,
                "days": days,
                "run": run,
                "wall_s": wall,
                "records": records,
                "events": manifest["records_expected"]["bronze.events"],
                "records_per_s": records / wall,
                "quarantined": result.row_counts["bronze.quarantine"],
                "quarantine_matches": found == planted,
                "rerun_s": rerun,
                "rerun_only_run_log": only_run_log,
            }
        )
        print(results[-1], flush=True)
        shutil.rmtree(lake, ignore_errors=True)
    return results


def main() -> None:
    parser = bench_parser(__doc__, runs=2, seed=42)
    args = parser.parse_args()
    scales = scales_of(args, ["2000x60", "10000x90"])

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local"))
    rows = run_scales(spark, run_scale, scales, args, "ingest")
    lines = [
        "# Ingest benchmark (landing -> bronze, delta-rs store, local[2])",
        "",
        f"Command: `.venv/bin/python bench/ingest_bench.py {' '.join(f'--scale {u}x{d}' for u, d in scales)} "
        f"--runs {args.runs} --seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, 2 CPUs (shared, noisy), Spark local[2], conf/local.yaml "
        "(driver memory 4g). Session start-up is not timed; each run ingests into a fresh lake.",
        "",
        "| users | days | run | records in | events | wall s | records/s | quarantined | quarantine = planted |"
        " re-run s | re-run changes only run log |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['records']:,} | {r['events']:,} | {r['wall_s']:.1f} | "
            f"{r['records_per_s']:,.0f} | {r['quarantined']:,} | {'yes' if r['quarantine_matches'] else 'NO'} | "
            f"{r['rerun_s']:.1f} | {'yes' if r['rerun_only_run_log'] else 'NO'} |"
        )
    lines.append("")
    lines += per_scale(
        rows,
        scales,
        lambda mine: (
            f"median {statistics.median(r['wall_s'] for r in mine):.1f} s, "
            f"median {statistics.median(r['records_per_s'] for r in mine):,.0f} records/s"
        ),
    )
    emit(lines, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
