"""Config sections of clean: identity resolution (rules and Splink comparisons) and cleaning."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field

from common.config.core import StrictModel

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
