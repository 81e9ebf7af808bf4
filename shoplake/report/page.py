"""The run report's HTML page: sections, tables, charts inline, written to one file."""

from __future__ import annotations

import html
import logging
import math
import os
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

from pyspark.sql import SparkSession

from common.charts import figure, svg
from common.config import ShopLakeConfig
from common.runlog import RunStep
from shoplake.report.charts import CHARTS, ChartFn
from shoplake.report.collect import GoldSource, ReportData, Unavailable, collect

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- HTML
def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value.isoformat()
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (Mapping, list)) for v in value):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def table(rows: list[Mapping[str, Any]], columns: list[str] | None = None, css: str = "") -> str:
    """An HTML table of dicts; columns: the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{render_value(r.get(c), inline=True)}</td>" for c in columns) + "</tr>" for r in rows
    )
    cls = f' class="{esc(css)}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_value(value: Any, inline: bool = False, depth: int = 0) -> str:
    """Any JSON value as HTML: dicts of scalars as key/value tables, nested dicts as
    titled sub-blocks, lists of dicts as tables, everything else as escaped text."""
    if isinstance(value, Mapping):
        if not value:
            return "<span class='muted'>(empty)</span>"
        scalars = {k: v for k, v in value.items() if not isinstance(v, (Mapping, list)) or _is_flat_list(v)}
        nested = {k: v for k, v in value.items() if k not in scalars}
        parts = []
        if scalars:
            rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in scalars.items())
            parts.append(f"<table class='kv'><tbody>{rows}</tbody></table>")
        level = min(4 + depth, 6)
        for k, v in nested.items():
            parts.append(f"<div class='nested'><h{level}>{esc(k)}</h{level}>{render_value(v, depth=depth + 1)}</div>")
        return "".join(parts)
    if isinstance(value, list):
        if value and all(isinstance(v, Mapping) for v in value):
            return table(list(value))
        if _is_flat_list(value):
            return esc(_fmt(value))
        return "<ul>" + "".join(f"<li>{render_value(v, depth=depth + 1)}</li>" for v in value) + "</ul>"
    return esc(_fmt(value))


def _is_flat_list(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, (Mapping, list)) for v in value)


def chart_block(chart_id: str, title: str, fig) -> str:
    return (
        f"<figure class='chart' data-chart='{esc(chart_id)}'>{svg(fig, chart_id)}"
        f"<figcaption>{esc(title)}</figcaption></figure>"
    )


def missing(reason: str) -> str:
    return f"<p class='missing'>Not available: {esc(reason)}</p>"


def _source_line(source: GoldSource) -> str:
    origin = "written by this run" if source.written_by_run else "latest version; not written by this run"
    as_of = source.as_of.isoformat() if source.as_of else "-"
    return f"<p class='source'>{esc(source.table)} v{esc(source.version)} ({origin}), as of {esc(as_of)}</p>"


def section_pipeline(data: ReportData) -> str:
    steps = data.steps
    rows = [
        {
            "step": i,
            "job": s.job,
            "status": s.status,
            "started (UTC)": s.started_at,
            "seconds": round(s.duration_s, 1),
            "rows written": s.row_counts,
            "read (table: version)": s.input_versions,
            "wrote (table: version)": s.output_versions,
            "error": s.error,
        }
        for i, s in enumerate(steps, start=1)
    ]
    fig = figure(6.4, 0.6 + 0.45 * len(steps))
    ax = fig.add_subplot()
    colours = ["#55a868" if s.status == "succeeded" else "#c44e52" for s in steps]
    ax.barh([s.job for s in steps][::-1], [s.duration_s for s in steps][::-1], color=colours[::-1])
    ax.set(xlabel="seconds", title="Step durations (red: failed)")
    failed = [s.job for s in steps if s.status != "succeeded"]
    verdict = f"failed at {failed[0]}" if failed else "all steps succeeded"
    total = sum(s.duration_s for s in steps)
    return (
        f"<p>{len(steps)} step(s), {esc(verdict)}, {total:,.1f} s in total.</p>"
        + chart_block("pipeline_durations", "Seconds per step", fig)
        + table(rows, css="steps")
    )


def section_quality(quality: dict[str, Any] | Unavailable) -> str:
    if isinstance(quality, Unavailable):
        return missing(quality.reason)
    gates = quality["gates"]
    summary, problems = [], []
    for gate in gates:
        outcomes = gate.get("outcomes") or []
        passed = sum(1 for o in outcomes if o.get("success"))
        summary.append(
            {
                "table": gate.get("table"),
                "gate": "passed" if gate.get("success") else "FAILED",
                "rows checked": gate.get("row_count"),
                "checks": len(outcomes),
                "passed": passed,
                "failed": len(outcomes) - passed,
                "rows with findings": sum(o.get("unexpected") or 0 for o in outcomes),
                "error": gate.get("error"),
            }
        )
        for o in outcomes:
            if o.get("unexpected") or not o.get("success"):
                problems.append(
                    {
                        "table": gate.get("table"),
                        "check": o.get("label") or o.get("name"),
                        "level": o.get("level"),
                        "passed": o.get("success"),
                        "unexpected rows": o.get("unexpected"),
                        "of rows": o.get("checked"),
                        "allowed share": o.get("allowed_share"),
                        "error": o.get("error"),
                    }
                )
    fig = figure(6.4, 0.6 + 0.4 * len(summary))
    ax = fig.add_subplot()
    names = [str(s["table"]) for s in summary][::-1]
    ax.barh(names, [s["passed"] for s in summary][::-1], color="#55a868", label="passed")
    ax.barh(names, [s["failed"] for s in summary][::-1], left=[s["passed"] for s in summary][::-1],
            color="#c44e52", label="failed")  # fmt: skip
    ax.set(xlabel="checks", title="Data-quality checks per silver table")
    ax.legend(loc="lower right")
    parts = [f"<p class='source'>Gate results of clean run {esc(quality['clean_run_id'])}.</p>"]
    if quality["note"]:
        parts.append(f"<p class='note'>{esc(quality['note'])}</p>")
    parts.append(chart_block("quality_checks", "Checks passed and failed per table", fig))
    parts.append(table(summary, css="quality"))
    if problems:
        parts.append("<h3>Checks with findings</h3>" + table(problems, css="findings"))
    else:
        parts.append("<p>No check found any unexpected row.</p>")
    if quality.get("data_docs"):
        parts.append(f"<p>Great Expectations data docs: <code>{esc(quality['data_docs'])}</code></p>")
    return "".join(parts)


def section_rfm(rfm: dict[str, Any] | Unavailable) -> str:
    if isinstance(rfm, Unavailable):
        return missing(rfm.reason)
    cells = rfm["cells"]
    if not cells:
        return _source_line(rfm["source"]) + missing("no customer has both an R and an F score")
    r_values = sorted({c["r_score"] for c in cells})
    f_values = sorted({c["f_score"] for c in cells})
    grid = [[0] * len(f_values) for _ in r_values]
    for c in cells:
        grid[r_values.index(c["r_score"])][f_values.index(c["f_score"])] = c["count"]
    fig = figure(5.4, 4.4)
    ax = fig.add_subplot()
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    peak = max(max(row) for row in grid) or 1
    for i, row in enumerate(grid):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count < peak * 0.6 else "black")
    ax.set_xticks(range(len(f_values)), [str(v) for v in f_values])
    ax.set_yticks(range(len(r_values)), [str(v) for v in r_values])
    ax.set(xlabel="f_score (frequency)", ylabel="r_score (recency)", title="Customers per R x F score")
    fig.colorbar(image, ax=ax, label="customers")
    rows = [{"r_score": r, **{f"f={f}": grid[i][j] for j, f in enumerate(f_values)}} for i, r in enumerate(r_values)]
    note = f"<p>{rfm['unscored']:,} customer(s) without an R or F score are not shown.</p>" if rfm["unscored"] else ""
    return _source_line(rfm["source"]) + chart_block("rfm_heatmap", "RFM heatmap", fig) + table(rows, css="rfm") + note


def section_segments(seg: dict[str, Any] | Unavailable) -> str:
    if isinstance(seg, Unavailable):
        return missing(seg.reason)
    sizes = seg["sizes"]
    if not sizes:
        return _source_line(seg["source"]) + missing("no segment rows for this date")
    total = sum(s["count"] for s in sizes)
    fig = figure(6.4, 0.6 + 0.45 * len(sizes))
    ax = fig.add_subplot()
    ordered = sorted(sizes, key=lambda s: s["count"])
    ax.barh([s["segment_name"] for s in ordered], [s["count"] for s in ordered], color="#4c72b0")
    ax.set(xlabel="customers", title="Segment sizes")
    rows = [
        {"segment_id": s["segment_id"], "segment_name": s["segment_name"], "customers": s["count"],
         "share": round(s["count"] / total, 4)}
        for s in sorted(sizes, key=lambda s: -s["count"])
    ]  # fmt: skip
    parts = [_source_line(seg["source"]), chart_block("segment_sizes", "Customers per segment", fig)]
    parts.append(table(rows, css="segments"))
    if seg.get("profiles"):
        parts.append("<h3>Segment profiles (gold.profiles, same date)</h3>" + table(seg["profiles"], css="profiles"))
    return "".join(parts)


def section_churn(churn: dict[str, Any] | Unavailable) -> str:
    if isinstance(churn, Unavailable):
        return missing(churn.reason)
    hist = churn["histogram"]
    width = 1.0 / len(hist)
    fig = figure(6.4, 3.4)
    ax = fig.add_subplot()
    ax.bar([i * width for i in range(len(hist))], hist, width=width, align="edge", color="#dd8452", edgecolor="white")
    ax.set(xlabel="churn probability", ylabel="customers", xlim=(0, 1), title="Churn probability distribution")
    parts = [_source_line(churn["source"]), chart_block("churn_histogram", "Churn probabilities", fig)]
    tiers = churn["tiers"]
    if tiers:
        fig2 = figure(4.8, 3.2)
        ax2 = fig2.add_subplot()
        ax2.bar([t["risk_tier"] for t in tiers], [t["count"] for t in tiers], color="#c44e52")
        ax2.set(ylabel="customers", title="Risk tiers")
        parts.append(chart_block("churn_tiers", "Customers per risk tier", fig2))
        parts.append(table(tiers, css="tiers"))
    parts.append(f"<p>Model version(s): {esc(_fmt(churn['model_versions']))}</p>")
    return "".join(parts)


def section_rules(rules: dict[str, Any] | Unavailable) -> str:
    if isinstance(rules, Unavailable):
        return missing(rules.reason)
    top = rules["top"]
    if not top:
        return _source_line(rules["source"]) + missing("the table holds no rules for this date")
    fig = figure(5.6, 3.8)
    ax = fig.add_subplot()
    points = ax.scatter([r["support"] for r in top], [r["confidence"] for r in top], c=[r["lift"] for r in top])
    fig.colorbar(points, ax=ax, label="lift")
    ax.set(xlabel="support", ylabel="confidence", title=f"Top {len(top)} rules by lift")
    rows = [
        {"if bought": r["antecedent"], "then also": r["consequent"], "support": r["support"],
         "confidence": r["confidence"], "lift": r["lift"]}
        for r in top
    ]  # fmt: skip
    return (
        _source_line(rules["source"])
        + f"<p>{rules['total']:,} rule(s); the {len(top)} with the highest lift:</p>"
        + chart_block("rules_scatter", "Support and confidence of the top rules", fig)
        + table(rows, css="rules")
    )


def section_recommendations(rec: dict[str, Any] | Unavailable) -> str:
    if isinstance(rec, Unavailable):
        return missing(rec.reason)
    reasons = rec["reasons"]
    if not reasons:
        return _source_line(rec["source"]) + missing("no recommendations for this date")
    fig = figure(6.0, 0.6 + 0.45 * len(reasons))
    ax = fig.add_subplot()
    ax.barh([r["reason"] for r in reasons][::-1], [r["rows"] for r in reasons][::-1], color="#8172b3")
    ax.set(xlabel="recommendations", title="Recommendations by reason")
    return (
        _source_line(rec["source"])
        + f"<p>{rec['customers']:,} customers, {rec['items']:,} distinct items recommended.</p>"
        + chart_block("recommendation_reasons", "Recommendations per reason", fig)
        + table(reasons, css="reasons")
    )


def section_streaming(stream: dict[str, Any] | Unavailable) -> str:
    if isinstance(stream, Unavailable):
        return missing(stream.reason)
    batches = sum(q["batches"] for q in stream["queries"])
    return (
        f"<p class='source'>Latest stream run <code>{esc(stream['run_id'])}</code> "
        f"(ops.stream_progress): {batches:,} micro-batch(es). Input rows are what each query's "
        "source read (files, for a landing folder; silver.events' query reads each twice). Late rows "
        "arrived more than stream.watermark_seconds behind the newest event: not in the stream's silver.</p>"
        + table(stream["queries"], css="streaming")
    )


def section_metrics(steps: list[RunStep], charts: Mapping[str, list[ChartFn]] | None = None) -> str:
    """One block per step: its registered charts, then its metrics as tables."""
    charts = CHARTS if charts is None else charts
    parts = []
    for step in steps:
        blocks = []
        for fn in charts.get(step.job, []):
            try:
                fig = fn(step.metrics)
            except Exception as exc:  # noqa: BLE001 - one odd metric must not cost the whole report
                log.warning("report: chart %s for %s failed: %s", fn.__name__, step.job, exc)
                blocks.append(f"<p class='missing'>Chart {esc(fn.__name__)} could not be drawn: {esc(exc)}</p>")
                continue
            if fig is not None:
                blocks.append(chart_block(f"{step.job}_{fn.__name__}", f"{step.job}: {fn.__name__}", fig))
        body = render_value(step.metrics) if step.metrics else "<p class='muted'>No metrics recorded.</p>"
        parts.append(
            f"<div class='job-metrics' data-job='{esc(step.job)}'><h3>{esc(step.job)}</h3>{''.join(blocks)}{body}</div>"
        )
    return "".join(parts) or missing("the run recorded no steps")


def _section(anchor: str, title: str, body: str) -> str:
    return f"<section id='{anchor}'><h2>{esc(title)}</h2>{body}</section>"


def _guarded(render_fn: Callable[[], str]) -> str:
    try:
        return render_fn()
    except Exception as exc:  # noqa: BLE001 - a section that cannot be drawn says why, the rest still renders
        log.exception("report: a section failed to render")
        return missing(f"this section could not be rendered: {type(exc).__name__}: {exc}")


CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#243447;color:#fff;padding:1rem 2rem}header h1{margin:0 0 .3rem}
nav{padding:.5rem 2rem;background:#e9eef3}nav a{margin-right:1rem}
main{padding:0 2rem 2rem}section{background:#fff;border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}th,td{border:1px solid #ddd;padding:.2rem .5rem;
text-align:left;vertical-align:top}thead th{background:#f0f3f6}table.kv th{background:#f7f7f7;font-weight:normal}
figure.chart{display:inline-block;margin:.5rem 1rem .5rem 0;vertical-align:top}
figure.chart svg{max-width:100%;height:auto}
figcaption{font-size:.8rem;color:#555}.missing{color:#8a5a00;background:#fff6e0;padding:.4rem .6rem}
.muted,.source{color:#666;font-size:.85rem}.note{color:#444}.nested{margin-left:1rem}
"""

# Marks the page once laid out: how many charts have a visible size. Headless tests read
# the attribute from the DOM; nothing is fetched.
SCRIPT = """
window.addEventListener('load', function () {
  var charts = document.querySelectorAll('figure.chart');
  var drawn = 0;
  charts.forEach(function (c) {
    var g = c.querySelector('svg, img');
    if (g) { var box = g.getBoundingClientRect(); if (box.width > 0 && box.height > 0) { drawn += 1; } }
  });
  document.body.setAttribute('data-charts-drawn', String(drawn));
});
"""

SECTIONS = (
    ("pipeline", "Pipeline summary"),
    ("quality", "Data quality"),
    ("rfm", "RFM heatmap"),
    ("segments", "Segments"),
    ("churn", "Churn"),
    ("rules", "Top association rules"),
    ("recommendations", "Recommendations"),
    ("streaming", "Streaming"),
    ("metrics", "Metrics per job"),
)


def render(data: ReportData, charts: Mapping[str, list[ChartFn]] | None = None) -> str:
    """The report as one HTML document (inline CSS, SVG and a few lines of script)."""
    bodies = {
        "pipeline": lambda: section_pipeline(data),
        "quality": lambda: section_quality(data.quality),
        "rfm": lambda: section_rfm(data.rfm),
        "segments": lambda: section_segments(data.segments),
        "churn": lambda: section_churn(data.churn),
        "rules": lambda: section_rules(data.rules),
        "recommendations": lambda: section_recommendations(data.recommendations),
        "streaming": lambda: section_streaming(data.streaming),
        "metrics": lambda: section_metrics(data.steps, charts),
    }
    nav = "".join(f"<a href='#{a}'>{esc(t)}</a>" for a, t in SECTIONS)
    sections = "".join(_section(a, t, _guarded(bodies[a])) for a, t in SECTIONS)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>ShopLake report {esc(data.run_id)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>ShopLake run report</h1><div>run <code>{esc(data.run_id)}</code> - lake "
        f"<code>{esc(data.lake_root)}</code> - generated {esc(_fmt(data.generated_at))} UTC</div></header>"
        f"<nav>{nav}</nav><main>{sections}</main><script>{SCRIPT}</script></body></html>\n"
    )


def write_report(
    spark: SparkSession, cfg: ShopLakeConfig, run_id: str | None = None, out: str | None = None
) -> tuple[str, ReportData]:
    """Collect, render and write the report; returns its path and the data shown.

    Raises:
        InputError: no run log, or ``run_id`` is not in it.
    """
    from common.artifacts import report_path

    data = collect(spark, cfg, run_id)
    path = out or report_path(cfg, "report", f"{data.run_id}.html")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(data))
    log.info("report for run %s written to %s", data.run_id, path)
    return path, data
