"""Landing files: CSV text, malformed lines planted between records, and the record of every
file written (size, hash, records) that goes into the manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoplake.generate.helpers import MANIFEST_NAME, SOURCE_FOLDER

logger = logging.getLogger(__name__)


def csv_lines(rows: Iterable[Sequence[str]]) -> list[str]:
    """Each row as one CSV text (RFC 4180 quoting, ``\\n`` line ends; may span lines)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    out = []
    for row in rows:
        writer.writerow(row)
        out.append(buf.getvalue())
        buf.seek(0)
        buf.truncate()
    return out


class FileSink:
    """Writes files from byte chunks and remembers size, hash and record counts for the manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[dict[str, Any]] = []

    def write(
        self,
        rel: str,
        table: str,
        encoding: str,
        chunks: Iterable[bytes],
        records: int,
        blank_lines: int,
        malformed: int,
    ) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with open(path, "wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        self.files.append(
            {
                "path": rel,
                "table": table,
                "encoding": encoding,
                "records": records,
                "malformed": malformed,
                "blank_lines": blank_lines,
                "bytes": size,
                "sha256": digest.hexdigest(),
            }
        )


def clear_old_files(out_dir: Path) -> None:
    """Remove files a previous run left where the ingest would read them (stale days would lie)."""
    root = out_dir / SOURCE_FOLDER
    stale = [root / MANIFEST_NAME] if (root / MANIFEST_NAME).exists() else []
    for folder, pattern in (
        ("customers", "*.csv"),
        ("products", "*.csv"),
        ("events", "*.jsonl"),
        ("orders", "*.csv"),
        ("order_lines", "*.csv"),
        ("campaign_touches", "*.csv"),
    ):
        stale.extend(sorted((root / folder).glob(pattern)))
    if stale:
        logger.info("removing %d files of a previous run below %s", len(stale), root)
    for path in stale:
        path.unlink()


def _plain(fields: Sequence[str]) -> bool:
    return not any(c in f for f in fields for c in ',"\n\r')


def malformed_sources(rng: np.random.Generator, rows: list[list[str]], n: int) -> list[list[str]]:
    """Copies of ``n`` distinct rows that need no CSV quoting (so a hand-made defect stays the only one)."""
    plain = [i for i, r in enumerate(rows) if _plain(r)]
    picks = rng.choice(len(plain), min(n, len(plain)), replace=False).tolist()
    return [list(rows[plain[i]]) for i in sorted(picks)]


class CsvFiles:
    """The generator's CSV writer: needs ``self.sink``, ``self.records`` and ``self.quarantine``."""

    sink: FileSink
    records: dict[str, int]
    quarantine: dict[str, dict[str, int]]

    def write_csv(
        self,
        rel: str,
        table: str,
        encoding: str,
        header: Sequence[str],
        rows: list[list[str]],
        malformed: dict[str, list[str | bytes]],
        rng: np.random.Generator,
        bom: bool = False,
        blank_lines: int = 0,
    ) -> None:
        """Write rows, with malformed lines inserted at random positions between records."""
        lines = csv_lines(rows)
        inserts: list[tuple[int, int, str | bytes]] = []
        for bad_lines in malformed.values():
            for bad in bad_lines:
                inserts.append((int(rng.integers(0, len(lines) + 1)), len(inserts), bad))
        for _ in range(blank_lines):
            inserts.append((int(rng.integers(1, max(2, len(lines)))), len(inserts), "\n"))
        inserts.sort(key=lambda x: (x[0], x[1]))

        def chunks() -> Iterable[bytes]:
            yield (b"\xef\xbb\xbf" if bom else b"") + ",".join(header).encode(encoding) + b"\n"
            prev = 0
            for pos, _, text in inserts:
                if pos > prev:
                    yield "".join(lines[prev:pos]).encode(encoding)
                    prev = pos
                yield text if isinstance(text, bytes) else text.encode(encoding)
            if prev < len(lines):
                yield "".join(lines[prev:]).encode(encoding)

        n_bad = sum(len(v) for v in malformed.values())
        records = len(rows) + n_bad
        self.sink.write(rel, table, encoding, chunks(), records, blank_lines, n_bad)
        self.records[table] = records
        self.quarantine[table] = {k: len(v) for k, v in malformed.items()}
