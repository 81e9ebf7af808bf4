"""The campaign job's Markdown and HTML report with its charts."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path
from typing import Any

from common import charts, markdown, templating
from common.artifacts import report_path
from common.config import ShopLakeConfig


def _cell(value: Any) -> str:
    """A campaign table cell: empty for None, four significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def effect_chart(ab_rows: list[dict[str, Any]], metric: str, title: str):
    """Treatment minus reference with its 95% interval, one line per test (None if no test)."""
    bounds = ("diff", "ci_low", "ci_high")
    rows = [r for r in ab_rows if r["metric"] == metric and all(_finite(r[k]) for k in bounds)]
    if not rows:
        return None
    fig = charts.figure(6.4, 0.9 + 0.42 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        colour = "tab:green" if r["significant"] and r["diff"] > 0 else "tab:red" if r["significant"] else "tab:grey"
        ax.errorbar(r["diff"], y, xerr=[[r["diff"] - r["ci_low"]], [r["ci_high"] - r["diff"]]], fmt="o",
                    capsize=4, color=colour)  # fmt: skip
    ax.axvline(0, linestyle="--", color="black", linewidth=0.8)
    ax.set_yticks(ys, [f"{r['campaign_id']} {r['treatment']} vs {r['reference']}" for r in rows])
    ax.set_xlabel("difference (treatment - reference), 95% interval")
    ax.set_title(title)
    return fig


def variant_chart(kpi_rows: list[dict[str, Any]]):
    """Conversion rate per campaign variant (None without variant rows)."""
    rows = [r for r in kpi_rows if r["dimension"] == "variant" and r.get("cvr") is not None]
    if not rows:
        return None
    fig = charts.figure(6.4, 0.9 + 0.32 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    ax.barh(ys, [r["cvr"] for r in rows], color="tab:blue")
    ax.set_yticks(ys, [f"{r['campaign_id']} {r['dimension_value']}" for r in rows])
    ax.set_xlabel("conversion rate (conversions / recipients)")
    ax.set_title("Conversion by variant")
    return fig


def write_report(cfg: ShopLakeConfig, as_of: date, facts: dict[str, Any], kpi_rows: list[dict], ab_rows: list[dict],
                 warnings: list[str]) -> str:  # fmt: skip
    """``<lake>/reports/campaign/campaign_report_<as_of>.md`` and ``.html``; returns the markdown path."""
    audience_rows = [{"campaign": cid, **info} for cid, info in facts["campaigns"].items()]
    sections = [
        ("Audiences", audience_rows,
         ["campaign", "status", "reason", "selected", "capped", "treatment", "control", "control_share"]),
        ("KPIs by campaign", [r for r in kpi_rows if r["dimension"] == "campaign"],
         ["campaign_id", "sends", "opens", "clicks", "conversions", "attributed_orders", "revenue", "cost", "ctr",
          "cvr", "revenue_per_recipient", "roi", "roas", "cac", "repeat_purchase_rate"]),
        ("KPIs by variant", [r for r in kpi_rows if r["dimension"] == "variant"],
         ["campaign_id", "dimension_value", "recipients", "sends", "conversions", "cvr", "revenue_per_recipient"]),
        ("KPIs by channel (all campaigns)", [r for r in kpi_rows if r["campaign_id"] == "ALL"],
         ["dimension_value", "sends", "conversions", "revenue", "cost", "roi", "roas", "cac"]),
        ("A/B and hold-out tests", ab_rows,
         ["campaign_id", "metric", "treatment", "reference", "n_treatment", "n_reference", "value_treatment",
          "value_reference", "diff", "ci_low", "ci_high", "p_value", "significant", "relative_uplift", "mde",
          "underpowered"]),
    ]  # fmt: skip
    guard = (
        f"Consent: {facts.get('excluded_without_consent', 'n/a')} profiles excluded for lack of consent. "
        f"Export k-anonymity (k={facts.get('k_anonymity', {}).get('k')}): smallest class "
        f"{facts.get('k_anonymity', {}).get('smallest_class')}."
    )
    tables = [
        (title, [{c: _cell(r.get(c)) for c in columns} for r in rows], columns) for title, rows, columns in sections
    ]
    md = [f"# Campaign report as of {as_of.isoformat()}", "", guard, ""]
    for title, rows, columns in tables:
        md += [f"## {title}", "", *markdown.dict_table(rows, columns), ""]
    figures = [
        ("conversion_effects", effect_chart(ab_rows, "conversion_rate", "Conversion-rate effects")),
        ("revenue_effects", effect_chart(ab_rows, "revenue_per_recipient", "Revenue-per-recipient effects")),
        ("variant_conversion", variant_chart(kpi_rows)),
    ]
    stem = f"campaign_report_{as_of.isoformat()}"
    drawn = []
    for chart_id, fig in figures:
        if fig is None:
            continue
        image = charts.png(fig, report_path(cfg, "campaign", f"{stem}_{chart_id}.png"))
        md += [f"![{chart_id}]({image.name})", ""]
        drawn.append(templating.chart(chart_id, "", fig))
    if warnings:
        md += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    path = report_path(cfg, "campaign", f"{stem}.md")
    Path(path).write_text("\n".join(md), encoding="utf-8")
    page = templating.render(
        "jobs.campaign/campaign_report.html.j2",
        as_of=as_of.isoformat(),
        guard=guard,
        tables=tables,
        charts=drawn,
        warnings=warnings,
    )
    Path(path).with_suffix(".html").write_text(page, encoding="utf-8")
    return path
