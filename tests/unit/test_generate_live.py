"""``generate --stream`` (shoplake.generate.live.replay) on a tiny shop, with a fake clock: the
delivered files hold exactly the batch shop's event records, in files of the set size
and pace, with the held-back events delivered once the delivery is far enough ahead."""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from shoplake.generate import generate
from shoplake.generate.live import STREAM_MANIFEST_NAME, replay

SHOP = {"users": 30, "days": 3, "seed": 3, "start_date": date(2024, 3, 1)}


def _lines(folder: Path) -> Counter:
    return Counter(
        line for path in folder.glob("*.jsonl") for line in path.read_bytes().splitlines(keepends=True) if line.strip()
    )


def _fields(line: bytes) -> dict:
    try:
        record = json.loads(line)
    except ValueError:
        return {}  # a planted malformed line
    return record if isinstance(record, dict) else {}


def _ts(line: bytes) -> int:
    try:
        return int(_fields(line)["ts"])
    except (KeyError, ValueError, TypeError):
        return 0  # a planted malformed line: no time, or text that is none


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    batch = tmp_path_factory.mktemp("batch")
    generate(batch, **SHOP)
    live = tmp_path_factory.mktemp("live")
    now, waits = [0.0], []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pace = {"rate": 40, "chunk_seconds": 0.5, "late_share": 0.05, "late_by_seconds": 3600}
    manifest = replay(live, sleep=sleep, clock=lambda: now[0], **pace, **SHOP)
    return batch / "shop", live / "shop", manifest, waits


def test_every_record_of_the_batch_shop_is_delivered_once(replayed):
    batch, live, manifest, _ = replayed
    assert _lines(live / "events") == _lines(batch / "events")
    # The other feeds and the shop's manifest are the batch shop's, byte for byte.
    for path in batch.rglob("*"):
        if path.is_file() and "events" not in path.parts:
            assert (live / path.relative_to(batch)).read_bytes() == path.read_bytes(), path
    assert (live / STREAM_MANIFEST_NAME).is_file() and not list((live / "events").glob(".*"))
    assert manifest["lines"] == sum(_lines(batch / "events").values())


def test_files_of_the_set_size_at_the_set_pace(replayed):
    _, live, manifest, waits = replayed
    files = manifest["files"]
    assert [f["name"] for f in files] == sorted(p.name for p in (live / "events").glob("*.jsonl"))
    for f in files:
        lines = (live / "events" / f["name"]).read_bytes().splitlines()
        assert len(lines) == f["lines"] and f["lines"] - f["late_lines"] <= 20  # 40 lines/s x 0.5 s
    assert sum(f["lines"] for f in files) == manifest["lines"]
    # The fake clock only moves by sleeping: one half-second per file.
    assert sum(waits) == pytest.approx(0.5 * len(files))


def test_held_back_events_come_an_hour_of_event_time_late(replayed):
    batch, live, manifest, _ = replayed
    late_ids = set(manifest["late_event_ids"])
    assert len(late_ids) == sum(f["late_lines"] for f in manifest["files"]) >= 3
    newest = [0, 0]  # through the files so far, and through those before the last
    for f in manifest["files"]:
        lines = (live / "events" / f["name"]).read_bytes().splitlines()
        on_time, late = lines[: f["lines"] - f["late_lines"]], lines[f["lines"] - f["late_lines"] :]
        # Late by an hour against the files before the one before this one (a stream reading
        # a file per micro-batch judges lateness by the watermark of the batch before).
        for line in late:
            assert _fields(line)["event_id"] in late_ids
            assert newest[0] >= _ts(line) + 3_600_000
        newest = [newest[1], max([newest[1], *(_ts(line) for line in on_time)])]
    # Only events whose id occurs once are held back.
    ids = Counter(_fields(line).get("event_id") for line in _lines(batch / "events").elements())
    assert all(ids[i] == 1 for i in late_ids)


def test_rates_are_checked():
    with pytest.raises(ValueError, match="rate"):
        replay("unused", rate=0, **SHOP)


def test_the_command_line_delivers_a_live_shop(tmp_path):
    from click.testing import CliRunner

    from shoplake.cli import cli

    args = ["generate", "--stream", "--rate", "2000", "--chunk-seconds", "0.01", "--users", "30", "--days", "2"]
    outcome = CliRunner().invoke(cli, [*args, "--out", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    manifest = json.loads((tmp_path / "shop" / STREAM_MANIFEST_NAME).read_text())
    assert f"delivered {manifest['lines']:,} event lines in {len(manifest['files'])} files" in outcome.output
    assert manifest["rate"] == 2000 and manifest["shop"]["params"]["users"] == 30
    assert sorted(p.name for p in (tmp_path / "shop" / "events").iterdir()) == [f["name"] for f in manifest["files"]]
