"""The clean job: build silver, gate it with the quality rules, publish (see :mod:`jobs.clean`)."""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.paths import is_local, local_path
from common.runlog import JobResult, new_run_id
from common.tables import (
    BRONZE_CAMPAIGN_TOUCHES,
    BRONZE_CUSTOMERS,
    BRONZE_EVENTS,
    BRONZE_ORDER_LINES,
    BRONZE_ORDERS,
    BRONZE_PRODUCTS,
    SILVER_CUSTOMERS,
    SILVER_REJECTED,
)
from jobs.clean.silver import SILVER_SPECS, build_silver, k_anonymity_report


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Build, audit and publish silver from bronze."""
    from common import quality

    run_id = run_id or new_run_id("clean")
    secret = cfg.pseudonym_secret()  # fails first, naming the variable, when unset
    store = store or open_store(spark, cfg)
    result = JobResult("clean", run_id)
    result.inputs = {
        spec.name: store.version(spec)
        for spec in (BRONZE_CUSTOMERS, BRONZE_PRODUCTS, BRONZE_EVENTS, BRONZE_ORDERS, BRONZE_ORDER_LINES,
                     BRONZE_CAMPAIGN_TOUCHES)
        if store.exists(spec)
    }  # fmt: skip
    tables, facts = build_silver(spark, store, cfg, secret)
    model = facts["identity"].pop("model", None)  # a file in the report folder, not the run log
    rules = quality.load_quality_rules(cfg)
    reports_dir = quality.default_reports_dir(cfg)
    # Times after the as-of day (plus a day of margin for time zones) are clock skew, not data.
    params = {"latest_plausible_time": f"{date.fromisoformat(facts['as_of']) + timedelta(days=2)}T00:00:00Z"}
    staged: dict[str, DataFrame] = {}
    rejected: list[DataFrame] = []
    cached: list[DataFrame] = list(facts["persisted"])
    gates = {}
    gated = False  # some table reached its gate: the run has data docs to build
    try:
        # Audit everything before publishing anything (write-audit-publish); tables are
        # built in dependency order so references see the rows that will be published.
        for name, df in tables.items():
            df = store.conform(SILVER_SPECS[name], df).persist()
            cached.append(df)
            table_rules = rules.get(name)
            if table_rules is not None:
                gated = True
                gate = quality.validate_table(
                    df,
                    table_rules,
                    run_id=run_id,
                    reports_dir=reports_dir,
                    context=staged,
                    params=params,
                    data_docs=False,
                )
                quality.enforce(gate)
                gates[name] = gate.success
                passing, failing = quality.split_row_failures(df, table_rules, context=staged, params=params)
                rejected.append(
                    failing.select(
                        F.lit(name).alias("table_name"),
                        "failed_expectation",
                        F.to_json(F.struct(*df.columns)).alias("record"),
                    )
                )
                df = passing.persist()
                cached.append(df)
            staged[name] = df
        customers = staged[SILVER_CUSTOMERS.name]
        result.metrics["k_anonymity"] = k_anonymity_report(customers, cfg.clean.k_anonymity)
        result.metrics["as_of"] = facts["as_of"]
        result.metrics["identity"] = facts["identity"]
        # Publish.
        for name, df in staged.items():
            result.outputs[name] = store.merge(SILVER_SPECS[name], df)
            result.row_counts[name] = store.row_count(SILVER_SPECS[name])
        if rejected:
            all_rejected = rejected[0]
            for part in rejected[1:]:
                all_rejected = all_rejected.unionByName(part)
            # Silver is rebuilt from all of bronze, so its rejects are too: the table holds the
            # current rejections, not a history (the run log says which run wrote it).
            result.outputs[SILVER_REJECTED.name] = store.overwrite(SILVER_REJECTED, all_rejected)
    finally:
        for df in cached:
            df.unpersist()
        if gated:
            # Once for every table gated, also when a gate failed: its page says why.
            quality.build_data_docs(reports_dir, run_id)
    result.metrics["quality_gates"] = gates
    _write_report(reports_dir, run_id, result.metrics)
    if model is not None:
        _write_report(reports_dir, run_id, model, IDENTITY_MODEL_FILE)
    result.metrics["k_anonymity"].pop("classes_below_k_sample")  # in the report file, not the run log
    result.summary = _summary(result)
    return result


# Files clean writes beside the quality-gate results in <reports>/<run id>/ (not gate results).
CLEAN_METRICS_FILE = "clean_metrics.json"
IDENTITY_MODEL_FILE = "identity_model.json"


def _write_report(reports_dir: str, run_id: str, metrics: dict, file_name: str = CLEAN_METRICS_FILE) -> None:
    if not is_local(reports_dir):
        return
    folder = os.path.join(local_path(reports_dir), run_id)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, file_name), "w", encoding="utf-8") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True, default=str)


def _summary(result: JobResult) -> str:
    k = result.metrics["k_anonymity"]
    lines = [f"clean: silver published (ages as of {result.metrics['as_of']})"]
    for name, count in sorted(result.row_counts.items()):
        lines.append(f"  {name:<24} {count:>10,} rows")
    lines.append(
        f"  k-anonymity (k={k['k']}) over {', '.join(k['quasi_identifiers'])}: smallest class {k['smallest_class']}, "
        f"{k['rows_needing_suppression_or_coarsening']} rows in classes below k"
    )
    identity = result.metrics.get("identity", {})
    if identity.get("method") == "splink" and "people" in identity:
        lines.append(
            f"  identity (splink): {identity['records']:,} registrations -> {identity['people']:,} people, "
            f"{identity['links']:,} links at p >= threshold, {identity['seconds']} s"
        )
    return "\n".join(lines)
