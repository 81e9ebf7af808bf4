"""Audiences as of a date: selection, consent, frequency cap, deterministic hold-out, the
k-anonymous export."""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import date, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import export
from common.asof import day_end, on_or_before
from common.config import CartAbandonConfig, ShopLakeConfig
from common.delta import DeltaStore
from common.errors import ConfigError
from common.paths import is_local, local_path
from common.tables import (
    GOLD_AUDIENCE_EXPORT,
    GOLD_AUDIENCES,
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    TableSpec,
)
from common.touches import was_sent
from jobs.campaign.definitions import CampaignDefinition, Selection, required_inputs

log = logging.getLogger(__name__)

HASH_BUCKETS = 2**32


# ============================================================================ guardrails
def control_bucket(user_key: str, campaign_id: str) -> float:
    """A person's fixed position in [0, 1) for a campaign: the first 32 bits of
    SHA-256("<campaign_id>:<user_key>"). Python twin of :func:`control_bucket_col`."""
    digest = hashlib.sha256(f"{campaign_id}:{user_key}".encode()).hexdigest()
    return int(digest[:8], 16) / HASH_BUCKETS


def control_bucket_col(user_key: str | Column = "user_key", campaign_id: str | Column = "campaign_id") -> Column:
    """Column version of :func:`control_bucket` (same bits, so both always agree)."""
    uk = F.col(user_key) if isinstance(user_key, str) else user_key
    cid = F.col(campaign_id) if isinstance(campaign_id, str) else campaign_id
    digest = F.sha2(F.concat(cid, F.lit(":"), uk), 256)
    return F.conv(F.substring(digest, 1, 8), 16, 10).cast("long") / F.lit(float(HASH_BUCKETS))


def with_assignment(control_share: Column | float) -> Any:
    """Add ``assignment``: per campaign, the ``round(share * n)`` members with the lowest
    :func:`control_bucket` are ``control``, the rest ``treatment``.

    Ranking by the hash instead of thresholding it makes the hold-out's size exact (a
    threshold drifts by about sqrt(share / n), 1.3 points on 500 people). The hash still
    decides who: the same audience always splits the same way, and a person only
    changes side between two days' audiences if they sit at the cut."""
    share = control_share if isinstance(control_share, Column) else F.lit(float(control_share))

    def transform(df: DataFrame) -> DataFrame:
        by_bucket = Window.partitionBy("campaign_id").orderBy(control_bucket_col(), "user_key")
        size = F.count(F.lit(1)).over(Window.partitionBy("campaign_id"))
        is_control = F.row_number().over(by_bucket) <= F.round(share * size)
        return df.withColumn("assignment", F.when(is_control, F.lit("control")).otherwise(F.lit("treatment")))

    return transform


def with_frequency_cap(recent_touches: DataFrame, max_touches: int) -> Any:
    """Keep a person's memberships in priority order while touches already sent in the
    period plus memberships stay within ``max_touches``.

    ``recent_touches``: (user_key, touches) for the period; members need ``priority``."""

    def transform(members: DataFrame) -> DataFrame:
        order = Window.partitionBy("user_key").orderBy("priority", "campaign_id")
        return (
            members.join(recent_touches, "user_key", "left")
            .withColumn("_slot", F.row_number().over(order) + F.coalesce(F.col("touches"), F.lit(0)))
            .where(F.col("_slot") <= max_touches)
            .drop("_slot", "touches")
        )

    return transform


def consenting(profiles: DataFrame, customers: DataFrame) -> DataFrame:
    """Profiles of people whose consent is recorded as given in both gold.profiles and
    silver.customers (a person missing from silver.customers has no recorded consent)."""
    yes = customers.where(F.col("marketing_consent")).select("user_key")
    return profiles.where(F.col("marketing_consent")).join(yes, "user_key", "left_semi")


# ============================================================================ inputs
def read_as_of(store: DeltaStore, spec: TableSpec, as_of: date, columns: list[str]) -> DataFrame | None:
    """The ``as_of`` rows of a gold table (contract columns only), or None when the table
    is missing or has no row for the date."""
    if not store.exists(spec):
        return None
    df = store.read(spec)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        from common.errors import SchemaMismatch

        raise SchemaMismatch(f"{spec.name}: contract columns {missing} missing; found {df.columns}")
    df = df.where(F.col("as_of") == F.lit(as_of)).select(*columns)
    return df if df.limit(1).count() else None


def cart_abandoners(events: DataFrame, as_of: date, hours: int, lookback_days: int, max_items: int) -> DataFrame:
    """(user_key, abandoned_items): items added to the cart in the look-back window, at
    least ``hours`` before the end of the as-of day, and not bought since; most recent first."""
    end = day_end(as_of).replace(tzinfo=None)
    adds = events.where(
        (F.col("event_type") == "add_to_cart")
        & F.col("user_key").isNotNull()
        & F.col("item_id").isNotNull()
        & (F.col("event_time") >= F.lit(end - timedelta(days=lookback_days)))
        & (F.col("event_time") <= F.lit(end - timedelta(hours=hours)))
    ).select("user_key", "item_id", F.col("event_time").alias("added_at"))
    # Renamed columns: both sides come from one DataFrame, so `adds.user_key == bought.user_key`
    # could resolve to the same attribute on both sides.
    bought = events.where((F.col("event_type") == "purchase") & on_or_before("event_time", as_of)).select(
        F.col("user_key").alias("b_user"), F.col("item_id").alias("b_item"), F.col("event_time").alias("bought_at")
    )
    open_adds = adds.join(
        bought,
        (F.col("user_key") == F.col("b_user"))
        & (F.col("item_id") == F.col("b_item"))
        & (F.col("bought_at") >= F.col("added_at")),
        "left_anti",
    )
    latest = open_adds.groupBy("user_key", "item_id").agg(F.max("added_at").alias("added_at"))
    return latest.groupBy("user_key").agg(
        F.expr(
            f"transform(slice(sort_array(collect_list(struct(added_at, item_id)), false), 1, {max_items}), "
            "x -> x.item_id)"
        ).alias("abandoned_items")
    )


def top_recommendations(recs: DataFrame, n: int) -> DataFrame:
    """(user_key, recommended_items): the ``n`` best-ranked items per customer."""
    return (
        recs.where(F.col("rank") <= n)
        .groupBy("user_key")
        .agg(
            F.expr("transform(sort_array(collect_list(struct(rank, item_id))), x -> x.item_id)").alias(
                "recommended_items"
            )
        )
    )


def selection_condition(sel: Selection, clv_threshold: float | None) -> Column:
    """One boolean column for a campaign's criteria (true when none are set)."""
    cond = F.lit(True)

    def isin(column: str, values: list[str] | None) -> None:
        nonlocal cond
        if values is not None:
            cond = cond & F.col(column).isin(values)

    isin("lifecycle_stage", sel.lifecycle_stages)
    isin("rfm_segment", sel.rfm_segments)
    isin("segment_name", sel.segments)
    isin("risk_tier", sel.risk_tiers)
    if sel.tags_any is not None:
        cond = cond & F.arrays_overlap(F.col("tags"), F.array(*[F.lit(t) for t in sel.tags_any]))
    bounds = (
        ("recency_days", sel.min_recency_days, sel.max_recency_days),
        ("frequency", sel.min_frequency, sel.max_frequency),
        ("monetary", sel.min_monetary, None),
        ("churn_probability", sel.min_churn_probability, None),
        ("clv", sel.min_clv, None),
        ("clv", clv_threshold, None),
    )
    for column, low, high in bounds:
        if low is not None:
            cond = cond & (F.col(column) >= F.lit(low))
        if high is not None:
            cond = cond & (F.col(column) <= F.lit(high))
    if sel.cart_abandoners:
        cond = cond & (F.size("abandoned_items") > 0)
    # Comparisons with null are null: treat as not selected.
    return F.coalesce(cond, F.lit(False))


# ============================================================================ audiences
_PROFILE_COLUMNS = [
    "user_key", "marketing_consent", "recency_days", "frequency", "monetary", "rfm_segment", "lifecycle_stage", "tags",
]  # fmt: skip


def build_audiences(
    spark: SparkSession, store: DeltaStore, cfg: ShopLakeConfig, as_of: date, definitions: list[CampaignDefinition]
) -> tuple[DataFrame, dict[str, Any]]:
    """All campaigns' audiences (GOLD_AUDIENCES columns but as_of) and facts for the run log."""
    ccfg = cfg.campaign
    facts: dict[str, Any] = {"campaigns": {}}
    empty = spark.createDataFrame([], GOLD_AUDIENCES.schema).drop("as_of")
    profiles = read_as_of(store, GOLD_PROFILES, as_of, _PROFILE_COLUMNS)
    if profiles is None:
        reason = f"gold.profiles has no rows for {as_of}"
        log.warning("campaign: no audiences: %s", reason)
        for d in definitions:
            facts["campaigns"][d.id] = {"status": "skipped", "reason": reason}
        return empty, facts
    customers = store.read(SILVER_CUSTOMERS).select("user_key", "marketing_consent")
    base = consenting(profiles, customers)
    facts["profiles"] = profiles.count()
    facts["consenting"] = base.count()
    facts["excluded_without_consent"] = facts["profiles"] - facts["consenting"]

    available = _read_selection_inputs(store, as_of, ccfg.cart_abandon)
    base = _with_selection_attributes(base, available, ccfg.top_recommendations).persist()
    abandoned = available[SILVER_EVENTS.name]
    facts["cart_abandoners"] = int(base.where(F.size("abandoned_items") > 0).count()) if abandoned is not None else 0

    members = _campaign_members(base, definitions, available, ccfg.control_share, as_of, facts["campaigns"])
    if not members:
        base.unpersist()
        return empty, facts

    selected = members[0]
    for m in members[1:]:
        selected = selected.unionByName(m)
    selected = selected.persist()
    # The cap runs before the hold-out so that treatment and control come from the same capped people.
    recent = _recent_touch_counts(spark, store, as_of, ccfg.frequency_cap.period_days)
    audiences = (
        selected.transform(with_frequency_cap(recent, ccfg.frequency_cap.max_touches))
        .transform(with_assignment(F.col("_control_share")))
        .drop("_control_share")
        .persist()
    )
    _record_group_sizes(facts["campaigns"], selected, audiences)
    selected.unpersist()
    base.unpersist()
    return audiences, facts


def _read_selection_inputs(
    store: DeltaStore, as_of: date, cart_abandon: CartAbandonConfig
) -> dict[str, DataFrame | None]:
    """The optional inputs of selection criteria by table name (None when a table has no rows
    for ``as_of``); silver.events stands for its cart abandoners."""
    available: dict[str, DataFrame | None] = {
        GOLD_SEGMENTS.name: read_as_of(store, GOLD_SEGMENTS, as_of, ["user_key", "segment_name"]),
        GOLD_CHURN_SCORES.name: read_as_of(store, GOLD_CHURN_SCORES, as_of, ["user_key", "probability", "risk_tier"]),
        GOLD_CLV.name: read_as_of(store, GOLD_CLV, as_of, ["user_key", "clv"]),
        GOLD_RECOMMENDATIONS.name: read_as_of(store, GOLD_RECOMMENDATIONS, as_of, ["user_key", "rank", "item_id"]),
    }
    abandoned = None
    if store.exists(SILVER_EVENTS):
        abandoned = cart_abandoners(
            store.read(SILVER_EVENTS), as_of, cart_abandon.hours, cart_abandon.lookback_days, cart_abandon.max_items
        )
    available[SILVER_EVENTS.name] = abandoned
    return available


def _attach(df: DataFrame, extra: DataFrame | None, columns: dict[str, T.DataType]) -> DataFrame:
    """``df`` with ``columns`` of ``extra`` by user_key; typed nulls when ``extra`` is None."""
    if extra is None:
        return df.select("*", *[F.lit(None).cast(t).alias(c) for c, t in columns.items()])
    return df.join(extra.select("user_key", *columns), "user_key", "left")


def _with_selection_attributes(base: DataFrame, available: dict[str, DataFrame | None], top_n: int) -> DataFrame:
    """``base`` with every column a criterion may test, whether or not its table has rows for
    the date, so that every campaign selects from one schema; item lists are never null."""
    base = _attach(base, available[GOLD_SEGMENTS.name], {"segment_name": T.StringType()})
    churn = available[GOLD_CHURN_SCORES.name]
    churn = churn.withColumnRenamed("probability", "churn_probability") if churn is not None else None
    base = _attach(base, churn, {"churn_probability": T.DoubleType(), "risk_tier": T.StringType()})
    base = _attach(base, available[GOLD_CLV.name], {"clv": T.DoubleType()})
    recs = available[GOLD_RECOMMENDATIONS.name]
    recs = top_recommendations(recs, top_n) if recs is not None else None
    base = _attach(base, recs, {"recommended_items": T.ArrayType(T.StringType())})
    base = _attach(base, available[SILVER_EVENTS.name], {"abandoned_items": T.ArrayType(T.StringType())})
    no_items = F.array().cast("array<string>")
    return base.withColumn("recommended_items", F.coalesce("recommended_items", no_items)).withColumn(
        "abandoned_items", F.coalesce("abandoned_items", no_items)
    )


def _campaign_members(
    base: DataFrame,
    definitions: list[CampaignDefinition],
    available: dict[str, DataFrame | None],
    default_share: float,
    as_of: date,
    campaign_facts: dict[str, Any],
) -> list[DataFrame]:
    """Each campaign's selected people, before the cap and the hold-out, in priority order
    (the order of ``definitions``). A campaign whose inputs have no rows for the date is
    skipped; ``campaign_facts`` records per campaign whether it was built or why not."""
    members: list[DataFrame] = []
    for priority, d in enumerate(definitions, start=1):
        missing = [t for t in required_inputs(d) if available.get(t) is None]
        if missing:
            reason = f"needs {', '.join(missing)}, which has no rows for {as_of}"
            log.warning("campaign %s skipped: %s", d.id, reason)
            campaign_facts[d.id] = {"status": "skipped", "reason": reason}
            continue
        threshold = _clv_threshold(available[GOLD_CLV.name], d.select.clv_top_share)
        share = d.control_share if d.control_share is not None else default_share
        selected = base.where(selection_condition(d.select, threshold))
        members.append(_membership_rows(selected, d, priority, share))
        campaign_facts[d.id] = {"status": "built", "control_share": share}
    return members


def _clv_threshold(clv: DataFrame | None, top_share: float | None) -> float | None:
    """The CLV at which the top ``top_share`` of customers starts (None when not asked for)."""
    if top_share is None:
        return None
    return clv.agg(F.expr(f"percentile(clv, {1 - top_share})")).first()[0]


def _membership_rows(selected: DataFrame, d: CampaignDefinition, priority: int, share: float) -> DataFrame:
    """GOLD_AUDIENCES columns but assignment and as_of, plus the campaign's priority (for the
    cap) and its ``_control_share`` (for the hold-out)."""
    return selected.select(
        F.lit(d.id).alias("campaign_id"),
        "user_key",
        F.lit(d.name).alias("campaign_name"),
        F.lit(d.playbook).alias("playbook"),
        F.lit(d.channel).alias("channel"),
        F.lit(d.offer).cast("string").alias("offer"),
        F.lit(priority).alias("priority"),
        F.lit(share).alias("_control_share"),
        "lifecycle_stage",
        "segment_name",
        "risk_tier",
        "churn_probability",
        "clv",
        "recommended_items",
        "abandoned_items",
    )


def _recent_touch_counts(spark: SparkSession, store: DeltaStore, as_of: date, period_days: int) -> DataFrame:
    """(user_key, touches): messages sent in the ``period_days`` up to the end of the as-of day."""
    if not store.exists(SILVER_CAMPAIGN_TOUCHES):
        return spark.createDataFrame([], "user_key string, touches long")
    end = day_end(as_of).replace(tzinfo=None)
    return (
        store.read(SILVER_CAMPAIGN_TOUCHES)
        .where(
            (F.col("sent_at") < F.lit(end))
            & (F.col("sent_at") >= F.lit(end - timedelta(days=period_days)))
            & was_sent()
        )
        .groupBy("user_key")
        .agg(F.count("*").alias("touches"))
    )


def _record_group_sizes(campaign_facts: dict[str, Any], selected: DataFrame, audiences: DataFrame) -> None:
    """Add to each built campaign's facts how many people were selected, removed by the
    frequency cap, and assigned to treatment and to control."""
    before = {r.campaign_id: r["count"] for r in selected.groupBy("campaign_id").count().collect()}
    counts = audiences.groupBy("campaign_id", "assignment").count().collect()
    after = {(r.campaign_id, r.assignment): r["count"] for r in counts}
    for cid, info in campaign_facts.items():
        if info["status"] != "built":
            continue
        treat, ctrl = after.get((cid, "treatment"), 0), after.get((cid, "control"), 0)
        chosen = before.get(cid, 0)
        info.update(selected=chosen, capped=chosen - treat - ctrl, treatment=treat, control=ctrl)


def audience_export(audiences: DataFrame, quasi_identifiers: list[str], k: int) -> DataFrame:
    """Treatment recipients with pseudonymous keys and campaign attributes only; person
    attributes of classes smaller than ``k`` (per campaign) withheld."""
    columns = [c for c in GOLD_AUDIENCE_EXPORT.columns if c != "as_of"]
    unknown = [q for q in quasi_identifiers if q not in columns]
    if unknown:
        raise ConfigError(f"campaign.export.quasi_identifiers: {unknown} are not export columns ({columns})")
    treated = audiences.where(F.col("assignment") == "treatment").select(*columns)
    return export.suppress_small_classes(treated, quasi_identifiers, k, ["campaign_id"])


def export_csv_path(cfg: ShopLakeConfig, as_of: date, campaign_id: str) -> str:
    """``<lake root>/exports/campaign/<as_of>/<campaign_id>.csv``."""
    root = cfg.lake_root.rstrip("/")
    folder = f"{root}/exports/campaign/{as_of.isoformat()}"
    if is_local(root):
        os.makedirs(local_path(folder), exist_ok=True)
    return f"{folder}/{campaign_id}.csv"
