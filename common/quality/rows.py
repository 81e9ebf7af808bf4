"""Row-level rules as Spark predicates: reference checks by join, and the split of a candidate
into the rows to publish and the rows to quarantine."""

from __future__ import annotations

from collections.abc import Mapping
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from common.quality.rules import FAILED_EXPECTATION, ExpectationRule, TableRules


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
