"""Every configuration file is validated before Spark starts (shoplake.registry.validate_all)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from common.config import load_config
from common.errors import ConfigError
from shoplake.registry import JOBS, ON_DEMAND, validate_all
from tests.conftest import PROJECT_ROOT

CONF = PROJECT_ROOT / "conf"
ENV_FILES = {"base.yaml", "local.yaml", "cluster.yaml"}  # read by load_config itself


@pytest.fixture()
def conf_copy(tmp_path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    return conf


def test_shipped_configuration_is_valid():
    for env in ("local", "cluster"):
        validate_all(load_config(env))


def test_every_loader_named_by_a_job_exists():
    import importlib

    for spec in (*JOBS.values(), *ON_DEMAND.values()):
        for loader in spec.config_files:
            module, _, function = loader.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), loader


@pytest.mark.parametrize(
    "name", sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml") if p.name not in ENV_FILES)
)
def test_an_unknown_key_in_any_file_names_the_file_and_key(conf_copy, name):
    path = conf_copy / name
    path.write_text(path.read_text(encoding="utf-8") + "\nzz_typo: 1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        validate_all(load_config("local", conf_dir=conf_copy))
    message = str(info.value)
    assert str(path) in message and "zz_typo: unknown key" in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(ENV_FILES))
def test_an_unknown_key_in_an_env_file_names_the_key(conf_copy, name):
    (conf_copy / name).write_text((conf_copy / name).read_text(encoding="utf-8") + "\nzz_typo: 1\n")
    env = "local" if name == "base.yaml" else name.removesuffix(".yaml")
    with pytest.raises(ConfigError, match=rf"{re.escape(name)}.*zz_typo: unknown key"):
        load_config(env, conf_dir=conf_copy)


def test_a_misspelt_campaign_criterion_names_the_file_and_key(conf_copy):
    path = conf_copy / "campaigns.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("clv_top_share:", "clv_top_shar:", 1))
    with pytest.raises(ConfigError, match=r"campaigns\.yaml\): campaigns\.0\.select\.clv_top_shar: unknown key$"):
        validate_all(load_config("local", conf_dir=conf_copy))


def test_identity_rules_are_checked_with_the_config():
    with pytest.raises(ConfigError, match=r"clean\.identity\.splink\.blocking\.0\.0: .*'nam'"):
        load_config("local", ["clean.identity.splink.blocking=[[nam]]"])


def test_a_configured_source_must_exist():
    with pytest.raises(ConfigError, match=r"landing\.sources: file .*nosuch\.yaml not found \(known: cdnow,"):
        validate_all(load_config("local", ["landing.sources=[shop, nosuch]"]))


def test_a_missing_campaign_file_names_the_key(tmp_path):
    cfg = load_config("local", [f"campaign.definitions={tmp_path / 'gone.yaml'}"])
    with pytest.raises(ConfigError, match=r"^campaign\.definitions: file .*gone\.yaml not found$"):
        validate_all(cfg)


def test_the_stream_section_names_its_bad_keys():
    with pytest.raises(ConfigError, match=r"stream\.max_files_per_trigge: unknown key"):
        load_config("local", ["stream.max_files_per_trigge=5"])
    with pytest.raises(ConfigError, match=r"stream\.max_files_per_trigger: .*greater than 0"):
        load_config("local", ["stream.max_files_per_trigger=0"])
    with pytest.raises(ConfigError, match=r"^stream\.feed: source shop has no feed 'event' \(its feeds: customers,"):
        validate_all(load_config("local", ["stream.feed=event"]))
    with pytest.raises(ConfigError, match=r"^stream\.source: no source mapping .*nosuch\.yaml \(known: cdnow,"):
        validate_all(load_config("local", ["stream.source=nosuch"]))


def test_a_stream_feed_with_distinct_on_is_refused_before_spark():
    # online_retail writes one order per invoice with distinct_on (a window over a file).
    with pytest.raises(ConfigError, match=r"^stream\.feed: .*distinct_on"):
        validate_all(load_config("local", ["stream.source=online_retail", "stream.feed=invoice_lines"]))
