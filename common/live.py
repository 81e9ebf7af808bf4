"""Live gold tables: what ``shoplake stream`` derives from silver.events after each
micro-batch (jobs/stream/live.py ``refresh_live_tables``).

Each table is a function of silver.events (and, for triggers, the customers' consent
and the messages already sent), so a refresh can be repeated, after a crash or a
replayed batch, and gives the same rows: the live tables need no exactly-once
bookkeeping of their own. Time is event time: the stream's clock is the newest event
in silver, as for its watermark.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.interactions import PURCHASE
from common.tables import GOLD_LIVE_TRENDING

VIEW, ADD_TO_CART = "view", "add_to_cart"
UNKNOWN_CHANNEL = "unknown"


def _count(event_type: str):
    return F.count(F.when(F.col("event_type") == event_type, 1))


def live_funnel(events: DataFrame) -> DataFrame:
    """gold.live_funnel rows: per event minute and channel (``unknown`` when missing),
    events, distinct sessions, views, add-to-carts, purchases and purchases per session."""
    return (
        events.groupBy(
            F.date_trunc("minute", "event_time").alias("minute"),
            F.coalesce("channel", F.lit(UNKNOWN_CHANNEL)).alias("channel"),
        )
        .agg(
            F.count("*").alias("events"),
            F.countDistinct("session_id").alias("sessions"),
            _count(VIEW).alias("views"),
            _count(ADD_TO_CART).alias("add_to_carts"),
            _count(PURCHASE).alias("orders"),
        )
        .withColumn("conversion", F.when(F.col("sessions") > 0, F.col("orders") / F.col("sessions")))
    )


def live_trending(
    events: DataFrame, clock: datetime, minutes: int, top: int, weights: Mapping[str, float]
) -> DataFrame:
    """gold.live_trending rows: the ``top`` products by views and add-to-carts in the
    ``minutes`` of event time up to ``clock`` (``clock - minutes < event_time <= clock``:
    the start excluded, the clock included), scored by ``weights`` (the
    recommender's event weights); ties broken by item id."""
    start = clock - timedelta(minutes=minutes)
    counts = (
        events.where(
            F.col("item_id").isNotNull() & (F.col("event_time") > F.lit(start)) & (F.col("event_time") <= F.lit(clock))
        )
        .groupBy("item_id")
        .agg(_count(VIEW).alias("views"), _count(ADD_TO_CART).alias("add_to_carts"))
        .where((F.col("views") + F.col("add_to_carts")) > 0)
        .withColumn(
            "score",
            F.col("views") * F.lit(float(weights.get(VIEW, 1.0)))
            + F.col("add_to_carts") * F.lit(float(weights.get(ADD_TO_CART, 1.0))),
        )
    )
    # At most `top` rows: ranked on the driver, no single-partition window over all products.
    best = counts.orderBy(F.desc("score"), F.asc("item_id")).limit(top).collect()
    rows = [(rank, r.item_id, r.views, r.add_to_carts, float(r.score), start, clock) for rank, r in enumerate(best, 1)]
    return events.sparkSession.createDataFrame(rows, GOLD_LIVE_TRENDING.schema)


def abandoned_carts(events: DataFrame, clock: datetime, abandon_minutes: int, max_age_minutes: int) -> DataFrame:
    """Add-to-carts of known users whose item the user did not buy within ``abandon_minutes``
    (the batch campaign's rule, in minutes), due (added + abandon_minutes) by ``clock`` and
    at most ``max_age_minutes`` before it: (trigger_id = the add-to-cart's event id,
    user_key, item_id, added_at, due_at, channel)."""
    wait = timedelta(minutes=abandon_minutes)
    latest_add = clock - wait
    adds = events.where(
        (F.col("event_type") == ADD_TO_CART)
        & F.col("user_key").isNotNull()
        & F.col("item_id").isNotNull()
        & (F.col("event_time") <= F.lit(latest_add))
        & (F.col("event_time") >= F.lit(latest_add - timedelta(minutes=max_age_minutes)))
    ).select(
        F.col("event_id").alias("trigger_id"),
        "user_key",
        "item_id",
        F.col("event_time").alias("added_at"),
        (F.col("event_time") + F.expr(f"INTERVAL {abandon_minutes} MINUTES")).alias("due_at"),
        "channel",
    )
    # Renamed: both sides come from one DataFrame (see jobs/campaign/audiences.py cart_abandoners).
    bought = events.where(F.col("event_type") == PURCHASE).select(
        F.col("user_key").alias("b_user"), F.col("item_id").alias("b_item"), F.col("event_time").alias("bought_at")
    )
    return adds.join(
        bought,
        (F.col("user_key") == F.col("b_user"))
        & (F.col("item_id") == F.col("b_item"))
        & (F.col("bought_at") >= F.col("added_at"))
        & (F.col("bought_at") <= F.col("due_at")),
        "left_anti",
    )


def within_frequency_cap(
    candidates: Iterable[Mapping], sent: Iterable[tuple[str, datetime]], max_touches: int, period: timedelta
) -> list[Mapping]:
    """The candidates (dicts with ``user_key``, ``due_at``, ``trigger_id``) that may be
    sent, in time order: one is sent when fewer than ``max_touches`` messages went to the
    same person in the ``period`` before its due time, counting ``sent`` (user_key,
    sent_at: campaign touches and earlier triggers) and the candidates sent before it.
    Greedy in due time, as messages go out."""
    history: dict[str, list[datetime]] = defaultdict(list)
    for user, at in sent:
        history[user].append(at)
    chosen = []
    for row in sorted(candidates, key=lambda r: (r["due_at"], r["trigger_id"])):
        due = row["due_at"]
        recent = [at for at in history[row["user_key"]] if due - period < at <= due]
        if len(recent) < max_touches:
            chosen.append(row)
            history[row["user_key"]].append(due)
    return chosen
