"""The whole configuration: one :class:`ShopLakeConfig` of every section."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from common.config.core import (
    GenerateConfig,
    IngestConfig,
    LakeConfig,
    LandingConfig,
    PrivacyConfig,
    SparkConfig,
    StreamConfig,
    StrictModel,
)
from common.config.folders import PACKAGED_CONF_DIRS
from common.config.gold import (
    BasketConfig,
    CampaignConfig,
    ChurnConfig,
    GoldConfig,
    ProfileConfig,
    RecommendConfig,
    SegmentConfig,
)
from common.config.identity import CleanConfig
from common.errors import MissingSecretError
from common.paths import has_scheme


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
        if self.conf_dir in map(str, PACKAGED_CONF_DIRS):
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
