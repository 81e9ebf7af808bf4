"""Bronze -> silver transforms of each table: latest versions, bounds flags, people, events
without copies, orders, lines, products, touches; the as-of default and the k-anonymity report."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import privacy
from common.config import ShopLakeConfig
from common.delta import DeltaStore
from common.events import content_event_id, event_content_hash, flag_unknown_items, to_silver_values
from common.parse import mapped_category
from common.tables import (
    BRONZE_CAMPAIGN_TOUCHES,
    BRONZE_CUSTOMERS,
    BRONZE_EVENTS,
    BRONZE_ORDER_LINES,
    BRONZE_ORDERS,
    BRONZE_PRODUCTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    SILVER_USER_KEY_MAP,
)
from jobs.clean.identity import prepare_customers, resolve_people

log = logging.getLogger(__name__)


def latest_first() -> list[Column]:
    """Latest version first: update time, then the later delivery, then the later line."""
    return [
        F.col("updated_at").desc_nulls_last(),
        F.col("_ingested_at").desc(),
        F.col("_source_file").desc(),
        F.col("_source_line").desc(),
    ]


def earliest_delivery() -> list[Column]:
    return [F.col("_ingested_at"), F.col("_source_file"), F.col("_source_line")]


# ---------------------------------------------------------------------------- column helpers
def with_latest_version(keys: list[str], order: list[Column] | None = None):
    """Keep one row per ``keys``: the first by ``order`` (default: latest version)."""

    def transform(df: DataFrame) -> DataFrame:
        window = Window.partitionBy(*keys).orderBy(*(order or latest_first()))
        return df.withColumn("_rank", F.row_number().over(window)).where("_rank = 1").drop("_rank")

    return transform


def bounds_flags(cfg: ShopLakeConfig, columns: list[str]) -> Column:
    """``dq_flags``: one ``<column>_out_of_bounds`` entry per configured bound the row breaks."""
    flags = []
    for name in columns:
        if name in cfg.clean.bounds:
            low, high = cfg.clean.bounds[name]
            broken = (F.col(name) < F.lit(low)) | (F.col(name) > F.lit(high))
            flags.append(F.when(broken, F.lit(f"{name}_out_of_bounds")))
    if not flags:
        return F.array().cast("array<string>")
    return F.filter(F.array(*flags), lambda x: x.isNotNull())


def build_customers(people: DataFrame, cfg: ShopLakeConfig, as_of: date) -> DataFrame:
    """One silver row per person; attributes from the latest registration, consent only if it says so."""
    latest = Window.partitionBy("user_key").orderBy(*latest_first())
    ranked = people.withColumn("_rank", F.row_number().over(latest))
    summary = people.groupBy("user_key").agg(
        F.count("*").cast("int").alias("source_records"),
        F.min("registered_at").alias("registered_at"),
        F.max("updated_at").alias("updated_at"),
        # Facts from any registration when the latest one lacks them.
        F.first("birth_date_any", ignorenulls=True).alias("birth_date_any"),
        F.first("gender_any", ignorenulls=True).alias("gender_any"),
        F.first("email_norm", ignorenulls=True).alias("email_any"),
        F.first("phone_e164", ignorenulls=True).alias("phone_any"),
    )
    return (
        ranked.where("_rank = 1")
        .select("user_key", "source_system", "province", "city", "country", "member_level", "marketing_consent")
        .join(summary, "user_key")
        .select(
            "user_key",
            "source_records",
            F.col("gender_any").alias("gender"),
            F.year("birth_date_any").alias("birth_year"),
            privacy.age_band_col(F.col("birth_date_any"), as_of, cfg.clean.age_bands).alias("age_band"),
            "province",
            "city",
            "country",
            F.substring_index("email_any", "@", -1).alias("email_domain"),
            privacy.phone_masked(F.col("phone_any")).alias("phone_masked"),
            "registered_at",
            F.lower(F.trim("member_level")).alias("member_level"),
            F.coalesce("marketing_consent", F.lit(False)).alias("marketing_consent"),
            "updated_at",
        )
    )


def user_keys_for(ids: DataFrame, people: DataFrame, secret: bytes) -> DataFrame:
    """(source_system, user_id, user_key) for every distinct id referenced by activity.

    Ids of registered customers get their person's key; unknown ids get the HMAC
    of the id itself, so they stay consistent and pseudonymous.
    """
    known = people.select("source_system", F.col("customer_id").alias("user_id"), F.col("user_key").alias("known_key"))
    distinct = ids.where(F.col("user_id").isNotNull()).select("source_system", "user_id").distinct()
    return distinct.join(known, ["source_system", "user_id"], "left").select(
        "source_system",
        "user_id",
        F.coalesce(
            "known_key", privacy.pseudonym_col(F.concat_ws(":", "source_system", "user_id"), secret, "user")
        ).alias("user_key"),
    )


# ---------------------------------------------------------------------------- other tables
def dedup_events(bronze: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """One row per real event: by event id (earliest delivery), or, without ids, by content:
    a copy within ``clean.event_dedup_window_seconds`` of the previous one is dropped."""
    with_id = bronze.where(F.col("event_id").isNotNull()).transform(
        with_latest_version(["source_system", "event_id"], earliest_delivery())
    )
    without_id = (
        bronze.where(F.col("event_id").isNull())
        .withColumn("_content", event_content_hash())
        .withColumn(
            "_gap",
            F.col("event_time").cast("double")
            - F.lag(F.col("event_time").cast("double")).over(
                Window.partitionBy("_content").orderBy("event_time", *earliest_delivery())
            ),
        )
        .where(F.col("_gap").isNull() | (F.col("_gap") > cfg.clean.event_dedup_window_seconds))
        .withColumn("event_id", content_event_id(F.col("_content"), F.col("event_time")))
        .drop("_content", "_gap")
    )
    return with_id.unionByName(without_id)


def build_events(bronze: DataFrame, products: DataFrame, keys: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """silver.events: deduplicated, keyed to the person, in silver's formats, unknown items flagged."""
    keyed = dedup_events(bronze, cfg).join(keys, ["source_system", "user_id"], "left")
    return flag_unknown_items(to_silver_values(keyed, cfg), products)


def build_orders(bronze: DataFrame, lines: DataFrame, keys: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """Latest version per order; a missing total is the lines' sum less the discount."""
    totals = lines.groupBy("source_system", "order_id").agg(F.sum("line_amount").alias("_lines_total"))
    latest = bronze.transform(with_latest_version(["source_system", "order_id"]))
    return (
        latest.join(keys, ["source_system", "user_id"], "left")
        .join(totals, ["source_system", "order_id"], "left")
        .withColumn("discount_amount", F.coalesce("discount_amount", F.lit(0)).cast("decimal(18,2)"))
        .withColumn(
            "total_amount",
            F.coalesce("total_amount", (F.col("_lines_total") - F.col("discount_amount")).cast("decimal(18,2)")),
        )
        .select(
            "source_system",
            "order_id",
            "user_key",
            "order_time",
            mapped_category(F.col("status"), cfg.clean.categories.get("status", {})).alias("status"),
            F.lower(F.trim("payment_method")).alias("payment_method"),
            mapped_category(F.col("channel"), cfg.clean.categories.get("channel", {})).alias("channel"),
            F.trim("coupon_code").alias("coupon_code"),
            "discount_amount",
            "total_amount",
            F.upper(F.trim("currency")).alias("currency"),
            "updated_at",
            bounds_flags(cfg, ["total_amount"]).alias("dq_flags"),
        )
    )


def build_order_lines(bronze: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """Latest version per order line; a missing line amount is quantity x unit price."""
    latest = bronze.transform(with_latest_version(["source_system", "order_id", "line_no"]))
    return latest.select(
        "source_system",
        "order_id",
        "line_no",
        F.trim("product_id").alias("item_id"),
        "quantity",
        "unit_price",
        F.coalesce("line_amount", (F.col("quantity") * F.col("unit_price")).cast("decimal(18,2)")).alias("line_amount"),
    ).withColumn("dq_flags", bounds_flags(cfg, ["quantity", "unit_price", "line_amount"]))


def build_products(bronze: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    latest = bronze.withColumn("product_id", F.trim("product_id")).transform(
        with_latest_version(["source_system", "product_id"])
    )
    return latest.select(
        "source_system",
        F.col("product_id").alias("item_id"),
        privacy.text_normalised(F.col("product_name")).alias("product_name"),
        privacy.text_normalised(F.col("category_l1")).alias("category_l1"),
        privacy.text_normalised(F.col("category_l2")).alias("category_l2"),
        privacy.text_normalised(F.col("category_l3")).alias("category_l3"),
        privacy.text_normalised(F.col("brand")).alias("brand"),
        "price",
        "updated_at",
    ).withColumn("dq_flags", bounds_flags(cfg, ["price"]))


def build_touches(bronze: DataFrame, keys: DataFrame) -> DataFrame:
    latest = bronze.transform(with_latest_version(["source_system", "touch_id"], earliest_delivery()))
    return latest.join(keys, ["source_system", "user_id"], "left").select(
        "source_system",
        "touch_id",
        "campaign_id",
        "user_key",
        F.lower(F.trim("channel")).alias("channel"),
        F.trim("variant").alias("variant"),
        "sent_at",
        "opened",
        "clicked",
        "converted",
        "cost",
    )


# ---------------------------------------------------------------------------- the job
def default_as_of(events: DataFrame, orders: DataFrame, customers: DataFrame | None = None) -> date:
    """The last day with data (the CLI's default for ``clean.as_of``): the last event or
    order; without any (a customers-only export), the last registration or update; with
    no times at all (basket files, bare customer lists), the day bronze was ingested. So
    the plausibility bounds derived from it stay sensible."""

    def latest(df: DataFrame | None, *columns: str) -> list:
        if df is None:
            return []
        return [v for v in df.agg(*[F.max(c) for c in columns]).first() if v is not None]

    for found in (
        latest(events, "event_time") + latest(orders, "order_time"),
        latest(customers, "registered_at", "updated_at"),
        latest(orders, "_ingested_at") + latest(customers, "_ingested_at") + latest(events, "_ingested_at"),
    ):
        if found:
            return max(found).date()
    log.warning("clean.as_of not set and bronze holds no rows: nothing to date, using 1970-01-01")
    return date(1970, 1, 1)


def k_anonymity_report(customers: DataFrame, k: int) -> dict[str, Any]:
    """Equivalence classes over the kept quasi-identifiers (age band, gender, city)."""
    classes = customers.groupBy("age_band", "gender", "city").count()
    stats = classes.agg(
        F.min("count").alias("smallest"),
        F.count("*").alias("classes"),
        F.sum(F.when(F.col("count") < k, F.col("count")).otherwise(0)).alias("rows_below_k"),
        F.sum(F.when(F.col("count") < k, 1).otherwise(0)).alias("classes_below_k"),
    ).first()
    # The classes to suppress or generalise further (city -> province, wider age bands).
    small = [
        {"age_band": r.age_band, "gender": r.gender, "city": r.city, "rows": r["count"]}
        for r in classes.where(F.col("count") < k).orderBy("count", "city", "age_band", "gender").limit(200).collect()
    ]
    return {
        "k": k,
        "quasi_identifiers": ["age_band", "gender", "city"],
        "classes_below_k_sample": small,
        "classes": stats["classes"],
        "smallest_class": stats["smallest"],
        "classes_below_k": stats["classes_below_k"],
        "rows_needing_suppression_or_coarsening": stats["rows_below_k"] or 0,
    }


def build_silver(spark: SparkSession, store: DeltaStore, cfg: ShopLakeConfig, secret: bytes) -> tuple[dict, dict]:
    """Every silver table as a DataFrame (nothing written), plus facts for the run log."""
    read = {spec.name: store.read_or_empty(spec) for spec in (
        BRONZE_CUSTOMERS, BRONZE_PRODUCTS, BRONZE_EVENTS, BRONZE_ORDERS, BRONZE_ORDER_LINES, BRONZE_CAMPAIGN_TOUCHES
    )}  # fmt: skip
    as_of = cfg.clean.as_of or default_as_of(read["bronze.events"], read["bronze.orders"], read["bronze.customers"])
    people, identity = resolve_people(prepare_customers(read["bronze.customers"], cfg), cfg, secret, spark)
    people = people.persist()
    activity_ids = (
        read["bronze.events"].select("source_system", "user_id")
        .unionByName(read["bronze.orders"].select("source_system", "user_id"))
        .unionByName(read["bronze.campaign_touches"].select("source_system", "user_id"))
    )  # fmt: skip
    keys = user_keys_for(activity_ids, people, secret).persist()
    products = build_products(read["bronze.products"], cfg)
    lines = build_order_lines(read["bronze.order_lines"], cfg)
    tables = {
        SILVER_CUSTOMERS.name: build_customers(people, cfg, as_of),
        SILVER_USER_KEY_MAP.name: people.select(
            privacy.pseudonym_col(F.col("record_id"), secret, "source").alias("source_key"), "user_key"
        ),
        SILVER_PRODUCTS.name: products,
        SILVER_ORDERS.name: build_orders(read["bronze.orders"], lines, keys, cfg),
        SILVER_ORDER_LINES.name: lines,
        SILVER_EVENTS.name: build_events(read["bronze.events"], products, keys, cfg),
        SILVER_CAMPAIGN_TOUCHES.name: build_touches(read["bronze.campaign_touches"], keys),
    }
    facts = {"as_of": as_of.isoformat(), "persisted": [people, keys], "identity": identity}
    return tables, facts


SILVER_SPECS = {
    spec.name: spec
    for spec in (
        SILVER_CUSTOMERS, SILVER_USER_KEY_MAP, SILVER_PRODUCTS, SILVER_EVENTS,
        SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_CAMPAIGN_TOUCHES,
    )
}  # fmt: skip
