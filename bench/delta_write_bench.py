"""Write a large table through RsDeltaStore and measure time and memory.

The claim under test: the delta-rs backend writes without pulling the table
into the Python driver, so the driver's peak memory stays far below the table's
in-memory (Arrow) size, and the JVM does with a modest ``spark.driver.memory``.

Each run is a fresh process (peak RSS is per process). For every run it records:

* wall time of ``store.overwrite`` and rows/s;
* the Python driver's peak RSS (``ru_maxrss``) and its RSS just before the write;
* the JVM's peak RSS (``VmHWM`` of the java child, sampled every 0.2 s);
* the table's size: Parquet on disk, Parquet uncompressed (footers) and an Arrow
  in-memory estimate (``nbytes`` of a 200k-row sample scaled to all rows),
  measured after the write so it does not inflate the peak.

Usage::

    .venv/bin/python bench/delta_write_bench.py --rows 20000000 --runs 3 \\
        --out bench/results/delta_write.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024


# ------------------------------------------------------------- process memory
def _status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` figure in kB (0 when the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _java_descendants(pid: int) -> list[int]:
    """PIDs of java processes started (directly or via scripts) by ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo.extend(children.get(child, []))
        try:
            if b"java" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]:
                found.append(child)
        except OSError:
            continue
    return found


class JvmSampler(threading.Thread):
    """Samples the JVM's RSS and high-water mark until stopped."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak_rss_kb = 0
        self.hwm_kb = 0
        self.py_peak_rss_kb = 0  # this (driver) process, sampled over the same window
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self._sample()
            self._done.wait(self.interval)

    def _sample(self) -> None:
        self.py_peak_rss_kb = max(self.py_peak_rss_kb, _status_kb(os.getpid(), "VmRSS"))
        for pid in self.pids:
            self.peak_rss_kb = max(self.peak_rss_kb, _status_kb(pid, "VmRSS"))
            self.hwm_kb = max(self.hwm_kb, _status_kb(pid, "VmHWM"))

    def stop(self) -> None:
        self._done.set()
        self.join()
        self._sample()


# ---------------------------------------------------------------- one run
def _bench_table():
    from pyspark.sql import types as T

    from common.tables import TableSpec

    schema = T.StructType(
        [
            T.StructField("id", T.LongType(), False),
            T.StructField("user", T.StringType()),
            T.StructField("amount", T.DecimalType(18, 2)),
            T.StructField("ts", T.TimestampType()),
            T.StructField("flag", T.BooleanType()),
        ]
    )
    return TableSpec("ops.bench_delta_write", schema, keys=("id",))


def _bench_rows(spark, rows: int):
    """``rows`` generated rows of every common type, computed lazily from ``spark.range``."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    return spark.range(rows).select(
        F.col("id"),
        F.concat(F.lit("user_"), (F.col("id") % 1_000_003).cast("string")).alias("user"),
        ((F.col("id") % 1_000_000).cast(T.DecimalType(18, 0)) / 100).cast(T.DecimalType(18, 2)).alias("amount"),
        # 2024-01-01 plus a bit over a second per row, with microseconds set.
        F.expr("timestamp_micros(1704067200000000 + id * 1000003)").alias("ts"),
        (F.col("id") % 3 == 0).alias("flag"),
    )


def _table_sizes(files: list[str], rows: int) -> dict:
    """On disk, uncompressed in Parquet, and as Arrow (estimated from the first 200,000 rows), in MB."""
    import pyarrow.parquet as pq

    on_disk = sum(os.path.getsize(f) for f in files)
    uncompressed = 0
    for f in files:
        meta = pq.read_metadata(f)
        uncompressed += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    sample = next(pq.ParquetFile(files[0]).iter_batches(batch_size=200_000))
    return {
        "parquet_on_disk_mb": on_disk / MB,
        "parquet_uncompressed_mb": uncompressed / MB,
        "arrow_estimate_mb": sample.nbytes / sample.num_rows * rows / MB,
    }


def run_once(rows: int, driver_memory: str, lake: str) -> dict:
    """Write ``rows`` rows in this process and return the measurements."""
    from deltalake import DeltaTable

    from common.config import load_config
    from common.delta.rs_store import RsDeltaStore
    from common.spark import build_spark

    cfg = load_config(
        "local",
        overrides=[
            f"lake.root={lake}",
            "lake.backend=delta-rs",
            f"spark.conf.spark.driver.memory={driver_memory}",
            "spark.conf.spark.ui.enabled=false",
        ],
    )
    spark = build_spark(cfg)
    spec = _bench_table()
    df = _bench_rows(spark, rows)
    store = RsDeltaStore(spark, cfg.lake_root, target_file_rows=cfg.lake.target_file_rows)

    jvm_pids = _java_descendants(os.getpid())
    sampler = JvmSampler(jvm_pids)
    sampler.start()
    py_rss_before_kb = _status_kb(os.getpid(), "VmRSS")
    started = time.perf_counter()
    version = store.overwrite(spec, df)
    wall = time.perf_counter() - started
    sampler.stop()
    # Lifetime peak of this process; nothing big has been read into Python yet.
    py_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    # Table size, measured after the peak was taken.
    dt = DeltaTable(store.path(spec))
    files = dt.file_uris()
    sizes = _table_sizes(files, rows)
    committed_rows = dt.count()
    spark_rows = store.read(spec).count()
    spark.stop()
    assert committed_rows == rows == spark_rows, (committed_rows, spark_rows, rows)
    return {
        "rows": rows,
        "version": version,
        "wall_s": wall,
        "rows_per_s": rows / wall,
        "files": len(files),
        "py_rss_before_mb": py_rss_before_kb / 1024,
        "py_peak_rss_mb": py_peak_kb / 1024,
        "py_peak_rss_during_write_mb": sampler.py_peak_rss_kb / 1024,
        "jvm_peak_rss_mb": max(sampler.hwm_kb, sampler.peak_rss_kb) / 1024,
        "jvm_pids": jvm_pids,
        **sizes,
    }


# ------------------------------------------------------------------ driver
def _markdown(results: list[dict], args: argparse.Namespace, command: str) -> str:
    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    lines = [
        "# Delta write benchmark (RsDeltaStore, delta-rs commit of Spark-written Parquet)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1024**3:.0f} GiB RAM "
        "(shared and noisy). Spark local[2], "
        f"spark.driver.memory={args.driver_memory}, target_file_rows=2,000,000.",
        "",
        "Table: `spark.range(N)` with id long, user string, amount decimal(18,2), "
        "ts timestamp (microseconds), flag boolean. Each run is a fresh process.",
        "",
        "| run | rows | wall s | rows/s | files | Python RSS before write MB "
        "| Python peak RSS during write MB | Python peak RSS (lifetime) MB | JVM peak RSS MB "
        "| Parquet on disk MB | Parquet uncompressed MB | Arrow in-memory MB (est.) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(results, 1):
        lines.append(
            f"| {i} | {r['rows']:,} | {r['wall_s']:.1f} | {r['rows_per_s']:,.0f} | {r['files']} "
            f"| {r['py_rss_before_mb']:.0f} | {r['py_peak_rss_during_write_mb']:.0f} "
            f"| {r['py_peak_rss_mb']:.0f} | {r['jvm_peak_rss_mb']:.0f} "
            f"| {r['parquet_on_disk_mb']:.0f} | {r['parquet_uncompressed_mb']:.0f} "
            f"| {r['arrow_estimate_mb']:.0f} |"
        )
    arrow = med("arrow_estimate_mb")
    lines += [
        "",
        f"Median: {med('wall_s'):.1f} s, {med('rows_per_s'):,.0f} rows/s; Python driver peak "
        f"{med('py_peak_rss_mb'):.0f} MB = {med('py_peak_rss_mb') / arrow:.0%} of the table's "
        f"Arrow size ({arrow:.0f} MB); JVM peak {med('jvm_peak_rss_mb'):.0f} MB "
        f"with a {args.driver_memory} heap limit.",
        "",
        "Python peak RSS is `ru_maxrss` of the driver process over its whole life (imports, "
        "session start, the write); it does not grow with the row count because only Parquet "
        "footers pass through Python. JVM peak RSS is the java process's `VmHWM` (sampled).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--driver-memory", default="2g")
    parser.add_argument("--out", type=Path, help="write the results as Markdown here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        lake = tempfile.mkdtemp(prefix="shoplake-bench-")
        try:
            print("RESULT " + json.dumps(run_once(args.rows, args.driver_memory, lake)), flush=True)
        finally:
            shutil.rmtree(lake, ignore_errors=True)
        return 0

    results = []
    for i in range(args.runs):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", "--rows", str(args.rows), "--driver-memory", args.driver_memory],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        out = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not out:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
            raise SystemExit(f"run {i + 1} failed with exit code {proc.returncode}")
        result = json.loads(out[-1][len("RESULT ") :])
        print(json.dumps(result), flush=True)
        results.append(result)

    command = "python bench/delta_write_bench.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    report = _markdown(results, args, command)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
