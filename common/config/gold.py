"""Config sections of the gold jobs: profile, segment, churn and CLV, recommend, basket, campaign."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, field_validator, model_validator

from common.config.core import StrictModel


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
    """Churn model and CLV (jobs/churn/)."""

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
    """Recommendations (jobs/recommend/): candidates chosen by validation NDCG@k."""

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
    evaluation_users: int | None = Field(
        10000,
        gt=0,
        description=(
            "Validation and test (search, candidate choice, test figures) use the interactions of a seeded "
            "sample of at most this many users; publishing uses everyone. null: every user."
        ),
    )
    preferred_categories: int = Field(2, gt=0, description="Categories per user in the category-popularity baseline.")
    similar_items: int = Field(10, ge=0, description="Neighbours per item in gold.similar_items; 0 skips the table.")
    similar_max_mb: int = Field(
        1024,
        gt=0,
        description="Bound on the ALS item factors broadcast for the lists and similar items (items x rank x 8 bytes).",
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
