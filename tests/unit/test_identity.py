"""Identity resolution: registrations sharing a normalised key are one person;
the optional fuzzy-name rule merges near matches only within birth date and city."""

from __future__ import annotations

from datetime import date

from common.config import load_config
from jobs.clean import connected_components, identity_keys, prepare_customers

SCHEMA = (
    "source_system string, customer_id string, name string, phone string, email string, id_number string, "
    "gender string, birth_date date, city string, province string"
)


def components(spark, rows, *overrides):
    cfg = load_config("local", list(overrides))
    df = prepare_customers(spark.createDataFrame(rows, SCHEMA), cfg)
    labels = connected_components(df.select("record_id"), identity_keys(df, cfg)).collect()
    groups: dict[str, set[str]] = {}
    for row in labels:
        groups.setdefault(row.component, set()).add(row.record_id.split(":")[1])
    return sorted(sorted(g) for g in groups.values())


ROWS = [
    # Same phone in two formats, e-mail case differs for a third registration: one person.
    ("shop", "A1", "王伟", "13800138000", "wei@qq.com", None, "M", date(1990, 1, 2), "杭州", "浙江"),
    ("shop", "A2", "王 伟", "+86 138-0013-8000", None, None, "M", date(1990, 1, 2), "杭州", "浙江"),
    ("shop", "A3", "王伟", "13911112222", " WEI@QQ.COM ", None, "M", date(1990, 1, 2), "杭州", "浙江"),
    # Chain: B1-B2 share an e-mail, B2-B3 a phone.
    ("shop", "B1", "李娜", "13700000001", "na@163.com", None, "F", date(1985, 5, 5), "成都", "四川"),
    ("shop", "B2", "李娜", "13700000002", "na@163.com", None, "F", date(1985, 5, 5), "成都", "四川"),
    ("shop", "B3", "李娜", "13700000002", "other@163.com", None, "F", date(1985, 5, 5), "成都", "四川"),
    # A typo in the name, nothing else shared: same person only under the fuzzy rule.
    ("shop", "C1", "张晓明", "13600000001", "c1@qq.com", None, "M", date(1970, 3, 3), "上海", "上海"),
    ("shop", "C2", "张小明", "13600000002", "c2@qq.com", None, "M", date(1970, 3, 3), "上海", "上海"),
    # Same name, same birthday, different city: never merged.
    ("shop", "D1", "张晓明", "13500000001", "d1@qq.com", None, "M", date(1970, 3, 3), "北京", "北京"),
]


def test_exact_keys_merge_formats_and_chains(spark):
    assert components(spark, ROWS) == [["A1", "A2", "A3"], ["B1", "B2", "B3"], ["C1"], ["C2"], ["D1"]]


def test_fuzzy_name_rule_merges_typos_within_birth_date_and_city(spark):
    got = components(spark, ROWS, "clean.identity.fuzzy_name_distance=1")
    assert got == [["A1", "A2", "A3"], ["B1", "B2", "B3"], ["C1", "C2"], ["D1"]]


def test_match_rule_is_configurable(spark):
    got = components(spark, ROWS, "clean.identity.match_on=[email]")
    assert ["A1", "A3"] in got and ["A2"] in got  # the phone no longer links A2
