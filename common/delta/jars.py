"""The delta-spark jars: which Maven coordinate matches the installed wheels, and a
project folder that holds them so a session needs no download at start-up.

Delta documents ``spark.jars.packages`` (what ``delta.configure_spark_with_delta_pip``
sets) as the way to put its jars on a local session's classpath. That resolves with
Ivy at every cold start. ``shoplake jars`` (``make jars``) instead fetches the same
artifact once with Maven into ``<project>/jars/<artifact>-<version>/``; the session
factory passes that folder's jars as ``spark.jars``. Dependencies Spark already ships
(Scala, Hadoop, Parquet, Jackson, logging) are left out: Spark's own copies win on
its classpath anyway, and a second copy only costs start-up time.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from common.errors import EnvironmentProblem

SCALA_BINARY = "2.13"
DELTA_GROUP = "io.delta"
# The wheel's own helper asks for its own version, which Maven Central may not
# serve yet; pyproject.toml pins the wheel to a version whose jar it does serve.
DELTA_VERSION_ENV = "SHOPLAKE_DELTA_VERSION"


def spark_minor() -> str:
    """``4.2`` for pyspark 4.2.x: Delta 4.1+ names its artifact after Spark's version."""
    import pyspark

    major, minor = pyspark.__version__.split(".")[:2]
    return f"{major}.{minor}"


def delta_version() -> str:
    """The delta-spark version to load: the installed ``delta-spark`` wheel's."""
    override = os.environ.get(DELTA_VERSION_ENV)
    if override:
        return override
    try:
        return package_version("delta-spark")
    except PackageNotFoundError as exc:  # pragma: no cover - a dependency of the project
        raise EnvironmentProblem("the delta-spark Python package is not installed: pip install delta-spark") from exc


def delta_artifact() -> str:
    """``delta-spark_4.2_2.13`` for the installed pyspark."""
    return f"delta-spark_{spark_minor()}_{SCALA_BINARY}"


def delta_coordinate() -> str:
    """The Maven coordinate matching the installed wheels, e.g. ``io.delta:delta-spark_4.2_2.13:4.4.0``."""
    return f"{DELTA_GROUP}:{delta_artifact()}:{delta_version()}"


def jar_folder(jars_root: str | Path) -> Path:
    """Where ``shoplake jars`` puts the jars of :func:`delta_coordinate`."""
    return Path(jars_root) / f"{delta_artifact()}-{delta_version()}"


def local_delta_jars(jars_root: str | Path) -> list[str]:
    """The fetched jars for the installed wheels, sorted; empty when not fetched (the
    fetch moves a complete folder into place, so a folder with the main jar is whole)."""
    folder = jar_folder(jars_root)
    main = folder / f"{delta_artifact()}-{delta_version()}.jar"
    if not main.is_file():
        return []
    return sorted(glob.glob(str(folder / "*.jar")))


def _spark_shipped_artifacts() -> set[str]:
    """Artifact names (no version) of the jars inside the pyspark package."""
    import pyspark

    names = (Path(p).name for p in glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "*.jar")))
    return {_artifact_name(n) for n in names}


def _artifact_name(jar_name: str) -> str:
    """``jackson-core`` for ``jackson-core-2.13.5.jar`` (the version starts at the first ``-<digit>``)."""
    return re.sub(r"-\d[^-]*(-\d+)?\.jar$", "", jar_name)


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shoplake</groupId><artifactId>delta-jars</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version></dependency>
  </dependencies>
</project>
"""


def fetch_delta_jars(jars_root: str | Path, mvn: str | None = None) -> list[str]:
    """Fetch the delta-spark jars with Maven into :func:`jar_folder` (no-op when there).

    Returns the jar paths. Raises :class:`EnvironmentProblem` naming the coordinate and
    what to do when Maven is missing or cannot resolve it.
    """
    have = local_delta_jars(jars_root)
    if have:
        return have
    fetch_maven(
        DELTA_GROUP, delta_artifact(), delta_version(), jar_folder(jars_root), mvn,
        hint="is this version on Maven Central? pip's delta-spark and the jar must match; "
        "pyproject.toml pins one that is served",
        missing_mvn="or let Spark resolve it at start-up with lake.backend=delta-spark, or use lake.backend=delta-rs",
    )  # fmt: skip
    return local_delta_jars(jars_root)


# Spark's Kafka source (spark-sql-kafka-0-10) for `shoplake stream` with stream.kafka set:
# the same version as pyspark.
KAFKA_CONNECTOR_GROUP = "org.apache.spark"


def kafka_connector_artifact() -> str:
    return f"spark-sql-kafka-0-10_{SCALA_BINARY}"


def kafka_connector_coordinate() -> str:
    """e.g. ``org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0``."""
    import pyspark

    return f"{KAFKA_CONNECTOR_GROUP}:{kafka_connector_artifact()}:{pyspark.__version__}"


def _kafka_connector_folder(jars_root: str | Path) -> Path:
    import pyspark

    return Path(jars_root) / f"{kafka_connector_artifact()}-{pyspark.__version__}"


def local_kafka_connector_jars(jars_root: str | Path) -> list[str]:
    """The fetched Kafka connector jars for the installed pyspark; empty when not fetched."""
    folder = _kafka_connector_folder(jars_root)
    if not (folder / f"{folder.name}.jar").is_file():
        return []
    return sorted(glob.glob(str(folder / "*.jar")))


def fetch_kafka_connector_jars(jars_root: str | Path, mvn: str | None = None) -> list[str]:
    """Fetch Spark's Kafka connector with Maven next to the Delta jars (no-op when there)."""
    import pyspark

    if not local_kafka_connector_jars(jars_root):
        fetch_maven(
            KAFKA_CONNECTOR_GROUP,
            kafka_connector_artifact(),
            pyspark.__version__,
            _kafka_connector_folder(jars_root),
            mvn,
        )
    return local_kafka_connector_jars(jars_root)


def fetch_maven(
    group: str,
    artifact: str,
    version: str,
    folder: Path,
    mvn: str | None = None,
    *,
    hint: str = "is this version on Maven Central?",
    missing_mvn: str = "",
    leave_out_spark_jars: bool = True,
) -> list[Path]:
    """``group:artifact:version`` and its runtime dependencies into ``folder`` with Maven,
    leaving out (by default) what pyspark ships: Spark's own copies win on its classpath."""
    coordinate = f"{group}:{artifact}:{version}"
    folder = Path(folder).resolve()  # Maven resolves a relative output folder against the pom's
    mvn = mvn or shutil.which("mvn")
    if not mvn:
        raise EnvironmentProblem(
            f"Maven (`mvn`) is not installed, so {coordinate} cannot be fetched: install it "
            f"(Debian: apt-get install maven){', ' + missing_mvn if missing_mvn else ''}"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="maven-jars-", dir=folder.parent) as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_POM.format(group=group, artifact=artifact, version=version))
        out = Path(tmp) / "jars"
        proc = subprocess.run(
            [mvn, "-B", "-q", "-f", str(pom), "dependency:copy-dependencies", "-DincludeScope=runtime",
             f"-DoutputDirectory={out}"],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-5:])
            raise EnvironmentProblem(f"Maven could not fetch {coordinate} ({hint}):\n{tail}")
        shipped = _spark_shipped_artifacts() if leave_out_spark_jars else set()
        keep = [p for p in sorted(out.glob("*.jar")) if _artifact_name(p.name) not in shipped]
        staged = Path(tmp) / "final"
        staged.mkdir()
        for jar in keep:
            shutil.copy2(jar, staged / jar.name)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staged, folder)
    return sorted(folder.glob("*.jar"))
