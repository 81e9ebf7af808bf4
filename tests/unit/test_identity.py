"""Identity resolution: registrations sharing a normalised key are one person;
the optional fuzzy-name rule merges near matches only within birth date and city."""

from __future__ import annotations

from datetime import date

import pytest
from pyspark.sql.types import DateType, StructField, StructType

from common.config import IdentityComparisons, load_config
from common.identity import comparisons
from jobs.clean.identity import connected_components, identity_keys, prepare_customers

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


# ---------------------------------------------------------------------------- splink method (issue #20)
def test_pairwise_and_bcubed_scores_on_a_hand_worked_example():
    from common.identity import bcubed_scores, pairwise_scores

    truth = {"a": "1", "b": "1", "c": "1", "d": "2"}
    predicted = {"a": "x", "b": "x", "c": "y", "d": "y"}
    # True pairs ab ac bc; predicted ab cd: one shared.
    assert pairwise_scores(truth, predicted) == {"precision": 0.5, "recall": 1 / 3, "f1": 0.4}
    b3 = bcubed_scores(truth, predicted)
    # Precision per record: a 1, b 1, c 1/2, d 1/2; recall: a 2/3, b 2/3, c 1/3, d 1.
    assert b3["precision"] == 0.75 and abs(b3["recall"] - 2.6666666 / 4) < 1e-6
    assert pairwise_scores(truth, truth)["f1"] == 1.0 and bcubed_scores(truth, truth)["f1"] == 1.0


def test_identity_frame_normalises_what_splink_compares(spark):
    from common.identity import identity_frame

    rows = [
        (
            "shop",
            "E1",
            " Robert  Allen ",
            "+86 138-0013-8000",
            "Rob.A@QQ.com ",
            None,
            None,
            date(1971, 5, 24),
            "杭州",
            None,
        ),
        ("shop", "E2", "王伟", None, "not-an-address", "11010519491231002X", None, None, None, None),
    ]
    cfg = load_config("local", [])
    got = {
        r.unique_id: r.asDict()
        for r in identity_frame(prepare_customers(spark.createDataFrame(rows, SCHEMA), cfg)).collect()
    }
    assert got["shop:E1"] == {
        "unique_id": "shop:E1", "name": "robertallen", "name_first": "robert", "name_last": "allen",
        "birth_date": date(1971, 5, 24), "city": "杭州", "email": "rob.a@qq.com", "email_user": "rob.a",
        "phone": "+8613800138000", "phone_tail": "00138000", "id_number": None,
    }  # fmt: skip
    # One token: no last name. An invalid e-mail is still evidence; a valid ID is kept.
    assert got["shop:E2"]["name_first"] == "王伟" and got["shop:E2"]["name_last"] is None
    assert got["shop:E2"]["email"] == "not-an-address" and got["shop:E2"]["id_number"] == "11010519491231002X"


def test_splink_jar_is_appended_to_configured_jars():
    from common.identity import splink_jar
    from common.spark import splink_session_conf

    jar = splink_jar()
    assert jar and jar.endswith("scala-udf-similarity-0.2.1_spark4.x.jar")
    assert splink_session_conf("/a.jar,/b.jar") == {"spark.jars": f"/a.jar,/b.jar,{jar}"}
    assert splink_session_conf("") == {"spark.jars": jar}
    assert splink_session_conf(f"/a.jar,{jar}") == {}


def test_default_as_of_for_a_customers_only_export(spark):
    """No orders or events: the last registration, else the ingest day; never 1970."""
    from datetime import datetime

    from jobs.clean.silver import default_as_of

    empty_events = spark.createDataFrame([], "event_time timestamp, _ingested_at timestamp")
    empty_orders = spark.createDataFrame([], "order_time timestamp, _ingested_at timestamp")
    schema = "registered_at timestamp, updated_at timestamp, _ingested_at timestamp"
    ingested = datetime(2026, 12, 5, 10)
    registered = spark.createDataFrame(
        [(datetime(2024, 3, 1), None, ingested), (datetime(2024, 6, 30, 23), None, ingested)], schema
    )
    undated = spark.createDataFrame([(None, None, ingested)], schema)
    assert default_as_of(empty_events, empty_orders, registered) == date(2024, 6, 30)
    assert default_as_of(empty_events, empty_orders, undated) == date(2026, 12, 5)
    orders = spark.createDataFrame([(datetime(2024, 7, 2), ingested)], "order_time timestamp, _ingested_at timestamp")
    assert default_as_of(empty_events, orders, registered) == date(2024, 7, 2)  # activity wins


def test_user_key_is_the_earliest_registration_and_survives_new_ones(spark):
    """Stable keys: a later registration that joins a person does not change their key."""
    from datetime import datetime

    from jobs.clean.identity import resolve_people

    schema = SCHEMA + ", registered_at timestamp"
    cfg = load_config("local", [])
    first = [
        ("shop", "Z9", "赵敏", "13300000001", None, None, "F", None, "杭州", "浙江", datetime(2024, 1, 5)),
        ("shop", "Z2", "赵敏", "13300000001", "zm@qq.com", None, "F", None, "杭州", "浙江", datetime(2024, 3, 1)),
    ]
    later = [("shop", "Z1", "赵敏", None, "zm@qq.com", None, "F", None, "杭州", "浙江", datetime(2024, 6, 1))]

    def keys(rows):
        people, facts = resolve_people(prepare_customers(spark.createDataFrame(rows, schema), cfg), cfg, b"k")
        assert facts == {"method": "exact"}
        return {r.customer_id: r.user_key for r in people.collect()}

    before, after = keys(first), keys(first + later)
    assert len(set(after.values())) == 1  # Z1 joins through the e-mail
    assert after["Z1"] == after["Z2"] == after["Z9"] == before["Z9"]


# ---------------------------------------------------------------------------- Splink levels (issue #20)
IDENTIFIERS = {
    "name",
    "name_first",
    "name_last",
    "birth_date",
    "city",
    "email",
    "email_user",
    "phone",
    "phone_tail",
    "id_number",
}


def _levels(spec: IdentityComparisons, name: str) -> list:
    chosen = [c.get_comparison("spark") for c in comparisons(spec, IDENTIFIERS)]
    return next(c for c in chosen if c.output_column_name == name).comparison_levels


def test_one_edit_name_level_follows_the_closest_jaro_winkler_band():
    labels = [level.label_for_charts for level in _levels(IdentityComparisons(), "name")]
    assert labels[3:6] == [
        "Jaro-Winkler distance of name >= 0.92",
        "Damerau-Levenshtein distance of name <= 1",
        "Jaro-Winkler distance of name >= 0.88",
    ]
    off = IdentityComparisons.model_validate({"name": {"one_edit": False}, "birth_date": {"day_month_swapped": False}})
    assert not any("Damerau" in level.label_for_charts for level in _levels(off, "name"))
    assert not any("swapped" in level.label_for_charts for level in _levels(off, "birth_date"))


@pytest.mark.parametrize(
    ("left", "right", "swapped"),
    [
        (date(1990, 3, 5), date(1990, 5, 3), True),
        (date(1990, 12, 1), date(1990, 1, 12), True),
        (date(1990, 3, 5), date(1991, 5, 3), False),  # another year
        (date(1990, 3, 5), date(1990, 3, 6), False),
        (date(1990, 3, 25), date(1990, 3, 25), False),  # no month 25: only the exact level matches it
    ],
)
def test_day_and_month_swapped_level_matches_only_swaps(spark, left, right, swapped):
    level = next(lv for lv in _levels(IdentityComparisons(), "birth_date") if lv.label_for_charts.startswith("Day"))
    schema = StructType([StructField("birth_date_l", DateType()), StructField("birth_date_r", DateType())])
    frame = spark.createDataFrame([(left, right)], schema)
    assert frame.selectExpr(f"({level.sql_condition}) AS hit").first().hit is swapped


# ---------------------------------------------------------------------------- components
def _components_by_search(edges: list[tuple[str, str]], records: list[str]) -> dict[str, str]:
    """The reference: breadth-first search over record-key adjacency, label = smallest id."""
    by_key: dict[str, set[str]] = {}
    for record, key in edges:
        by_key.setdefault(key, set()).add(record)
    keys_of: dict[str, set[str]] = {}
    for record, key in edges:
        keys_of.setdefault(record, set()).add(key)
    label: dict[str, str] = {}
    for start in records:
        if start in label:
            continue
        seen, frontier = {start}, [start]
        while frontier:
            nxt = []
            for record in frontier:
                for key in keys_of.get(record, ()):
                    for other in by_key[key] - seen:
                        seen.add(other)
                        nxt.append(other)
            frontier = nxt
        for record in seen:
            label[record] = min(seen)
    return label


@pytest.mark.parametrize("seed", [1, 2])
def test_components_on_the_driver_and_in_spark_agree_with_a_graph_search(spark, seed):
    """Random registrations sharing a few of many keys (chains, stars, repeated rows, a
    key on one record only): the driver's union-find and Spark's label propagation give
    the labels of a breadth-first search."""
    import random

    rng = random.Random(seed)
    records = [f"shop:{i:03d}" for i in range(120)]
    edges = [(rng.choice(records), f"k{rng.randrange(150)}") for _ in range(140)]
    edges += edges[:5]  # the same (record, key) twice
    expected = _components_by_search(edges, records)
    assert len(set(expected.values())) < 110  # some records are linked, or the test proves little
    ids = spark.createDataFrame([(r,) for r in records], "record_id string")
    keys = spark.createDataFrame(edges, "record_id string, key string")
    for limit in (200_000, 0):  # 0: every link is over the driver's limit, so Spark's path runs
        got = {r.record_id: r.component for r in connected_components(ids, keys, driver_max_rows=limit).collect()}
        assert got == expected, limit
