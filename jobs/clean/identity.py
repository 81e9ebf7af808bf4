"""Who is who: identity keys of each registration (exact, optionally fuzzy names, or Splink's
links), their connected components, and the people they make (``user_key``)."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import privacy
from common.config import ShopLakeConfig
from common.parse import mapped_category

log = logging.getLogger(__name__)


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
        # Cached: every round joins the links again; the labels are checkpointed, so the
        # cache can go once the loop has converged.
        links = links.persist()
        try:
            labels = _label_propagation(links.select("record_id").distinct(), links, max_iterations)
        finally:
            links.unpersist()
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
