"""Config loading: merge order, typed values, and errors that name the key."""

from __future__ import annotations

import pytest

from common.config import load_config, parse_override
from common.errors import ConfigError, MissingSecretError


def test_env_overrides_base_and_set_overrides_env():
    cfg = load_config("local", ["spark.conf.spark.sql.shuffle.partitions=3", "generate.users=50"])
    assert cfg.spark.master == "local[2]"  # from local.yaml
    assert cfg.spark.conf["spark.sql.session.timeZone"] == "UTC"  # from base.yaml
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "3"  # --set wins
    assert cfg.generate.users == 50 and isinstance(cfg.generate.users, int)


def test_cluster_env_leaves_master_to_the_launcher():
    cfg = load_config("cluster")
    assert cfg.spark.master is None and cfg.lake.backend == "delta-spark"


@pytest.mark.parametrize(
    "override,key",
    [
        ("lake.rooot=/x", "lake.rooot"),
        ("generate.users=many", "generate.users"),
        ("lake.backend=hdfs", "lake.backend"),
        ("nosuch=1", "nosuch"),
    ],
)
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("local", [override])


def test_unknown_env_lists_known_ones():
    with pytest.raises(ConfigError, match="known: cluster, local"):
        load_config("staging")


def test_broken_yaml_names_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("lake: [unclosed\n")
    (tmp_path / "local.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="base.yaml"):
        load_config("local", conf_dir=tmp_path)


def test_override_parsing_keeps_dotted_spark_keys():
    assert parse_override("spark.conf.spark.sql.x=4") == {"spark": {"conf": {"spark.sql.x": 4}}}
    assert parse_override("landing.sources=[a, b]") == {"landing": {"sources": ["a", "b"]}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_override("novalue")


def test_relative_paths_resolve_against_the_project_root():
    cfg = load_config("local")
    assert cfg.lake_root.endswith("/lake") and cfg.lake_root.startswith("/")
    assert load_config("local", ["lake.root=s3a://b/lake"]).lake_root == "s3a://b/lake"


def test_missing_secret_names_the_variable(monkeypatch):
    monkeypatch.delenv("SHOPLAKE_PSEUDONYM_SECRET", raising=False)
    with pytest.raises(MissingSecretError, match="SHOPLAKE_PSEUDONYM_SECRET"):
        load_config("local").pseudonym_secret()
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", "s3cret")
    assert load_config("local").pseudonym_secret() == b"s3cret"
