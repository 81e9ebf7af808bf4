"""Config sections of the platform: lake, Spark, landing, privacy, the sample generator,
ingest and streaming (with Kafka and the live tables)."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """Base for config sections: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LakeConfig(StrictModel):
    root: str = Field("lake", description="Lake root; relative paths resolve against the project root.")
    backend: Literal["auto", "delta-rs", "delta-spark"] = Field(
        "auto", description="Delta implementation; auto picks delta-spark when its classes load."
    )
    # Parquet files Spark writes per table write; small lakes want few files.
    target_file_rows: int = Field(2_000_000, gt=0)
    jars: str = Field(
        "jars", description="Folder of delta-spark jars fetched by `shoplake jars`; relative to the project root."
    )


class SparkConfig(StrictModel):
    master: str | None = Field(
        "local[2]", description="Used only outside spark-submit; null leaves the master to the launcher."
    )
    app_name: str = "shoplake"
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        # YAML reads `4` and `false` as int/bool; Spark wants strings.
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class LandingConfig(StrictModel):
    root: str = Field("data/landing", description="Folder (or URI) the sources deliver files into.")
    source_time_zone: str = Field("Asia/Shanghai", description="Zone of naive source timestamps.")
    sources: list[str] = Field(
        default_factory=lambda: ["shop"], description="Source mappings (conf/sources/<name>.yaml) to ingest."
    )


class PrivacyConfig(StrictModel):
    secret_env: str = Field(
        "SHOPLAKE_PSEUDONYM_SECRET", description="Environment variable holding the pseudonym HMAC key."
    )


class GenerateConfig(StrictModel):
    users: int = Field(2000, gt=0)
    days: int = Field(60, gt=0)
    seed: int = 42
    start_date: date = date(2024, 1, 1)
    attrition: float = Field(
        0.0, ge=0, le=100, description="Multiplier of every segment's daily hazard of leaving for good (0 = off)."
    )
    segment_style: Literal["overlapping", "distinct"] = Field(
        "overlapping", description="'distinct' draws the planted segments apart (shoplake.generate.DISTINCT_SEGMENTS)."
    )
    products: int | None = Field(
        None, ge=100, description="Catalogue size; null: one product per ten users, at least 200 (shoplake.generate)."
    )
    duplicates: Literal["same_phone", "varied"] = Field(
        "same_phone",
        description="Second registrations: 'same_phone' (exact keys find them) or 'varied' (typos, pinyin, "
        "missing and new identifiers; shoplake.generate.DUPLICATE_VARIATIONS).",
    )
    out: str = Field("data/landing", description="Where generated landing files go.")


class IngestConfig(StrictModel):
    # Stop the run when more than this share of a file's records is quarantined:
    # a file that is mostly garbage is more likely a wrong mapping than bad rows.
    max_quarantine_share: float = Field(0.5, ge=0.0, le=1.0)


class LiveConfig(StrictModel):
    # Live gold tables, refreshed from silver.events after each of the stream's silver micro-batches.
    enabled: bool = Field(
        True, description="Refresh gold.live_funnel, gold.live_trending and gold.cart_abandonment_triggers."
    )
    trending_minutes: int = Field(60, ge=1, description="gold.live_trending: the sliding window, in event minutes.")
    trending_top: int = Field(20, ge=1, description="gold.live_trending: products kept, best first.")
    abandon_minutes: int = Field(
        30, ge=1, description="An add-to-cart is abandoned when the item is not bought within this many minutes."
    )
    trigger_max_age_minutes: int = Field(
        120,
        ge=0,
        description="Carts abandoned longer ago than this (event time, past abandon_minutes) get no trigger: "
        "a real-time message about an old cart is not sent.",
    )
    trending_refresh_seconds: float = Field(
        30,
        ge=0,
        description="gold.live_trending and gold.cart_abandonment_triggers are refreshed at most this often "
        "(wall-clock seconds; gold.live_funnel whenever a silver batch committed): an hour's window and a "
        "30-minute rule need no second-by-second refresh, and the funnel does not wait behind them.",
    )


class KafkaSourceConfig(StrictModel):
    # `shoplake stream` from a Kafka topic instead of the landing folder: each message's value
    # is one or more of the feed's records (JSON lines or CSV), parsed as a landing file's.
    bootstrap_servers: str | None = Field(
        None, description="host:port[,...]; set to stream this topic instead of the feed's landing folder."
    )
    topic: str = Field("shop-events", min_length=1, description="The topic (subscribed; every partition).")
    starting_offsets: str = Field("earliest", description="Where a new checkpoint starts: earliest or latest.")
    max_offsets_per_trigger: int | None = Field(None, gt=0, description="Messages per micro-batch at most.")
    options: dict[str, str] = Field(
        default_factory=dict, description="More consumer settings, passed as kafka.<key> (security, SASL)."
    )


class StreamConfig(StrictModel):
    # `shoplake stream`: Structured Streaming over one feed's landing folder into bronze (and silver.events).
    source: str = Field("shop", description="Source mapping (conf/sources/<name>.yaml) of the streamed feed.")
    feed: str = Field("events", description="The feed of that mapping to stream (JSON lines or CSV files).")
    max_files_per_trigger: int = Field(10, gt=0, description="New files read per micro-batch at most.")
    trigger_seconds: float = Field(
        1.0, gt=0, description="Seconds between micro-batches (processing-time trigger; silver's, with silver on)."
    )
    bronze_trigger_seconds: float | None = Field(
        15.0,
        gt=0,
        description="With silver on: seconds between the bronze and quarantine queries' micro-batches (null = "
        "trigger_seconds). Nothing live reads bronze, so fewer, larger bronze batches leave the cores to silver.",
    )
    checkpoints: str | None = Field(
        None, description="Folder of the queries' checkpoints; null = <lake root>/_checkpoints."
    )
    silver: bool = Field(
        True, description="Also stream the feed's bronze.events into silver.events (deduplicated, pseudonymised)."
    )
    watermark_seconds: float = Field(
        600.0,
        gt=0,
        description="silver.events: how late (event time behind the latest seen) an event may arrive; later "
        "ones are dropped from the stream's silver (counted as late_rows; the batch clean keeps them) and "
        "duplicates are remembered this long.",
    )
    live: LiveConfig = Field(default_factory=LiveConfig)
    kafka: KafkaSourceConfig = Field(default_factory=KafkaSourceConfig)
