"""End-to-end latency of `shoplake stream`: from an event file's arrival in the landing
folder to its micro-batch's rows in gold.live_funnel, at two or more delivery rates.

For each rate: `shoplake stream` starts in its own process (delta-rs by default,
`stream.trigger_seconds=1`); once its queries run, `generate --stream`'s `replay`
delivers a generated shop's events at that many lines per second in one-second files
for `--seconds`; the stream is then given time to catch up and stopped with SIGTERM.

A file's latency is the time from its arrival (its modification time: replay writes it
under a hidden name, then renames it) to the commit of the silver.events micro-batch that
read it (the query's checkpoint `commits/<batch>` file, written after the batch's rows are
in silver and the live tables are refreshed: an upper bound on when they are in
gold.live_funnel). The sustained rate is the events per second the stream took in while
keeping up: it is the delivery rate when every file was processed before the stop.

    .venv/bin/python bench/stream.py --rate 100 --rate 1000 --seconds 90 --out bench/results/stream.md
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.generate.live import replay  # noqa: E402

EVENTS_PER_USER_DAY = 1.2  # generated shops: about 107k events at 1,000 users x 90 days


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def batch_files(checkpoint: Path) -> dict[int, list[str]]:
    """batch id -> the landing files it read (the file source's log in the checkpoint)."""
    out: dict[int, list[str]] = {}
    for entry in (checkpoint / "sources" / "0").iterdir():
        if entry.name.isdigit():
            lines = entry.read_text().splitlines()[1:]  # after the "v1" header
            out[int(entry.name)] = [Path(json.loads(line)["path"].removeprefix("file://")).name for line in lines]
    return out


@contextmanager
def _folder(keep: bool) -> Iterator[str]:
    if keep:
        yield tempfile.mkdtemp(prefix="shoplake-bench-stream-")
    else:
        with tempfile.TemporaryDirectory(prefix="shoplake-bench-stream-") as tmp:
            yield tmp


def one_rate(
    rate: float, seconds: float, backend: str, days: int, seed: int, catch_up: float, keep: bool, extra: list[str]
) -> dict:
    load = os.getloadavg()[0]
    with _folder(keep) as tmp:
        root = Path(tmp)
        landing, lake = root / "landing", root / "lake"
        (landing / "shop" / "events").mkdir(parents=True)
        sets = [
            f"lake.backend={backend}", f"lake.root={lake}", f"landing.root={landing}",
            "stream.trigger_seconds=1", "stream.max_files_per_trigger=10",
            "spark.conf.spark.sql.shuffle.partitions=2", "spark.conf.spark.ui.enabled=false", *extra,
        ]  # fmt: skip
        env = {**os.environ, "SHOPLAKE_PSEUDONYM_SECRET": os.environ.get("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret")}
        command = [sys.executable, "-m", "jobs.cli", "stream", *(a for s in sets for a in ("--set", s))]
        log = open(root / "stream.log", "wb")  # noqa: SIM115 - kept open while the process runs
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
        try:
            checkpoint = lake / "_checkpoints" / "stream_shop_events" / "silver.events"
            # Warm-up: a first file, and its batch committed, before the clock starts: the
            # latency of a running stream, not of the JVM and Python workers starting.
            warm_up = replay(
                root / "warm-up", rate=20, late_share=0.0, users=5, days=1, seed=seed, start_date=date(2024, 2, 29)
            )
            shutil.copy(
                root / "warm-up" / "shop" / "events" / warm_up["files"][0]["name"],
                landing / "shop" / "events" / "warm_up.jsonl",
            )
            started = time.monotonic()
            while not (checkpoint / "commits" / "0").exists():
                if proc.poll() is not None or time.monotonic() - started > 300:
                    raise RuntimeError((root / "stream.log").read_text()[-3000:])
                time.sleep(0.2)
            users = max(10, round(rate * seconds / (EVENTS_PER_USER_DAY * days)))
            delivered_at = time.monotonic()
            manifest = replay(
                landing, rate=rate, chunk_seconds=1.0, late_share=0.0, users=users, days=days, seed=seed,
                start_date=date(2024, 3, 1),
            )  # fmt: skip
            delivery_seconds = time.monotonic() - delivered_at
            names = {f["name"] for f in manifest["files"]}
            deadline = time.monotonic() + catch_up
            while time.monotonic() < deadline:
                committed = {int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit()}
                read = batch_files(checkpoint) if (checkpoint / "sources" / "0").exists() else {}
                if names <= {n for b, files in read.items() if b in committed for n in files}:
                    break
                time.sleep(1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # stops the queries (and records the run)
            proc.wait(timeout=120)
            log.close()

        arrival = {p.name: p.stat().st_mtime for p in (landing / "shop" / "events").glob("live_*.jsonl")}  # not warm_up
        commits = {int(p.name): p.stat().st_mtime for p in (checkpoint / "commits").iterdir() if p.name.isdigit()}
        latencies = []
        for batch, files in batch_files(checkpoint).items():
            if batch in commits:
                latencies += [commits[batch] - arrival[f] for f in files if f in arrival]
        processed = len(latencies)
        lines_per_file = manifest["lines"] / max(1, len(manifest["files"]))
        return {
            "rate": rate,
            "backend": backend,
            "load_before": round(load, 1),
            "settings": " ".join(extra),
            "users": users,
            "days": days,
            "events": manifest["lines"],
            "files": len(manifest["files"]),
            "files_processed": processed,
            "delivery_s": round(delivery_seconds, 1),
            "lines_per_file": round(lines_per_file, 1),
            "batches": len(commits),
            "p50_s": round(statistics.median(latencies), 2) if latencies else None,
            "p95_s": round(percentile(latencies, 0.95), 2) if latencies else None,
            "max_s": round(max(latencies), 2) if latencies else None,
            "kept_up": processed == len(manifest["files"]),
        }


def markdown(rows: list[dict], command: str) -> str:
    out = [
        "# `shoplake stream`: file arrival to gold.live_funnel (issue #22)",
        "",
        f"`{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (shared: the "
        "1-minute load average before each rate is in the table).",
        "",
        "| delivered events/s | backend | settings | load before | events | files | micro-batches "
        "| all files processed | p50 latency s | p95 latency s | max s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept_up = "yes" if r["kept_up"] else f"no ({r['files_processed']})"
        out.append(
            f"| {r['rate']:,.0f} | {r['backend']} | {r['settings'] or 'shipped'} | {r['load_before']} "
            f"| {r['events']:,} | {r['files']} | "
            f"{r['batches']} | {kept_up} | {r['p50_s']} | {r['p95_s']} | {r['max_s']} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, action="append", default=[], help="events per second (repeatable)")
    parser.add_argument("--seconds", type=float, default=60, help="delivery time per rate")
    parser.add_argument("--days", type=int, default=30, help="days of the generated shop")
    parser.add_argument("--backend", default="delta-rs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--catch-up", type=float, default=120, help="seconds the stream may take after delivery")
    parser.add_argument("--out", default=None)
    parser.add_argument("--set", action="append", default=[], help="a config override for the stream (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep each rate's folder (lake, landing, stream.log)")
    args = parser.parse_args(argv)
    rows = []
    for rate in args.rate or [100.0, 1000.0]:
        row = one_rate(rate, args.seconds, args.backend, args.days, args.seed, args.catch_up, args.keep, args.set)
        print(json.dumps(row), flush=True)
        rows.append(row)
    text = markdown(rows, "python bench/stream.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
