"""Churn job: training time (features at three cutoffs, grid search, calibration,
evaluation with the recency baseline, scoring) and scoring-only time (a saved
model applied as of the same date, ``churn.score_with_model``) at several scales.

For each scale: generate the sample shop (seeded), ingest and clean it once (not
timed), then per run time (a) the full churn job and (b) the churn job scoring
with the model (a) saved. Generated shops span ``days`` days, so label windows are
30 days (as in tests/integration/test_churn.py).

Usage::

    .venv/bin/python bench/churn.py --scale 600x120 --scale 2400x120 --runs 2 --out bench/results/churn.md
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

CHURN = ["churn.label_days=30", "churn.activity_days=60"]


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path) -> list[dict]:
    from common.config import load_config
    from shoplake.generate import generate
    from shoplake.registry import run_job

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    base = [f"lake.root={lake}", f"landing.root={landing}", *CHURN]
    cfg = load_config("local", base)
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    results = []
    for run in range(1, runs + 1):
        shutil.rmtree(lake / "gold", ignore_errors=True)
        shutil.rmtree(lake / "models", ignore_errors=True)
        began = time.perf_counter()
        trained = run_job(spark, cfg, "churn")
        train_s = time.perf_counter() - began
        version = trained.metrics["model_version"]
        began = time.perf_counter()
        scored = run_job(spark, load_config("local", [*base, f"churn.score_with_model={version}"]), "churn")
        score_s = time.perf_counter() - began
        rows = trained.metrics["rows"]
        results.append(
            {
                "users": users, "days": days, "run": run, "train_s": train_s, "score_s": score_s,
                "labelled": sum(r["rows"] for r in rows.values()), "scored": scored.row_counts["gold.churn_scores"],
                "auc": trained.metrics["test"]["model"]["roc_auc"],
                "auc_base": trained.metrics["test"]["baseline"]["roc_auc"],
                "load": os.getloadavg()[1],
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    return results


def main() -> None:
    parser = bench_parser(__doc__, runs=2, seed=7)
    args = parser.parse_args()
    scales = scales_of(args, ["600x120", "2400x120"])
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")

    from common.config import load_config
    from common.spark import build_spark

    spark = build_spark(load_config("local"))
    rows = run_scales(spark, run_scale, scales, args, "churn")
    scale_args = " ".join(f"--scale {u}x{d}" for u, d in scales)
    cfg = load_config("local")
    lines = [
        "# Churn benchmark: training vs scoring with the saved model",
        "",
        f"Command: `.venv/bin/python bench/churn.py {scale_args} --runs {args.runs} --seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work (the 5-minute load "
        "average after each run is in the table), Spark local[2], conf/local.yaml. Absolute seconds are noisy; "
        "compare training with scoring within a row.",
        "",
        f"Settings: {' '.join(CHURN)}; grid {cfg.churn.grid.model_dump()} (every point trained twice: model and "
        "recency baseline); training = features at three cutoffs + grid search + isotonic calibration + "
        "evaluation + scoring the as-of date; scoring = features at the as-of date + saved pipeline + "
        "per-customer contributions + CLV + writes.",
        "",
        "| users | days | run | labelled rows (3 cutoffs) | scored customers | training s | scoring s "
        "| test ROC-AUC model / recency | load avg |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['labelled']:,} | {r['scored']:,} | "
            f"{r['train_s']:.1f} | {r['score_s']:.1f} | {r['auc']:.3f} / {r['auc_base']:.3f} | {r['load']:.1f} |"
        )
    lines.append("")
    lines += per_scale(
        rows,
        scales,
        lambda mine: (
            f"median training {statistics.median(r['train_s'] for r in mine):.1f} s, "
            f"median scoring {statistics.median(r['score_s'] for r in mine):.1f} s"
        ),
    )
    emit(lines, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
