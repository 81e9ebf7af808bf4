"""Recommend and basket models: ALS training, ALS recommend-for-all and FP-growth
times at generated scales, and FP-growth on the real Groceries baskets against
mlxtend's ``fpgrowth`` (+ ``association_rules``) in the same run.

For each scale: generate the sample shop (seeded), ingest and clean it once (not
timed), build the interactions up to the last order day and the paid baskets
(persisted and counted, not timed), then per run time

- ALS training: ``jobs.recommend.candidates.fit_als`` (id indexing + implicit ALS) with the
  job's first grid point (the recommend job fits one such model per grid point,
  plus one per evaluation and one to publish);
- recommend-for-all: ``jobs.recommend.candidates.als_candidates`` for every known user
  (``common.neighbours.top_unseen`` on the factors, seen items masked, ids mapped back;
  before 2026-12-07 ``recommendForAllUsers`` with a seen-item margin and an anti-join),
  materialised with a count;
- FP-growth: ``jobs.basket.mine`` on the shop's baskets (itemsets and rules counted).

Groceries (``../shared/data/groceries/groceries.csv``, 9,835 baskets): Spark via
``jobs.basket.mine`` (baskets read and persisted once, not timed) and mlxtend on a
one-hot pandas frame (encoding not timed), both at min support 0.001 and min
confidence 0.5; each run counts itemsets and rules. arules reports 13,492 itemsets
and 5,668 rules (single-item consequents); mlxtend's rules also have multi-item
consequents, so its single-consequent count is the comparable one.

Usage::

    .venv/bin/python bench/recommend_bench.py --scale 600x120 --scale 2000x120 --scale 10000x120 --runs 3 \\
        --out bench/results/recommend.md
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

from benchargs import bench_parser, emit, per_scale, run_scales, scales_of

GROCERIES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "groceries" / "groceries.csv"
MIN_SUPPORT, MIN_CONFIDENCE = 0.001, 0.5
# The shop's baskets: the settings of tests/integration/test_recommend.py's planted-pair test.
SHOP_BASKET = {"min_support": 0.003, "min_confidence": 0.05, "min_lift": 1.0, "max_itemset_size": 3}


def run_scale(spark, users: int, days: int, runs: int, seed: int, work: Path) -> list[dict]:
    from pyspark.sql import functions as F

    from common.config import BasketConfig, load_config
    from common.delta import open_store
    from common.interactions import aggregate, raw_interactions
    from common.tables import SILVER_EVENTS, SILVER_ORDER_LINES, SILVER_ORDERS
    from jobs.basket import baskets_from_silver, mine
    from jobs.recommend.candidates import als_candidates, fit_als, grid
    from shoplake.generate import generate
    from shoplake.registry import run_job

    landing, lake = work / f"landing-{users}x{days}", work / f"lake-{users}x{days}"
    generate(landing, users, days, seed, date(2024, 1, 1))
    cfg = load_config("local", [f"lake.root={lake}", f"landing.root={landing}"])
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    store = open_store(spark, cfg)
    rc = cfg.recommend
    events, orders, lines = (store.read(s) for s in (SILVER_EVENTS, SILVER_ORDERS, SILVER_ORDER_LINES))
    as_of = orders.agg(F.max("order_time")).first()[0].date()
    train = aggregate(raw_interactions(events, orders, lines, rc.event_weights), as_of, rc.half_life_days).persist()
    baskets = baskets_from_silver(orders, lines, as_of).persist()
    n_interactions, n_users, n_baskets = train.count(), train.select("user_key").distinct().count(), baskets.count()
    params = grid(rc)[0]
    results = []
    for run in range(1, runs + 1):
        began = time.perf_counter()
        model, ids = fit_als(train, params, rc.seed, rc.bm25)
        als_s = time.perf_counter() - began
        began = time.perf_counter()
        n_recs = als_candidates(model, ids, train, None, rc.top_n).count()
        recommend_s = time.perf_counter() - began
        began = time.perf_counter()
        mined = mine(baskets, BasketConfig(**SHOP_BASKET))
        n_itemsets, n_rules = mined.itemsets.count(), mined.rules.count()
        fp_s = time.perf_counter() - began
        results.append(
            {
                "users": users, "days": days, "run": run, "interactions": n_interactions, "als_users": n_users,
                "baskets": n_baskets, "als_s": als_s, "recommend_s": recommend_s, "candidates": n_recs,
                "fp_s": fp_s, "itemsets": n_itemsets, "rules": n_rules, "params": params.as_dict(),
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    train.unpersist()
    baskets.unpersist()
    return results


def run_groceries(spark, runs: int) -> list[dict]:
    import numpy as np
    import pandas as pd
    from mlxtend.frequent_patterns import association_rules, fpgrowth
    from pyspark.sql import functions as F

    from common.config import BasketConfig
    from jobs.basket import mine

    text = GROCERIES.read_text(encoding="utf-8").splitlines()
    transactions = [sorted(set(line.split(","))) for line in text if line]
    items = sorted({i for t in transactions for i in t})
    column = {item: j for j, item in enumerate(items)}
    values = np.zeros((len(transactions), len(items)), dtype=bool)
    for row, t in enumerate(transactions):
        values[row, [column[i] for i in t]] = True
    onehot = pd.DataFrame(values, columns=items)

    baskets = (
        spark.read.text(str(GROCERIES))
        .select(F.array_sort(F.array_distinct(F.split("value", ","))).alias("items"))
        .persist()
    )
    baskets.count()
    cfg = BasketConfig(min_support=MIN_SUPPORT, min_confidence=MIN_CONFIDENCE, min_lift=0.0, max_itemset_size=10)
    results = []
    for run in range(1, runs + 1):
        began = time.perf_counter()
        mined = mine(baskets, cfg)
        spark_itemsets, spark_rules = mined.itemsets.count(), mined.rules.count()
        spark_s = time.perf_counter() - began
        began = time.perf_counter()
        frequent = fpgrowth(onehot, min_support=MIN_SUPPORT, use_colnames=True)
        rules = association_rules(frequent, metric="confidence", min_threshold=MIN_CONFIDENCE)
        mlxtend_s = time.perf_counter() - began
        single = int((rules["consequents"].map(len) == 1).sum())
        results.append(
            {
                "run": run, "baskets": len(transactions), "spark_s": spark_s, "spark_itemsets": spark_itemsets,
                "spark_rules": spark_rules, "mlxtend_s": mlxtend_s, "mlxtend_itemsets": len(frequent),
                "mlxtend_rules": len(rules), "mlxtend_single_rules": single,
            }
        )  # fmt: skip
        print(results[-1], flush=True)
    baskets.unpersist()
    return results


def _scale_lines(rows: list[dict], scales: list[tuple[int, int]]) -> list[str]:
    """The shop scales' table (one line per run) and each scale's medians."""
    med = statistics.median
    lines = [
        "| users | days | run | interactions | ALS users | ALS training s | recommend-for-all s | candidates "
        "| baskets | FP-growth s | itemsets | rules |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['users']:,} | {r['days']} | {r['run']} | {r['interactions']:,} | {r['als_users']:,} | "
            f"{r['als_s']:.1f} | {r['recommend_s']:.1f} | {r['candidates']:,} | {r['baskets']:,} | {r['fp_s']:.1f} | "
            f"{r['itemsets']:,} | {r['rules']:,} |"
        )
    lines.append("")

    def medians(mine: list[dict]) -> str:
        als, rfa, fp = (med(r[k] for r in mine) for k in ("als_s", "recommend_s", "fp_s"))
        return f"median ALS training {als:.1f} s, recommend-for-all {rfa:.1f} s, FP-growth {fp:.1f} s"

    return lines + per_scale(rows, scales, medians)


def _groceries_lines(groceries: list[dict]) -> list[str]:
    """The Groceries comparison of Spark's FP-growth with mlxtend's, per run and in medians."""
    med = statistics.median
    spark_med, mlx_med = med(g["spark_s"] for g in groceries), med(g["mlxtend_s"] for g in groceries)
    lines = [
        f"## Groceries ({groceries[0]['baskets']:,} baskets), min support {MIN_SUPPORT}, min confidence "
        f"{MIN_CONFIDENCE}",
        "",
        "Spark: `jobs.basket.mine` (FPGrowth + rule metrics; baskets persisted beforehand). mlxtend: `fpgrowth` + "
        "`association_rules` on a one-hot pandas frame (built beforehand). arules: 13,492 itemsets, 5,668 rules.",
        "",
        "| run | Spark s | Spark itemsets | Spark rules | mlxtend s | mlxtend itemsets | mlxtend rules "
        "(single-item consequent) |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in groceries:
        lines.append(
            f"| {g['run']} | {g['spark_s']:.2f} | {g['spark_itemsets']:,} | {g['spark_rules']:,} | "
            f"{g['mlxtend_s']:.2f} | {g['mlxtend_itemsets']:,} | {g['mlxtend_rules']:,} "
            f"({g['mlxtend_single_rules']:,}) |"
        )
    lines += [
        "",
        f"- median Spark {spark_med:.2f} s, median mlxtend {mlx_med:.2f} s: Spark / mlxtend = "
        f"{spark_med / mlx_med:.2f}",
    ]
    return lines


def main() -> None:
    parser = bench_parser(__doc__, runs=3, seed=7)
    args = parser.parse_args()
    scales = scales_of(args, ["600x120", "2000x120"])
    if not GROCERIES.is_file():
        parser.error(f"Groceries baskets not found at {GROCERIES}")
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret-not-for-production")

    import mlxtend

    from common.config import load_config
    from common.spark import build_spark

    cfg = load_config("local")
    spark = build_spark(cfg)
    rows = run_scales(spark, run_scale, scales, args, "recommend")
    groceries = run_groceries(spark, args.runs)
    scale_args = " ".join(f"--scale {u}x{d}" for u, d in scales)
    shuffle = spark.conf.get("spark.sql.shuffle.partitions")
    lines = [
        "# Recommend and basket benchmark: ALS, recommend-for-all, FP-growth; Groceries vs mlxtend",
        "",
        f"Command: `.venv/bin/python bench/recommend_bench.py {scale_args} --runs {args.runs} --seed {args.seed}`",
        "",
        f"Machine: {platform.platform()}, 2 CPUs shared with another engineer's Spark runs, Spark local "
        f"(conf/local.yaml, spark.sql.shuffle.partitions={shuffle}), mlxtend {mlxtend.__version__}. Absolute "
        "seconds are noisy; compare within a table.",
        "",
        f"ALS: the job's first grid point {rows[0]['params']} on all interactions up to the last order day; "
        f"recommend-for-all asks top_n={cfg.recommend.top_n} plus the seen-item margin for every known user. "
        f"FP-growth on the shop's paid baskets at {SHOP_BASKET}.",
        "",
        *_scale_lines(rows, scales),
        "",
        *_groceries_lines(groceries),
    ]
    emit(lines, args.out)
    spark.stop()


if __name__ == "__main__":
    main()
