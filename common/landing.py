"""Split landing files into records, with line numbers and reasons.

Pure Python (no Spark): the ingest job runs :func:`tokenize_file` on the
executors (``mapInArrow``), one file at a time, so encodings, BOMs, mixed line
endings and multi-line CSV records are handled the same everywhere. Each record
comes out as a list of raw string fields (or None) aligned with the feed's
declared fields, or with a quarantine reason; typing happens afterwards in Spark.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from common.quarantine import Reason

UTF8_BOM = codecs.BOM_UTF8
_BLANK = re.compile(rb"^[ \t\r\n\f\v]*$")
# A quoted CSV field may span lines; past this many physical lines an open quote
# is taken as unbalanced and the lines are parsed one by one instead, so one
# stray quote cannot swallow the rest of the file.
MAX_CSV_RECORD_LINES = 50
# The line is in memory already; csv's default 128 KiB field limit would only turn
# a long but valid field into a bogus wrong_column_count.
csv.field_size_limit(2**31 - 1)


@dataclass(frozen=True)
class Record:
    """One landing record: where it starts, its raw text, and its fields or why not."""

    line_no: int
    raw: str
    fields: list[str | None] | None
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """How to split one feed's files (taken from its :class:`common.sources.FeedSpec`)."""

    format: str
    encoding: str
    header: bool
    delimiter: str
    field_names: tuple[str, ...]
    field_paths: tuple[str, ...]


def _physical_lines(content: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, bytes without the line ending); \\n, \\r\\n and lone \\r all end lines."""
    if content.startswith(UTF8_BOM):
        content = content[len(UTF8_BOM) :]
    # Normalise line endings first so mixed endings count lines consistently.
    text = content.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if text.endswith(b"\n"):
        text = text[:-1]
    if not text:
        return
    yield from enumerate(text.split(b"\n"), start=1)


def _decode_lines(content: bytes, encoding: str) -> Iterator[tuple[int, str | None, bytes]]:
    """(line number, decoded text or None when it does not decode, raw bytes); blank lines skipped."""
    for number, line in _physical_lines(content):
        if _BLANK.match(line):
            continue
        try:
            yield number, line.decode(encoding), line
        except UnicodeDecodeError:
            yield number, None, line


def _undecodable(number: int, line: bytes, encoding: str) -> Record:
    return Record(
        number,
        line.decode(encoding, errors="backslashreplace"),
        None,
        Reason.ENCODING_ERROR.value,
        f"line does not decode as {encoding}",
    )


def _json_value(obj: object, path: str) -> str | None:
    node = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, (dict, list)):
        return json.dumps(node, ensure_ascii=False, sort_keys=True)
    return str(node)


def _jsonl_records(content: bytes, opts: ReadOptions) -> Iterator[Record]:
    for number, text, line in _decode_lines(content, opts.encoding):
        if text is None:
            yield _undecodable(number, line, opts.encoding)
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:  # RecursionError: nesting too deep
            yield Record(number, text, None, Reason.MALFORMED_JSON.value, f"invalid JSON: {exc}")
            continue
        if not isinstance(obj, dict):
            yield Record(
                number,
                text,
                None,
                Reason.MALFORMED_JSON.value,
                f"expected a JSON object, found {type(obj).__name__}",
            )
            continue
        values = [_json_value(obj, p) for p in opts.field_paths]
        if not all(_is_unicode(v) for v in values):
            # "\ud800" is valid JSON but not text: Arrow (and Delta) cannot store it.
            yield Record(number, text, None, Reason.ENCODING_ERROR.value, "a \\u escape is a lone surrogate")
            continue
        yield Record(number, text, values)


def _is_unicode(value: str | None) -> bool:
    if value is None:
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _split_fields(text: str, opts: ReadOptions) -> list[str]:
    if opts.format == "whitespace":
        return text.split()
    return next(csv.reader([text], delimiter=opts.delimiter))


def _delimited_records(content: bytes, opts: ReadOptions, path: str) -> Iterator[Record]:
    """CSV (quotes may span lines), whitespace-separated and whole-line records."""
    lines = list(_decode_lines(content, opts.encoding))
    expected: list[str] | None = None  # header names, once read
    index = 0
    while index < len(lines):
        number, text, raw_bytes = lines[index]
        if text is None:
            yield _undecodable(number, raw_bytes, opts.encoding)
            index += 1
            continue
        # Gather continuation lines while a CSV quote is open.
        consumed = 1
        if opts.format == "csv":
            while text.count('"') % 2 == 1 and index + consumed < len(lines) and consumed < MAX_CSV_RECORD_LINES:
                _, more, _ = lines[index + consumed]
                if more is None:
                    break
                text = f"{text}\n{more}"
                consumed += 1
        if opts.format == "lines":
            index += consumed
            yield Record(number, text, [text])
            continue
        try:
            values = _split_fields(text, opts)
        except csv.Error as exc:
            values = None
            error = f"unreadable CSV: {exc}"
        width = len(expected) if expected is not None else len(opts.field_names)
        if consumed > 1 and (values is None or (expected is not None or not opts.header) and len(values) != width):
            # The open quote did not close into a well-formed record: treat it as a
            # stray quote and read this line alone, never the lines after it.
            text, consumed = lines[index][1] or "", 1
            try:
                values = _split_fields(text, opts)
            except csv.Error as exc:
                values, error = None, f"unreadable CSV: {exc}"
        index += consumed
        if values is None:
            yield Record(number, text, None, Reason.WRONG_COLUMN_COUNT.value, error)
            continue
        if opts.header and expected is None:
            expected = [v.strip() for v in values]
            missing = [f for f in opts.field_names if f not in expected]
            if missing:
                raise HeaderMismatch(f"{path}: header lacks declared field(s) {missing}; header is {expected}")
            continue
        if len(values) != width:
            yield Record(
                number,
                text,
                None,
                Reason.WRONG_COLUMN_COUNT.value,
                f"expected {width} fields, found {len(values)}",
            )
            continue
        if expected is not None:
            by_name = dict(zip(expected, values))
            yield Record(number, text, [by_name[name] for name in opts.field_names])
        else:
            yield Record(number, text, list(values))


class HeaderMismatch(ValueError):
    """A file's header does not carry the fields its mapping declares (a mapping problem)."""


def tokenize_file(content: bytes, opts: ReadOptions, path: str = "<bytes>") -> Iterator[Record]:
    """Split one file's bytes into :class:`Record` s.

    Raises:
        HeaderMismatch: when a CSV header lacks a declared field.
    """
    if opts.format == "jsonl":
        yield from _jsonl_records(content, opts)
    else:
        yield from _delimited_records(content, opts, path)
