"""The profile job: read silver as of a date, build, tag, publish (see :mod:`jobs.profiles`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from common.asof import day_end, publish_as_of, resolve_as_of
from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_PROFILES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
)
from jobs.profiles.features import build_profiles
from jobs.profiles.tags import load_tag_rules, validate_tag_rules


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Build gold.profiles for ``gold.as_of`` (default: the data's last day)."""
    run_id = run_id or new_run_id("profile")
    tag_rules = load_tag_rules(cfg)
    validate_tag_rules(spark, tag_rules, source=cfg.profile.tags_file)
    store = store or open_store(spark, cfg)
    store.require(SILVER_CUSTOMERS)
    as_of = resolve_as_of(store, cfg)
    specs = (SILVER_CUSTOMERS, SILVER_ORDERS, SILVER_ORDER_LINES, SILVER_EVENTS, SILVER_PRODUCTS)
    result = JobResult("profile", run_id)
    result.inputs = {spec.name: store.version(spec) for spec in specs if store.exists(spec)}
    tables = {spec.name: store.read_or_empty(spec) for spec in specs}
    time_zone = cfg.profile.time_zone or cfg.landing.source_time_zone
    profiles, facts = build_profiles(spark, tables, as_of, cfg.profile, time_zone, tag_rules)
    try:
        result.outputs[GOLD_PROFILES.name] = publish_as_of(store, GOLD_PROFILES, profiles, as_of)
        stats = profiles.groupBy("lifecycle_stage", "rfm_segment").count().collect()
        tag_counts = profiles.select(F.explode("tags").alias("tag")).groupBy("tag").count().collect()
        buyers = profiles.where("frequency > 0").count()
        total = profiles.count()
    finally:
        profiles.unpersist()
    lifecycle: Counter[str] = Counter()
    segments: Counter[str] = Counter()
    for row in stats:
        lifecycle[row["lifecycle_stage"]] += row["count"]
        segments[row["rfm_segment"] or "no purchase"] += row["count"]
    result.row_counts[GOLD_PROFILES.name] = total
    result.metrics = {
        "as_of": as_of.isoformat(),
        "time_zone": time_zone,
        "customers": total,
        "buyers": buyers,
        "lifecycle": dict(sorted(lifecycle.items())),
        "rfm_segments": dict(sorted(segments.items())),
        "tags": {r["tag"]: r["count"] for r in sorted(tag_counts, key=lambda r: r["tag"])},
        **facts,
    }
    result.summary = _summary(result.metrics, day_end(as_of))
    return result


def _summary(m: dict[str, Any], until) -> str:
    lines = [
        f"profile: {m['customers']:,} customers as of {m['as_of']} (data before {until:%Y-%m-%d %H:%M} UTC), "
        f"{m['buyers']:,} with a kept purchase",
        "  lifecycle: " + ", ".join(f"{k} {v:,}" for k, v in m["lifecycle"].items()),
        "  RFM: " + ", ".join(f"{k} {v:,}" for k, v in m["rfm_segments"].items()),
        "  tags: " + (", ".join(f"{k} {v:,}" for k, v in m["tags"].items()) or "none"),
    ]
    return "\n".join(lines)
