"""Clean (bronze -> silver) on generated data: duplicates, identity resolution,
pseudonyms, no personal data in silver, idempotency, quality gates, erasure."""

from __future__ import annotations

import hashlib
import shutil
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from common import privacy
from common.errors import ShopLakeError
from common.tables import ALL_TABLES, get_table
from jobs.clean.silver import SILVER_SPECS
from shoplake.generate import generate
from shoplake.registry import run_job
from tests.conftest import make_config, string_cells

SECRET = "test-secret-not-for-production"


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A generated shop ingested into bronze (shared, never modified by tests)."""
    tmp = tmp_path_factory.mktemp("clean")
    manifest = generate(tmp / "landing", users=150, days=8, seed=21, start_date=date(2024, 5, 1))
    cfg = make_config(tmp)
    run_job(spark, cfg, "ingest")
    return tmp, manifest


def lake_copy(lake_dir: Path, tmp_path: Path, *overrides: str):
    """A private copy of the bronze lake, with its own config."""
    shutil.copytree(lake_dir / "lake", tmp_path / "lake")
    shutil.copytree(lake_dir / "landing", tmp_path / "landing")
    return make_config(tmp_path, *overrides)


@pytest.fixture(scope="module")
def cleaned(spark, lake):
    """Silver built once with the test secret."""
    from common.delta import open_store

    tmp, manifest = lake
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", SECRET)
    cfg = make_config(tmp)
    result = run_job(spark, cfg, "clean")
    yield tmp, manifest, cfg, open_store(spark, cfg), result
    mp.undo()


def silver_rows(store, name):
    return store.read(ALL_TABLES[name])


def test_silver_has_one_row_per_real_thing(cleaned):
    _, manifest, _, store, _ = cleaned
    expected = manifest["silver_expected"]
    assert silver_rows(store, "silver.events").count() == expected["events"]
    assert silver_rows(store, "silver.customers").count() == expected["persons"]
    assert silver_rows(store, "silver.user_key_map").count() == expected["customers"]
    assert silver_rows(store, "silver.products").count() == expected["products"]
    assert silver_rows(store, "silver.orders").count() == expected["orders"]
    assert silver_rows(store, "silver.order_lines").count() == expected["order_lines"]
    assert silver_rows(store, "silver.campaign_touches").count() == expected["campaign_touches"]
    for name, spec in SILVER_SPECS.items():
        df = silver_rows(store, name)
        assert df.groupBy(*spec.keys).count().where("count > 1").count() == 0, name


def test_planted_event_duplicates_are_removed_exactly(cleaned):
    """Precision and recall 1.0: exactly the planted copies are gone, every real event stays."""
    _, manifest, _, store, _ = cleaned
    bronze = store.read(get_table("bronze.events"))
    removed = bronze.count() - silver_rows(store, "silver.events").count()
    planted = manifest["duplicates"]["exact_duplicate_events"] + manifest["duplicates"]["near_duplicate_events"]
    assert removed == planted
    # Every distinct event id of bronze is still there (nothing real was removed).
    ids = bronze.where("event_id IS NOT NULL").select("event_id").distinct()
    kept = silver_rows(store, "silver.events").select("event_id")
    assert ids.subtract(kept).count() == 0


def test_refunds_are_applied_not_duplicated(cleaned):
    _, manifest, _, store, _ = cleaned
    statuses = {r.status: r["count"] for r in silver_rows(store, "silver.orders").groupBy("status").count().collect()}
    assert statuses == manifest["orders"]["status_latest"]


def test_duplicate_registrations_are_merged(cleaned):
    _, manifest, _, store, _ = cleaned
    key_of = {r.source_key: r.user_key for r in silver_rows(store, "silver.user_key_map").collect()}
    secret = SECRET.encode()

    def user_key(customer_id):
        return key_of[privacy.pseudonym(secret, f"shop:{customer_id}", "source")]

    planted = {tuple(sorted(pair)) for pair in manifest["customer_duplicates"]}
    merged_planted = sum(user_key(a) == user_key(b) for a, b in planted)
    recall = merged_planted / len(planted)
    all_keys = list(key_of.values())
    merged_pairs = sum(n * (n - 1) // 2 for n in (all_keys.count(k) for k in set(all_keys)))
    precision = merged_planted / merged_pairs if merged_pairs else 1.0
    assert recall >= 0.95 and precision >= 0.99, (recall, precision)
    assert planted and merged_pairs >= len(planted) * 0.95


def test_no_personal_data_in_silver_or_gold(cleaned, spark):
    """Every string of every silver and gold table: no mobile, e-mail, resident ID,
    full IP, or customer name from the landing data."""
    _, _, _, store, _ = cleaned
    names = {r.name for r in store.read(get_table("bronze.customers")).select("name").collect() if r.name}
    long_names = {n for n in names if len(n) >= 3}  # two-character names also occur inside ordinary words
    cells = list(string_cells(store, ("silver", "gold")))
    leaks = [
        c for c in cells if c[2] and (privacy.find_pii(c[2]) or c[2] in names or any(n in c[2] for n in long_names))
    ]
    assert len(cells) > 10_000 and leaks == []


def test_pseudonyms_are_keyed_and_stable(cleaned, spark, tmp_path, monkeypatch):
    from common.delta import open_store

    tmp, _, _, store, _ = cleaned
    keys = {r.user_key for r in silver_rows(store, "silver.customers").collect()}
    customer_ids = [r.customer_id for r in store.read(get_table("bronze.customers")).collect()]
    unkeyed = {hashlib.sha256(f"shop:{c}".encode()).hexdigest() for c in customer_ids}
    unkeyed |= {hashlib.sha256(c.encode()).hexdigest() for c in customer_ids}
    assert not keys & unkeyed
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", "another-secret")
    other_cfg = lake_copy(tmp, tmp_path)
    shutil.rmtree(tmp_path / "lake" / "silver")
    run_job(spark, other_cfg, "clean")
    other = {r.user_key for r in open_store(spark, other_cfg).read(get_table("silver.customers")).collect()}
    assert len(other) == len(keys) and not other & keys


def test_clean_twice_gives_identical_silver(cleaned, spark):
    _, _, cfg, store, _ = cleaned
    before = {name: sorted(map(tuple, silver_rows(store, name).collect())) for name in SILVER_SPECS}
    run_job(spark, cfg, "clean")
    after = {name: sorted(map(tuple, silver_rows(store, name).collect())) for name in SILVER_SPECS}
    assert after == before


def test_missing_secret_stops_clean_naming_the_variable(lake, spark, monkeypatch):
    tmp, _ = lake
    monkeypatch.delenv("SHOPLAKE_PSEUDONYM_SECRET", raising=False)
    with pytest.raises(ShopLakeError, match="SHOPLAKE_PSEUDONYM_SECRET"):
        run_job(spark, make_config(tmp), "clean")


def test_forget_leaves_no_trace_at_any_version(cleaned, spark, tmp_path, monkeypatch):
    from common.delta import open_store

    tmp, manifest, _, _, _ = cleaned
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", SECRET)
    cfg = lake_copy(tmp, tmp_path)
    store = open_store(spark, cfg)
    first, second = manifest["customer_duplicates"][0]  # a person with two registrations
    person = store.read(get_table("bronze.customers")).where(F.col("customer_id").isin(first, second)).collect()
    phones = {privacy.normalise_phone(r.phone)[-11:] for r in person if r.phone}
    key = {
        r.user_key
        for r in store.read(get_table("silver.user_key_map")).collect()
        if r.source_key == privacy.pseudonym(SECRET.encode(), f"shop:{first}", "source")
    }.pop()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"shop:{first}\n")
    result = run_job(spark, cfg, "forget", ids=[f"shop:{first}"])
    assert result.row_counts["bronze.customers"] == 2  # both registrations of the person
    needles = {first, second, key, *phones}
    found = []
    for path in (tmp_path / "lake").rglob("*.parquet"):
        table = pq.read_table(path)
        for column in table.column_names:
            if str(table.schema.field(column).type) != "string":
                continue
            for value in table.column(column).to_pylist():
                if value and any(n in value for n in needles):
                    found.append((str(path), column))
    for log_file in (tmp_path / "lake").rglob("_delta_log/*.json"):
        text = log_file.read_text()
        found.extend((str(log_file), n) for n in needles if n in text and n not in (key,))
    assert found == []


def test_broken_bronze_column_stops_clean_and_keeps_silver(cleaned, spark, tmp_path, monkeypatch):
    from common.delta import open_store

    tmp, _, _, _, _ = cleaned
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", SECRET)
    cfg = lake_copy(tmp, tmp_path)
    store = open_store(spark, cfg)
    products = get_table("bronze.products")
    store.overwrite(products, store.read(products).withColumn("price", -F.abs("price") - 1))
    before = {name: store.version(spec) for name, spec in SILVER_SPECS.items()}
    with pytest.raises(ShopLakeError, match=r"silver\.products.*expect_column_values_to_be_between\(price"):
        run_job(spark, cfg, "clean")
    assert {name: store.version(spec) for name, spec in SILVER_SPECS.items()} == before
