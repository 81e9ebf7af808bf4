"""The run report's HTML page: what each section shows, laid out by templates/*.j2, written to one file."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from markupsafe import Markup
from pyspark.sql import SparkSession

from common import templating
from common.charts import figure
from common.config import ShopLakeConfig
from common.runlog import RunStep
from shoplake.report.charts import CHARTS, ChartFn
from shoplake.report.collect import ReportData, Unavailable, collect

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- sections
# Each builder collects what its section shows (rows, numbers, charts); the layout is the
# macro of the same name in templates/sections.html.j2.
def _sections() -> Any:
    return templating.macros("shoplake.report/sections.html.j2")


def section_pipeline(data: ReportData) -> Markup:
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
    return _sections().pipeline(
        {
            "steps": len(steps),
            "verdict": f"failed at {failed[0]}" if failed else "all steps succeeded",
            "total": sum(s.duration_s for s in steps),
            "chart": templating.chart("pipeline_durations", "Seconds per step", fig),
            "rows": rows,
        }
    )


def _gate_summary(gate: Mapping[str, Any]) -> dict[str, Any]:
    outcomes = gate.get("outcomes") or []
    passed = sum(1 for o in outcomes if o.get("success"))
    return {
        "table": gate.get("table"),
        "gate": "passed" if gate.get("success") else "FAILED",
        "rows checked": gate.get("row_count"),
        "checks": len(outcomes),
        "passed": passed,
        "failed": len(outcomes) - passed,
        "rows with findings": sum(o.get("unexpected") or 0 for o in outcomes),
        "error": gate.get("error"),
    }


def _gate_findings(gate: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
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
        for o in gate.get("outcomes") or []
        if o.get("unexpected") or not o.get("success")
    ]


def section_quality(quality: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(quality, Unavailable):
        return _sections().missing(quality.reason)
    summary = [_gate_summary(g) for g in quality["gates"]]
    fig = figure(6.4, 0.6 + 0.4 * len(summary))
    ax = fig.add_subplot()
    names = [str(s["table"]) for s in summary][::-1]
    ax.barh(names, [s["passed"] for s in summary][::-1], color="#55a868", label="passed")
    ax.barh(names, [s["failed"] for s in summary][::-1], left=[s["passed"] for s in summary][::-1],
            color="#c44e52", label="failed")  # fmt: skip
    ax.set(xlabel="checks", title="Data-quality checks per silver table")
    ax.legend(loc="lower right")
    return _sections().quality(
        {
            "run_id": quality["clean_run_id"],
            "note": quality["note"],
            "chart": templating.chart("quality_checks", "Checks passed and failed per table", fig),
            "summary": summary,
            "problems": [row for g in quality["gates"] for row in _gate_findings(g)],
            "data_docs": quality.get("data_docs"),
        }
    )


def section_rfm(rfm: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(rfm, Unavailable):
        return _sections().missing(rfm.reason)
    cells = rfm["cells"]
    if not cells:
        return _sections().missing("no customer has both an R and an F score", rfm["source"])
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
    return _sections().rfm(
        {
            "source": rfm["source"],
            "chart": templating.chart("rfm_heatmap", "RFM heatmap", fig),
            "rows": rows,
            "unscored": rfm["unscored"],
        }
    )


def section_segments(seg: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(seg, Unavailable):
        return _sections().missing(seg.reason)
    sizes = seg["sizes"]
    if not sizes:
        return _sections().missing("no segment rows for this date", seg["source"])
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
    return _sections().segments(
        {
            "source": seg["source"],
            "chart": templating.chart("segment_sizes", "Customers per segment", fig),
            "rows": rows,
            "profiles": seg.get("profiles"),
        }
    )


def section_churn(churn: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(churn, Unavailable):
        return _sections().missing(churn.reason)
    hist = churn["histogram"]
    width = 1.0 / len(hist)
    fig = figure(6.4, 3.4)
    ax = fig.add_subplot()
    ax.bar([i * width for i in range(len(hist))], hist, width=width, align="edge", color="#dd8452", edgecolor="white")
    ax.set(xlabel="churn probability", ylabel="customers", xlim=(0, 1), title="Churn probability distribution")
    tiers, tiers_chart = churn["tiers"], None
    if tiers:
        fig2 = figure(4.8, 3.2)
        ax2 = fig2.add_subplot()
        ax2.bar([t["risk_tier"] for t in tiers], [t["count"] for t in tiers], color="#c44e52")
        ax2.set(ylabel="customers", title="Risk tiers")
        tiers_chart = templating.chart("churn_tiers", "Customers per risk tier", fig2)
    return _sections().churn(
        {
            "source": churn["source"],
            "chart": templating.chart("churn_histogram", "Churn probabilities", fig),
            "tiers": tiers,
            "tiers_chart": tiers_chart,
            "model_versions": churn["model_versions"],
        }
    )


def section_rules(rules: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(rules, Unavailable):
        return _sections().missing(rules.reason)
    top = rules["top"]
    if not top:
        return _sections().missing("the table holds no rules for this date", rules["source"])
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
    return _sections().rules(
        {
            "source": rules["source"],
            "total": rules["total"],
            "chart": templating.chart("rules_scatter", "Support and confidence of the top rules", fig),
            "rows": rows,
        }
    )


def section_recommendations(rec: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(rec, Unavailable):
        return _sections().missing(rec.reason)
    reasons = rec["reasons"]
    if not reasons:
        return _sections().missing("no recommendations for this date", rec["source"])
    fig = figure(6.0, 0.6 + 0.45 * len(reasons))
    ax = fig.add_subplot()
    ax.barh([r["reason"] for r in reasons][::-1], [r["rows"] for r in reasons][::-1], color="#8172b3")
    ax.set(xlabel="recommendations", title="Recommendations by reason")
    return _sections().recommendations(
        {
            "source": rec["source"],
            "customers": rec["customers"],
            "items": rec["items"],
            "chart": templating.chart("recommendation_reasons", "Recommendations per reason", fig),
            "reasons": reasons,
        }
    )


def section_streaming(stream: dict[str, Any] | Unavailable) -> Markup:
    if isinstance(stream, Unavailable):
        return _sections().missing(stream.reason)
    batches = sum(q["batches"] for q in stream["queries"])
    return _sections().streaming({"run_id": stream["run_id"], "batches": batches, "queries": stream["queries"]})


def _step_charts(step: RunStep, fns: list[ChartFn]) -> list[Any]:
    """The step's registered charts that apply; a chart that fails says why, the rest still draw."""
    drawn: list[Any] = []
    for fn in fns:
        try:
            fig = fn(step.metrics)
        except Exception as exc:  # noqa: BLE001 - one odd metric must not cost the whole report
            log.warning("report: chart %s for %s failed: %s", fn.__name__, step.job, exc)
            drawn.append({"name": fn.__name__, "error": str(exc)})
            continue
        if fig is not None:
            drawn.append(templating.chart(f"{step.job}_{fn.__name__}", f"{step.job}: {fn.__name__}", fig))
    return drawn


def section_metrics(steps: list[RunStep], charts: Mapping[str, list[ChartFn]] | None = None) -> Markup:
    """One block per step: its registered charts, then its metrics as tables."""
    charts = CHARTS if charts is None else charts
    blocks = [
        {"job": step.job, "charts": _step_charts(step, charts.get(step.job, [])), "metrics": step.metrics}
        for step in steps
    ]
    return _sections().metrics(blocks)


def _guarded(render_fn: Callable[[], Markup]) -> Markup:
    try:
        return render_fn()
    except Exception as exc:  # noqa: BLE001 - a section that cannot be drawn says why, the rest still renders
        log.exception("report: a section failed to render")
        return _sections().missing(f"this section could not be rendered: {type(exc).__name__}: {exc}")


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
    """The report as one HTML document (templates/report.html.j2: inline CSS, SVG and a few lines of script)."""
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
    return templating.render(
        "shoplake.report/report.html.j2",
        run_id=data.run_id,
        lake_root=data.lake_root,
        generated_at=data.generated_at,
        sections=[(anchor, title, _guarded(bodies[anchor])) for anchor, title in SECTIONS],
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
