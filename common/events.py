"""Silver events, one definition for the batch ``clean`` and ``shoplake stream``: how an
event without an id is recognised and named, and how a deduplicated bronze event that
carries its person's ``user_key`` becomes a silver row (standard formats, no raw
personal data). How duplicates are found differs by engine: clean ranks all of bronze
(jobs/clean/silver.py ``dedup_events``), the stream keeps state per key within a watermark."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from common import privacy
from common.config import ShopLakeConfig
from common.parse import mapped_category

EVENT_CONTENT = [
    "source_system", "user_id", "session_id", "event_type", "product_id",
    "search_query", "page", "channel", "device", "ip",
]  # fmt: skip


def event_content_hash() -> Column:
    """What an event without an id is recognised by: every field but its time."""
    return F.sha2(F.to_json(F.struct(*EVENT_CONTENT)), 256)


def content_event_id(content: Column, event_time: Column) -> Column:
    """The id of an id-less event: its content hash and time (``h-`` + 32 hex digits)."""
    return F.concat(F.lit("h-"), F.substring(F.sha2(F.concat_ws("|", content, event_time.cast("string")), 256), 1, 32))


def to_silver_values(events: DataFrame, cfg: ShopLakeConfig, *keep: str) -> DataFrame:
    """Bronze events that carry their ``user_key`` -> the silver columns but ``dq_flags``:
    standard formats, no raw personal data. The raw product id stays as ``_product_id``
    for :func:`flag_unknown_items`; ``keep`` names further columns to carry along."""
    channel_map = cfg.clean.categories.get("channel", {})
    return events.select(
        "source_system",
        "event_id",
        "user_key",
        "session_id",
        F.lower(F.trim("event_type")).alias("event_type"),
        "event_time",
        F.to_date("event_time").alias("event_date"),
        F.trim("product_id").alias("item_id"),
        privacy.text_normalised(F.col("search_query")).alias("search_query"),
        mapped_category(F.col("channel"), channel_map).alias("channel"),
        privacy.text_normalised(F.col("device")).alias("device"),
        privacy.ip_prefix(F.col("ip")).alias("ip_prefix"),
        F.lower(F.trim("page")).alias("page"),
        F.col("product_id").alias("_product_id"),
        *keep,
    )


def flag_unknown_items(events: DataFrame, products: DataFrame) -> DataFrame:
    """``dq_flags`` = ``[unknown_item]`` for events of a product the catalogue does not know."""
    known_items = products.select(F.col("source_system").alias("_ks"), F.col("item_id").alias("_known_item"))
    unknown = F.col("_product_id").isNotNull() & F.col("_known_item").isNull()
    flags = F.when(unknown, F.array(F.lit("unknown_item"))).otherwise(F.array().cast("array<string>"))
    return (
        events.join(
            known_items.distinct(),
            (F.col("source_system") == F.col("_ks")) & (F.col("_product_id") == F.col("_known_item")),
            "left",
        )
        .withColumn("dq_flags", flags)
        .drop("_ks", "_known_item", "_product_id")
    )
