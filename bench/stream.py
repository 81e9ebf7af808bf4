"""End-to-end latency of `shoplake stream`: from an event file's arrival in the landing
folder to its micro-batch's rows in gold.live_funnel, at two or more delivery rates.

For each rate: `shoplake stream` starts in its own process (delta-rs by default, the
shipped triggers); once its queries run, `generate --stream`'s `replay` delivers a
generated shop's events at that many lines per second in files of `--file-seconds`
of events for `--seconds`; the stream is then given time to catch up and stopped
with SIGTERM.

A file's latency is the time from its arrival (its modification time: replay writes it
under a hidden name, then renames it) to the end of the first gold.live_funnel refresh
that covers the silver.events micro-batch that read it (`live_refreshes.jsonl` in the
checkpoint folder: per refresh, the table, the batch ids and the time it committed);
the same to gold.live_trending (refreshed with the triggers) is reported beside it.
With `--set stream.live.enabled=false` it is the silver micro-batch's checkpoint
commit (`commits/<batch>`) instead. The sustained rate is the events per second the
stream took in while keeping up: the delivery rate when every file was processed
before the stop.

    .venv/bin/python bench/stream.py --rate 20 --rate 200 --seconds 120 --file-seconds 5 --out bench/results/stream.md
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shoplake.generate.live import replay  # noqa: E402

EVENTS_PER_USER_DAY = 1.2  # generated shops: about 107k events at 1,000 users x 90 days


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def batch_files(checkpoint: Path) -> dict[int, list[str]]:
    """batch id -> the landing files it read. The file source numbers its own log
    (``sources/0/<n>``), one entry per batch that read files; a batch that read none (the
    watermark moved) takes no number there, so a batch's entries are found through its
    offsets (``offsets/<batch>``: the source's log offset after the batch)."""
    first_entry: dict[str, int] = {}
    # Every tenth entry is compacted (``9.compact``): it lists the files of all entries so far.
    logged = {int(p.name.split(".")[0]): p for p in (checkpoint / "sources" / "0").iterdir() if p.name[0].isdigit()}
    for n, entry in sorted(logged.items()):
        for line in entry.read_text().splitlines()[1:]:  # after the "v1" header
            first_entry.setdefault(Path(json.loads(line)["path"].removeprefix("file://")).name, n)
    entries: dict[int, list[str]] = {}
    for name, n in first_entry.items():
        entries.setdefault(n, []).append(name)
    out: dict[int, list[str]] = {}
    previous = -1
    offsets = sorted((int(p.name), p) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    for batch, path in offsets:
        # "v1", the batch's metadata, then one offset per source: the first is the files'.
        log_offset = json.loads(path.read_text().splitlines()[2])["logOffset"]
        out[batch] = [name for n in range(previous + 1, log_offset + 1) for name in entries.get(n, [])]
        previous = log_offset
    return out


@contextmanager
def _folder(keep: bool) -> Iterator[str]:
    if keep:
        yield tempfile.mkdtemp(prefix="shoplake-bench-stream-")
    else:
        with tempfile.TemporaryDirectory(prefix="shoplake-bench-stream-") as tmp:
            yield tmp


def finished_batches(checkpoint: Path, table: str = "gold.live_funnel") -> dict[int, float]:
    """silver batch id -> when its rows reached ``table`` (the first refresh of it covering
    the batch: gold.live_funnel, or gold.live_trending for trending and triggers); without
    live tables, when the batch committed."""
    refreshes = checkpoint.parent / "live_refreshes.jsonl"
    if refreshes.exists():
        done: dict[int, float] = {}
        for entry in map(json.loads, refreshes.read_text().splitlines()):
            if entry["table"] == table:
                for batch in entry["batches"]:
                    done.setdefault(batch, entry["finished"])
        return done
    commits = checkpoint / "commits"
    return {int(p.name): p.stat().st_mtime for p in commits.iterdir() if p.name.isdigit()} if commits.exists() else {}


def latencies(checkpoint: Path, arrival: dict[str, float], table: str) -> list[float]:
    done = finished_batches(checkpoint, table)
    return [done[batch] - arrival[f] for batch, files in batch_files(checkpoint).items() if batch in done
            for f in files if f in arrival]  # fmt: skip


def _start_stream(root: Path, backend: str, extra: list[str]) -> tuple[subprocess.Popen, Any]:
    """``shoplake stream`` on ``root``'s landing folder and lake, its output in ``stream.log``."""
    sets = [
        f"lake.backend={backend}", f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}",
        "stream.max_files_per_trigger=10",
        "spark.conf.spark.sql.shuffle.partitions=2", "spark.conf.spark.ui.enabled=false", *extra,
    ]  # fmt: skip
    env = {**os.environ, "SHOPLAKE_PSEUDONYM_SECRET": os.environ.get("SHOPLAKE_PSEUDONYM_SECRET", "bench-secret")}
    command = [sys.executable, "-m", "shoplake.cli", "stream", *(a for s in sets for a in ("--set", s))]
    log = open(root / "stream.log", "wb")  # noqa: SIM115 - kept open while the process runs
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True), log


def _warm_up(root: Path, proc: subprocess.Popen, checkpoint: Path, seed: int) -> None:
    """A first file, and its batch committed, before the clock starts: the latency of a
    running stream, not of the JVM and Python workers starting."""
    warm_up = replay(
        root / "warm-up", rate=20, late_share=0.0, users=5, days=1, seed=seed, start_date=date(2024, 2, 29)
    )
    shutil.copy(
        root / "warm-up" / "shop" / "events" / warm_up["files"][0]["name"],
        root / "landing" / "shop" / "events" / "warm_up.jsonl",
    )
    started = time.monotonic()
    while not (checkpoint / "commits" / "0").exists():
        if proc.poll() is not None or time.monotonic() - started > 300:
            raise RuntimeError((root / "stream.log").read_text()[-3000:])
        time.sleep(0.2)


def _wait_until_read(checkpoint: Path, names: set[str], catch_up: float) -> None:
    """Until every delivered file is in a finished batch of gold.live_trending, or ``catch_up`` s."""
    deadline = time.monotonic() + catch_up
    while time.monotonic() < deadline:
        done = finished_batches(checkpoint, "gold.live_trending")
        read = batch_files(checkpoint) if (checkpoint / "sources" / "0").exists() else {}
        if names <= {n for b, files in read.items() if b in done for n in files}:
            return
        time.sleep(1)


def _stop(proc: subprocess.Popen, log: Any) -> None:
    # The driver only: it stops the queries and records the run; SIGTERM to the whole
    # group would stop its JVM under it.
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


def _seconds(values: list[float], share: float | None = None) -> float | None:
    """The median (``share`` None) or a percentile of latencies, None without any."""
    if not values:
        return None
    return round(statistics.median(values) if share is None else percentile(values, share), 2)


def one_rate(
    rate: float,
    seconds: float,
    backend: str,
    days: int,
    seed: int,
    catch_up: float,
    keep: bool,
    extra: list[str],
    file_seconds: float = 1.0,
) -> dict:
    load = os.getloadavg()[0]
    with _folder(keep) as tmp:
        root = Path(tmp)
        landing, lake = root / "landing", root / "lake"
        (landing / "shop" / "events").mkdir(parents=True)
        proc, log = _start_stream(root, backend, extra)
        checkpoint = lake / "_checkpoints" / "stream_shop_events" / "silver.events"
        try:
            _warm_up(root, proc, checkpoint, seed)
            users = max(10, round(rate * seconds / (EVENTS_PER_USER_DAY * days)))
            delivered_at = time.monotonic()
            manifest = replay(
                landing, rate=rate, chunk_seconds=file_seconds, late_share=0.0, users=users, days=days, seed=seed,
                start_date=date(2024, 3, 1),
            )  # fmt: skip
            delivery_seconds = time.monotonic() - delivered_at
            _wait_until_read(checkpoint, {f["name"] for f in manifest["files"]}, catch_up)
        finally:
            _stop(proc, log)

        arrival = {p.name: p.stat().st_mtime for p in (landing / "shop" / "events").glob("live_*.jsonl")}  # not warm_up
        funnel = latencies(checkpoint, arrival, "gold.live_funnel")
        trending = latencies(checkpoint, arrival, "gold.live_trending")
        return {
            "rate": rate,
            "backend": backend,
            "load_before": round(load, 1),
            "settings": " ".join(extra),
            "file_seconds": file_seconds,
            "users": users,
            "days": days,
            "events": manifest["lines"],
            "files": len(manifest["files"]),
            "files_processed": len(funnel),
            "delivery_s": round(delivery_seconds, 1),
            "lines_per_file": round(manifest["lines"] / max(1, len(manifest["files"])), 1),
            "batches": len(finished_batches(checkpoint)),
            "p50_s": _seconds(funnel),
            "p95_s": _seconds(funnel, 0.95),
            "max_s": round(max(funnel), 2) if funnel else None,
            "p95_trending_s": _seconds(trending, 0.95),
            "kept_up": len(funnel) == len(manifest["files"]),
        }


def markdown(rows: list[dict], command: str) -> str:
    out = [
        "# `shoplake stream`: file arrival to gold.live_funnel (issue #22)",
        "",
        f"`{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores (shared: the "
        "1-minute load average before each rate is in the table).",
        "",
        "| delivered events/s | s of events per file | backend | settings | load before | events | files "
        "| micro-batches | all files processed | p50 latency s | p95 latency s | max s "
        "| p95 to trending and triggers s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        kept_up = "yes" if r["kept_up"] else f"no ({r['files_processed']})"
        out.append(
            f"| {r['rate']:,.0f} | {r['file_seconds']:g} | {r['backend']} | {r['settings'] or 'shipped'} "
            f"| {r['load_before']} "
            f"| {r['events']:,} | {r['files']} | "
            f"{r['batches']} | {kept_up} | {r['p50_s']} | {r['p95_s']} | {r['max_s']} "
            f"| {r['p95_trending_s']} |"
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
    parser.add_argument("--file-seconds", type=float, default=1.0, help="seconds of events per delivered file")
    parser.add_argument("--keep", action="store_true", help="keep each rate's folder (lake, landing, stream.log)")
    args = parser.parse_args(argv)
    rows = []
    for rate in args.rate or [100.0, 1000.0]:
        row = one_rate(
            rate, args.seconds, args.backend, args.days, args.seed, args.catch_up, args.keep, args.set,
            args.file_seconds,
        )  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    text = markdown(rows, "python bench/stream.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
