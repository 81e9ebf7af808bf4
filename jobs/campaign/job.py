"""The campaign job: audiences, results, report (see :mod:`jobs.campaign`)."""

from __future__ import annotations

import logging
from typing import Any

from pyspark.sql import SparkSession
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
    inputs = (GOLD_PROFILES, GOLD_SEGMENTS, GOLD_CHURN_SCORES, GOLD_CLV, GOLD_RECOMMENDATIONS, SILVER_CUSTOMERS,
              SILVER_EVENTS, SILVER_ORDERS, SILVER_CAMPAIGN_TOUCHES)  # fmt: skip
    result.inputs = {s.name: store.version(s) for s in inputs if store.exists(s)}

    # -- audiences and exports
    audiences, facts = build_audiences(spark, store, cfg, as_of, definitions)
    result.outputs[GOLD_AUDIENCES.name] = publish_as_of(store, GOLD_AUDIENCES, audiences, as_of)
    qi, k = list(ccfg.export.quasi_identifiers), ccfg.export.k_anonymity
    exported = audience_export(audiences, qi, k).persist()
    before = export.k_anonymity(audiences.where(F.col("assignment") == "treatment"), ["campaign_id", *qi], k)
    facts["k_anonymity"] = {**export.k_anonymity(exported, ["campaign_id", *qi], k), "before_suppression": before}
    if "delta" in ccfg.export.formats:
        result.outputs[GOLD_AUDIENCE_EXPORT.name] = publish_as_of(store, GOLD_AUDIENCE_EXPORT, exported, as_of)
    if "csv" in ccfg.export.formats:
        facts["csv_exports"] = {}
        for cid, info in facts["campaigns"].items():
            if info["status"] == "built":
                path = export.write_csv(exported.where(F.col("campaign_id") == cid), export_csv_path(cfg, as_of, cid))
                facts["csv_exports"][cid] = path
    exported.unpersist()
    audiences.unpersist()

    # -- evaluation
    kpi_rows: list[dict[str, Any]] = []
    ab_rows: list[dict[str, Any]] = []
    warnings: list[str] = []
    if store.exists(SILVER_CAMPAIGN_TOUCHES):
        touches = up_to(store.read(SILVER_CAMPAIGN_TOUCHES), "sent_at", as_of).where(F.col("user_key").isNotNull())
        # Paid as of the day: an order refunded or cancelled after it still counts then.
        orders = (
            store.read(SILVER_ORDERS)
            .transform(common_orders.orders_as_of(as_of))
            .where(F.col("status") == "paid")
            .withColumn("revenue", F.col("total_amount").cast("double"))
        )
        segments = read_as_of(store, GOLD_SEGMENTS, as_of, ["user_key", "segment_name"])
        attributed = attributed_touches(
            touches, orders, ccfg.attribution_window_hours, ccfg.repeat_window_days, segments
        ).persist()
        kpi_df = campaign_kpis(attributed)
        result.outputs[GOLD_CAMPAIGN_KPIS.name] = publish_as_of(store, GOLD_CAMPAIGN_KPIS, kpi_df, as_of)
        shown = kpi_df.where("dimension != 'segment'").orderBy("campaign_id", "dimension", "dimension_value")
        kpi_rows = [r.asDict() for r in shown.collect()]
        ab_rows, warnings = ab_results(attributed, ccfg.ab)
        attributed.unpersist()
    else:
        log.warning("campaign: %s does not exist: no effect evaluation", SILVER_CAMPAIGN_TOUCHES.name)
    ab_schema = T.StructType([f for f in GOLD_AB_RESULTS.schema.fields if f.name != "as_of"])
    ab_df = spark.createDataFrame([tuple(r[f.name] for f in ab_schema.fields) for r in ab_rows], ab_schema)
    result.outputs[GOLD_AB_RESULTS.name] = publish_as_of(store, GOLD_AB_RESULTS, ab_df, as_of)
    for w in warnings:
        log.warning("campaign: %s", w)

    report = write_report(cfg, as_of, facts, kpi_rows, ab_rows, warnings)
    for spec in (GOLD_AUDIENCES, GOLD_AUDIENCE_EXPORT, GOLD_CAMPAIGN_KPIS, GOLD_AB_RESULTS):
        if spec.name in result.outputs:
            result.row_counts[spec.name] = store.read(spec).where(F.col("as_of") == F.lit(as_of)).count()
    result.metrics = {
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
    built = [c for c, i in facts["campaigns"].items() if i["status"] == "built"]
    result.summary = (
        f"as of {as_of}: {len(built)}/{len(definitions)} campaigns built "
        f"({result.row_counts.get(GOLD_AUDIENCES.name, 0)} audience rows), {len(ab_rows)} tests, "
        f"{len(result.metrics['significant'])} significant; report {report}"
    )
    return result
