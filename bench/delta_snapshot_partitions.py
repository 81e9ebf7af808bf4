"""delta-spark on small tables: time of a write sequence with ``spark.databricks.delta.snapshotPartitions``
at Delta's default (50) and at a local value, alternated in one process.

delta-spark rebuilds a table's state from its log (the snapshot) in that many
partitions whenever it needs it: to plan a write, a MERGE, a read. On a laptop or a
test machine with two cores and tables of a few files, 50 partitions are 50 tasks of
pure overhead per snapshot. Each run writes one fresh table through
:class:`common.delta.DeltaStore` (delta-spark): 6 appends, 3 merges and a count, the
kind of commit sequence a job's bookkeeping table sees. The values are alternated so
both see the same machine load; the first run of the process (JVM warm-up) is left out.

Usage::

    .venv/bin/python bench/delta_snapshot_partitions.py --runs 3 --out bench/results/delta_snapshot_partitions.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--local", default="4", help="the value conf/local.yaml sets")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from common.config import load_config
    from common.delta import open_store
    from common.spark import build_spark
    from common.tables import OPS_STREAM_PROGRESS as TABLE

    root = Path(tempfile.mkdtemp(prefix="shoplake-snapshot-"))

    def config(folder: Path):
        return load_config("local", [f"lake.root={folder}", "lake.backend=delta-spark"])

    spark = build_spark(config(root / "warm"))

    def batch(i: int):
        rows = [
            {"run_id": "r", "query": "q", "batch_id": i * 10 + j, "started_at": datetime(2024, 1, 1),
             "input_rows": 1, "batch_duration_ms": 5, "state_rows": 0}
            for j in range(10)
        ]  # fmt: skip
        return spark.createDataFrame(rows, TABLE.schema)

    def write_sequence(folder: Path) -> float:
        store = open_store(spark, config(folder))
        began = time.perf_counter()
        for i in range(6):
            store.append(TABLE, batch(i))
        for i in range(3):
            store.merge(TABLE, batch(i))
        assert store.read(TABLE).count() == 60
        return time.perf_counter() - began

    write_sequence(root / "warm")  # JVM and Delta warm-up, not recorded
    times: dict[str, list[float]] = {"50": [], args.local: []}
    loads = []
    for run in range(args.runs):
        for value in times:
            spark.conf.set("spark.databricks.delta.snapshotPartitions", value)
            times[value].append(write_sequence(root / f"run{run}_{value}"))
            loads.append(os.getloadavg()[0])
            print(f"snapshotPartitions={value}: {times[value][-1]:.1f}s", flush=True)
    spark.stop()

    default, local = statistics.median(times["50"]), statistics.median(times[args.local])
    lines = [
        "# delta-spark snapshot partitions on small tables",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Spark local[2] (conf/local.yaml), "
        f"{time.strftime('%Y-%m-%d %H:%M')} UTC, 1-minute load {min(loads):.1f}-{max(loads):.1f} "
        "(shared machine). One table, 6 appends + 3 merges + a count per run, values alternated in one process.",
        "",
        "| snapshotPartitions | runs (s) | median s |",
        "|---|---|---|",
        f"| 50 (Delta's default) | {', '.join(f'{t:.1f}' for t in times['50'])} | {default:.1f} |",
        f"| {args.local} (conf/local.yaml) | {', '.join(f'{t:.1f}' for t in times[args.local])} | {local:.1f} |",
        "",
        f"Median ratio default / local: **{default / local:.2f}x**.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
