"""Statistics for campaign tests: two-proportion z-test, Welch's t-test, bootstrap,
uplift with an interval, minimum detectable effect and sample size, power.

The normal and Student's t distributions are scipy.stats'; numpy draws the
bootstrap. The tests check the formulas against worked textbook examples and
against scipy's own tests (``ttest_ind``, ``binomtest``) where scipy has one.

Conventions: ``t`` is the treatment, ``c`` the reference (control or variant A);
differences are ``t - c``; intervals are two-sided at ``1 - alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, norm
from scipy.stats import t as student_t


# scipy.stats' functions returning Python floats: numpy.float64 results would reach
# Spark rows, whose DoubleType refuses them.
def norm_cdf(x: float) -> float:
    return float(norm.cdf(x))


def norm_sf(x: float) -> float:
    return float(norm.sf(x))


def norm_ppf(p: float) -> float:
    return float(norm.ppf(p))


def t_sf(t: float, df: float) -> float:
    return float(student_t.sf(t, df))


def t_ppf(p: float, df: float) -> float:
    return float(student_t.ppf(p, df))


# ----------------------------------------------------------------------------- tests


@dataclass(frozen=True)
class Comparison:
    """One comparison of treatment against reference.

    Attributes:
        estimate_t, estimate_c: the groups' rates or means.
        diff: ``estimate_t - estimate_c``.
        ci_low, ci_high: interval for ``diff``.
        statistic: z or t.
        p_value: two-sided.
        df: degrees of freedom (Welch) or None.
    """

    estimate_t: float
    estimate_c: float
    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    df: float | None = None

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha


def _check_counts(x: int, n: int, name: str) -> None:
    if n <= 0 or x < 0 or x > n:
        raise ValueError(f"{name}: need 0 <= successes <= trials and trials > 0, got {x}/{n}")


def wilson_interval(x: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for a proportion."""
    _check_counts(x, n, "wilson_interval")
    ci = binomtest(x, n).proportion_ci(confidence_level=1 - alpha, method="wilson")
    return float(ci.low), float(ci.high)


def two_proportion_ztest(
    x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = 0.05, interval: str = "wald"
) -> Comparison:
    """Two-sided z-test of equal proportions (pooled standard error under H0).

    Args:
        x_t, n_t: treatment successes and trials.
        x_c, n_c: reference successes and trials.
        alpha: 1 - confidence of the interval.
        interval: ``wald`` (unpooled normal interval, the textbook one) or
            ``newcombe`` (Newcombe's hybrid score interval from two Wilson intervals,
            which keeps its coverage with few successes; used by the campaign job).
    """
    _check_counts(x_t, n_t, "treatment")
    _check_counts(x_c, n_c, "reference")
    p_t, p_c = x_t / n_t, x_c / n_c
    diff = p_t - p_c
    pooled = (x_t + x_c) / (n_t + n_c)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_t + 1 / n_c))
    z = diff / se0 if se0 > 0 else 0.0
    p_value = 2 * norm_sf(abs(z)) if se0 > 0 else 1.0
    if interval == "wald":
        half = norm_ppf(1 - alpha / 2) * math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
        low, high = diff - half, diff + half
    elif interval == "newcombe":
        l_t, u_t = wilson_interval(x_t, n_t, alpha)
        l_c, u_c = wilson_interval(x_c, n_c, alpha)
        low = diff - math.sqrt((p_t - l_t) ** 2 + (u_c - p_c) ** 2)
        high = diff + math.sqrt((u_t - p_t) ** 2 + (p_c - l_c) ** 2)
    else:
        raise ValueError(f"interval must be 'wald' or 'newcombe', got {interval!r}")
    return Comparison(p_t, p_c, diff, low, high, z, p_value)


def welch_ttest_from_stats(
    mean_t: float, var_t: float, n_t: int, mean_c: float, var_c: float, n_c: int, alpha: float = 0.05
) -> Comparison:
    """Welch's unequal-variance t-test from group means, sample variances (ddof=1) and sizes,
    so Spark can aggregate and only three numbers per group reach the driver."""
    if n_t < 2 or n_c < 2:
        raise ValueError(f"Welch's t-test needs at least 2 observations per group, got {n_t} and {n_c}")
    diff = mean_t - mean_c
    a, b = var_t / n_t, var_c / n_c
    se = math.sqrt(a + b)
    if se == 0:
        # Both groups constant: no uncertainty left; the difference is exact.
        return Comparison(mean_t, mean_c, diff, diff, diff, 0.0 if diff == 0 else math.copysign(math.inf, diff),
                          1.0 if diff == 0 else 0.0, math.inf)  # fmt: skip
    df = (a + b) ** 2 / (a * a / (n_t - 1) + b * b / (n_c - 1))
    t = diff / se
    p_value = min(1.0, 2 * t_sf(abs(t), df))
    half = t_ppf(1 - alpha / 2, df) * se
    return Comparison(mean_t, mean_c, diff, diff - half, diff + half, t, p_value, df)


def welch_ttest(treatment: Sequence[float], reference: Sequence[float], alpha: float = 0.05) -> Comparison:
    """Welch's t-test on two samples."""
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(reference, dtype=float)
    if len(t) < 2 or len(c) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 observations per group, got {len(t)} and {len(c)}")
    return welch_ttest_from_stats(
        float(t.mean()), float(t.var(ddof=1)), len(t), float(c.mean()), float(c.var(ddof=1)), len(c), alpha
    )


def bootstrap_mean_diff(
    treatment: Sequence[float],
    reference: Sequence[float],
    resamples: int = 2000,
    seed: int = 42,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Percentile bootstrap interval of ``mean(treatment) - mean(reference)`` (e.g. revenue
    per recipient, which is mostly zeros and far from normal). Fixed seed: reproducible.

    Returns:
        (difference of means, interval low, interval high).
    """
    t = np.asarray(treatment, dtype=float)
    c = np.asarray(reference, dtype=float)
    if len(t) == 0 or len(c) == 0:
        raise ValueError("bootstrap needs at least one observation per group")
    rng = np.random.Generator(np.random.PCG64(seed))
    diffs = np.empty(resamples)
    # Chunks keep the index matrices small for large audiences.
    chunk = max(1, 2_000_000 // max(len(t), len(c)))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        mt = t[rng.integers(0, len(t), size=(k, len(t)))].mean(axis=1)
        mc = c[rng.integers(0, len(c), size=(k, len(c)))].mean(axis=1)
        diffs[start : start + k] = mt - mc
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    return float(t.mean() - c.mean()), float(low), float(high)


@dataclass(frozen=True)
class Uplift:
    """Relative uplift ``p_t / p_c - 1`` with an interval (None when undefined)."""

    relative: float | None
    ci_low: float | None
    ci_high: float | None


def relative_uplift(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = 0.05) -> Uplift:
    """Uplift of treatment over control as a ratio minus one, with the Katz log risk-ratio
    interval. Undefined (None) when either group has no successes."""
    _check_counts(x_t, n_t, "treatment")
    _check_counts(x_c, n_c, "reference")
    if x_t == 0 or x_c == 0:
        return Uplift(None, None, None)
    rr = (x_t / n_t) / (x_c / n_c)
    se = math.sqrt(1 / x_t - 1 / n_t + 1 / x_c - 1 / n_c)
    z = norm_ppf(1 - alpha / 2)
    return Uplift(rr - 1, rr * math.exp(-z * se) - 1, rr * math.exp(z * se) - 1)


# ----------------------------------------------------------------------------- planning


def mde_two_proportions(p_base: float, n_t: int, n_c: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute lift over ``p_base`` a two-sided test at ``alpha`` detects with
    probability ``power`` given the group sizes: the ``d`` solving
    ``d / sqrt(p(1-p)/n_c + (p+d)(1-p-d)/n_t) = z(1-alpha/2) + z(power)`` (bisection), i.e.
    :func:`power_two_proportions` at ``p_base + d`` equals ``power``."""
    if not 0 < p_base < 1:
        raise ValueError(f"baseline rate must be in (0, 1), got {p_base}")
    if n_t <= 0 or n_c <= 0:
        raise ValueError(f"group sizes must be positive, got {n_t} and {n_c}")
    z = norm_ppf(1 - alpha / 2) + norm_ppf(power)

    def gap(d: float) -> float:
        p_t = p_base + d
        return d - z * math.sqrt(p_base * (1 - p_base) / n_c + p_t * (1 - p_t) / n_t)

    lo, hi = 0.0, 1.0 - p_base
    if gap(hi) < 0:
        return hi  # not even the largest possible lift is detectable
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gap(mid) < 0 else (lo, mid)
    return hi


def mde_two_means(sd: float, n_t: int, n_c: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute difference in means detectable with the given standard deviation and sizes."""
    if n_t <= 0 or n_c <= 0:
        raise ValueError(f"group sizes must be positive, got {n_t} and {n_c}")
    return (norm_ppf(1 - alpha / 2) + norm_ppf(power)) * sd * math.sqrt(1 / n_t + 1 / n_c)


def sample_size_two_proportions(
    p_c: float, p_t: float, alpha: float = 0.05, power: float = 0.8, ratio: float = 1.0
) -> tuple[int, int]:
    """Group sizes (reference, treatment) to detect ``p_t`` against ``p_c`` (Fleiss, no
    continuity correction; ``ratio`` = treatment size / reference size).

    Worked value: p_c 0.10, p_t 0.15, alpha 0.05, power 0.8 -> 686 per group.
    """
    for p in (p_c, p_t):
        if not 0 < p < 1:
            raise ValueError(f"rates must be in (0, 1), got {p}")
    if p_c == p_t:
        raise ValueError("rates are equal: no sample size detects a zero difference")
    p_bar = (p_c + ratio * p_t) / (1 + ratio)
    z_a, z_b = norm_ppf(1 - alpha / 2), norm_ppf(power)
    null_sd = math.sqrt(p_bar * (1 - p_bar) * (1 + 1 / ratio))
    alt_sd = math.sqrt(p_c * (1 - p_c) + p_t * (1 - p_t) / ratio)
    n_c = (z_a * null_sd + z_b * alt_sd) ** 2 / (p_t - p_c) ** 2
    n_c_int = math.ceil(n_c - 1e-9)
    return n_c_int, math.ceil(ratio * n_c_int - 1e-9)


def power_two_proportions(p_c: float, p_t: float, n_t: int, n_c: int, alpha: float = 0.05) -> float:
    """Probability a two-sided z-test at ``alpha`` detects the true rates ``p_t`` vs ``p_c``
    (normal approximation, the far tail ignored)."""
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    if se == 0:
        return 1.0 if p_t != p_c else alpha
    return norm_cdf(abs(p_t - p_c) / se - norm_ppf(1 - alpha / 2))


def underpowered_warning(
    p_base: float, n_t: int, n_c: int, min_relative_effect: float, alpha: float = 0.05, target_power: float = 0.8
) -> str | None:
    """A one-line warning when the groups are too small to detect ``min_relative_effect``
    (e.g. 0.2 = a 20% lift) with ``target_power``; None when the design is adequate."""
    if not 0 < p_base < 1:
        return f"baseline rate {p_base:.4f} leaves the test without power (no or only conversions)"
    p_t = min(p_base * (1 + min_relative_effect), 0.999999)
    power = power_two_proportions(p_base, p_t, n_t, n_c, alpha)
    if power >= target_power:
        return None
    need_c, need_t = sample_size_two_proportions(p_base, p_t, alpha, target_power, ratio=n_t / n_c)
    return (
        f"underpowered: power {power:.2f} < {target_power:.2f} to detect a {min_relative_effect:.0%} lift on "
        f"{p_base:.4f} with {n_t}/{n_c} recipients; about {need_t}/{need_c} are needed"
    )
