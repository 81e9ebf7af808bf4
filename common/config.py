"""Configuration: ``conf/base.yaml`` merged with ``conf/<env>.yaml`` and ``--set``
overrides, validated into typed objects before Spark starts.

Unknown or mistyped keys are errors that name the key. Secrets never live in
these files: a config only names the environment variable that holds one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import zipfile
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from common.errors import ConfigError, MissingSecretError
from common.paths import has_scheme

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR_ENV = "SHOPLAKE_CONF_DIR"
FREE_FORM_MAPS = ("spark.conf",)
# The YAML files of conf/ that are not environments (conf/<env>.yaml).
NOT_ENV_FILES = ("base", "quality", "campaigns", "tags")


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


# The normalised identifiers the Splink model sees (common/identity.py builds them):
# name (no spaces), its first and last whitespace-separated tokens, birth date, city,
# e-mail and its user part, phone (E.164) and its last digits, valid resident ID.
IdentityColumn = Literal[
    "name", "name_first", "name_last", "birth_date", "city", "email", "email_user", "phone", "phone_tail", "id_number"
]


class NameComparisonConfig(StrictModel):
    jaro_winkler: list[float] = Field(default_factory=lambda: [0.92, 0.88, 0.7], min_length=1)
    swapped: bool = Field(True, description="A level for first and last names swapped.")
    one_edit: bool = Field(
        True,
        description="A level for names one insertion, deletion, substitution or transposition apart, after the "
        "highest Jaro-Winkler level: Jaro-Winkler scores one typo in a short name (two Chinese characters) 0.7.",
    )
    term_frequency: bool = Field(True, description="Exact matches on rare names weigh more.")


class BirthDateComparisonConfig(StrictModel):
    one_edit: bool = Field(True, description="A level for dates one character apart (typos).")
    day_month_swapped: bool = Field(
        True, description="A level for the same year with day and month swapped (05-03 typed as 03-05)."
    )
    within_months: list[int] = Field(default_factory=lambda: [1, 12], description="Levels |difference| <= months.")


class ExactComparisonConfig(StrictModel):
    term_frequency: bool = False


class EmailComparisonConfig(StrictModel):
    user_part: bool = Field(True, description="A level for the same part before '@'.")
    jaro_winkler: list[float] = Field(default_factory=lambda: [0.88], description="Fuzzy levels on the address.")


class PhoneComparisonConfig(StrictModel):
    last_digits: int | None = Field(8, ge=4, le=11, description="A level for the same last digits; null: none.")


class IdentityComparisons(StrictModel):
    """The Fellegi-Sunter comparisons; null drops one. A comparison whose identifier
    is missing in every record is skipped at run time (nothing to learn)."""

    name: NameComparisonConfig | None = Field(default_factory=NameComparisonConfig)
    birth_date: BirthDateComparisonConfig | None = Field(default_factory=BirthDateComparisonConfig)
    city: ExactComparisonConfig | None = Field(default_factory=lambda: ExactComparisonConfig(term_frequency=True))
    email: EmailComparisonConfig | None = Field(default_factory=EmailComparisonConfig)
    phone: PhoneComparisonConfig | None = Field(default_factory=PhoneComparisonConfig)
    id_number: ExactComparisonConfig | None = Field(default_factory=ExactComparisonConfig)


class SplinkConfig(StrictModel):
    """clean.identity.method=splink: probabilistic record linkage (Splink on Spark)."""

    threshold: float = Field(0.9, gt=0, lt=1, description="Match probability at or above which two records link.")
    # Exact normalised keys: they estimate the prior (share of matching pairs) and are sure links.
    deterministic_rules: list[list[IdentityColumn]] = Field(
        default_factory=lambda: [["phone"], ["email"], ["id_number"]], min_length=1
    )
    deterministic_recall: float = Field(
        0.7, gt=0, le=1, description="Share of true pairs the rules are assumed to find."
    )
    seed: int = 42
    u_max_pairs: int = Field(1_000_000, gt=0, description="Random pairs sampled for the u-probabilities.")
    # Splink splits the sample into chunks (one Spark job each) so it can stop once every level
    # has 100 pairs; rare levels (same phone, same ID) never get there, so all chunks run, and
    # their fixed cost tripled the u step here. One chunk gives the same u-values from one job.
    u_chunks: int = Field(1, gt=0, description="Chunks the u sample is compared in (Splink's num_chunks).")
    em_max_iterations: int = Field(25, gt=0)
    # Pairs are compared only when they agree on one of these (OR of ANDs).
    blocking: list[list[IdentityColumn]] = Field(
        default_factory=lambda: [
            ["name_first"],
            ["name_last"],
            ["birth_date"],
            ["email"],
            ["email_user"],
            ["phone_tail"],
            ["id_number"],
        ],
        min_length=1,
    )
    # One EM pass per rule; each fixes the comparisons of its own columns. The whole name, not
    # first + last tokens: names written without spaces (Chinese) have no last token.
    training_blocking: list[list[IdentityColumn]] = Field(
        default_factory=lambda: [["name"], ["birth_date"]], min_length=1
    )
    comparisons: IdentityComparisons = Field(default_factory=IdentityComparisons)
    scratch_dir: str | None = Field(
        None, description="Local folder for Splink's intermediate tables (deleted after the run); null: a temp dir."
    )


class IdentityConfig(StrictModel):
    method: Literal["exact", "splink"] = Field(
        "exact", description="exact: shared normalised keys only; splink: probabilistic linkage plus those keys."
    )
    # Registrations sharing any of these normalised keys are one person (sure links under splink too).
    match_on: list[Literal["phone", "email", "id_number"]] = Field(
        default_factory=lambda: ["phone", "email", "id_number"]
    )
    # Also merge records with the same birth date and city whose normalised names
    # differ by at most this many edits (0 disables). Off by default: twins often
    # share a birthday and differ by one character.
    fuzzy_name_distance: int = Field(0, ge=0, le=3)
    splink: SplinkConfig = Field(default_factory=SplinkConfig)


class CleanConfig(StrictModel):
    as_of: date | None = Field(
        None, description="Date age bands are computed at; default: the last day with data (logged)."
    )
    event_dedup_window_seconds: int = Field(
        10, ge=0, description="Id-less events with identical content this close in time are one event."
    )
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    # Values outside [low, high] are flagged in dq_flags, never dropped.
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "quantity": (-10_000, 10_000),
            "unit_price": (0, 100_000),
            "price": (0, 100_000),
            "line_amount": (-1_000_000, 1_000_000),
            "total_amount": (-1_000_000, 1_000_000),
        }
    )
    # Categorical values mapped to canonical codes (keys compared lower-cased and trimmed).
    categories: dict[str, dict[str, str]] = Field(default_factory=dict)
    age_bands: list[int] = Field(default_factory=lambda: [18, 25, 35, 45, 55, 65])
    k_anonymity: int = Field(5, ge=1)


class GoldConfig(StrictModel):
    """Settings every gold job shares."""

    as_of: date | None = Field(
        None,
        description="Date the gold jobs compute as of (inclusive; only data up to its end is used). "
        "Null: the last day with data in silver, which the job logs.",
    )


class RfmRule(StrictModel):
    """One row of the RFM segment table: score ranges (inclusive) that name a segment."""

    name: str
    r: tuple[int, int] = (1, 5)
    f: tuple[int, int] = (1, 5)
    m: tuple[int, int] = (1, 5)

    @field_validator("r", "f", "m")
    @classmethod
    def _score_range(cls, value: tuple[int, int]) -> tuple[int, int]:
        low, high = value
        if not 1 <= low <= high <= 5:
            raise ValueError(f"score range must be [low, high] with 1 <= low <= high <= 5, got {list(value)}")
        return value


def _default_rfm_rules() -> list[RfmRule]:
    return [
        RfmRule(name="Champions", r=(4, 5), f=(4, 5), m=(4, 5)),
        RfmRule(name="Loyal", r=(3, 5), f=(3, 5)),
        RfmRule(name="New", r=(5, 5), f=(1, 1)),
        RfmRule(name="Potential loyalists", r=(3, 5), f=(1, 3)),
        RfmRule(name="At risk", r=(1, 2), f=(3, 5)),
        RfmRule(name="Hibernating", r=(2, 2), f=(1, 2)),
        RfmRule(name="Lost", r=(1, 1), f=(1, 2)),
    ]


class LifecycleConfig(StrictModel):
    """Window lengths (days) of the lifecycle stages; see jobs.profiles.with_lifecycle."""

    new_days: int = Field(30, gt=0, description="First purchase (or registration, without one) this recent: new.")
    active_days: int = Field(30, gt=0, description="Last purchase this recent: active (or reactivated).")
    churned_days: int = Field(90, gt=0, description="No purchase for longer than this: churned; between: dormant.")


class ProfileConfig(StrictModel):
    """The profile job (gold.profiles)."""

    time_zone: str | None = Field(
        None, description="Zone for hours of day and weekdays; null: landing.source_time_zone."
    )
    night_hours: list[int] = Field(default_factory=lambda: [22, 23, 0, 1, 2, 3])
    quantile_relative_error: float = Field(
        0.0, ge=0.0, lt=1.0, description="approxQuantile error for RFM quintiles; 0 is exact and reproducible."
    )
    rfm_segments: list[RfmRule] = Field(default_factory=_default_rfm_rules, min_length=1)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    # Interest weight of one interaction with an item, by event type; order lines count as `purchase`.
    interest_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "favourite": 2.0, "add_to_cart": 3.0, "purchase": 5.0}
    )
    top_interests: int = Field(3, gt=0)
    city_tiers: dict[int, list[str]] = Field(default_factory=dict)
    tags_file: str = Field("tags.yaml", description="Tag rules; relative paths resolve against the conf folder.")


class SegmentConfig(StrictModel):
    """The segment job (gold.segments, gold.segment_summary)."""

    features: list[str] = Field(
        default_factory=lambda: [
            "frequency",
            "views",
            "add_to_carts",
            "view_to_purchase_rate",
            "discount_order_share",
            "night_share",
            "registration_days",
        ],
        min_length=1,
        description="gold.profiles columns clustered on (nulls count as 0).",
    )
    log_features: list[str] = Field(
        default_factory=lambda: ["frequency", "views", "add_to_carts", "registration_days"],
        description="Skewed features taken as ln(1 + max(x, 0)) before standardising.",
    )
    k_min: int = Field(3, ge=2)
    k_max: int = Field(9, ge=2)
    seed: int = 42
    stability_seeds: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=2)
    max_iter: int = Field(50, gt=0)
    restarts: int = Field(10, ge=1, description="k-means runs per fit (derived seeds); the lowest cost wins.")
    where: str | None = Field(None, description="Optional SQL filter on gold.profiles: who is segmented.")
    # A centroid coordinate (in standard deviations) this far from the population mean names the segment.
    name_threshold: float = Field(0.5, gt=0)
    name_terms: int = Field(3, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> SegmentConfig:
        if self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})")
        stray = [f for f in self.log_features if f not in self.features]
        if stray:
            raise ValueError(f"log_features {stray} are not in features {self.features}")
        return self


class ChurnGridConfig(StrictModel):
    """GBT hyperparameters tried on the validation cutoff (every combination)."""

    max_depth: list[int] = Field(default_factory=lambda: [3, 5])
    max_iter: list[int] = Field(default_factory=lambda: [30])
    step_size: list[float] = Field(default_factory=lambda: [0.1])


class ClvConfig(StrictModel):
    period_days: int = Field(30, gt=0, description="Length of one CLV period.")
    horizon_periods: int = Field(12, gt=0, description="Periods summed (12 x 30 days ~ one year).")
    annual_discount_rate: float = Field(0.10, ge=0.0)
    margin: float = Field(0.30, gt=0.0, le=1.0, description="Gross margin share of an order's paid value.")
    validation_holdout_days: int | None = Field(
        None, gt=0, description="Holdout of the report's BG/NBD check (the last days before as_of); null: label_days."
    )


class ChurnConfig(StrictModel):
    """Churn model and CLV (jobs/churn.py)."""

    label_days: int = Field(90, gt=0, description="Churned = no purchase in this many days after the cutoff.")
    training_label_days: int | None = Field(
        None, gt=0, description="Must be null or equal label_days: every cutoff has the same label length."
    )
    activity_days: int = Field(180, gt=0, description="Customers with a purchase in these days before a cutoff.")
    windows: list[int] = Field(default_factory=lambda: [7, 30, 90, 180], min_length=1)
    channels: list[str] = Field(default_factory=lambda: ["app", "web", "mini_program"])
    # Null cutoffs derive from the as-of date: test = as_of - label_days, validation =
    # test - label_days, training = validation - label_days.
    test_cutoff: date | None = None
    validation_cutoff: date | None = None
    train_cutoff: date | None = None
    grid: ChurnGridConfig = Field(default_factory=ChurnGridConfig)
    min_class_rows: int = Field(5, ge=1, description="Fewer churners or stayers in a split: no model is trained.")
    risk_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"high": 0.6, "medium": 0.3},
        description="Tier name -> lowest probability in it, checked from the highest; below all: 'low'.",
    )
    high_risk_capacity: int | None = Field(
        None, gt=0, description="When set, exactly the N riskiest customers are tier 'high'."
    )
    top_features: int = Field(3, ge=0, description="Contributing features listed per customer.")
    attribution_features: int = Field(8, ge=0, description="Most important features tried for contributions.")
    logistic_reg_param: float = Field(0.01, ge=0.0, description="L2 strength of the logistic-regression candidate.")
    bootstrap_samples: int = Field(
        1000, ge=0, description="Resamples of the test rows for the interval of the difference to the best baseline."
    )
    clv: ClvConfig = Field(default_factory=ClvConfig)
    score_with_model: str | None = Field(
        None, description="A saved model version: score with it, no training (e.g. between retrains)."
    )
    seed: int = 42


Confidence = Literal["raw", "log1p", "bm25", "tfidf"]


class AlsGridConfig(StrictModel):
    """ALS hyperparameters searched on the validation split (``recommend.search``)."""

    rank: list[int] = Field(default_factory=lambda: [8, 16, 32, 64], min_length=1)
    reg_param: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0], min_length=1)
    alpha: list[float] = Field(default_factory=lambda: [1.0, 5.0, 20.0, 80.0], min_length=1)
    max_iter: list[int] = Field(default_factory=lambda: [10], min_length=1)
    confidence: list[Confidence] = Field(
        default_factory=lambda: ["raw", "log1p", "bm25"],
        min_length=1,
        description="Transforms of the user-item strength before ALS (common.confidence).",
    )


class Bm25Config(StrictModel):
    """The bm25 confidence transform's parameters (implicit's bm25_weight defaults)."""

    k1: float = Field(100.0, gt=0, description="Term-frequency saturation.")
    b: float = Field(0.8, ge=0, le=1, description="Weight of the row (user) length normalisation.")


class SearchConfig(StrictModel):
    """How the ALS grid is searched on the validation split."""

    strategy: Literal["grid", "halving"] = Field(
        "halving", description="grid: every combination; halving: successive halving over sampled points."
    )
    points: int = Field(9, gt=0, description="Halving: grid points sampled (seeded by recommend.seed).")
    min_iter: int = Field(3, gt=0, description="Halving: ALS iterations of the first rung.")
    keep: int = Field(3, ge=2, description="Halving: each rung keeps the best 1/keep of its points.")
    search_budget_s: float | None = Field(
        1800.0, gt=0, description="Seconds the search may take; when reached it stops with the best so far."
    )


RecommendCandidate = Literal["als", "item_knn", "sar", "most_popular"]


class ItemKnnConfig(StrictModel):
    """Item-kNN candidate: cosine between the items' columns of the user-item matrix."""

    neighbours: int = Field(200, gt=0, description="Neighbours kept per item (top-K by cosine).")


class SarConfig(StrictModel):
    """SAR candidate: item co-occurrence similarity and time-decayed user affinity."""

    similarity: Literal["jaccard", "lift"] = Field("jaccard", description="Similarity of co-occurrence counts.")
    neighbours: int = Field(200, gt=0, description="Neighbours kept per item (top-K by similarity).")
    half_life_days: float | None = Field(
        30.0, gt=0, description="Affinity: each interaction's weight halves every this many days; null: no decay."
    )


ContentFeature = Literal["name", "category", "brand", "price_band"]


class ContentConfig(StrictModel):
    """Content-based item vectors from silver products, for items without interactions."""

    enabled: bool = Field(
        True, description="Content neighbours for items the collaborative model has not seen (reason content)."
    )
    features: list[ContentFeature] = Field(
        default_factory=lambda: ["name", "category", "brand", "price_band"],
        min_length=1,
        description="Product attributes in the vector: name tokens (TF-IDF), category levels, brand, price band.",
    )
    num_features: int = Field(
        4096, gt=0, description="Hashing buckets of the name and attribute tokens (HashingTF numFeatures)."
    )
    price_bands: int = Field(5, gt=0, description="Price bands: quantiles of price within the top-level category.")
    neighbours: int = Field(
        10, gt=0, description="Content neighbours per item; gold.similar_items takes up to similar_items of them."
    )
    fill_below: int = Field(
        3,
        ge=0,
        description="Users with fewer items than this get their items' content neighbours (reason content) before"
        " or after the model's picks, as validation NDCG@k of those users decides (or not at all); 0: never.",
    )
    fill_min_users: int = Field(
        30,
        gt=0,
        description="Content picks are placed only when at least this many such users bought a new item in the"
        " validation period: on fewer, a difference in NDCG@k is noise.",
    )


class RecommendConfig(StrictModel):
    """Recommendations (jobs/recommend.py): candidates chosen by validation NDCG@k."""

    candidates: list[RecommendCandidate] = Field(
        default_factory=lambda: ["als", "item_knn", "sar", "most_popular"],
        min_length=1,
        description="Models compared on validation NDCG@k; the best one publishes.",
    )
    knn: ItemKnnConfig = Field(default_factory=ItemKnnConfig)
    sar: SarConfig = Field(default_factory=SarConfig)
    content: ContentConfig = Field(default_factory=ContentConfig)

    top_n: int = Field(10, gt=0, description="Recommendations published per customer.")
    k: int = Field(10, gt=0, description="Cut-off of the ranking metrics (@k).")
    split: Literal["time", "random"] = Field(
        "time", description="time: train before the cutoff, test after; random: per-user held-out share (no times)."
    )
    test_days: int = Field(14, gt=0, description="Time split: the test period is the last test_days before as-of.")
    eval_cutoff: date | None = Field(
        None, description="Time split cutoff (inclusive, train side); default as-of minus test_days."
    )
    validation_days: int = Field(14, gt=0, description="Validation period carved from the end of the training period.")
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Random split: share of each user's items held out.")
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "favourite": 2.0, "add_to_cart": 3.0, "purchase": 5.0},
        description="Implicit-feedback weight per event type; purchases come from paid order lines.",
    )
    half_life_days: float | None = Field(None, gt=0, description="Time decay half-life; null: no decay.")
    grid: AlsGridConfig = Field(default_factory=AlsGridConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    bm25: Bm25Config = Field(default_factory=Bm25Config)
    search: SearchConfig = Field(default_factory=SearchConfig)
    bm25: Bm25Config = Field(default_factory=Bm25Config)
    preferred_categories: int = Field(2, gt=0, description="Categories per user in the category-popularity baseline.")
    similar_items: int = Field(10, ge=0, description="Neighbours per item in gold.similar_items; 0 skips the table.")
    similar_max_mb: int = Field(
        1024,
        gt=0,
        description="Bound on the item factors broadcast by the exact similar-items search (items x rank x 8 bytes).",
    )
    seed: int = 42


class BasketConfig(StrictModel):
    """FP-growth association rules (jobs/basket.py); support and confidence as arules defines them."""

    min_support: float = Field(0.01, gt=0.0, le=1.0)
    min_confidence: float = Field(0.2, ge=0.0, le=1.0)
    min_lift: float = Field(1.0, ge=0.0)
    max_itemset_size: int = Field(4, ge=1, description="Largest itemset mined (arules maxlen).")
    min_rule_items: int = Field(
        2, ge=1, le=2, description="arules minlen: 1 also yields rules with an empty antecedent {} => {item}."
    )
    cross_sell_per_item: int = Field(5, gt=0)
    bundles: int = Field(100, gt=0, description="Bundle candidates kept (itemsets of 2-3 items).")


# ---------------------------------------------------------------------------- campaign
class FrequencyCapConfig(StrictModel):
    # A customer gets at most max_touches campaign messages per period_days, counting
    # touches already sent (silver.campaign_touches) and the audiences built now.
    max_touches: int = Field(2, ge=1)
    period_days: int = Field(7, ge=1)


class CartAbandonConfig(StrictModel):
    # An add-to-cart is abandoned when the item is not bought within `hours`;
    # adds younger than that at the as-of time are still open.
    hours: int = Field(24, ge=1)
    lookback_days: int = Field(7, ge=1)
    max_items: int = Field(5, ge=1)


class AbTestConfig(StrictModel):
    alpha: float = Field(0.05, gt=0, lt=0.5)
    power: float = Field(0.8, gt=0, lt=1)
    # Smallest relative lift worth detecting; below the power to see it a test is flagged underpowered.
    min_relative_effect: float = Field(0.2, gt=0)
    bootstrap_resamples: int = Field(2000, ge=100)
    bootstrap_seed: int = 42
    # Above this many recipients per group the bootstrap is skipped (Welch only): the
    # per-recipient revenues are brought to the driver for it.
    bootstrap_max_recipients: int = Field(50_000, ge=10)


class AudienceExportConfig(StrictModel):
    formats: list[Literal["csv", "delta"]] = Field(default_factory=lambda: ["csv", "delta"])
    # Exported attributes that describe the person; values shared by fewer than k
    # recipients of a campaign are withheld (nulled) in the export.
    quasi_identifiers: list[str] = Field(default_factory=lambda: ["lifecycle_stage", "segment_name", "risk_tier"])
    k_anonymity: int = Field(5, ge=1)


class CampaignConfig(StrictModel):
    definitions: str = Field("conf/campaigns.yaml", description="Audience definitions and playbooks (YAML).")
    control_share: float = Field(0.1, ge=0, lt=1, description="Default hold-out share per campaign.")
    frequency_cap: FrequencyCapConfig = Field(default_factory=FrequencyCapConfig)
    cart_abandon: CartAbandonConfig = Field(default_factory=CartAbandonConfig)
    top_recommendations: int = Field(3, ge=0, description="Recommended items attached per customer.")
    attribution_window_hours: int = Field(72, ge=1, description="Last-touch attribution window for orders.")
    repeat_window_days: int = Field(30, ge=1, description="Window for the repeat-purchase rate after a campaign.")
    ab: AbTestConfig = Field(default_factory=AbTestConfig)
    export: AudienceExportConfig = Field(default_factory=AudienceExportConfig)


class ShopLakeConfig(StrictModel):
    env: str
    lake: LakeConfig = Field(default_factory=LakeConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    landing: LandingConfig = Field(default_factory=LandingConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    gold: GoldConfig = Field(default_factory=GoldConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    basket: BasketConfig = Field(default_factory=BasketConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)
    conf_dir: str = Field("", description="Set by the loader: the folder the config came from.")

    def resolve_path(self, value: str) -> str:
        """Resolve a configured path: URIs and absolute paths as they are, the rest
        against the project root (the folder above ``conf/``)."""
        if has_scheme(value) or os.path.isabs(value):
            return value
        project = Path(self.conf_dir).parent
        if self.conf_dir in map(str, _PACKAGED_CONF):
            # conf/ extracted from the --py-files zip sits in a temporary folder: resolve
            # against the working directory, as for files given to spark-submit, unless
            # only the zip has the file (conf/campaigns.yaml shipped beside conf/base.yaml).
            here, shipped = Path.cwd() / value, project / value
            return str((shipped if shipped.exists() and not here.exists() else here).resolve())
        return str((project / value).resolve())

    @property
    def lake_root(self) -> str:
        return self.resolve_path(self.lake.root)

    @property
    def delta_jars_root(self) -> str:
        return self.resolve_path(self.lake.jars)

    @property
    def landing_root(self) -> str:
        return self.resolve_path(self.landing.root)

    def pseudonym_secret(self) -> bytes:
        """The HMAC key for pseudonyms, from the environment only; no default exists."""
        name = self.privacy.secret_env
        value = os.environ.get(name)
        if not value:
            raise MissingSecretError(
                f"environment variable {name} is not set: set it to the pseudonym secret "
                f"(e.g. `export {name}=$(openssl rand -hex 32)`); it is never read from files"
            )
        return value.encode("utf-8")


def find_conf_dir(conf_dir: str | Path | None = None) -> Path:
    """The conf folder: an explicit path, then $SHOPLAKE_CONF_DIR, then the project's ``conf/``."""
    candidates = [conf_dir, os.environ.get(CONF_DIR_ENV), PROJECT_ROOT / "conf", Path.cwd() / "conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "base.yaml").is_file():
            return Path(candidate).resolve()
    packaged = packaged_conf_dir()
    if packaged is not None:
        return packaged
    raise ConfigError(
        f"no conf/base.yaml found (looked in: {', '.join(str(c) for c in candidates if c)}); "
        f"pass --conf-dir or set {CONF_DIR_ENV}"
    )


_PACKAGED_CONF: list[Path] = []


def packaged_conf_dir() -> Path | None:
    """``conf/`` shipped inside the ``--py-files`` zip this code was imported from
    (``shoplake package``), extracted once to a temporary folder because loading
    reads real files; None when the code is not running from such a zip."""
    if _PACKAGED_CONF:
        return _PACKAGED_CONF[0]
    if not zipfile.is_zipfile(PROJECT_ROOT):
        return None
    with zipfile.ZipFile(PROJECT_ROOT) as archive:
        members = [m for m in archive.namelist() if m.startswith("conf/") and not m.endswith("/")]
        if "conf/base.yaml" not in members:
            return None
        folder = Path(tempfile.mkdtemp(prefix="shoplake-conf-"))
        atexit.register(shutil.rmtree, folder, True)
        archive.extractall(folder, members)
    _PACKAGED_CONF.append(folder / "conf")
    return folder / "conf"


def read_yaml(path: str | Path, *, key: str | None = None, hint: str = "") -> dict[str, Any]:
    """The mapping at the top of one YAML config file; the one place config YAML is read.

    Args:
        path: the file.
        key: the config key that named the file (e.g. ``campaign.definitions``), named
            when the file is missing.
        hint: said after a missing file, e.g. which files exist.

    Raises:
        ConfigError: one line naming the file (and ``key``) when the file is missing,
            not valid YAML (with line and column), or not a mapping at the top level.
    """
    path = Path(path)
    if not path.is_file():
        where = f"{key}: " if key else ""
        raise ConfigError(f"{where}file {path} not found" + (f" ({hint})" if hint else ""))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    return data


ModelT = TypeVar("ModelT", bound=BaseModel)


def load_yaml(path: str | Path, model: type[ModelT], *, what: str, key: str | None = None, hint: str = "") -> ModelT:
    """Read one YAML config file (:func:`read_yaml`) and validate it into ``model``.

    Args:
        what: what the file holds, for messages (``campaign definitions``).

    Raises:
        ConfigError: ``invalid <what> (<file>): <key path>: <problem>`` naming every bad
            key, or a problem of :func:`read_yaml`.
    """
    data = read_yaml(path, key=key, hint=hint)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} ({path}): {describe_validation_error(exc)}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into a copy of ``base``; nested mappings merge, other values replace."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}``, the value read as YAML (``4`` is an int)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. lake.root=/tmp/lake")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    key = key.strip()
    parts = key.split(".")
    # Keys of free-form maps contain dots themselves (spark.conf.spark.sql.x).
    for prefix in FREE_FORM_MAPS:
        if key.startswith(prefix + "."):
            parts = [*prefix.split("."), key[len(prefix) + 1 :]]
    node: Any = value
    for part in reversed(parts):
        node = {part: node}
    return node


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming every bad key: ``lake.rooot: unknown key; generate.users: ... (got 'x')``."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
            continue
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, (str, int, float, bool)) or value is None else ""
        problems.append(f"{key}: {err['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(problems)


def load_config(
    env: str = "local",
    overrides: list[str] | tuple[str, ...] = (),
    conf_dir: str | Path | None = None,
) -> ShopLakeConfig:
    """Load and validate the configuration for ``env``.

    Raises:
        ConfigError: naming the file and key when anything is unknown or mistyped.
    """
    folder = find_conf_dir(conf_dir)
    env_file = folder / f"{env}.yaml"
    if not env_file.is_file():
        # Not environments: the base, quality rules, campaign definitions, tags.
        known = sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in NOT_ENV_FILES)
        raise ConfigError(f"unknown env {env!r}: no {env_file} (known: {', '.join(known)})")
    data = deep_merge(read_yaml(folder / "base.yaml"), read_yaml(env_file))
    for text in overrides:
        data = deep_merge(data, parse_override(text))
    data["env"] = env
    data["conf_dir"] = str(folder)
    sources = f"{folder / 'base.yaml'} + {env_file.name}" + (" + --set" if overrides else "")
    try:
        return ShopLakeConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid config ({sources}): {describe_validation_error(exc)}") from None
