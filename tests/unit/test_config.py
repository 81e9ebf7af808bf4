"""Config loading: merge order, typed values, and errors that name the key."""

from __future__ import annotations

import pytest

from common.config import StrictModel, load_config, load_yaml, parse_override, read_yaml
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
        ("recommend.knn.neighbors=50", "recommend.knn.neighbors: unknown key"),
        ("recommend.sar.similarity=cosine", "recommend.sar.similarity"),
        ("recommend.candidates=[als, bpr]", "recommend.candidates.1"),
        ("recommend.content.neighbors=5", "recommend.content.neighbors: unknown key"),
        ("recommend.content.features=[name, colour]", "recommend.content.features.1"),
        ("recommend.content.num_features=0", "recommend.content.num_features"),
        ("recommend.grid.confidence=[raw, bm42]", "recommend.grid.confidence.1"),
        ("recommend.bm25.b=1.5", "recommend.bm25.b"),
    ],
)
def test_bad_overrides_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("local", [override])


def test_unknown_env_lists_known_ones():
    with pytest.raises(ConfigError, match=r"known: cluster, local\)$"):
        load_config("staging")


def test_broken_yaml_names_the_file(tmp_path):
    (tmp_path / "base.yaml").write_text("lake: [unclosed\n")
    (tmp_path / "local.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="base.yaml"):
        load_config("local", conf_dir=tmp_path)


class _Thing(StrictModel):
    name: str
    size: int = 1


@pytest.mark.parametrize(
    "text,message",
    [
        ("name: a\nsise: 2\n", r"invalid thing \(.*thing\.yaml\): sise: unknown key$"),
        ("name: a\nsize: big\n", r"thing\.yaml\): size: .*integer.* \(got 'big'\)$"),
        ("size: 2\n", r"thing\.yaml\): name: Field required$"),
        ("name: [a\n", r"thing\.yaml: not valid YAML: .*line 1, column 7"),
        ("- name: a\n", r"thing\.yaml: expected a mapping at the top level, found list$"),
    ],
)
def test_yaml_loader_names_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "thing.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message) as info:
        load_yaml(path, _Thing, what="thing")
    assert "\n" not in str(info.value)  # one line for the CLI


def test_yaml_loader_names_the_key_of_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"^thing\.file: file .*nope\.yaml not found \(known: a, b\)$"):
        load_yaml(tmp_path / "nope.yaml", _Thing, what="thing", key="thing.file", hint="known: a, b")
    (tmp_path / "empty.yaml").write_text("# nothing yet\n", encoding="utf-8")
    assert read_yaml(tmp_path / "empty.yaml") == {}
    assert load_yaml(tmp_path / "empty.yaml", StrictModel, what="thing") == StrictModel()


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
