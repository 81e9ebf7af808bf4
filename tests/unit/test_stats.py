"""common.stats against worked textbook values and against scipy's own tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from common import stats


def test_worked_two_proportion_ztest():
    """Worked example: 45/300 vs 30/300. Pooled p = 75/600 = 0.125,
    SE0 = sqrt(0.125 * 0.875 * (2/300)) = 0.027003, z = 0.05 / 0.027003 = 1.8516,
    two-sided p = 0.0641; Wald SE = sqrt(.15*.85/300 + .1*.9/300) = 0.026926,
    95% CI 0.05 +- 1.95996 * 0.026926 = [-0.00277, 0.10277]."""
    r = stats.two_proportion_ztest(45, 300, 30, 300)
    assert r.diff == pytest.approx(0.05)
    assert r.statistic == pytest.approx(1.8516, abs=1e-4)
    assert r.p_value == pytest.approx(0.0641, abs=1e-4)
    assert (r.ci_low, r.ci_high) == pytest.approx((-0.00277, 0.10277), abs=1e-5)
    assert not r.significant(0.05) and r.significant(0.10)
    # The same computed independently with scipy's normal distribution.
    se0 = math.sqrt(0.125 * 0.875 * (1 / 300 + 1 / 300))
    assert r.p_value == pytest.approx(2 * sps.norm.sf(0.05 / se0), rel=1e-12)
    half = sps.norm.ppf(0.975) * math.sqrt(0.15 * 0.85 / 300 + 0.1 * 0.9 / 300)
    assert (r.ci_low, r.ci_high) == pytest.approx((0.05 - half, 0.05 + half), rel=1e-12)


def test_newcombe_interval_worked_value():
    """Newcombe (1998) Table II example (method 10): 56/70 vs 48/80 -> [0.0524, 0.3339]."""
    r = stats.two_proportion_ztest(56, 70, 48, 80, interval="newcombe")
    assert (r.ci_low, r.ci_high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    # Wilson interval of one proportion against Wilson's (1927) formula, written out.
    lo, hi = stats.wilson_interval(56, 70)
    z, n, p = 1.959963984540054, 70, 0.8
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (lo, hi) == pytest.approx((centre - half, centre + half), rel=1e-12)


def test_ztest_edge_cases():
    r = stats.two_proportion_ztest(0, 50, 0, 50)
    assert r.p_value == 1.0 and r.diff == 0.0
    with pytest.raises(ValueError, match="treatment"):
        stats.two_proportion_ztest(5, 4, 1, 10)
    with pytest.raises(ValueError, match="interval"):
        stats.two_proportion_ztest(1, 10, 1, 10, interval="exact")


def test_welch_matches_scipy_on_samples():
    rng = np.random.default_rng(3)
    a = rng.normal(10.0, 2.0, 31)
    b = rng.normal(11.0, 5.0, 47)
    r = stats.welch_ttest(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.df == pytest.approx(ref.df, rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_welch_worked_value():
    """The worked example 1 of Wikipedia's "Welch's t-test" article: A1 = 27.5 21.0 ... 21.4,
    A2 = 27.1 22.0 ... 24.4 (15 each) -> t = -2.46, df = 24.99, p = 0.021 (printed rounding)."""
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    r = stats.welch_ttest(a, b)
    assert round(r.statistic, 2) == -2.46 and round(r.df, 2) == 24.99 and round(r.p_value, 3) == 0.021
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)


def test_welch_from_stats_equals_samples_and_needs_two_values():
    a, b = [1.0, 2.0, 4.0, 8.0], [0.0, 0.0, 1.0]
    from_stats = stats.welch_ttest_from_stats(
        np.mean(a), np.var(a, ddof=1), len(a), np.mean(b), np.var(b, ddof=1), len(b)
    )
    assert from_stats == stats.welch_ttest(a, b)
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_ttest([1.0], [1.0, 2.0])
    constant = stats.welch_ttest([2.0, 2.0], [2.0, 2.0])
    assert constant.p_value == 1.0 and constant.diff == 0.0


def test_bootstrap_is_seeded_and_brackets_the_difference():
    rng = np.random.default_rng(11)
    # Revenue per recipient: mostly zeros, a few large orders.
    t = np.where(rng.random(400) < 0.08, rng.gamma(2.0, 60.0, 400), 0.0)
    c = np.where(rng.random(400) < 0.05, rng.gamma(2.0, 60.0, 400), 0.0)
    first = stats.bootstrap_mean_diff(t, c, resamples=3000, seed=7)
    assert first == stats.bootstrap_mean_diff(t, c, resamples=3000, seed=7)
    assert first != stats.bootstrap_mean_diff(t, c, resamples=3000, seed=8)
    diff, low, high = first
    assert diff == pytest.approx(t.mean() - c.mean())
    assert low < diff < high
    # scipy's percentile bootstrap of the same statistic agrees to resampling noise.
    ref = sps.bootstrap(
        (t, c), lambda x, y, axis: x.mean(axis=axis) - y.mean(axis=axis), n_resamples=3000,
        method="percentile", random_state=1, vectorized=True,
    ).confidence_interval  # fmt: skip
    width = high - low
    assert abs(low - ref.low) < 0.1 * width and abs(high - ref.high) < 0.1 * width


def test_relative_uplift_katz_interval():
    """45/300 vs 30/300: risk ratio 1.5, SE(log RR) = sqrt(1/45 - 1/300 + 1/30 - 1/300) = 0.22111,
    95% CI exp(log 1.5 +- 1.96 * 0.22111) = [0.9725, 2.3137] -> uplift [-0.0275, 1.3137]."""
    u = stats.relative_uplift(45, 300, 30, 300)
    assert u.relative == pytest.approx(0.5)
    assert (u.ci_low, u.ci_high) == pytest.approx((-0.0275, 1.3137), abs=1e-4)
    se = math.sqrt(1 / 45 - 1 / 300 + 1 / 30 - 1 / 300)
    assert u.ci_high == pytest.approx(1.5 * math.exp(sps.norm.ppf(0.975) * se) - 1, rel=1e-12)
    assert stats.relative_uplift(0, 100, 5, 100) == stats.Uplift(None, None, None)


def test_sample_size_worked_value_and_mde_roundtrip():
    # Fleiss without continuity correction: 10% vs 15%, alpha 0.05, power 0.8 -> 686 per group.
    assert stats.sample_size_two_proportions(0.10, 0.15) == (686, 686)
    # 2:1 allocation needs fewer reference and more treatment recipients.
    n_c, n_t = stats.sample_size_two_proportions(0.10, 0.15, ratio=2.0)
    assert n_t == math.ceil(2 * n_c) and n_c < 686 < n_t
    # MDE: at p + mde the power is exactly 0.8, checked with scipy's normal distribution.
    mde = stats.mde_two_proportions(0.05, 1000, 1000)
    se = math.sqrt(0.05 * 0.95 / 1000 + (0.05 + mde) * (0.95 - mde) / 1000)
    assert sps.norm.cdf(mde / se - sps.norm.ppf(0.975)) == pytest.approx(0.8, abs=1e-9)
    assert stats.power_two_proportions(0.05, 0.05 + mde, 1000, 1000) == pytest.approx(0.8, abs=1e-9)
    # A little above the equal-variance textbook formula (the lifted rate varies more).
    textbook = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * math.sqrt(0.05 * 0.95 * 2 / 1000)
    assert textbook < mde < 1.2 * textbook
    # Sample size and MDE are inverse: at the MDE for 686 per group, 10% -> ~15%.
    assert stats.mde_two_proportions(0.10, 686, 686) == pytest.approx(0.05, abs=0.001)
    assert stats.mde_two_means(10.0, 100, 100) == pytest.approx(2.8 * 10 * math.sqrt(0.02), rel=1e-3)


def test_underpowered_warning():
    warn = stats.underpowered_warning(0.04, 70, 70, 0.2)
    assert warn is not None and warn.startswith("underpowered: power 0.0")
    assert stats.underpowered_warning(0.04, 20_000, 20_000, 0.2) is None
    assert "baseline" in stats.underpowered_warning(0.0, 100, 100, 0.2)


def test_results_are_python_floats_for_spark_rows():
    # Spark's DoubleType refuses numpy.float64, which scipy.stats returns.
    r = stats.two_proportion_ztest(45, 300, 30, 300)
    w = stats.welch_ttest([1.0, 2.0, 4.0], [0.5, 0.7, 0.2])
    values = [r.p_value, r.ci_low, w.p_value, w.ci_high, stats.power_two_proportions(0.1, 0.15, 500, 500),
              stats.mde_two_proportions(0.1, 500, 500), *stats.wilson_interval(5, 20)]  # fmt: skip
    assert [type(v) for v in values] == [float] * len(values)
