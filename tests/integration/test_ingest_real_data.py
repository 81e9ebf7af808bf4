"""The real public exports ingest through their presets with reconciled counts."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

from common.tables import get_table
from shoplake.registry import run_job
from tests.conftest import make_config


@pytest.fixture(scope="module")
def real_lake(spark, shared_data, tmp_path_factory):
    """One lake with all three presets ingested (they write to the same bronze tables)."""
    from common.delta import open_store

    tmp = tmp_path_factory.mktemp("real")
    cfg = make_config(tmp, f"landing.root={shared_data}", "landing.sources=[online_retail, cdnow, groceries]")
    result = run_job(spark, cfg, "ingest")
    return cfg, open_store(spark, cfg), result


def _bronze(store, name, source):
    return store.read(get_table(name)).where(F.col("source_system") == source)


def test_online_retail_lines_and_revenue_reconcile(real_lake):
    _, store, _ = real_lake
    lines = _bronze(store, "bronze.order_lines", "online_retail")
    assert lines.count() == 9495
    assert lines.agg(F.sum("line_amount")).first()[0] == Decimal("221698.21")
    assert lines.select("_source_line").distinct().count() == 9495  # one row per input line


def test_online_retail_orders_customers_products_and_refunds(real_lake):
    _, store, _ = real_lake
    orders = _bronze(store, "bronze.orders", "online_retail")
    assert orders.count() == 603 and orders.select("order_id").distinct().count() == 603
    refunded = orders.where("status = 'refunded'")
    assert refunded.count() == 146
    assert refunded.where(~F.col("order_id").startswith("C")).count() == 0
    # Every cancellation line has a negative quantity, and only those do.
    lines = _bronze(store, "bronze.order_lines", "online_retail")
    assert lines.where("quantity < 0").select("order_id").distinct().count() == 146
    assert _bronze(store, "bronze.customers", "online_retail").select("customer_id").distinct().count() == 95
    assert _bronze(store, "bronze.products", "online_retail").count() == 1671
    # InvoiceDate is UK local time: 12/1/2010 13:04 (GMT in winter) is 13:04 UTC.
    first = lines.orderBy("_source_line").first()
    assert str(first.updated_at) == "2010-12-01 13:04:00"


def test_cdnow_purchases(real_lake):
    _, store, _ = real_lake
    orders = _bronze(store, "bronze.orders", "cdnow")
    assert orders.count() == 6919
    assert _bronze(store, "bronze.customers", "cdnow").count() == 2357
    assert tuple(orders.agg(F.min("order_time"), F.max("order_time")).first()) == (
        datetime(1997, 1, 1),
        datetime(1998, 6, 30),
    )
    lines = _bronze(store, "bronze.order_lines", "cdnow")
    assert lines.agg(F.sum("line_amount")).first()[0] == orders.agg(F.sum("total_amount")).first()[0]


def test_groceries_baskets_keep_labels_as_delivered(real_lake, shared_data):
    _, store, _ = real_lake
    assert _bronze(store, "bronze.orders", "groceries").count() == 9835
    lines = _bronze(store, "bronze.order_lines", "groceries")
    text = (shared_data / "groceries" / "groceries.csv").read_text()
    assert lines.count() == sum(len(line.split(",")) for line in text.splitlines() if line.strip())
    assert lines.select("product_id").distinct().count() == 169
    assert lines.where(F.col("product_id") == "cream cheese ").count() > 0


def test_nothing_quarantined_and_files_recorded(real_lake):
    _, store, result = real_lake
    assert result.row_counts["bronze.quarantine"] == 0
    assert result.row_counts["records_in"] == 9495 + 6919 + 9835
    files = store.read(get_table("bronze.ingested_files")).collect()
    assert sorted((f.source_system, f.records, f.loaded) for f in files) == [
        ("cdnow", 6919, 6919),
        ("groceries", 9835, 9835),
        ("online_retail", 9495, 9495),
    ]
