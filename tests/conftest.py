"""Shared fixtures: one local Spark session for the whole run, temporary lakes,
and the real public datasets in ../shared/data (tests needing them skip when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from common.config import ShopLakeConfig, load_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SHOPLAKE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))

# Small and quiet: tests move tiny data, so few shuffle partitions and no UI.
TEST_SPARK_CONF = [
    "spark.conf.spark.sql.shuffle.partitions=2",
    "spark.conf.spark.default.parallelism=2",
    "spark.conf.spark.ui.enabled=false",
    "spark.conf.spark.driver.memory=2g",
    "spark.conf.spark.sql.adaptive.enabled=false",
]


def make_config(tmp_path: Path, *overrides: str, env: str = "local") -> ShopLakeConfig:
    """A local config whose lake and landing folders live under ``tmp_path``."""
    return load_config(
        env,
        overrides=[
            *TEST_SPARK_CONF,
            f"lake.root={tmp_path / 'lake'}",
            f"landing.root={tmp_path / 'landing'}",
            f"generate.out={tmp_path / 'landing'}",
            *overrides,
        ],
    )


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from common.spark import build_spark

    cfg = make_config(tmp_path_factory.mktemp("spark"))
    session = build_spark(cfg)
    yield session
    session.stop()


@pytest.fixture()
def cfg(tmp_path) -> ShopLakeConfig:
    return make_config(tmp_path)


@pytest.fixture()
def store(spark, cfg):
    from common.delta import open_store

    return open_store(spark, cfg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not found at {SHARED_DATA} (set SHOPLAKE_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture()
def secret_env(monkeypatch):
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", "test-secret-not-for-production")
    return "SHOPLAKE_PSEUDONYM_SECRET"
