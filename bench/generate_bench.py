"""Time the sample-data generator (:func:`shoplake.generate.generate`) at several scales.

The claim under test: generation is vectorised and streamed per day, so about one
million events (users=10000, days=90) take well under two minutes on a 2-core
machine, and memory stays modest because no day's events outlive that day's file.

Each run is a fresh process (peak RSS is per process) writing into a fresh
temporary folder. For every run it records wall time of ``generate``, event
records written (including planted duplicates and malformed lines), events/s,
bytes written, the process's peak RSS, and a digest of all file hashes, so the
report also shows whether repeated runs with the same seed were byte-identical.

Usage::

    .venv/bin/python bench/generate_bench.py --scale 2000x60 --scale 10000x90 --runs 3 \\
        --out bench/results/generate.md
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


def _child(users: int, days: int, seed: int, start: str, out: str) -> None:
    """Run one generation in this process and print its figures as JSON."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from shoplake.generate import generate

    began = time.perf_counter()
    manifest = generate(out, users, days, seed, date.fromisoformat(start))
    wall = time.perf_counter() - began
    digest = hashlib.sha256("".join(f["sha256"] for f in manifest["files"]).encode()).hexdigest()
    print(
        json.dumps(
            {
                "wall_s": wall,
                "events": manifest["records_expected"]["bronze.events"],
                "orders": manifest["silver_expected"]["orders"],
                "order_lines": manifest["silver_expected"]["order_lines"],
                "customers": manifest["records_expected"]["bronze.customers"],
                "bytes": sum(f["bytes"] for f in manifest["files"]),
                "files": len(manifest["files"]),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "digest": digest,
            }
        )
    )


def _run_once(users: int, days: int, seed: int, start: str) -> dict:
    out = tempfile.mkdtemp(prefix="shoplake-genbench-")
    try:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(users), str(days), str(seed), start, out],
            check=True,
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _parse_scale(text: str) -> tuple[int, int]:
    users, sep, days = text.lower().partition("x")
    if not sep or not users.isdigit() or not days.isdigit():
        raise argparse.ArgumentTypeError(f"expected USERSxDAYS, e.g. 10000x90, got {text!r}")
    return int(users), int(days)


def _report(args: argparse.Namespace, results: dict[tuple[int, int], list[dict]]) -> str:
    cmd = "python bench/generate_bench.py " + " ".join(
        [f"--scale {u}x{d}" for u, d in args.scale]
        + [f"--runs {args.runs}", f"--seed {args.seed}", f"--out {args.out}"]
    )
    lines = [
        "# Sample-data generator benchmark (`shoplake.generate.generate`)",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()} "
        "(shared and noisy). Each run is a fresh process writing to a fresh temporary folder on local disk.",
        "",
        "Events = event records written (including planted exact/near duplicates and malformed lines).",
        "",
        "| users | days | run | wall s | events | events/s | orders | order lines | MB written | peak RSS MB "
        "| files digest |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = []
    for (users, days), runs in results.items():
        for i, r in enumerate(runs, start=1):
            lines.append(
                f"| {users:,} | {days} | {i} | {r['wall_s']:.1f} | {r['events']:,} | {r['events'] / r['wall_s']:,.0f} "
                f"| {r['orders']:,} | {r['order_lines']:,} | {r['bytes'] / MB:.0f} | {r['peak_rss_mb']:.0f} "
                f"| `{r['digest'][:12]}` |"
            )
        walls = [r["wall_s"] for r in runs]
        med = statistics.median(walls)
        identical = len({r["digest"] for r in runs}) == 1
        summary.append(
            f"- users={users:,}, days={days}: median {med:.1f} s (min {min(walls):.1f}, max {max(walls):.1f}), "
            f"{runs[0]['events'] / med:,.0f} events/s, {runs[0]['events'] / users / days:.2f} event records "
            f"per user per day; repeated runs byte-identical: {'yes' if identical else 'NO'}."
        )
    lines += ["", "Summary:", "", *summary, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        users, days, seed, start, out = argv[1:6]
        _child(int(users), int(days), int(seed), start, out)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scale", type=_parse_scale, action="append", help="USERSxDAYS; repeatable (default: 2000x60 and 10000x90)"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--start-date", default="2024-01-01")
    parser.add_argument("--out", default="bench/results/generate.md")
    args = parser.parse_args(argv)
    args.scale = args.scale or [(2000, 60), (10000, 90)]
    results: dict[tuple[int, int], list[dict]] = {}
    for users, days in args.scale:
        for i in range(args.runs):
            r = _run_once(users, days, args.seed, args.start_date)
            results.setdefault((users, days), []).append(r)
            print(
                f"users={users} days={days} run {i + 1}: {r['wall_s']:.1f} s, {r['events']:,} events, "
                f"{r['events'] / r['wall_s']:,.0f} events/s, peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    report = _report(args, results)
    out = PROJECT_ROOT / args.out if not os.path.isabs(args.out) else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
