"""Ingest of generated shop data: planted bad records land in quarantine with the
planted reasons, counts reconcile, and re-runs, new files and re-deliveries behave."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common.tables import ALL_TABLES, BRONZE_DATA_TABLES, get_table
from shoplake.generate import generate
from shoplake.registry import run_job
from tests.conftest import make_config


@pytest.fixture(scope="module")
def shop(spark, tmp_path_factory):
    from common.delta import open_store

    tmp = tmp_path_factory.mktemp("shop")
    manifest = generate(tmp / "landing", users=300, days=12, seed=11, start_date=datetime(2024, 3, 1).date())
    cfg = make_config(tmp)
    result = run_job(spark, cfg, "ingest")
    return tmp, cfg, open_store(spark, cfg), manifest, result


def versions(store) -> dict[str, int | None]:
    return {name: store.version(spec) for name, spec in ALL_TABLES.items()}


def test_quarantine_counts_equal_the_planted_counts(shop):
    _, _, store, manifest, _ = shop
    rows = store.read(get_table("bronze.quarantine")).groupBy("target_table", "reason").count().collect()
    found = {(r.target_table, r.reason): r["count"] for r in rows}
    planted = {
        (t, reason): n for t, reasons in manifest["quarantine_expected"].items() for reason, n in reasons.items()
    }
    assert found == planted


def test_every_record_is_in_bronze_or_quarantine(shop):
    _, _, store, manifest, result = shop
    quarantine = store.read(get_table("bronze.quarantine"))
    for table, expected_records in manifest["records_expected"].items():
        loaded = store.read(BRONZE_DATA_TABLES[table]).count()
        bad = quarantine.where(F.col("target_table") == table).count()
        assert loaded == manifest["valid_records_expected"][table], table
        assert loaded + bad == expected_records, table
    assert result.row_counts["records_in"] == sum(manifest["records_expected"].values())


def test_quarantined_records_keep_raw_text_file_and_line(shop):
    tmp, _, store, _, _ = shop
    for row in store.read(get_table("bronze.quarantine")).where("reason != 'encoding_error'").collect():
        lines = (
            Path(row._source_file)
            .read_bytes()
            .decode("utf-8-sig" if "products" not in row._source_file else "gbk", errors="replace")
            .splitlines()
        )
        assert lines[row._source_line - 1] == row.raw.splitlines()[0], (row._source_file, row._source_line)
        assert row.detail
    encoding = store.read(get_table("bronze.quarantine")).where("reason = 'encoding_error'").collect()
    assert encoding and all("\\x" in r.raw for r in encoding)  # undecodable bytes are kept, escaped


def test_local_times_become_utc_instants(shop):
    tmp, _, store, _, _ = shop
    text = (tmp / "landing/shop/orders/orders.csv").read_text(encoding="utf-8")
    first = next(csv.DictReader(io.StringIO(text)))
    row = store.read(get_table("bronze.orders")).where(F.col("order_id") == first["order_id"]).first()
    local = datetime.strptime(first["order_time"], "%Y-%m-%d %H:%M:%S")
    assert row.order_time == local - timedelta(hours=8)  # Asia/Shanghai is UTC+8, no DST


def test_gbk_products_and_multiline_fields_decode(shop):
    tmp, _, store, manifest, _ = shop
    products = {r.product_id: r for r in store.read(get_table("bronze.products")).collect()}
    text = (tmp / "landing/shop/products/products.csv").read_bytes().decode("gbk", errors="replace")
    names = {r["product_id"]: r["product_name"] for r in csv.DictReader(io.StringIO(text)) if r.get("product_id")}
    special = manifest["special_rows"]["bronze.products"]
    for product_id in special.values():
        assert products[product_id].product_name == names[product_id]
    assert "\n" in products[special["newline"]].product_name
    assert any("\u4e00" <= ch <= "\u9fff" for ch in products[special["comma"]].product_name)


def test_second_run_changes_nothing_but_the_run_log(shop, spark):
    _, cfg, store, _, _ = shop
    before = versions(store)
    result = run_job(spark, cfg, "ingest")
    after = versions(store)
    assert after.pop("ops.run_log") == before.pop("ops.run_log") + 1
    assert after == before
    assert "no new files" in result.summary


def test_redelivered_file_is_detected_and_new_file_is_loaded(spark, tmp_path):
    from common.delta import open_store

    landing = tmp_path / "landing"
    generate(landing, users=60, days=3, seed=5, start_date=datetime(2024, 1, 1).date())
    cfg = make_config(tmp_path)
    store = open_store(spark, cfg)
    run_job(spark, cfg, "ingest")
    events = store.read(get_table("bronze.events")).count()
    day = sorted((landing / "shop/events").glob("*.jsonl"))[0]
    shutil.copy(day, day.with_name("events_resent.jsonl"))  # same content, new name
    new_event = {
        "event_id": "e-new-1",
        "user_id": "C1",
        "event_type": "view",
        "ts": 1704100000000,
        "context": {"channel": "app"},
    }
    (landing / "shop/events/events_late.jsonl").write_text(json.dumps(new_event) + "\n")
    result = run_job(spark, cfg, "ingest")
    assert [r["path"] for r in result.metrics["redelivered_files_skipped"]] == [
        str(day.with_name("events_resent.jsonl"))
    ]
    assert store.read(get_table("bronze.events")).count() == events + 1
    assert result.row_counts == {"records_in": 1, "bronze.events": 1, "bronze.quarantine": 0}


def test_a_run_that_died_before_its_commit_point_is_repaired_not_duplicated(spark, tmp_path):
    """Bronze written but the files not yet marked ingested (a crash in between):
    the next run replaces those files' rows instead of appending them again."""
    from common.delta import open_store

    generate(tmp_path / "landing", users=60, days=3, seed=6, start_date=datetime(2024, 1, 1).date())
    cfg = make_config(tmp_path)
    store = open_store(spark, cfg)
    run_job(spark, cfg, "ingest")
    counts = {name: store.read(spec).count() for name, spec in BRONZE_DATA_TABLES.items()}
    quarantined = store.read(get_table("bronze.quarantine")).count()
    store.delete_where(get_table("bronze.ingested_files"), "feed IN ('events', 'orders')")
    run_job(spark, cfg, "ingest")
    assert {name: store.read(spec).count() for name, spec in BRONZE_DATA_TABLES.items()} == counts
    assert store.read(get_table("bronze.quarantine")).count() == quarantined
    keys = store.read(get_table("bronze.events")).groupBy("_file_sha256", "_source_line").count()
    assert keys.where("count > 1").count() == 0
    assert Counter(r.feed for r in store.read(get_table("bronze.ingested_files")).collect())["events"] == 3
