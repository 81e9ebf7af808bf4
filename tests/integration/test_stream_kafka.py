"""`shoplake stream` from a Kafka topic: a real broker (Apache Kafka 4.1 in KRaft mode,
its jars fetched from Maven Central into jars/, one JVM for this module) receives a
generated clickstream's lines, one message each; the stream parses them with the landing
folder's code into the same bronze rows, quarantine and silver events, once each across
a second run."""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
import uuid
from datetime import date

import pytest
from pyspark.sql import functions as F

from common.delta import open_store
from common.delta.jars import fetch_maven, local_kafka_connector_jars
from common.errors import EnvironmentProblem
from common.tables import BRONZE_EVENTS, BRONZE_QUARANTINE, SILVER_EVENTS
from shoplake.generate import generate
from shoplake.registry import run_job
from tests.conftest import PROJECT_ROOT, make_config

BROKER = ("org.apache.kafka", "kafka_2.13", "4.1.1")
TOPIC = "shop-events"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _unavailable(reason: str):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must test the Kafka source, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """``host:port`` of a single-node Kafka broker (broker and controller in one JVM)."""
    if not local_kafka_connector_jars(PROJECT_ROOT / "jars"):
        _unavailable("no Spark Kafka connector in jars/: run `make jars`")
    group, artifact, version = BROKER
    folder = PROJECT_ROOT / "jars" / f"{artifact}-{version}"
    if not (folder / f"{artifact}-{version}.jar").is_file():
        try:
            fetch_maven(group, artifact, version, folder, leave_out_spark_jars=False)
        except EnvironmentProblem as exc:
            _unavailable(str(exc))
    java = shutil.which("java") or _unavailable("no java on PATH")
    root = tmp_path_factory.mktemp("kafka")
    port, controller = _free_port(), _free_port()
    props = root / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=localhost:{controller}",
                f"listeners=PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller}",
                f"advertised.listeners=PLAINTEXT://localhost:{port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={root / 'logs'}",
                "num.partitions=2",  # two partitions: the stream reads both
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
            ]
        )
        + "\n"
    )
    classpath = f"{folder}/*"
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    subprocess.run(
        [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
            "--standalone",
        ],
        check=True,
        capture_output=True,
    )
    log = open(root / "broker.log", "wb")  # noqa: SIM115 - open while the broker runs
    proc = subprocess.Popen([java, "-Xmx512m", "-cp", classpath, "kafka.Kafka", str(props)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (root / "broker.log").read_text()[-3000:]
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Kafka broker did not open its port in 120 s"
                time.sleep(0.5)
        yield f"localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_kafka_topic_streams_into_the_same_bronze_quarantine_and_silver(spark, broker, tmp_path, secret_env):
    landing = tmp_path / "landing"
    manifest = generate(landing, users=40, days=3, seed=11, start_date=date(2024, 4, 1))
    lines = [
        line
        for path in sorted((landing / "shop" / "events").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]
    # A message per line, the file's bytes as its value (malformed lines, bad UTF-8 included).
    messages = spark.createDataFrame([(str(n), bytearray(v)) for n, v in enumerate(lines)], "key string, value binary")
    messages.write.format("kafka").option("kafka.bootstrap.servers", broker).option("topic", TOPIC).save()

    kafka = [f"stream.kafka.bootstrap_servers={broker}", f"stream.kafka.topic={TOPIC}"]
    # Partitions are read side by side, not in event-time order: a watermark longer than the
    # shop's three days keeps every event (the file tests cover late drops).
    cfg = make_config(tmp_path, *kafka, "stream.kafka.max_offsets_per_trigger=60", "stream.watermark_seconds=1000000")
    result = run_job(spark, cfg, "stream", once=True)
    store = open_store(spark, cfg)
    events = store.read(BRONZE_EVENTS)
    bad = store.read(BRONZE_QUARANTINE).where(F.col("target_table") == "bronze.events")
    valid = manifest["valid_records_expected"]["bronze.events"]
    quarantined = sum(manifest["quarantine_expected"]["bronze.events"].values())
    assert len(lines) == valid + quarantined
    assert events.count() == valid and bad.count() == quarantined
    assert events.where(~F.col("_source_file").startswith(f"kafka://{TOPIC}/")).count() == 0
    assert events.select("_file_sha256", "_source_line").distinct().count() == valid
    # Both partitions read, in several micro-batches (60 messages at most each).
    assert events.select("_source_file").where(F.col("_source_file").contains(f"{TOPIC}/1/")).count() > 0
    assert result.metrics["bronze.events"]["batches"] >= 2
    assert dict(bad.groupBy("reason").count().collect()) == manifest["quarantine_expected"]["bronze.events"]
    silver = store.read(SILVER_EVENTS)
    assert result.metrics["silver.events"]["late_rows"] == 0
    assert silver.count() == silver.select("event_id").distinct().count() == manifest["silver_expected"]["events"]

    # The same bronze rows as the landing files give, but for where they came from.
    files_cfg = make_config(tmp_path / "files", f"landing.root={landing}", "stream.silver=false")
    run_job(spark, files_cfg, "stream", once=True)
    provenance = ["_source_file", "_source_line", "_file_sha256", "_ingest_run_id", "_ingested_at"]
    from_files = open_store(spark, files_cfg).read(BRONZE_EVENTS).drop(*provenance)
    assert from_files.exceptAll(events.drop(*provenance)).count() == 0
    assert events.drop(*provenance).exceptAll(from_files).count() == 0

    # A second run reads nothing new: the checkpoint holds the offsets.
    again = run_job(spark, cfg, "stream", once=True)
    assert again.row_counts["bronze.events"] == 0 and again.row_counts["silver.events"] == 0
    assert store.read(BRONZE_EVENTS).count() == valid


def test_without_the_connector_the_error_says_how_to_get_it(spark, tmp_path, monkeypatch):
    """Spark's own error when no Kafka source is on the classpath, turned into one naming
    the connector to fetch (the suite's session has it, so Spark's answer is stood in for)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql.streaming import DataStreamReader

    from jobs.stream.source import kafka_messages

    def not_found(self, *args, **kwargs):
        raise AnalysisException("[DATA_SOURCE_NOT_FOUND] Failed to find the data source: kafka.")

    monkeypatch.setattr(DataStreamReader, "load", not_found)
    cfg = make_config(tmp_path, "stream.kafka.bootstrap_servers=localhost:9")
    with pytest.raises(EnvironmentProblem, match=r"shoplake jars.*spark-sql-kafka-0-10_2\.13"):
        kafka_messages(spark, cfg)
