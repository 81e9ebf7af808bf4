"""Data-quality gates for silver tables (write-audit-publish), declared in ``conf/quality.yaml``.

One declaration drives two evaluations:

* :func:`split_row_failures` turns every ``level: row`` expectation and reference into a
  Spark predicate and splits a candidate DataFrame into the rows to publish and the rows to
  quarantine, each tagged with the first expectation it fails (exact, and it scales: the
  predicates mirror the ones GX runs on Spark, nulls ignored the same way);
* :func:`validate_table` runs the table's whole suite with Great Expectations Core 1.x on the
  Spark DataFrame (``SparkDFExecutionEngine``), keeps the results per run and builds GX data
  docs; :func:`enforce` turns a failed gate into :class:`QualityGateFailed` before anything
  is published.

Levels: ``table`` (any failure, or less than ``mostly`` passing, fails the gate), ``row``
(failing rows are quarantined; the gate fails only when their share exceeds
``max_failure_share``) and ``flag`` (failing rows are kept and counted; same share limit).

References (order line -> order, event -> product, purchase -> order) are checks GX has no
native expectation for: each becomes a boolean column computed with a left join (True: found,
False: missing, null: not checked) that GX validates with ``expect_column_values_to_be_in_set
[True]``, so they appear in the data docs and share GX's verdict and ``mostly`` logic.

GX is imported inside the functions that need it (about 3 s); nothing here starts a session.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import reduce
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.config import ShopLakeConfig, StrictModel, describe_validation_error, read_yaml
from common.errors import ConfigError, ShopLakeError
from common.paths import is_local, local_path
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


class QualityGateFailed(ShopLakeError):
    """A silver table failed its data-quality gate; nothing was published."""

    exit_code = 7


# ---------------------------------------------------------------------------- declarations
def _columns_of(kwargs: Mapping[str, Any]) -> list[str]:
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
            cols = _columns_of(data["kwargs"])
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
            missing = [c for c in _columns_of(rule.kwargs) if c not in spec.columns]
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
                    _gx_expectation(rule, table_rules.resolved_kwargs(rule), table_rules.allowed_share(rule))
                except (ValueError, AttributeError) as exc:
                    raise ConfigError(
                        f"invalid quality rules ({source}): tables.{table_rules.table}.expectations.{i} "
                        f"({rule.name}): {_one_line(exc)}"
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


# ---------------------------------------------------------------------------- Spark predicates
def with_reference_checks(
    df: DataFrame,
    rules: TableRules,
    context: Mapping[str, DataFrame] | None = None,
    levels: tuple[str, ...] = ("row", "flag", "table"),
) -> DataFrame:
    """Add one boolean column per reference (named after it): True when the referenced row
    exists, False when it does not, null when the row is not checked (a null key, or ``where``
    not true). Each join is a left join to the distinct referenced keys, so no row is duplicated.

    Raises:
        ValueError: ``context`` lacks a referenced table (the message names the check).
    """
    context = context or {}
    for ref in rules.references:
        if ref.level not in levels:
            continue
        if ref.table not in context:
            raise ValueError(
                f"{rules.table}: reference {ref.name!r} needs the DataFrame of {ref.table} in context "
                f"(got: {', '.join(sorted(context)) or 'nothing'})"
            )
        pairs = list(ref.columns.items())
        keys = [f"__q_{ref.name}_k{i}" for i in range(len(pairs))]
        found = f"__q_{ref.name}_found"
        right = (
            context[ref.table]
            .select(*[F.col(remote).alias(k) for (_, remote), k in zip(pairs, keys)])
            .dropna()
            .distinct()
            .withColumn(found, F.lit(True))
        )
        on = reduce(lambda a, b: a & b, [F.col(local) == F.col(k) for (local, _), k in zip(pairs, keys)])
        checked = reduce(lambda a, b: a & b, [F.col(local).isNotNull() for local, _ in pairs])
        if ref.where:
            checked = checked & F.expr(ref.where)
        df = (
            df.join(right, on=on, how="left")
            .withColumn(ref.name, F.when(checked, F.coalesce(F.col(found), F.lit(False))))
            .drop(found, *keys)
        )
    return df


def _failure_condition(rule: ExpectationRule, kwargs: Mapping[str, Any]) -> Column:
    """True where the row fails ``rule`` as GX's Spark metric judges it (nulls skipped
    except by not-null, ``where`` as GX's row_condition); never null."""
    applies = F.expr(rule.where) if rule.where else F.lit(True)
    t = rule.type
    if t == "expect_compound_columns_to_be_unique":
        cols = [F.col(c) for c in kwargs["column_list"]]
        ignore = kwargs.get("ignore_row_if", "never")
        if ignore == "all_values_are_missing":
            applies = applies & ~reduce(lambda a, b: a & b, [c.isNull() for c in cols])
        elif ignore == "any_value_is_missing":
            applies = applies & ~reduce(lambda a, b: a | b, [c.isNull() for c in cols])
        # GX counts rows per struct of the columns, so nulls group together.
        copies = F.count(F.when(applies, 1)).over(Window.partitionBy(F.struct(*cols)))
        return F.coalesce(applies & (copies > 1), F.lit(False))
    col = F.col(kwargs["column"])
    if t == "expect_column_values_to_not_be_null":
        return F.coalesce(applies & col.isNull(), F.lit(False))
    applies = applies & col.isNotNull()
    if t == "expect_column_values_to_be_unique":
        copies = F.count(F.when(applies, 1)).over(Window.partitionBy(col))
        bad = copies > 1
    elif t == "expect_column_values_to_be_between":
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        ok = F.lit(True)
        if lo is not None:
            ok = ok & ((col > F.lit(lo)) if kwargs.get("strict_min") else (col >= F.lit(lo)))
        if hi is not None:
            ok = ok & ((col < F.lit(hi)) if kwargs.get("strict_max") else (col <= F.lit(hi)))
        bad = ~ok
    elif t == "expect_column_values_to_be_in_set":
        bad = ~col.isin(list(kwargs["value_set"]))
    elif t == "expect_column_values_to_not_be_in_set":
        bad = col.isin(list(kwargs["value_set"]))
    elif t == "expect_column_values_to_match_regex":
        bad = ~col.rlike(kwargs["regex"])
    elif t == "expect_column_values_to_not_match_regex":
        bad = col.rlike(kwargs["regex"])
    else:  # guarded by ExpectationRule; kept so a new ROW_EXPECTATIONS entry cannot pass silently
        raise ValueError(f"no row predicate for {t}")
    return F.coalesce(applies & bad, F.lit(False))


def split_row_failures(
    df: DataFrame,
    rules: TableRules,
    context: Mapping[str, DataFrame] | None = None,
    params: Mapping[str, Any] | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Split ``df`` into the rows to publish and the rows to quarantine.

    Only ``level: row`` expectations and references remove rows; flag- and table-level ones
    are judged by :func:`validate_table`. A row failing several checks is tagged with the
    first in declaration order (expectations, then references).

    Args:
        df: the candidate table (persist it first if both outputs are written).
        rules: the table's rules.
        context: DataFrames of referenced tables by name; pass the *published* (passing)
            version, so a line whose order was quarantined is quarantined too.
        params: values overriding the declared parameters, e.g. ``{"latest_plausible_time": ...}``.

    Returns:
        ``(passing, failing)``: passing has ``df``'s columns; failing has them plus
        ``failed_expectation`` (the check's name).
    """
    checks: list[tuple[str, Column]] = [
        (rule.name, _failure_condition(rule, rules.resolved_kwargs(rule, params)))
        for rule in rules.expectations
        if rule.level == "row"
    ]
    refs = [ref for ref in rules.references if ref.level == "row"]
    prepared = with_reference_checks(df, rules, context, levels=("row",))
    checks += [(ref.name, F.coalesce(~F.col(ref.name), F.lit(False))) for ref in refs]
    if not checks:
        return df, df.limit(0).withColumn(FAILED_EXPECTATION, F.lit(None).cast("string"))
    # coalesce of the per-check tags: the first check (in declaration order) that fails names the row.
    tag = F.coalesce(*[F.when(cond, F.lit(name)) for name, cond in checks])
    tagged = prepared.withColumn(FAILED_EXPECTATION, tag)
    passing = tagged.filter(F.col(FAILED_EXPECTATION).isNull()).select(*df.columns)
    failing = tagged.filter(F.col(FAILED_EXPECTATION).isNotNull()).select(*df.columns, FAILED_EXPECTATION)
    return passing, failing


# ---------------------------------------------------------------------------- GX validation
@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's verdict in a gate.

    Attributes:
        name: the declared name (the quarantine tag).
        expectation_type: the GX expectation type actually run.
        kwargs: its resolved kwargs (for references, the reference's declaration).
        level: row, flag or table.
        success: GX's verdict, with ``mostly`` = 1 - allowed share.
        checked: rows GX judged (non-null values matching ``where``); None for table metrics.
        unexpected: rows that failed; None for table metrics.
        allowed_share: share of checked rows allowed to fail.
        observed_value: GX's observed value for table/aggregate expectations.
        error: GX's exception message when the expectation could not be computed.
        label: one line for messages, e.g. ``expect_column_values_to_be_between(price, 0..100000)``.
        sample: a few unexpected values (GX's partial list, or the keys of missing references).
    """

    name: str
    expectation_type: str
    kwargs: dict[str, Any]
    level: str
    success: bool
    checked: int | None
    unexpected: int | None
    allowed_share: float
    observed_value: Any = None
    error: str | None = None
    label: str = ""
    sample: list[Any] = field(default_factory=list)

    @property
    def unexpected_share(self) -> float | None:
        if self.unexpected is None or not self.checked:
            return None
        return self.unexpected / self.checked

    def describe(self) -> str:
        """``<label> [level]: <what failed>``, one line."""
        if self.error:
            return f"{self.label} [{self.level}] could not be evaluated: {self.error}"
        if self.unexpected is None:
            return f"{self.label} [{self.level}] failed: observed {_fmt(self.observed_value)}"
        text = f"{self.label} [{self.level}] failed: {self.unexpected} of {self.checked} rows unexpected"
        share = self.unexpected_share
        if self.allowed_share > 0 and share is not None:
            text += f" ({share:.2%} > allowed {self.allowed_share:.2%})"
        if self.sample:
            text += f", e.g. {', '.join(_fmt(v) for v in self.sample[:3])}"
        return text


@dataclass(frozen=True)
class GateResult:
    """A table's gate: GX's results mapped onto the declarations, and where they were kept."""

    table: str
    run_id: str
    success: bool
    row_count: int
    outcomes: tuple[ExpectationOutcome, ...]
    seconds: float
    report_path: str
    data_docs_path: str | None

    @property
    def failures(self) -> tuple[ExpectationOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.success)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["outcomes"] = [{**asdict(o), "unexpected_share": o.unexpected_share} for o in self.outcomes]
        return out


def _fmt(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _label(rule_type: str, kwargs: Mapping[str, Any]) -> str:
    parts = _columns_of(kwargs)
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        parts.append(f"{'' if lo is None else _fmt(lo)}..{'' if hi is None else _fmt(hi)}")
    return f"{rule_type}({', '.join(parts)})"


def _one_line(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
        except (TypeError, KeyError):
            pass
    return " ".join(str(exc).split())


def _import_gx() -> Any:
    """Import GX (about 3 s, once per process) with its INFO chatter kept out of job logs."""
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        # GX logs every decorator it skips and every datasource it loads at INFO.
        gx_log.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def _gx_expectation(
    rule: ExpectationRule, kwargs: Mapping[str, Any], allowed: float, description: str | None = None
) -> Any:
    """The GX Expectation object for ``rule`` (looked up by class name in ``gx.expectations``)."""
    gx = _import_gx()

    class_name = "".join(part.capitalize() for part in rule.type.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"GX {gx.__version__} has no expectation {rule.type}")
    extra: dict[str, Any] = {"meta": {"shoplake_name": rule.name, "level": rule.level}}
    if rule.where:
        extra.update(row_condition=rule.where, condition_parser="spark")
    if rule.notes:
        extra["notes"] = rule.notes
    if description:
        extra["description"] = description  # data docs show it instead of GX's own sentence
    # Row/flag rules: GX's `mostly` carries the allowed share, so GX's verdict is the gate's.
    if rule.level != "table" or rule.mostly is not None:
        extra["mostly"] = 1.0 - allowed
    return cls(**kwargs, **extra)


def _gx_context(run_dir: Path) -> Any:
    """An ephemeral GX context whose suites, results and data docs live under ``run_dir``.

    Filesystem stores (instead of the default in-memory ones) let every table validated in
    the run appear in one data-docs index, and keep GX's own JSON results next to it.
    """
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    def backend(sub: str) -> dict[str, str]:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(run_dir / sub)}

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        # tqdm bars on stderr are noise in job logs.
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            "shoplake": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": backend("data_docs"),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    config.stores["expectations_store"] = {"class_name": "ExpectationsStore", "store_backend": backend("gx/suites")}
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": backend("gx/validations"),
    }
    return gx.get_context(project_config=config, mode="ephemeral")


def _local_dir(reports_dir: str | Path) -> Path:
    text = str(reports_dir)
    if not is_local(text):
        raise ConfigError(
            f"quality reports folder {text}: GX data docs are written with its local filesystem backend; "
            "pass a local or mounted path"
        )
    return Path(local_path(text))


def validate_table(
    df: DataFrame,
    rules: TableRules,
    *,
    run_id: str,
    reports_dir: str | Path,
    context: Mapping[str, DataFrame] | None = None,
    params: Mapping[str, Any] | None = None,
) -> GateResult:
    """Run the table's suite with GX on the Spark DataFrame and keep the results for the run.

    Validate the candidate (before :func:`split_row_failures`): row-level expectations then
    report how many rows they quarantine, and table-level ones judge everything received.

    Writes under ``<reports_dir>/<run_id>/``: ``<table>.json`` (this result),
    ``gx/validations/...`` and ``gx/suites/...`` (GX's own JSON) and ``data_docs/index.html``
    (GX data docs listing every table validated in the run).

    Args:
        df: the candidate table.
        rules: the table's rules (:func:`load_quality_rules`).
        run_id: the job's run id; results are kept per run.
        reports_dir: local folder, e.g. :func:`default_reports_dir`.
        context: DataFrames of referenced tables by name (see :func:`split_row_failures`).
        params: values overriding the declared parameters.

    Returns:
        The gate; pass it to :func:`enforce`.
    """
    gx = _import_gx()
    from great_expectations.core.run_identifier import RunIdentifier

    started = time.perf_counter()
    run_dir = _local_dir(reports_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    # name -> (type, kwargs, level, allowed share, reference or None), in declaration order
    declared: dict[str, tuple[str, dict[str, Any], str, float, ReferenceRule | None]] = {}
    expectations = []
    for rule in rules.expectations:
        kwargs = rules.resolved_kwargs(rule, params)
        allowed = rules.allowed_share(rule)
        expectations.append(_gx_expectation(rule, kwargs, allowed))
        declared[rule.name] = (rule.type, kwargs, rule.level, allowed, None)
    for ref in rules.references:
        allowed = rules.allowed_share(ref)
        checked_by = ExpectationRule(
            type="expect_column_values_to_be_in_set",
            kwargs={"column": ref.name, "value_set": [True]},
            level=ref.level,
            name=ref.name,
            notes=ref.notes,
        )
        description = f"{ref.name}: {ref.describe(rules.table)}"
        expectations.append(_gx_expectation(checked_by, checked_by.kwargs, allowed, description))
        declared[ref.name] = ("reference", {**ref.model_dump(), "checked_column": ref.name}, ref.level, allowed, ref)

    prepared = with_reference_checks(df, rules, context).persist()
    try:
        row_count = prepared.count()
        gx_context = _gx_context(run_dir)
        # persist=False: GX would otherwise cache the batch and never release it.
        source = gx_context.data_sources.add_spark(name="shoplake", persist=False)
        batch = source.add_dataframe_asset(name=rules.table).add_batch_definition_whole_dataframe("candidate")
        suite = gx_context.suites.add_or_update(gx.ExpectationSuite(name=rules.table, expectations=expectations))
        definition = gx_context.validation_definitions.add(
            gx.ValidationDefinition(name=rules.table, data=batch, suite=suite)
        )
        result = definition.run(
            batch_parameters={"dataframe": prepared},
            result_format="SUMMARY",
            run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(timezone.utc)),
        )
        by_name = {res.expectation_config.meta.get("shoplake_name"): res for res in result.results}
        # GX's partial list for a reference is [False, ...]; the missing keys say more.
        samples = {
            ref.name: [r.asDict() for r in prepared.filter(~F.col(ref.name)).select(*ref.columns).limit(5).collect()]
            for ref in rules.references
            if (by_name[ref.name].result or {}).get("unexpected_count")
        }
    finally:
        prepared.unpersist()

    outcomes = []
    for name, (rule_type, kwargs, level, allowed, ref) in declared.items():
        res = by_name[name]
        info = res.result or {}
        exc = res.exception_info or {}
        # Map expectations report exceptions per metric; any raised one means "not evaluated".
        raised = [v for v in exc.values() if isinstance(v, dict) and v.get("raised_exception")]
        if exc.get("raised_exception"):
            raised.append(exc)
        error = " ".join(str(raised[0].get("exception_message")).split()) if raised else None
        element_count = info.get("element_count")
        checked = None if element_count is None else element_count - (info.get("missing_count") or 0)
        outcomes.append(
            ExpectationOutcome(
                name=name,
                expectation_type=res.expectation_config.type,
                kwargs=kwargs,
                level=level,
                success=bool(res.success) and error is None,
                checked=checked,
                unexpected=info.get("unexpected_count"),
                allowed_share=allowed,
                observed_value=info.get("observed_value"),
                error=error,
                label=f"{name} ({ref.describe(rules.table)})" if ref else _label(rule_type, kwargs),
                sample=samples.get(name, []) if ref else list(info.get("partial_unexpected_list") or [])[:5],
            )
        )

    docs_path = None
    try:
        urls = gx_context.build_data_docs(site_names=["shoplake"])
        docs_path = local_path(urls["shoplake"])
    except Exception:  # noqa: BLE001 - the gate's verdict must not depend on HTML rendering
        log.exception("%s: GX data docs could not be built in %s; the JSON results are kept", rules.table, run_dir)

    gate = GateResult(
        table=rules.table,
        run_id=run_id,
        success=all(o.success for o in outcomes),
        row_count=row_count,
        outcomes=tuple(outcomes),
        seconds=round(time.perf_counter() - started, 3),
        report_path=str(run_dir / f"{rules.table}.json"),
        data_docs_path=docs_path,
    )
    Path(gate.report_path).write_text(json.dumps(gate.to_dict(), indent=1, default=_fmt) + "\n", encoding="utf-8")
    log.info(
        "%s: quality gate %s: %d expectations on %d rows in %.1f s (%s)",
        rules.table,
        "passed" if gate.success else "FAILED",
        len(outcomes),
        row_count,
        gate.seconds,
        gate.report_path,
    )
    return gate


def enforce(result: GateResult) -> None:
    """Raise :class:`QualityGateFailed` when the gate failed, naming the table and every failed check.

    Raises:
        QualityGateFailed: one line, e.g. ``silver.products: quality gate failed:
            expect_column_values_to_be_between(price, 0..100000) [row] failed: 200 of 200 rows
            unexpected (100.00% > allowed 1.00%) (report: .../silver.products.json)``.
    """
    if result.success:
        return
    failed = "; ".join(o.describe() for o in result.failures)
    raise QualityGateFailed(f"{result.table}: quality gate failed: {failed} (report: {result.report_path})")
