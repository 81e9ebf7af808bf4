"""Profile and segment job time at several scales, and what the k-means restarts cost.

For each scale: generate the sample shop (seeded), ingest and clean it once (not
timed), then per run time the profile job, the segment job as configured in
conf/base.yaml (``segment.restarts`` k-means runs per fit) and the segment job
with one run per fit, on the data's last day. The two segment timings of a run
share the machine's load, so their ratio is the figure to read.

Usage::

    .venv/bin/python bench/profile_segment_bench.py --scale 600x120 --scale 2000x60 --runs 3 \\
        --out bench/results/profile_segment.md
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from benchargs import bench_parser, scales_of

ONE_RESTART = "segment.restarts=1"


def _timed(spark, cfg, job: str):
    from shoplake.registry import run_job

    began = time.perf_counter()
    result = run_job(spark, cfg, job)
    return time.perf_counter() - began, result


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path) -> list[dict]:
    from common.config import load_config
    from shoplake.generate import generate
    from shoplake.registry import run_job

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    base = [f"lake.root={lake}", f"landing.root={landing}"]
    cfg = load_config("local", base)
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    results = []
    for run in range(1, runs + 1):
        profile_s, profile = _timed(spark, cfg, "profile")
        segment_s, segment = _timed(spark, cfg, "segment")
        single_s, single = _timed(spark, load_config("local", [*base, ONE_RESTART]), "segment")
        results.append(
            {
                "users": users, "days": days, "run": run, "customers": profile.metrics["customers"],
                "profile_s": profile_s, "segment_s": segment_s, "single_s": single_s,
                "restarts": segment.metrics["restarts"], "k": segment.metrics["k"],
                "silhouette": segment.metrics["chosen_silhouette"],
                "stability": segment.metrics["stability_mean_ari"],
                "k_single": single.metrics["k"], "stability_single": single.metrics["stability_mean_ari"],
                "k_range": segment.metrics["k_evaluated"], "seeds": len(segment.metrics["stability_seeds"]),
                "load": os.getloadavg()[1],
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    return results


def main() -> None:
    parser = bench_parser(__doc__, runs=3, seed=42)
    args = parser.parse_args()
    scales = scales_of(args, ["600x120", "2000x60"])
    out = Path(args.out or "bench/results/profile_segment.md")
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local"))
    with tempfile.TemporaryDirectory(prefix="shoplake-bench-") as tmp:
        rows = [r for users, days in scales for r in run_scale(spark, users, days, args.runs, args.seed, Path(tmp))]
    spark.stop()
    scale_args = " ".join(f"--scale {u}x{d}" for u, d in scales)
    first = rows[0]
    lines = [
        "# Profile and segment benchmark",
        "",
        f"Command: `.venv/bin/python bench/profile_segment_bench.py {scale_args} --runs {args.runs} "
        f"--seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work (the 5-minute load "
        "average after each run is in the table), Spark local[2], conf/local.yaml. Absolute seconds are noisy; "
        "compare the two segment timings within a row.",
        "",
        f"Segment settings: conf/base.yaml, k {first['k_range'][0]}-{first['k_range'][-1]} by silhouette, "
        f"stability over {first['seeds']} seeds; each fit keeps the cheapest of `segment.restarts` "
        f"({first['restarts']}) k-means runs, against one run per fit (`{ONE_RESTART}`).",
        "",
        "| users | days | run | customers | profile s | segment s | k / silhouette / stability "
        "| segment s, 1 restart | k / stability, 1 restart | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['customers']:,} | {r['profile_s']:.1f} | "
            f"{r['segment_s']:.1f} | {r['k']} / {r['silhouette']:.3f} / {r['stability']:.3f} | {r['single_s']:.1f} | "
            f"{r['k_single']} / {r['stability_single']:.3f} | {r['load']:.1f} |"
        )
    med = statistics.median
    lines += ["", "Medians per scale:", ""]
    for users, days in scales:
        mine = [r for r in rows if (r["users"], r["days"]) == (users, days)]
        ratio = med(r["segment_s"] / r["single_s"] for r in mine)
        lines.append(
            f"- {users:,} x {days}: profile {med(r['profile_s'] for r in mine):.1f} s, segment "
            f"{med(r['segment_s'] for r in mine):.1f} s with {first['restarts']} restarts and "
            f"{med(r['single_s'] for r in mine):.1f} s with one: restarts cost x{ratio:.1f} (median of the "
            "per-run ratios)."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
