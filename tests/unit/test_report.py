"""The report's rendering half, on hand-made data (no Spark): generic metric tables,
the per-job chart registry, missing sections and escaping."""

from __future__ import annotations

from datetime import date, datetime, timezone

from shoplake import report
from shoplake.report import GoldSource, ReportData, RunStep, Unavailable
from tests.report_dom import ReportDom

T0 = datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc)


def step(job: str, metrics: dict | None = None, status: str = "succeeded", seconds: float = 2.5) -> RunStep:
    return RunStep(job=job, status=status, started_at=T0, finished_at=T0, duration_s=seconds, metrics=metrics or {})


def data(steps: list[RunStep], **sections) -> ReportData:
    gone = Unavailable("gone for the test")
    defaults = dict(quality=gone, rfm=gone, segments=gone, churn=gone, rules=gone, recommendations=gone)
    return ReportData("run-1", "/lake", T0, steps, **{**defaults, **sections})


CHURN_METRICS = {
    "roc_auc": 0.812,
    "roc": [{"fpr": 0.0, "tpr": 0.0}, {"fpr": 0.2, "tpr": 0.6}, {"fpr": 1.0, "tpr": 1.0}],
    "calibration": [
        {"bin": 0, "mean_predicted": 0.1, "observed": 0.12},
        {"bin": 1, "mean_predicted": 0.5, "observed": 0.45},
    ],
    "lift_by_decile": [{"decile": 1, "lift": 3.1}, {"decile": 2, "lift": 1.9}],
    "baseline": {"roc_auc": 0.5, "model": "recency only"},
}


def test_nested_metrics_render_as_tables():
    metrics = {
        "precision_at_10": 0.25,
        "baselines": {"popularity": {"precision_at_10": 0.125}},
        "per_tier": [{"tier": "high", "customers": 12}, {"tier": "low", "customers": 30}],
    }
    dom = ReportDom(report.render(data([step("recommend", metrics)])))
    tables = dom.sections["metrics"].tables
    rows = [r for t in tables for r in t]
    assert ["precision_at_10", "0.25"] in rows
    assert ["precision_at_10", "0.125"] in rows  # nested two levels down
    assert [["tier", "customers"], ["high", "12"], ["low", "30"]] in tables
    assert "popularity" in dom.sections["metrics"].text


def test_registered_charts_draw_from_metrics_and_skip_when_absent():
    dom = ReportDom(report.render(data([step("churn", CHURN_METRICS), step("segment", {"k": 4})])))
    assert dom.sections["metrics"].charts == [
        "churn_roc_chart",
        "churn_calibration_chart",
        "churn_lift_chart",
    ]


def test_identity_match_weights_are_charted_level_by_level():
    metrics = {
        "identity": {
            "method": "splink",
            "match_weights": {
                "name": {"Exact": 8.5, "Jaro-Winkler >= 0.9": 3.25, "All other": -4.0},
                "city": {"Exact": 1.5, "All other": None},
            },  # fmt: skip
            "links_by_rule": {"birth_date": 40, "email_user": 2},
        }
    }
    fig = report.match_weight_chart(metrics)
    ax = fig.axes[0]
    label_at = {round(y): t.get_text() for y, t in zip(ax.get_yticks(), ax.get_yticklabels())}
    widths = {label_at[round(b.get_y() + b.get_height() / 2)]: b.get_width() for b in ax.patches}
    expected = {"name: Exact": 8.5, "name: Jaro-Winkler >= 0.9": 3.25, "name: All other": -4.0, "city: Exact": 1.5}
    assert widths == expected
    assert label_at[max(label_at)] == "name: Exact"  # listed top-down in the model's order
    assert report.match_weight_chart({"identity": {"method": "exact"}}) is None
    dom = ReportDom(report.render(data([step("clean", metrics)])))
    assert dom.sections["metrics"].charts == ["clean_match_weight_chart"]
    assert ["birth_date", "40"] in [r for t in dom.sections["metrics"].tables for r in t]


def test_roc_points_are_accepted_as_two_lists():
    fig = report.roc_chart({"roc": {"fpr": [0, 0.5, 1], "tpr": [0, 0.8, 1]}})
    line = fig.axes[0].lines[0]
    assert list(line.get_xdata()) == [0.0, 0.5, 1.0]
    assert list(line.get_ydata()) == [0.0, 0.8, 1.0]


def test_interval_chart_reads_campaign_style_lists():
    metrics = {
        "effects": [
            {"campaign_id": "CMP001", "variant": "B", "effect": 0.04, "ci_low": 0.01, "ci_high": 0.07},
            {"campaign_id": "CMP002", "variant": "B", "effect": 0.0, "ci_low": -0.02, "ci_high": 0.02},
        ]
    }
    fig = report.interval_chart(metrics)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["CMP001 B", "CMP002 B"]
    assert report.interval_chart({"effects": [{"effect": 1}]}) is None


def test_comparison_chart_needs_shared_numeric_metrics():
    fig = report.comparison_chart({"als": {"ndcg": 0.3, "map": 0.2}, "popularity": {"ndcg": 0.1, "map": 0.05}})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["map", "ndcg"]
    assert report.comparison_chart({"als": {"ndcg": 0.3}, "popularity": {"hits": 4}}) is None


def test_a_failing_chart_is_reported_and_the_rest_still_renders():
    def broken(metrics):
        raise ValueError("bad shape")

    html = report.render(data([step("churn", CHURN_METRICS)]), charts={"churn": [broken, report.roc_chart]})
    dom = ReportDom(html)
    assert "Chart broken could not be drawn: bad shape" in dom.sections["metrics"].text
    assert dom.sections["metrics"].charts == ["churn_roc_chart"]


def test_missing_sources_say_why_instead_of_failing():
    dom = ReportDom(report.render(data([step("clean", status="failed", seconds=1.0)])))
    for name in ("quality", "rfm", "segments", "churn", "rules", "recommendations"):
        assert "Not available: gone for the test" in dom.sections[name].text, name
    assert "failed at clean" in dom.sections["pipeline"].text
    assert dom.sections["pipeline"].charts == ["pipeline_durations"]


def test_streaming_section_shows_the_latest_stream_run_per_query():
    queries = [
        {"query": "bronze.events", "batches": 2, "input_rows": 4, "mean_processed_rows_per_s": 3.5},
        {"query": "bronze.quarantine", "batches": 2, "input_rows": 4, "mean_processed_rows_per_s": 2.0},
    ]
    dom = ReportDom(report.render(data([step("ingest")], streaming={"run_id": "stream-7", "queries": queries})))
    view = dom.sections["streaming"]
    assert "stream-7" in view.text and "4 micro-batch(es)" in view.text
    rows = dom.table_with_header("streaming", "query")
    assert [(r["query"], r["batches"], r["input_rows"]) for r in rows] == [
        ("bronze.events", "2", "4"),
        ("bronze.quarantine", "2", "4"),
    ]
    # Without a stream the section says so (the default of ReportData).
    assert (
        "Not available: no stream progress was collected"
        in ReportDom(report.render(data([]))).sections["streaming"].text
    )


def test_values_are_escaped():
    html = report.render(data([step("clean", {"note": "<script>alert(1)</script>"})]))
    dom = ReportDom(html)
    assert dom.scripts == 1  # the report's own
    assert "<script>alert(1)</script>" in dom.sections["metrics"].text


def test_rfm_grid_counts_and_missing_cells():
    source = GoldSource("gold.profiles", 3, date(2024, 4, 29), True)
    cells = [
        {"r_score": 1, "f_score": 1, "count": 5},
        {"r_score": 1, "f_score": 2, "count": 2},
        {"r_score": 2, "f_score": 2, "count": 7},
    ]
    dom = ReportDom(report.render(data([step("profile")], rfm={"source": source, "cells": cells, "unscored": 4})))
    assert dom.table_with_header("rfm", "r_score") == [
        {"r_score": "1", "f=1": "5", "f=2": "2"},
        {"r_score": "2", "f=1": "0", "f=2": "7"},
    ]
    assert dom.sections["rfm"].charts == ["rfm_heatmap"]
    assert "4 customer(s) without an R or F score" in dom.sections["rfm"].text
    assert "gold.profiles v3 (written by this run), as of 2024-04-29" in dom.sections["rfm"].text


def test_quality_section_lists_findings():
    gate = {
        "table": "silver.orders",
        "success": True,
        "row_count": 100,
        "outcomes": [
            {"name": "a", "label": "not_null(order_id)", "level": "table", "success": True, "unexpected": 0},
            {"name": "b", "label": "between(total)", "level": "flag", "success": True, "unexpected": 3,
             "checked": 100, "allowed_share": 0.01},
        ],
    }  # fmt: skip
    quality = {"clean_run_id": "clean-1", "note": "", "gates": [gate], "data_docs": None}
    dom = ReportDom(report.render(data([step("clean")], quality=quality)))
    assert dom.table_with_header("quality", "table") == [
        {"table": "silver.orders", "gate": "passed", "rows checked": "100", "checks": "2", "passed": "2",
         "failed": "0", "rows with findings": "3", "error": "-"}
    ]  # fmt: skip
    findings = dom.sections["quality"].tables[1]
    assert findings[1][:5] == ["silver.orders", "between(total)", "flag", "yes", "3"]
    assert dom.sections["quality"].charts == ["quality_checks"]
