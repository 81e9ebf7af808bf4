"""Cutoffs, the job's inputs and the labelled feature frame at a cutoff."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.churn_features import (
    active_customers,
    btyd_features,
    churn_labels,
    point_in_time_features,
)
from common.config import ChurnConfig
from common.delta import DeltaStore
from common.errors import ConfigError
from common.tables import (
    GOLD_PROFILES,
    GOLD_SEGMENTS,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDERS,
    TableSpec,
)

LABEL = "churned"
# Optional context from the profile and segment jobs: (table, column).
CONTEXT_COLUMNS = ((GOLD_PROFILES, "lifecycle_stage"), (GOLD_PROFILES, "rfm_segment"), (GOLD_SEGMENTS, "segment_id"))


# ---------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Cutoffs:
    train: date
    validation: date
    test: date
    score: date
    training_label_days: int
    label_days: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "train": self.train.isoformat(),
            "validation": self.validation.isoformat(),
            "test": self.test.isoformat(),
            "score": self.score.isoformat(),
            "training_label_days": self.training_label_days,
            "label_days": self.label_days,
        }


def plan_cutoffs(churn: ChurnConfig, as_of: date) -> Cutoffs:
    """Training, validation and test cutoffs (configured or derived from ``as_of``), one
    label length (``label_days``) at all three.

    Raises:
        ConfigError: naming the key when ``churn.training_label_days`` differs from
            ``churn.label_days`` (calibration fitted on one label length is wrong for
            another), or when a label window would reach past the next cutoff (the model
            would learn from the period it is tested on) or past as_of.
    """
    if churn.training_label_days is not None and churn.training_label_days != churn.label_days:
        raise ConfigError(
            f"churn.training_label_days={churn.training_label_days} differs from churn.label_days="
            f"{churn.label_days}: labels must have the same length at every cutoff so that probabilities "
            "calibrated at validation hold at test; set churn.training_label_days to null"
        )
    n = churn.label_days
    test = churn.test_cutoff or as_of - timedelta(days=n)
    validation = churn.validation_cutoff or test - timedelta(days=n)
    train = churn.train_cutoff or validation - timedelta(days=n)
    checks = (
        ("churn.train_cutoff", train, validation, "churn.validation_cutoff"),
        ("churn.validation_cutoff", validation, test, "churn.test_cutoff"),
        ("churn.test_cutoff", test, as_of, "gold.as_of"),
    )
    for key, cutoff, limit, limit_key in checks:
        if cutoff + timedelta(days=n) > limit:
            raise ConfigError(
                f"{key}={cutoff}: its {n}-day label window ends {cutoff + timedelta(days=n)}, after "
                f"{limit_key}={limit}; move the cutoff earlier or shorten the label window"
            )
    return Cutoffs(train, validation, test, as_of, n, n)


def history_problem(first_purchase: date | None, cutoffs: Cutoffs) -> str | None:
    """Why the history cannot support this plan (None when it can): the training cutoff
    must come after the first purchase, and the message says which label length fits."""
    if first_purchase is None:
        return "no purchases in silver.orders"
    if cutoffs.train > first_purchase:
        return None
    days = (cutoffs.score - first_purchase).days
    supported = max((days - 1) // 3, 0)
    return (
        f"history {first_purchase}..{cutoffs.score} ({days} days) is too short for {cutoffs.label_days}-day labels "
        f"at the training, validation and test cutoffs (training cutoff {cutoffs.train}); it supports "
        f"churn.label_days <= {supported}"
    )


@dataclass
class ChurnInputs:
    orders: DataFrame
    events: DataFrame | None
    customers: DataFrame | None
    profiles: DataFrame | None = None
    segments: DataFrame | None = None
    versions: dict[str, int] = field(default_factory=dict)


def read_inputs(store: DeltaStore) -> ChurnInputs:
    """Silver orders (required), events and customers, gold profiles and segments when present."""
    store.require(SILVER_ORDERS)
    versions: dict[str, int] = {}

    def read(spec: TableSpec) -> DataFrame | None:
        if not store.exists(spec):
            return None
        versions[spec.name] = store.version(spec)
        return store.read(spec)

    return ChurnInputs(
        orders=read(SILVER_ORDERS),
        events=read(SILVER_EVENTS),
        customers=read(SILVER_CUSTOMERS),
        profiles=read(GOLD_PROFILES),
        segments=read(GOLD_SEGMENTS),
        versions=versions,
    )


def context_available(inputs: ChurnInputs, dates: list[date]) -> list[str]:
    """Profile/segment columns usable as features: only when their table holds every
    cutoff date (a feature the training cutoff lacks cannot be learned)."""
    usable = []
    for spec, column in CONTEXT_COLUMNS:
        df = inputs.profiles if spec is GOLD_PROFILES else inputs.segments
        if df is None:
            continue
        present = {r[0] for r in df.where(F.col("as_of").isin(dates)).select("as_of").distinct().collect()}
        if set(dates) <= present:
            usable.append(column)
    return usable


def build_frame(
    inputs: ChurnInputs,
    churn: ChurnConfig,
    cutoff: date,
    context: list[str],
    label_days: int | None = None,
) -> DataFrame:
    """Features (and the label when ``label_days`` is given) of the customers active at ``cutoff``.

    The BG/NBD features look ``churn.label_days`` ahead (the window the label covers)."""
    population = active_customers(inputs.orders, cutoff, churn.activity_days)
    feats = point_in_time_features(
        population, inputs.orders, inputs.events, inputs.customers, cutoff, churn.windows, churn.channels
    ).join(btyd_features(inputs.orders, cutoff, churn.label_days), "user_key", "left")
    for spec, column in CONTEXT_COLUMNS:
        if column in context:
            source = inputs.profiles if spec is GOLD_PROFILES else inputs.segments
            values = source.where(F.col("as_of") == F.lit(cutoff)).select(
                "user_key", F.col(column).cast("string").alias(column)
            )
            feats = feats.join(values, "user_key", "left").fillna({column: "unknown"})
    if label_days is not None:
        feats = feats.join(churn_labels(inputs.orders, population, cutoff, label_days), "user_key")
    return feats
