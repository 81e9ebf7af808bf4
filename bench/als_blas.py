"""ALS training with the system's native BLAS/LAPACK (OpenBLAS, `make blas`) and with
Spark's Java fallback, alternating in one run.

Spark ML finds native BLAS through dev.ludovic.netlib, which loads ``libblas.so.3``
and ``liblapack.so.3``; when they are missing it logs a warning and uses Java code.
The ``java`` mode forces that fallback on a machine that has the libraries by naming
a library that does not exist (``-Ddev.ludovic.netlib.{blas,lapack}.nativeLib``), so
both modes run on the same machine in the same run. Each fit is a fresh process (the
JVM option only applies at start); the implementation Spark actually used is read
from the JVM and recorded, so a run that silently fell back is visible.

Data: seeded synthetic implicit feedback (users pick items with Zipf-like
popularity), ALS with ShopLake's settings (implicitPrefs, nonnegative false).

Usage::

    .venv/bin/python bench/als_blas.py --runs 3 --out bench/results/als_blas.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODES = {
    "native": [],
    # A library name that cannot load: netlib falls back to its Java implementation.
    "java": [
        "-Ddev.ludovic.netlib.blas.nativeLib=libshoplake-no-such-blas.so",
        "-Ddev.ludovic.netlib.lapack.nativeLib=libshoplake-no-such-lapack.so",
    ],
}


def implementations(spark) -> dict[str, str]:
    """Class names of the BLAS and LAPACK implementations netlib picked in this JVM."""
    jvm = spark.sparkContext._jvm
    out = {}
    for name, holder in (("blas", jvm.dev.ludovic.netlib.blas.BLAS), ("lapack", jvm.dev.ludovic.netlib.lapack.LAPACK)):
        out[name] = holder.getInstance().getClass().getName()
    try:
        jvm.dev.ludovic.netlib.blas.NativeBLAS.getInstance()
        out["native_blas_loads"] = "yes"
    except Exception as exc:  # noqa: BLE001 - py4j wraps the JVM's error; its absence is the finding
        out["native_blas_loads"] = f"no ({type(exc).__name__})"
    return out


def fit_once(mode: str, users: int, items: int, rows: int, rank: int, iters: int, seed: int) -> dict:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    options = " ".join(MODES[mode])
    spark = (
        SparkSession.builder.master("local[2]")
        .appName(f"als-blas-{mode}")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", options)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # Zipf-like item popularity: item = floor(items * u^3) puts most picks on few items.
    data = (
        spark.range(rows)
        .select(
            (F.rand(seed) * users).cast("int").alias("user"),
            (F.pow(F.rand(seed + 1), 3) * items).cast("int").alias("item"),
            (F.floor(F.rand(seed + 2) * 3) + 1).cast("float").alias("weight"),
        )
        .groupBy("user", "item")
        .agg(F.sum("weight").alias("weight"))
        .cache()
    )
    n = data.count()
    als = ALS(
        rank=rank,
        maxIter=iters,
        regParam=0.1,
        alpha=20.0,
        implicitPrefs=True,
        userCol="user",
        itemCol="item",
        ratingCol="weight",
        seed=seed,
        coldStartStrategy="drop",
    )
    began = time.perf_counter()
    model = als.fit(data)
    model.itemFactors.count()
    wall = time.perf_counter() - began
    out = {"mode": mode, "rows": n, "rank": rank, "iters": iters, "fit_s": wall, **implementations(spark)}
    out["load"] = os.getloadavg()[0]
    spark.stop()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="bench/results/als_blas.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one fit in this process
    args = parser.parse_args()
    shape = (args.users, args.items, args.rows, args.rank, args.iters, args.seed)
    if args.one:
        print("RESULT " + json.dumps(fit_once(args.one, *shape)), flush=True)
        return
    results = []
    for run in range(args.runs):
        for mode in MODES:  # alternate, so load drifts hit both modes alike
            command = [sys.executable, __file__, "--one", mode] + [
                x
                for k, v in zip(("users", "items", "rows", "rank", "iters", "seed"), shape)
                for x in (f"--{k}", str(v))
            ]
            done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
            found = [line[7:] for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not found:
                sys.stderr.write(done.stderr[-4000:])
                raise SystemExit(f"{mode} run {run} failed (exit {done.returncode})")
            row = json.loads(found[0]) | {"run": run}
            print(row, flush=True)
            results.append(row)
    write_markdown(results, Path(args.out), args)


def write_markdown(results: list[dict], out: Path, args: argparse.Namespace) -> None:
    median = {m: statistics.median(r["fit_s"] for r in results if r["mode"] == m) for m in MODES}
    lines = [
        "# ALS with native and Java BLAS",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work (load average at the end of "
        f"each fit in the table), Spark local[2]. ALS implicit, rank {args.rank}, {args.iters} iterations, "
        f"{args.users:,} users x {args.items:,} items, {results[0]['rows']:,} user-item pairs (seed {args.seed}). "
        "Each fit is a fresh process; the modes alternate.",
        "",
        "| run | mode | fit s | BLAS | LAPACK | native BLAS loads | load |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['run']} | {r['mode']} | {r['fit_s']:.1f} | {r['blas'].rsplit('.', 1)[-1]} "
            f"| {r['lapack'].rsplit('.', 1)[-1]} | {r['native_blas_loads']} | {r['load']:.1f} |"
        )
    lines += [
        "",
        f"Median fit: native {median['native']:.1f} s, Java {median['java']:.1f} s; "
        f"Java / native = {median['java'] / median['native']:.2f}.",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
