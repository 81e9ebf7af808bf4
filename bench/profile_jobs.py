"""Where each job's time goes (issue #21 item 1): Spark's event log summarised per
ShopLake job, and, with ``--py-spy``, the driver's Python stacks.

One process generates a shop (``--scale USERSxDAYS``, seeded), then runs the jobs of
``shoplake.registry.PIPELINE`` up to the last one asked for (``--job``, repeatable;
default ingest, clean and recommend) through ``run_job``, each under its own Spark job
group, with ``spark.eventLog.enabled``. Per job it reports:

* wall time, and how much of it some Spark job was running (the union of the Spark
  jobs' intervals); the rest is the driver alone: Python, Delta commits, GX's
  bookkeeping, JVM calls that start no job;
* Spark jobs, completed stages, tasks, summed task run time, input, shuffle read and
  shuffle write bytes;
* the call sites costing most: ``callSite.short``, which PySpark sets to the Python
  line that started the Spark job (``count at /.../gate.py:201``), with their count and
  summed wall time.

With ``--py-spy`` the same run is sampled by ``py-spy record --idle`` (the driver only;
the JVM's work shows as Python waiting in py4j). Each sample goes to the ShopLake job
whose ``run`` is on its stack and to the deepest frame in this project's code (time
inside a library or the JVM counts for the project line that called it), so the table
names the lines a change would touch.

Usage::

    .venv/bin/python bench/profile_jobs.py --scale 300x60 --py-spy --out bench/results/profile_jobs.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_ENV = "SHOPLAKE_PSEUDONYM_SECRET"
MB = 1024 * 1024
TOP = 8
PROJECT_DIRS = ("common/", "jobs/", "shoplake/")
RATE = 50  # py-spy samples per second


# ------------------------------------------------------------------ the run
def run_jobs(scale: tuple[int, int], seed: int, jobs: list[str], overrides: list[str], work: Path) -> dict:
    """Generate the shop, run the pipeline's jobs up to the last of ``jobs`` with the event
    log on; each job's name, Spark job group and wall-clock window."""
    sys.path.insert(0, str(PROJECT_ROOT))
    os.environ.setdefault(SECRET_ENV, "bench-secret-not-for-production")
    from common.config import load_config
    from common.delta import resolve_backend
    from common.spark import build_spark
    from shoplake.generate import generate
    from shoplake.registry import PIPELINE, run_job

    users, days = scale
    generate(work / "landing", users=users, days=days, seed=seed, start_date=date(2024, 1, 1))
    events = work / "events"
    events.mkdir()
    cfg = load_config(
        "local",
        [
            f"lake.root={work / 'lake'}",
            f"landing.root={work / 'landing'}",
            "spark.conf.spark.eventLog.enabled=true",
            f"spark.conf.spark.eventLog.dir=file://{events}",
            "spark.conf.spark.eventLog.compress=false",
            *overrides,
        ],
    )
    last = max(PIPELINE.index(j) for j in jobs)
    spark = build_spark(cfg)
    windows = []
    for name in PIPELINE[: last + 1]:
        spark.sparkContext.setJobGroup(name, f"shoplake {name}")
        began = time.time()
        run_job(spark, cfg, name)
        windows.append({"job": name, "start_ms": began * 1000, "end_ms": time.time() * 1000})
        print(f"  {name}: {windows[-1]['end_ms'] / 1000 - began:.1f} s", file=sys.stderr, flush=True)
    backend = resolve_backend(spark, cfg)[0]
    spark.stop()  # closes the event log
    (log_file,) = [p for p in events.iterdir() if not p.name.startswith(".")]
    return {"windows": windows, "event_log": str(log_file), "asked": jobs, "backend": backend}


# ------------------------------------------------------------ the event log
def _event_lines(path: Path):
    """The event log's lines: one file, or (Spark 4's rolling logs, ``eventlog_v2_<app>/``)
    its ``events_<n>_<app>`` files in order."""
    files = [path]
    if path.is_dir():
        files = sorted(
            (f for f in path.iterdir() if f.name.startswith("events_")), key=lambda f: int(f.name.split("_")[1])
        )
    for file in files:
        with open(file, encoding="utf-8") as handle:
            yield from handle


def read_event_log(path: str) -> dict[str, dict]:
    """Per Spark job group: its Spark jobs (interval, call site), stages and task totals."""
    groups: dict[str, dict] = defaultdict(
        lambda: {"jobs": {}, "stages": 0, "tasks": 0, "task_s": 0.0, "input": 0, "shuffle_read": 0,
                 "shuffle_write": 0}
    )  # fmt: skip
    stage_group: dict[int, str] = {}
    job_group: dict[int, str] = {}
    for line in _event_lines(Path(path)):
        event = json.loads(line)
        kind = event["Event"]
        if kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            group = props.get("spark.jobGroup.id") or "(no group)"
            job_group[event["Job ID"]] = group
            for stage in event["Stage IDs"]:
                stage_group[stage] = group
            groups[group]["jobs"][event["Job ID"]] = {
                "start": event["Submission Time"],
                "end": None,
                "site": props.get("callSite.short") or "?",
            }
        elif kind == "SparkListenerJobEnd" and event["Job ID"] in job_group:
            groups[job_group[event["Job ID"]]]["jobs"][event["Job ID"]]["end"] = event["Completion Time"]
        elif kind == "SparkListenerStageCompleted":
            group = stage_group.get(event["Stage Info"]["Stage ID"])
            if group:
                groups[group]["stages"] += 1
        elif kind == "SparkListenerTaskEnd":
            group = stage_group.get(event["Stage ID"])
            metrics = event.get("Task Metrics") or {}
            if not group or not metrics:
                continue
            g = groups[group]
            g["tasks"] += 1
            g["task_s"] += metrics.get("Executor Run Time", 0) / 1000
            g["input"] += (metrics.get("Input Metrics") or {}).get("Bytes Read", 0)
            read = metrics.get("Shuffle Read Metrics") or {}
            g["shuffle_read"] += read.get("Remote Bytes Read", 0) + read.get("Local Bytes Read", 0)
            g["shuffle_write"] += (metrics.get("Shuffle Write Metrics") or {}).get("Shuffle Bytes Written", 0)
    return dict(groups)


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals in ms, in seconds."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total / 1000


def job_summary(window: dict, group: dict | None) -> dict:
    """One ShopLake job: wall, Spark-covered and driver-only seconds, totals, costliest call sites."""
    wall = (window["end_ms"] - window["start_ms"]) / 1000
    spark_jobs = [j for j in (group or {}).get("jobs", {}).values() if j["end"] is not None]
    covered = covered_seconds([(j["start"], j["end"]) for j in spark_jobs])
    sites: dict[str, list[float]] = defaultdict(list)
    for j in spark_jobs:
        sites[j["site"]].append((j["end"] - j["start"]) / 1000)
    top = sorted(sites.items(), key=lambda kv: -sum(kv[1]))[:TOP]
    g = group or {}
    return {
        "job": window["job"],
        "wall_s": wall,
        "spark_s": covered,
        "driver_only_s": max(0.0, wall - covered),
        "spark_jobs": len(spark_jobs),
        "stages": g.get("stages", 0),
        "tasks": g.get("tasks", 0),
        "task_s": g.get("task_s", 0.0),
        "input_mb": g.get("input", 0) / MB,
        "shuffle_read_mb": g.get("shuffle_read", 0) / MB,
        "shuffle_write_mb": g.get("shuffle_write", 0) / MB,
        "top_sites": [{"site": s, "jobs": len(t), "s": sum(t)} for s, t in top],
    }


# ------------------------------------------------------------------- py-spy
def _frame_file(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> the path relative to the project, or ``""`` outside it."""
    inside = frame[frame.rfind("(") + 1 : frame.rfind(")")] if frame.endswith(")") else ""
    path = inside.rsplit(":", 1)[0]
    root = str(PROJECT_ROOT) + "/"
    rel = path[len(root) :] if path.startswith(root) else path
    return rel if rel.startswith(PROJECT_DIRS) else ""


def read_py_spy(raw: Path, jobs: list[str]) -> dict[str, Counter]:
    """py-spy's raw (collapsed) stacks: per ShopLake job, samples by the deepest project frame."""
    by_job: dict[str, Counter] = defaultdict(Counter)
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        files = [_frame_file(f) for f in frames]
        owner = next((j for j in jobs for f in files if f.startswith((f"jobs/{j}/", f"jobs/{j}.py"))), None)
        if owner is None:
            continue
        deepest = max((i for i, f in enumerate(files) if f), default=None)
        if deepest is not None:
            frame = frames[deepest]
            by_job[owner][f"{frame[: frame.rfind(' (')]} ({files[deepest]}:{frame.rsplit(':', 1)[-1]}"] += int(count)
    return by_job


# ------------------------------------------------------------------ report
def markdown(summaries: list[dict], stacks: dict[str, Counter] | None, meta: dict) -> str:
    lines = [
        "# Where the jobs' time goes (Spark event log per job; driver stacks by py-spy)",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs (shared; load average {meta['load']:.1f} at the "
        f"end). Spark local, conf/local.yaml, {meta['backend']} backend. Spark-covered = the union of the job's "
        "Spark jobs' intervals; driver only = wall minus that (Python, Delta commits, GX bookkeeping, JVM calls "
        "that run no Spark job). Task s = summed executor run time of the job's tasks.",
        "",
        "| job | wall s | Spark-covered s | driver only s | Spark jobs | stages | tasks | task s | input MB "
        "| shuffle read MB | shuffle write MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['job']} | {s['wall_s']:.1f} | {s['spark_s']:.1f} | {s['driver_only_s']:.1f} | {s['spark_jobs']} "
            f"| {s['stages']} | {s['tasks']} | {s['task_s']:.1f} | {s['input_mb']:.1f} | {s['shuffle_read_mb']:.1f} "
            f"| {s['shuffle_write_mb']:.1f} |"
        )
    for s in summaries:
        lines += ["", f"## {s['job']}", "", "Spark jobs by the Python line that started them:", ""]
        lines += ["| call site | Spark jobs | s |", "|---|---|---|"]
        lines += [f"| `{t['site']}` | {t['jobs']} | {t['s']:.1f} |" for t in s["top_sites"]]
        if stacks is not None and stacks.get(s["job"]):
            counter = stacks[s["job"]]
            total = sum(counter.values())
            lines += ["", f"Driver samples ({total:,}, {total / RATE:.1f} s) by the deepest project frame:", ""]
            lines += ["| frame | s | share |", "|---|---|---|"]
            lines += [f"| `{frame}` | {n / RATE:.1f} | {n / total:.0%} |" for frame, n in counter.most_common(TOP)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="300x60", help="USERSxDAYS of the generated shop")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--job", action="append", default=[], help="job to report (repeatable)")
    parser.add_argument("--set", action="append", default=[], help="a config override (repeatable)")
    parser.add_argument("--py-spy", action="store_true", help="sample the driver with py-spy")
    parser.add_argument("--out", default=None, help="Markdown file for the results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # JSON output of the profiled run
    args = parser.parse_args(argv)
    jobs = args.job or ["ingest", "clean", "recommend"]
    scale = tuple(int(x) for x in args.scale.split("x"))
    if args.child:
        with tempfile.TemporaryDirectory(prefix="shoplake-profile-") as tmp:
            run = run_jobs(scale, args.seed, jobs, args.set, Path(tmp))
            run["groups"] = read_event_log(run["event_log"])
        Path(args.child).write_text(json.dumps(run), encoding="utf-8")
        return 0

    work = Path(tempfile.mkdtemp(prefix="shoplake-profile-out-"))
    try:
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--child",
                 str(work / "run.json")]  # fmt: skip
        raw = work / "stacks.txt"
        if args.py_spy:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            child = [
                spy,
                "record",
                "--idle",
                "--full-filenames",
                "-f",
                "raw",
                "-r",
                str(RATE),
                "-o",
                str(raw),
                "--",
                *child,
            ]
        subprocess.run(child, check=True, cwd=PROJECT_ROOT)
        run = json.loads((work / "run.json").read_text(encoding="utf-8"))
        summaries = [job_summary(w, run["groups"].get(w["job"])) for w in run["windows"] if w["job"] in jobs]
        stacks = read_py_spy(raw, jobs) if args.py_spy else None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "bench/profile_jobs.py " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = {"command": command, "load": os.getloadavg()[0], "backend": run["backend"]}
    text = markdown(summaries, stacks, meta)
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
