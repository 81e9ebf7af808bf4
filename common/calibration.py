"""Ranking-preserving probability calibration and a bootstrap for ROC-AUC differences.

A churn model is judged twice: its ranking (ROC-AUC, lift) on the raw scores, and its
probabilities (calibration) after a monotone map fitted on validation labels. The map
must keep the ranking: plain isotonic regression outputs steps, and customers tied on
a step lose the order the model gave them (ROC-AUC and lift drop). Two maps are fitted
here, each strictly increasing in the raw score:

- Platt scaling: ``sigmoid(a * z + b)`` with ``z`` the standardised raw score;
- isotonic with ties broken by the raw score: the isotonic fit interpolated linearly
  between its block centres, plus ``TIE_BREAK`` x ``sigmoid(z)`` (a ten-thousandth of
  probability, enough for a strict order, far too small to show in calibration).

The one with the lower cross-validated log-loss on the validation rows is used. The
fitted map is a Spark SQL expression of ``raw_score``, so it can be saved as a
``SQLTransformer`` stage of the published pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression, minimize
from scipy.stats import rankdata

TIE_BREAK = 1e-4
EPS = 1e-6  # probabilities are clipped to [EPS, 1 - EPS] for the log-loss


@dataclass(frozen=True)
class Calibrator:
    """A fitted monotone map from ``raw_score`` to a probability."""

    method: str  # "platt" | "isotonic"
    mean: float
    scale: float
    platt: tuple[float, float] = (1.0, 0.0)
    knots: tuple[tuple[float, float], ...] = ()
    info: dict[str, Any] = field(default_factory=dict)

    def z(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=float) - self.mean) / self.scale

    def predict(self, scores) -> np.ndarray:
        """The probabilities (numpy twin of :meth:`sql`)."""
        z = self.z(scores)
        if self.method == "platt":
            return _sigmoid(self.platt[0] * z + self.platt[1])
        xs, ys = (np.array(k) for k in zip(*self.knots))
        return (1.0 - TIE_BREAK) * np.interp(z, xs, ys) + TIE_BREAK * _sigmoid(z)

    def sql(self, score: str = "raw_score") -> str:
        """The same map as a Spark SQL expression of the column ``score``."""
        z = f"(({score} - {self.mean!r}) / {self.scale!r})"
        if self.method == "platt":
            a, b = self.platt
            return f"1.0 / (1.0 + EXP(-({a!r} * {z} + {b!r})))"
        cases = [f"WHEN {z} <= {self.knots[0][0]!r} THEN {self.knots[0][1]!r}"]
        for (x0, y0), (x1, y1) in zip(self.knots, self.knots[1:]):
            slope = (y1 - y0) / (x1 - x0)
            cases.append(f"WHEN {z} <= {x1!r} THEN {y0!r} + ({z} - {x0!r}) * {slope!r}")
        iso = f"CASE {' '.join(cases)} ELSE {self.knots[-1][1]!r} END"
        return f"{1.0 - TIE_BREAK!r} * ({iso}) + {TIE_BREAK!r} / (1.0 + EXP(-{z}))"


def _sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def log_loss(labels, probabilities) -> float:
    """Mean binary log-loss, probabilities clipped to [EPS, 1 - EPS]."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def _fit_platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    def nll(ab: np.ndarray) -> float:
        m = ab[0] * z + ab[1]
        # log(1 + e^m) - y m, stable for large |m|
        return float(np.mean(np.logaddexp(0.0, m) - y * m))

    res = minimize(nll, np.array([1.0, 0.0]), method="BFGS")
    return float(res.x[0]), float(res.x[1])


def _fit_isotonic(z: np.ndarray, y: np.ndarray) -> tuple[tuple[float, float], ...]:
    # Tied scores are one point (weighted by their count), so a tie group is never split.
    values, inverse, counts = np.unique(z, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / counts
    fit = isotonic_regression(means, weights=counts, increasing=True)
    knots = []
    for start, end in zip(fit.blocks[:-1], fit.blocks[1:]):
        centre = float(np.average(values[start:end], weights=counts[start:end]))
        knots.append((centre, float(fit.x[start])))
    if len(knots) == 1:  # one block: a constant, drawn as a flat segment around it
        knots = [(knots[0][0] - 1.0, knots[0][1]), (knots[0][0] + 1.0, knots[0][1])]
    return tuple(knots)


def _fit(method: str, scores: np.ndarray, y: np.ndarray, mean: float, scale: float) -> Calibrator:
    z = (scores - mean) / scale
    if method == "platt":
        return Calibrator("platt", mean, scale, platt=_fit_platt(z, y))
    return Calibrator("isotonic", mean, scale, knots=_fit_isotonic(z, y))


def fit_calibrator(scores, labels, seed: int, folds: int = 5) -> Calibrator:
    """Platt or tie-broken isotonic, whichever has the lower ``folds``-fold
    cross-validated log-loss on these (validation) rows; refitted on all of them.

    Raises:
        ValueError: when the rows hold only one class (nothing to calibrate against).
    """
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError("fit_calibrator: the validation labels hold one class only")
    mean, scale = float(np.mean(s)), float(np.std(s)) or 1.0
    order = np.random.default_rng(seed).permutation(len(s))
    losses = {}
    for method in ("platt", "isotonic"):
        predicted = np.empty(len(s))
        for k in range(folds):
            held = order[k::folds]
            kept = np.setdiff1d(order, held)
            predicted[held] = _fit(method, s[kept], y[kept], mean, scale).predict(s[held])
        losses[method] = round(log_loss(y, predicted), 6)
    method = min(losses, key=lambda m: (losses[m], m != "platt"))
    chosen = _fit(method, s, y, mean, scale)
    return Calibrator(chosen.method, mean, scale, chosen.platt, chosen.knots, {"cv_log_loss": losses, "chosen": method})


# ---------------------------------------------------------------------------- ROC-AUC
def auc(labels, scores) -> float:
    """ROC-AUC by the rank-sum (Mann-Whitney) formula; ties count one half."""
    y = np.asarray(labels, dtype=float)
    ranks = rankdata(np.asarray(scores, dtype=float))
    pos = y == 1.0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def bootstrap_auc_difference(labels, scores_a, scores_b, samples: int, seed: int) -> dict[str, float]:
    """ROC-AUC(a) - ROC-AUC(b) on the same rows, with a percentile bootstrap 95% interval
    (rows resampled with replacement, both scores on the same resample)."""
    y, a, b = (np.asarray(v, dtype=float) for v in (labels, scores_a, scores_b))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(samples):
        idx = rng.integers(0, len(y), len(y))
        d = auc(y[idx], a[idx]) - auc(y[idx], b[idx])
        if np.isfinite(d):
            diffs.append(d)
    low, high = np.percentile(diffs, [2.5, 97.5]) if diffs else (float("nan"), float("nan"))
    return {
        "difference": round(auc(y, a) - auc(y, b), 6),
        "ci95_low": round(float(low), 6),
        "ci95_high": round(float(high), 6),
        "samples": len(diffs),
    }
