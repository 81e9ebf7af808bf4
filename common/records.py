"""Landing records -> typed rows -> bronze and quarantine rows: the one implementation
of the batch ``ingest`` job and the ``stream`` job.

Both hand in Spark rows of whole files (``_path``, ``_file_sha``, ``content``);
:func:`tokenize` splits them into records on the executors with
:mod:`common.landing`, :func:`type_records` types every field with
:mod:`common.parse` and gives each bad record the first reason that applies
(:class:`common.quarantine.Reason`), and :func:`to_bronze_rows` /
:func:`to_quarantine_rows` map them to a bronze table's or the quarantine's columns
with provenance. Everything here is DataFrame in, DataFrame out, and works on
streaming DataFrames as well (except feed outputs with ``distinct_on``, a window).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common import parse
from common.landing import ReadOptions, tokenize_file
from common.quarantine import Reason
from common.sources import FeedSpec, FieldSpec, SourceMapping
from common.tables import BRONZE_DATA_TABLES, INGEST_META_NAMES

TOKEN_SCHEMA = T.StructType(
    [
        T.StructField("_path", T.StringType(), False),
        T.StructField("_file_sha", T.StringType(), False),
        T.StructField("_line", T.LongType(), False),
        T.StructField("_raw", T.StringType()),
        T.StructField("_fields", T.ArrayType(T.StringType())),
        T.StructField("_token_reason", T.StringType()),
        T.StructField("_token_detail", T.StringType()),
    ]
)
_BATCH_ROWS = 20_000


# ---------------------------------------------------------------------------- splitting
def read_options(feed: FeedSpec) -> ReadOptions:
    return ReadOptions(
        format=feed.format,
        encoding=feed.encoding,
        header=feed.header,
        delimiter=feed.delimiter,
        field_names=tuple(feed.fields),
        field_paths=tuple(spec.path or name for name, spec in feed.fields.items()),
    )


_ARROW_TOKENS = pa.schema(
    [
        ("_path", pa.string()),
        ("_file_sha", pa.string()),
        ("_line", pa.int64()),
        ("_raw", pa.string()),
        ("_fields", pa.list_(pa.string())),
        ("_token_reason", pa.string()),
        ("_token_detail", pa.string()),
    ]
)


def _tokenizer(options: ReadOptions | Mapping[str, ReadOptions]):
    """A mapInArrow function: file rows (path, sha, content) -> one row per record,
    each file split with ``options`` (or, given a mapping, its own feed's options by sha)."""
    options_of = options.get if isinstance(options, Mapping) else (lambda _sha: options)

    def tokenize(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        columns: dict[str, list] = {name: [] for name in _ARROW_TOKENS.names}

        def flush() -> pa.RecordBatch:
            batch = pa.RecordBatch.from_pydict(columns, schema=_ARROW_TOKENS)
            for values in columns.values():
                values.clear()
            return batch

        for batch in batches:
            for path, sha, content in zip(
                batch.column("_path").to_pylist(),
                batch.column("_file_sha").to_pylist(),
                batch.column("content").to_pylist(),
            ):
                for record in tokenize_file(content, options_of(sha), path):
                    columns["_path"].append(path)
                    columns["_file_sha"].append(sha)
                    columns["_line"].append(record.line_no)
                    columns["_raw"].append(record.raw)
                    columns["_fields"].append(record.fields)
                    columns["_token_reason"].append(record.reason)
                    columns["_token_detail"].append(record.detail)
                    if len(columns["_path"]) >= _BATCH_ROWS:
                        yield flush()
        if columns["_path"]:
            yield flush()

    return tokenize


def tokenize(content: DataFrame, options: ReadOptions | Mapping[str, ReadOptions]) -> DataFrame:
    """Rows of whole files (``_path``, ``_file_sha``, ``content``) -> one row per record:
    _path, _file_sha, _line, _raw, _fields, _token_reason, _token_detail.

    ``options``: one feed's read options, or options by file sha256 (files of several feeds).
    """
    return content.select("_path", "_file_sha", "content").mapInArrow(_tokenizer(options), TOKEN_SCHEMA)


# ---------------------------------------------------------------------------- typing
_NUMERIC = ("int", "long", "double", "decimal")


def _typed(text: Column, spec: FieldSpec, time_zone: str) -> tuple[Column, str | None]:
    """(typed column, reason when the text is present but the typed value is null).

    ``text`` is the prepared text: number-normalised for numeric fields (see
    :func:`type_records`), raw otherwise.
    """
    if spec.type == "string":
        return text, None
    if spec.type in ("int", "long"):
        return parse.integer_from_number_text(text, spec.type), Reason.UNPARSEABLE_NUMBER.value
    if spec.type == "double":
        return parse.double_from_number_text(text), Reason.UNPARSEABLE_NUMBER.value
    if spec.type == "decimal":
        typed = parse.decimal_from_number_text(text, spec.precision, spec.scale)
        return typed, Reason.UNPARSEABLE_NUMBER.value
    if spec.type == "boolean":
        return parse.parse_boolean(text), Reason.UNPARSEABLE_BOOLEAN.value
    if spec.type == "date":
        return parse.parse_date(text, spec.formats), Reason.UNPARSEABLE_DATE.value
    if spec.type == "timestamp":
        return parse.parse_timestamp(text, spec.formats, time_zone), Reason.UNPARSEABLE_TIMESTAMP.value
    raise ValueError(f"unsupported field type {spec.type}")


def type_records(tokens: DataFrame, feed: FeedSpec, time_zone: str) -> DataFrame:
    """Add one typed column per declared field plus ``_reason``/``_detail`` (null when valid).

    Reasons are checked in a fixed order: the splitter's, then missing required
    fields, then untypeable values, each in declaration order. The work is staged
    in separate projections (raw text, prepared text, typed value, reason) so
    Spark keeps each expression small instead of inlining them into one.
    """
    names = list(feed.fields)
    raw = {name: f"_r{i}" for i, name in enumerate(names)}
    prepared = {name: f"_p{i}" for i, name in enumerate(names)}
    keep = ["_path", "_file_sha", "_line", "_raw", "_token_reason", "_token_detail"]
    staged = tokens.select(
        *keep, *[parse.blank_to_null(F.col("_fields").getItem(i)).alias(raw[n]) for i, n in enumerate(names)]
    )
    staged = staged.select(
        *keep,
        *[F.col(raw[n]) for n in names],
        *[
            (parse.normalise_number_text(F.col(raw[n])) if spec.type in _NUMERIC else F.col(raw[n])).alias(prepared[n])
            for n, spec in feed.fields.items()
        ],
    )
    typed_cols, checks = [], []
    for name, spec in feed.fields.items():
        typed, reason = _typed(F.col(prepared[name]), spec, time_zone)
        typed_cols.append(typed.alias(name))
    staged = staged.select(*keep, *[F.col(raw[n]) for n in names], *typed_cols)
    for name, spec in feed.fields.items():
        if spec.required:
            detail = F.lit(f"required field {name} is missing or empty")
            checks.append((F.col(raw[name]).isNull(), Reason.MISSING_KEY.value, detail))
    for name, spec in feed.fields.items():
        _, reason = _typed(F.col(prepared[name]), spec, time_zone)
        if reason:
            expected = spec.type + (f" ({' or '.join(spec.formats)})" if spec.formats else "")
            detail = F.concat(F.lit(f"field {name}: '"), F.col(raw[name]), F.lit(f"' is not a valid {expected}"))
            checks.append((F.col(raw[name]).isNotNull() & F.col(name).isNull(), reason, detail))
    first_reason = F.coalesce(F.col("_token_reason"), *[F.when(c, F.lit(r)) for c, r, _ in checks])
    first_detail = F.coalesce(F.col("_token_detail"), *[F.when(c, d) for c, _, d in checks])
    valid = F.col("_token_reason").isNull()
    return staged.select(
        "_path",
        "_file_sha",
        "_line",
        "_raw",
        *[F.when(valid, F.col(n)).alias(n) for n in names],
        first_reason.alias("_reason"),
        first_detail.alias("_detail"),
    )


# ---------------------------------------------------------------------------- mapping
def _meta(source: str, run_id: str, ingested_at: datetime | Column) -> list[Column]:
    # One instant per ingest run; a stream passes a column (its micro-batch's time).
    at = ingested_at if isinstance(ingested_at, Column) else F.lit(ingested_at)
    return [
        F.lit(source).alias("_source"),
        F.col("_path").alias("_source_file"),
        F.col("_line").alias("_source_line"),
        F.col("_file_sha").alias("_file_sha256"),
        F.lit(run_id).alias("_ingest_run_id"),
        at.cast("timestamp").alias("_ingested_at"),
    ]


def to_bronze_rows(
    valid: DataFrame, mapping: SourceMapping, feed: FeedSpec, output, run_id: str, ingested_at: datetime | Column
) -> DataFrame:
    """Valid typed records -> rows of one bronze table via the output's expressions."""
    spec = BRONZE_DATA_TABLES[output.table]
    df = valid
    if output.where:
        df = df.where(F.expr(output.where))
    if output.explode:
        df = df.select("*", F.posexplode(F.expr(output.explode)).alias("_pos", "_item"))
        df = df.withColumn("_pos", F.col("_pos") + 1)
    if output.distinct_on:
        first = Window.partitionBy("_file_sha", *output.distinct_on).orderBy("_line")
        df = df.withColumn("_rank", F.row_number().over(first)).where("_rank = 1").drop("_rank")
    cols = []
    for column in spec.schema.fields:
        name = column.name
        if name in INGEST_META_NAMES:
            continue
        if name == "source_system":
            cols.append(F.lit(mapping.name).alias(name))
        elif name in output.columns:
            cols.append(F.expr(output.columns[name]).cast(column.dataType).alias(name))
        elif name in feed.fields:
            cols.append(F.col(name).cast(column.dataType).alias(name))
        else:
            cols.append(F.lit(None).cast(column.dataType).alias(name))
    return df.select(*cols, *_meta(mapping.name, run_id, ingested_at))


def to_quarantine_rows(
    bad: DataFrame, mapping: SourceMapping, feed: FeedSpec, run_id: str, ingested_at: datetime | Column
) -> DataFrame:
    return bad.select(
        F.lit(mapping.name).alias("source_system"),
        F.lit(feed.primary_table).alias("target_table"),
        F.col("_reason").alias("reason"),
        F.col("_detail").alias("detail"),
        F.col("_raw").alias("raw"),
        *_meta(mapping.name, run_id, ingested_at),
    )
