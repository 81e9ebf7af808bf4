"""Which Delta jar, where it comes from, and what the session factory adds for each
backend (issue 17): pure decisions, no Spark session started."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from common.delta import jars as J
from common.errors import EnvironmentProblem
from common.spark import DELTA_SPARK_CONF, delta_session_conf
from tests.conftest import make_config


def test_the_coordinate_follows_the_installed_wheels():
    # Delta 4.1+ names the artifact after Spark's major.minor; the version is the wheel's.
    assert J.delta_coordinate() == f"io.delta:delta-spark_4.2_2.13:{version('delta-spark')}"
    # pyproject pins the version Maven Central serves for Spark 4.2 (4.4.1 answers 404 there).
    assert version("delta-spark") == "4.4.0"


@pytest.mark.parametrize(
    "jar, artifact",
    [
        ("jackson-core-2.13.5.jar", "jackson-core"),
        ("delta-spark_4.2_2.13-4.4.0.jar", "delta-spark_4.2_2.13"),
        ("zstd-jni-1.5.7-3.jar", "zstd-jni"),
        ("javax.annotation-api-1.3.2.jar", "javax.annotation-api"),
    ],
)
def test_artifact_names_drop_the_version(jar, artifact):
    assert J._artifact_name(jar) == artifact


def fake_jars(root: Path) -> list[str]:
    folder = J.jar_folder(root)
    folder.mkdir(parents=True)
    names = [f"{J.delta_artifact()}-{J.delta_version()}.jar", "delta-storage-4.4.0.jar"]
    for name in names:
        (folder / name).write_bytes(b"")
    return sorted(str(folder / n) for n in names)


def test_local_jars_count_only_when_the_main_jar_is_there(tmp_path):
    assert J.local_delta_jars(tmp_path) == []
    folder = J.jar_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "delta-storage-4.4.0.jar").write_bytes(b"")
    assert J.local_delta_jars(tmp_path) == []  # a folder without the connector itself
    (folder / f"{J.delta_artifact()}-{J.delta_version()}.jar").write_bytes(b"")
    assert len(J.local_delta_jars(tmp_path)) == 2


def test_fetching_without_maven_names_the_coordinate_and_the_ways_out(tmp_path, monkeypatch):
    monkeypatch.setattr(J.shutil, "which", lambda _: None)
    with pytest.raises(EnvironmentProblem) as raised:
        J.fetch_delta_jars(tmp_path)
    message = str(raised.value)
    assert J.delta_coordinate() in message and "lake.backend=delta-rs" in message and "apt-get install maven" in message


def test_local_session_loads_the_fetched_jars(tmp_path):
    jars = fake_jars(tmp_path / "jars")
    cfg = make_config(tmp_path, "lake.backend=auto", f"lake.jars={tmp_path / 'jars'}", "spark.conf.spark.jars=/x.jar")
    conf, why = delta_session_conf(cfg, launcher=None)
    assert conf == {**DELTA_SPARK_CONF, "spark.jars": ",".join(["/x.jar", *jars])}
    assert why == f"2 delta-spark jars from {J.jar_folder(tmp_path / 'jars')}"


def test_without_jars_auto_means_delta_rs_and_says_how_to_get_them(tmp_path):
    cfg = make_config(tmp_path, "lake.backend=auto", f"lake.jars={tmp_path / 'none'}")
    conf, why = delta_session_conf(cfg, launcher=None)
    assert conf == {} and "run `shoplake jars`" in why


def test_without_jars_a_forced_delta_spark_resolves_the_package_at_start_up(tmp_path):
    cfg = make_config(tmp_path, "lake.backend=delta-spark", f"lake.jars={tmp_path / 'none'}")
    conf, _ = delta_session_conf(cfg, launcher=None)
    assert conf == {**DELTA_SPARK_CONF, "spark.jars.packages": J.delta_coordinate()}


def test_forced_delta_rs_adds_nothing_even_with_jars(tmp_path):
    fake_jars(tmp_path / "jars")
    cfg = make_config(tmp_path, "lake.backend=delta-rs", f"lake.jars={tmp_path / 'jars'}")
    assert delta_session_conf(cfg, launcher=None) == ({}, "lake.backend is delta-rs")


@pytest.mark.parametrize(
    "launcher, backend, with_delta",
    [
        ({"spark.jars.packages": "io.delta:delta-spark_4.2_2.13:4.4.0"}, "auto", True),
        ({"spark.jars": "/opt/jars/delta-spark_4.2_2.13-4.4.0.jar"}, "auto", True),
        ({"spark.jars": "/opt/jars/other.jar"}, "auto", False),
        ({}, "delta-spark", True),  # a platform with Delta built in
    ],
)
def test_under_a_launcher_its_classpath_decides(tmp_path, launcher, backend, with_delta):
    fake_jars(tmp_path / "jars")  # never used under a launcher: it owns the classpath
    cfg = make_config(tmp_path, f"lake.backend={backend}", f"lake.jars={tmp_path / 'jars'}")
    conf, _ = delta_session_conf(cfg, launcher={"spark.master": "spark://h:7077", **launcher})
    assert conf == (DELTA_SPARK_CONF if with_delta else {})
