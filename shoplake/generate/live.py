"""``shoplake generate --stream``: a generated shop's clickstream delivered into the landing
folder over time, for ``shoplake stream`` to pick up as it would a live shop's.

The shop is generated first (:func:`shoplake.generate.shop.generate`, into a staging folder),
so every planted truth of the batch shop holds: the same records, exact and near
duplicates, malformed lines. Every feed but the events is copied into the landing folder
at once. The event lines, in the order the day files hold them, are then written as small
JSON-lines files (``events/live_<n>.jsonl``), ``rate`` lines per second in files of
``chunk_seconds`` each; a file appears complete (written under a hidden name, then
renamed), so a stream never reads half of one.

Late events: ``late_share`` of the events whose id occurs once are held back and
delivered in the second file after one that holds an event ``late_by_seconds`` (event
time) newer, so a stream reading a file per micro-batch, whose watermark is shorter than
that, drops them from silver (Spark judges lateness by the previous batch's watermark). Which lines
were held back and how many lines each file has go to ``shop/_stream_manifest.json``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common.paths import write_atomically
from shoplake.generate.helpers import MANIFEST_NAME, SOURCE_FOLDER
from shoplake.generate.shop import generate

STREAM_MANIFEST_NAME = "_stream_manifest.json"
EVENTS_FOLDER = "events"


def replay(
    out_dir: str | Path,
    rate: float,
    chunk_seconds: float = 1.0,
    late_share: float = 0.01,
    late_by_seconds: float = 900.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    **shop: Any,
) -> dict[str, Any]:
    """Generate a shop (``shop`` are :func:`~shoplake.generate.shop.generate`'s arguments) and
    deliver its events into ``<out_dir>/shop/events`` at ``rate`` lines per second.

    Returns:
        The stream manifest (also written to ``<out_dir>/shop/_stream_manifest.json``),
        with the shop's own manifest under ``"shop"``.
    """
    if rate <= 0 or chunk_seconds <= 0:
        raise ValueError(f"rate ({rate}) and chunk_seconds ({chunk_seconds}) must be positive")
    if not 0 <= late_share < 1:
        raise ValueError(f"late_share must be in [0, 1), got {late_share}")
    landing = Path(out_dir) / SOURCE_FOLDER
    with tempfile.TemporaryDirectory(prefix="shoplake-live-") as staging:
        manifest = generate(staging, **shop)
        staged = Path(staging) / SOURCE_FOLDER
        _copy_other_feeds(staged, landing)
        lines = [
            line
            for path in sorted((staged / EVENTS_FOLDER).glob("*.jsonl"))
            for line in path.read_bytes().splitlines(keepends=True)
            if line.strip()  # blank lines are not records
        ]
    rng = np.random.default_rng(shop.get("seed", 0))
    held = _pick_late(lines, late_share, late_by_seconds, max(1, int(round(rate * chunk_seconds))), rng)
    files = _deliver(lines, held, landing / EVENTS_FOLDER, rate, chunk_seconds, late_by_seconds, sleep, clock)
    result = {
        "rate": rate,
        "chunk_seconds": chunk_seconds,
        "late_by_seconds": late_by_seconds,
        "lines": len(lines),
        "files": files,
        "late_event_ids": sorted(json.loads(lines[i])["event_id"] for i in held),
        "shop": manifest,
    }
    (landing / STREAM_MANIFEST_NAME).write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return result


def _copy_other_feeds(staged: Path, landing: Path) -> None:
    """Every feed but the events, and the shop's manifest, into the landing folder now."""
    landing.mkdir(parents=True, exist_ok=True)
    for item in staged.iterdir():
        target = landing / item.name
        if item.name == EVENTS_FOLDER:
            if target.exists():
                shutil.rmtree(target)  # a previous replay's files
            target.mkdir()
        elif item.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(item, target)
        elif item.name == MANIFEST_NAME:
            shutil.copy2(item, target)


def _event_fields(line: bytes) -> tuple[str | None, int | None]:
    """(event id, epoch-ms time) of a line, or (None, None) for a malformed one (bad JSON,
    bad UTF-8, no time: the generator plants each)."""
    try:
        record = json.loads(line)
        return record.get("event_id"), int(record["ts"])
    except (ValueError, KeyError, TypeError, AttributeError):  # AttributeError: a JSON array, not an object
        return None, None


def _pick_late(
    lines: list[bytes], share: float, late_by_seconds: float, per_file: int, rng: np.random.Generator
) -> set[int]:
    """Positions of the lines to hold back: well-formed events whose id occurs once (a
    held-back copy of a duplicate would leave its twin on time and nothing missing) and
    that an event at least three files before the end is ``late_by_seconds`` newer than
    (so there is a file to deliver them in, two files after that event's)."""
    fields = [_event_fields(line) for line in lines]
    ids = Counter(event_id for event_id, _ in fields if event_id)
    newest = max((ts for _, ts in fields[: max(0, len(lines) - 3 * per_file)] if ts is not None), default=0)
    candidates = [
        i
        for i, (event_id, ts) in enumerate(fields)
        if event_id and ts is not None and ids[event_id] == 1 and ts + late_by_seconds * 1000 <= newest
    ]
    n = int(round(share * len(candidates)))
    return set(rng.choice(candidates, n, replace=False).tolist()) if n else set()


def _deliver(
    lines: list[bytes],
    held: set[int],
    folder: Path,
    rate: float,
    chunk_seconds: float,
    late_by_seconds: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> list[dict[str, Any]]:
    """Write the lines as files of ``rate * chunk_seconds`` lines, one every ``chunk_seconds``.
    A held-back line joins the second file after one holding an event ``late_by_seconds``
    newer than it (or a last file of its own): Spark drops late events by the watermark of
    the micro-batch before, so a stream reading a file per batch has moved that past it."""
    per_file = max(1, int(round(rate * chunk_seconds)))
    waiting = sorted((_event_fields(lines[i])[1] + int(late_by_seconds * 1000), i) for i in held)
    on_time = [i for i in range(len(lines)) if i not in held]
    chunks = [on_time[first : first + per_file] for first in range(0, len(on_time), per_file)]
    files: list[dict[str, Any]] = []
    newest = [0, 0]  # the newest event time in the files written so far, and one file before
    start = clock()
    for n, chunk in enumerate([*chunks, [], []]):
        late = []
        while waiting and waiting[0][0] <= newest[0]:
            late.append(waiting.pop(0)[1])
        if not chunk and not late:
            continue
        name = f"live_{n:06d}.jsonl"
        # Whole or not at all, under a name the stream's pattern (*.jsonl) matches only once
        # complete; the modification time orders the files for maxFilesPerTrigger.
        write_atomically(folder / name, b"".join(lines[i] for i in [*chunk, *late]))
        files.append({"name": name, "lines": len(chunk) + len(late), "late_lines": len(late)})
        times = [t for t in (_event_fields(lines[i])[1] for i in chunk) if t is not None]
        newest = [newest[1], max([newest[1], *times])]
        due = start + (n + 1) * chunk_seconds
        if (wait := due - clock()) > 0:
            sleep(wait)
    if waiting:  # _pick_late leaves room for every held-back event: a bug if not
        raise RuntimeError(f"{len(waiting)} held-back event(s) found no file two after a newer event")
    return files
