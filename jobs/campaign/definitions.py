"""Campaign definitions: the models of ``conf/campaigns.yaml`` and the gold tables each criterion needs."""

from __future__ import annotations

from pydantic import Field, field_validator

from common.config import ShopLakeConfig, StrictModel, load_yaml
from common.tables import (
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_SEGMENTS,
    SILVER_EVENTS,
)


# ============================================================================ definitions
class Selection(StrictModel):
    """Selection criteria; all must hold (see conf/campaigns.yaml)."""

    lifecycle_stages: list[str] | None = None
    rfm_segments: list[str] | None = None
    tags_any: list[str] | None = None
    min_recency_days: int | None = None
    max_recency_days: int | None = None
    min_frequency: int | None = None
    max_frequency: int | None = None
    min_monetary: float | None = None
    segments: list[str] | None = None
    risk_tiers: list[str] | None = None
    min_churn_probability: float | None = Field(None, ge=0, le=1)
    min_clv: float | None = None
    clv_top_share: float | None = Field(None, gt=0, le=1)
    cart_abandoners: bool = False


class CampaignDefinition(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    playbook: str
    channel: str
    offer: str | None = None
    control_share: float | None = Field(None, ge=0, lt=1)
    select: Selection = Field(default_factory=Selection)


class CampaignFile(StrictModel):
    campaigns: list[CampaignDefinition]

    @field_validator("campaigns")
    @classmethod
    def _unique_ids(cls, value: list[CampaignDefinition]) -> list[CampaignDefinition]:
        ids = [c.id for c in value]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"campaign ids must be unique; repeated: {dupes}")
        return value


# Which input each criterion needs (gold.profiles is always needed).
CRITERION_TABLE = {
    "segments": GOLD_SEGMENTS.name,
    "risk_tiers": GOLD_CHURN_SCORES.name,
    "min_churn_probability": GOLD_CHURN_SCORES.name,
    "min_clv": GOLD_CLV.name,
    "clv_top_share": GOLD_CLV.name,
    "cart_abandoners": SILVER_EVENTS.name,
}


def load_definitions(cfg: ShopLakeConfig) -> list[CampaignDefinition]:
    """The campaigns of ``campaign.definitions``, validated.

    Raises:
        ConfigError: naming the file and the bad key.
    """
    path = cfg.resolve_path(cfg.campaign.definitions)
    return load_yaml(path, CampaignFile, what="campaign definitions", key="campaign.definitions").campaigns


def required_inputs(defn: CampaignDefinition) -> list[str]:
    """Inputs a campaign needs beyond gold.profiles, in a stable order."""
    chosen = defn.select.model_dump(exclude_defaults=True)
    return sorted({CRITERION_TABLE[k] for k in chosen if k in CRITERION_TABLE})
