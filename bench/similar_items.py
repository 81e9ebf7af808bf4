"""Exact similar items (common.neighbours.dense_top_k) at catalogue scale, and the
recommend job on a generated shop with a large catalogue.

``--items N`` (repeatable): random item factors (seeded normal, ``--rank`` wide,
string ids like the job's) and the exact cosine top ``--k`` of every item, written
to Spark's ``noop`` sink so everything is computed and nothing is stored. Each
scale runs in a fresh process (peak memory is per process) and records:

* wall time of the whole call (collecting and broadcasting the factors, the
  blocked products, the output rows);
* shuffle bytes written by the Spark jobs of the run (the REST status API of the
  application's UI, summed over the stages of the run's job group);
* CPU seconds (user + system) of the JVM and the Python workers during the call,
  which the shared cores' load disturbs far less than wall time;
* peak RSS of the driver's Python, of the JVM (driver and executors in local mode)
  and of the Python workers together, sampled every 0.2 s;
* the 1-minute load average before and after (the 2 cores are shared).

``--shop USERSxPRODUCTS``: generate a shop (``--days`` days, seed ``--seed``) with
that catalogue, ingest and clean it (not timed), then time ``run_job(..., "recommend")``
and record the gold.similar_items rows, by reason.

Usage::

    .venv/bin/python bench/similar_items.py --items 10000 --items 100000 --items 300000 \\
        --results bench/results/similar_items.jsonl --out bench/results/similar_items.md
    .venv/bin/python bench/similar_items.py --shop 2000x20000 \\
        --results bench/results/similar_items.jsonl --out bench/results/similar_items.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import date
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
# The UI serves the status API the shuffle figures come from; everything else as conf/local.yaml.
BENCH_CONF = ["spark.conf.spark.ui.enabled=true", "spark.conf.spark.ui.showConsoleProgress=false"]


class Sampler(threading.Thread):
    """Peak RSS of this process, of its java descendants and of its other Python descendants."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval = interval
        self.driver = self.jvm = self.workers = 0
        # CPU seconds (user + system) of each descendant, last seen: wall time on shared
        # cores depends on the load, CPU time much less.
        self.cpu: dict[int, float] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.sample()
            self._done.wait(self.interval)

    def sample(self) -> None:
        me = psutil.Process()
        self.driver = max(self.driver, me.memory_info().rss)
        jvm = workers = 0
        for child in me.children(recursive=True):
            try:
                rss = child.memory_info().rss
                name = child.name()
                times = child.cpu_times()
            except psutil.Error:
                continue
            self.cpu[child.pid] = times.user + times.system
            if "java" in name:
                jvm += rss
            elif "python" in name:
                workers += rss
        self.jvm, self.workers = max(self.jvm, jvm), max(self.workers, workers)

    def stop(self) -> None:
        self._done.set()
        self.join()
        self.sample()


def shuffle_written(spark, group: str) -> int:
    """Shuffle bytes written by the stages of the jobs in job group ``group`` (status API)."""
    sc = spark.sparkContext
    base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"
    with urllib.request.urlopen(f"{base}/jobs") as response:
        jobs = json.load(response)
    stages = {s for j in jobs if j.get("jobGroup") == group for s in j["stageIds"]}
    with urllib.request.urlopen(f"{base}/stages") as response:
        return sum(s["shuffleWriteBytes"] for s in json.load(response) if s["stageId"] in stages)


def _session(overrides: list[str]):
    from common.config import load_config
    from common.spark import build_spark

    cfg = load_config("local", [*BENCH_CONF, *overrides])
    return cfg, build_spark(cfg)


def run_items(items: int, rank: int, k: int, seed: int, overrides: list[str]) -> dict:
    """One routine scale in this process."""
    from pyspark.sql import functions as F

    from common.neighbours import dense_top_k

    _, spark = _session(overrides)
    factors = spark.range(items).select(
        F.format_string("P%07d", "id").alias("item_id"),
        F.array(*[F.randn(seed * 1000 + j) for j in range(rank)]).alias("features"),
    )
    spark.sparkContext.setJobGroup("similar", f"dense_top_k {items} items")
    load_before = os.getloadavg()
    sampler = Sampler()
    sampler.sample()
    cpu_before = dict(sampler.cpu)
    sampler.start()
    began = time.perf_counter()
    neighbours = dense_top_k(factors, k, "item_id", "features", "similar_item_id")
    neighbours.write.format("noop").mode("overwrite").save()
    wall = time.perf_counter() - began
    sampler.stop()
    rows = neighbours.count()  # after timing: how many rows the timed run produced
    out = {
        "kind": "items",
        "items": items,
        "rank": rank,
        "k": k,
        "wall_s": wall,
        "cpu_s": sum(s - cpu_before.get(pid, 0.0) for pid, s in sampler.cpu.items()),
        "shuffle_write_bytes": shuffle_written(spark, "similar"),
        "rows": rows,
        "driver_peak_mb": sampler.driver / MB,
        "jvm_peak_mb": sampler.jvm / MB,
        "workers_peak_mb": sampler.workers / MB,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    spark.stop()
    return out


def run_shop(users: int, products: int, days: int, seed: int, overrides: list[str]) -> dict:
    """Generate, ingest and clean a shop, then time the recommend job on it."""
    from pyspark.sql import functions as F

    from common.tables import GOLD_SIMILAR_ITEMS
    from shoplake.generate import generate
    from shoplake.registry import run_job

    with tempfile.TemporaryDirectory(prefix="shoplake-similar-") as tmp:
        landing, lake = Path(tmp) / "landing", Path(tmp) / "lake"
        generate(landing, users, days, seed, date(2024, 1, 1), products=products)
        cfg, spark = _session([f"lake.root={lake}", f"landing.root={landing}", *overrides])
        run_job(spark, cfg, "ingest")
        run_job(spark, cfg, "clean")
        spark.sparkContext.setJobGroup("recommend", "recommend job")
        load_before = os.getloadavg()
        sampler = Sampler()
        sampler.start()
        began = time.perf_counter()
        result = run_job(spark, cfg, "recommend")
        wall = time.perf_counter() - began
        sampler.stop()
        from common.delta import open_store

        similar = open_store(spark, cfg).read(GOLD_SIMILAR_ITEMS)
        reasons = {r["reason"]: r["count"] for r in similar.groupBy("reason").count().collect()}
        items = {
            r["reason"]: r["n"] for r in similar.groupBy("reason").agg(F.countDistinct("item_id").alias("n")).collect()
        }
        out = {
            "kind": "shop",
            "users": users,
            "products": products,
            "days": days,
            "wall_s": wall,
            "shuffle_write_bytes": shuffle_written(spark, "recommend"),
            "similar_rows": result.row_counts.get(GOLD_SIMILAR_ITEMS.name),
            "similar_rows_by_reason": reasons,
            "similar_items_by_reason": items,
            "recommendations": result.row_counts.get("gold.recommendations"),
            "chosen_params": result.metrics["chosen_params"],
            "driver_peak_mb": sampler.driver / MB,
            "jvm_peak_mb": sampler.jvm / MB,
            "workers_peak_mb": sampler.workers / MB,
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "overrides": overrides,
        }
        spark.stop()
    return out


def _cpu(row: dict, per_pairs: bool = False) -> str:
    """CPU seconds of the run (recorded since runs of 2026-12-05 19:55), or per million ordered pairs."""
    if "cpu_s" not in row:
        return "-"
    if per_pairs:
        return f"{row['cpu_s'] / (row['items'] * (row['items'] - 1) / 1e6):.4f}"
    return f"{row['cpu_s']:.1f}"


def write_markdown(rows: list[dict], out: Path) -> None:
    lines = [
        "# Similar items benchmark",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with two other engineers' work "
        "(1-minute load average before / after each run in the table), Spark local[2], conf/local.yaml "
        "(driver 4g) with the UI on for the status API. Each row is a fresh process.",
        "",
        "## Exact cosine top-k (`common.neighbours.dense_top_k`), random factors",
        "",
        "| items | rank | k | wall s | JVM + workers CPU s | CPU s per million pairs | shuffle written "
        "| driver Python peak MB | JVM peak MB | Python workers peak MB | rows | load before / after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted((r for r in rows if r["kind"] == "items"), key=lambda r: r["items"]):
        lines.append(
            f"| {r['items']:,} | {r['rank']} | {r['k']} | {r['wall_s']:.1f} | {_cpu(r)} | {_cpu(r, per_pairs=True)} "
            f"| {r['shuffle_write_bytes']:,} B "
            f"| {r['driver_peak_mb']:.0f} | {r['jvm_peak_mb']:.0f} | {r['workers_peak_mb']:.0f} | {r['rows']:,} "
            f"| {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} |"
        )
    shops = [r for r in rows if r["kind"] == "shop"]
    if shops:
        lines += [
            "",
            "## `recommend` job on a generated shop (ingest and clean not timed)",
            "",
            "| users x products x days | recommend s | shuffle written | gold.similar_items rows (items) by reason "
            "| driver Python / JVM / workers peak MB | load before / after | overrides |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in shops:
            by = ", ".join(
                f"{k} {v:,} ({r['similar_items_by_reason'].get(k, 0):,})"
                for k, v in sorted(r["similar_rows_by_reason"].items())
            )
            lines.append(
                f"| {r['users']:,} x {r['products']:,} x {r['days']} | {r['wall_s']:.1f} "
                f"| {r['shuffle_write_bytes'] / MB:,.1f} MiB | {by} "
                f"| {r['driver_peak_mb']:.0f} / {r['jvm_peak_mb']:.0f} / {r['workers_peak_mb']:.0f} "
                f"| {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} | `{' '.join(r['overrides']) or '-'}` |"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def run_fresh(command: list[str], label: str, results: Path) -> dict:
    """Run one measurement in a fresh process (its own JVM), append the row it prints
    after ``RESULT `` to the ``results`` JSON lines, and return it."""
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
    found = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not found:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"{label} failed (exit {done.returncode})")
    row = json.loads(found[0])
    print(row, flush=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    with results.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, action="append", default=[], help="catalogue size (repeatable)")
    parser.add_argument("--shop", action="append", default=[], help="USERSxPRODUCTS for the recommend job")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--results", default="bench/results/similar_items.jsonl")
    parser.add_argument("--out", default="bench/results/similar_items.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one scale in this process
    args = parser.parse_args()
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")
    if args.one:
        kind, value = args.one.split("=")
        if kind == "items":
            row = run_items(int(value), args.rank, args.k, args.seed, args.overrides)
        else:
            users, products = (int(x) for x in value.split("x"))
            row = run_shop(users, products, args.days, args.seed, args.overrides)
        print("RESULT " + json.dumps(row), flush=True)
        return
    results = Path(args.results)
    for one in [f"items={n}" for n in args.items] + [f"shop={s}" for s in args.shop]:
        command = [sys.executable, __file__, "--one", one, "--rank", str(args.rank), "--k", str(args.k)]
        command += ["--days", str(args.days), "--seed", str(args.seed)]
        command += [x for o in args.overrides for x in ("--set", o)]
        run_fresh(command, one, results)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_markdown(rows, Path(args.out))


if __name__ == "__main__":
    main()
