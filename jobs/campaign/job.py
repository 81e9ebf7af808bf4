"""The campaign job: audiences, results, report (see :mod:`jobs.campaign`)."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import export
from common import orders as common_orders
from common.asof import publish_as_of, resolve_as_of, up_to
from common.config import CampaignConfig, ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.runlog import JobResult, new_run_id
from common.tables import (
    GOLD_AB_RESULTS,
    GOLD_AUDIENCE_EXPORT,
    GOLD_AUDIENCES,
    GOLD_CAMPAIGN_KPIS,
    GOLD_CHURN_SCORES,
    GOLD_CLV,
    GOLD_PROFILES,
    GOLD_RECOMMENDATIONS,
    GOLD_SEGMENTS,
    SILVER_CAMPAIGN_TOUCHES,
    SILVER_CUSTOMERS,
    SILVER_EVENTS,
    SILVER_ORDERS,
)
from jobs.campaign.audiences import audience_export, build_audiences, export_csv_path, read_as_of
from jobs.campaign.definitions import load_definitions
from jobs.campaign.report import write_report
from jobs.campaign.results import ab_results, attributed_touches, campaign_kpis

log = logging.getLogger(__name__)


# ============================================================================ job
# Tables whose versions the run log records as read.
_INPUTS = (
    GOLD_PROFILES, GOLD_SEGMENTS, GOLD_CHURN_SCORES, GOLD_CLV, GOLD_RECOMMENDATIONS, SILVER_CUSTOMERS, SILVER_EVENTS,
    SILVER_ORDERS, SILVER_CAMPAIGN_TOUCHES,
)  # fmt: skip


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Build audiences and evaluate campaigns as of ``gold.as_of``."""
    run_id = run_id or new_run_id("campaign")
    store = store or open_store(spark, cfg)
    ccfg: CampaignConfig = cfg.campaign
    definitions = load_definitions(cfg)
    as_of = resolve_as_of(store, cfg)
    result = JobResult("campaign", run_id)
    result.inputs = {s.name: store.version(s) for s in _INPUTS if store.exists(s)}

    # -- audiences and exports
    audiences, facts = build_audiences(spark, store, cfg, as_of, definitions)
    result.outputs[GOLD_AUDIENCES.name] = publish_as_of(store, GOLD_AUDIENCES, audiences, as_of)
    qi, k = list(ccfg.export.quasi_identifiers), ccfg.export.k_anonymity
    exported = audience_export(audiences, qi, k).persist()
    facts["k_anonymity"] = _k_anonymity_facts(audiences, exported, qi, k)
    if "delta" in ccfg.export.formats:
        result.outputs[GOLD_AUDIENCE_EXPORT.name] = publish_as_of(store, GOLD_AUDIENCE_EXPORT, exported, as_of)
    if "csv" in ccfg.export.formats:
        facts["csv_exports"] = _write_csv_exports(cfg, as_of, exported, facts["campaigns"])
    exported.unpersist()
    audiences.unpersist()

    # -- evaluation
    kpi_rows: list[dict[str, Any]] = []
    ab_rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    if store.exists(SILVER_CAMPAIGN_TOUCHES):
        attributed = _attributed_touches_as_of(store, ccfg, as_of).persist()
        kpi_df = campaign_kpis(attributed)
        result.outputs[GOLD_CAMPAIGN_KPIS.name] = publish_as_of(store, GOLD_CAMPAIGN_KPIS, kpi_df, as_of)
        kpi_rows = _report_kpi_rows(kpi_df)
        ab_rows, warnings = ab_results(attributed, ccfg.ab)
        attributed.unpersist()
    else:
        log.warning("campaign: %s does not exist: no effect evaluation", SILVER_CAMPAIGN_TOUCHES.name)
    ab_df = _ab_results_frame(spark, ab_rows)
    result.outputs[GOLD_AB_RESULTS.name] = publish_as_of(store, GOLD_AB_RESULTS, ab_df, as_of)
    for w in warnings:
        log.warning("campaign: %s", w)

    # -- report and run log
    report = write_report(cfg, as_of, facts, kpi_rows, ab_rows, warnings)
    result.row_counts.update(_published_row_counts(store, as_of, result.outputs))
    result.metrics = _run_metrics(as_of, facts, ab_rows, warnings, report)
    result.summary = _summary(result.metrics, len(definitions), result.row_counts.get(GOLD_AUDIENCES.name, 0))
    return result


def _k_anonymity_facts(audiences: DataFrame, exported: DataFrame, qi: list[str], k: int) -> dict[str, Any]:
    """k-anonymity of the export per campaign, and of the treatment recipients before
    suppression (what suppression had to withhold)."""
    before = export.k_anonymity(audiences.where(F.col("assignment") == "treatment"), ["campaign_id", *qi], k)
    return {**export.k_anonymity(exported, ["campaign_id", *qi], k), "before_suppression": before}


def _write_csv_exports(
    cfg: ShopLakeConfig, as_of: date, exported: DataFrame, campaign_facts: dict[str, Any]
) -> dict[str, str]:
    """One CSV per built campaign; returns the paths by campaign id."""
    paths = {}
    for cid, info in campaign_facts.items():
        if info["status"] == "built":
            paths[cid] = export.write_csv(exported.where(F.col("campaign_id") == cid), export_csv_path(cfg, as_of, cid))
    return paths


def _attributed_touches_as_of(store: DeltaStore, ccfg: CampaignConfig, as_of: date) -> DataFrame:
    """Touches sent up to the as-of day with the paid orders attributed to them and the segment."""
    touches = up_to(store.read(SILVER_CAMPAIGN_TOUCHES), "sent_at", as_of).where(F.col("user_key").isNotNull())
    # Paid as of the day: an order refunded or cancelled after it still counts then.
    orders = (
        store.read(SILVER_ORDERS)
        .transform(common_orders.orders_as_of(as_of))
        .where(F.col("status") == "paid")
        .withColumn("revenue", F.col("total_amount").cast("double"))
    )
    segments = read_as_of(store, GOLD_SEGMENTS, as_of, ["user_key", "segment_name"])
    return attributed_touches(touches, orders, ccfg.attribution_window_hours, ccfg.repeat_window_days, segments)


def _report_kpi_rows(kpi_df: DataFrame) -> list[dict[str, Any]]:
    """The KPI rows the report shows (all but the per-segment ones), in a stable order."""
    shown = kpi_df.where("dimension != 'segment'").orderBy("campaign_id", "dimension", "dimension_value")
    return [r.asDict() for r in shown.collect()]


def _ab_results_frame(spark: SparkSession, ab_rows: list[dict[str, Any]]) -> DataFrame:
    """``ab_rows`` as a DataFrame of GOLD_AB_RESULTS columns but as_of (typed even when empty)."""
    ab_schema = T.StructType([f for f in GOLD_AB_RESULTS.schema.fields if f.name != "as_of"])
    return spark.createDataFrame([tuple(r[f.name] for f in ab_schema.fields) for r in ab_rows], ab_schema)


def _published_row_counts(store: DeltaStore, as_of: date, outputs: dict[str, int]) -> dict[str, int]:
    """Rows now stored for the as-of date in each table this run published."""
    counts = {}
    for spec in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS, GOLD_AB_RESULTS):
        if spec.name in outputs:
            counts[spec.name] = store.read(spec).where(F.col("as_of") == F.lit(as_of)).count()
    return counts


def _run_metrics(
    as_of: date, facts: dict[str, Any], ab_rows: list[dict[str, Any]], warnings: list[str], report: str
) -> dict[str, Any]:
    """The run log's metrics: the audience facts, the tests run and which were significant."""
    return {
        "as_of": as_of.isoformat(),
        **facts,
        "ab_tests": len(ab_rows),
        "significant": sorted(
            f"{r['campaign_id']} {r['metric']} {r['treatment']} vs {r['reference']}"
            for r in ab_rows
            if r["significant"]
        ),  # fmt: skip
        "warnings": warnings,
        "report": report,
    }


def _summary(metrics: dict[str, Any], n_definitions: int, audience_rows: int) -> str:
    """The line the CLI prints, from the run's metrics."""
    built = [c for c, i in metrics["campaigns"].items() if i["status"] == "built"]
    return (
        f"as of {metrics['as_of']}: {len(built)}/{n_definitions} campaigns built "
        f"({audience_rows} audience rows), {metrics['ab_tests']} tests, "
        f"{len(metrics['significant'])} significant; report {metrics['report']}"
    )
