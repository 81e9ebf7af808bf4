"""Campaign job on the shared generated shop (silver_lake default): planted variant
effects recovered, consent and frequency cap enforced, stable hold-outs, attribution
reconciled independently, no personal data in audiences, exports or reports.

The gold inputs (profiles, segments, churn scores, CLV, recommendations) are made
here from silver with simple deterministic rules, written through the store with
the registry's specs: the jobs that own them are built elsewhere.
"""

from __future__ import annotations

import csv
import math
import os
import re
from datetime import timedelta

import pytest
from pyspark.sql import functions as F

from common import privacy, stats
from common.asof import day_end, publish_as_of, resolve_as_of, up_to
from common.tables import (
    ALL_TABLES,
    GOLD_AB_RESULTS,
    GOLD_AUDIENCE_EXPORT,
    GOLD_AUDIENCES,
    GOLD_CAMPAIGN_KPIS,
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_ORDERS,
    SILVER_PRODUCTS,
    SILVER_USER_KEY_MAP,
    get_table,
)
from jobs.campaign.audiences import control_bucket
from shoplake.registry import run_job
from tests.conftest import TEST_SECRET, with_missing_columns

STAGES = ["new", "active", "dormant", "churned", "reactivated"]


def _h(salt: str, modulo: int):
    """A deterministic pseudo-random integer per user_key in [0, modulo)."""
    return F.conv(F.substring(F.sha2(F.concat(F.lit(salt + ":"), "user_key"), 256), 1, 6), 16, 10).cast("long") % F.lit(
        modulo
    )


def seed_gold(spark, store, as_of, manifest) -> None:
    """Gold inputs for ``as_of``. Every tenth person without consent in silver is marked
    as consenting in gold.profiles (a stale profile): the job must still exclude them."""
    customers = store.read(SILVER_CUSTOMERS)
    orders = up_to(store.read(SILVER_ORDERS), "order_time", as_of).where("status = 'paid'")
    agg = orders.groupBy("user_key").agg(
        F.count("*").alias("frequency"), F.sum("total_amount").alias("monetary"), F.max("order_time").alias("last")
    )
    profiles = customers.join(agg, "user_key", "left").select(
        "user_key",
        (F.col("marketing_consent") | (_h("stale", 10) == 0)).alias("marketing_consent"),
        F.datediff(F.lit(as_of), F.col("last")).alias("recency_days"),
        F.coalesce("frequency", F.lit(0)).cast("long").alias("frequency"),
        F.coalesce("monetary", F.lit(0)).alias("monetary"),
        F.lit(None).cast("int").alias("r_score"),
        F.lit(None).cast("int").alias("f_score"),
        F.lit(None).cast("int").alias("m_score"),
        F.lit("mixed").alias("rfm_segment"),
        F.element_at(F.array(*[F.lit(s) for s in STAGES]), (_h("stage", 5) + 1).cast("int")).alias("lifecycle_stage"),
        F.array(F.lit("demo")).alias("tags"),
    )
    publish_as_of(store, GOLD_PROFILES, with_missing_columns(profiles, GOLD_PROFILES), as_of)
    # Segments from the planted truth: source customer id -> user_key through the key map.
    secret = TEST_SECRET.encode()
    planted = [(privacy.pseudonym(secret, f"shop:{cid}", "source"), name)
               for name, ids in manifest["segments"].items() for cid in ids]  # fmt: skip
    seg = spark.createDataFrame(planted, "source_key string, segment_name string").join(
        store.read(SILVER_USER_KEY_MAP), "source_key"
    )
    seg = seg.groupBy("user_key").agg(F.min("segment_name").alias("segment_name"))
    publish_as_of(
        store, GOLD_SEGMENTS, with_missing_columns(seg.withColumn("segment_id", F.lit(1)), GOLD_SEGMENTS), as_of
    )
    p = (_h("churn", 1000) / 1000.0).alias("probability")
    churn = customers.select("user_key", p).withColumn(
        "risk_tier", F.when(F.col("probability") >= 0.7, "high").otherwise("low")
    )
    publish_as_of(
        store,
        GOLD_CHURN_SCORES,
        with_missing_columns(churn.withColumn("model_version", F.lit("test")), GOLD_CHURN_SCORES),
        as_of,
    )
    clv = profiles.select("user_key", (F.col("monetary").cast("double") * 1.5 + _h("clv", 7)).alias("clv"))
    publish_as_of(store, GOLD_CLV, with_missing_columns(clv, GOLD_CLV), as_of)
    items = [r.item_id for r in store.read(SILVER_PRODUCTS).select("item_id").orderBy("item_id").limit(5).collect()]
    ranked = F.explode(F.array(*[F.struct(F.lit(i + 1).alias("rank"), F.lit(item).alias("item_id"))
                                 for i, item in enumerate(items)]))  # fmt: skip
    recs = customers.select("user_key", ranked.alias("r")).select(
        "user_key", "r.rank", "r.item_id", (1.0 / F.col("r.rank")).alias("score"), F.lit("test").alias("reason")
    )
    publish_as_of(store, GOLD_RECOMMENDATIONS, with_missing_columns(recs, GOLD_RECOMMENDATIONS), as_of)


def snapshot(store, spec):
    return sorted(map(tuple, store.read(spec).collect()), key=repr)


@pytest.fixture(scope="module")
def campaign_run(spark, silver_lake, tmp_path_factory):
    from common.delta import open_store

    lake = silver_lake()
    cfg = lake.copy_to(tmp_path_factory.mktemp("campaign"))
    store = open_store(spark, cfg)
    as_of = resolve_as_of(store, cfg)
    seed_gold(spark, store, as_of, lake.manifest)
    first = run_job(spark, cfg, "campaign")
    tables = {s.name: snapshot(store, s) for s in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS,
                                                   GOLD_AB_RESULTS)}  # fmt: skip
    second = run_job(spark, cfg, "campaign")
    return {"cfg": cfg, "store": store, "as_of": as_of, "manifest": lake.manifest, "first": first,
            "second": second, "tables": tables}  # fmt: skip


def ab_rows(store, metric="conversion_rate"):
    return {
        (r.campaign_id, r.treatment, r.reference): r
        for r in store.read(GOLD_AB_RESULTS).where(F.col("metric") == metric).collect()
    }


def check_planted_effects(store, manifest):
    """Every planted effect inside its 95% interval, nulls not significant, and the
    direction right for every effect at or above the design's minimum detectable effect
    (at the true baseline rate with the recipients actually tested). Returns the
    effects checked for direction and those below the MDE."""
    rows = ab_rows(store)
    checked, directional, below_mde, missed = [], [], [], []
    for cid, truth in manifest["campaigns"].items():
        variants = truth["variants"]
        for name, effect in truth["true_effects"].items():
            treat, ref = name.split("_vs_")
            r = rows[(cid, treat, ref)]
            true = effect["absolute"]
            checked.append((cid, name))
            if not r.ci_low <= true <= r.ci_high:
                missed.append((cid, name, true, r.ci_low, r.ci_high))
            if true == 0:
                assert not r.significant, (cid, name, r.p_value)
                continue
            mde = stats.mde_two_proportions(variants[ref]["true_conversion_rate"], r.n_treatment, r.n_reference)
            if abs(true) >= mde:
                assert math.copysign(1, r.diff) == math.copysign(1, true), (cid, name, r.diff, true)
                directional.append((cid, name, true, round(mde, 4)))
            else:
                below_mde.append((cid, name, true, round(mde, 4)))
        if truth["null_effect"]:
            for (c, _, _), r in rows.items():
                if c == cid and "control" not in (r.treatment, r.reference):
                    assert not r.significant
    assert missed == []
    assert len(checked) == sum(len(t["true_effects"]) for t in manifest["campaigns"].values()) == 8
    print("direction checked (effect, MDE):", directional)
    print("effects below the design's MDE (need not be significant):", below_mde)
    return directional, below_mde


def test_planted_effects_inside_intervals_nulls_not_significant_directions_right(campaign_run):
    check_planted_effects(campaign_run["store"], campaign_run["manifest"])


@pytest.fixture(scope="module")
def wide_campaign_run(spark, silver_lake, tmp_path_factory):
    """A shop wide enough for the planted effects to exceed the design's MDE: many
    people over a few days (16,000 x 4, about 80k events), so the direction check
    is exercised rather than skipped for effects too small to detect."""
    from common.delta import open_store

    lake = silver_lake(users=16_000, days=4)
    cfg = lake.copy_to(tmp_path_factory.mktemp("campaign_wide"))
    store = open_store(spark, cfg)
    as_of = resolve_as_of(store, cfg)
    seed_gold(spark, store, as_of, lake.manifest)
    result = run_job(spark, cfg, "campaign")
    return store, lake.manifest, result


def test_planted_effects_above_the_mde_are_detected_with_the_right_direction(wide_campaign_run):
    store, manifest, _ = wide_campaign_run
    directional, _ = check_planted_effects(store, manifest)
    # Measured (seed 7): CMP001 B-A and all three CMP003 effects (0.025-0.06) exceed
    # their MDEs (0.019-0.024); CMP004's (0.005-0.02, rates near 2%) do not. At least
    # those four must be checked for direction, not excused by the MDE.
    assert len(directional) >= 4, directional


def test_control_share_within_one_point_of_the_configured_share(wide_campaign_run):
    store, _, result = wide_campaign_run
    shares = {c: i["control_share"] for c, i in result.metrics["campaigns"].items() if i["status"] == "built"}
    counts = (
        store.read(GOLD_AUDIENCES)
        .groupBy("campaign_id")
        .agg(F.count("*").alias("n"), F.sum((F.col("assignment") == "control").cast("int")).alias("control"))
        .collect()
    )
    assert {r.campaign_id for r in counts} == set(shares)
    observed = {r.campaign_id: (r.n, r.control / r.n) for r in counts}
    print("audience size and control share per campaign:", observed)
    assert min(n for n, _ in observed.values()) >= 500, observed  # sizes where 1 point means something
    for c, (_, share) in observed.items():
        assert abs(share - shares[c]) <= 0.01, (c, share, shares[c])


def test_tested_groups_reconcile_with_silver_touches(campaign_run):
    store = campaign_run["store"]
    touches = store.read(SILVER_CAMPAIGN_TOUCHES).where("user_key IS NOT NULL")
    expected = {(r.campaign_id, r.variant): (r.n, r.x) for r in touches.groupBy("campaign_id", "variant").agg(
        F.count("*").alias("n"), F.sum(F.col("converted").cast("int")).alias("x")).collect()}  # fmt: skip
    for (cid, treat, ref), r in ab_rows(store).items():
        assert (r.n_treatment, round(r.value_treatment * r.n_treatment)) == expected[(cid, treat)]
        assert (r.n_reference, round(r.value_reference * r.n_reference)) == expected[(cid, ref)]
    kpis = store.read(GOLD_CAMPAIGN_KPIS)
    variant_rows = kpis.where("dimension = 'variant'").collect()
    by_variant = {(r.campaign_id, r.dimension_value): r.recipients for r in variant_rows}
    assert by_variant == {k: v[0] for k, v in expected.items()}
    sends = {r.campaign_id: r.sends for r in kpis.where("dimension = 'campaign'").collect()}
    assert sends == {
        c: sum(n for (cc, v), (n, _) in expected.items() if cc == c and v != "control") for c, _ in expected
    }


def test_last_touch_attribution_matches_an_independent_computation(campaign_run):
    """Every order paid on the as-of day (a refund or cancellation recorded later does not
    count yet) after a touch (within 72 h) goes to the latest such touch: recomputed here
    in plain Python from silver, compared per campaign and variant."""
    store, as_of = campaign_run["store"], campaign_run["as_of"]
    touches = [r for r in store.read(SILVER_CAMPAIGN_TOUCHES).collect() if r.user_key]
    end = day_end(as_of).replace(tzinfo=None)
    paid_then = (F.col("status") == "paid") | (F.col("updated_at") >= F.lit(end))
    orders = [r for r in up_to(store.read(SILVER_ORDERS), "order_time", as_of).where(paid_then).collect()]
    by_user: dict[str, list] = {}
    for t in touches:
        by_user.setdefault(t.user_key, []).append(t)
    expected: dict[tuple, list] = {}
    for o in orders:
        cands = [t for t in by_user.get(o.user_key, []) if t.sent_at <= o.order_time <= t.sent_at + timedelta(hours=72)]
        if cands:
            t = max(cands, key=lambda t: (t.sent_at, t.touch_id))
            e = expected.setdefault((t.campaign_id, t.variant), [0, 0.0])
            e[0] += 1
            e[1] += float(o.total_amount)
    got = {
        (r.campaign_id, r.dimension_value): [r.attributed_orders, r.revenue]
        for r in store.read(GOLD_CAMPAIGN_KPIS).where("dimension = 'variant'").collect()
        if r.attributed_orders
    }
    assert got.keys() == expected.keys()
    for key, (n, revenue) in expected.items():
        assert got[key][0] == n and got[key][1] == pytest.approx(revenue, abs=0.01), key
    assert sum(n for n, _ in expected.values()) > 50  # the planted conversions are orders


def test_no_audience_member_lacks_consent(campaign_run):
    store = campaign_run["store"]
    audiences = store.read(GOLD_AUDIENCES)
    refused = store.read(SILVER_CUSTOMERS).where(~F.col("marketing_consent")).select("user_key")
    stale = (
        store.read(GOLD_PROFILES).where("marketing_consent").join(refused, "user_key", "left_semi").select("user_key")
    )
    assert stale.count() > 5  # the planted stale profiles exist...
    for table in (audiences, store.read(GOLD_AUDIENCE_EXPORT)):
        assert table.join(refused, "user_key", "left_semi").count() == 0  # ...and none is selected
    built = {c for c, i in campaign_run["first"].metrics["campaigns"].items() if i["status"] == "built"}
    assert built == {"high_value_new_arrivals", "cart_reminder", "churn_winback", "potential_trial"}
    sizes = {r.campaign_id: r["count"] for r in audiences.groupBy("campaign_id").count().collect()}
    assert set(sizes) == built and min(sizes.values()) >= 5, sizes


def test_control_groups_follow_the_hash_and_are_stable(campaign_run):
    store, cfg = campaign_run["store"], campaign_run["cfg"]
    rows = store.read(GOLD_AUDIENCES).select("campaign_id", "user_key", "assignment").collect()
    share = cfg.campaign.control_share
    for cid in {r.campaign_id for r in rows}:
        mine = [r for r in rows if r.campaign_id == cid]
        members = sorted((control_bucket(r.user_key, cid), r.user_key, r.assignment) for r in mine)
        n_control = int(math.floor(share * len(members) + 0.5))
        # The round(share * n) lowest hash buckets are the hold-out, nobody else.
        assert [a for _, _, a in members] == ["control"] * n_control + ["treatment"] * (len(members) - n_control), cid
    # Second run: every table identical (assignments included).
    for spec in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS, GOLD_AB_RESULTS):
        assert snapshot(store, spec) == campaign_run["tables"][spec.name], spec.name


def test_frequency_cap_holds_across_campaigns(campaign_run):
    store, cfg, as_of = campaign_run["store"], campaign_run["cfg"], campaign_run["as_of"]
    cap = cfg.campaign.frequency_cap
    start = as_of - timedelta(days=cap.period_days - 1)
    recent = store.read(SILVER_CAMPAIGN_TOUCHES).where(
        (F.to_date("sent_at") >= F.lit(start))
        & (F.to_date("sent_at") <= F.lit(as_of))
        & (F.col("variant") != "control")
    )
    per_user = (
        store.read(GOLD_AUDIENCES).select("user_key").unionAll(recent.select("user_key")).groupBy("user_key").count()
    )
    assert per_user.agg(F.max("count")).first()[0] <= cap.max_touches
    capped = sum(i.get("capped", 0) for i in campaign_run["first"].metrics["campaigns"].values())
    assert capped > 0  # the cap did bind: people qualified for more than two campaigns


def test_exports_hold_pseudonymous_keys_and_no_personal_data(campaign_run):
    store, result = campaign_run["store"], campaign_run["first"]
    names = {r.name for r in store.read(get_table("bronze.customers")).select("name").collect() if r.name}
    long_names = {n for n in names if len(n) >= 3}
    keys = {r.user_key for r in store.read(SILVER_CUSTOMERS).select("user_key").collect()}
    leaks, scanned = [], 0

    def scan(where, value):
        nonlocal scanned
        scanned += 1
        if value and (privacy.find_pii(value) or value in names or any(n in value for n in long_names)):
            leaks.append((where, value))

    for spec in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS, GOLD_AB_RESULTS):
        df = store.read(spec)
        strings = [f.name for f in df.schema.fields if f.dataType.simpleString() in ("string", "array<string>")]
        for row in df.select(*strings).collect():
            for column, value in zip(strings, row):
                for v in value if isinstance(value, list) else [value]:
                    scan((spec.name, column), v)
    exports = result.metrics["csv_exports"]
    assert set(exports) == {"high_value_new_arrivals", "cart_reminder", "churn_winback", "potential_trial"}
    exported_rows = 0
    for cid, path in exports.items():
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == [c for c in GOLD_AUDIENCE_EXPORT.columns if c != "as_of"]
            for row in reader:
                exported_rows += 1
                assert row["user_key"] in keys and row["campaign_id"] == cid
                for column, value in row.items():
                    scan((path, column), value)
    with open(result.metrics["report"], encoding="utf-8") as handle:
        for line in handle:
            scan("report", line)
    treated = store.read(GOLD_AUDIENCES).where("assignment = 'treatment'").count()
    assert exported_rows == treated == store.read(GOLD_AUDIENCE_EXPORT).count()
    assert scanned > 5_000 and leaks == []


def test_export_k_anonymity_is_reported_and_enforced(campaign_run):
    result, cfg, store = campaign_run["first"], campaign_run["cfg"], campaign_run["store"]
    k = cfg.campaign.export.k_anonymity
    report = result.metrics["k_anonymity"]
    qi = ["campaign_id", *cfg.campaign.export.quasi_identifiers]
    classes = store.read(GOLD_AUDIENCE_EXPORT).groupBy(*qi).count()
    # Independent count of the exported classes; the withheld (all-null) class may stay small.
    assert report["smallest_class"] == classes.agg(F.min("count")).first()[0]
    not_withheld = classes.where(" OR ".join(f"{c} IS NOT NULL" for c in qi[1:]))
    assert not_withheld.where(F.col("count") < k).count() == 0
    assert report["before_suppression"]["classes_below_k"] > 0  # segment x tier x stage is fine-grained


def test_report_lists_campaigns_and_tests(campaign_run):
    text = open(campaign_run["first"].metrics["report"], encoding="utf-8").read()
    for cid in ("CMP001", "CMP002", "CMP003", "CMP004", "high_value_new_arrivals", "cart_reminder"):
        assert cid in text
    assert "## A/B and hold-out tests" in text and text.count("| CMP003 | conversion_rate |") == 3
    assert ALL_TABLES[GOLD_AB_RESULTS.name] is GOLD_AB_RESULTS
    # Charts: PNG files beside the markdown, inline SVG in the HTML with one labelled
    # interval per conversion test.
    folder = os.path.dirname(campaign_run["first"].metrics["report"])
    images = re.findall(r"!\[(\w+)\]\(([^)]+\.png)\)", text)
    assert [name for name, _ in images] == ["conversion_effects", "revenue_effects", "variant_conversion"]
    for _, image in images:
        with open(os.path.join(folder, image), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    page = open(campaign_run["first"].metrics["report"].replace(".md", ".html"), encoding="utf-8").read()
    figure = re.search(
        r"""<figure class=["']chart["'] data-chart=["']conversion_effects["']>(.*?)</figure>""", page, re.S
    ).group(1)
    tests = [r for r in ab_rows(campaign_run["store"]).values()]
    assert len(tests) >= 8  # every planted comparison at least
    for r in tests:
        assert f"{r.campaign_id} {r.treatment} vs {r.reference}" in figure
