"""What the stream reads and writes per micro-batch: the feed's files or a Kafka topic, typed
records, silver events with their near-copies dropped and user keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.streaming.state import GroupState, GroupStateTimeout

from common import privacy
from common.config import ShopLakeConfig
from common.delta.jars import kafka_connector_coordinate
from common.errors import ConfigError, EnvironmentProblem, InputError
from common.events import content_event_id, event_content_hash, flag_unknown_items, to_silver_values
from common.paths import is_local, local_path
from common.records import read_options, to_bronze_rows, to_quarantine_rows, tokenize, type_records
from common.sources import FeedSpec, SourceMapping, load_source
from common.tables import (
    BRONZE_QUARANTINE,
)

# Spark's binaryFile source; a file stream needs its schema up front.
BINARY_FILE_SCHEMA = T.StructType(
    [
        T.StructField("path", T.StringType(), False),
        T.StructField("modificationTime", T.TimestampType(), False),
        T.StructField("length", T.LongType(), False),
        T.StructField("content", T.BinaryType()),
    ]
)


def check_stream(cfg: ShopLakeConfig) -> None:
    """``stream.source`` names a mapping with the feed ``stream.feed``, whose outputs a
    stream can compute; called by ``validate_all`` before Spark starts.

    Raises:
        ConfigError: naming the key.
    """
    stream_feed(cfg)


def stream_feed(cfg: ShopLakeConfig) -> tuple[SourceMapping, FeedSpec]:
    """The mapping and feed ``stream.source`` / ``stream.feed`` name."""
    folder = Path(cfg.conf_dir) / "sources"
    if not (folder / f"{cfg.stream.source}.yaml").is_file():
        known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"stream.source: no source mapping {folder / cfg.stream.source}.yaml (known: {known})")
    mapping = load_source(cfg.stream.source, cfg)
    feed = next((f for f in mapping.feeds if f.name == cfg.stream.feed), None)
    if feed is None:
        names = ", ".join(f.name for f in mapping.feeds)
        raise ConfigError(f"stream.feed: source {mapping.name} has no feed {cfg.stream.feed!r} (its feeds: {names})")
    windowed = [o.table for o in feed.outputs if o.distinct_on]
    if windowed:
        # distinct_on ranks the rows of a whole file (a window), which a stream cannot do.
        raise ConfigError(
            f"stream.feed: feed {feed.name} of source {mapping.name} writes {', '.join(windowed)} with "
            "distinct_on, which a stream cannot compute; load it with `shoplake run ingest`"
        )
    return mapping, feed


def checkpoint_folder(cfg: ShopLakeConfig) -> str:
    """Where this feed's queries keep their checkpoints (one subfolder per table)."""
    root = cfg.resolve_path(cfg.stream.checkpoints) if cfg.stream.checkpoints else f"{cfg.lake_root}/_checkpoints"
    return f"{root.rstrip('/')}/stream_{cfg.stream.source}_{cfg.stream.feed}"


def landing_files(spark: SparkSession, mapping: SourceMapping, feed: FeedSpec, cfg: ShopLakeConfig) -> DataFrame:
    """New files of the feed as a stream of (_path, _file_sha, content) rows."""
    folder = mapping.folder_path(cfg)
    if is_local(folder) and not os.path.isdir(local_path(folder)):
        raise InputError(f"source {mapping.name}: landing folder {folder} does not exist")
    return (
        spark.readStream.schema(BINARY_FILE_SCHEMA)
        .format("binaryFile")
        .option("maxFilesPerTrigger", cfg.stream.max_files_per_trigger)
        .load(f"{folder.rstrip('/')}/{feed.pattern}")
        .select(
            F.regexp_replace("path", "^file:", "").alias("_path"),
            F.sha2("content", 256).alias("_file_sha"),
            "content",
        )
    )


def kafka_messages(spark: SparkSession, cfg: ShopLakeConfig) -> DataFrame:
    """New messages of ``stream.kafka.topic`` as a stream of (_path, _file_sha, content)
    rows, each message a file of its own: its value is parsed as a landing file's
    content; ``kafka://<topic>/<partition>/<offset>`` stands for the file and a hash of
    that for its content hash (bronze's key with the line number)."""
    kafka = cfg.stream.kafka
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
        .option("subscribe", kafka.topic)
        .option("startingOffsets", kafka.starting_offsets)
        .options(**{f"kafka.{key}": value for key, value in kafka.options.items()})
    )
    if kafka.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", kafka.max_offsets_per_trigger)
    try:
        messages = reader.load()
    except AnalysisException as exc:
        if "kafka" not in str(exc).lower():
            raise
        raise EnvironmentProblem(
            f"stream.kafka: Spark has no Kafka source: run `shoplake jars` (fetches {kafka_connector_coordinate()}), "
            f"or pass --packages {kafka_connector_coordinate()} to spark-submit"
        ) from exc
    where = F.format_string("kafka://%s/%d/%d", "topic", "partition", "offset")
    return messages.select(where.alias("_path"), F.sha2(where, 256).alias("_file_sha"), F.col("value").alias("content"))


def stream_rows(
    files: DataFrame, mapping: SourceMapping, feed: FeedSpec, cfg: ShopLakeConfig, run_id: str
) -> dict[str, DataFrame]:
    """Streaming rows per table: the feed's bronze tables and ``bronze.quarantine``."""
    typed = type_records(tokenize(files, read_options(feed)), feed, mapping.feed_time_zone(feed, cfg))
    # Each micro-batch's start, to the second as ingest's run time.
    at = F.date_trunc("second", F.current_timestamp())
    valid = typed.where(F.col("_reason").isNull())
    rows = {o.table: to_bronze_rows(valid, mapping, feed, o, run_id, at) for o in feed.outputs}
    bad = typed.where(F.col("_reason").isNotNull())
    rows[BRONZE_QUARANTINE.name] = to_quarantine_rows(bad, mapping, feed, run_id, at)
    return rows


def silver_events(
    bronze_events: DataFrame, key_map: DataFrame, products: DataFrame, cfg: ShopLakeConfig, secret: bytes
) -> DataFrame:
    """Streaming silver.events rows from the stream's bronze.events rows.

    The Python UDFs (pseudonyms, normalised text, IP prefixes) run before the stateful
    deduplication, on the rows as read: Spark 4.2 feeds a stateful operator's output rows
    to a Python UDF in a form it cannot read (ClassCastException to UnsafeRow).

    Args:
        key_map: ``silver.user_key_map`` (static): registered ids -> their person's key.
        products: ``silver.products`` (static): the catalogue items are checked against.
    """
    content = F.when(F.col("event_id").isNull(), event_content_hash())
    values = to_silver_values(
        with_user_keys(bronze_events.withColumn("_content", content), key_map, secret),
        cfg,
        "_content",
        "_source_file",
        "_source_line",
    )
    delay_ms = int(cfg.stream.watermark_seconds * 1000)
    events = values.withWatermark("event_time", f"{delay_ms} milliseconds")
    with_id = (
        events.where(F.col("event_id").isNotNull())
        .dropDuplicatesWithinWatermark(["source_system", "event_id"])
        .drop("_content", "_source_file", "_source_line")
    )
    without_id = first_of_near_copies(events.where(F.col("event_id").isNull()), cfg.clean.event_dedup_window_seconds)
    return flag_unknown_items(with_id.unionByName(without_id), products)


def first_of_near_copies(events: DataFrame, window_seconds: float) -> DataFrame:
    """Id-less events (with their ``_content`` hash), the first of each run of copies: a
    copy within ``window_seconds`` of the previous one is dropped, as clean's
    ``dedup_events`` does; the id is clean's too. The last time seen per content is kept
    in state until the watermark has passed it by the window."""
    columns = [c for c in events.columns if c not in ("_source_file", "_source_line")]
    out = T.StructType([f for f in events.schema.fields if f.name in columns])
    state = T.StructType([T.StructField("last_seconds", T.DoubleType())])
    return (
        events.groupBy("_content")
        .applyInPandasWithState(
            _keep_first_copies(window_seconds, columns),
            outputStructType=out,
            stateStructType=state,
            outputMode="append",
            timeoutConf=GroupStateTimeout.EventTimeTimeout,
        )
        .withColumn("event_id", content_event_id(F.col("_content"), F.col("event_time")))
        .drop("_content")
    )


def _keep_first_copies(window_seconds: float, columns: list[str]):
    def keep(key: tuple, frames: Iterator[pd.DataFrame], state: GroupState) -> Iterator[pd.DataFrame]:
        if state.hasTimedOut:
            state.remove()
            return
        frame = pd.concat(list(frames), ignore_index=True)
        frame = frame.sort_values(["event_time", "_source_file", "_source_line"], kind="stable")
        seconds = (frame["event_time"] - pd.Timestamp(0)).dt.total_seconds()
        previous = seconds.shift(1)
        if state.exists:
            previous.iloc[0] = state.get[0]
        keep_rows = previous.isna() | (seconds - previous > window_seconds)
        last = float(seconds.iloc[-1])
        state.update((last,))
        # Forget the content once the watermark has passed the window after its last copy.
        state.setTimeoutTimestamp(max(int((last + window_seconds) * 1000), state.getCurrentWatermarkMs() + 1))
        yield frame.loc[keep_rows, columns]

    return keep


def with_user_keys(events: DataFrame, key_map: DataFrame, secret: bytes) -> DataFrame:
    """``user_key`` for each event with a user id: its person's key when the id is a
    registered customer's (``silver.user_key_map`` holds the keyed hash of every
    ``source_system:customer_id``), else the keyed hash of the id itself, as clean does."""
    id_text = F.concat_ws(":", "source_system", "user_id")
    known = key_map.select(F.col("source_key").alias("_source_key"), F.col("user_key").alias("_known_key"))
    has_id = F.col("user_id").isNotNull()
    own_key = privacy.pseudonym_col(id_text, secret, "user")
    return (
        events.withColumn("_source_key", F.when(has_id, privacy.pseudonym_col(id_text, secret, "source")))
        .join(F.broadcast(known), "_source_key", "left")
        .withColumn("user_key", F.when(has_id, F.coalesce("_known_key", own_key)))
        .drop("_source_key", "_known_key")
    )
