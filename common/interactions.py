"""Implicit feedback for recommenders: who touched which item, how strongly.

- Events (view, favourite, add_to_cart, ...) weigh what ``recommend.event_weights``
  says; event types without a weight are ignored.
- Purchases come from paid order lines (weight of ``purchase``), not from
  ``purchase`` events, so a purchase is counted once and refunds can be removed:
  refunded and cancelled orders are not purchases, and an item whose returned
  quantity (negative lines, e.g. Online Retail cancellations) reaches what the
  user bought loses its purchase weight.
- Optional time decay: each interaction's weight halves every ``half_life_days``
  before the reference time.
- :class:`IdMap` maps the string ids to the dense integer ids ALS needs, and back,
  with pyspark.ml StringIndexers (alphabetical, so the ids are reproducible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from pyspark.ml.feature import StringIndexer, StringIndexerModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.asof import day_end

PURCHASE = "purchase"
RETURN = "return"


def raw_interactions(events: DataFrame, orders: DataFrame, lines: DataFrame, weights: dict[str, float]) -> DataFrame:
    """Every weighted touch: ``user_key, item_id, kind, ts, weight, quantity``.

    Purchases are paid order lines with a positive quantity; returns are lines with a
    negative quantity (weight 0, they only cancel purchases in :func:`aggregate`).
    """
    event_weights = {k: v for k, v in weights.items() if k != PURCHASE and v > 0}
    parts = []
    if event_weights:
        lookup = F.create_map(*[x for k, v in event_weights.items() for x in (F.lit(k), F.lit(float(v)))])
        parts.append(
            events.where(
                F.col("user_key").isNotNull()
                & F.col("item_id").isNotNull()
                & F.col("event_type").isin(list(event_weights))
            ).select(
                "user_key",
                "item_id",
                F.col("event_type").alias("kind"),
                F.col("event_time").alias("ts"),
                lookup[F.col("event_type")].alias("weight"),
                F.lit(0).alias("quantity"),
            )
        )
    order_lines = lines.join(
        orders.where(F.col("user_key").isNotNull() & F.col("order_time").isNotNull()).select(
            "source_system", "order_id", "user_key", "status", F.col("order_time").alias("ts")
        ),
        ["source_system", "order_id"],
    )
    qty = F.coalesce(F.col("quantity"), F.lit(1))
    parts.append(
        order_lines.where((F.col("status") == "paid") & (qty > 0)).select(
            "user_key",
            "item_id",
            F.lit(PURCHASE).alias("kind"),
            "ts",
            F.lit(float(weights.get(PURCHASE, 0.0))).alias("weight"),
            qty.alias("quantity"),
        )
    )
    parts.append(
        order_lines.where(qty < 0).select(
            "user_key", "item_id", F.lit(RETURN).alias("kind"), "ts", F.lit(0.0).alias("weight"), qty.alias("quantity")
        )
    )
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def aggregate(raw: DataFrame, until: date, half_life_days: float | None = None) -> DataFrame:
    """``user_key, item_id, strength, purchases, last_ts`` from touches on or before ``until``.

    Purchase weight counts only while the net bought quantity stays positive
    (returns cancel it); rows whose strength ends at 0 are dropped.
    """
    end = F.lit(day_end(until).replace(tzinfo=None))
    rows = raw.where(F.col("ts") < end)
    if half_life_days:
        age_days = (end.cast("double") - F.col("ts").cast("double")) / 86_400.0
        decay = F.exp(-F.lit(math.log(2.0) / half_life_days) * age_days)
    else:
        decay = F.lit(1.0)
    is_purchase = F.col("kind") == PURCHASE
    grouped = rows.groupBy("user_key", "item_id").agg(
        F.sum(F.when(~is_purchase, F.col("weight") * decay).otherwise(0.0)).alias("_other"),
        F.sum(F.when(is_purchase, F.col("weight") * decay).otherwise(0.0)).alias("_bought"),
        F.sum(F.when(is_purchase | (F.col("kind") == RETURN), F.col("quantity")).otherwise(0)).alias("_net_qty"),
        F.sum(F.when(is_purchase, 1).otherwise(0)).alias("_purchases"),
        F.max("ts").alias("last_ts"),
    )
    kept_purchase = F.col("_net_qty") > 0
    return grouped.select(
        "user_key",
        "item_id",
        (F.col("_other") + F.when(kept_purchase, F.col("_bought")).otherwise(0.0)).alias("strength"),
        F.when(kept_purchase, F.col("_purchases")).otherwise(0).cast("long").alias("purchases"),
        "last_ts",
    ).where(F.col("strength") > 0)


def purchases_between(raw: DataFrame, after: date, until: date) -> DataFrame:
    """Distinct ``user_key, item_id`` bought (net of returns) after ``after`` up to ``until``."""
    window = raw.where(F.col("ts") >= F.lit(day_end(after).replace(tzinfo=None)))
    agg = aggregate(window.where(F.col("kind").isin(PURCHASE, RETURN)), until)
    return agg.where(F.col("purchases") > 0).select("user_key", "item_id")


@dataclass
class IdMap:
    """String ids <-> the integer ids ALS needs (``user_idx``, ``item_idx``)."""

    users: StringIndexerModel
    items: StringIndexerModel

    @classmethod
    def fit(cls, interactions: DataFrame) -> IdMap:
        def indexer(col: str, out: str) -> StringIndexerModel:
            return StringIndexer(inputCol=col, outputCol=out, stringOrderType="alphabetAsc", handleInvalid="skip").fit(
                interactions.select(col)
            )

        return cls(indexer("user_key", "user_idx"), indexer("item_id", "item_idx"))

    def to_index(self, df: DataFrame) -> DataFrame:
        """Add ``user_idx``/``item_idx`` (ints) to ``df``; rows with unseen ids are dropped."""
        out = df
        if "user_key" in df.columns:
            out = self.users.transform(out).withColumn("user_idx", F.col("user_idx").cast("int"))
        if "item_id" in df.columns:
            out = self.items.transform(out).withColumn("item_idx", F.col("item_idx").cast("int"))
        return out

    def user_lookup(self, users: DataFrame) -> DataFrame:
        """``user_key, user_idx`` for the known users among ``users`` (no driver-side collect)."""
        return self.to_index(users.select("user_key").distinct())

    def item_lookup(self, items: DataFrame) -> DataFrame:
        return self.to_index(items.select("item_id").distinct())

    def save(self, path: str) -> None:
        self.users.write().overwrite().save(f"{path}/user_index")
        self.items.write().overwrite().save(f"{path}/item_index")

    @classmethod
    def load(cls, path: str) -> IdMap:
        return cls(StringIndexerModel.load(f"{path}/user_index"), StringIndexerModel.load(f"{path}/item_index"))
