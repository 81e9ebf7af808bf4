"""Identity resolution (the ``clean`` job's people step) on generated registrations.

``--records N`` (repeatable): a shop of about N registrations (N / 1.03 people, of whom
3% registered twice with realistic variation: ``generate(duplicates="varied")``), one
day of activity, seed ``--seed``; ingested into bronze (not timed). Then, per
``--method`` (``splink`` and, for contrast, ``exact``), ``jobs.clean.resolve_people`` on
the prepared registrations, materialised (every registration's ``user_key`` collected
to the driver), exactly as ``clean`` runs it. Each scale and method runs ``--runs``
times, each run in a fresh process, and records:

* wall time of the step (exact keys, Splink's training, prediction and clustering,
  connected components, the user keys), and Splink's own seconds from the run facts;
* CPU seconds (user + system) of the JVM, the Python workers and this process during
  the step (``similar_items.Sampler``), which the shared cores' load disturbs far less;
* pair recall and precision against the manifest's planted pairs: recall is the share
  of planted [first, second] registrations under one ``user_key``, precision the share
  of registration pairs under one ``user_key`` that are planted pairs;
* links at or above the threshold, people found, people generated;
* the 1-minute load average before and after (the 2 cores are shared).

Usage::

    .venv/bin/python bench/identity.py --records 20000 --runs 3 \\
        --results bench/results/identity.jsonl --out bench/results/identity.md
    .venv/bin/python bench/identity.py --records 200000 --runs 1 --method splink \\
        --results bench/results/identity.jsonl --out bench/results/identity.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psutil
from similar_items import Sampler, run_fresh

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-not-for-production"


def run_one(records: int, method: str, seed: int, overrides: list[str]) -> dict:
    """Generate and ingest a shop of about ``records`` registrations, then time the people step."""
    from common.config import load_config
    from common.delta import open_store
    from common.identity import pairwise_scores
    from common.spark import build_spark
    from common.tables import BRONZE_CUSTOMERS
    from jobs.clean.identity import prepare_customers, resolve_people
    from shoplake.generate import VARIED_DUP_SHARE, generate
    from shoplake.registry import run_job

    users = round(records / (1 + VARIED_DUP_SHARE))
    with tempfile.TemporaryDirectory(prefix="shoplake-identity-") as tmp:
        landing, lake, scratch = Path(tmp) / "landing", Path(tmp) / "lake", Path(tmp) / "scratch"
        scratch.mkdir()
        manifest = generate(landing, users, 1, seed, date(2024, 1, 1), duplicates="varied")
        cfg = load_config(
            "local",
            [
                f"lake.root={lake}",
                f"landing.root={landing}",
                f"clean.identity.method={method}",
                f"clean.identity.splink.scratch_dir={scratch}",
                *overrides,
            ],
        )
        spark = build_spark(cfg)
        run_job(spark, cfg, "ingest")
        customers = prepare_customers(open_store(spark, cfg).read(BRONZE_CUSTOMERS), cfg).persist()
        registrations = customers.count()
        load_before = os.getloadavg()
        sampler, me = Sampler(), psutil.Process()
        sampler.sample()
        cpu_before, own_before = dict(sampler.cpu), sum(me.cpu_times()[:2])
        sampler.start()
        began = time.perf_counter()
        people, facts = resolve_people(customers, cfg, SECRET.encode(), spark)
        keys = {r["record_id"]: r["user_key"] for r in people.select("record_id", "user_key").collect()}
        wall = time.perf_counter() - began
        sampler.stop()
        cpu = sum(t - cpu_before.get(pid, 0.0) for pid, t in sampler.cpu.items())
        cpu += sum(me.cpu_times()[:2]) - own_before
        load_after = os.getloadavg()
        truth = {r: r for r in keys} | {f"shop:{b}": f"shop:{a}" for a, b in manifest["customer_duplicates"]}
        scores = pairwise_scores(truth, keys)
        found = sum(keys[f"shop:{a}"] == keys[f"shop:{b}"] for a, b in manifest["customer_duplicates"])
        out = {
            "records": records,
            "registrations": registrations,
            "users": users,
            "planted_pairs": len(manifest["customer_duplicates"]),
            "planted_found": found,
            "method": method,
            "wall_s": wall,
            "cpu_s": cpu,
            "splink_s": facts.get("seconds"),
            "links": facts.get("links"),
            "people": len(set(keys.values())),
            "recall": scores["recall"],
            "precision": scores["precision"],
            "f1": scores["f1"],
            "load_before": load_before,
            "load_after": load_after,
            "overrides": overrides,
            "when": time.strftime("%Y-%m-%d %H:%M"),
        }
        customers.unpersist()
        spark.stop()
    return out


def write_markdown(rows: list[dict], out: Path) -> None:
    lines = [
        "# Identity resolution benchmark",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs shared with other work (the 1-minute load "
        "average before / after each run is in the table), Spark local[2], conf/local.yaml. Each row is a "
        'fresh process: generate (`duplicates="varied"`, one day), ingest (not timed), then '
        "`jobs.clean.resolve_people` on the prepared registrations, collected (timed).",
        "",
        "Recall: planted [first, second] registrations under one `user_key`. Precision: registration pairs "
        "under one `user_key` that are planted pairs.",
        "",
        "| registrations | method | wall s | CPU s | Splink s | links | people found / generated | planted pairs found "
        "| recall | precision | F1 | load before / after | when | overrides |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["records"], r["method"], r["when"])):
        splink = "-" if r["splink_s"] is None else f"{r['splink_s']:.1f}"
        links = "-" if r["links"] is None else f"{r['links']:,}"
        lines.append(
            f"| {r['registrations']:,} | {r['method']} | {r['wall_s']:.1f} "
            f"| {'-' if 'cpu_s' not in r else format(r['cpu_s'], '.1f')} | {splink} | {links} "
            f"| {r['people']:,} / {r['users']:,} | {r['planted_found']:,} of {r['planted_pairs']:,} "
            f"| {r['recall']:.3f} | {r['precision']:.3f} | {r['f1']:.3f} "
            f"| {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f} | {r['when']} "
            f"| `{' '.join(r['overrides']) or '-'}` |"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, action="append", default=[], help="registrations (repeatable)")
    parser.add_argument("--method", action="append", choices=["splink", "exact"], default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override")
    parser.add_argument("--results", default="bench/results/identity.jsonl")
    parser.add_argument("--out", default="bench/results/identity.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: RECORDS:METHOD in this process
    args = parser.parse_args()
    os.environ.setdefault("SHOPLAKE_PSEUDONYM_SECRET", SECRET)
    if args.one:
        records, method = args.one.split(":")
        print("RESULT " + json.dumps(run_one(int(records), method, args.seed, args.overrides)), flush=True)
        return
    results = Path(args.results)
    for records in args.records or [20_000]:
        for method in args.method or ["splink", "exact"]:
            for _ in range(args.runs):
                command = [sys.executable, __file__, "--one", f"{records}:{method}", "--seed", str(args.seed)]
                command += [x for o in args.overrides for x in ("--set", o)]
                run_fresh(command, f"{records} {method}", results)
    rows = [json.loads(line) for line in results.read_text(encoding="utf-8").splitlines() if line.strip()]
    write_markdown(rows, Path(args.out))


if __name__ == "__main__":
    main()
