"""The profile's columns as curried transforms: RFM, behaviour, interests, lifecycle, city tier,
and the population they describe."""

from __future__ import annotations

from datetime import date
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from common import orders as common_orders
from common.asof import days_since, on_or_before
from common.config import LifecycleConfig, ProfileConfig, RfmRule
from common.tables import (
    GOLD_PROFILES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDER_LINES,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
)
from jobs.profiles.tags import with_tags

LIFECYCLE_STAGES = ("new", "active", "dormant", "churned", "reactivated")
CUSTOMER_KEY = "user_key"


def _ratio(num: Column, den: Column) -> Column:
    """num / den as a double, null when den is 0 or null (rounded so results are exact to compare)."""
    return F.when(den > 0, F.round(num.cast("double") / den.cast("double"), 6))


# ---------------------------------------------------------------------------- orders
def orders_as_of(as_of: date):
    """Orders placed by the end of ``as_of`` with their status on that day and amount.

    Input: silver.orders and silver.order_lines columns. Output: one row per order with
    ``user_key, order_id, order_time, payment_method, channel, discounted, amount, kind``
    where ``kind`` is ``purchase`` (kept), ``refunded_purchase`` (bought, refunded by the
    as-of day), ``refund`` (a negative refund record) or ``cancelled``. The status is the
    one the order had on the as-of day (:func:`common.orders.orders_as_of`): a refund or
    cancellation recorded after it is not known yet, so the order is still a purchase then.
    """

    def transform(orders: DataFrame, order_lines: DataFrame) -> DataFrame:
        line_totals = order_lines.groupBy("source_system", "order_id").agg(F.sum("line_amount").alias("_line_total"))
        known = orders.transform(common_orders.orders_as_of(as_of, CUSTOMER_KEY))
        status = F.col("status")
        amount = F.coalesce(F.col("total_amount"), F.col("_line_total"), F.lit(0)).cast("decimal(18,2)")
        kind = (
            F.when(status == "cancelled", "cancelled")
            .when(amount < 0, "refund")
            .when(status == "refunded", "refunded_purchase")
            .otherwise("purchase")
        )
        discounted = (F.length(F.trim(F.coalesce("coupon_code", F.lit("")))) > 0) | (
            F.coalesce("discount_amount", F.lit(0)) > 0
        )
        return known.join(line_totals, ["source_system", "order_id"], "left").select(
            "source_system",
            CUSTOMER_KEY,
            "order_id",
            "order_time",
            "payment_method",
            "channel",
            discounted.alias("discounted"),
            amount.alias("amount"),
            kind.alias("kind"),
        )

    return transform


def rfm_facts(as_of: date):
    """Per customer: frequency, monetary (net), refunds, recency, first purchase, average
    order value, mean inter-purchase interval, the gap before the last purchase and the
    share of purchases with a discount. Input: :func:`orders_as_of` output."""

    def transform(orders: DataFrame) -> DataFrame:
        is_purchase = F.col("kind") == "purchase"
        refund_value = (
            F.when(F.col("kind") == "refunded_purchase", F.col("amount"))
            .when(F.col("kind") == "refund", -F.col("amount"))
            .otherwise(F.lit(0))
        )
        purchase_days = F.sort_array(F.collect_list(F.when(is_purchase, F.to_date("order_time"))))
        agg = (
            orders.where(F.col("kind") != "cancelled")
            .groupBy(CUSTOMER_KEY)
            .agg(
                F.count(F.when(is_purchase, True)).alias("frequency"),
                F.sum(F.when(is_purchase | (F.col("kind") == "refunded_purchase"), F.col("amount")).otherwise(0)).alias(
                    "_gross"
                ),
                F.sum(refund_value).alias("refund_amount"),
                F.count(F.when(F.col("kind").isin("refunded_purchase", "refund"), True)).alias("refunded_orders"),
                F.max(F.when(is_purchase, F.col("order_time"))).alias("_last"),
                F.min(F.when(is_purchase, F.col("order_time"))).alias("_first"),
                F.count(F.when(is_purchase & F.col("discounted"), True)).alias("_discounted"),
                purchase_days.alias("_days"),
            )
        )
        n = F.size("_days")
        monetary = (F.col("_gross") - F.col("refund_amount")).cast("decimal(18,2)")
        return agg.select(
            CUSTOMER_KEY,
            "frequency",
            monetary.alias("monetary"),
            F.col("refund_amount").cast("decimal(18,2)").alias("refund_amount"),
            "refunded_orders",
            days_since(as_of, "_last").alias("recency_days"),
            days_since(as_of, "_first").alias("first_purchase_days"),
            F.when(F.col("frequency") > 0, F.round(monetary / F.col("frequency"), 2))
            .cast("decimal(18,2)")
            .alias("avg_order_value"),
            F.when(n >= 2, F.round(F.datediff(F.element_at("_days", -1), F.element_at("_days", 1)) / (n - 1), 6))
            .cast("double")
            .alias("mean_interpurchase_days"),
            F.when(n >= 2, F.datediff(F.element_at("_days", -1), F.element_at("_days", -2)))
            .cast("int")
            .alias("gap_before_last_days"),
            _ratio(F.col("_discounted"), F.col("frequency")).alias("discount_order_share"),
        )

    return transform


def quintile_cuts(df: DataFrame, columns: list[str], relative_error: float = 0.0) -> dict[str, list[float]]:
    """The 20/40/60/80 % quantiles of ``columns`` over the rows of ``df`` (buyers)."""
    probs = [0.2, 0.4, 0.6, 0.8]
    cast = df.select([F.col(c).cast("double").alias(c) for c in columns])
    found = cast.approxQuantile(columns, probs, relative_error)
    return {c: [float(x) for x in q] for c, q in zip(columns, found, strict=True)}


def _above(column: str, cuts: list[float]) -> Column:
    """How many cut points ``column`` lies strictly above (0-4)."""
    total = F.lit(0)
    for cut in cuts:
        total = total + F.when(F.col(column).cast("double") > F.lit(cut), 1).otherwise(0)
    return total


def with_rfm_scores(cuts: dict[str, list[float]]):
    """r/f/m scores 1-5 by quintiles (``cuts`` from :func:`quintile_cuts`) for customers
    with a kept purchase; null otherwise. Ties share a score (a value equal to a cut
    point stays below it), and a low recency scores high."""

    def transform(df: DataFrame) -> DataFrame:
        buyer = F.col("frequency") > 0
        if not cuts:
            return df.withColumns({c: F.lit(None).cast("int") for c in ("r_score", "f_score", "m_score")})
        return df.withColumns(
            {
                "r_score": F.when(buyer, 5 - _above("recency_days", cuts["recency_days"])).cast("int"),
                "f_score": F.when(buyer, 1 + _above("frequency", cuts["frequency"])).cast("int"),
                "m_score": F.when(buyer, 1 + _above("monetary", cuts["monetary"])).cast("int"),
            }
        )

    return transform


def with_rfm_segment(rules: list[RfmRule], fallback: str = "Others"):
    """``rfm_segment``: the first rule whose r, f and m ranges all hold; ``fallback`` when
    none does; null for customers without scores (no kept purchase)."""

    def transform(df: DataFrame) -> DataFrame:
        expr = None
        for rule in rules:
            cond = (
                F.col("r_score").between(*rule.r)
                & F.col("f_score").between(*rule.f)
                & F.col("m_score").between(*rule.m)
            )
            expr = F.when(cond, F.lit(rule.name)) if expr is None else expr.when(cond, F.lit(rule.name))
        named = expr.otherwise(F.lit(fallback))
        return df.withColumn("rfm_segment", F.when(F.col("r_score").isNotNull(), named))

    return transform


# ---------------------------------------------------------------------------- behaviour
def _mode(df: DataFrame, value: str, alias: str) -> DataFrame:
    """Per customer, the most frequent non-null ``value`` (ties: the smallest)."""
    counts = df.where(F.col(value).isNotNull()).groupBy(CUSTOMER_KEY, value).count()
    window = Window.partitionBy(CUSTOMER_KEY).orderBy(F.col("count").desc(), F.col(value))
    return (
        counts.withColumn("_rank", F.row_number().over(window))
        .where("_rank = 1")
        .select(CUSTOMER_KEY, F.col(value).alias(alias))
    )


def behaviour(as_of: date, time_zone: str, night_hours: list[int]):
    """Per customer: sessions, views, searches, add-to-carts, cart abandonment rate (share
    of sessions with an add-to-cart and no purchase event), view-to-purchase rate (share
    of sessions with a view that hold a purchase event), last active day, preferred hour,
    weekday (1 = Monday) and channel over events and orders in ``time_zone``, night share
    and preferred payment method. Inputs: silver.events and :func:`orders_as_of` output."""

    def transform(events: DataFrame, orders: DataFrame) -> DataFrame:
        ev = events.where(on_or_before("event_time", as_of) & F.col(CUSTOMER_KEY).isNotNull())
        per_session = ev.groupBy(CUSTOMER_KEY, "session_id").agg(
            F.count(F.when(F.col("event_type") == "view", True)).alias("v"),
            F.count(F.when(F.col("event_type") == "search", True)).alias("s"),
            F.count(F.when(F.col("event_type") == "add_to_cart", True)).alias("c"),
            F.count(F.when(F.col("event_type") == "purchase", True)).alias("p"),
        )
        counts = per_session.groupBy(CUSTOMER_KEY).agg(
            F.count(F.when(F.col("session_id").isNotNull(), True)).alias("sessions"),
            F.sum("v").alias("views"),
            F.sum("s").alias("searches"),
            F.sum("c").alias("add_to_carts"),
            F.count(F.when(F.col("c") > 0, True)).alias("_cart_sessions"),
            F.count(F.when((F.col("c") > 0) & (F.col("p") == 0), True)).alias("_abandoned"),
            F.count(F.when(F.col("v") > 0, True)).alias("_view_sessions"),
            F.count(F.when((F.col("v") > 0) & (F.col("p") > 0), True)).alias("_converted"),
        )
        counts = counts.select(
            CUSTOMER_KEY,
            "sessions",
            "views",
            "searches",
            "add_to_carts",
            _ratio(F.col("_abandoned"), F.col("_cart_sessions")).alias("cart_abandonment_rate"),
            _ratio(F.col("_converted"), F.col("_view_sessions")).alias("view_to_purchase_rate"),
        )
        live_orders = orders.where(F.col("kind") != "cancelled")
        activity = ev.select(CUSTOMER_KEY, F.col("event_time").alias("ts"), "channel").unionByName(
            live_orders.select(CUSTOMER_KEY, F.col("order_time").alias("ts"), "channel")
        )
        local = F.from_utc_timestamp("ts", time_zone)
        activity = activity.withColumns(
            {"_hour": F.hour(local), "_weekday": ((F.dayofweek(local) + 5) % 7 + 1).cast("int")}
        )
        timing = activity.groupBy(CUSTOMER_KEY).agg(
            days_since(as_of, F.max("ts")).alias("last_active_days"),
            _ratio(F.count(F.when(F.col("_hour").isin(night_hours), True)), F.count(F.lit(1))).alias("night_share"),
        )
        payments = live_orders.where(F.col("kind") == "purchase")
        return (
            timing.join(counts, CUSTOMER_KEY, "left")
            .join(_mode(activity, "_hour", "preferred_hour"), CUSTOMER_KEY, "left")
            .join(_mode(activity, "_weekday", "preferred_weekday"), CUSTOMER_KEY, "left")
            .join(_mode(activity, "channel", "preferred_channel"), CUSTOMER_KEY, "left")
            .join(_mode(payments, "payment_method", "preferred_payment_method"), CUSTOMER_KEY, "left")
        )

    return transform


# ---------------------------------------------------------------------------- interests
def _top_weighted(scores: DataFrame, name: str, alias: str, top: int) -> DataFrame:
    """Per customer, the ``top`` names by score as (name, weight) with weight = share of the
    customer's total score, highest first (ties by name)."""
    total = Window.partitionBy(CUSTOMER_KEY)
    ranked = scores.withColumn("_weight", F.round(F.col("_score") / F.sum("_score").over(total), 4)).withColumn(
        "_rank", F.row_number().over(total.orderBy(F.col("_score").desc(), F.col(name)))
    )
    return (
        ranked.where(F.col("_rank") <= top)
        .groupBy(CUSTOMER_KEY)
        .agg(
            F.sort_array(F.collect_list(F.struct(F.col("_rank"), F.col(name).alias("name"), F.col("_weight")))).alias(
                "_l"
            )
        )
        .select(
            CUSTOMER_KEY,
            F.transform("_l", lambda x: F.struct(x["name"].alias("name"), x["_weight"].alias("weight"))).alias(alias),
        )
    )


def interests(as_of: date, weights: dict[str, float], top: int):
    """Top categories (level 1) and brands with weights, and the brand loyalty index (sum of
    squared brand shares of the units bought: 1 = one brand only). Interactions weigh
    ``weights[event_type]``; each kept purchase line weighs ``weights['purchase']``.
    Inputs: silver.events, :func:`orders_as_of` output, silver.order_lines, silver.products."""

    def transform(events: DataFrame, orders: DataFrame, order_lines: DataFrame, products: DataFrame) -> DataFrame:
        items = products.select("source_system", "item_id", "category_l1", "brand")
        event_weight = F.create_map(*[x for k, v in weights.items() for x in (F.lit(k), F.lit(float(v)))])
        touched = events.where(
            on_or_before("event_time", as_of) & F.col(CUSTOMER_KEY).isNotNull() & F.col("item_id").isNotNull()
        ).select("source_system", CUSTOMER_KEY, "item_id", event_weight[F.col("event_type")].alias("_w"))
        bought = (
            orders.where(F.col("kind") == "purchase")
            .select("source_system", "order_id", CUSTOMER_KEY)
            .join(order_lines.where(F.col("quantity") > 0), ["source_system", "order_id"])
            .select("source_system", CUSTOMER_KEY, "item_id", "quantity")
        )
        interactions = (
            touched.where(F.col("_w").isNotNull())
            .unionByName(
                bought.select(
                    "source_system", CUSTOMER_KEY, "item_id", F.lit(float(weights.get("purchase", 0.0))).alias("_w")
                )
            )
            .join(items, ["source_system", "item_id"])
        )

        def scores(column: str) -> DataFrame:
            return (
                interactions.where(F.col(column).isNotNull())
                .groupBy(CUSTOMER_KEY, column)
                .agg(F.sum("_w").alias("_score"))
                .where("_score > 0")
            )

        units = (
            bought.join(items, ["source_system", "item_id"])
            .where(F.col("brand").isNotNull())
            .groupBy(CUSTOMER_KEY, "brand")
            .agg(F.sum("quantity").alias("_units"))
        )
        share = F.col("_units") / F.sum("_units").over(Window.partitionBy(CUSTOMER_KEY))
        loyalty = (
            units.withColumn("_sq", share * share)
            .groupBy(CUSTOMER_KEY)
            .agg(F.round(F.sum("_sq"), 6).alias("brand_loyalty_index"))
        )
        return (
            _top_weighted(scores("category_l1"), "category_l1", "top_categories", top)
            .join(_top_weighted(scores("brand"), "brand", "top_brands", top), CUSTOMER_KEY, "full")
            .join(loyalty, CUSTOMER_KEY, "full")
        )

    return transform


# ---------------------------------------------------------------------------- lifecycle, tags
def with_lifecycle(windows: LifecycleConfig):
    """``lifecycle_stage`` from purchase recency and history (windows in days):

    - buyers: new when the first purchase is within ``new_days``; else active when the
      last purchase is within ``active_days`` (reactivated when the gap before it was
      longer than ``churned_days``); dormant up to ``churned_days``; churned beyond;
    - never bought: new when registered within ``new_days`` (or, without a registration
      date, first seen then); else dormant when active within ``churned_days``, churned
      otherwise.
    """

    def transform(df: DataFrame) -> DataFrame:
        buyer = (
            F.when(F.col("first_purchase_days") <= windows.new_days, "new")
            .when(
                F.col("recency_days") <= windows.active_days,
                F.when(F.col("gap_before_last_days") > windows.churned_days, "reactivated").otherwise("active"),
            )
            .when(F.col("recency_days") <= windows.churned_days, "dormant")
            .otherwise("churned")
        )
        joined = F.coalesce(F.col("registration_days"), F.col("_first_seen_days"))
        prospect = (
            F.when(joined <= windows.new_days, "new")
            .when(F.col("last_active_days") <= windows.churned_days, "dormant")
            .otherwise("churned")
        )
        return df.withColumn("lifecycle_stage", F.when(F.col("frequency") > 0, buyer).otherwise(prospect))

    return transform


# ---------------------------------------------------------------------------- attributes
def with_city_tier(tiers: dict[int, list[str]]):
    """``city_tier`` from the configured tier lists; null for unlisted cities."""

    def transform(df: DataFrame) -> DataFrame:
        pairs = [x for tier, cities in tiers.items() for city in cities for x in (F.lit(city), F.lit(int(tier)))]
        if not pairs:
            return df.withColumn("city_tier", F.lit(None).cast("int"))
        return df.withColumn("city_tier", F.create_map(*pairs)[F.col("city")].cast("int"))

    return transform


def population(as_of: date):
    """Customers known on the as-of day: registered by its end, or (no registration date)
    with an order or event by then. Inputs: silver.customers and a frame of
    (user_key, first activity time). Adds ``registration_days`` and ``_first_seen_days``."""

    def transform(customers: DataFrame, first_seen: DataFrame) -> DataFrame:
        joined = customers.join(first_seen, CUSTOMER_KEY, "left")
        known = on_or_before("registered_at", as_of) | (
            F.col("registered_at").isNull() & on_or_before("_first_seen", as_of)
        )
        return joined.where(known).select(
            CUSTOMER_KEY,
            "marketing_consent",
            "age_band",
            "gender",
            "province",
            "city",
            "member_level",
            days_since(as_of, "registered_at").alias("registration_days"),
            days_since(as_of, "_first_seen").alias("_first_seen_days"),
        )

    return transform


# ---------------------------------------------------------------------------- assembly
def build_profiles(
    spark: SparkSession,
    tables: dict[str, DataFrame],
    as_of: date,
    pcfg: ProfileConfig,
    time_zone: str,
    tag_rules: dict[str, str],
) -> tuple[DataFrame, dict[str, Any]]:
    """gold.profiles rows (without ``as_of``) from silver frames keyed by table name.

    Returns the profile frame (persisted; the caller unpersists) and the facts worth
    recording (RFM quintile cuts)."""
    orders = orders_as_of(as_of)(tables[SILVER_ORDERS.name], tables[SILVER_ORDER_LINES.name]).persist()
    events = tables[SILVER_EVENTS.name]
    try:
        first_seen = (
            events.where(on_or_before("event_time", as_of))
            .select(CUSTOMER_KEY, F.col("event_time").alias("t"))
            .unionByName(orders.select(CUSTOMER_KEY, F.col("order_time").alias("t")))
            .where(F.col(CUSTOMER_KEY).isNotNull())
            .groupBy(CUSTOMER_KEY)
            .agg(F.min("t").alias("_first_seen"))
        )
        people = population(as_of)(tables[SILVER_CUSTOMERS.name], first_seen)
        rfm = rfm_facts(as_of)(orders)
        habits = behaviour(as_of, time_zone, pcfg.night_hours)(events, orders)
        likes = interests(as_of, pcfg.interest_weights, pcfg.top_interests)(
            events, orders, tables[SILVER_ORDER_LINES.name], tables[SILVER_PRODUCTS.name]
        )
        zero_counts = {c: 0 for c in ("frequency", "refunded_orders", "sessions", "views", "searches", "add_to_carts")}
        base = (
            people.join(rfm, CUSTOMER_KEY, "left")
            .join(habits, CUSTOMER_KEY, "left")
            .join(likes, CUSTOMER_KEY, "left")
            .fillna(zero_counts)
            .withColumns(
                {
                    "monetary": F.coalesce("monetary", F.lit(0).cast("decimal(18,2)")),
                    "refund_amount": F.coalesce("refund_amount", F.lit(0).cast("decimal(18,2)")),
                }
            )
            .transform(with_city_tier(pcfg.city_tiers))
            .persist()
        )
        buyers = base.where("frequency > 0")
        cuts = (
            quintile_cuts(buyers, ["recency_days", "frequency", "monetary"], pcfg.quantile_relative_error)
            if buyers.limit(1).count()
            else {}
        )
        profiles = (
            base.transform(with_rfm_scores(cuts))
            .transform(with_rfm_segment(pcfg.rfm_segments))
            .transform(with_lifecycle(pcfg.lifecycle))
            .withColumn("as_of", F.lit(as_of))
            .transform(with_tags(tag_rules))
            .drop("_first_seen_days", "gap_before_last_days")
        )
        profiles = profiles.select(*[c for c in GOLD_PROFILES.columns]).persist()
        profiles.count()
        base.unpersist()
    finally:
        orders.unpersist()
    return profiles, {"rfm_quintile_cuts": cuts}
