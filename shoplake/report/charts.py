"""The run report's charts (matplotlib), drawn from the metrics the jobs logged."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from common.charts import figure


# ---------------------------------------------------------------------------- charts (matplotlib)
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _points(value: Any, x_keys: Iterable[str], y_keys: Iterable[str]) -> list[tuple[float, float]]:
    """(x, y) pairs from a list of dicts (first matching key each) or a dict of two lists."""
    x_keys, y_keys = list(x_keys), list(y_keys)
    if isinstance(value, Mapping):
        xs = next((value[k] for k in x_keys if isinstance(value.get(k), list)), None)
        ys = next((value[k] for k in y_keys if isinstance(value.get(k), list)), None)
        pairs = list(zip(xs or [], ys or []))
    elif isinstance(value, list):
        pairs = []
        for item in value:
            if isinstance(item, Mapping):
                x = next((item[k] for k in x_keys if k in item), None)
                y = next((item[k] for k in y_keys if k in item), None)
                pairs.append((x, y))
    else:
        return []
    return [(float(x), float(y)) for x, y in pairs if _num(x) is not None and _num(y) is not None]


def _find(metrics: Mapping[str, Any], *names: str) -> Any:
    """The first value under one of ``names``, at the top level or one level down."""
    for name in names:
        if name in metrics:
            return metrics[name]
    for value in metrics.values():
        if isinstance(value, Mapping):
            for name in names:
                if name in value:
                    return value[name]
    return None


def roc_chart(metrics: Mapping[str, Any]):
    """``roc``: [{fpr, tpr}, ...] (or {fpr: [...], tpr: [...]}), with the AUC when logged."""
    pts = sorted(_points(_find(metrics, "roc", "roc_curve"), ["fpr", "false_positive_rate", "x"], ["tpr", "y"]))
    if len(pts) < 2:
        return None
    fig = figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label="model")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="random")
    auc = _num(_find(metrics, "roc_auc", "auc"))
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("ROC" + (f" (AUC {auc:.3f})" if auc is not None else ""))
    ax.legend(loc="lower right")
    return fig


def calibration_chart(metrics: Mapping[str, Any]):
    """``calibration``: [{bin, mean_predicted, observed}, ...]."""
    pts = _points(
        _find(metrics, "calibration"), ["mean_predicted", "predicted", "mean_probability"], ["observed", "actual"]
    )
    if len(pts) < 2:
        return None
    fig = figure(4.6, 4.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label="model")
    ax.set(xlabel="mean predicted probability", ylabel="observed rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Calibration")
    ax.legend(loc="upper left")
    return fig


def lift_chart(metrics: Mapping[str, Any]):
    """``lift`` / ``lift_by_decile``: [{decile, lift}, ...]."""
    pts = sorted(_points(_find(metrics, "lift_by_decile", "lift", "lift_curve"), ["decile", "bin", "x"], ["lift", "y"]))
    if not pts:
        return None
    fig = figure(5.2, 3.4)
    ax = fig.add_subplot()
    ax.bar([p[0] for p in pts], [p[1] for p in pts], color="#4c72b0")
    ax.axhline(1.0, linestyle="--", color="grey")
    ax.set(xlabel="decile (1 = highest scores)", ylabel="lift", title="Lift by decile")
    return fig


def comparison_chart(metrics: Mapping[str, Any]):
    """Model vs baselines: the first dict of dicts whose members share numeric metrics,
    e.g. ``{"als": {"precision@10": ...}, "popularity": {...}}``, as grouped bars."""
    candidates = [metrics, *[v for v in metrics.values() if isinstance(v, Mapping)]]
    for cand in candidates:
        groups = {k: v for k, v in cand.items() if isinstance(v, Mapping)}
        if len(groups) < 2:
            continue
        shared = set.intersection(*[{m for m, x in g.items() if _num(x) is not None} for g in groups.values()])
        if not shared:
            continue
        names = sorted(shared)[:8]
        fig = figure(6.4, 3.4)
        ax = fig.add_subplot()
        width = 0.8 / len(groups)
        for i, (label, values) in enumerate(groups.items()):
            ax.bar([j + i * width for j in range(len(names))], [float(values[n]) for n in names], width, label=label)
        ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(names))], names, rotation=20)
        ax.set_title("Model vs baselines")
        ax.legend()
        return fig
    return None


def interval_chart(metrics: Mapping[str, Any]):
    """Estimates with confidence intervals: any list of dicts carrying an estimate and
    (ci_low, ci_high) or (lower, upper), e.g. campaign effects per variant."""
    bounds = (("ci_low", "ci_high"), ("lower", "upper"), ("ci_lower", "ci_upper"))
    for value in [metrics, *metrics.values()]:
        items = value if isinstance(value, list) else None
        if isinstance(value, Mapping):
            items = next((v for v in value.values() if isinstance(v, list)), None)
        if not items or not all(isinstance(i, Mapping) for i in items):
            continue
        keys = next((b for b in bounds if all(b[0] in i and b[1] in i for i in items)), None)
        if keys is None:
            continue
        rows = []
        for i, item in enumerate(items):
            label = next(
                (str(item[k]) for k in ("label", "variant", "campaign_id", "name", "arm") if k in item), str(i)
            )
            if "campaign_id" in item and "variant" in item:
                label = f"{item['campaign_id']} {item['variant']}"
            lo, hi = _num(item[keys[0]]), _num(item[keys[1]])
            est = next((_num(item[k]) for k in ("estimate", "effect", "uplift", "lift", "rate") if k in item), None)
            if lo is not None and hi is not None:
                rows.append((label, lo, hi, est if est is not None else (lo + hi) / 2))
        if not rows:
            continue
        fig = figure(6.4, 0.5 + 0.45 * len(rows))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))
        ax.errorbar(
            [r[3] for r in rows],
            ys,
            xerr=[[r[3] - r[1] for r in rows], [r[2] - r[3] for r in rows]],
            fmt="o",
            capsize=4,
        )
        ax.axvline(0, linestyle="--", color="grey")
        ax.set_yticks(ys, [r[0] for r in rows])
        ax.set_title("Estimates with intervals")
        return fig
    return None


def silhouette_chart(metrics: Mapping[str, Any]):
    """``silhouette``: {k: score} or [{k, silhouette}, ...]."""
    value = _find(metrics, "silhouette_by_k", "silhouette")
    if isinstance(value, Mapping) and all(_num(k) is not None for k in value):
        pts = sorted((float(k), float(v)) for k, v in value.items() if _num(v) is not None)
    else:
        pts = sorted(_points(value, ["k"], ["silhouette", "score"]))
    if len(pts) < 2:
        return None
    fig = figure(4.8, 3.2)
    ax = fig.add_subplot()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
    ax.set(xlabel="k", ylabel="silhouette", title="Silhouette by number of segments")
    return fig


def match_weight_chart(metrics: Mapping[str, Any]):
    """clean's ``identity.match_weights``: {comparison: {level: weight}}, one bar per
    level (log2 Bayes factor; right of zero is evidence for the same person)."""
    weights = (metrics.get("identity") or {}).get("match_weights")
    if not isinstance(weights, Mapping):
        return None
    bars = [
        (f"{comparison}: {level}", float(w))
        for comparison, levels in weights.items()
        for level, w in levels.items()
        if _num(w) is not None
    ]
    if not bars:
        return None
    fig = figure(6.4, 0.6 + 0.28 * len(bars))
    ax = fig.add_subplot()
    ys = list(range(len(bars)))[::-1]
    ax.barh(ys, [w for _, w in bars], color=["#4c72b0" if w >= 0 else "#c44e52" for _, w in bars])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(ys, [label for label, _ in bars], fontsize=7)
    ax.set(xlabel="match weight (log2 Bayes factor)", title="Identity model: match weight per comparison level")
    return fig


ChartFn = Callable[[Mapping[str, Any]], Any]

# Charts drawn from a job's run-log metrics, by job: each function returns a Figure, or
# None when the metrics it reads are absent. Add a job's charts here; the tables of the
# generic renderer are shown either way.
CHARTS: dict[str, list[ChartFn]] = {
    "clean": [match_weight_chart],
    "segment": [silhouette_chart],
    "recommend": [comparison_chart],
    "churn": [roc_chart, calibration_chart, lift_chart],
    "campaign": [interval_chart, comparison_chart],
}
