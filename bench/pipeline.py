"""The whole ``shoplake pipeline`` at several scales: time per step, records per
second and peak memory (driver Python and JVM).

Every job in ``shoplake.registry.PIPELINE`` runs, in order, through ``run_job`` (as
``shoplake pipeline`` does) on a fresh lake, so a newly registered job is
benchmarked without touching this file. For each scale the sample shop is
generated once (seeded; generation is timed but not part of the pipeline); each
run is a fresh process (peak RSS is per process) with ``conf/local.yaml``
settings. Per step it records:

* wall time and landing records per second (all landing records of the scale
  divided by the step's time, so steps compare on one scale);
* the driver's peak RSS during the step and the JVM's (``VmRSS``/``VmHWM`` of the
  java child, sampled every 0.2 s by ``delta_write_bench.JvmSampler``);
* the job's own row counts (what it read and wrote).

Usage::

    .venv/bin/python bench/pipeline.py --scale 1000x90 --scale 10000x90 --scale 100000x90 \\
        --runs 1 --set spark.conf.spark.driver.memory=12g --out bench/results/pipeline.md

(bench/README.md has the full commands, with the churn windows a 90-day shop needs.)
With ``--results FILE.jsonl`` every run is appended to that file and the Markdown
covers all its runs, so scales can run one invocation at a time, each with its own
``--set`` overrides (recorded per run).
"""

from __future__ import annotations

import argparse
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

from benchargs import bench_parser, scales_of
from delta_write_bench import JvmSampler, _java_descendants

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MB = 1024
# Users x days of the generator: about 140k, 1M and 4M events.
DEFAULT_SCALES = ["2000x60", "10000x90", "40000x90"]
SECRET_ENV = "SHOPLAKE_PSEUDONYM_SECRET"


# ---------------------------------------------------------------- one run
def run_pipeline(landing: str, lake: str, jobs: list[str], overrides: list[str]) -> dict:
    """Run ``jobs`` in this process on a fresh ``lake`` (config ``overrides`` as with
    ``--set``); the measurements per step."""
    from common.config import load_config
    from common.spark import build_spark
    from shoplake.registry import run_job

    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}", *overrides])
    began = time.perf_counter()
    spark = build_spark(cfg)
    startup = time.perf_counter() - began
    jvm_pids = _java_descendants(os.getpid())
    steps = []
    for name in jobs:
        sampler = JvmSampler(jvm_pids)
        sampler.start()
        began = time.perf_counter()
        result = run_job(spark, cfg, name)
        wall = time.perf_counter() - began
        sampler.stop()
        steps.append(
            {
                "job": name,
                "wall_s": wall,
                "py_peak_rss_mb": sampler.py_peak_rss_kb / MB,
                "jvm_peak_rss_mb": max(sampler.peak_rss_kb, sampler.hwm_kb) / MB,
                "row_counts": result.row_counts,
            }
        )
        print(f"  {name}: {wall:.1f} s", file=sys.stderr, flush=True)
    spark.stop()
    # The machine is shared: the load says how much of the wall time was ours.
    return {"spark_startup_s": startup, "steps": steps, "load_avg_5min": os.getloadavg()[1]}


# ------------------------------------------------------------------ driver
def markdown(results: list[dict], command: str) -> str:
    commands = list(dict.fromkeys(r.get("command", command) for r in results)) or [command]
    lines = [
        "# Pipeline benchmark (`shoplake pipeline`: every job of shoplake.registry.PIPELINE)",
        "",
        *(f"Command: `{c}`" for c in commands),
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB RAM, shared with other "
        "Spark jobs while measured (noisy: compare orders of magnitude, not seconds). Spark local[2], "
        "conf/local.yaml (driver memory 4g) plus the command's `--set` overrides, delta-rs backend. "
        "Each run is a fresh process on a fresh lake; "
        "landing data from `shoplake.generate` (seed in the command).",
        "",
        "Records/s = all landing records of the scale / the step's wall time. Peak RSS is sampled during the "
        "step (driver: the Python process; JVM: the java child's VmRSS/VmHWM, a lifetime high-water mark, "
        "so it never falls from one step to the next).",
        "",
        "| users x days | landing records | events | run | step | wall s | records/s | driver peak RSS MB "
        "| JVM peak RSS MB | job row counts |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        scale = f"{r['users']:,} x {r['days']}"
        for step in r["steps"]:
            counts = ", ".join(f"{k} {v:,}" for k, v in sorted(step["row_counts"].items()) if isinstance(v, int))
            lines.append(
                f"| {scale} | {r['records']:,} | {r['events']:,} | {r['run']} | {step['job']} "
                f"| {step['wall_s']:.1f} | {r['records'] / step['wall_s']:,.0f} | {step['py_peak_rss_mb']:.0f} "
                f"| {step['jvm_peak_rss_mb']:.0f} | {counts} |"
            )
        total = sum(s["wall_s"] for s in r["steps"])
        lines.append(
            f"| {scale} | {r['records']:,} | {r['events']:,} | {r['run']} | **pipeline** | **{total:.1f}** "
            f"| **{r['records'] / total:,.0f}** | {max(s['py_peak_rss_mb'] for s in r['steps']):.0f} "
            f"| {max(s['jvm_peak_rss_mb'] for s in r['steps']):.0f} | Spark start {r['spark_startup_s']:.1f} s, "
            f"generation {r['generate_s']:.1f} s (not in the total), load average {r.get('load_avg_5min', 0):.0f} |"
        )
    lines += ["", "Medians per scale (pipeline total):", ""]
    for users, days in dict.fromkeys((r["users"], r["days"]) for r in results):
        mine = [r for r in results if (r["users"], r["days"]) == (users, days)]
        totals = [sum(s["wall_s"] for s in r["steps"]) for r in mine]
        lines.append(
            f"- {users:,} users x {days} days ({mine[0]['records']:,} landing records, {mine[0]['events']:,} "
            f"events): {statistics.median(totals):.1f} s, "
            f"{statistics.median(r['records'] / t for r, t in zip(mine, totals)):,.0f} records/s over "
            f"{len(mine)} run(s)"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, runs=1, seed=42)
    parser.add_argument("--jobs", default=None, help="comma-separated jobs (default: shoplake.registry.PIPELINE)")
    # e.g. --set spark.conf.spark.driver.memory=12g for the largest scale
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--results", default=None, help="JSON-lines file: earlier runs are kept, new ones appended")
    parser.add_argument("--child", nargs=3, metavar=("LANDING", "LAKE", "JOBS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    os.environ.setdefault(SECRET_ENV, "bench-secret-not-for-production")

    if args.child:
        landing, lake, jobs = args.child
        print("RESULT " + json.dumps(run_pipeline(landing, lake, jobs.split(","), args.set)), flush=True)
        return 0

    from shoplake.generate import generate
    from shoplake.registry import PIPELINE

    command = "python bench/pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:])
    jobs = args.jobs.split(",") if args.jobs else list(PIPELINE)
    scales = scales_of(args, DEFAULT_SCALES)
    work = Path(tempfile.mkdtemp(prefix="shoplake-pipeline-bench-"))
    results = []
    if args.results and Path(args.results).exists():
        results = [json.loads(line) for line in Path(args.results).read_text().splitlines() if line.strip()]
    try:
        for users, days in scales:
            landing = work / f"landing-{users}x{days}"
            began = time.perf_counter()
            manifest = generate(landing, users, days, args.seed, date(2024, 1, 1))
            generate_s = time.perf_counter() - began
            records = sum(manifest["records_expected"].values())
            for run in range(1, args.runs + 1):
                print(f"{users}x{days} run {run}: {records:,} landing records", file=sys.stderr, flush=True)
                lake = work / "lake"
                shutil.rmtree(lake, ignore_errors=True)
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(landing), str(lake), ",".join(jobs)]
                    + [f"--set={o}" for o in args.set],
                    cwd=PROJECT_ROOT,
                    stdout=subprocess.PIPE,
                    text=True,
                    check=False,
                    env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                )
                out = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not out:
                    raise SystemExit(f"{users}x{days} run {run} failed with exit code {proc.returncode}")
                result = json.loads(out[-1][len("RESULT ") :])
                result.update(
                    users=users, days=days, run=run, records=records, generate_s=generate_s,
                    events=manifest["records_expected"].get("bronze.events", 0), command=command,
                )  # fmt: skip
                results.append(result)
                if args.results:
                    with open(args.results, "a") as sink:
                        sink.write(json.dumps(result) + "\n")
                print("RESULT " + json.dumps(result), flush=True)
                # Written after every run, so a long benchmark stopped early keeps what it measured.
                report = markdown(results, command)
                if args.out:
                    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                    Path(args.out).write_text(report)
            shutil.rmtree(landing, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(results, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
