"""Where a configured path points: the one place that decides "is this local".

A path is local when it has no URI scheme or the ``file://`` scheme; anything else
(``s3a://``, ``abfss://``, ``gs://`` ...) is object storage, where the jobs skip what
only a local file system offers (locks, report folders, moving a CSV part file).
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_SCHEME = "file://"


def has_scheme(path: str) -> bool:
    """Whether ``path`` is a URI (``file://`` included), not a plain file system path."""
    return "://" in path


def is_local(path: str) -> bool:
    """Whether ``path`` is on the local (or mounted) file system: no scheme, or ``file://``."""
    return not has_scheme(path.removeprefix(FILE_SCHEME))


def local_path(path: str) -> str:
    """``path`` without a ``file://`` prefix, for ``os`` and ``open``."""
    return path.removeprefix(FILE_SCHEME)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all: the bytes go to a hidden name beside it (a
    dot file, which ``*.jsonl``-style patterns do not match), then a rename."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
