"""Audience exports: CSV files for marketing tools and Delta tables, pseudonymous keys only.

CSV cells are neutralised against spreadsheet formula injection (OWASP "CSV
Injection"): a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return gets a leading apostrophe, so Excel, LibreOffice and Google Sheets show it
as text instead of evaluating it (``=cmd|' /C calc'!A0`` would otherwise run).

Decision on negative numbers: a cell that is exactly a plain decimal number with a
minus sign (``-3.5``, ``-12``) stays as it is. Spreadsheets read it as a number,
never as a formula, and prefixing it would turn a numeric column into text. Anything
else starting with ``-`` (``-1+1``, ``-A1``, ``-3.5e2``) is prefixed. Numeric Spark
columns are written as numbers and are never touched.

The Spark column function and the Python function apply the same rule; the tests
check that they agree on the hostile corpus.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from common.paths import is_local, local_path

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# Java regex and Python regex alike: the cell's first character is a trigger.
_TRIGGER_RE = r"^[=+\-@\t\r]"
# Kept numeric: optional minus, digits, optional fraction. Nothing else.
# (\z, not $: $ would also match before a final line break.)
_PLAIN_NEGATIVE_RE = r"^-[0-9]+(\.[0-9]+)?\z"
_PLAIN_NEGATIVE = re.compile(r"-[0-9]+(\.[0-9]+)?")


def neutralise_cell(value: Any) -> Any:
    """The CSV-safe form of one cell: text starting with a formula trigger gets a leading
    apostrophe; plain negative numbers, other text and non-text values are unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_TRIGGERS):
        return value
    if _PLAIN_NEGATIVE.fullmatch(value):
        return value
    return "'" + value


def neutralised(col: Column | str) -> Column:
    """Column version of :func:`neutralise_cell` (built-in functions, no UDF)."""
    c = F.col(col) if isinstance(col, str) else col
    return F.when(c.rlike(_TRIGGER_RE) & ~c.rlike(_PLAIN_NEGATIVE_RE), F.concat(F.lit("'"), c)).otherwise(c)


def csv_ready(df: DataFrame, list_separator: str = " ") -> DataFrame:
    """Every column as CSV can hold it: arrays joined with ``list_separator``, every text
    cell neutralised; numbers, booleans and dates keep their types."""
    out = []
    for f in df.schema.fields:
        c = F.col(f.name)
        if isinstance(f.dataType, T.ArrayType):
            c = F.array_join(c.cast("array<string>"), list_separator)
        elif not isinstance(f.dataType, T.StringType):
            out.append(c.alias(f.name))
            continue
        out.append(neutralised(c).alias(f.name))
    return df.select(out)


def write_csv(df: DataFrame, path: str) -> str:
    """Write ``df`` (made CSV-safe here) as one CSV file with a header at ``path``.

    Every field is quoted and quotes are doubled (RFC 4180; Spark's default escape is a
    backslash, which spreadsheets do not understand). Leading and trailing white space is
    kept: Spark trims it by default, which would turn ``" =1+1"`` into a live formula.
    On a local path the single part file is moved to ``path``; on object storage the
    Spark output folder ``path`` is left as written.

    Returns:
        The path written.
    """
    local = local_path(path)
    target = local + ".parts" if is_local(path) else path
    (
        csv_ready(df)
        .coalesce(1)
        .write.mode("overwrite")
        .option("header", True)
        .option("quoteAll", True)
        .option("escape", '"')
        .option("ignoreLeadingWhiteSpace", False)
        .option("ignoreTrailingWhiteSpace", False)
        .option("encoding", "UTF-8")
        .csv(target)
    )
    if not is_local(path):
        return path
    parts = sorted(p for p in os.listdir(target) if p.startswith("part-") and p.endswith(".csv"))
    if len(parts) != 1:
        raise RuntimeError(f"expected one CSV part in {target}, found {parts}")
    os.replace(os.path.join(target, parts[0]), local)
    shutil.rmtree(target)
    return local


def k_anonymity(df: DataFrame, quasi_identifiers: list[str], k: int) -> dict[str, Any]:
    """Equivalence classes of ``df`` over ``quasi_identifiers``: how many, the smallest,
    and how many rows sit in classes smaller than ``k``. An empty frame has no class."""
    if not quasi_identifiers:
        return {"k": k, "quasi_identifiers": [], "classes": 0, "smallest_class": None,
                "classes_below_k": 0, "rows_below_k": 0}  # fmt: skip
    classes = df.groupBy(*quasi_identifiers).count()
    row = classes.agg(
        F.count("*").alias("classes"),
        F.min("count").alias("smallest"),
        F.sum(F.when(F.col("count") < k, 1).otherwise(0)).alias("classes_below_k"),
        F.sum(F.when(F.col("count") < k, F.col("count")).otherwise(0)).alias("rows_below_k"),
    ).first()
    return {
        "k": k,
        "quasi_identifiers": list(quasi_identifiers),
        "classes": int(row["classes"]),
        "smallest_class": row["smallest"],
        "classes_below_k": int(row["classes_below_k"] or 0),
        "rows_below_k": int(row["rows_below_k"] or 0),
    }


def suppress_small_classes(df: DataFrame, quasi_identifiers: list[str], k: int, partition: list[str]) -> DataFrame:
    """Null the quasi-identifier values of rows whose class (within ``partition``, e.g. one
    campaign's export) holds fewer than ``k`` rows, so every exported combination is shared
    by at least ``k`` people or withheld. Rows stay: the person is still targeted."""
    if not quasi_identifiers:
        return df
    from pyspark.sql import Window

    size = F.count(F.lit(1)).over(Window.partitionBy(*partition, *quasi_identifiers))
    small = F.col("_class_size") < k
    out = df.withColumn("_class_size", size)
    for name in quasi_identifiers:
        out = out.withColumn(name, F.when(small, F.lit(None).cast(df.schema[name].dataType)).otherwise(F.col(name)))
    return out.drop("_class_size")
