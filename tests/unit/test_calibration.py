"""Ranking-preserving calibration and the bootstrap of ROC-AUC differences."""

from __future__ import annotations

import numpy as np
import pytest

from common.calibration import auc, bootstrap_auc_difference, fit_calibrator, log_loss


def _data(n: int, seed: int, slope: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=n)
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-slope * s))).astype(float)
    return s, y


def test_auc_counts_ties_as_half():
    assert auc([0, 1], [0.1, 0.9]) == 1.0 and auc([0, 1], [0.9, 0.1]) == 0.0
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    # 2 positives x 2 negatives: pairs (p1>n1, p1>n2, p2=n1 tie, p2<n2) -> (1 + 1 + 0.5 + 0) / 4
    assert auc([1, 1, 0, 0], [0.9, 0.4, 0.4, 0.6]) == pytest.approx(2.5 / 4)


@pytest.mark.parametrize("rounding", [None, 0])
def test_calibration_keeps_the_ranking_and_fits_probabilities(spark, rounding):
    s, y = _data(4000, 1)
    scores = s if rounding is None else np.round(s, rounding)  # heavy ties when rounded
    c = fit_calibrator(scores * 30 + 100, y, seed=7)  # any scale: the map standardises
    p = c.predict(scores * 30 + 100)
    assert set(c.info["cv_log_loss"]) == {"platt", "isotonic"} and c.info["chosen"] == c.method
    # Strictly increasing: the ranking, hence ROC-AUC, is exactly the raw score's.
    order = np.argsort(scores, kind="stable")
    assert np.all(np.diff(p[order]) >= 0) and auc(y, p) == pytest.approx(auc(y, scores), abs=1e-12)
    distinct = np.unique(scores)
    assert len(np.unique(c.predict(distinct * 30 + 100))) == len(distinct)
    # Calibrated: better log-loss than a constant, and close to the truth on fresh data.
    assert log_loss(y, p) < log_loss(y, np.full_like(y, y.mean())) - 0.1
    fresh, fy = _data(4000, 2)
    fresh = fresh if rounding is None else np.round(fresh, rounding)
    truth = 1.0 / (1.0 + np.exp(-2.0 * fresh))
    assert np.abs(c.predict(fresh * 30 + 100) - truth).mean() < 0.06
    # The SQL twin gives the same numbers in Spark.
    df = spark.createDataFrame([(float(v),) for v in (fresh[:50] * 30 + 100)], "raw_score double")
    got = np.array([r[0] for r in df.selectExpr(f"{c.sql()} AS p").collect()])
    np.testing.assert_allclose(got, c.predict(fresh[:50] * 30 + 100), rtol=1e-9, atol=1e-12)


def test_isotonic_is_chosen_when_the_link_is_not_logistic(spark):
    # A step-shaped truth: isotonic fits it, a sigmoid cannot.
    rng = np.random.default_rng(3)
    s = rng.uniform(0, 1, 6000)
    y = (rng.random(6000) < np.where(s < 0.5, 0.1, 0.8)).astype(float)
    c = fit_calibrator(s, y, seed=1)
    assert c.method == "isotonic" and c.info["cv_log_loss"]["isotonic"] < c.info["cv_log_loss"]["platt"]
    p = c.predict(np.array([0.2, 0.3, 0.7, 0.9]))
    assert p[0] == pytest.approx(0.1, abs=0.03) and p[3] == pytest.approx(0.8, abs=0.03)
    assert p[0] < p[1] and p[2] < p[3]  # tie-broken: same step, still ordered
    assert p[1] - p[0] < 0.05  # within a step of the truth the map stays nearly flat
    df = spark.createDataFrame([(0.2,), (0.3,), (0.7,), (0.9,), (-5.0,), (5.0,)], "raw_score double")
    got = np.array([r[0] for r in df.selectExpr(f"{c.sql()} AS p").collect()])
    np.testing.assert_allclose(got, c.predict(np.array([0.2, 0.3, 0.7, 0.9, -5.0, 5.0])), rtol=1e-9)


def test_calibrator_refuses_one_class():
    with pytest.raises(ValueError, match="one class"):
        fit_calibrator([0.1, 0.2], [1.0, 1.0], seed=1)


def test_bootstrap_interval_covers_the_difference_and_detects_a_real_gap():
    s, y = _data(3000, 5)
    noisy = s + np.random.default_rng(9).normal(scale=1.5, size=len(s))
    gap = bootstrap_auc_difference(y, s, noisy, samples=300, seed=1)
    assert gap["difference"] == pytest.approx(auc(y, s) - auc(y, noisy), abs=1e-6)
    assert 0 < gap["ci95_low"] < gap["difference"] < gap["ci95_high"] and gap["samples"] == 300
    same = bootstrap_auc_difference(y, s, s * 2 + 1, samples=100, seed=1)
    assert same["difference"] == 0.0 and same["ci95_low"] == 0.0 and same["ci95_high"] == 0.0
