"""The churn job's Markdown report."""

from __future__ import annotations

import json
from typing import Any

from common import markdown
from common.artifacts import report_path
from common.config import ShopLakeConfig
from jobs.churn.evaluation import summary_row
from jobs.churn.models import BASELINES


# ---------------------------------------------------------------------------- report
def render_report(report: dict[str, Any]) -> str:
    """The evaluation report as Markdown: protocol, candidates, baselines, calibration, CLV check."""
    m, published = report["model"], report["published"]
    best_name = report["best_baseline"]["name"]
    lines = [
        f"# Churn model report, as of {report['as_of']}",
        "",
        f"Model version `{report['model_version']}`; run `{report['run_id']}`.",
        "",
        *_protocol_section(report["protocol"]),
        "",
        *_published_summary(report),
        "",
        *_candidates_section(report["candidates"], published),
        "",
        *_baselines_section(report["baselines"]),
        "",
        *_deciles_section(f"published ({published}), raw scores", m["deciles"]),
        "",
        *_deciles_section(f"strongest baseline ({best_name})", report["baselines"][best_name]["deciles"]),
        "",
        *_calibration_section(m),
        "",
    ]
    if m.get("importances"):
        lines += [f"## Feature importances ({published})", "", *markdown.dict_table(m["importances"][:20],
                  ["feature", "importance"]), ""]  # fmt: skip
    v = report.get("clv_validation") or {}
    if "total_actual" in v:
        lines += [*_clv_section(v), ""]
    return "\n".join(lines)


def _protocol_section(p: dict[str, Any]) -> list[str]:
    cut = p["cutoffs"]
    return [
        "## Protocol",
        "",
        f"- Training cutoff {cut['train']}, validation cutoff {cut['validation']}, "
        f"label window {cut['label_days']} days after each (the same length as at test).",
        f"- Test cutoff {cut['test']}: features from data up to the end of that day; "
        f"label window {p['test_label_window'][0]}..{p['test_label_window'][1]} ({cut['label_days']} days).",
        f"- Population at each cutoff: customers with a purchase (order not cancelled) in the "
        f"{p['activity_days']} days up to it. Churned = no purchase in the label window.",
        "- Every label the models or their tuning saw ends on or before the test cutoff (no leakage across time).",
        "- Candidates: recency (days since the last purchase) and BG/NBD (expected purchases in the label window, "
        "fitted on the data up to each cutoff) without a fitted model; a logistic regression; a GBTClassifier "
        f"(grid {p['grid']}, class-balancing weights, BG/NBD P(alive) and expected purchases among its features). "
        "Published: the best validation ROC-AUC on raw scores.",
        "- Ranking metrics (ROC-AUC, PR-AUC, lift, capture) on raw scores; baselines are scored by the same code "
        "on the same test rows. Calibration: a ranking-preserving map (Platt or isotonic with ties broken by the "
        "raw score) chosen by cross-validated log-loss on the validation rows, assessed at test.",
        f"- Rows (churners) per split: {p['rows']}.",
        f"- Profile/segment context used: {p['context'] or 'none (tables absent for the cutoffs)'}.",
    ]


def _published_summary(report: dict[str, Any]) -> list[str]:
    best, published = report["best_baseline"], report["published"]
    return [
        f"**Published: `{published}`** (validation ROC-AUC {report['candidates'][published]['validation_roc_auc']}). "
        f"Strongest baseline at test: `{best['name']}` (ROC-AUC {best['roc_auc']}); published minus it: "
        f"{best['difference']:+.4f}, bootstrap 95% interval [{best['ci95_low']:+.4f}, {best['ci95_high']:+.4f}] "
        f"({best['samples']} resamples of the test rows).",
    ]


def _candidates_section(candidates: dict[str, dict[str, Any]], published: str) -> list[str]:
    rows = []
    for name, c in candidates.items():
        t = c["test"]
        mark = " (published)" if name == published else ""
        rows.append([f"{name}{mark}", c["validation_roc_auc"], t["roc_auc"], t["pr_auc"],
                     t["top_decile_lift"], t["top3_capture"]])  # fmt: skip
    return [
        "## Candidates (validation ROC-AUC; test figures on raw scores)",
        "",
        *markdown.table(
            ["candidate", "validation ROC-AUC", "test ROC-AUC", "test PR-AUC", "lift, top decile",
             "capture, top 3 deciles"],
            rows,
        ),
    ]  # fmt: skip


def _baselines_section(baselines: dict[str, dict[str, Any]]) -> list[str]:
    rows = []
    for name, b in baselines.items():
        column, sign = BASELINES[name]
        t = summary_row(b)
        rows.append([name, f"{'-' if sign < 0 else ''}{column}", t["roc_auc"], t["pr_auc"],
                     t["top_decile_lift"], t["top3_capture"]])  # fmt: skip
    return [
        "## Baselines on the test rows (no fitted model)",
        "",
        *markdown.table(["baseline", "score", "ROC-AUC", "PR-AUC", "lift, top decile", "capture, top 3 deciles"], rows),
    ]


def _deciles_section(scored: str, deciles: list[dict[str, Any]]) -> list[str]:
    return [
        f"## Lift and capture by decile (1 = riskiest): {scored}",
        "",
        *markdown.dict_table(deciles, ["decile", "n", "churners", "churn_rate", "mean_score", "lift", "capture"]),
    ]


def _calibration_section(m: dict[str, Any]) -> list[str]:
    method = m["calibration_method"]
    return [
        f"## Calibration (deciles of predicted probability): published, {method['method']} "
        f"(cross-validated log-loss on validation: {method['cv_log_loss']})",
        "",
        *markdown.dict_table(m["calibration"], ["bin", "n", "predicted", "observed", "gap"]),
    ]


def _clv_section(v: dict[str, Any]) -> list[str]:
    return [
        "## CLV check: BG/NBD on a calibration/holdout split",
        "",
        f"- Fitted on purchases up to {v['calibration_end']} ({v['customers']} customers, parameters "
        f"{v['bgnbd']}); holdout {v['holdout'][0]}..{v['holdout'][1]}.",
        f"- Holdout purchase days: predicted {v['total_predicted']}, actual {v['total_actual']} "
        f"(total error {v['total_error']:+.2%}); mean absolute error per customer {v['mae']}.",
        "",
        *markdown.dict_table(v["by_repeat_purchases"], ["repeat_purchases", "n", "actual", "predicted"]),
    ]


def write_report(cfg: ShopLakeConfig, report: dict[str, Any]) -> str:
    path = report_path(cfg, "churn", f"churn_report_{report['as_of']}.md")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render_report(report))
    with open(path.removesuffix(".md") + ".json", "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2, sort_keys=True, default=str)
    return path
