"""A table's gate: its suite run with GX on the Spark DataFrame, the outcomes mapped onto the
declarations, kept per run; :func:`enforce` stops a failed gate."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from common.errors import ConfigError, ShopLakeError
from common.paths import is_local, local_path
from common.quality.gx import gx_expectation, import_gx, new_gx_context
from common.quality.rows import with_reference_checks
from common.quality.rules import ExpectationRule, ReferenceRule, TableRules, columns_of
from common.session_conf import temporary_conf

log = logging.getLogger(__name__)

# How many partitions a LIMIT query scans in its first Spark job (Spark's default: 1).
LIMIT_FIRST_PARTITIONS = "spark.sql.limit.initialNumPartitions"

# GX's SUMMARY fetches each row expectation's sample of unexpected values with a LIMIT query of
# its own, which on a table that passes scans the cached candidate once per expectation to find
# nothing. The gate asks for the counts alone first (GX's aggregate passes; a sample of 0 is a
# LIMIT 0, which Spark answers without a job), then for the samples of the checks that found
# unexpected rows, in a second validation of just those (suite ``<table>`` + SAMPLES_SUITE).
COUNTS_ONLY = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
SAMPLES_SUITE = ".unexpected_samples"


class QualityGateFailed(ShopLakeError):
    """A silver table failed its data-quality gate; nothing was published."""

    exit_code = 7


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
    parts = columns_of(kwargs)
    if "min_value" in kwargs or "max_value" in kwargs:
        lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
        parts.append(f"{'' if lo is None else _fmt(lo)}..{'' if hi is None else _fmt(hi)}")
    return f"{rule_type}({', '.join(parts)})"


def _local_dir(reports_dir: str | Path) -> Path:
    text = str(reports_dir)
    if not is_local(text):
        raise ConfigError(
            f"quality reports folder {text}: GX data docs are written with its local filesystem backend; "
            "pass a local or mounted path"
        )
    return Path(local_path(text))


class _Declared(NamedTuple):
    """A declared check as the gate reports it (a reference is checked through its flag column)."""

    rule_type: str
    kwargs: dict[str, Any]
    level: str
    allowed_share: float
    reference: ReferenceRule | None


def validate_table(
    df: DataFrame,
    rules: TableRules,
    *,
    run_id: str,
    reports_dir: str | Path,
    context: Mapping[str, DataFrame] | None = None,
    params: Mapping[str, Any] | None = None,
    data_docs: bool = True,
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
        data_docs: build the run's data docs now. A job gating several tables passes False
            and calls :func:`build_data_docs` once at the end: GX rebuilds every page of the
            run on each build, which cost about 0.35 s per table on the smallest lake.

    Returns:
        The gate; pass it to :func:`enforce`.
    """
    gx = import_gx()
    started = time.perf_counter()
    run_dir = _local_dir(reports_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    expectations, declared = _build_expectations(rules, params)

    prepared = with_reference_checks(df, rules, context).persist()
    try:
        row_count = prepared.count()
        gx_context = new_gx_context(run_dir)
        batch = (
            gx_context.data_sources.add_spark(name="shoplake", persist=False)  # GX would never release its cache
            .add_dataframe_asset(name=rules.table)
            .add_batch_definition_whole_dataframe("candidate")
        )
        by_name = _run_suite(gx, gx_context, batch, rules.table, expectations, prepared, run_id, COUNTS_ONLY)
        # References get the missing keys instead (_reference_samples): GX's sample would be [False, ...].
        to_sample = [
            e for e in expectations
            if _found_unexpected(by_name[_name(e)]) and declared[_name(e)].reference is None
        ]  # fmt: skip
        if to_sample:
            suite = rules.table + SAMPLES_SUITE
            by_name |= _run_suite(gx, gx_context, batch, suite, to_sample, prepared, run_id, "SUMMARY")
        samples = _reference_samples(prepared, rules, by_name)
    finally:
        prepared.unpersist()

    outcomes = [_outcome(name, check, by_name[name], rules, samples) for name, check in declared.items()]
    docs_path = _build_data_docs(gx_context, rules.table, run_dir) if data_docs else None
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
    _write_report(gate)
    return gate


def _build_expectations(rules: TableRules, params: Mapping[str, Any] | None) -> tuple[list[Any], dict[str, _Declared]]:
    """GX expectations for the table's rules, and each check's declaration by name, in declaration order."""
    declared: dict[str, _Declared] = {}
    expectations = []
    for rule in rules.expectations:
        kwargs = rules.resolved_kwargs(rule, params)
        allowed = rules.allowed_share(rule)
        expectations.append(gx_expectation(rule, kwargs, allowed))
        declared[rule.name] = _Declared(rule.type, kwargs, rule.level, allowed, None)
    for ref in rules.references:
        allowed = rules.allowed_share(ref)
        # with_reference_checks adds a boolean column per reference (True: the referenced row exists).
        checked_by = ExpectationRule(
            type="expect_column_values_to_be_in_set",
            kwargs={"column": ref.name, "value_set": [True]},
            level=ref.level,
            name=ref.name,
            notes=ref.notes,
        )
        description = f"{ref.name}: {ref.describe(rules.table)}"
        expectations.append(gx_expectation(checked_by, checked_by.kwargs, allowed, description))
        declared[ref.name] = _Declared(
            "reference", {**ref.model_dump(), "checked_column": ref.name}, ref.level, allowed, ref
        )
    return expectations, declared


def _run_suite(
    gx: Any,
    gx_context: Any,
    batch: Any,
    suite_name: str,
    expectations: list[Any],
    prepared: DataFrame,
    run_id: str,
    result_format: str | dict[str, Any],
) -> dict[str, Any]:
    """GX's result of each of ``expectations`` on ``prepared`` by declared name; the suite's
    validation result is kept in ``gx_context``."""
    from great_expectations.core.run_identifier import RunIdentifier

    # Copies: GX gives an expectation the id of the suite it is saved in.
    copies = [e.copy(update={"id": None}, deep=True) for e in expectations]
    suite = gx_context.suites.add_or_update(gx.ExpectationSuite(name=suite_name, expectations=copies))
    definition = gx_context.validation_definitions.add(
        gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
    )
    # Spark runs a LIMIT on one partition first and on the rest in a second job when that one
    # held too few rows, as it does whenever a check finds few: one job over every partition of
    # the cached candidate instead.
    with temporary_conf(prepared.sparkSession, {LIMIT_FIRST_PARTITIONS: str(2**31 - 1)}):
        result = definition.run(
            batch_parameters={"dataframe": prepared},
            result_format=result_format,
            run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(timezone.utc)),
        )
    return {_name(res.expectation_config): res for res in result.results}


def _name(expectation: Any) -> str:
    """The declared name an expectation (or its configuration in a result) carries."""
    return expectation.meta["shoplake_name"]


def _found_unexpected(res: Any) -> bool:
    return bool((res.result or {}).get("unexpected_count"))


def _reference_samples(prepared: DataFrame, rules: TableRules, by_name: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The keys of a few rows missing each failed reference, by reference name."""
    # GX's partial list for a reference is [False, ...]; the missing keys say more.
    return {
        ref.name: [r.asDict() for r in prepared.filter(~F.col(ref.name)).select(*ref.columns).limit(5).collect()]
        for ref in rules.references
        if (by_name[ref.name].result or {}).get("unexpected_count")
    }


def _outcome(
    name: str, check: _Declared, res: Any, rules: TableRules, samples: Mapping[str, list[Any]]
) -> ExpectationOutcome:
    """GX's result ``res`` for the check declared as ``name``, as the gate reports it."""
    rule_type, kwargs, level, allowed, ref = check
    info = res.result or {}
    exc = res.exception_info or {}
    # Map expectations report exceptions per metric; any raised one means "not evaluated".
    raised = [v for v in exc.values() if isinstance(v, dict) and v.get("raised_exception")]
    if exc.get("raised_exception"):
        raised.append(exc)
    error = " ".join(str(raised[0].get("exception_message")).split()) if raised else None
    element_count = info.get("element_count")
    checked = None if element_count is None else element_count - (info.get("missing_count") or 0)
    return ExpectationOutcome(
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


def build_data_docs(reports_dir: str | Path, run_id: str) -> str | None:
    """Build the data docs of every table validated in run ``run_id`` (their GX results are
    kept on disk under the run's folder); the path of their index, or None when they could not
    be built."""
    run_dir = _local_dir(reports_dir) / run_id
    return _build_data_docs(new_gx_context(run_dir), "the run's tables", run_dir)


def _build_data_docs(gx_context: Any, table: str, run_dir: Path) -> str | None:
    """The path of the run's GX data docs, or None when they could not be built."""
    try:
        urls = gx_context.build_data_docs(site_names=["shoplake"])
        return local_path(urls["shoplake"])
    except Exception:  # noqa: BLE001 - the gate's verdict must not depend on HTML rendering
        log.exception("%s: GX data docs could not be built in %s; the JSON results are kept", table, run_dir)
        return None


def _write_report(gate: GateResult) -> None:
    """Keep the gate as JSON at ``gate.report_path`` and log its verdict."""
    Path(gate.report_path).write_text(json.dumps(gate.to_dict(), indent=1, default=_fmt) + "\n", encoding="utf-8")
    log.info(
        "%s: quality gate %s: %d expectations on %d rows in %.1f s (%s)",
        gate.table,
        "passed" if gate.success else "FAILED",
        len(gate.outcomes),
        gate.row_count,
        gate.seconds,
        gate.report_path,
    )


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
