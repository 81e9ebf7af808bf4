"""The record splitter on the nastiest byte sequences: it never raises on data,
every record it returns can be stored (valid UTF-8 text), line numbers stay
right, and only the broken line is lost."""

from __future__ import annotations

import json
import random

import pytest

from common.landing import ReadOptions, Record, tokenize_file

NAMES = ("id", "name", "amount")


def opts(fmt="csv", header=True, encoding="utf-8", names=NAMES):
    return ReadOptions(fmt, encoding, header, ",", tuple(names), tuple(names))


def split(content: bytes, options: ReadOptions) -> list[Record]:
    return list(tokenize_file(content, options))


def brief(records: list[Record]) -> list[tuple]:
    return [(r.line_no, r.fields, r.reason) for r in records]


def assert_storable(records: list[Record]) -> None:
    """What the ingest job hands to Arrow must encode as UTF-8, and lines only move forward."""
    for r in records:
        for text in [r.raw, r.detail, *(r.fields or [])]:
            if text is not None:
                text.encode("utf-8")  # raises on lone surrogates
        assert (r.fields is None) == (r.reason is not None), r
    numbers = [r.line_no for r in records]
    assert numbers == sorted(set(numbers)) and all(n >= 1 for n in numbers)


def test_nul_bytes_inside_csv_fields_are_kept():
    got = split(b"id,name,amount\n1,a\x00b,2\n\x00\n2,\x00,3\n", opts())
    assert brief(got) == [
        (2, ["1", "a\x00b", "2"], None),
        (3, None, "wrong_column_count"),
        (4, ["2", "\x00", "3"], None),
    ]
    assert_storable(got)


def test_nul_in_json_escaped_is_text_raw_is_malformed():
    content = b'{"id":"1","name":"a\\u0000b"}\n{"id":"2","name":"a\x00b"}\n'
    got = split(content, opts("jsonl", header=False))
    assert brief(got) == [(1, ["1", "a\x00b", None], None), (2, None, "malformed_json")]
    assert_storable(got)


@pytest.mark.parametrize(
    "bad",
    [
        b"\xed\xa0\x80",  # CESU-8 / WTF-8 high surrogate
        b"\xed\xb0\x80\xed\xa0\x80",  # reversed surrogate pair
        b"\xc0\x80",  # "modified UTF-8" NUL (overlong)
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xe4\xb8",  # truncated 3-byte sequence
    ],
)
def test_badly_encoded_surrogates_and_overlongs_are_encoding_errors(bad):
    content = b"id,name,amount\n1," + bad + b",2\n2,ok,3\n"
    got = split(content, opts())
    assert brief(got) == [(2, None, "encoding_error"), (3, ["2", "ok", "3"], None)]
    assert "\\x" in got[0].raw  # the bytes are kept, escaped
    assert_storable(got)


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\udc00\\ud800", "x\\ud83d"])
def test_json_lone_surrogate_escapes_are_encoding_errors(escape):
    content = f'{{"id":"1","name":"{escape}"}}\n{{"id":"2","name":"\\ud83d\\ude00"}}\n'.encode()
    got = split(content, opts("jsonl", header=False))
    assert brief(got) == [(1, None, "encoding_error"), (2, ["2", "😀", None], None)]
    assert_storable(got)


def test_json_lone_surrogate_in_a_nested_value_is_an_encoding_error():
    content = b'{"id":"1","name":{"deep":["\\ud800"]}}\n'
    got = split(content, opts("jsonl", header=False))
    assert brief(got) == [(1, None, "encoding_error")]


def test_deeply_nested_json_is_malformed_not_a_crash():
    content = b"[" * 100_000 + b"]" * 100_000 + b'\n{"id":"1"}\n' + b'{"a":' * 50_000 + b"\n"
    got = split(content, opts("jsonl", header=False))
    assert brief(got) == [(1, None, "malformed_json"), (2, ["1", None, None], None), (3, None, "malformed_json")]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cr_only_files_count_lines(fmt):
    if fmt == "csv":
        content, header, expected = b"id,name,amount\r1,a,2\r\r2,b,3\r", True, [(2, "1"), (4, "2")]
    else:
        content, header, expected = b'{"id":"1"}\r\r{"id":"2"}', False, [(1, "1"), (3, "2")]
    got = split(content, opts(fmt, header=header))
    assert [(r.line_no, r.fields[0]) for r in got] == expected


@pytest.mark.parametrize("content", [b"", b"\r", b"\r\r\r\n\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n \t\x0b\x0c\r"])
def test_empty_blank_and_bom_only_files_have_no_records(content):
    for fmt in ("csv", "jsonl", "whitespace", "lines"):
        names = ("line",) if fmt == "lines" else NAMES
        assert split(content, opts(fmt, header=fmt == "csv", names=names)) == []


def test_a_bom_in_the_middle_of_a_csv_is_kept_as_text_not_lost():
    # Two exports concatenated: the second one's BOM and header are data lines now.
    content = b"\xef\xbb\xbfid,name,amount\n1,a,2\n\xef\xbb\xbfid,name,amount\n\xef\xbb\xbf3,c,4\n"
    got = split(content, opts())
    assert brief(got) == [
        (2, ["1", "a", "2"], None),
        (3, ["\ufeffid", "name", "amount"], None),
        (4, ["\ufeff3", "c", "4"], None),
    ]


def test_a_bom_in_the_middle_of_a_jsonl_file_loses_only_its_line():
    content = b'{"id":"1"}\n\xef\xbb\xbf{"id":"2"}\n{"id":"3"}\n'
    got = split(content, opts("jsonl", header=False))
    assert brief(got) == [(1, ["1", None, None], None), (2, None, "malformed_json"), (3, ["3", None, None], None)]


def test_extremely_long_csv_field_is_loaded_whole():
    big = "长" * 3_000_000
    content = f'id,name,amount\n1,"{big}",2\n2,b,3\n'.encode()
    got = split(content, opts())
    assert [(r.line_no, r.reason) for r in got] == [(2, None), (3, None)]
    assert got[0].fields[1] == big


def test_extremely_long_json_and_whitespace_lines():
    big = "x" * 5_000_000
    got = split(f'{{"id":"{big}"}}\n'.encode(), opts("jsonl", header=False))
    assert got[0].fields[0] == big
    got = split(f"{big} 1 2\n".encode(), opts("whitespace", header=False))
    assert got[0].fields == [big, "1", "2"]


def test_an_unbalanced_quote_before_many_lines_loses_only_its_own_line():
    rows = "".join(f"{i},n{i},{i}\n" for i in range(10_000))
    got = split(b'id,name,amount\n1,"open,2\n' + rows.encode(), opts())
    assert brief(got[:2]) == [(2, None, "wrong_column_count"), (3, ["0", "n0", "0"], None)]
    assert len(got) == 10_001 and all(r.reason is None for r in got[1:])


def test_mixed_line_endings_inside_quoted_fields_are_normalised():
    got = split(b'id,name,amount\r\n1,"a\r\nb\rc\nd",2\r3,e,4\n', opts())
    assert brief(got) == [(2, ["1", "a\nb\nc\nd", "2"], None), (6, ["3", "e", "4"], None)]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    ("fmt", "encoding"),
    [("csv", "utf-8"), ("csv", "gbk"), ("jsonl", "utf-8"), ("whitespace", "latin-1"), ("lines", "utf-8")],
)
def test_random_bytes_never_raise_and_stay_storable(seed, fmt, encoding):
    rng = random.Random(seed)
    alphabet = [b"\x00", b"\r", b"\n", b"\r\n", b'"', b",", b" ", b"{", b"}", b"\\u", b"d8", b"00",
                b"\xef\xbb\xbf", b"\xed\xa0\x80", b"\xff", b"\x80", "连衣".encode("gbk"), "😀".encode(),
                b'{"id":"\\ud800"}', b"["]  # fmt: skip
    content = b"".join(rng.choice(alphabet) for _ in range(3_000))
    names = ("line",) if fmt == "lines" else NAMES
    got = split(content, opts(fmt, header=False, encoding=encoding, names=names))
    assert_storable(got)
    for r in got:
        if r.reason is None:
            assert len(r.fields) == len(names)


def test_random_json_objects_with_hostile_strings_round_trip():
    rng = random.Random(7)
    pieces = ["\x00", "\u200b", "\u202e", "e\u0301", "😀", "\ufeff", "=cmd|' /C calc'!A0", "<script>", "'; --"]
    pieces += ['"', "\\"]
    values = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(200)]
    content = "\n".join(json.dumps({"id": v, "name": v[::-1]}) for v in values).encode()
    got = split(content, opts("jsonl", header=False))
    # Empty strings stay "" here; the typing step in Spark turns blanks into nulls.
    assert [(r.fields[0], r.fields[1]) for r in got] == [(v, v[::-1]) for v in values]
