"""Source mappings: the shipped presets validate, and mistakes name the file and key."""

from __future__ import annotations

import shutil

import pytest
import yaml

from common.config import PROJECT_ROOT, load_config
from common.errors import ConfigError
from common.sources import load_source


@pytest.mark.parametrize("name", ["shop", "online_retail", "cdnow", "groceries"])
def test_shipped_mappings_validate(name):
    mapping = load_source(name, load_config("local"))
    assert mapping.name == name and mapping.feeds


@pytest.fixture()
def conf_copy(tmp_path):
    shutil.copytree(PROJECT_ROOT / "conf", tmp_path / "conf")
    return tmp_path / "conf"


def write_mapping(conf_dir, mutate) -> None:
    data = yaml.safe_load((conf_dir / "sources" / "cdnow.yaml").read_text())
    mutate(data)
    (conf_dir / "sources" / "mine.yaml").write_text(yaml.safe_dump(data, allow_unicode=True))


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d["feeds"][0].update(patern="*.txt"), r"feeds\.0\.patern: unknown key"),
        (lambda d: d["feeds"][0]["outputs"][0].update(table="bronze.nope"), "unknown bronze table 'bronze.nope'"),
        (lambda d: d["feeds"][0]["outputs"][0]["columns"].update(colour="'red'"), r"no column\(s\) \['colour'\]"),
        (lambda d: d["feeds"][0]["outputs"][0].update(where="cds > 0"), "primary table and must keep every record"),
        (lambda d: d["feeds"][0].update(encoding="klingon"), "unknown encoding 'klingon'"),
        (lambda d: d["feeds"][0]["fields"].update(_line="string"), "may not start with '_'"),
    ],
)
def test_mistakes_name_the_file_and_key(conf_copy, mutate, message):
    write_mapping(conf_copy, mutate)
    with pytest.raises(ConfigError, match=message) as info:
        load_source("mine", load_config("local", conf_dir=conf_copy))
    assert "mine.yaml" in str(info.value)


def test_unknown_mapping_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: cdnow, groceries, online_retail, shop"):
        load_source("nosuch", load_config("local"))
