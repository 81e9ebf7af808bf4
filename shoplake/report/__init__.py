"""``shoplake report``: one self-contained static HTML page for a run.

Sections: the pipeline's steps (status, durations, counts, table versions from
``ops.run_log``), the data-quality gates clean kept under
``<lake>/reports/quality/<run_id>/``, the RFM heatmap (gold.profiles), segment sizes
and profiles (gold.segments), churn scores (gold.churn_scores), top association rules
(gold.association_rules), recommendation reasons (gold.recommendations) and every
job's run-log ``metrics``, rendered generically (nested dicts and lists of dicts as
tables) with specific charts from :data:`CHARTS`.

Two halves: :func:`collect` reads the lake with Spark and keeps small aggregates only
(counts per score, per segment, per bin), and :func:`render` turns them into HTML
without Spark, so rendering is unit-testable. Charts are matplotlib figures inlined
as SVG: the page is one file, loads nothing from the network and needs no server.
A section whose source is missing says so instead of failing the report.
"""

from common.runlog import RunStep
from shoplake.report.charts import (
    CHARTS,
    ChartFn,
    calibration_chart,
    comparison_chart,
    interval_chart,
    lift_chart,
    match_weight_chart,
    roc_chart,
    silhouette_chart,
)
from shoplake.report.collect import (
    GoldSource,
    ReportData,
    Unavailable,
    collect,
    read_churn,
    read_quality,
    read_recommendations,
    read_rfm,
    read_rules,
    read_run,
    read_segments,
    read_streaming,
)
from shoplake.report.page import render, write_report

__all__ = [
    "CHARTS",
    "ChartFn",
    "GoldSource",
    "ReportData",
    "RunStep",
    "Unavailable",
    "calibration_chart",
    "collect",
    "comparison_chart",
    "interval_chart",
    "lift_chart",
    "match_weight_chart",
    "read_churn",
    "read_quality",
    "read_recommendations",
    "read_rfm",
    "read_rules",
    "read_run",
    "read_segments",
    "read_streaming",
    "render",
    "roc_chart",
    "silhouette_chart",
    "write_report",
]
