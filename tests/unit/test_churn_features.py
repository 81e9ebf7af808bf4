"""Churn features, labels, cutoffs, tiers, evaluation tables and CLV: exact values on tiny frames."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from common.btyd import BgNbdParams, GammaGammaParams, bgnbd_expected_purchases, bgnbd_p_alive, with_clv
from common.churn_features import (
    active_customers,
    churn_labels,
    feature_columns,
    point_in_time_features,
)
from common.config import ChurnConfig
from common.errors import ConfigError
from common.tables import SILVER_CUSTOMERS, SILVER_EVENTS, SILVER_ORDERS
from jobs.churn.evaluation import calibration_table, decile_table
from jobs.churn.frame import Cutoffs, history_problem, plan_cutoffs
from jobs.churn.job import _attribution_from
from jobs.churn.models import BASELINES, baseline_scorer, score_frame, varying_features
from jobs.churn.scoring import risk_tier

CUTOFF = date(2024, 3, 10)


def _rows(spec, rows: list[dict]) -> list[tuple]:
    return [tuple(r.get(f.name) for f in spec.schema.fields) for r in rows]


def order(oid, user, when, status, total, discount=0, channel="app", updated=None):
    return {
        "source_system": "shop",
        "order_id": oid,
        "user_key": user,
        "order_time": datetime.fromisoformat(when),
        "status": status,
        "channel": channel,
        "discount_amount": Decimal(discount),
        "total_amount": Decimal(total),
        "updated_at": datetime.fromisoformat(updated or when),
        "dq_flags": [],
    }


@pytest.fixture(scope="module")
def orders(spark):
    rows = [
        order("o1", "a", "2024-03-01 10:00:00", "paid", 100, 10, "app"),
        order("o2", "a", "2024-03-05 12:00:00", "refunded", 50, 0, "web", "2024-03-06 08:00:00"),
        # Refunded only after the cutoff: at the cutoff it was a paid order.
        order("o3", "a", "2024-03-08 10:00:00", "refunded", 30, 0, "app", "2024-03-12 08:00:00"),
        order("o4", "a", "2024-03-09 09:00:00", "cancelled", 20),
        order("o5", "a", "2024-03-11 10:00:00", "paid", 70),
        order("o6", "b", "2024-01-20 15:00:00", "paid", 40),
        order("o7", "b", "2024-03-12 15:00:00", "cancelled", 40),
    ]
    return spark.createDataFrame(_rows(SILVER_ORDERS, rows), SILVER_ORDERS.schema)


@pytest.fixture(scope="module")
def events(spark):
    def ev(eid, user, etype, when):
        t = datetime.fromisoformat(when)
        return {"source_system": "shop", "event_id": eid, "user_key": user, "event_type": etype, "event_time": t,
                "event_date": t.date(), "dq_flags": []}  # fmt: skip

    rows = [
        ev("e1", "a", "view", "2024-03-09 10:00:00"),
        ev("e2", "a", "view", "2024-03-10 23:00:00"),
        ev("e3", "a", "add_to_cart", "2024-03-02 10:00:00"),
        ev("e4", "a", "search", "2024-03-11 00:30:00"),
    ]
    return spark.createDataFrame(_rows(SILVER_EVENTS, rows), SILVER_EVENTS.schema)


@pytest.fixture(scope="module")
def customers(spark):
    rows = [
        {"user_key": "a", "source_records": 1, "marketing_consent": True,
         "registered_at": datetime(2024, 2, 1, 9, 0)},
        {"user_key": "c", "source_records": 1, "marketing_consent": True,
         "registered_at": datetime(2024, 3, 20, 9, 0)},
    ]  # fmt: skip
    return spark.createDataFrame(_rows(SILVER_CUSTOMERS, rows), SILVER_CUSTOMERS.schema)


def test_point_in_time_features_exact(spark, orders, events, customers):
    population = spark.createDataFrame([("a",), ("b",)], "user_key string")
    feats = point_in_time_features(population, orders, events, customers, CUTOFF, [30, 7], ["app", "web"])
    assert feats.columns == ["user_key", *feature_columns([7, 30], ["app", "web"])]
    got = {r.user_key: r.asDict() for r in feats.collect()}
    gap1, gap2 = 4 + 2 / 24, 2 + 22 / 24
    expected_a = {
        "recency_days": 2.0,
        "frequency": 3.0,
        "monetary": 130.0,  # o2 refunded before the cutoff counts as a purchase with no value
        "tenure_days": 38.0,
        "orders_7d": 2.0,
        "monetary_7d": 30.0,
        "orders_30d": 3.0,
        "monetary_30d": 130.0,
        "order_rate_trend_7_30d": 2 / 7 - 3 / 30,
        "interval_mean_days": (gap1 + gap2) / 2,
        "interval_std_days": abs(gap1 - gap2) / 2,
        "recency_over_interval": 2 / ((gap1 + gap2) / 2),
        "refunds": 1.0,
        "refund_share": 1 / 3,
        "discount_share": 10 / 190,
        "channel_share_app": 2 / 3,
        "channel_share_web": 1 / 3,
        "visit_recency_days": 0.0,  # the 03-10 23:00 view; the 03-11 search is after the cutoff
        "cart_recency_days": 8.0,
        "views_7d": 2.0,
        "views_30d": 2.0,
        "carts_7d": 0.0,
        "carts_30d": 1.0,
        "searches_7d": 0.0,
        "searches_30d": 0.0,
    }
    expected_b = {
        "recency_days": 50.0,
        "frequency": 1.0,
        "monetary": 40.0,
        "tenure_days": 50.0,  # no registration: first purchase
        "orders_7d": 0.0,
        "monetary_7d": 0.0,
        "orders_30d": 0.0,
        "monetary_30d": 0.0,
        "order_rate_trend_7_30d": 0.0,
        "interval_mean_days": -1.0,
        "interval_std_days": -1.0,
        "recency_over_interval": -1.0,
        "refunds": 0.0,
        "refund_share": 0.0,
        "discount_share": 0.0,
        "channel_share_app": 1.0,
        "channel_share_web": 0.0,
        "visit_recency_days": -1.0,  # never seen browsing
        "cart_recency_days": -1.0,
        "views_7d": 0.0,
        "views_30d": 0.0,
        "carts_7d": 0.0,
        "carts_30d": 0.0,
        "searches_7d": 0.0,
        "searches_30d": 0.0,
    }
    for user, expected in (("a", expected_a), ("b", expected_b)):
        for name, value in expected.items():
            assert got[user][name] == pytest.approx(value, abs=1e-9), (user, name)


def test_population_and_labels(spark, orders):
    assert sorted(r.user_key for r in active_customers(orders, CUTOFF, 30).collect()) == ["a"]
    assert sorted(r.user_key for r in active_customers(orders, CUTOFF, 60).collect()) == ["a", "b"]
    population = active_customers(orders, CUTOFF, 60)
    labels = {r.user_key: r.churned for r in churn_labels(orders, population, CUTOFF, 5).collect()}
    # a buys on 03-11; b's only later order is cancelled.
    assert labels == {"a": 0.0, "b": 1.0}
    # A window that ends before a's next purchase makes a a churner too.
    labels = {r.user_key: r.churned for r in churn_labels(orders, population, date(2024, 3, 11), 5).collect()}
    assert labels == {"a": 1.0, "b": 1.0}


def test_clv_is_discounted_bgnbd_purchases_times_gamma_gamma_spend_times_margin(spark):
    summary = spark.createDataFrame(
        [("p", 2.0, 20.0, 30.0, 50.0), ("n", 0.0, 0.0, 10.0, 0.0)],
        "user_key string, x double, t_x double, T double, mean_repeat_spend double",
    )
    bg = BgNbdParams(0.25, 4.0, 0.8, 2.5)
    gg = GammaGammaParams(6.0, 4.0, 15.0)
    out = {
        r.user_key: r
        for r in with_clv(summary, bg, gg, 0.0, period_days=28, horizon_periods=3, annual_discount_rate=0.1,
                          margin=0.5, btyd_period_days=7.0).collect()
    }  # fmt: skip
    d = 1.1 ** (28 / 365) - 1.0
    for key, (x, t_x, big_t, m) in {"p": (2.0, 20.0, 30.0, 50.0), "n": (0.0, 0.0, 10.0, 0.0)}.items():
        # Expected purchases in each 4-week period, from the cumulative BG/NBD formula.
        cumulative = [0.0] + [float(bgnbd_expected_purchases(bg, 4.0 * k, [x], [t_x], [big_t])[0]) for k in (1, 2, 3)]
        discounted = sum((cumulative[k] - cumulative[k - 1]) / (1 + d) ** k for k in (1, 2, 3))
        spend = 6.0 * (15.0 + x * m) / (6.0 * x + 4.0 - 1.0)
        r = out[key]
        assert r.expected_transactions == pytest.approx(cumulative[3])
        assert r.discounted_transactions == pytest.approx(discounted) and discounted < cumulative[3]
        assert r.expected_spend == pytest.approx(spend)
        assert r.margin == 0.5
        assert r.clv == pytest.approx(discounted * spend * 0.5)
        assert r.p_alive == pytest.approx(float(bgnbd_p_alive(bg, [x], [t_x], [big_t])[0]))
    # Without a Gamma-Gamma fit the fallback spend is used.
    fallback = with_clv(summary, bg, None, 12.0, 28, 3, 0.1, 0.5).where("user_key = 'p'").first()
    assert fallback.expected_spend == 12.0 and fallback.clv == pytest.approx(out["p"].discounted_transactions * 6.0)


def test_cutoffs_derive_from_as_of_and_refuse_overlaps():
    churn = ChurnConfig(label_days=30)
    assert plan_cutoffs(churn, date(2024, 4, 29)) == Cutoffs(
        date(2024, 1, 30), date(2024, 2, 29), date(2024, 3, 30), date(2024, 4, 29), 30, 30
    )
    cdnow = ChurnConfig(label_days=90)
    cut = plan_cutoffs(cdnow, date(1998, 6, 30))
    assert (cut.train, cut.validation, cut.test) == (date(1997, 10, 3), date(1998, 1, 1), date(1998, 4, 1))
    assert (cut.training_label_days, cut.label_days) == (90, 90)
    # One label length at every cutoff: a different training length names the key.
    with pytest.raises(ConfigError, match=r"churn.training_label_days=91 differs from churn.label_days=273"):
        plan_cutoffs(ChurnConfig(label_days=273, training_label_days=91), date(1998, 6, 30))
    assert plan_cutoffs(ChurnConfig(label_days=30, training_label_days=30), date(2024, 4, 29)).train == date(
        2024, 1, 30
    )
    with pytest.raises(ConfigError, match=r"churn.validation_cutoff=2024-03-20: .* after churn.test_cutoff"):
        plan_cutoffs(ChurnConfig(label_days=30, validation_cutoff=date(2024, 3, 20)), date(2024, 4, 29))
    with pytest.raises(ConfigError, match="churn.test_cutoff=2024-04-10"):
        plan_cutoffs(ChurnConfig(label_days=30, test_cutoff=date(2024, 4, 10)), date(2024, 4, 29))


def test_history_too_short_says_which_label_length_fits():
    cut = plan_cutoffs(ChurnConfig(label_days=90), date(1998, 6, 30))
    assert history_problem(date(1997, 1, 1), cut) is None
    problem = history_problem(date(1997, 11, 1), cut)
    # 1997-11-01..1998-06-30 is 241 days: three label windows of at most 80 days fit after day one.
    assert "241 days" in problem and "churn.label_days <= 80" in problem and "training cutoff 1997-10-03" in problem
    assert history_problem(None, cut) == "no purchases in silver.orders"


def test_published_baseline_scores_by_its_column_and_names_it_for_attribution(spark):
    from pyspark.ml import PipelineModel
    from pyspark.ml.feature import SQLTransformer

    cols = sorted({c for c, _ in BASELINES.values()})
    df = spark.createDataFrame([("a", *[1.0] * len(cols)), ("b", *[5.0] * len(cols))], ["user_key", *cols])
    calibration = SQLTransformer(statement="SELECT *, 1.0 / (1.0 + EXP(-raw_score)) AS probability FROM __THIS__")
    for name, (column, sign) in BASELINES.items():
        published = PipelineModel(stages=[*baseline_scorer(name).stages, calibration])
        # A baseline published as the model explains its scores by its one column.
        assert _attribution_from(published) == [column], name
        got = {r.user_key: (r.raw_score, r.probability) for r in score_frame(published, df).collect()}
        assert got["a"][0] == sign * 1.0 and got["b"][0] == sign * 5.0, name
        assert (got["b"][1] > got["a"][1]) == (sign > 0), name


def test_risk_tiers_by_threshold_and_capacity(spark):
    df = spark.createDataFrame(
        [("u1", 0.9, 1), ("u2", 0.65, 2), ("u3", 0.4, 3), ("u4", 0.1, 4)],
        "user_key string, probability double, risk_rank int",
    )
    by_threshold = ChurnConfig(risk_thresholds={"high": 0.6, "medium": 0.3})
    got = {r.user_key: r.tier for r in df.select("user_key", risk_tier(by_threshold).alias("tier")).collect()}
    assert got == {"u1": "high", "u2": "high", "u3": "medium", "u4": "low"}
    capacity = ChurnConfig(risk_thresholds={"high": 0.6, "medium": 0.3}, high_risk_capacity=1)
    got = {r.user_key: r.tier for r in df.select("user_key", risk_tier(capacity).alias("tier")).collect()}
    assert got == {"u1": "high", "u2": "medium", "u3": "medium", "u4": "low"}


def test_decile_and_calibration_tables(spark):
    # 20 customers, scores 0.05..1.0; the riskiest 4 all churn, then one in every 4.
    rows = [(f"u{i:02d}", (i + 1) / 20, 1.0 if i >= 16 or i % 4 == 0 else 0.0) for i in range(20)]
    df = spark.createDataFrame(rows, "user_key string, probability double, churned double")
    deciles = decile_table(df)
    assert [d["churners"] for d in deciles] == [2, 2, 0, 1, 0, 1, 0, 1, 0, 1]
    total = 8
    assert deciles[0]["lift"] == pytest.approx(round(1.0 / (total / 20), 3))
    assert deciles[1]["capture"] == pytest.approx(4 / total)
    assert deciles[-1]["capture"] == pytest.approx(1.0)
    calibration = calibration_table(df)
    assert calibration[0] == {"bin": 1, "n": 2, "predicted": 0.075, "observed": 0.5, "gap": 0.425}
    assert calibration[-1] == {"bin": 10, "n": 2, "predicted": 0.975, "observed": 1.0, "gap": 0.025}
    # Equal predictions stay together: 5 tied at 0.2 fill bins 1-2 and a half, so they
    # are all bin 1 and bin 2 stays empty; 0.35 (rank 6 of 20) starts bin 3.
    tied = [(f"t{i:02d}", 0.2 if i < 5 else 0.3 + i / 100, float(i % 2)) for i in range(20)]
    calibration = calibration_table(spark.createDataFrame(tied, "user_key string, probability double, churned double"))
    assert [b["bin"] for b in calibration] == [1, 3, 4, 5, 6, 7, 8, 9, 10]
    assert calibration[0] == {"bin": 1, "n": 5, "predicted": 0.2, "observed": 0.4, "gap": 0.2}
    assert sum(b["n"] for b in calibration) == 20


def test_the_logistic_regression_leaves_out_features_constant_in_training(spark):
    # P(alive) of a BG/NBD fit without dropout: 1 for everyone up to rounding.
    rows = [(1.0 - k * 1e-16, 0.0, float(k), None, 5e9 + 100.0 * k) for k in range(20)]
    df = spark.createDataFrame(rows, "p_alive double, zero double, recency double, missing double, big double")
    assert varying_features(df, ["p_alive", "zero", "recency", "missing", "big"]) == ["recency", "big"]
