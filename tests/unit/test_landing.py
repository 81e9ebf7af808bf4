"""The record splitter: encodings, BOMs, line endings, CSV quoting, JSON and reasons."""

from __future__ import annotations

import pytest

from common.landing import HeaderMismatch, ReadOptions, tokenize_file


def opts(fmt="csv", names=("id", "name", "amount"), header=True, encoding="utf-8", paths=None):
    return ReadOptions(fmt, encoding, header, ",", tuple(names), tuple(paths or names))


def records(content: bytes, options: ReadOptions):
    return [(r.line_no, r.fields, r.reason) for r in tokenize_file(content, options)]


def test_csv_with_bom_crlf_and_blank_lines():
    content = b"\xef\xbb\xbfid,name,amount\r\n1,a,2.5\r\n\r\n2,b,3\n"
    assert records(content, opts()) == [(2, ["1", "a", "2.5"], None), (4, ["2", "b", "3"], None)]


def test_csv_header_order_differs_from_declaration():
    content = b"amount,id,name\n9,1,x\n"
    assert records(content, opts()) == [(2, ["1", "x", "9"], None)]


def test_quoted_newline_is_one_record_and_line_numbers_continue():
    content = b'id,name,amount\n1,"two\nlines",3\n2,b,4\n'
    assert records(content, opts()) == [(2, ["1", "two\nlines", "3"], None), (4, ["2", "b", "4"], None)]


def test_unbalanced_quote_loses_only_its_own_line():
    content = b'id,name,amount\n1,"broken,3\n2,b,4\n3,c,5\n'
    got = records(content, opts())
    assert got[0][0] == 2 and got[0][2] == "wrong_column_count"
    assert got[1:] == [(3, ["2", "b", "4"], None), (4, ["3", "c", "5"], None)]


def test_wrong_column_count():
    content = b"id,name,amount\n1,a\n2,b,3,extra\n"
    assert [r[2] for r in records(content, opts())] == ["wrong_column_count", "wrong_column_count"]


def test_gbk_decodes_and_invalid_bytes_are_encoding_errors():
    good = "1,连衣裙,99\n".encode("gbk")
    content = "id,name,amount\n".encode("gbk") + good + b"2,\x80,1\n"
    got = records(content, opts(encoding="gbk"))
    assert got[0] == (2, ["1", "连衣裙", "99"], None)
    assert got[1][0] == 3 and got[1][2] == "encoding_error"


def test_utf8_file_read_as_declared_gbk_is_not_silently_accepted():
    content = "id,name,amount\n1,连衣裙,99\n".encode()
    got = records(content, opts(encoding="gbk"))
    # Either it fails to decode or decodes to different text: never the original.
    assert got[0][2] == "encoding_error" or got[0][1] != ["1", "连衣裙", "99"]


def test_header_mismatch_names_the_missing_field():
    with pytest.raises(HeaderMismatch, match="amount"):
        records(b"id,name\n1,a\n", opts())


def test_jsonl_paths_nested_values_and_reasons():
    options = opts(
        "jsonl", names=("id", "channel", "n", "ok"), paths=("id", "context.channel", "n", "ok"), header=False
    )
    content = (
        b'{"id": "e1", "context": {"channel": "app"}, "n": 3, "ok": true}\n'
        b'{"id": "e2", "context": {"chan\n'
        b"[1, 2]\n"
        b'{"id": "e3"}\n'
        b"\xc3\x28\n"
    )
    got = records(content, options)
    assert got == [
        (1, ["e1", "app", "3", "true"], None),
        (2, None, "malformed_json"),
        (3, None, "malformed_json"),
        (4, ["e3", None, None, None], None),
        (5, None, "encoding_error"),
    ]


def test_whitespace_and_lines_formats():
    ws = ReadOptions("whitespace", "utf-8", False, ",", ("a", "b", "c"), ("a", "b", "c"))
    assert records(b" 00004 0001 19970101\n1 2\n", ws) == [
        (1, ["00004", "0001", "19970101"], None),
        (2, None, "wrong_column_count"),
    ]
    lines = ReadOptions("lines", "utf-8", False, ",", ("line",), ("line",))
    assert records(b"milk,bread\ncream cheese \n", lines) == [(1, ["milk,bread"], None), (2, ["cream cheese "], None)]


def test_lone_carriage_returns_end_lines():
    assert [r[0] for r in records(b"id,name,amount\r1,a,1\r2,b,2", opts())] == [2, 3]
