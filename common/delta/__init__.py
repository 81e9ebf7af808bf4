"""Delta IO: one API (:class:`DeltaStore`), two engines, chosen by configuration."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from common.config import ShopLakeConfig
from common.delta.base import Commit, DeltaStore
from common.delta.jars import delta_coordinate
from common.errors import EnvironmentProblem

log = logging.getLogger(__name__)

# Set by common.spark.build_spark: why the session has (or lacks) delta-spark.
DELTA_REASON_CONF = "spark.shoplake.delta.reason"

__all__ = ["DELTA_REASON_CONF", "Commit", "DeltaStore", "delta_spark_available", "open_store", "resolve_backend"]


def delta_spark_available(spark: SparkSession) -> bool:
    """True when the delta-spark classes load in this session (jars on the classpath
    and the Delta SQL extension configured)."""
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "io.delta.sql.DeltaSparkSessionExtension" not in extensions:
        return False
    try:
        from delta.tables import DeltaTable

        # Fails with a JVM error when the jars are missing.
        DeltaTable.isDeltaTable(spark, "file:///nonexistent-shoplake-probe")
        return True
    except Exception:  # noqa: BLE001 - any failure here means "not available"
        return False


def resolve_backend(spark: SparkSession, cfg: ShopLakeConfig) -> tuple[str, str]:
    """The backend ``cfg.lake.backend`` means in this session, and why (for the start-up line)."""
    why = spark.conf.get(DELTA_REASON_CONF, "") or "session built elsewhere"
    backend = cfg.lake.backend
    if backend == "delta-rs":
        return backend, "lake.backend is delta-rs"
    if backend == "delta-spark":
        return backend, f"lake.backend is delta-spark; {why}"
    if delta_spark_available(spark):
        return "delta-spark", f"auto: the Delta classes load; {why}"
    return "delta-rs", f"auto: the Delta classes do not load; {why}"


def open_store(spark: SparkSession, cfg: ShopLakeConfig, root: str | None = None) -> DeltaStore:
    """The store for ``cfg.lake.backend`` (``auto``: delta-spark when available, else delta-rs)."""
    root = root or cfg.lake_root
    backend, _ = resolve_backend(spark, cfg)
    if backend == "delta-spark":
        if not delta_spark_available(spark):
            raise EnvironmentProblem(
                f"lake.backend is delta-spark but the Delta classes do not load: run `shoplake jars` (local), "
                f"start Spark with --packages {delta_coordinate()} (or the platform's Delta), "
                "or set lake.backend=delta-rs"
            )
        from common.delta.spark_store import SparkDeltaStore

        store: DeltaStore = SparkDeltaStore(spark, root, target_file_rows=cfg.lake.target_file_rows)
    else:
        from common.delta.rs_store import RsDeltaStore

        store = RsDeltaStore(spark, root, target_file_rows=cfg.lake.target_file_rows)
    log.debug("Delta backend %s at %s", store.backend, root)
    return store
