"""Declarative source mappings (``conf/sources/<name>.yaml``).

A mapping says where a source's files land, how to read them (format, encoding,
header, delimiter), the type of every field, and how typed fields become rows
of the bronze tables, with Spark SQL expressions, so a user with a new export
writes YAML, not code. See ``conf/sources/shop.yaml`` for a commented example.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from common.config import ShopLakeConfig, StrictModel, load_yaml
from common.paths import has_scheme
from common.tables import BRONZE_DATA_TABLES, INGEST_META_NAMES

FieldType = Literal["string", "int", "long", "double", "decimal", "boolean", "date", "timestamp"]
_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")


class FieldSpec(StrictModel):
    """One field of a source record.

    ``formats`` are Spark datetime patterns tried in order for dates and
    timestamps, or ``epoch_s`` / ``epoch_ms``. Naive timestamps are read in the
    feed's time zone; patterns with an offset (``XXX``) carry their own.
    ``path`` is a dotted path into a JSON object (default: the field's name).
    """

    type: FieldType = "string"
    precision: int = Field(18, ge=1, le=38)
    scale: int = Field(2, ge=0, le=38)
    formats: list[str] = Field(default_factory=list)
    required: bool = False
    path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value):
        # `price: decimal(12,2)` and `name: string` are accepted as shorthands.
        if isinstance(value, str):
            match = _DECIMAL.match(value.strip())
            if match:
                return {"type": "decimal", "precision": int(match[1]), "scale": int(match[2])}
            return {"type": value.strip()}
        return value


class OutputSpec(StrictModel):
    """How valid records become rows of one bronze table.

    ``columns`` maps bronze column -> Spark SQL expression over the feed's fields
    (and ``_line``, the record's line number). Bronze columns not listed take the
    field of the same name when there is one, else null. ``explode`` turns an
    array expression into one row per element, exposed as ``_item`` and ``_pos``
    (1-based). ``distinct_on`` keeps the first record per key within a file (for
    headers repeated on every line of a flat export).
    """

    table: str
    columns: dict[str, str] = Field(default_factory=dict)
    where: str | None = None
    explode: str | None = None
    distinct_on: list[str] = Field(default_factory=list)

    @field_validator("table")
    @classmethod
    def _known_table(cls, value: str) -> str:
        if value not in BRONZE_DATA_TABLES:
            raise ValueError(f"unknown bronze table {value!r} (known: {', '.join(sorted(BRONZE_DATA_TABLES))})")
        return value

    @model_validator(mode="after")
    def _known_columns(self) -> OutputSpec:
        spec = BRONZE_DATA_TABLES[self.table]
        settable = [c for c in spec.columns if c not in INGEST_META_NAMES and c != "source_system"]
        unknown = [c for c in self.columns if c not in settable]
        if unknown:
            raise ValueError(f"{self.table} has no column(s) {unknown} (columns: {settable})")
        return self


class FeedSpec(StrictModel):
    """One kind of file delivered by a source.

    Formats: ``csv`` (delimiter, optional header, RFC 4180 quoting), ``jsonl``
    (one JSON object per line), ``whitespace`` (fields separated by runs of
    blanks), ``lines`` (one field, ``line``: the whole line, e.g. a basket).
    Blank lines are not records. The first output is the feed's primary table:
    input records = its rows (before explode) + quarantined records.
    """

    name: str
    pattern: str = Field(description="Glob below the source folder, e.g. events/*.jsonl")
    format: Literal["csv", "jsonl", "whitespace", "lines"]
    encoding: str = Field("utf-8", description="utf-8 (a BOM is skipped), gbk, gb18030, latin-1, ...")
    header: bool = False
    delimiter: str = ","
    time_zone: str | None = None
    fields: dict[str, FieldSpec]
    outputs: list[OutputSpec] = Field(min_length=1)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r}") from None
        return value

    @field_validator("fields")
    @classmethod
    def _no_reserved_names(cls, value: dict) -> dict:
        # Names starting with "_" are the ingest job's own (_line, _item, _pos, ...).
        reserved = [name for name in value if name.startswith("_")]
        if reserved:
            raise ValueError(f"field names may not start with '_': {reserved}")
        return value

    @model_validator(mode="after")
    def _lines_has_one_field(self) -> FeedSpec:
        if self.format == "lines" and list(self.fields) != ["line"]:
            raise ValueError("format 'lines' takes exactly one field named 'line'")
        return self

    @model_validator(mode="after")
    def _primary_keeps_every_record(self) -> FeedSpec:
        # Reconciliation counts every valid record in the primary table.
        if self.outputs[0].where or self.outputs[0].distinct_on:
            raise ValueError("outputs[0] is the primary table and must keep every record (no where/distinct_on)")
        return self

    @property
    def primary_table(self) -> str:
        return self.outputs[0].table


class SourceMapping(StrictModel):
    """A source system: its folder below the landing root and its feeds."""

    name: str = Field(description="Written to bronze as source_system.")
    description: str = ""
    folder: str = Field(description="Below landing.root unless absolute.")
    time_zone: str | None = None
    feeds: list[FeedSpec] = Field(min_length=1)

    def feed_time_zone(self, feed: FeedSpec, cfg: ShopLakeConfig) -> str:
        return feed.time_zone or self.time_zone or cfg.landing.source_time_zone

    def folder_path(self, cfg: ShopLakeConfig) -> str:
        if has_scheme(self.folder) or Path(self.folder).is_absolute():
            return self.folder
        return str(Path(cfg.landing_root) / self.folder)


def load_source(name: str, cfg: ShopLakeConfig) -> SourceMapping:
    """Load and validate ``conf/sources/<name>.yaml``; errors name the file and key."""
    folder = Path(cfg.conf_dir) / "sources"
    known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    path = folder / f"{name}.yaml"
    return load_yaml(path, SourceMapping, what="source mapping", key="landing.sources", hint=f"known: {known}")


def check_sources(cfg: ShopLakeConfig) -> None:
    """Validate every mapping in ``conf/sources/`` and those ``landing.sources`` names
    (which must exist), so a typo in any of them stops a run before Spark starts.

    Raises:
        ConfigError: naming the file and key.
    """
    folder = Path(cfg.conf_dir) / "sources"
    for name in sorted({*cfg.landing.sources, *(p.stem for p in folder.glob("*.yaml"))}):
        load_source(name, cfg)
