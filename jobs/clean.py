"""Clean: bronze -> silver. One row per real thing, standard formats, no raw
personal data, data-quality gates before anything is published.

- Customers: registrations that share a normalised phone, e-mail or resident ID
  number (configurable) are one person, found as connected components in Spark.
  With ``clean.identity.method: splink`` records linked by a Splink model
  (names, birth date, city, e-mail, phone, ID; common/identity.py) are too.
  The person's ``user_key`` is the HMAC of its earliest registration's source id;
  ``silver.user_key_map`` maps the keyed hash of every source id to it, so
  events and orders of merged accounts follow the person.
- Events: one row per event id; id-less events with identical content within
  ``clean.event_dedup_window_seconds`` are one event.
- Orders, order lines, products, touches: the latest version wins (by update
  time, then ingest order), so paid -> refunded is applied, not duplicated.
- Personal data: names, phones, e-mails, ID numbers, addresses and full IPs are
  used only to derive keys and generalised facts (age band, gender, city, e-mail
  domain, masked phone, IP /24 or /48) and never written.
- Write-audit-publish: every silver table is built and validated first
  (row-level failures go to ``silver.rejected``; a table-level failure stops the
  job), then all are published with MERGE on their keys.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import privacy
from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.events import content_event_id, event_content_hash, flag_unknown_items, to_silver_values
from common.parse import mapped_category
from common.paths import is_local, local_path
from common.runlog import JobResult, new_run_id
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
    SILVER_REJECTED,
    SILVER_USER_KEY_MAP,
)

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


# ---------------------------------------------------------------------------- identity
def identity_keys(customers: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """(record_id, key) pairs: the normalised identity keys of every registration."""
    parts = []
    if "phone" in cfg.clean.identity.match_on:
        parts.append(customers.select("record_id", F.concat(F.lit("phone:"), "phone_e164").alias("key")))
    if "email" in cfg.clean.identity.match_on:
        parts.append(customers.select("record_id", F.concat(F.lit("email:"), "email_norm").alias("key")))
    if "id_number" in cfg.clean.identity.match_on:
        parts.append(customers.where("id_valid").select("record_id", F.concat(F.lit("id:"), "id_norm").alias("key")))
    keys = parts[0]
    for part in parts[1:]:
        keys = keys.unionByName(part)
    keys = keys.where(F.col("key").isNotNull())
    distance = cfg.clean.identity.fuzzy_name_distance
    if distance:
        # Near matches on the name within the same birth date and city.
        named = customers.where("name_norm IS NOT NULL AND birth_date_any IS NOT NULL").select(
            "record_id", "name_norm", "birth_date_any", "city"
        )
        a, b = named.alias("a"), named.alias("b")
        pairs = a.join(
            b,
            (F.col("a.birth_date_any") == F.col("b.birth_date_any"))
            & (F.col("a.city").eqNullSafe(F.col("b.city")))
            & (F.col("a.record_id") < F.col("b.record_id"))
            & (F.levenshtein("a.name_norm", "b.name_norm") <= distance),
        ).select(F.col("a.record_id").alias("r1"), F.col("b.record_id").alias("r2"))
        link = F.concat(F.lit("name:"), F.col("r1"))
        keys = keys.unionByName(pairs.select(F.col("r1").alias("record_id"), link.alias("key"))).unionByName(
            pairs.select(F.col("r2").alias("record_id"), link.alias("key"))
        )
    return keys.distinct()


# Below this many (record, key) rows of shared keys, components are found on the driver:
# one query instead of one Spark round per hop of the longest chain (about 6 s of a
# small clean). Duplicates are a small share of registrations, so this is the usual case.
DRIVER_COMPONENTS_MAX_ROWS = 200_000


def connected_components(
    record_ids: DataFrame,
    keys: DataFrame,
    max_iterations: int = 20,
    driver_max_rows: int = DRIVER_COMPONENTS_MAX_ROWS,
) -> DataFrame:
    """(record_id, component): the smallest record id reachable through shared keys.

    Only a key that two or more records share links anything, so those rows are found
    first (one aggregation); a record without one is its own component. Up to
    ``driver_max_rows`` such rows are joined on the driver (union-find); more go through
    label propagation in Spark, so it scales with the data instead of collecting it.
    """
    links = (
        keys.select("record_id", "key")
        .distinct()
        .withColumn("_records", F.count("*").over(Window.partitionBy("key")))
        .where("_records > 1")
        .drop("_records")
    )
    rows = links.limit(driver_max_rows + 1).collect()
    if len(rows) <= driver_max_rows:
        labels = _components_on_driver(record_ids.sparkSession, [(r.record_id, r.key) for r in rows])
    else:
        labels = _label_propagation(links.select("record_id").distinct(), links, max_iterations)
    found = labels.withColumnRenamed("component", "_component")
    return record_ids.join(found, "record_id", "left").select(
        "record_id", F.coalesce("_component", "record_id").alias("component")
    )


def _components_on_driver(spark: SparkSession, pairs: list[tuple[str, str]]) -> DataFrame:
    """(record_id, component) of the records in ``pairs`` by union-find; the component is
    the smallest record id (Python's str order is Spark's: UTF-8 keeps code point order)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving
            x = parent[x]
        return x

    first_of_key: dict[str, str] = {}
    for record, key in pairs:
        other = first_of_key.setdefault(key, record)
        a, b = root(record), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)  # the root is always its component's smallest id
    return spark.createDataFrame([(r, root(r)) for r in parent], "record_id string, component string")


def _label_propagation(record_ids: DataFrame, keys: DataFrame, max_iterations: int) -> DataFrame:
    """Label propagation in Spark (records <-> keys) until no label changes."""
    labels = record_ids.select("record_id", F.col("record_id").alias("component"))
    for _ in range(max_iterations):
        key_labels = keys.join(labels, "record_id").groupBy("key").agg(F.min("component").alias("key_component"))
        proposed = keys.join(key_labels, "key").groupBy("record_id").agg(F.min("key_component").alias("proposed"))
        updated = (
            labels.join(proposed, "record_id", "left")
            .select("record_id", F.least("component", F.coalesce("proposed", "component")).alias("component"))
            .localCheckpoint()
        )
        changed = updated.join(labels.withColumnRenamed("component", "old"), "record_id").where("component != old")
        labels = updated
        if changed.isEmpty():
            return labels
    raise RuntimeError(f"identity resolution did not converge in {max_iterations} iterations")


def prepare_customers(bronze: DataFrame, cfg: ShopLakeConfig) -> DataFrame:
    """Bronze registrations with normalised identity keys and derived facts (still PII, in memory only)."""
    return (
        bronze.withColumn("record_id", F.concat_ws(":", "source_system", "customer_id"))
        .withColumn("phone_e164", privacy.phone_e164(F.col("phone")))
        .withColumn("email_norm", privacy.email_normalised(F.col("email")))
        .withColumn("id_norm", F.upper(F.regexp_replace("id_number", r"\s", "")))
        .withColumn("id_valid", F.coalesce(privacy.resident_id_valid(F.col("id_number")), F.lit(False)))
        .withColumn(
            "birth_date_any",
            F.when(F.col("id_valid"), privacy.resident_id_birth_date(F.col("id_number"))).otherwise(
                F.col("birth_date")
            ),
        )
        .withColumn(
            "gender_any",
            F.when(F.col("id_valid"), privacy.resident_id_gender(F.col("id_number"))).otherwise(
                mapped_category(F.col("gender"), cfg.clean.categories.get("gender", {}))
            ),
        )
        .withColumn("name_norm", F.regexp_replace(privacy.text_normalised(F.col("name")), r"\s", ""))
        .withColumn("city", privacy.text_normalised(F.col("city")))
        .withColumn("province", privacy.text_normalised(F.col("province")))
    )


def splink_keys(spark: SparkSession, customers: DataFrame, cfg: ShopLakeConfig) -> tuple[DataFrame, dict]:
    """(record_id, key) pairs naming each record's Splink cluster, and the run's identity facts."""
    from common.identity import splink_clusters

    clusters, facts = splink_clusters(spark, customers, cfg.clean.identity.splink)
    return clusters.select("record_id", F.concat(F.lit("splink:"), "cluster").alias("key")), facts


def resolve_people(
    customers: DataFrame, cfg: ShopLakeConfig, secret: bytes, spark: SparkSession | None = None
) -> tuple[DataFrame, dict]:
    """Each registration with its person's ``user_key`` (HMAC of the earliest registration),
    and facts about the resolution for the run log."""
    keys = identity_keys(customers, cfg)
    facts: dict[str, Any] = {"method": cfg.clean.identity.method}
    if cfg.clean.identity.method == "splink":
        # Exact keys stay sure links: Splink's clusters are joined to them, not a replacement.
        linked, facts = splink_keys(spark or customers.sparkSession, customers, cfg)
        keys = keys.unionByName(linked)
    components = connected_components(customers.select("record_id").distinct(), keys)
    people = customers.join(components, "record_id")
    first = Window.partitionBy("component").orderBy(F.col("registered_at").asc_nulls_last(), F.col("record_id"))
    canonical = people.withColumn("canonical", F.first("record_id").over(first))
    return canonical.withColumn("user_key", privacy.pseudonym_col(F.col("canonical"), secret, "user")), facts


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


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Build, audit and publish silver from bronze."""
    from common import quality

    run_id = run_id or new_run_id("clean")
    secret = cfg.pseudonym_secret()  # fails first, naming the variable, when unset
    store = store or open_store(spark, cfg)
    result = JobResult("clean", run_id)
    result.inputs = {
        spec.name: store.version(spec)
        for spec in (BRONZE_CUSTOMERS, BRONZE_PRODUCTS, BRONZE_EVENTS, BRONZE_ORDERS, BRONZE_ORDER_LINES,
                     BRONZE_CAMPAIGN_TOUCHES)
        if store.exists(spec)
    }  # fmt: skip
    tables, facts = build_silver(spark, store, cfg, secret)
    model = facts["identity"].pop("model", None)  # a file in the report folder, not the run log
    rules = quality.load_quality_rules(cfg)
    reports_dir = quality.default_reports_dir(cfg)
    # Times after the as-of day (plus a day of margin for time zones) are clock skew, not data.
    params = {"latest_plausible_time": f"{date.fromisoformat(facts['as_of']) + timedelta(days=2)}T00:00:00Z"}
    staged: dict[str, DataFrame] = {}
    rejected: list[DataFrame] = []
    cached: list[DataFrame] = list(facts["persisted"])
    gates = {}
    try:
        # Audit everything before publishing anything (write-audit-publish); tables are
        # built in dependency order so references see the rows that will be published.
        for name, df in tables.items():
            df = store.conform(SILVER_SPECS[name], df).persist()
            cached.append(df)
            table_rules = rules.get(name)
            if table_rules is not None:
                gate = quality.validate_table(
                    df, table_rules, run_id=run_id, reports_dir=reports_dir, context=staged, params=params
                )
                quality.enforce(gate)
                gates[name] = gate.success
                passing, failing = quality.split_row_failures(df, table_rules, context=staged, params=params)
                rejected.append(
                    failing.select(
                        F.lit(name).alias("table_name"),
                        "failed_expectation",
                        F.to_json(F.struct(*df.columns)).alias("record"),
                    )
                )
                df = passing.persist()
                cached.append(df)
            staged[name] = df
        customers = staged[SILVER_CUSTOMERS.name]
        result.metrics["k_anonymity"] = k_anonymity_report(customers, cfg.clean.k_anonymity)
        result.metrics["as_of"] = facts["as_of"]
        result.metrics["identity"] = facts["identity"]
        # Publish.
        for name, df in staged.items():
            result.outputs[name] = store.merge(SILVER_SPECS[name], df)
            result.row_counts[name] = store.read(SILVER_SPECS[name]).count()
        if rejected:
            all_rejected = rejected[0]
            for part in rejected[1:]:
                all_rejected = all_rejected.unionByName(part)
            # Silver is rebuilt from all of bronze, so its rejects are too: the table holds the
            # current rejections, not a history (the run log says which run wrote it).
            result.outputs[SILVER_REJECTED.name] = store.overwrite(SILVER_REJECTED, all_rejected)
    finally:
        for df in cached:
            df.unpersist()
    result.metrics["quality_gates"] = gates
    _write_report(reports_dir, run_id, result.metrics)
    if model is not None:
        _write_report(reports_dir, run_id, model, IDENTITY_MODEL_FILE)
    result.metrics["k_anonymity"].pop("classes_below_k_sample")  # in the report file, not the run log
    result.summary = _summary(result)
    return result


# Files clean writes beside the quality-gate results in <reports>/<run id>/ (not gate results).
CLEAN_METRICS_FILE = "clean_metrics.json"
IDENTITY_MODEL_FILE = "identity_model.json"


def _write_report(reports_dir: str, run_id: str, metrics: dict, file_name: str = CLEAN_METRICS_FILE) -> None:
    if not is_local(reports_dir):
        return
    folder = os.path.join(local_path(reports_dir), run_id)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, file_name), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)


def _summary(result: JobResult) -> str:
    k = result.metrics["k_anonymity"]
    lines = [f"clean: silver published (ages as of {result.metrics['as_of']})"]
    for name, count in sorted(result.row_counts.items()):
        lines.append(f"  {name:<24} {count:>10,} rows")
    lines.append(
        f"  k-anonymity (k={k['k']}) over {', '.join(k['quasi_identifiers'])}: smallest class {k['smallest_class']}, "
        f"{k['rows_needing_suppression_or_coarsening']} rows in classes below k"
    )
    identity = result.metrics.get("identity", {})
    if identity.get("method") == "splink" and "people" in identity:
        lines.append(
            f"  identity (splink): {identity['records']:,} registrations -> {identity['people']:,} people, "
            f"{identity['links']:,} links at p >= threshold, {identity['seconds']} s"
        )
    return "\n".join(lines)
