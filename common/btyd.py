"""Buy-till-you-die models: BG/NBD (repeat purchases) and Gamma-Gamma (spend per purchase).

Both are fitted by maximum likelihood on per-customer summaries:

- ``x``: repeat purchases (purchase days after the first) up to the cutoff,
- ``t_x``: time from the first to the last purchase,
- ``T``: time from the first purchase to the cutoff,
- ``m``: mean value of the repeat purchases (Gamma-Gamma only, customers with x > 0),

all times in the same unit (``period_days`` days; weeks in the papers). The fits run
on the driver with numpy/scipy (a few thousand to a few million summary rows are a
few small arrays); the summaries are built in Spark (:func:`customer_summary`) and
scoring runs in Spark through a pandas UDF (:func:`with_btyd_scores`), because the
expected-purchases formula needs the Gauss hypergeometric function.

References: Fader, Hardie & Lee (2005), "Counting your customers the easy way: an
alternative to the Pareto/NBD model", Marketing Science 24(2); Fader, Hardie & Lee
(2005), "RFM and CLV: using iso-value curves for customer base analysis", JMR 42(4);
Fader & Hardie (2013), "The Gamma-Gamma model of monetary value" (note).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from common.asof import on_or_before

# Summary column names (shared by the Spark summary, the fits and the scoring UDF).
X, T_X, T_CAL, MEAN_SPEND = "x", "t_x", "T", "mean_repeat_spend"


# ---------------------------------------------------------------------------- BG/NBD
@dataclass(frozen=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: purchase rates ~ Gamma(r, alpha), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x, t_x, T) -> np.ndarray:  # noqa: N803
    """Per-customer BG/NBD log-likelihood (FHL 2005, eq. 6), computed in logs for stability."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    a2 = betaln(a, b + x) - betaln(a, b)
    a3 = -(r + x) * np.log(alpha + T)
    # The second term exists only for repeat buyers (the customer may have died after t_x).
    with np.errstate(divide="ignore", invalid="ignore"):
        a4 = np.where(
            x > 0, np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return a1 + a2 + np.logaddexp(a3, a4)


def fit_bgnbd(x, t_x, T, start: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)) -> BgNbdParams:  # noqa: N803
    """Maximum-likelihood BG/NBD parameters (Nelder-Mead then L-BFGS on log-parameters).

    Raises:
        ValueError: when the data hold no customers or the optimiser does not converge.
    """
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if x.size == 0:
        raise ValueError("fit_bgnbd: no customers to fit")

    def nll(log_params: np.ndarray) -> float:
        r, alpha, a, b = np.exp(log_params)
        value = -float(np.sum(bgnbd_log_likelihood(r, alpha, a, b, x, t_x, T)))
        return value if np.isfinite(value) else 1e300

    # Nelder-Mead finds the basin robustly; L-BFGS polishes to a tight optimum.
    rough = minimize(nll, np.log(start), method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6})
    fine = minimize(nll, rough.x, method="L-BFGS-B")
    best = fine if fine.fun <= rough.fun else rough
    if not np.isfinite(best.fun) or best.fun >= 1e299:
        raise ValueError(f"fit_bgnbd: the optimiser did not converge ({best.message})")
    r, alpha, a, b = (float(v) for v in np.exp(best.x))
    return BgNbdParams(r, alpha, a, b, -float(best.fun))


def bgnbd_p_alive(p: BgNbdParams, x, t_x, T) -> np.ndarray:  # noqa: N803
    """P(customer still alive at T | x, t_x, T) (FHL 2005, eq. 11)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(
            x > 0,
            p.a / np.maximum(p.b + x - 1.0, 1e-300) * np.exp((p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + t_x))),
            0.0,
        )
    return 1.0 / (1.0 + ratio)


def bgnbd_expected_purchases(p: BgNbdParams, t: float, x, t_x, T) -> np.ndarray:  # noqa: N803
    """E[purchases in (T, T + t] | x, t_x, T] (FHL 2005, eq. 10)."""
    x, t_x, T = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    if t <= 0:
        return np.zeros_like(x)
    z = t / (p.alpha + T + t)
    growth = np.exp((p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + T + t)))
    hyp = hyp2f1(p.r + x, p.b + x, p.a + p.b + x - 1.0, z)
    numerator = (p.a + p.b + x - 1.0) / (p.a - 1.0) * (1.0 - growth * hyp)
    with np.errstate(divide="ignore", invalid="ignore"):
        dead = np.where(
            x > 0,
            p.a / np.maximum(p.b + x - 1.0, 1e-300) * np.exp((p.r + x) * (np.log(p.alpha + T) - np.log(p.alpha + t_x))),
            0.0,
        )
    return numerator / (1.0 + dead)


def bgnbd_expected_purchases_new(p: BgNbdParams, t) -> np.ndarray:
    """E[X(t)] for a customer just acquired (FHL 2005, eq. 9)."""
    t = np.asarray(t, dtype=float)
    hyp = hyp2f1(p.r, p.b, p.a + p.b - 1.0, t / (p.alpha + t))
    return (p.a + p.b - 1.0) / (p.a - 1.0) * (1.0 - (p.alpha / (p.alpha + t)) ** p.r * hyp)


# ---------------------------------------------------------------------------- Gamma-Gamma
@dataclass(frozen=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    p: float
    q: float
    v: float
    log_likelihood: float = float("nan")

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) for k, v in asdict(self).items()}


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x, m) -> np.ndarray:
    """Per-customer Gamma-Gamma log-likelihood of the mean spend ``m`` over ``x`` purchases
    (Fader & Hardie 2013, the density of the mean; x > 0 only)."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


def fit_gamma_gamma(x, m, start: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma parameters on customers with x > 0 and m > 0.

    Raises:
        ValueError: when no customer has a repeat purchase with a positive value.
    """
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    keep = (x > 0) & (m > 0)
    x, m = x[keep], m[keep]
    if x.size == 0:
        raise ValueError("fit_gamma_gamma: no customer with a repeat purchase of positive value")

    def nll(log_params: np.ndarray) -> float:
        value = -float(np.sum(gamma_gamma_log_likelihood(*np.exp(log_params), x, m)))
        return value if np.isfinite(value) else 1e300

    rough = minimize(nll, np.log(start), method="Nelder-Mead", options={"maxiter": 4000, "xatol": 1e-6})
    fine = minimize(nll, rough.x, method="L-BFGS-B")
    best = fine if fine.fun <= rough.fun else rough
    p, q, v = (float(k) for k in np.exp(best.x))
    return GammaGammaParams(p, q, v, -float(best.fun))


def gamma_gamma_expected_spend(g: GammaGammaParams, x, m) -> np.ndarray:
    """E[spend per purchase | x, m]: a weighted mean of the population mean and the
    customer's own mean (Fader, Hardie & Lee 2005, JMR); x = 0 gives the population mean."""
    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    m = np.where(x > 0, m, 0.0)
    return g.p * (g.v + x * m) / (g.p * x + g.q - 1.0)


# ---------------------------------------------------------------------------- Spark
def customer_summary(purchases: DataFrame, cutoff: date, period_days: float = 7.0) -> DataFrame:
    """Per-customer (x, t_x, T, mean_repeat_spend, first_purchase) as of the end of ``cutoff``.

    ``purchases`` holds ``user_key``, ``order_time`` and ``amount`` (one row per live
    purchase, e.g. :func:`common.churn_features.orders_as_of` filtered on
    ``is_purchase``). Purchases on the same day are one transaction, as in the BTYD
    literature (the model counts purchase occasions). Times are whole days since the
    first purchase day divided by ``period_days``; T counts the days from the first
    purchase day to the cutoff day (the convention that reproduces the published CDNOW
    fit on 1997-01-01..1997-09-30).
    """
    days = (
        purchases.where(F.col("user_key").isNotNull() & on_or_before("order_time", cutoff))
        .groupBy("user_key", F.to_date("order_time").alias("day"))
        .agg(F.sum("amount").cast("double").alias("value"))
    )
    first = days.groupBy("user_key").agg(F.min("day").alias("first_day"))
    joined = days.join(first, "user_key")
    repeat = F.col("day") > F.col("first_day")
    return (
        joined.groupBy("user_key", "first_day")
        .agg(
            F.sum(repeat.cast("int")).cast("double").alias(X),
            (F.max(F.datediff("day", "first_day")) / F.lit(period_days)).alias(T_X),
            F.datediff(F.lit(cutoff), F.first("first_day")).cast("double").alias("_T_days"),
            F.coalesce(F.avg(F.when(repeat, F.col("value"))), F.lit(0.0)).alias(MEAN_SPEND),
        )
        .select(
            "user_key",
            "first_day",
            X,
            T_X,
            (F.col("_T_days") / F.lit(period_days)).alias(T_CAL),
            MEAN_SPEND,
        )
    )


def summary_arrays(summary: DataFrame) -> pd.DataFrame:
    """The summary's numeric columns on the driver (for the fits)."""
    return summary.select(X, T_X, T_CAL, MEAN_SPEND).toPandas()


def with_btyd_scores(
    summary: DataFrame,
    bgnbd: BgNbdParams,
    horizon_periods: float,
    gamma_gamma: GammaGammaParams | None = None,
    prefix: str = "btyd_",
) -> DataFrame:
    """Adds ``<prefix>p_alive``, ``<prefix>expected_purchases`` (in the next
    ``horizon_periods``) and, with ``gamma_gamma``, ``<prefix>expected_spend``.

    A pandas UDF: the expected-purchases formula needs scipy's hypergeometric function.
    """
    p, g, horizon = bgnbd, gamma_gamma, float(horizon_periods)

    @F.pandas_udf("double")
    def p_alive(x: pd.Series, t_x: pd.Series, t_cal: pd.Series) -> pd.Series:
        return pd.Series(bgnbd_p_alive(p, x, t_x, t_cal))

    @F.pandas_udf("double")
    def expected(x: pd.Series, t_x: pd.Series, t_cal: pd.Series) -> pd.Series:
        return pd.Series(bgnbd_expected_purchases(p, horizon, x, t_x, t_cal))

    out = summary.withColumn(f"{prefix}p_alive", p_alive(X, T_X, T_CAL)).withColumn(
        f"{prefix}expected_purchases", expected(X, T_X, T_CAL)
    )
    if g is not None:
        out = out.withColumn(
            f"{prefix}expected_spend",
            F.lit(g.p) * (F.lit(g.v) + F.col(X) * F.col(MEAN_SPEND)) / (F.lit(g.p) * F.col(X) + F.lit(g.q - 1.0)),
        )
    return out


# ---------------------------------------------------------------------------- CLV
def discounted_expected_purchases(
    p: BgNbdParams,
    period: float,
    horizon_periods: int,
    discount_per_period: float,
    x,
    t_x,
    T,  # noqa: N803
) -> np.ndarray:
    """sum_{k=1..H} (E[Y(k period)] - E[Y((k-1) period)]) / (1 + d)^k: the purchases
    expected in each future period, each discounted to today."""
    total = np.zeros(np.shape(np.asarray(x, dtype=float)))
    previous = np.zeros_like(total)
    for k in range(1, horizon_periods + 1):
        cumulative = bgnbd_expected_purchases(p, k * period, x, t_x, T)
        total += (cumulative - previous) / (1.0 + discount_per_period) ** k
        previous = cumulative
    return total


def with_clv(
    summary: DataFrame,
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams | None,
    fallback_spend: float,
    period_days: int,
    horizon_periods: int,
    annual_discount_rate: float,
    margin: float,
    btyd_period_days: float = 7.0,
) -> DataFrame:
    """CLV = discounted BG/NBD expected purchases x expected spend per purchase x margin.

    Adds ``p_alive``, ``expected_transactions`` (undiscounted, over the horizon),
    ``discounted_transactions``, ``expected_spend`` (Gamma-Gamma; ``fallback_spend``
    when no Gamma-Gamma fit exists, e.g. no repeat buyer yet), ``margin`` and ``clv``.
    ``summary`` is a :func:`customer_summary` frame in ``btyd_period_days`` units; the
    horizon is ``horizon_periods`` periods of ``period_days``, discounted per period at
    (1 + annual rate)^(period_days / 365) - 1.
    """
    period = period_days / btyd_period_days
    d = (1.0 + annual_discount_rate) ** (period_days / 365.0) - 1.0
    horizon = horizon_periods * period
    p = bgnbd

    @F.pandas_udf("double")
    def discounted(x: pd.Series, t_x: pd.Series, t_cal: pd.Series) -> pd.Series:
        return pd.Series(discounted_expected_purchases(p, period, horizon_periods, d, x, t_x, t_cal))

    scored = with_btyd_scores(summary, bgnbd, horizon, gamma_gamma, prefix="_")
    spend = F.col("_expected_spend") if gamma_gamma is not None else F.lit(float(fallback_spend))
    return (
        scored.withColumnRenamed("_p_alive", "p_alive")
        .withColumnRenamed("_expected_purchases", "expected_transactions")
        .withColumn("discounted_transactions", discounted(X, T_X, T_CAL))
        .withColumn("expected_spend", spend)
        .withColumn("margin", F.lit(float(margin)))
        .withColumn("clv", F.col("discounted_transactions") * F.col("expected_spend") * F.col("margin"))
        .drop("_expected_spend")
    )
