"""What campaigns achieved: attribution of orders to touches, KPIs, and A/B statistics."""

from __future__ import annotations

import math
from typing import Any

from pyspark.sql import Column, DataFrame, Row, Window
from pyspark.sql import functions as F

from common import stats
from common.touches import HOLDOUT


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
    groups = _variant_stats(touches)
    rows, warnings = [], []
    for cid in sorted({c for c, _ in groups}):
        variants = [v for c, v in groups if c == cid]
        pairs = comparison_pairs(variants)
        need_boot = {v for p in pairs for v in p if groups[(cid, v)].n <= ab.bootstrap_max_recipients}
        samples = _revenue_samples(touches, cid, need_boot) if need_boot else {}
        for treat, ref in pairs:
            g_t, g_c = groups[(cid, treat)], groups[(cid, ref)]
            if g_t.n < 2 or g_c.n < 2:
                warnings.append(f"{cid} {treat} vs {ref}: too few recipients ({g_t.n}/{g_c.n}) to test")
                continue
            common = {"campaign_id": cid, "treatment": treat, "reference": ref, "n_treatment": g_t.n,
                      "n_reference": g_c.n}  # fmt: skip
            conversion = _conversion_rate_test(g_t, g_c, ab)
            if conversion["warning"]:
                warnings.append(f"{cid} {treat} vs {ref} conversion_rate: {conversion['warning']}")
            rows.append({**common, **conversion})
            revenue = _revenue_per_recipient_test(g_t, g_c, samples.get(treat), samples.get(ref), ab)
            rows.append({**common, **revenue})
    return rows, warnings


def _variant_stats(touches: DataFrame) -> dict[tuple[str, str], Row]:
    """Per (campaign, variant): recipients ``n``, conversions ``x``, and the ``mean`` and
    ``var`` of revenue per recipient; all the tests need of a group."""
    return {
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


def _revenue_samples(touches: DataFrame, campaign_id: str, variants: set[str]) -> dict[str, list[float]]:
    """Revenue per recipient of each of ``variants`` of a campaign, in touch order (so that the
    seeded bootstrap resamples the same lists every run)."""
    samples: dict[str, list[float]] = {}
    for r in (
        touches.where((F.col("campaign_id") == campaign_id) & F.col("variant").isin(sorted(variants)))
        .select("variant", "touch_id", "revenue")
        .orderBy("variant", "touch_id")
        .collect()
    ):
        samples.setdefault(r.variant, []).append(float(r.revenue))
    return samples


def _conversion_rate_test(g_t: Row, g_c: Row, ab: Any) -> dict[str, Any]:
    """The conversion_rate row but the pair's columns: z-test with a Newcombe interval (holds its
    coverage with few conversions), relative uplift, MDE and power at the baseline rate."""
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
    return {
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


def _revenue_per_recipient_test(
    g_t: Row, g_c: Row, sample_t: list[float] | None, sample_c: list[float] | None, ab: Any
) -> dict[str, Any]:
    """The revenue_per_recipient row but the pair's columns: Welch's t, plus a seeded bootstrap
    interval when both samples were collected (small enough groups)."""
    w = stats.welch_ttest_from_stats(g_t.mean, g_t.var or 0.0, g_t.n, g_c.mean, g_c.var or 0.0, g_c.n, ab.alpha)
    boot_low = boot_high = None
    if sample_t is not None and sample_c is not None:
        _, boot_low, boot_high = stats.bootstrap_mean_diff(
            sample_t, sample_c, ab.bootstrap_resamples, ab.bootstrap_seed, ab.alpha
        )
    sd = math.sqrt(((g_t.var or 0.0) + (g_c.var or 0.0)) / 2)
    mde_rev = stats.mde_two_means(sd, g_t.n, g_c.n, ab.alpha, ab.power)
    rel = w.diff / w.estimate_c if w.estimate_c else None
    p_value = None if math.isnan(w.p_value) else w.p_value
    return {
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
