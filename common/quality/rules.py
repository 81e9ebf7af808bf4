"""The rules of ``conf/quality.yaml`` as typed models: expectations, references, per-table
settings, parameters; loading and checking them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pyspark.sql import types as T

from common.config import ShopLakeConfig, StrictModel, describe_validation_error, read_yaml
from common.errors import ConfigError
from common.paths import is_local
from common.quality.gx import gx_expectation, one_line
from common.tables import ALL_TABLES, TableSpec

log = logging.getLogger(__name__)

QUALITY_FILE = "quality.yaml"
FAILED_EXPECTATION = "failed_expectation"
DEFAULT_MAX_FAILURE_SHARE = 0.01
PARAMETER_KEY = "$PARAMETER"

Level = Literal["row", "flag", "table"]

# Expectations that judge one row at a time and so can quarantine rows; each has a Spark
# predicate in `_failure_condition` that mirrors GX's own Spark metric for it.
ROW_EXPECTATIONS = (
    "expect_column_values_to_not_be_null",
    "expect_column_values_to_be_between",
    "expect_column_values_to_be_in_set",
    "expect_column_values_to_not_be_in_set",
    "expect_column_values_to_match_regex",
    "expect_column_values_to_not_match_regex",
    "expect_column_values_to_be_unique",
    "expect_compound_columns_to_be_unique",
)
# GX settings ShopLake sets from its own keys (mostly, where, name, notes), never from kwargs.
_RESERVED_KWARGS = {
    "mostly": "set `mostly` next to `level` (table level), or `max_failure_share` (row/flag level)",
    "row_condition": "use `where: <Spark SQL condition>` next to `level`",
    "condition_parser": "use `where: <Spark SQL condition>` next to `level`",
    "result_format": "results are always SUMMARY",
    "catch_exceptions": "GX errors always count as failures",
    "meta": "ShopLake sets meta",
    "notes": "use `notes:` next to `level`",
    "description": "use `notes:` next to `level`",
}
_COLUMN_KWARGS = ("column", "column_A", "column_B")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


# ---------------------------------------------------------------------------- declarations
def columns_of(kwargs: Mapping[str, Any]) -> list[str]:
    cols = [kwargs[k] for k in _COLUMN_KWARGS if isinstance(kwargs.get(k), str)]
    if isinstance(kwargs.get("column_list"), list):
        cols += [c for c in kwargs["column_list"] if isinstance(c, str)]
    return cols


class ExpectationRule(StrictModel):
    """One GX expectation with ShopLake's gate settings.

    In YAML an item is ``{<expect_type>: {<kwargs>}, level: ..., ...}``; the single key that
    starts with ``expect_`` gives the type and its value the GX kwargs.
    """

    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")
    kwargs: dict[str, Any] = Field(default_factory=dict)
    level: Level = "table"
    name: str = Field(min_length=1, description="Quarantine tag and report label; default `<type>(<columns>)`.")
    mostly: float | None = Field(None, ge=0.0, le=1.0, description="Table level only: share that must pass.")
    max_failure_share: float | None = Field(None, ge=0.0, le=1.0, description="Row/flag level; default: table's.")
    where: str | None = Field(None, description="Spark SQL condition: only rows matching it are checked.")
    notes: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_yaml_item(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        types = [k for k in data if isinstance(k, str) and k.startswith("expect_")]
        if len(types) > 1:
            raise ValueError(f"one expect_* key per item, found {types}")
        if types:
            kind = types[0]
            if "type" in data or "kwargs" in data:
                raise ValueError(f"give either `{kind}: {{...}}` or `type`/`kwargs`, not both")
            kwargs = data.pop(kind)
            data["type"], data["kwargs"] = kind, {} if kwargs is None else kwargs
        elif "type" not in data:
            raise ValueError(
                "each expectation needs one key naming a GX expectation, e.g. expect_column_values_to_be_unique"
            )
        if "name" not in data and isinstance(data.get("kwargs"), dict):
            cols = columns_of(data["kwargs"])
            data["name"] = f"{data['type']}({', '.join(cols)})" if cols else str(data["type"])
        return data

    @model_validator(mode="after")
    def _check(self) -> ExpectationRule:
        reserved = [k for k in self.kwargs if k in _RESERVED_KWARGS]
        if reserved:
            raise ValueError(f"kwargs.{reserved[0]}: not allowed here: {_RESERVED_KWARGS[reserved[0]]}")
        if self.level == "table" and self.max_failure_share is not None:
            raise ValueError("max_failure_share applies to level row/flag; a table-level expectation uses `mostly`")
        if self.level != "table":
            if self.mostly is not None:
                raise ValueError(f"mostly applies to level table; level {self.level} uses max_failure_share")
            if self.type not in ROW_EXPECTATIONS:
                raise ValueError(
                    f"{self.type} cannot judge single rows, so it cannot be level {self.level}; "
                    f"use level table, or one of: {', '.join(ROW_EXPECTATIONS)}"
                )
        return self


class ReferenceRule(StrictModel):
    """A cross-table existence check GX has no expectation for, evaluated with a Spark join.

    Rows whose ``columns`` have no match in ``table`` fail; rows with a null in any of those
    columns, or not matching ``where``, are not checked (as with GX, nulls are judged by
    not-null expectations).
    """

    name: str = Field(description="snake_case; quarantine tag, report label and the checked column's name in GX.")
    table: str = Field(description="Referenced table, e.g. silver.orders; its DataFrame is passed as context.")
    columns: dict[str, str] = Field(min_length=1, description="This table's column -> the referenced column.")
    level: Level = "table"
    max_failure_share: float | None = Field(None, ge=0.0, le=1.0)
    where: str | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ReferenceRule:
        if not _NAME_RE.match(self.name):
            raise ValueError(f"name {self.name!r} must be snake_case (it becomes a column name)")
        if self.level == "table" and self.max_failure_share is not None:
            raise ValueError("max_failure_share applies to level row/flag; at level table any miss fails")
        return self

    def describe(self, table: str) -> str:
        """``silver.order_lines.(order_id) exists in silver.orders.(order_id)``, for docs and messages."""
        local = ", ".join(self.columns)
        remote = ", ".join(self.columns.values())
        text = f"{table}.({local}) exists in {self.table}.({remote})"
        return text + (f" where {self.where}" if self.where else "")


class TableRules(StrictModel):
    """The gate of one table: its expectations, references and defaults.

    Attributes:
        table: ``<layer>.<table>``, a table of :mod:`common.tables`.
        max_failure_share: default share of failing rows allowed for row/flag-level checks.
        parameters: values for ``{$PARAMETER: name}`` placeholders (file-level merged with table-level).
    """

    table: str
    max_failure_share: float = Field(DEFAULT_MAX_FAILURE_SHARE, ge=0.0, le=1.0)
    parameters: dict[str, Any] = Field(default_factory=dict)
    expectations: tuple[ExpectationRule, ...] = ()
    references: tuple[ReferenceRule, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> TableRules:
        if self.table not in ALL_TABLES:
            raise ValueError(f"unknown table {self.table!r}; known: {', '.join(sorted(ALL_TABLES))}")
        spec = ALL_TABLES[self.table]
        names = [r.name for r in self.expectations] + [r.name for r in self.references]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(
                f"names must be unique within the table, repeated: {dupes}; set `name:` to tell them apart"
            )
        for i, rule in enumerate(self.expectations):
            where = f"expectations[{i}] {rule.name}"
            missing = [c for c in columns_of(rule.kwargs) if c not in spec.columns]
            if missing:
                raise ValueError(f"{where}: {missing} not columns of {self.table} (columns: {', '.join(spec.columns)})")
            try:
                self.resolved_kwargs(rule)
            except ConfigError as exc:  # its message names the rule already
                raise ValueError(f"expectations[{i}]: {exc}") from None
        for i, ref in enumerate(self.references):
            where = f"references[{i}] {ref.name}"
            if ref.name in spec.columns:
                raise ValueError(f"{where}: name {ref.name!r} is a column of {self.table}; pick another")
            if ref.table not in ALL_TABLES:
                raise ValueError(f"{where}: unknown table {ref.table!r}; known: {', '.join(sorted(ALL_TABLES))}")
            missing = [c for c in ref.columns if c not in spec.columns]
            missing_ref = [c for c in ref.columns.values() if c not in ALL_TABLES[ref.table].columns]
            if missing or missing_ref:
                raise ValueError(
                    f"{where}: {missing} not columns of {self.table}, {missing_ref} not columns of {ref.table}"
                )
        return self

    @property
    def spec(self) -> TableSpec:
        return ALL_TABLES[self.table]

    def allowed_share(self, rule: ExpectationRule | ReferenceRule) -> float:
        """Share of checked rows that may fail without failing the gate."""
        if rule.level == "table":
            mostly = getattr(rule, "mostly", None)
            return 0.0 if mostly is None else 1.0 - mostly
        return self.max_failure_share if rule.max_failure_share is None else rule.max_failure_share

    def resolved_kwargs(self, rule: ExpectationRule, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The rule's kwargs with ``{$PARAMETER: name}`` replaced and bounds typed for their column.

        Timestamp bounds become timezone-aware UTC datetimes (naive ones are read as UTC,
        the lake's zone), so GX and the Spark predicates compare the same instants.

        Raises:
            ConfigError: a parameter is neither declared nor passed, or a bound does not fit its column.
        """
        values = {**self.parameters, **(params or {})}
        kwargs = {k: _substitute(v, values, rule.name) for k, v in rule.kwargs.items()}
        if rule.type == "expect_column_values_to_be_between" and isinstance(kwargs.get("column"), str):
            dtype = self.spec.schema[kwargs["column"]].dataType if kwargs["column"] in self.spec.columns else None
            for key in ("min_value", "max_value"):
                if kwargs.get(key) is not None:
                    kwargs[key] = _coerce_bound(kwargs[key], dtype, f"{rule.name} {key}")
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            if lo is None and hi is None:
                raise ConfigError(f"{rule.name}: give min_value, max_value or both")
            if lo is not None and hi is not None and type(lo) is type(hi) and lo > hi:
                raise ConfigError(f"{rule.name}: min_value {lo} is greater than max_value {hi}")
        return kwargs


class QualityFile(StrictModel):
    """``conf/quality.yaml``: defaults, parameters and one :class:`TableRules` per table."""

    max_failure_share: float = Field(DEFAULT_MAX_FAILURE_SHARE, ge=0.0, le=1.0)
    parameters: dict[str, Any] = Field(default_factory=dict)
    tables: dict[str, TableRules] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        # Each table carries its name and the file-level defaults, so a TableRules alone is enough.
        if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
            return data
        share = data.get("max_failure_share", DEFAULT_MAX_FAILURE_SHARE)
        params = data.get("parameters") or {}
        tables = {}
        for name, body in data["tables"].items():
            if isinstance(body, dict):
                body = {**body, "table": name}
                body.setdefault("max_failure_share", share)
                if isinstance(params, dict) and isinstance(body.get("parameters", {}), dict):
                    body["parameters"] = {**params, **(body.get("parameters") or {})}
            tables[name] = body
        return {**data, "tables": tables}


def _substitute(value: Any, params: Mapping[str, Any], where: str) -> Any:
    if isinstance(value, dict) and set(value) == {PARAMETER_KEY}:
        name = value[PARAMETER_KEY]
        if name not in params:
            raise ConfigError(
                f"{where}: parameter {name!r} is neither declared under `parameters` in {QUALITY_FILE} "
                f"nor passed as params (known: {', '.join(sorted(params)) or 'none'})"
            )
        return params[name]
    if isinstance(value, list):
        return [_substitute(v, params, where) for v in value]
    return value


def _coerce_bound(value: Any, dtype: T.DataType | None, where: str) -> Any:
    """Type a between-bound for its column the way GX will read it (numbers as float)."""
    if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not an ISO timestamp (e.g. 2024-01-01T00:00:00Z)") from None
        elif isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            raise ConfigError(f"{where}: expected a timestamp for a {dtype.simpleString()} column, got {value!r}")
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(dtype, T.DateType):
        if isinstance(value, str):
            try:
                return date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not an ISO date (e.g. 2024-01-01)") from None
        if isinstance(value, datetime):
            return value.date()
        if not isinstance(value, date):
            raise ConfigError(f"{where}: expected a date for a date column, got {value!r}")
        return value
    if isinstance(dtype, T.NumericType):
        # GX reads numeric bounds as floats; the predicates use the same value to agree at the edges.
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ConfigError(f"{where}: expected a number for a {dtype.simpleString()} column, got {value!r}")
        return float(value)
    return value


def parse_quality_rules(
    data: Mapping[str, Any], source: str = QUALITY_FILE, *, check_with_gx: bool = True
) -> dict[str, TableRules]:
    """Validate parsed ``quality.yaml`` content into one :class:`TableRules` per table.

    Args:
        data: the YAML document as a mapping.
        source: named in error messages.
        check_with_gx: also build every expectation with GX (imports GX, ~3 s once) so that
            unknown expectation types and misspelt kwargs fail here, not in the middle of a run.

    Raises:
        ConfigError: naming the file, the key path and the problem.
    """
    try:
        rules = QualityFile.model_validate(dict(data)).tables
    except ValidationError as exc:
        raise ConfigError(f"invalid quality rules ({source}): {describe_validation_error(exc)}") from None
    if check_with_gx:
        for table_rules in rules.values():
            for i, rule in enumerate(table_rules.expectations):
                try:
                    gx_expectation(rule, table_rules.resolved_kwargs(rule), table_rules.allowed_share(rule))
                except (ValueError, AttributeError) as exc:
                    raise ConfigError(
                        f"invalid quality rules ({source}): tables.{table_rules.table}.expectations.{i} "
                        f"({rule.name}): {one_line(exc)}"
                    ) from None
    return rules


def load_quality_rules(cfg: ShopLakeConfig, *, check_with_gx: bool = True) -> dict[str, TableRules]:
    """Read ``<cfg.conf_dir>/quality.yaml`` into one :class:`TableRules` per table.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown or invalid (named).
    """
    path = Path(cfg.conf_dir) / QUALITY_FILE
    data = read_yaml(path, hint="the quality gates of the silver tables are declared there")
    return parse_quality_rules(data, str(path), check_with_gx=check_with_gx)


def default_reports_dir(cfg: ShopLakeConfig) -> str:
    """``<lake root>/reports/quality``: where :func:`validate_table` keeps results per run.

    GX writes data docs with its local filesystem backend only, so for a lake on object
    storage (``s3a://...``) the reports go to ``reports/quality`` under the project root on
    the driver instead, and a warning says so.
    """
    if not is_local(cfg.lake_root):
        local = cfg.resolve_path("reports/quality")
        log.warning("lake %s is not a local folder: quality reports are kept on the driver in %s", cfg.lake_root, local)
        return local
    return f"{cfg.lake_root.rstrip('/')}/reports/quality"
