"""YAML-driven tags (``conf/tags.yaml``): loading, checking against the profile schema, applying."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import field_validator
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import ShopLakeConfig, StrictModel, load_yaml
from common.errors import ConfigError
from common.tables import (
    GOLD_PROFILES,
)


class TagFile(StrictModel):
    """``conf/tags.yaml``: ``tags: {name: Spark SQL condition over gold.profiles}``."""

    tags: dict[str, str]

    @field_validator("tags", mode="before")
    @classmethod
    def _names_and_conditions(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("expected a mapping 'tags: {name: condition, ...}'")
        for name, condition in value.items():
            if not isinstance(name, str) or not name.strip() or not isinstance(condition, str) or not condition.strip():
                raise ValueError(f"tag {name!r}: expected a non-empty name and a SQL condition string")
        return value


def load_tag_rules(cfg: ShopLakeConfig) -> dict[str, str]:
    """``{tag: condition}`` from ``profile.tags_file`` (relative to the conf folder).

    Raises:
        ConfigError: naming the file and the key (conditions are compiled by
            :func:`validate_tag_rules`, which needs Spark).
    """
    path = Path(cfg.profile.tags_file)
    if not path.is_absolute():
        path = Path(cfg.conf_dir) / path
    return dict(load_yaml(path, TagFile, what="tag rules", key="profile.tags_file").tags)


def validate_tag_rules(spark: SparkSession, rules: dict[str, str], source: str = "tags") -> None:
    """Compile every condition against the gold.profiles schema (no data read).

    Raises:
        ConfigError: naming the tag whose condition does not parse, names an unknown
            column or is not boolean.
    """
    empty = spark.createDataFrame([], GOLD_PROFILES.schema)
    for name, condition in rules.items():
        try:
            dtype = empty.select(F.expr(condition).alias("_t")).schema["_t"].dataType
        except Exception as exc:  # parse and analysis errors of every Spark flavour
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{source}: tag {name!r}: invalid condition {condition!r}: {first}") from None
        if not isinstance(dtype, T.BooleanType):
            raise ConfigError(
                f"{source}: tag {name!r}: condition {condition!r} is {dtype.simpleString()}, expected a boolean"
            )


def with_tags(rules: dict[str, str]):
    """``tags``: the names of the rules whose condition is true (null counts as false), in
    the rules' order."""

    def transform(df: DataFrame) -> DataFrame:
        if not rules:
            return df.withColumn("tags", F.array().cast("array<string>"))
        flags = [F.when(F.coalesce(F.expr(cond), F.lit(False)), F.lit(name)) for name, cond in rules.items()]
        return df.withColumn("tags", F.filter(F.array(*flags), lambda x: x.isNotNull()))

    return transform
