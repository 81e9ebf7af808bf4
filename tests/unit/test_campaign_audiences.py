"""Campaign audiences on tiny hand-made gold and silver tables: selection, consent,
frequency cap, hash hold-out, cart abandoners, skipped campaigns, definition errors."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal

import pytest
from pyspark.sql import functions as F

import jobs.campaign.audiences as audience
import jobs.campaign.definitions as campaign_definitions
import jobs.campaign.results as campaign_results
from common.asof import publish_as_of
from common.errors import ConfigError
from common.tables import (
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    TableSpec,
)
from tests.conftest import make_config, with_missing_columns

AS_OF = date(2024, 3, 10)


def frame(spark, spec: TableSpec, rows: list[dict]):
    """A DataFrame with ``spec``'s schema (as_of dropped) from partial rows; columns no
    row gives are filled by ``with_missing_columns``, other gaps are null."""
    from pyspark.sql import types as T

    fields = [f for f in spec.schema.fields if f.name != "as_of" and (not rows or any(f.name in r for r in rows))]
    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in fields])
    df = spark.createDataFrame([tuple(r.get(f.name) for f in fields) for r in rows], schema)
    return with_missing_columns(df, spec)


def profile(user, consent=True, stage="active", frequency=3, monetary="100.00", tags=()):
    return {
        "user_key": user, "marketing_consent": consent, "recency_days": 5, "frequency": frequency,
        "monetary": Decimal(monetary), "rfm_segment": "x", "lifecycle_stage": stage, "tags": list(tags),
    }  # fmt: skip


@pytest.fixture()
def lake(spark, tmp_path):
    from common.delta import open_store

    definitions = tmp_path / "campaigns.yaml"
    definitions.write_text(
        """
campaigns:
  - {id: vip, name: VIP, playbook: high_value, channel: email, offer: preview, select: {clv_top_share: 0.5}}
  - {id: winback, name: Win back, playbook: win_back, channel: sms, select: {risk_tiers: [high]}}
  - {id: cart, name: Cart, playbook: cart_abandoners, channel: push, select: {cart_abandoners: true}}
  - {id: fresh, name: New, playbook: potential, channel: wechat, select: {lifecycle_stages: [new], max_frequency: 1,
     tags_any: [trial]}}
""",
        encoding="utf-8",
    )
    cfg = make_config(
        tmp_path, f"campaign.definitions={definitions}", f"gold.as_of={AS_OF}", "campaign.control_share=0.0",
        "campaign.frequency_cap.max_touches=2",
    )  # fmt: skip
    store = open_store(spark, cfg)
    users = ["u1", "u2", "u3", "u4", "u5", "u6"]
    profiles = [profile(u) for u in users[:4]]
    profiles += [profile("u5", stage="new", frequency=1, tags=["trial"]), profile("u6", consent=False)]
    publish_as_of(store, GOLD_PROFILES, frame(spark, GOLD_PROFILES, profiles), AS_OF)
    # u4 consents in its (stale) profile but withdrew consent in silver.customers.
    customers = [{"user_key": u, "source_records": 1, "marketing_consent": u not in ("u4", "u6")} for u in users]
    store.overwrite(SILVER_CUSTOMERS, frame(spark, SILVER_CUSTOMERS, customers))
    clv = [{"user_key": u, "clv": v} for u, v in zip(users, [10.0, 20.0, 30.0, 40.0, 1.0, 99.0])]
    publish_as_of(store, GOLD_CLV, frame(spark, GOLD_CLV, clv), AS_OF)
    recs = [{"user_key": "u1", "rank": r, "item_id": f"i{r}", "score": 1.0 / r, "reason": "als"} for r in (3, 1, 2, 4)]
    publish_as_of(store, GOLD_RECOMMENDATIONS, frame(spark, GOLD_RECOMMENDATIONS, recs), AS_OF)
    segs = [{"user_key": u, "segment_id": 1, "segment_name": "s"} for u in users]
    publish_as_of(store, GOLD_SEGMENTS, frame(spark, GOLD_SEGMENTS, segs), AS_OF)

    def ev(n, user, kind, item, ts):
        return {"source_system": "shop", "event_id": f"e{n}", "user_key": user, "event_type": kind,
                "event_time": datetime.fromisoformat(ts), "event_date": datetime.fromisoformat(ts).date(),
                "item_id": item}  # fmt: skip

    events = [
        ev(1, "u2", "add_to_cart", "a", "2024-03-08T10:00:00"),  # abandoned
        ev(2, "u2", "add_to_cart", "b", "2024-03-09T10:00:00"),  # abandoned, more recent
        ev(3, "u2", "add_to_cart", "c", "2024-03-08T11:00:00"),
        ev(4, "u2", "purchase", "c", "2024-03-08T12:00:00"),  # c was bought
        ev(5, "u3", "add_to_cart", "d", "2024-03-10T20:00:00"),  # too recent: not yet abandoned
        ev(6, "u3", "add_to_cart", "e", "2024-02-20T10:00:00"),  # outside the look-back
        ev(7, "u1", "add_to_cart", "f", "2024-03-11T09:00:00"),  # after the as-of day
        ev(8, "u2", "purchase", "a", "2024-03-07T10:00:00"),  # bought before the add: still abandoned
        ev(9, "u6", "add_to_cart", "g", "2024-03-08T10:00:00"),  # abandoned, but no consent
    ]
    store.overwrite(SILVER_EVENTS, frame(spark, SILVER_EVENTS, events))
    return cfg, store


def test_audiences_selection_consent_and_skips(spark, lake):
    cfg, store = lake
    defs = campaign_definitions.load_definitions(cfg)
    audiences, facts = audience.build_audiences(spark, store, cfg, AS_OF, defs)
    got = {(r.campaign_id, r.user_key): r for r in audiences.collect()}
    # vip: top half by CLV among all customers (median of 1, 10, 20, 30, 40, 99 = 25) and consenting:
    # u3 (30); u4 (40) withdrew consent in silver; u6 (99) never consented.
    assert sorted(k for k in got if k[0] == "vip") == [("vip", "u3")]
    assert sorted(k for k in got if k[0] == "cart") == [("cart", "u2")]
    assert got[("cart", "u2")].abandoned_items == ["b", "a"]
    assert sorted(k for k in got if k[0] == "fresh") == [("fresh", "u5")]
    assert facts["campaigns"]["winback"] == {
        "status": "skipped",
        "reason": f"needs gold.churn_scores, which has no rows for {AS_OF}",
    }
    assert facts["excluded_without_consent"] == 2 and facts["consenting"] == 4
    assert {r.assignment for r in got.values()} == {"treatment"}  # control share 0
    assert got[("vip", "u3")].recommended_items == [] and got[("vip", "u3")].offer == "preview"


def test_recommended_items_are_attached_in_rank_order(spark, lake):
    cfg, store = lake
    recs = audience.top_recommendations(store.read(GOLD_RECOMMENDATIONS), 3)
    assert [(r.user_key, r.recommended_items) for r in recs.collect()] == [("u1", ["i1", "i2", "i3"])]


def test_job_runs_and_reports_the_skipped_campaign(spark, lake, secret_env):
    from shoplake.registry import run_job

    cfg, store = lake
    result = run_job(spark, cfg, "campaign")
    assert result.metrics["campaigns"]["winback"]["status"] == "skipped"
    assert result.row_counts["gold.audiences"] == 3 and result.row_counts["gold.audience_export"] == 3
    text = open(result.metrics["report"], encoding="utf-8").read()
    assert "needs gold.churn_scores" in text


def test_frequency_cap_keeps_priority_order(spark):
    members = spark.createDataFrame(
        [("u1", "c1", 1), ("u1", "c2", 2), ("u1", "c3", 3), ("u2", "c2", 2), ("u2", "c3", 3), ("u3", "c3", 3)],
        "user_key string, campaign_id string, priority int",
    )
    recent = spark.createDataFrame([("u2", 1), ("u3", 2)], "user_key string, touches long")
    kept = members.transform(audience.with_frequency_cap(recent, max_touches=2))
    assert sorted((r.user_key, r.campaign_id) for r in kept.collect()) == [("u1", "c1"), ("u1", "c2"), ("u2", "c2")]


def test_cart_abandoners_exact(spark, lake):
    _, store = lake
    got = audience.cart_abandoners(store.read(SILVER_EVENTS), AS_OF, hours=24, lookback_days=7, max_items=1)
    assert sorted((r.user_key, r.abandoned_items) for r in got.collect()) == [("u2", ["b"]), ("u6", ["g"])]


def test_control_is_the_exact_share_with_the_lowest_hash_buckets(spark):
    keys = [hashlib.sha256(f"synthetic:{i}".encode()).hexdigest() for i in range(20_000)]
    df = spark.createDataFrame([(k,) for k in keys], "user_key string")
    audiences = df.withColumn("campaign_id", F.lit("CMP_X")).unionByName(
        df.limit(1_234).withColumn("campaign_id", F.lit("CMP_Y"))
    )
    assigned = audiences.transform(audience.with_assignment(0.1)).where("assignment = 'control'").collect()
    got = {c: {r.user_key for r in assigned if r.campaign_id == c} for c in ("CMP_X", "CMP_Y")}
    # Exactly round(share * n) per campaign, whatever the audience size.
    assert len(got["CMP_X"]) == 2_000 and len(got["CMP_Y"]) == 123
    # Who: the members with the lowest buckets, computed independently in Python.
    x_by_bucket = sorted(keys, key=lambda k: (audience.control_bucket(k, "CMP_X"), k))
    assert got["CMP_X"] == set(x_by_bucket[:2_000])
    y_keys = {r.user_key for r in audiences.where("campaign_id = 'CMP_Y'").collect()}
    assert got["CMP_Y"] == set(sorted(y_keys, key=lambda k: (audience.control_bucket(k, "CMP_Y"), k))[:123])
    # Independent across campaigns: CMP_Y's hold-out is not CMP_X's first members.
    overlap = len(got["CMP_Y"] & got["CMP_X"])
    assert overlap < 40, overlap  # about 10% of 123 expected


def test_a_grown_audience_moves_few_people_across_the_cut(spark):
    keys = [hashlib.sha256(f"synthetic:{i}".encode()).hexdigest() for i in range(11_000)]

    def controls(members):
        df = spark.createDataFrame([(k, "CMP_X") for k in members], "user_key string, campaign_id string")
        assigned = df.transform(audience.with_assignment(0.1)).where("assignment = 'control'")
        return {r.user_key for r in assigned.collect()}

    before, after = controls(keys[:10_000]), controls(keys)
    # 1,000 new people: the cut moves a little; of yesterday's 1,000 controls, most stay.
    assert len(before) == 1_000 and len(after) == 1_100
    assert len(before - after) < 60, len(before - after)


def test_bad_definitions_name_the_key(tmp_path):
    bad = tmp_path / "c.yaml"
    bad.write_text("campaigns:\n  - {id: x, name: X, playbook: p, channel: sms, select: {risk_tier: [high]}}\n")
    with pytest.raises(ConfigError, match=r"campaigns\.0\.select\.risk_tier: unknown key"):
        campaign_definitions.load_definitions(make_config(tmp_path, f"campaign.definitions={bad}"))
    dup = tmp_path / "d.yaml"
    dup.write_text("campaigns:\n  - {id: x, name: X, playbook: p, channel: sms}\n  - {id: x, name: Y, playbook: p, "
                   "channel: sms}\n")  # fmt: skip
    with pytest.raises(ConfigError, match="repeated: \\['x'\\]"):
        campaign_definitions.load_definitions(make_config(tmp_path, f"campaign.definitions={dup}"))
    with pytest.raises(ConfigError, match="campaign.definitions: file .*missing.yaml not found"):
        campaign_definitions.load_definitions(
            make_config(tmp_path, f"campaign.definitions={tmp_path / 'missing.yaml'}")
        )


def test_comparison_pairs():
    assert campaign_results.comparison_pairs(["B", "A", "control"]) == [("B", "A"), ("A", "control"), ("B", "control")]
    assert campaign_results.comparison_pairs(["only"]) == []
    assert campaign_results.comparison_pairs(["X", "control"]) == [("X", "control")]
