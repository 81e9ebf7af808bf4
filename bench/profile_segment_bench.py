"""Profile and segment job time at several scales.

For each scale: generate the sample shop (seeded), ingest and clean it (not
timed), then time the profile job and the segment job (k range, stability seeds
and everything else from conf/base.yaml) on the data's last day.

Usage::

    SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/profile_segment_bench.py \\
        --scale 600x120 --scale 2000x60 --out bench/results/profile_segment.md
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path


def run_scale(spark, users: int, days: int, seed: int, work: Path) -> dict:
    from common.config import load_config
    from jobs.generate import generate
    from jobs.registry import run_job

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}"])
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    out: dict = {"users": users, "days": days}
    for job in ("profile", "segment"):
        began = time.perf_counter()
        result = run_job(spark, cfg, job)
        out[f"{job}_s"] = time.perf_counter() - began
        out[job] = result.metrics
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", action="append", required=True, help="USERSxDAYS, e.g. 2000x60")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="bench/results/profile_segment.md")
    args = parser.parse_args()

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="shoplake-bench-") as tmp:
        for scale in args.scale:
            users, days = (int(x) for x in scale.lower().split("x"))
            rows.append(run_scale(spark, users, days, args.seed, Path(tmp)))
    spark.stop()
    cmd = "SHOPLAKE_PSEUDONYM_SECRET=bench .venv/bin/python bench/profile_segment_bench.py " + " ".join(
        f"--scale {s}" for s in args.scale
    )
    lines = [
        "# Profile and segment benchmark",
        "",
        f"Command: `{cmd} --seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared with other Spark jobs, noisy), "
        "Spark local[2], conf/local.yaml. One run per scale; read the figures as orders of magnitude.",
        "",
        "| users | days | customers | profile s | segment s | k | silhouette at k | stability ARI | k evaluated "
        "| restarts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seg = r["segment"]
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['profile']['customers']:,} | {r['profile_s']:.1f} | "
            f"{r['segment_s']:.1f} | {seg['k']} | {seg['chosen_silhouette']:.3f} | {seg['stability_mean_ari']:.3f} | "
            f"{seg['k_evaluated'][0]}-{seg['k_evaluated'][-1]} (+{len(seg['stability_seeds'])} seeds) | "
            f"{seg['restarts']} |"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
