"""Ingest and clean through each Delta engine on the same landing files: delta-rs
(``deltalake``) vs delta-spark (the JVM connector, jars from ``shoplake jars``).

The shop is generated once per scale; each run takes it through ingest and clean on
a fresh lake, once per backend, alternating (delta-rs, delta-spark, delta-rs, ...)
so load on the shared machine hits both alike. Each backend run is a fresh process
(``bench/pipeline.py --child``), so the JVM and driver peak RSS are per backend.
The ratio delta-spark / delta-rs is taken within a run.

Usage::

    .venv/bin/python bench/delta_backends.py --scale 10000x90 --runs 2 --out bench/results/delta_backends.md
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

from benchargs import bench_parser, scales_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("delta-rs", "delta-spark")
JOBS = ("ingest", "clean")


def one_backend(landing: Path, lake: Path, backend: str) -> dict:
    """Ingest and clean on a fresh ``lake`` in a child process; pipeline.py's measurements."""
    shutil.rmtree(lake, ignore_errors=True)
    proc = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "bench" / "pipeline.py"), "--child", str(landing), str(lake),
         ",".join(JOBS), f"--set=lake.backend={backend}"],
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
    )  # fmt: skip
    out = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not out:
        raise SystemExit(f"{backend} failed with exit code {proc.returncode}")
    return json.loads(out[-1][len("RESULT ") :])


def markdown(rows: list[dict], command: str) -> str:
    lines = [
        "# Ingest and clean on each Delta engine (same landing files, same process kind)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, shared and noisy (load average per run "
        "below); Spark local[2], conf/local.yaml. Backends alternate within a run; compare the ratio.",
        "",
        "| users x days | events | run | backend | ingest s | clean s | ingest+clean s | driver peak MB "
        "| JVM peak MB | load (5 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steps = {s["job"]: s for s in r["steps"]}
        lines.append(
            f"| {r['users']:,} x {r['days']} | {r['events']:,} | {r['run']} | {r['backend']} "
            f"| {steps['ingest']['wall_s']:.1f} | {steps['clean']['wall_s']:.1f} | {r['total_s']:.1f} "
            f"| {max(s['py_peak_rss_mb'] for s in r['steps']):.0f} "
            f"| {max(s['jvm_peak_rss_mb'] for s in r['steps']):.0f} | {r['load_avg_5min']:.1f} |"
        )
    lines.append("")
    for scale in dict.fromkeys((r["users"], r["days"]) for r in rows):
        mine = [r for r in rows if (r["users"], r["days"]) == scale]
        ratios = []
        for run in sorted({r["run"] for r in mine}):
            pair = {r["backend"]: r["total_s"] for r in mine if r["run"] == run}
            if len(pair) == 2:
                ratios.append(pair["delta-spark"] / pair["delta-rs"])
        if not ratios:
            continue  # written after every backend run: the first run's pair may be half done
        medians = {b: statistics.median(r["total_s"] for r in mine if r["backend"] == b) for b in BACKENDS}
        lines.append(
            f"- {scale[0]:,} x {scale[1]}: median ingest+clean delta-rs {medians['delta-rs']:.1f} s, "
            f"delta-spark {medians['delta-spark']:.1f} s; delta-spark / delta-rs per run "
            f"{', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f})"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = bench_parser(__doc__, runs=2, seed=42).parse_args(argv)
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")
    from shoplake.generate import generate

    command = "python bench/delta_backends.py " + " ".join(argv if argv is not None else sys.argv[1:])
    work = Path(tempfile.mkdtemp(prefix="shoplake-delta-backends-"))
    rows: list[dict] = []
    try:
        for users, days in scales_of(args, ["10000x90"]):
            landing = work / "landing"
            manifest = generate(landing, users, days, args.seed, date(2024, 1, 1))
            events = manifest["records_expected"].get("bronze.events", 0)
            for run in range(1, args.runs + 1):
                for backend in BACKENDS:
                    began = time.perf_counter()
                    result = one_backend(landing, work / "lake", backend)
                    result.update(
                        users=users, days=days, run=run, backend=backend, events=events,
                        total_s=sum(s["wall_s"] for s in result["steps"]), elapsed_s=time.perf_counter() - began,
                    )  # fmt: skip
                    rows.append(result)
                    print(json.dumps({k: v for k, v in result.items() if k != "steps"}), file=sys.stderr, flush=True)
                    if args.out:  # after every run, so a stopped benchmark keeps what it measured
                        Path(args.out).write_text(markdown(rows, command))
            shutil.rmtree(landing, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(markdown(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
