"""Profile feature families on tiny hand-made frames with exact expected values.

As-of day throughout: 2024-03-10 (a Sunday). 23:59:59 that day is in, 00:00 the
next day is out.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

import pytest

from common.config import LifecycleConfig, RfmRule, load_config
from common.errors import ConfigError
from common.tables import GOLD_PROFILES, SILVER_EVENTS, SILVER_ORDER_LINES, SILVER_ORDERS, SILVER_PRODUCTS
from jobs.profiles import features as P
from jobs.profiles import tags as PT

AS_OF = date(2024, 3, 10)
D = Decimal


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def orders_frame(spark, rows):
    """rows: (order_id, user_key, order_time, status, total, updated_at, coupon, payment, channel)."""
    full = [
        ("shop", oid, user, ts(t), status, pay, ch, coupon, None, total, "CNY", ts(upd or t), [])
        for oid, user, t, status, total, upd, coupon, pay, ch in rows
    ]
    return spark.createDataFrame(full, SILVER_ORDERS.schema)


def lines_frame(spark, rows):
    """rows: (order_id, line_no, item_id, quantity, line_amount)."""
    full = [("shop", oid, no, item, qty, None, amount, []) for oid, no, item, qty, amount in rows]
    return spark.createDataFrame(full, SILVER_ORDER_LINES.schema)


def events_frame(spark, rows):
    """rows: (event_id, user_key, session_id, event_type, event_time, item_id, channel)."""
    full = [
        ("shop", eid, user, sess, etype, ts(t), ts(t).date(), item, None, ch, None, None, None, [])
        for eid, user, sess, etype, t, item, ch in rows
    ]
    return spark.createDataFrame(full, SILVER_EVENTS.schema)


ORDERS = [
    # a: three kept purchases, the last at 23:59:59 on the as-of day; one the next midnight (out)
    ("o1", "a", "2024-03-01 10:00:00", "paid", D("100.00"), None, "C10", "alipay", "app"),
    ("o2", "a", "2024-03-05 09:00:00", "paid", D("50.00"), None, None, "alipay", "web"),
    ("o3", "a", "2024-03-10 23:59:59", "paid", D("30.00"), None, None, "wechat_pay", "app"),
    ("o4", "a", "2024-03-11 00:00:00", "paid", D("999.00"), None, "C10", "alipay", "app"),
    # b: only refunds: a credit note (negative amount) and an order refunded before the as-of day
    ("c5", "b", "2024-03-02 12:00:00", "refunded", D("-20.00"), None, None, None, "web"),
    ("o6", "b", "2024-03-03 12:00:00", "refunded", D("40.00"), "2024-03-04 08:00:00", None, "alipay", "web"),
    # c: a single order, refunded only after the as-of day (still a purchase then), and a cancelled one
    ("o7", "c", "2024-02-09 08:00:00", "refunded", D("25.50"), "2024-03-15 08:00:00", None, "unionpay", "app"),
    ("o8", "c", "2024-03-08 08:00:00", "cancelled", D("80.00"), "2024-03-08 08:05:00", None, "alipay", "app"),
    # e: amount from the lines when the header has none
    ("o9", "e", "2024-01-10 08:00:00", "paid", None, None, None, "cod", "web"),
]
LINES = [("o9", 1, "p1", 2, D("10.00")), ("o9", 2, "p2", 1, D("5.00")), ("o1", 1, "p1", 3, D("60.00"))]


@pytest.fixture()
def orders(spark):
    return P.orders_as_of(AS_OF)(orders_frame(spark, ORDERS), lines_frame(spark, LINES))


def test_orders_as_of_applies_the_boundary_and_the_status_on_that_day(orders):
    got = {r.order_id: (r.kind, r.amount, r.discounted) for r in orders.collect()}
    assert got == {
        "o1": ("purchase", D("100.00"), True),
        "o2": ("purchase", D("50.00"), False),
        "o3": ("purchase", D("30.00"), False),
        "c5": ("refund", D("-20.00"), False),
        "o6": ("refunded_purchase", D("40.00"), False),
        "o7": ("purchase", D("25.50"), False),
        "o8": ("cancelled", D("80.00"), False),
        "o9": ("purchase", D("15.00"), False),
    }


def test_rfm_facts_exact(orders):
    got = {r.user_key: r.asDict() for r in P.rfm_facts(AS_OF)(orders).collect()}
    assert got["a"] == {
        "user_key": "a",
        "frequency": 3,
        "monetary": D("180.00"),
        "refund_amount": D("0.00"),
        "refunded_orders": 0,
        "recency_days": 0,
        "first_purchase_days": 9,
        "avg_order_value": D("60.00"),
        "mean_interpurchase_days": 4.5,
        "gap_before_last_days": 5,
        "discount_order_share": 0.333333,
    }
    # Only refunds: no purchase, money out.
    assert got["b"] == {
        "user_key": "b",
        "frequency": 0,
        "monetary": D("-20.00"),
        "refund_amount": D("60.00"),
        "refunded_orders": 2,
        "recency_days": None,
        "first_purchase_days": None,
        "avg_order_value": None,
        "mean_interpurchase_days": None,
        "gap_before_last_days": None,
        "discount_order_share": None,
    }
    # A single order: no interval; the cancelled order counts nowhere.
    assert (got["c"]["frequency"], got["c"]["monetary"], got["c"]["recency_days"]) == (1, D("25.50"), 30)
    assert got["c"]["mean_interpurchase_days"] is None and got["c"]["gap_before_last_days"] is None
    assert (got["e"]["monetary"], got["e"]["recency_days"]) == (D("15.00"), 60)
    assert "d" not in got


def test_quintile_cuts_and_scores_exact(spark):
    rows = [(f"u{i}", r, f, D(m)) for i, (r, f, m) in enumerate([(0, 5, "500"), (10, 4, "400"), (20, 3, "300"),
                                                                  (30, 2, "200"), (40, 1, "100")])]  # fmt: skip
    rows.append(("none", None, 0, D("0")))
    df = spark.createDataFrame(rows, "user_key string, recency_days int, frequency long, monetary decimal(18,2)")
    cuts = P.quintile_cuts(df.where("frequency > 0"), ["recency_days", "frequency", "monetary"])
    assert cuts == {
        "recency_days": [0.0, 10.0, 20.0, 30.0],
        "frequency": [1.0, 2.0, 3.0, 4.0],
        "monetary": [100.0, 200.0, 300.0, 400.0],
    }
    got = {r.user_key: (r.r_score, r.f_score, r.m_score) for r in df.transform(P.with_rfm_scores(cuts)).collect()}
    assert got == {
        "u0": (5, 5, 5),
        "u1": (4, 4, 4),
        "u2": (3, 3, 3),
        "u3": (2, 2, 2),
        "u4": (1, 1, 1),
        "none": (None, None, None),
    }


def test_rfm_segment_rule_table_first_match_wins(spark):
    rules = [
        RfmRule(name="Champions", r=(4, 5), f=(4, 5), m=(4, 5)),
        RfmRule(name="New", r=(5, 5), f=(1, 1)),
        RfmRule(name="Lost", r=(1, 1)),
    ]
    df = spark.createDataFrame(
        [("a", 5, 5, 5), ("b", 5, 1, 3), ("c", 1, 4, 4), ("d", 3, 3, 3), ("e", None, None, None)],
        "user_key string, r_score int, f_score int, m_score int",
    )
    got = {r.user_key: r.rfm_segment for r in df.transform(P.with_rfm_segment(rules)).collect()}
    assert got == {"a": "Champions", "b": "New", "c": "Lost", "d": "Others", "e": None}


def test_behaviour_exact(spark, orders):
    events = events_frame(
        spark,
        [
            # s1: Sunday 23:00 in Shanghai (15:00 UTC), views, a cart and a purchase
            ("e1", "a", "s1", "view", "2024-03-10 15:00:00", "p1", "app"),
            ("e2", "a", "s1", "view", "2024-03-10 15:01:00", "p1", "app"),
            ("e3", "a", "s1", "add_to_cart", "2024-03-10 15:02:00", "p1", "app"),
            ("e4", "a", "s1", "purchase", "2024-03-10 15:03:00", None, "app"),
            # s2: Saturday 10:00 in Shanghai, a view and an abandoned cart
            ("e5", "a", "s2", "view", "2024-03-09 02:00:00", "p2", "web"),
            ("e6", "a", "s2", "add_to_cart", "2024-03-09 02:01:00", "p2", "web"),
            # the next day: out
            ("e7", "a", "s3", "search", "2024-03-11 00:00:00", None, "web"),
            ("e8", None, "s9", "view", "2024-03-09 02:00:00", "p2", "web"),
        ],
    )
    a_orders = orders.where("user_key = 'a'")
    got = {
        r.user_key: r.asDict()
        for r in P.behaviour(AS_OF, "Asia/Shanghai", [22, 23, 0, 1, 2, 3])(events, a_orders).collect()
    }
    # Activity: 6 events + 3 orders (o1 18:00 Fri, o2 17:00 Tue, o3 07:59:59 Mon local).
    assert got == {
        "a": {
            "user_key": "a",
            "last_active_days": 0,
            "night_share": round(4 / 9, 6),
            "sessions": 2,
            "views": 3,
            "searches": 0,
            "add_to_carts": 2,
            "cart_abandonment_rate": 0.5,
            "view_to_purchase_rate": 0.5,
            "preferred_hour": 23,
            "preferred_weekday": 7,
            "preferred_channel": "app",
            "preferred_payment_method": "alipay",
        }
    }


def test_interests_exact(spark, orders):
    products = spark.createDataFrame(
        [("shop", "p1", "n1", "A", None, None, "X", D("20.00"), None, []),
         ("shop", "p2", "n2", "B", None, None, "Y", D("5.00"), None, [])],
        SILVER_PRODUCTS.schema,
    )  # fmt: skip
    events = events_frame(
        spark,
        [
            ("e1", "a", "s1", "view", "2024-03-10 15:00:00", "p1", "app"),
            ("e2", "a", "s1", "view", "2024-03-10 15:01:00", "p1", "app"),
            ("e3", "a", "s1", "add_to_cart", "2024-03-10 15:02:00", "p2", "app"),
            ("e4", "a", "s1", "view", "2024-03-10 15:03:00", "p9", "app"),  # unknown item
            ("e5", "a", "s2", "view", "2024-03-11 00:00:00", "p2", "app"),  # after the as-of day
        ],
    )
    lines = lines_frame(spark, [("o1", 1, "p1", 3, D("60.00")), ("o2", 1, "p2", 1, D("50.00"))])
    weights = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
    got = P.interests(AS_OF, weights, 3)(events, orders, lines, products).collect()
    assert [r.asDict(recursive=True) for r in got] == [
        {
            "user_key": "a",
            # A: 2 views + 1 line = 7; B: 1 cart + 1 line = 8
            "top_categories": [{"name": "B", "weight": 0.5333}, {"name": "A", "weight": 0.4667}],
            "top_brands": [{"name": "Y", "weight": 0.5333}, {"name": "X", "weight": 0.4667}],
            # units bought: X 3, Y 1 -> 0.75^2 + 0.25^2
            "brand_loyalty_index": 0.625,
        }
    ]


def test_lifecycle_stages(spark):
    windows = LifecycleConfig(new_days=30, active_days=30, churned_days=90)
    cols = "user_key string, frequency long, first_purchase_days int, recency_days int, gap_before_last_days int, "
    cols += "registration_days int, _first_seen_days int, last_active_days int"
    df = spark.createDataFrame(
        [
            ("new_buyer", 1, 30, 30, None, 400, 30, 30),
            ("active", 5, 200, 30, 20, 400, 200, 1),
            ("reactivated", 3, 300, 5, 91, 400, 300, 5),
            ("back_after_90", 3, 300, 5, 90, 400, 300, 5),
            ("dormant", 2, 200, 31, 10, 400, 200, 31),
            ("dormant_edge", 2, 200, 90, 10, 400, 200, 90),
            ("churned", 2, 200, 91, 10, 400, 200, 91),
            ("new_prospect", 0, None, None, None, 30, 30, 2),
            ("seen_recently_no_reg", 0, None, None, None, None, 10, 10),
            ("old_browser", 0, None, None, None, 400, 300, 90),
            ("gone", 0, None, None, None, 400, None, None),
        ],
        cols,
    )
    got = {r.user_key: r.lifecycle_stage for r in df.transform(P.with_lifecycle(windows)).collect()}
    assert got == {
        "new_buyer": "new",
        "active": "active",
        "reactivated": "reactivated",
        "back_after_90": "active",
        "dormant": "dormant",
        "dormant_edge": "dormant",
        "churned": "churned",
        "new_prospect": "new",
        "seen_recently_no_reg": "new",
        "old_browser": "dormant",
        "gone": "churned",
    }
    assert set(got.values()) == set(P.LIFECYCLE_STAGES)


def test_city_tier_and_population(spark):
    from common.tables import SILVER_CUSTOMERS

    last_second, next_midnight = ts("2024-03-10 23:59:59"), ts("2024-03-11 00:00:00")
    customers = spark.createDataFrame(
        [
            ("a", 1, "F", 1990, "25-34", "上海市", "上海市", "CN", None, None, last_second, "gold", True, None),
            ("late", 1, "M", 1990, "25-34", "北京市", "北京市", "CN", None, None, next_midnight, None, True, None),
            ("noreg", 1, None, None, None, None, "Köln", "DE", None, None, None, None, False, None),
            ("noreg_later", 1, None, None, None, None, None, "DE", None, None, None, None, False, None),
        ],
        SILVER_CUSTOMERS.schema,
    )  # fmt: skip
    first_seen = spark.createDataFrame(
        [("noreg", ts("2024-03-01 00:00:00")), ("noreg_later", ts("2024-03-11 00:00:00"))],
        "user_key string, _first_seen timestamp",
    )
    people = P.population(AS_OF)(customers, first_seen).transform(P.with_city_tier({1: ["上海市", "北京市"]}))
    got = {r.user_key: (r.registration_days, r._first_seen_days, r.city_tier) for r in people.collect()}
    assert got == {"a": (0, None, 1), "noreg": (None, 9, None)}


# ---------------------------------------------------------------------------- tags
def test_tags_follow_the_rules_in_order(spark):
    rules = {"big": "monetary >= 100", "night_owl": "night_share >= 0.4", "none_here": "views > 1000"}
    df = spark.createDataFrame(
        [("a", D("150.00"), 0.5, 3), ("b", D("10.00"), None, 3), ("c", None, 0.9, 0)],
        "user_key string, monetary decimal(18,2), night_share double, views long",
    )
    got = {r.user_key: r.tags for r in df.transform(PT.with_tags(rules)).collect()}
    assert got == {"a": ["big", "night_owl"], "b": [], "c": ["night_owl"]}


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("no_such_column > 1", "tag 'bad': invalid condition"),
        ("monetary >>= 3", "tag 'bad': invalid condition"),
        ("monetary + 1", "tag 'bad': condition 'monetary + 1' is decimal"),
    ],
)
def test_bad_tag_rules_name_the_tag(spark, condition, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        PT.validate_tag_rules(spark, {"fine": "frequency > 0", "bad": condition})


def test_shipped_tag_rules_compile(spark):
    rules = PT.load_tag_rules(load_config("local"))
    assert {"high_value", "price_sensitive", "night_owl", "cart_abandoner"} <= set(rules)
    PT.validate_tag_rules(spark, rules)


def test_tags_file_problems_are_config_errors(tmp_path):
    (tmp_path / "tags.yaml").write_text("tags: [a, b]\n", encoding="utf-8")
    cfg = load_config("local", overrides=[f"profile.tags_file={tmp_path / 'tags.yaml'}"])
    with pytest.raises(ConfigError, match="expected a mapping"):
        PT.load_tag_rules(cfg)
    cfg = load_config("local", overrides=[f"profile.tags_file={tmp_path / 'missing.yaml'}"])
    with pytest.raises(ConfigError, match="profile.tags_file"):
        PT.load_tag_rules(cfg)


def test_profile_schema_keeps_the_contract_columns():
    contract = ["user_key", "as_of", "marketing_consent", "recency_days", "frequency", "monetary", "r_score",
                "f_score", "m_score", "rfm_segment", "lifecycle_stage", "tags"]  # fmt: skip
    assert list(GOLD_PROFILES.columns[: len(contract)]) == contract
