"""The churn job on a generated shop with planted churners and on the CDNOW sample.

The model tests use a shop generated with attrition (``generate(attrition=1.0)``):
every customer may leave for good at their segment's daily hazard, so churn is a
planted process the model can learn, not only the chance gaps of rare buyers. The
shop is short for 90-day labels, so these runs use 30-day label windows (test
cutoff = as_of - 30, validation 30 days before it, training 30 days before that)
and a 60-day activity window.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from common import privacy
from common.delta import open_store
from common.tables import (
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDERS,
    SILVER_USER_KEY_MAP,
)
from jobs.churn.frame import build_frame, read_inputs
from shoplake.registry import run_job
from tests.conftest import TEST_SECRET, make_config

GENERATED = [
    "churn.label_days=30",
    "churn.activity_days=60",
    "churn.grid.max_depth=[3, 4]",
    "churn.grid.max_iter=[20]",
]


# Big enough for about 100 test rows per calibration decile, long enough that the
# training cutoff sees 60 days of history.
CHURN_SHOP = {"users": 3000, "days": 150, "attrition": 1.0}


@pytest.fixture(scope="module")
def trained(spark, silver_lake, tmp_path_factory):
    lake = silver_lake(**CHURN_SHOP)
    cfg = lake.copy_to(tmp_path_factory.mktemp("churn"), *GENERATED)
    result = run_job(spark, cfg, "churn")
    report = json.loads(Path(result.metrics["report"].removesuffix(".md") + ".json").read_text())
    return lake, cfg, result, report


def test_model_reaches_085_and_beats_recency_baseline(trained):
    _, _, result, report = trained
    test = result.metrics["test"]
    assert result.metrics["status"] == "trained"
    assert test["model"]["roc_auc"] >= 0.85, test
    assert test["model"]["roc_auc"] > test["baseline"]["roc_auc"], test
    assert test["model"]["pr_auc"] > test["baseline"]["pr_auc"], test
    rows = result.metrics["rows"]
    assert all(min(r["churners"], r["rows"] - r["churners"]) >= 5 for r in rows.values()), rows
    # The report's numbers are the run log's numbers.
    assert report["model"]["roc_auc"] == test["model"]["roc_auc"]
    assert report["baseline"]["roc_auc"] == test["baseline"]["roc_auc"]
    print("Generated shop test", json.dumps({**test, "published": result.metrics["published"]}, sort_keys=True))


def test_calibrated_in_every_decile(trained):
    _, _, _, report = trained
    table = report["model"]["calibration"]
    # Equal predictions share a bin, so a wide isotonic step can leave a bin empty.
    bins = [b["bin"] for b in table]
    assert bins == sorted(set(bins)) and set(bins) <= set(range(1, 11)) and len(bins) >= 8, bins
    assert sum(b["n"] for b in table) == report["model"]["deciles"][-1]["n"] + sum(
        d["n"] for d in report["model"]["deciles"][:-1]
    )
    for b in table:
        assert abs(b["observed"] - b["predicted"]) <= 0.1, table


def test_planted_churners_score_high(spark, trained):
    lake, cfg, result, _ = trained
    store = open_store(spark, cfg)
    key_of = {r.source_key: r.user_key for r in store.read(SILVER_USER_KEY_MAP).collect()}
    secret = TEST_SECRET.encode()
    stop_date = {
        key_of[privacy.pseudonym(secret, f"shop:{c['customer_id']}", "source")]: date.fromisoformat(c["stop_date"])
        for c in lake.manifest["churners"]
    }
    as_of = date.fromisoformat(result.metrics["as_of"])
    scores = store.read(GOLD_CHURN_SCORES).where(F.col("as_of") == as_of).collect()
    probability = {r.user_key: r.probability for r in scores}
    # Customers who had already left by the as-of date (yet bought in the activity
    # window) against everyone else scored.
    gone = [p for k, p in probability.items() if k in stop_date and stop_date[k] <= as_of]
    others = [p for k, p in probability.items() if k not in stop_date or stop_date[k] > as_of]
    assert len(gone) >= 100, len(gone)
    assert sum(gone) / len(gone) > sum(others) / len(others) + 0.3
    assert sorted(gone)[len(gone) // 2] >= 0.7
    # The longer ago they left, the surer the model: a month of silence is plain to see.
    long_gone = [p for k, p in probability.items() if k in stop_date and (as_of - stop_date[k]).days >= 30]
    assert len(long_gone) >= 50 and sum(long_gone) / len(long_gone) >= 0.85, len(long_gone)


def test_outputs_reconcile(spark, trained):
    _, cfg, result, _ = trained
    store = open_store(spark, cfg)
    as_of = date.fromisoformat(result.metrics["as_of"])
    scores = store.read(GOLD_CHURN_SCORES).where(F.col("as_of") == as_of).collect()
    clv = {r.user_key: r for r in store.read(GOLD_CLV).where(F.col("as_of") == as_of).collect()}
    # Population, counted independently: people with a non-cancelled order in the 60 days to as_of.
    first_day = as_of - timedelta(days=59)
    orders = store.read(SILVER_ORDERS).collect()
    active = {
        o.user_key
        for o in orders
        if o.user_key and o.status != "cancelled" and first_day <= o.order_time.date() <= as_of
    }
    keys = [r.user_key for r in scores]
    assert len(keys) == len(set(keys)) == len(active) and set(keys) == active
    assert set(clv) == active
    assert result.row_counts["gold.churn_scores"] == len(active)
    version = result.metrics["model_version"]
    for r in scores:
        assert 0.0 <= r.probability <= 1.0
        assert r.model_version == version
        expected_tier = "high" if r.probability >= 0.6 else "medium" if r.probability >= 0.3 else "low"
        assert r.risk_tier == expected_tier
        assert len(r.top_features) <= 3
        c = clv[r.user_key]
        assert c.churn_probability == r.probability and c.clv >= 0.0
    assert any(r.top_features for r in scores)
    # The CLV terms follow the documented formula: discounted BG/NBD purchases x
    # Gamma-Gamma spend x margin; the discounted count never exceeds the undiscounted one.
    for r in scores:
        c = clv[r.user_key]
        assert c.clv == pytest.approx(c.discounted_transactions * c.expected_spend * c.margin)
        assert c.margin == 0.30 and 0.0 <= c.p_alive <= 1.0 and c.expected_spend > 0.0
        assert 0.0 < c.discounted_transactions < c.expected_transactions
    # Someone likelier alive with the same history length is worth more purchases.
    ranked = sorted(clv.values(), key=lambda c: c.p_alive)
    low, high = ranked[: len(ranked) // 4], ranked[-len(ranked) // 4 :]
    assert sum(c.expected_transactions for c in high) / len(high) > sum(c.expected_transactions for c in low) / len(low)


def test_report_shows_protocol_candidates_and_baselines(trained):
    _, _, result, report = trained
    text = Path(result.metrics["report"]).read_text()
    cut = report["protocol"]["cutoffs"]
    assert (cut["train"], cut["validation"], cut["test"]) == ("2024-02-29", "2024-03-30", "2024-04-29")
    assert cut["training_label_days"] == cut["label_days"] == 30
    assert "## Protocol" in text and "baselines are scored by the same code on the same test rows" in text
    published = report["published"]
    c = report["candidates"]
    assert set(c) == {"recency", "bgnbd", "logistic", "gbt"}
    assert c[published]["validation_roc_auc"] == max(v["validation_roc_auc"] for v in c.values())
    for name, v in c.items():
        t = v["test"]
        mark = " (published)" if name == published else ""
        assert (f"| {name}{mark} | {v['validation_roc_auc']} | {t['roc_auc']} | {t['pr_auc']} | "
                f"{t['top_decile_lift']} | {t['top3_capture']} |") in text  # fmt: skip
    for name, b in report["baselines"].items():
        assert f"| {name} |" in text and str(b["roc_auc"]) in text
    assert [i["feature"] for i in report["baseline"]["importances"]] == ["recency_days"]
    gbt = c["gbt"]
    assert len(gbt["importances"]) > 20 and abs(sum(i["importance"] for i in gbt["importances"]) - 1.0) < 1e-3
    assert {"btyd_p_alive", "btyd_expected_purchases"} <= {i["feature"] for i in gbt["importances"]}
    # The recency baseline is ranked on raw days: its deciles' mean scores are days, decreasing.
    means = [d["mean_score"] for d in report["baseline"]["deciles"]]
    assert means == sorted(means, reverse=True) and means[0] > 1.0


def test_saved_model_scores_without_retraining(spark, trained, tmp_path):
    lake, cfg, result, _ = trained
    version = result.metrics["model_version"]
    # A copy of the lake without its gold tables: scoring it must only read the saved model.
    other = make_config(tmp_path, *GENERATED, f"churn.score_with_model={version}")
    shutil.copytree(Path(cfg.lake_root), Path(other.lake_root))
    shutil.rmtree(Path(other.lake_root) / "gold")
    folder = Path(other.lake_root) / "models" / "churn" / version
    stamp = {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}
    assert stamp
    rescored = run_job(spark, other, "churn")
    assert rescored.metrics["status"] == "scored_with_saved_model" and "test" not in rescored.metrics
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()} == stamp
    assert sorted(p.name for p in (Path(other.lake_root) / "models" / "churn").iterdir()) == [version]

    def rows(c):
        return sorted(map(tuple, open_store(spark, c).read(GOLD_CHURN_SCORES).collect()), key=repr)

    assert rows(other) == rows(cfg)


# ---------------------------------------------------------------------------- leakage
def _orders_changed_after(spark, orders, end: datetime, users: list[str]):
    """Every order placed at or after ``end`` altered (status, amounts, channel), 40 orders paid
    before it refunded or cancelled with the change dated after it, and a new late order for
    each of ``users``."""
    late = F.col("order_time") >= end
    altered = orders.select(
        *[
            F.when(late, F.lit("cancelled")).otherwise(F.col(c)).alias(c) if c == "status"
            else F.when(late, F.col(c) * 3).otherwise(F.col(c)).cast(c_type).alias(c) if c == "total_amount"
            else F.when(late, F.lit("web")).otherwise(F.col(c)).alias(c) if c == "channel"
            else F.col(c)
            for c, c_type in orders.dtypes
        ]
    )  # fmt: skip
    # Orders paid at the cutoff: silver keeps an order's latest version only, so
    # re-dating an order refunded *before* the cutoff would rewrite what was known then.
    paid_at_cutoff = ~late & (F.col("status") == "paid")
    before_orders = orders.where(paid_at_cutoff).orderBy("order_id").limit(40).select("order_id").collect()
    changed_later = [r.order_id for r in before_orders]
    altered = altered.select(
        *[
            F.when(F.col("order_id").isin(changed_later[:20]), F.lit("refunded"))
            .when(F.col("order_id").isin(changed_later[20:]), F.lit("cancelled"))
            .otherwise(F.col("status")).alias("status") if c == "status"
            else F.when(F.col("order_id").isin(changed_later), F.lit(datetime(2024, 3, 5)))
            .otherwise(F.col("updated_at")).alias("updated_at") if c == "updated_at"
            else F.col(c)
            for c in orders.columns
        ]
    )  # fmt: skip
    new_orders = spark.createDataFrame(
        [("shop", f"late-{i}", u, datetime(2024, 3, 2) + timedelta(hours=i), "paid", "alipay", "app", None,
          Decimal(0), Decimal(999), "CNY", datetime(2024, 3, 2) + timedelta(hours=i), [])
         for i, u in enumerate(users)],
        SILVER_ORDERS.schema,
    )  # fmt: skip
    return altered.unionByName(new_orders)


def _events_and_registrations_changed_after(spark, events, customers, end: datetime, users: list[str]):
    """Events at or after ``end`` retyped, three new late events for each of ``users``, late
    registrations re-dated and five new people registered after ``end``."""
    new_events = spark.createDataFrame(
        [("shop", f"late-e{i}", u, "s", etype, datetime(2024, 3, 2, 0, 0, 1) + timedelta(minutes=i),
          date(2024, 3, 2), None, None, "app", None, None, None, [])
         for i, u in enumerate(users) for etype in ("view", "add_to_cart", "search")],
        SILVER_EVENTS.schema,
    )  # fmt: skip
    late_events = events.withColumn(
        "event_type", F.when(F.col("event_time") >= end, F.lit("add_to_cart")).otherwise(F.col("event_type"))
    )
    late_registrations = customers.withColumn(
        "registered_at",
        F.when(F.col("registered_at") >= end, F.lit(datetime(2024, 3, 3))).otherwise(F.col("registered_at")),
    ).unionByName(
        spark.createDataFrame(
            [(f"new-{i}", 1, True, datetime(2024, 3, 3)) for i in range(5)],
            "user_key string, source_records int, marketing_consent boolean, registered_at timestamp",
        ),
        allowMissingColumns=True,
    )
    return late_events.unionByName(new_events), late_registrations


def test_no_feature_changes_when_data_after_the_cutoff_changes(spark, silver_lake, tmp_path):
    cutoff = date(2024, 3, 1)
    cfg = silver_lake().copy_to(tmp_path, *GENERATED)
    store = open_store(spark, cfg)
    churn = cfg.churn

    def features():
        inputs = read_inputs(store)
        frame = build_frame(inputs, churn, cutoff, [])
        return sorted(map(tuple, frame.collect()), key=repr)

    before = features()
    end = datetime(2024, 3, 2)  # first instant after the cutoff day
    orders = store.read(SILVER_ORDERS).localCheckpoint()
    events = store.read(SILVER_EVENTS).localCheckpoint()
    customers = store.read(SILVER_CUSTOMERS).localCheckpoint()
    users = [
        r.user_key for r in orders.where(F.col("order_time") < end).select("user_key").distinct().limit(50).collect()
    ]
    assert len(users) == 50

    late = F.col("order_time") >= end
    # Alter orders, events and registrations after the cutoff for people in the population.
    changed_orders = _orders_changed_after(spark, orders, end, users)
    changed_events, changed_customers = _events_and_registrations_changed_after(spark, events, customers, end, users)
    assert orders.where(late).count() > 100 and events.where(F.col("event_time") >= end).count() > 1000
    store.overwrite(SILVER_ORDERS, changed_orders)
    store.overwrite(SILVER_EVENTS, changed_events)
    store.overwrite(SILVER_CUSTOMERS, changed_customers)
    after = features()
    assert len(after) == len(before) > 100
    assert after == before

    # The comparison can fail: the same kind of change one day before the cutoff shows up.
    early = spark.createDataFrame(
        [("shop", f"early-{i}", u, datetime(2024, 3, 1, 12), "paid", "alipay", "app", None, Decimal(0),
          Decimal(999), "CNY", datetime(2024, 3, 1, 12), []) for i, u in enumerate(users)],
        SILVER_ORDERS.schema,
    )  # fmt: skip
    store.append(SILVER_ORDERS, early)
    assert features() != before


# ---------------------------------------------------------------------------- CDNOW
CDNOW_TEST_CUTOFF = "1998-04-01"


def _cdnow_days(path: Path) -> dict[str, list[str]]:
    """Purchase days (YYYYMMDD) per customer, read straight from the text file."""
    days: dict[str, set[str]] = {}
    for line in path.read_text().split("\n"):
        if line.strip():
            _, cid, day, *_ = line.split()
            days.setdefault(cid, set()).add(day)
    return {c: sorted(d) for c, d in days.items()}


def _auc(labels: list[float], scores: list[float]) -> float:
    """Pairwise ROC-AUC (ties one half), independent of the job's code."""
    pos = [s for y, s in zip(labels, scores) if y == 1.0]
    neg = sorted(s for y, s in zip(labels, scores) if y == 0.0)
    import bisect

    wins = sum(bisect.bisect_left(neg, p) + 0.5 * (bisect.bisect_right(neg, p) - bisect.bisect_left(neg, p))
               for p in pos)  # fmt: skip
    return wins / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def cdnow_run(spark, shared_data, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    cfg = make_config(
        tmp_path_factory.mktemp("cdnow"),
        f"landing.root={shared_data}",
        "landing.sources=[cdnow]",
        "gold.as_of=1998-06-30",
        "churn.label_days=90",
        # Everyone who ever bought is in the population (the cohort's whole history).
        "churn.activity_days=546",
        "churn.grid.max_depth=[2, 3]",
        "churn.grid.max_iter=[30]",
        "churn.clv.validation_holdout_days=273",
    )
    run_job(spark, cfg, "ingest")
    run_job(spark, cfg, "clean")
    result = run_job(spark, cfg, "churn")
    mp.undo()
    report = json.loads(Path(result.metrics["report"].removesuffix(".md") + ".json").read_text())
    return cfg, result, report


def test_cdnow_same_label_length_and_rows_from_the_file(cdnow_run, shared_data):
    _, result, report = cdnow_run
    cut = report["protocol"]["cutoffs"]
    assert (cut["train"], cut["validation"], cut["test"]) == ("1997-10-03", "1998-01-01", CDNOW_TEST_CUTOFF)
    assert cut["training_label_days"] == cut["label_days"] == 90
    assert report["protocol"]["test_label_window"] == ["1998-04-02", "1998-06-30"]
    days = _cdnow_days(shared_data / "cdnow_sample" / "CDNOW_sample.txt")
    buyers = {c for c, d in days.items() if d[0] <= "19980401"}
    churners = {c for c in buyers if not any("19980402" <= d <= "19980630" for d in days[c])}
    assert result.metrics["rows"]["test"] == {"rows": len(buyers), "churners": len(churners)}
    assert len(buyers) == 2357


def test_cdnow_published_scores_match_the_best_baseline(cdnow_run, shared_data):
    _, result, report = cdnow_run
    test = result.metrics["test"]
    base = test["baselines"]
    best = max(base[n]["roc_auc"] for n in ("recency", "bgnbd", "bgnbd_p_alive"))
    assert test["model"]["roc_auc"] >= best - 0.005, test
    assert test["model"]["top_decile_lift"] >= base["recency"]["top_decile_lift"] - 0.02, test
    # The recency baseline's ROC-AUC, recomputed from the file without the job's code.
    days = _cdnow_days(shared_data / "cdnow_sample" / "CDNOW_sample.txt")
    cutoff = date(1998, 4, 1)
    rows = [(c, d) for c, d in days.items() if d[0] <= "19980401"]
    recency = [(cutoff - datetime.strptime(max(x for x in d if x <= "19980401"), "%Y%m%d").date()).days
               for _, d in rows]  # fmt: skip
    labels = [0.0 if any("19980402" <= x <= "19980630" for x in d) else 1.0 for _, d in rows]
    assert base["recency"]["roc_auc"] == pytest.approx(_auc(labels, recency), abs=1e-4)
    # Every candidate is reported with validation and test figures; the published one won validation.
    cands = test["candidates"]
    assert set(cands) == {"recency", "bgnbd", "logistic", "gbt"}
    published = result.metrics["published"]
    assert cands[published]["validation_roc_auc"] == max(c["validation_roc_auc"] for c in cands.values())
    assert cands[published]["roc_auc"] == test["model"]["roc_auc"]
    # The interval of the difference to the strongest baseline is in the run log and the report.
    gap = test["best_baseline"]
    assert gap["ci95_low"] <= gap["difference"] <= gap["ci95_high"] and gap["samples"] >= 900
    text = Path(result.metrics["report"]).read_text()
    assert f"Strongest baseline at test: `{gap['name']}`" in text and "bootstrap 95% interval" in text
    print("CDNOW test", json.dumps(test, sort_keys=True))


def test_cdnow_calibration_gap(cdnow_run):
    _, result, report = cdnow_run
    table = report["model"]["calibration"]
    assert [b["bin"] for b in table] == list(range(1, 11)), table  # ranking-preserving: no ties, ten bins
    assert result.metrics["test"]["max_calibration_gap"] == max(abs(b["gap"]) for b in table)
    # Measured 0.089 (bin 2). The churn rate of the 90 days after each cutoff is 0.837 at
    # validation (1998-01-01) and 0.873 at test (1998-04-01); nothing known by the test cutoff
    # announces the rise (BG/NBD fitted there expects 0.850), so probabilities calibrated at
    # validation sit low at test. The target of 0.05 is the xfail below.
    assert max(abs(b["gap"]) for b in table) <= 0.10, table


@pytest.mark.xfail(strict=True, reason="issue #23 target; measured 0.089: the test window's churn rate rises")
def test_cdnow_calibrated_within_005(cdnow_run):
    _, _, report = cdnow_run
    assert max(abs(b["gap"]) for b in report["model"]["calibration"]) <= 0.05


def test_cdnow_clv_holdout_and_table(spark, cdnow_run):
    cfg, result, report = cdnow_run
    check = report["clv_validation"]
    assert check["holdout"] == ["1997-10-01", "1998-06-30"] and check["customers"] == 2357
    # Purchase days in the holdout, counted from the file by tests/unit/test_btyd.py's pandas path: 1,882.
    assert check["total_actual"] == 1882.0
    # BG/NBD with the published parameters (reproduced in tests/unit/test_btyd.py) predicts 1,653.4.
    assert check["bgnbd"]["r"] == pytest.approx(0.243, rel=0.01)
    assert check["total_predicted"] == pytest.approx(1653.4, abs=1.0)
    assert [g["repeat_purchases"] for g in check["by_repeat_purchases"]] == ["0", "1", "2", "3", "4", "5", "6", "7+"]
    assert sum(g["n"] for g in check["by_repeat_purchases"]) == 2357
    store = open_store(spark, cfg)
    clv = store.read(GOLD_CLV).where(F.col("as_of") == date(1998, 6, 30)).collect()
    assert len(clv) == 2357
    for r in clv:
        assert r.clv == pytest.approx(r.discounted_transactions * r.expected_spend * r.margin)
        assert 0.0 <= r.p_alive <= 1.0 and 0.0 <= r.discounted_transactions <= r.expected_transactions
    print("CDNOW CLV check", json.dumps({k: v for k, v in check.items() if k != "by_repeat_purchases"}))


# BG/NBD predicts -12.1% with the published parameters; Pareto/NBD with its published ones
# (r 0.553, alpha 10.58, s 0.606, beta 11.67; checked by hand, not shipped) predicts 1,665.6, -11.5%.
# BG/NBD's shortfall is in the customers with one or two calibration repeat purchases (0.52
# and 1.04 expected against 0.70 and 1.39 bought each), Pareto/NBD's in those with none (0.14
# against 0.24): the two standard models under-forecast this holdout by the same 11-12%.
@pytest.mark.xfail(strict=True, reason="issue #23 target; BG/NBD with the published parameters predicts -12.1%")
def test_cdnow_clv_holdout_total_within_10_percent(cdnow_run):
    _, _, report = cdnow_run
    assert abs(report["clv_validation"]["total_error"]) <= 0.10
