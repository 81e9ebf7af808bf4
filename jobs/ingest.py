"""Ingest: landing files -> bronze Delta tables, bad records -> quarantine.

For every source mapping in ``landing.sources`` and every feed in it:

1. list the feed's files and hash their content (sha256); files already in
   ``bronze.ingested_files`` (same content, whatever the name) are skipped, so a
   re-run adds nothing and a re-delivered file is detected;
2. split each new file into records on the executors and type every field
   (:mod:`common.records`, shared with the ``stream`` job); a record that cannot
   be split or typed gets the first reason that applies;
3. map valid records to bronze rows with the feed's SQL expressions, add
   provenance (file, line, content hash, run id), and write each table with
   ``replace_where _file_sha256 IN (new files)`` so a crashed run re-runs cleanly;
4. read back and reconcile per file: records = primary-table rows + quarantined
   rows, then mark the files ingested.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import records
from common.config import ShopLakeConfig
from common.delta import DeltaStore, open_store
from common.errors import InputError, ReconciliationError
from common.landing import ReadOptions
from common.paths import is_local
from common.records import read_options, to_bronze_rows, to_quarantine_rows, type_records
from common.runlog import JobResult, new_run_id
from common.sources import FeedSpec, SourceMapping, load_source
from common.tables import (
    BRONZE_DATA_TABLES,
    BRONZE_INGESTED_FILES,
    BRONZE_QUARANTINE,
    TableSpec,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandingFile:
    source: str
    feed: str
    path: str
    sha256: str
    size: int


# ---------------------------------------------------------------------------- listing
def _is_uri(path: str) -> bool:
    return not is_local(path)


def list_feed_files(mapping: SourceMapping, feed: FeedSpec, cfg: ShopLakeConfig) -> list[str]:
    """The feed's files, sorted. Local folders are checked so a missing folder or an
    unreadable file fails with its name before anything is written."""
    folder = mapping.folder_path(cfg)
    pattern = f"{folder.rstrip('/')}/{feed.pattern}"
    if _is_uri(folder):
        return [pattern]  # a Hadoop glob, expanded by Spark
    if not os.path.isdir(folder):
        raise InputError(f"source {mapping.name}: landing folder {folder} does not exist")
    paths = sorted(glob.glob(pattern, recursive=True))
    for path in paths:
        if not os.path.isfile(path):
            raise InputError(f"source {mapping.name} feed {feed.name}: {path} is not a readable file")
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            raise InputError(f"source {mapping.name} feed {feed.name}: cannot read {path}: {exc}") from None
    return paths


def hash_files(spark: SparkSession, paths: list[str]) -> DataFrame:
    """(path, file_sha256, size) for each file, hashed by Spark where the files are."""
    return (
        spark.read.format("binaryFile")
        .load(paths)
        .select(
            F.regexp_replace("path", "^file:", "").alias("path"),
            F.sha2("content", 256).alias("file_sha256"),
            F.col("length").alias("size"),
        )
    )


def split_records(spark: SparkSession, files: list[LandingFile], options: dict[str, ReadOptions]) -> DataFrame:
    """One row per record of ``files`` (``options``: read options by file sha256):
    _path, _file_sha, _line, _raw, _fields, _token_reason, _token_detail."""
    shas = {f.path: f.sha256 for f in files}
    sha_of = F.create_map(*[x for p, s in shas.items() for x in (F.lit(p), F.lit(s))])
    content = (
        spark.read.format("binaryFile")
        .load([f.path for f in files])
        .select(F.regexp_replace("path", "^file:", "").alias("_path"), "content")
        .select("_path", sha_of[F.col("_path")].alias("_file_sha"), "content")
        # One file per task: a task holds one file's bytes, and files split in parallel.
        .repartition(max(1, len(files)), "_path")
    )
    return records.tokenize(content, options)


# ---------------------------------------------------------------------------- the job
@dataclass
class FeedBatch:
    mapping: SourceMapping
    feed: FeedSpec
    files: list[LandingFile]
    typed: DataFrame


def _sql_in(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _already_ingested(store: DeltaStore) -> dict[str, str]:
    if not store.exists(BRONZE_INGESTED_FILES):
        return {}
    rows = store.read(BRONZE_INGESTED_FILES).select("file_sha256", "path").collect()
    return {r.file_sha256: r.path for r in rows}


def discover(
    spark: SparkSession, store: DeltaStore, mappings: list[SourceMapping], cfg: ShopLakeConfig
) -> tuple[dict[tuple[str, str], list[LandingFile]], list[dict]]:
    """New files per (source, feed), and the files skipped as already ingested
    (same content under another name). All files are hashed in one Spark job."""
    feed_of: dict[str, tuple[str, str]] = {}
    for mapping in mappings:
        for feed in mapping.feeds:
            paths = list_feed_files(mapping, feed, cfg)
            if not paths:
                log.warning("source %s feed %s: no files match %s", mapping.name, feed.name, feed.pattern)
            for path in paths:
                feed_of.setdefault(path, (mapping.name, feed.name))
    if not feed_of:
        return {}, []
    seen = _already_ingested(store)
    new: dict[tuple[str, str], list[LandingFile]] = defaultdict(list)
    skipped: list[dict] = []
    rows = hash_files(spark, list(feed_of)).collect()
    # Spark's file sources skip zero-byte files; an empty delivery is still a file to record.
    hashed = {r.path for r in rows}
    empty = hashlib.sha256(b"").hexdigest()
    rows += [
        T.Row(path=p, file_sha256=empty, size=0)
        for p in feed_of
        if not _is_uri(p) and p not in hashed and os.path.getsize(p) == 0
    ]
    for row in sorted(rows, key=lambda r: r.path):
        if row.file_sha256 in seen:
            if seen[row.file_sha256] != row.path:
                skipped.append({"path": row.path, "same_content_as": seen[row.file_sha256]})
            continue
        seen[row.file_sha256] = row.path
        # Remote globs come back as the files they matched.
        source, feed_name = feed_of.get(row.path) or next(v for k, v in feed_of.items() if _is_uri(k))
        new[(source, feed_name)].append(LandingFile(source, feed_name, row.path, row.file_sha256, row.size))
    return dict(new), skipped


def run(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str | None = None,
    store: DeltaStore | None = None,
) -> JobResult:
    """Ingest every configured source's new landing files into bronze."""
    run_id = run_id or new_run_id("ingest")
    store = store or open_store(spark, cfg)
    ingested_at = datetime.now(timezone.utc).replace(microsecond=0)
    mappings = [load_source(name, cfg) for name in cfg.landing.sources]
    with _phase("discover files"):
        new_files, redelivered = discover(spark, store, mappings, cfg)
    result = JobResult("ingest", run_id)
    result.metrics["redelivered_files_skipped"] = redelivered
    if not new_files:
        result.summary = _summary([], {}, redelivered)
        return result

    by_name = {m.name: m for m in mappings}
    feeds = {key: next(f for f in by_name[key[0]].feeds if f.name == key[1]) for key in new_files}
    options = {f.sha256: read_options(feeds[key]) for key, files in new_files.items() for f in files}
    all_files = [f for files in new_files.values() for f in files]
    tokens = split_records(spark, all_files, options).persist()
    batches = []
    for key, files in new_files.items():
        mapping, feed = by_name[key[0]], feeds[key]
        mine = tokens.where(F.col("_file_sha").isin([f.sha256 for f in files]))
        typed = type_records(mine, feed, mapping.feed_time_zone(feed, cfg)).persist()
        batches.append(FeedBatch(mapping, feed, files, typed))

    try:
        with _phase("split and type records"):
            stats = _file_stats(batches)
        tokens.unpersist()  # every batch's typed records are cached now
        _check_quarantine_share(stats, cfg.ingest.max_quarantine_share)
        with _phase("write bronze"):
            outputs = _write_bronze(store, batches, stats, run_id, ingested_at, cfg.lake.target_file_rows)
        with _phase("reconcile"):
            _reconcile(store, batches, stats)
        rows = _ingested_files_rows(spark, batches, stats, run_id, ingested_at)
        outputs[BRONZE_INGESTED_FILES.name] = store.append(BRONZE_INGESTED_FILES, rows)
    finally:
        tokens.unpersist()
        for batch in batches:
            batch.typed.unpersist()

    result.outputs = outputs
    result.row_counts = _row_counts(stats)
    result.metrics["files"] = [
        {k: v for k, v in s.items() if k != "reasons"} | {"reasons": dict(s["reasons"])} for s in stats.values()
    ]
    result.summary = _summary(list(stats.values()), result.row_counts, redelivered)
    return result


@contextmanager
def _phase(name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    log.info("ingest: %s took %.1fs", name, time.monotonic() - started)


def _file_stats(batches: list[FeedBatch]) -> dict[str, dict]:
    """Per file: records, loaded, quarantined and quarantined by reason (one small collect)."""
    stats: dict[str, dict] = {}
    for batch in batches:
        for f in batch.files:
            stats[f.sha256] = {
                "source": batch.mapping.name,
                "feed": batch.feed.name,
                "table": batch.feed.primary_table,
                "path": f.path,
                "size": f.size,
                "records": 0,
                "loaded": 0,
                "quarantined": 0,
                "reasons": defaultdict(int),
            }
    outcomes = batches[0].typed.select("_file_sha", "_reason")
    for batch in batches[1:]:
        outcomes = outcomes.unionByName(batch.typed.select("_file_sha", "_reason"))
    try:
        rows = outcomes.groupBy("_file_sha", "_reason").count().collect()
    except Exception as exc:  # the splitter's header check surfaces as a Spark error
        message = str(exc)
        if "HeaderMismatch" not in message:
            raise
        detail = message.split("HeaderMismatch:", 1)[1].strip().splitlines()[0]
        raise InputError(f"mapping does not fit the file: {detail}") from None
    for row in rows:
        entry = stats[row._file_sha]
        entry["records"] += row["count"]
        if row._reason is None:
            entry["loaded"] += row["count"]
        else:
            entry["quarantined"] += row["count"]
            entry["reasons"][row._reason] += row["count"]
    return stats


def _check_quarantine_share(stats: dict[str, dict], limit: float) -> None:
    for entry in stats.values():
        if entry["records"] and entry["quarantined"] / entry["records"] > limit:
            top = max(entry["reasons"].items(), key=lambda kv: kv[1])
            raise InputError(
                f"{entry['path']}: {entry['quarantined']} of {entry['records']} records would be "
                f"quarantined (mostly {top[0]}), more than ingest.max_quarantine_share={limit}; "
                f"check the {entry['source']} mapping of feed {entry['feed']} (encoding, delimiter, "
                f"header, formats); nothing was written"
            )


def _write_bronze(
    store: DeltaStore,
    batches: list[FeedBatch],
    stats: dict[str, dict],
    run_id: str,
    ingested_at: datetime,
    target_file_rows: int,
) -> dict[str, int]:
    """Write every table once, replacing whatever an earlier attempt left for these files."""
    frames: dict[str, list[DataFrame]] = defaultdict(list)
    shas: dict[str, list[str]] = defaultdict(list)
    # Records are split one task per landing file; without coalescing, every table
    # write would produce one small file per landing file.
    records = sum(s["records"] for s in stats.values())
    partitions = max(1, -(-records // target_file_rows))
    for batch in batches:
        valid = batch.typed.where(F.col("_reason").isNull())
        bad = batch.typed.where(F.col("_reason").isNotNull())
        batch_shas = [f.sha256 for f in batch.files]
        for output in batch.feed.outputs:
            frames[output.table].append(to_bronze_rows(valid, batch.mapping, batch.feed, output, run_id, ingested_at))
            shas[output.table].extend(batch_shas)
        frames[BRONZE_QUARANTINE.name].append(to_quarantine_rows(bad, batch.mapping, batch.feed, run_id, ingested_at))
        shas[BRONZE_QUARANTINE.name].extend(batch_shas)
    versions = {}
    for name, parts in frames.items():
        spec: TableSpec = BRONZE_QUARANTINE if name == BRONZE_QUARANTINE.name else BRONZE_DATA_TABLES[name]
        df = parts[0]
        for part in parts[1:]:
            df = df.unionByName(part)
        df = df.coalesce(partitions)
        predicate = f"_file_sha256 IN ({_sql_in(sorted(set(shas[name])))})"
        versions[name] = store.replace_where(spec, df, predicate)
        log.info("wrote %s (v%s)", name, versions[name])
    return versions


def _reconcile(store: DeltaStore, batches: list[FeedBatch], stats: dict[str, dict]) -> None:
    """Read back what was written: per file, records = primary rows (distinct lines) + quarantined."""
    tables = defaultdict(list)
    for batch in batches:
        tables[batch.feed.primary_table].extend(f.sha256 for f in batch.files)
    written: dict[str, int] = defaultdict(int)
    for name, file_shas in tables.items():
        for row in (
            store.read(BRONZE_DATA_TABLES[name])
            .where(F.col("_file_sha256").isin(file_shas))
            .groupBy("_file_sha256")
            .agg(F.countDistinct("_source_line").alias("n"))
            .collect()
        ):
            written[row["_file_sha256"]] += row["n"]
    all_shas = list(stats)
    quarantined = {
        row["_file_sha256"]: row["n"]
        for row in store.read(BRONZE_QUARANTINE)
        .where(F.col("_file_sha256").isin(all_shas))
        .groupBy("_file_sha256")
        .agg(F.count("*").alias("n"))
        .collect()
    }
    problems = []
    for sha, entry in stats.items():
        loaded, bad = written.get(sha, 0), quarantined.get(sha, 0)
        if loaded + bad != entry["records"] or loaded != entry["loaded"]:
            problems.append(
                f"{entry['path']}: {entry['records']} records in, {loaded} in {entry['table']} + {bad} quarantined"
            )
    if problems:
        raise ReconciliationError("counts do not reconcile: " + "; ".join(problems))


def _ingested_files_rows(spark, batches, stats, run_id: str, ingested_at: datetime) -> DataFrame:
    rows = [
        {
            "source_system": s["source"],
            "feed": s["feed"],
            "path": s["path"],
            "file_sha256": sha,
            "size_bytes": s["size"],
            "records": s["records"],
            "loaded": s["loaded"],
            "quarantined": s["quarantined"],
            "ingest_run_id": run_id,
            "ingested_at": ingested_at,
        }
        for sha, s in sorted(stats.items(), key=lambda kv: kv[1]["path"])
    ]
    return spark.createDataFrame(rows, BRONZE_INGESTED_FILES.schema)


def _row_counts(stats: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for s in stats.values():
        counts["records_in"] += s["records"]
        counts[s["table"]] += s["loaded"]
        counts["bronze.quarantine"] += s["quarantined"]
    return dict(counts)


def _summary(stats: list[dict], counts: dict[str, int], redelivered: list[dict]) -> str:
    if not stats:
        lines = ["ingest: no new files (everything in landing is already in bronze)"]
    else:
        lines = [
            f"ingest: {len(stats)} new file(s), {counts.get('records_in', 0):,} records in, "
            f"{counts.get('records_in', 0) - counts.get('bronze.quarantine', 0):,} loaded, "
            f"{counts.get('bronze.quarantine', 0):,} quarantined",
        ]
        per_table: dict[str, dict] = defaultdict(lambda: {"records": 0, "loaded": 0, "reasons": defaultdict(int)})
        for s in stats:
            t = per_table[s["table"]]
            t["records"] += s["records"]
            t["loaded"] += s["loaded"]
            for reason, n in s["reasons"].items():
                t["reasons"][reason] += n
        width = max(len(name) for name in per_table)
        for name in sorted(per_table):
            t = per_table[name]
            reasons = ", ".join(f"{r}={n}" for r, n in sorted(t["reasons"].items())) or "none"
            lines.append(
                f"  {name:<{width}}  in {t['records']:>9,}  loaded {t['loaded']:>9,}  "
                f"quarantined {t['records'] - t['loaded']:>6,}  ({reasons})"
            )
    for r in redelivered:
        lines.append(f"  skipped {r['path']}: same content as already ingested {r['same_content_as']}")
    return "\n".join(lines)
