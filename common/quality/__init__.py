"""Data-quality gates for silver tables (write-audit-publish), declared in ``conf/quality.yaml``.

One declaration drives two evaluations:

* :func:`split_row_failures` turns every ``level: row`` expectation and reference into a
  Spark predicate and splits a candidate DataFrame into the rows to publish and the rows to
  quarantine, each tagged with the first expectation it fails (exact, and it scales: the
  predicates mirror the ones GX runs on Spark, nulls ignored the same way);
* :func:`validate_table` runs the table's whole suite with Great Expectations Core 1.x on the
  Spark DataFrame (``SparkDFExecutionEngine``), keeps the results per run and builds GX data
  docs (a job gating several tables builds them once, :func:`build_data_docs`);
  :func:`enforce` turns a failed gate into :class:`QualityGateFailed` before anything is
  published.

Levels: ``table`` (any failure, or less than ``mostly`` passing, fails the gate), ``row``
(failing rows are quarantined; the gate fails only when their share exceeds
``max_failure_share``) and ``flag`` (failing rows are kept and counted; same share limit).

References (order line -> order, event -> product, purchase -> order) are checks GX has no
native expectation for: each becomes a boolean column computed with a left join (True: found,
False: missing, null: not checked) that GX validates with ``expect_column_values_to_be_in_set
[True]``, so they appear in the data docs and share GX's verdict and ``mostly`` logic.

GX is imported inside the functions that need it (about 3 s); nothing here starts a session.
"""

from common.quality.gate import (
    ExpectationOutcome,
    GateResult,
    QualityGateFailed,
    build_data_docs,
    enforce,
    validate_table,
)
from common.quality.rows import split_row_failures, with_reference_checks
from common.quality.rules import (
    DEFAULT_MAX_FAILURE_SHARE,
    FAILED_EXPECTATION,
    PARAMETER_KEY,
    QUALITY_FILE,
    ROW_EXPECTATIONS,
    ExpectationRule,
    Level,
    QualityFile,
    ReferenceRule,
    TableRules,
    default_reports_dir,
    load_quality_rules,
    parse_quality_rules,
)

__all__ = [
    "DEFAULT_MAX_FAILURE_SHARE",
    "FAILED_EXPECTATION",
    "PARAMETER_KEY",
    "QUALITY_FILE",
    "ROW_EXPECTATIONS",
    "ExpectationOutcome",
    "ExpectationRule",
    "GateResult",
    "Level",
    "QualityFile",
    "QualityGateFailed",
    "ReferenceRule",
    "TableRules",
    "build_data_docs",
    "default_reports_dir",
    "enforce",
    "load_quality_rules",
    "parse_quality_rules",
    "split_row_failures",
    "validate_table",
    "with_reference_checks",
]
