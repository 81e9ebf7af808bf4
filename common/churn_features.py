"""Point-in-time churn features (including BG/NBD quantities) and labels.

Every function takes a ``cutoff`` date and sees only rows whose time falls on or
before the end of that day (UTC). Silver keeps the *latest* version of an order,
so a change recorded after the cutoff (a refund, a cancellation) is undone to the
order's placed state: at the cutoff the order was still live. Nothing after the
cutoff can change a feature value; ``tests/integration/test_churn.py`` proves it
by altering and appending rows after a cutoff on a copied lake.

Missing numeric values get explicit sentinels (counts 0, statistics -1) so the
tree models see a value they can split on, never a NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from common import orders as common_orders
from common.asof import days_since, on_or_before
from common.btyd import MEAN_SPEND, T_CAL, T_X, BgNbdParams, X, customer_summary, fit_bgnbd, with_btyd_scores

# Engagement event types counted per look-back window (silver.events.event_type).
ENGAGEMENT_TYPES = {"views": "view", "carts": "add_to_cart", "searches": "search"}
MISSING = -1.0  # sentinel for statistics that need more history than the customer has


def orders_as_of(orders: DataFrame, cutoff: date) -> DataFrame:
    """Orders placed on or before ``cutoff`` as they stood at its end (:func:`common.orders.orders_as_of`).

    Columns: user_key, order_time, days_ago, is_purchase (not cancelled),
    refunded, amount (paid value, 0 when refunded), discount, gross, channel.
    """
    placed = orders.transform(common_orders.orders_as_of(cutoff))
    status = F.col("status")
    total = F.coalesce(F.col("total_amount").cast("double"), F.lit(0.0))
    discount = F.coalesce(F.col("discount_amount").cast("double"), F.lit(0.0))
    return placed.select(
        "user_key",
        "order_time",
        days_since(cutoff, "order_time").alias("days_ago"),
        (status != "cancelled").alias("is_purchase"),
        (status == "refunded").alias("refunded"),
        F.when(status == "paid", total).otherwise(0.0).alias("amount"),
        discount.alias("discount"),
        (total + discount).alias("gross"),
        F.lower("channel").alias("channel"),
    )


def active_customers(orders: DataFrame, cutoff: date, activity_days: int) -> DataFrame:
    """user_key of customers with a purchase in the ``activity_days`` ending on the cutoff."""
    pit = orders_as_of(orders, cutoff)
    return pit.where(F.col("is_purchase") & (F.col("days_ago") < activity_days)).select("user_key").distinct()


def churn_labels(orders: DataFrame, population: DataFrame, cutoff: date, label_days: int) -> DataFrame:
    """``churned`` = 1.0 when the customer makes no purchase in the ``label_days`` after the cutoff.

    Reads the future on purpose (it is the outcome); never used as a feature.
    """
    start = cutoff + timedelta(days=1)
    end = cutoff + timedelta(days=label_days)
    later = (
        orders.where(F.col("user_key").isNotNull())
        .where(F.to_date("order_time").between(F.lit(start), F.lit(end)))
        .where(F.lower(F.coalesce("status", F.lit("paid"))) != "cancelled")
        .select("user_key")
        .distinct()
        .withColumn("bought", F.lit(True))
    )
    return population.join(later, "user_key", "left").select(
        "user_key", F.when(F.col("bought"), 0.0).otherwise(1.0).alias("churned")
    )


def order_features(orders: DataFrame, cutoff: date, windows: Sequence[int], channels: Sequence[str]) -> DataFrame:
    """Recency, frequency, monetary per window, window trends, inter-purchase interval
    statistics, refunds, discount share and channel mix, one row per customer with a
    purchase on or before the cutoff."""
    pit = orders_as_of(orders, cutoff).where("is_purchase")
    windows = sorted(windows)
    aggs = [
        F.min("days_ago").alias("recency_days"),
        F.count("*").alias("frequency"),
        F.sum("amount").alias("monetary"),
        F.sum(F.col("refunded").cast("int")).alias("refunds"),
        F.sum("discount").alias("_discount"),
        F.sum("gross").alias("_gross"),
        F.max("days_ago").alias("first_purchase_days"),
    ]
    for w in windows:
        inside = F.col("days_ago") < w
        aggs.append(F.sum(inside.cast("int")).alias(f"orders_{w}d"))
        aggs.append(F.sum(F.when(inside, F.col("amount")).otherwise(0.0)).alias(f"monetary_{w}d"))
    for name in channels:
        aggs.append(F.avg((F.col("channel") == name).cast("double")).alias(f"channel_share_{name}"))
    per_user = pit.groupBy("user_key").agg(*aggs)

    # Intervals between consecutive purchases, in days (fractional, from order times).
    by_time = Window.partitionBy("user_key").orderBy("order_time")
    gaps = (
        pit.select(
            "user_key",
            ((F.col("order_time").cast("long") - F.lag("order_time").over(by_time).cast("long")) / 86400.0).alias(
                "gap"
            ),
        )
        .where(F.col("gap").isNotNull())
        .groupBy("user_key")
        .agg(F.avg("gap").alias("interval_mean_days"), F.stddev_pop("gap").alias("interval_std_days"))
    )
    out = per_user.join(gaps, "user_key", "left")
    for short, long in zip(windows, windows[1:]):
        # Daily purchase rate in the short window minus the long one: < 0 means slowing down.
        out = out.withColumn(
            f"order_rate_trend_{short}_{long}d", F.col(f"orders_{short}d") / short - F.col(f"orders_{long}d") / long
        )
    interval = F.col("interval_mean_days")
    return (
        out.withColumn(
            "recency_over_interval",
            F.when(interval > 0, F.col("recency_days") / interval).otherwise(F.lit(MISSING)),
        )
        .withColumn("refund_share", F.col("refunds") / F.col("frequency"))
        .withColumn("discount_share", F.when(F.col("_gross") > 0, F.col("_discount") / F.col("_gross")).otherwise(0.0))
        .drop("_discount", "_gross")
    )


def engagement_features(events: DataFrame, cutoff: date, windows: Sequence[int]) -> DataFrame:
    """Days since the last visit (any event) and the last add-to-cart, and views,
    add-to-carts and searches per look-back window, one row per customer.

    Visits come far more often than orders, so a customer who has stopped coming shows
    it long before their purchase recency says anything unusual."""
    pit = events.where(F.col("user_key").isNotNull() & on_or_before("event_time", cutoff)).select(
        "user_key", "event_type", days_since(cutoff, "event_time").alias("days_ago")
    )
    aggs = [
        F.min("days_ago").alias("visit_recency_days"),
        F.min(F.when(F.col("event_type") == ENGAGEMENT_TYPES["carts"], F.col("days_ago"))).alias("cart_recency_days"),
    ]
    for name, event_type in ENGAGEMENT_TYPES.items():
        for w in sorted(windows):
            hit = (F.col("event_type") == event_type) & (F.col("days_ago") < w)
            aggs.append(F.sum(hit.cast("int")).alias(f"{name}_{w}d"))
    return pit.groupBy("user_key").agg(*aggs)


def tenure_features(customers: DataFrame, cutoff: date) -> DataFrame:
    """Days since registration (only registrations on or before the cutoff count)."""
    return (
        customers.where(on_or_before("registered_at", cutoff))
        .groupBy("user_key")
        .agg(F.max(days_since(cutoff, "registered_at")).alias("registered_days"))
    )


def feature_columns(windows: Sequence[int], channels: Sequence[str]) -> list[str]:
    """The numeric feature names :func:`point_in_time_features` produces, in model order."""
    windows = sorted(windows)
    cols = ["recency_days", "frequency", "monetary", "tenure_days"]
    for w in windows:
        cols += [f"orders_{w}d", f"monetary_{w}d"]
    cols += [f"order_rate_trend_{a}_{b}d" for a, b in zip(windows, windows[1:])]
    cols += ["interval_mean_days", "interval_std_days", "recency_over_interval", "refunds", "refund_share"]
    cols += ["discount_share", *(f"channel_share_{c}" for c in channels)]
    cols += ["visit_recency_days", "cart_recency_days"]
    cols += [f"{name}_{w}d" for name in ENGAGEMENT_TYPES for w in windows]
    return cols


def point_in_time_features(
    population: DataFrame,
    orders: DataFrame,
    events: DataFrame | None,
    customers: DataFrame | None,
    cutoff: date,
    windows: Sequence[int],
    channels: Sequence[str],
) -> DataFrame:
    """All numeric features for ``population`` (a frame of user_key) as of ``cutoff``.

    Tenure is the older of registration and first purchase. Counts default to 0,
    statistics the customer lacks history for to -1.
    """
    feats = population.join(order_features(orders, cutoff, windows, channels), "user_key", "left")
    if events is not None:
        feats = feats.join(engagement_features(events, cutoff, windows), "user_key", "left")
    if customers is not None:
        feats = feats.join(tenure_features(customers, cutoff), "user_key", "left")
    else:
        feats = feats.withColumn("registered_days", F.lit(None).cast("int"))
    feats = feats.withColumn(
        "tenure_days", F.greatest(F.coalesce("registered_days", F.lit(0)), F.coalesce("first_purchase_days", F.lit(0)))
    )
    columns = feature_columns(windows, channels)
    out = []
    for name in columns:
        col = F.col(name) if name in feats.columns else F.lit(None)
        statistic = name.startswith("interval_") or name.endswith("recency_days")
        out.append(F.coalesce(col.cast("double"), F.lit(MISSING if statistic else 0.0)).alias(name))
    return feats.select("user_key", *out)


# ---------------------------------------------------------------------------- BG/NBD
BTYD_PERIOD_DAYS = 7.0  # BG/NBD time unit: weeks, as in the papers (the fit is unit-free)
BTYD_FEATURES = ("btyd_p_alive", "btyd_expected_purchases")


def purchases_as_of(orders: DataFrame, cutoff: date) -> DataFrame:
    """Live purchases (user_key, order_time, amount) as they stood at the end of ``cutoff``."""
    return orders_as_of(orders, cutoff).where("is_purchase").select("user_key", "order_time", "amount")


def btyd_fit_as_of(orders: DataFrame, cutoff: date) -> tuple[DataFrame, BgNbdParams | None, pd.DataFrame]:
    """(Spark summary, BG/NBD fit or None, the summary on the driver) of every customer
    with a purchase on or before ``cutoff``. Rows are sorted by user_key before the fit
    so that the same data always give the same parameters (floating-point sums depend
    on order). None when the optimiser fails (e.g. a shop without repeat purchases)."""
    summary = customer_summary(purchases_as_of(orders, cutoff), cutoff, BTYD_PERIOD_DAYS)
    local = summary.orderBy("user_key").select(X, T_X, T_CAL, MEAN_SPEND).toPandas()
    try:
        params = fit_bgnbd(local[X], local[T_X], local[T_CAL]) if len(local) else None
    except ValueError:
        params = None
    return summary, params, local


def btyd_features(orders: DataFrame, cutoff: date, horizon_days: int) -> DataFrame:
    """user_key, ``btyd_p_alive`` and ``btyd_expected_purchases`` in the ``horizon_days``
    after the cutoff, from a BG/NBD model fitted on the data up to the cutoff only
    (MISSING when no fit is possible)."""
    summary, params, _ = btyd_fit_as_of(orders, cutoff)
    if params is None:
        return summary.select("user_key", *(F.lit(MISSING).alias(c) for c in BTYD_FEATURES))
    scored = with_btyd_scores(summary, params, horizon_days / BTYD_PERIOD_DAYS)
    return scored.select("user_key", *BTYD_FEATURES)
