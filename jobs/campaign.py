"""Campaign: gold -> audiences, and what campaigns achieved.

Audiences (as of ``gold.as_of``):

- Campaigns and their selection criteria come from ``conf/campaigns.yaml``
  (``campaign.definitions``); a criterion needing a gold table that is missing or
  empty for the date skips that campaign, with the reason in the run log and report.
- Guardrails: customers without marketing consent (in gold.profiles or
  silver.customers) are never selected; a frequency cap counts touches sent in the
  last ``period_days`` plus this run's audiences in campaign priority order; a
  deterministic hold-out per campaign (SHA-256 of campaign id and user_key, so a
  person's group never changes between runs) is applied after the cap so that
  treatment and control come from the same capped population.
- Exports (CSV per campaign, gold.audience_export): treatment recipients by
  pseudonymous key and campaign attributes only; person attributes shared by fewer
  than ``export.k_anonymity`` recipients of a campaign are withheld.

Effect evaluation (touches sent up to the as-of day): sends, opens, clicks,
conversions (the touch's converted flag), orders and revenue by last-touch
attribution within ``attribution_window_hours``, cost, the usual rates, by campaign,
channel, segment and variant (gold.campaign_kpis); conversion-rate and
revenue-per-recipient tests of each variant against A and against the hold-out
(gold.ab_results); a markdown/HTML report under ``<lake>/reports/campaign/``.
"""

from __future__ import annotations

import hashlib
import html
import logging
import math
import os
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import charts, export, markdown, stats
from common import orders as common_orders
from common.artifacts import report_path
from common.asof import day_end, on_or_before, publish_as_of, resolve_as_of, up_to
from common.config import CampaignConfig, ShopLakeConfig, StrictModel, load_yaml
from common.delta import DeltaStore, open_store
from common.errors import ConfigError
from common.paths import is_local, local_path
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_AB_RESULTS,
    GOLD_AUDIENCE_EXPORT,
    GOLD_AUDIENCES,
    GOLD_CAMPAIGN_KPIS,
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDERS,
    TableSpec,
)
from common.touches import HOLDOUT, was_sent

log = logging.getLogger(__name__)

HASH_BUCKETS = 2**32


# ============================================================================ definitions
class Selection(StrictModel):
    """Selection criteria; all must hold (see conf/campaigns.yaml)."""

    lifecycle_stages: list[str] | None = None
    rfm_segments: list[str] | None = None
    tags_any: list[str] | None = None
    min_recency_days: int | None = None
    max_recency_days: int | None = None
    min_frequency: int | None = None
    max_frequency: int | None = None
    min_monetary: float | None = None
    segments: list[str] | None = None
    risk_tiers: list[str] | None = None
    min_churn_probability: float | None = Field(None, ge=0, le=1)
    min_clv: float | None = None
    clv_top_share: float | None = Field(None, gt=0, le=1)
    cart_abandoners: bool = False


class CampaignDefinition(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    playbook: str
    channel: str
    offer: str | None = None
    control_share: float | None = Field(None, ge=0, lt=1)
    select: Selection = Field(default_factory=Selection)


class CampaignFile(StrictModel):
    campaigns: list[CampaignDefinition]

    @field_validator("campaigns")
    @classmethod
    def _unique_ids(cls, value: list[CampaignDefinition]) -> list[CampaignDefinition]:
        ids = [c.id for c in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"campaign ids must be unique; repeated: {dupes}")
        return value


# Which input each criterion needs (gold.profiles is always needed).
CRITERION_TABLE = {
    "segments": GOLD_SEGMENTS.name,
    "risk_tiers": GOLD_CHURN_SCORES.name,
    "min_churn_probability": GOLD_CHURN_SCORES.name,
    "min_clv": GOLD_CLV.name,
    "clv_top_share": GOLD_CLV.name,
    "cart_abandoners": SILVER_EVENTS.name,
}


def load_definitions(cfg: ShopLakeConfig) -> list[CampaignDefinition]:
    """The campaigns of ``campaign.definitions``, validated.

    Raises:
        ConfigError: naming the file and the bad key.
    """
    path = cfg.resolve_path(cfg.campaign.definitions)
    return load_yaml(path, CampaignFile, what="campaign definitions", key="campaign.definitions").campaigns


def required_inputs(defn: CampaignDefinition) -> list[str]:
    """Inputs a campaign needs beyond gold.profiles, in a stable order."""
    chosen = defn.select.model_dump(exclude_defaults=True)
    return sorted({CRITERION_TABLE[k] for k in chosen if k in CRITERION_TABLE})


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
def build_audiences(
    spark: SparkSession, store: DeltaStore, cfg: ShopLakeConfig, as_of: date, definitions: list[CampaignDefinition]
) -> tuple[DataFrame, dict[str, Any]]:
    """All campaigns' audiences (GOLD_AUDIENCES columns but as_of) and facts for the run log."""
    ccfg = cfg.campaign
    facts: dict[str, Any] = {"campaigns": {}}
    empty = spark.createDataFrame([], GOLD_AUDIENCES.schema).drop("as_of")
    profiles = read_as_of(
        store, GOLD_PROFILES, as_of,
        ["user_key", "marketing_consent", "recency_days", "frequency", "monetary", "rfm_segment", "lifecycle_stage",
         "tags"],
    )  # fmt: skip
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

    available: dict[str, DataFrame | None] = {
        GOLD_SEGMENTS.name: read_as_of(store, GOLD_SEGMENTS, as_of, ["user_key", "segment_name"]),
        GOLD_CHURN_SCORES.name: read_as_of(store, GOLD_CHURN_SCORES, as_of, ["user_key", "probability", "risk_tier"]),
        GOLD_CLV.name: read_as_of(store, GOLD_CLV, as_of, ["user_key", "clv"]),
        GOLD_RECOMMENDATIONS.name: read_as_of(store, GOLD_RECOMMENDATIONS, as_of, ["user_key", "rank", "item_id"]),
    }
    abandoned = None
    if store.exists(SILVER_EVENTS):
        abandoned = cart_abandoners(
            store.read(SILVER_EVENTS), as_of, ccfg.cart_abandon.hours, ccfg.cart_abandon.lookback_days,
            ccfg.cart_abandon.max_items,
        )  # fmt: skip
    available[SILVER_EVENTS.name] = abandoned

    def attach(df: DataFrame, extra: DataFrame | None, columns: dict[str, T.DataType]) -> DataFrame:
        if extra is None:
            return df.select("*", *[F.lit(None).cast(t).alias(c) for c, t in columns.items()])
        return df.join(extra.select("user_key", *columns), "user_key", "left")

    base = attach(base, available[GOLD_SEGMENTS.name], {"segment_name": T.StringType()})
    churn = available[GOLD_CHURN_SCORES.name]
    churn = churn.withColumnRenamed("probability", "churn_probability") if churn is not None else None
    base = attach(base, churn, {"churn_probability": T.DoubleType(), "risk_tier": T.StringType()})
    base = attach(base, available[GOLD_CLV.name], {"clv": T.DoubleType()})
    recs = available[GOLD_RECOMMENDATIONS.name]
    recs = top_recommendations(recs, ccfg.top_recommendations) if recs is not None else None
    base = attach(base, recs, {"recommended_items": T.ArrayType(T.StringType())})
    base = attach(base, abandoned, {"abandoned_items": T.ArrayType(T.StringType())})
    no_items = F.array().cast("array<string>")
    base = base.withColumn("recommended_items", F.coalesce("recommended_items", no_items)).withColumn(
        "abandoned_items", F.coalesce("abandoned_items", no_items)
    )
    base = base.persist()
    facts["cart_abandoners"] = int(base.where(F.size("abandoned_items") > 0).count()) if abandoned is not None else 0

    clv_all = available[GOLD_CLV.name]
    members: list[DataFrame] = []
    for priority, d in enumerate(definitions, start=1):
        missing = [t for t in required_inputs(d) if available.get(t) is None]
        if missing:
            reason = f"needs {', '.join(missing)}, which has no rows for {as_of}"
            log.warning("campaign %s skipped: %s", d.id, reason)
            facts["campaigns"][d.id] = {"status": "skipped", "reason": reason}
            continue
        threshold = None
        if d.select.clv_top_share is not None:
            threshold = clv_all.agg(F.expr(f"percentile(clv, {1 - d.select.clv_top_share})")).first()[0]
        share = d.control_share if d.control_share is not None else ccfg.control_share
        selected = base.where(selection_condition(d.select, threshold)).select(
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
        members.append(selected)
        facts["campaigns"][d.id] = {"status": "built", "control_share": share}
    if not members:
        base.unpersist()
        return empty, facts

    selected = members[0]
    for m in members[1:]:
        selected = selected.unionByName(m)
    selected = selected.persist()
    end = day_end(as_of).replace(tzinfo=None)
    recent = (
        store.read(SILVER_CAMPAIGN_TOUCHES)
        .where(
            (F.col("sent_at") < F.lit(end))
            & (F.col("sent_at") >= F.lit(end - timedelta(days=ccfg.frequency_cap.period_days)))
            & was_sent()
        )
        .groupBy("user_key")
        .agg(F.count("*").alias("touches"))
        if store.exists(SILVER_CAMPAIGN_TOUCHES)
        else spark.createDataFrame([], "user_key string, touches long")
    )
    audiences = (
        selected.transform(with_frequency_cap(recent, ccfg.frequency_cap.max_touches))
        .transform(with_assignment(F.col("_control_share")))
        .drop("_control_share")
        .persist()
    )
    before = {r.campaign_id: r["count"] for r in selected.groupBy("campaign_id").count().collect()}
    counts = audiences.groupBy("campaign_id", "assignment").count().collect()
    after = {(r.campaign_id, r.assignment): r["count"] for r in counts}
    for cid, info in facts["campaigns"].items():
        if info["status"] != "built":
            continue
        treat, ctrl = after.get((cid, "treatment"), 0), after.get((cid, "control"), 0)
        chosen = before.get(cid, 0)
        info.update(selected=chosen, capped=chosen - treat - ctrl, treatment=treat, control=ctrl)
    selected.unpersist()
    base.unpersist()
    return audiences, facts


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


# ============================================================================ evaluation
def attributed_touches(
    touches: DataFrame, orders: DataFrame, window_hours: int, repeat_days: int, segments: DataFrame | None
) -> DataFrame:
    """One row per touch with its last-touch attributed orders and revenue, whether a
    converting customer bought again within ``repeat_days``, and the segment."""
    t = touches.select(
        "touch_id", "campaign_id", "user_key", F.coalesce("channel", F.lit("unknown")).alias("channel"),
        F.coalesce("variant", F.lit("none")).alias("variant"), "sent_at",
        F.coalesce("opened", F.lit(False)).alias("opened"), F.coalesce("clicked", F.lit(False)).alias("clicked"),
        F.coalesce("converted", F.lit(False)).alias("converted"),
        F.coalesce(F.col("cost").cast("double"), F.lit(0.0)).alias("cost"),
    ).withColumn("holdout", F.lower("variant") == HOLDOUT)  # fmt: skip
    o = orders.select("order_id", F.col("user_key").alias("o_user"), "order_time", "revenue")
    window_s = window_hours * 3600
    # Each order goes to the user's latest touch sent before it within the window.
    cand = t.select("touch_id", "user_key", "sent_at").join(
        o,
        (F.col("user_key") == F.col("o_user"))
        & (F.col("order_time") >= F.col("sent_at"))
        & (F.col("order_time").cast("long") - F.col("sent_at").cast("long") <= window_s),
    )
    last = Window.partitionBy("order_id").orderBy(F.col("sent_at").desc(), F.col("touch_id").desc())
    won = cand.withColumn("_r", F.row_number().over(last)).where("_r = 1")
    per_touch = won.groupBy("touch_id").agg(
        F.count("*").alias("attributed_orders"),
        F.sum("revenue").alias("revenue"),
        F.min("order_time").alias("first_order_time"),
        F.first("user_key").alias("_u"),
    )
    later = o.select(F.col("o_user").alias("_u"), F.col("order_time").alias("_t"))
    repeat = (
        per_touch.join(later, "_u")
        .where(
            (F.col("_t") > F.col("first_order_time"))
            & (F.col("_t").cast("long") - F.col("first_order_time").cast("long") <= repeat_days * 86400)
        )
        .select("touch_id")
        .distinct()
        .withColumn("repeated", F.lit(True))
    )
    out = (
        t.join(per_touch.drop("_u", "first_order_time"), "touch_id", "left")
        .join(repeat, "touch_id", "left")
        .select(
            *t.columns,
            F.coalesce("attributed_orders", F.lit(0)).alias("attributed_orders"),
            F.coalesce("revenue", F.lit(0.0)).alias("revenue"),
            F.coalesce("repeated", F.lit(False)).alias("repeated"),
        )
    )
    if segments is None:
        return out.withColumn("segment_name", F.lit("unknown"))
    return out.join(segments.select("user_key", "segment_name"), "user_key", "left").withColumn(
        "segment_name", F.coalesce("segment_name", F.lit("unknown"))
    )


def _ratio(num: Column, den: Column) -> Column:
    return F.when(den > 0, num / den)


def kpis(df: DataFrame, campaign: Column, dimension: str, value: Column) -> DataFrame:
    """KPI rows of ``df`` (attributed touches) grouped by campaign and one dimension value."""
    sent = ~F.col("holdout")
    agg = df.groupBy(campaign.alias("campaign_id"), value.alias("dimension_value")).agg(
        F.count("*").alias("recipients"),
        F.sum(sent.cast("long")).alias("sends"),
        F.sum((sent & F.col("opened")).cast("long")).alias("opens"),
        F.sum((sent & F.col("clicked")).cast("long")).alias("clicks"),
        F.sum(F.col("converted").cast("long")).alias("conversions"),
        F.sum("attributed_orders").cast("long").alias("attributed_orders"),
        F.countDistinct(F.when(F.col("attributed_orders") > 0, F.col("user_key"))).alias("converting_customers"),
        F.countDistinct(F.when(F.col("repeated"), F.col("user_key"))).alias("_repeaters"),
        F.sum("revenue").alias("revenue"),
        F.sum("cost").alias("cost"),
    )
    return agg.select(
        "campaign_id",
        F.lit(dimension).alias("dimension"),
        "dimension_value",
        "recipients",
        "sends",
        "opens",
        "clicks",
        "conversions",
        "attributed_orders",
        "converting_customers",
        F.round("revenue", 2).alias("revenue"),
        F.round("cost", 4).alias("cost"),
        _ratio(F.col("opens"), F.col("sends")).alias("open_rate"),
        _ratio(F.col("clicks"), F.col("sends")).alias("ctr"),
        _ratio(F.col("conversions"), F.col("recipients")).alias("cvr"),
        _ratio(F.col("revenue"), F.col("recipients")).alias("revenue_per_recipient"),
        _ratio(F.col("revenue") - F.col("cost"), F.col("cost")).alias("roi"),
        _ratio(F.col("revenue"), F.col("cost")).alias("roas"),
        _ratio(F.col("cost"), F.col("converting_customers")).alias("cac"),
        _ratio(F.col("_repeaters"), F.col("converting_customers")).alias("repeat_purchase_rate"),
    )


def campaign_kpis(touches: DataFrame) -> DataFrame:
    """By campaign, channel and segment over messages sent; by variant over all touches
    (the hold-out is a variant); plus channel rows across campaigns (campaign ``ALL``)."""
    sent = touches.where(~F.col("holdout"))
    parts = [
        kpis(sent, F.col("campaign_id"), "campaign", F.col("campaign_id")),
        kpis(sent, F.col("campaign_id"), "channel", F.col("channel")),
        kpis(sent, F.col("campaign_id"), "segment", F.col("segment_name")),
        kpis(touches, F.col("campaign_id"), "variant", F.col("variant")),
        kpis(sent, F.lit("ALL"), "channel", F.col("channel")),
    ]
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def comparison_pairs(variants: list[str]) -> list[tuple[str, str]]:
    """(treatment, reference) pairs: every variant against A (else the first variant), and
    every variant against the hold-out when there is one."""
    treated = sorted(v for v in variants if v.lower() != HOLDOUT)
    holdout = [v for v in variants if v.lower() == HOLDOUT]
    pairs = []
    if treated:
        ref = "A" if "A" in treated else treated[0]
        pairs += [(v, ref) for v in treated if v != ref]
    if holdout:
        pairs += [(v, holdout[0]) for v in treated]
    return pairs


def ab_results(touches: DataFrame, ab: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Tests of every pair of every campaign; returns rows for gold.ab_results and warnings."""
    groups = {
        (r.campaign_id, r.variant): r
        for r in touches.groupBy("campaign_id", "variant")
        .agg(
            F.count("*").alias("n"),
            F.sum(F.col("converted").cast("long")).alias("x"),
            F.avg("revenue").alias("mean"),
            F.var_samp("revenue").alias("var"),
        )
        .collect()
    }
    rows, warnings = [], []
    for cid in sorted({c for c, _ in groups}):
        variants = [v for c, v in groups if c == cid]
        pairs = comparison_pairs(variants)
        samples: dict[str, list[float]] = {}
        need_boot = {v for p in pairs for v in p if groups[(cid, v)].n <= ab.bootstrap_max_recipients}
        if need_boot:
            for r in (
                touches.where((F.col("campaign_id") == cid) & F.col("variant").isin(sorted(need_boot)))
                .select("variant", "touch_id", "revenue")
                .orderBy("variant", "touch_id")
                .collect()
            ):
                samples.setdefault(r.variant, []).append(float(r.revenue))
        for treat, ref in pairs:
            g_t, g_c = groups[(cid, treat)], groups[(cid, ref)]
            if g_t.n < 2 or g_c.n < 2:
                warnings.append(f"{cid} {treat} vs {ref}: too few recipients ({g_t.n}/{g_c.n}) to test")
                continue
            common = {"campaign_id": cid, "treatment": treat, "reference": ref, "n_treatment": g_t.n,
                      "n_reference": g_c.n}  # fmt: skip
            # Conversion rate: z-test, Newcombe interval (holds its coverage with few conversions).
            z = stats.two_proportion_ztest(g_t.x, g_t.n, g_c.x, g_c.n, ab.alpha, interval="newcombe")
            up = stats.relative_uplift(g_t.x, g_t.n, g_c.x, g_c.n, ab.alpha)
            p_base = g_c.x / g_c.n
            if 0 < p_base < 1:
                mde = stats.mde_two_proportions(p_base, g_t.n, g_c.n, ab.alpha, ab.power)
                target = min(p_base * (1 + ab.min_relative_effect), 0.999999)
                power = stats.power_two_proportions(p_base, target, g_t.n, g_c.n, ab.alpha)
            else:
                mde = power = None
            warn = stats.underpowered_warning(p_base, g_t.n, g_c.n, ab.min_relative_effect, ab.alpha, ab.power)
            if warn:
                warnings.append(f"{cid} {treat} vs {ref} conversion_rate: {warn}")
            rows.append(
                {
                    **common,
                    "metric": "conversion_rate",
                    "test": "two_proportion_z",
                    "value_treatment": z.estimate_t,
                    "value_reference": z.estimate_c,
                    "diff": z.diff,
                    "ci_low": z.ci_low,
                    "ci_high": z.ci_high,
                    "p_value": z.p_value,
                    "significant": z.p_value < ab.alpha,
                    "relative_uplift": up.relative,
                    "uplift_ci_low": up.ci_low,
                    "uplift_ci_high": up.ci_high,
                    "bootstrap_ci_low": None,
                    "bootstrap_ci_high": None,
                    "mde": mde,
                    "power": power,
                    "underpowered": warn is not None,
                    "warning": warn,
                }  # fmt: skip
            )
            # Revenue per recipient: Welch's t, plus a seeded bootstrap when the samples are small enough.
            w = stats.welch_ttest_from_stats(g_t.mean, g_t.var or 0.0, g_t.n, g_c.mean, g_c.var or 0.0, g_c.n, ab.alpha)
            boot_low = boot_high = None
            if treat in samples and ref in samples:
                _, boot_low, boot_high = stats.bootstrap_mean_diff(
                    samples[treat], samples[ref], ab.bootstrap_resamples, ab.bootstrap_seed, ab.alpha
                )
            sd = math.sqrt(((g_t.var or 0.0) + (g_c.var or 0.0)) / 2)
            mde_rev = stats.mde_two_means(sd, g_t.n, g_c.n, ab.alpha, ab.power)
            rel = w.diff / w.estimate_c if w.estimate_c else None
            p_value = None if math.isnan(w.p_value) else w.p_value
            rows.append(
                {
                    **common,
                    "metric": "revenue_per_recipient",
                    "test": "welch_t",
                    "value_treatment": w.estimate_t,
                    "value_reference": w.estimate_c,
                    "diff": w.diff,
                    "ci_low": w.ci_low,
                    "ci_high": w.ci_high,
                    "p_value": p_value,
                    "significant": p_value is not None and p_value < ab.alpha,
                    "relative_uplift": rel,
                    "uplift_ci_low": None,
                    "uplift_ci_high": None,
                    "bootstrap_ci_low": boot_low,
                    "bootstrap_ci_high": boot_high,
                    "mde": mde_rev,
                    "power": None,
                    "underpowered": False,
                    "warning": None,
                }  # fmt: skip
            )
    return rows, warnings


# ============================================================================ report
def _table(rows: list[dict[str, Any]], columns: list[str]) -> tuple[str, str]:
    """A markdown table and its HTML twin."""

    def fmt(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    md = markdown.table(columns, ([fmt(r.get(c)) for c in columns] for r in rows))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return "\n".join(md), f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def effect_chart(ab_rows: list[dict[str, Any]], metric: str, title: str):
    """Treatment minus reference with its 95% interval, one line per test (None if no test)."""
    bounds = ("diff", "ci_low", "ci_high")
    rows = [r for r in ab_rows if r["metric"] == metric and all(_finite(r[k]) for k in bounds)]
    if not rows:
        return None
    fig = charts.figure(6.4, 0.9 + 0.42 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        colour = "tab:green" if r["significant"] and r["diff"] > 0 else "tab:red" if r["significant"] else "tab:grey"
        ax.errorbar(r["diff"], y, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="o",
                    capsize=4, color=colour)  # fmt: skip
    ax.axvline(0, linestyle="--", color="black", linewidth=0.8)
    ax.set_yticks(ys, [f"{r['campaign_id']} {r['treatment']} vs {r['reference']}" for r in rows])
    ax.set_xlabel("difference (treatment - reference), 95% interval")
    ax.set_title(title)
    return fig


def variant_chart(kpi_rows: list[dict[str, Any]]):
    """Conversion rate per campaign variant (None without variant rows)."""
    rows = [r for r in kpi_rows if r["dimension"] == "variant" and r.get("cvr") is not None]
    if not rows:
        return None
    fig = charts.figure(6.4, 0.9 + 0.32 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, [r["cvr"] for r in rows], color="tab:blue")
    ax.set_yticks(ys, [f"{r['campaign_id']} {r['dimension_value']}" for r in rows])
    ax.set_xlabel("conversion rate (conversions / recipients)")
    ax.set_title("Conversion by variant")
    return fig


def write_report(cfg: ShopLakeConfig, as_of: date, facts: dict[str, Any], kpi_rows: list[dict], ab_rows: list[dict],
                 warnings: list[str]) -> str:  # fmt: skip
    """``<lake>/reports/campaign/campaign_report_<as_of>.md`` and ``.html``; returns the markdown path."""
    audience_rows = [{"campaign": cid, **info} for cid, info in facts["campaigns"].items()]
    sections = [
        ("Audiences", audience_rows,
         ["campaign", "status", "reason", "selected", "capped", "treatment", "control", "control_share"]),
        ("KPIs by campaign", [r for r in kpi_rows if r["dimension"] == "campaign"],
         ["campaign_id", "sends", "opens", "clicks", "conversions", "attributed_orders", "revenue", "cost", "ctr",
          "cvr", "revenue_per_recipient", "roi", "roas", "cac", "repeat_purchase_rate"]),
        ("KPIs by variant", [r for r in kpi_rows if r["dimension"] == "variant"],
         ["campaign_id", "dimension_value", "recipients", "sends", "conversions", "cvr", "revenue_per_recipient"]),
        ("KPIs by channel (all campaigns)", [r for r in kpi_rows if r["campaign_id"] == "ALL"],
         ["dimension_value", "sends", "conversions", "revenue", "cost", "roi", "roas", "cac"]),
        ("A/B and hold-out tests", ab_rows,
         ["campaign_id", "metric", "treatment", "reference", "n_treatment", "n_reference", "value_treatment",
          "value_reference", "diff", "ci_low", "ci_high", "p_value", "significant", "relative_uplift", "mde",
          "underpowered"]),
    ]  # fmt: skip
    guard = (
        f"Consent: {facts.get('excluded_without_consent', 'n/a')} profiles excluded for lack of consent. "
        f"Export k-anonymity (k={facts.get('k_anonymity', {}).get('k')}): smallest class "
        f"{facts.get('k_anonymity', {}).get('smallest_class')}."
    )
    md = [f"# Campaign report as of {as_of.isoformat()}", "", guard, ""]
    body = [f"<h1>Campaign report as of {as_of.isoformat()}</h1>", f"<p>{html.escape(guard)}</p>"]
    for title, rows, columns in sections:
        t_md, t_html = _table(rows, columns)
        md += [f"## {title}", "", t_md, ""]
        body += [f"<h2>{html.escape(title)}</h2>", t_html]
    figures = [
        ("conversion_effects", effect_chart(ab_rows, "conversion_rate", "Conversion-rate effects")),
        ("revenue_effects", effect_chart(ab_rows, "revenue_per_recipient", "Revenue-per-recipient effects")),
        ("variant_conversion", variant_chart(kpi_rows)),
    ]
    stem = f"campaign_report_{as_of.isoformat()}"
    for chart_id, fig in figures:
        if fig is None:
            continue
        image = charts.png(fig, report_path(cfg, "campaign", f"{stem}_{chart_id}.png"))
        md += [f"![{chart_id}]({image.name})", ""]
        body.append(f"<figure class='chart' data-chart='{chart_id}'>{charts.svg(fig, chart_id)}</figure>")
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
        body += ["<h2>Warnings</h2><ul>"] + [f"<li>{html.escape(w)}</li>" for w in warnings] + ["</ul>"]
    path = report_path(cfg, "campaign", f"{stem}.md")
    Path(path).write_text("\n".join(md), encoding="utf-8")
    Path(path).with_suffix(".html").write_text(
        "<!doctype html><meta charset='utf-8'><title>Campaign report</title>" + "".join(body), encoding="utf-8"
    )
    return path


# ============================================================================ job
def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Build audiences and evaluate campaigns as of ``gold.as_of``."""
    run_id = run_id or new_run_id("campaign")
    store = store or open_store(spark, cfg)
    ccfg: CampaignConfig = cfg.campaign
    definitions = load_definitions(cfg)
    as_of = resolve_as_of(store, cfg)
    result = JobResult("campaign", run_id)
    inputs = (GOLD_PROFILES, GOLD_SEGMENTS, GOLD_CHURN_SCORES, GOLD_CLV, GOLD_RECOMMENDATIONS, SILVER_CUSTOMERS,
              SILVER_EVENTS, SILVER_ORDERS, SILVER_CAMPAIGN_TOUCHES)  # fmt: skip
    result.inputs = {s.name: store.version(s) for s in inputs if store.exists(s)}

    # -- audiences and exports
    audiences, facts = build_audiences(spark, store, cfg, as_of, definitions)
    result.outputs[GOLD_AUDIENCES.name] = publish_as_of(store, GOLD_AUDIENCES, audiences, as_of)
    qi, k = list(ccfg.export.quasi_identifiers), ccfg.export.k_anonymity
    exported = audience_export(audiences, qi, k).persist()
    before = export.k_anonymity(audiences.where(F.col("assignment") == "treatment"), ["campaign_id", *qi], k)
    facts["k_anonymity"] = {**export.k_anonymity(exported, ["campaign_id", *qi], k), "before_suppression": before}
    if "delta" in ccfg.export.formats:
        result.outputs[GOLD_AUDIENCE_EXPORT.name] = publish_as_of(store, GOLD_AUDIENCE_EXPORT, exported, as_of)
    if "csv" in ccfg.export.formats:
        facts["csv_exports"] = {}
        for cid, info in facts["campaigns"].items():
            if info["status"] == "built":
                path = export.write_csv(exported.where(F.col("campaign_id") == cid), export_csv_path(cfg, as_of, cid))
                facts["csv_exports"][cid] = path
    exported.unpersist()
    audiences.unpersist()

    # -- evaluation
    kpi_rows: list[dict[str, Any]] = []
    ab_rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    if store.exists(SILVER_CAMPAIGN_TOUCHES):
        touches = up_to(store.read(SILVER_CAMPAIGN_TOUCHES), "sent_at", as_of).where(F.col("user_key").isNotNull())
        # Paid as of the day: an order refunded or cancelled after it still counts then.
        orders = (
            store.read(SILVER_ORDERS)
            .transform(common_orders.orders_as_of(as_of))
            .where(F.col("status") == "paid")
            .withColumn("revenue", F.col("total_amount").cast("double"))
        )
        segments = read_as_of(store, GOLD_SEGMENTS, as_of, ["user_key", "segment_name"])
        attributed = attributed_touches(
            touches, orders, ccfg.attribution_window_hours, ccfg.repeat_window_days, segments
        ).persist()
        kpi_df = campaign_kpis(attributed)
        result.outputs[GOLD_CAMPAIGN_KPIS.name] = publish_as_of(store, GOLD_CAMPAIGN_KPIS, kpi_df, as_of)
        shown = kpi_df.where("dimension != 'segment'").orderBy("campaign_id", "dimension", "dimension_value")
        kpi_rows = [r.asDict() for r in shown.collect()]
        ab_rows, warnings = ab_results(attributed, ccfg.ab)
        attributed.unpersist()
    else:
        log.warning("campaign: %s does not exist: no effect evaluation", SILVER_CAMPAIGN_TOUCHES.name)
    ab_schema = T.StructType([f for f in GOLD_AB_RESULTS.schema.fields if f.name != "as_of"])
    ab_df = spark.createDataFrame([tuple(r[f.name] for f in ab_schema.fields) for r in ab_rows], ab_schema)
    result.outputs[GOLD_AB_RESULTS.name] = publish_as_of(store, GOLD_AB_RESULTS, ab_df, as_of)
    for w in warnings:
        log.warning("campaign: %s", w)

    report = write_report(cfg, as_of, facts, kpi_rows, ab_rows, warnings)
    for spec in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS, GOLD_AB_RESULTS):
        if spec.name in result.outputs:
            result.row_counts[spec.name] = store.read(spec).where(F.col("as_of") == F.lit(as_of)).count()
    result.metrics = {
        "as_of": as_of.isoformat(),
        **facts,
        "ab_tests": len(ab_rows),
        "significant": sorted(
            f"{r['campaign_id']} {r['metric']} {r['treatment']} vs {r['reference']}"
            for r in ab_rows
            if r["significant"]
        ),  # fmt: skip
        "warnings": warnings,
        "report": report,
    }
    built = [c for c, i in facts["campaigns"].items() if i["status"] == "built"]
    result.summary = (
        f"as of {as_of}: {len(built)}/{len(definitions)} campaigns built "
        f"({result.row_counts.get(GOLD_AUDIENCES.name, 0)} audience rows), {len(ab_rows)} tests, "
        f"{len(result.metrics['significant'])} significant; report {report}"
    )
    return result
