"""Quality gates: declarations with errors that name the key, row splits that find exactly
what was planted, GX verdicts that agree with them, and results and data docs kept per run."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from common.errors import ConfigError
from common.quality import (
    FAILED_EXPECTATION,
    QualityGateFailed,
    build_data_docs,
    default_reports_dir,
    enforce,
    load_quality_rules,
    parse_quality_rules,
    split_row_failures,
    validate_table,
    with_reference_checks,
)
from common.tables import ALL_TABLES, SILVER_ORDER_LINES, SILVER_ORDERS, SILVER_PRODUCTS

UTC = timezone.utc
T0 = datetime(2024, 3, 1, tzinfo=UTC)

RULES_YAML = """
max_failure_share: 0.01
parameters:
  earliest: 2024-01-01T00:00:00Z
  latest: 2024-12-31T00:00:00Z
tables:
  silver.products:
    expectations:
      - expect_column_values_to_not_be_null: {column: item_id}
      - expect_column_values_to_be_unique: {column: item_id}
      - expect_column_values_to_be_between: {column: price, min_value: 0, max_value: 100000}
        level: row
  silver.orders:
    expectations:
      - expect_column_values_to_be_unique: {column: order_id}
        level: row
      - expect_column_values_to_be_between:
          column: order_time
          min_value: {$PARAMETER: earliest}
          max_value: {$PARAMETER: latest}
        level: row
      - expect_column_values_to_be_in_set: {column: status, value_set: [paid, refunded]}
        level: row
      - expect_column_values_to_match_regex: {column: currency, regex: "^[A-Z]{3}$"}
  silver.order_lines:
    max_failure_share: 0.5
    expectations:
      - expect_column_values_to_not_be_null: {column: item_id}
      - expect_compound_columns_to_be_unique: {column_list: [source_system, order_id, line_no]}
        level: row
      - expect_column_values_to_be_between: {column: quantity, min_value: 1, max_value: 100}
        level: row
      - expect_column_values_to_be_between: {column: unit_price, min_value: 0, max_value: 1000}
        name: unit_price_in_range
        where: "item_id <> 'GIFT'"
        level: row
    references:
      - name: order_exists
        table: silver.orders
        columns: {source_system: source_system, order_id: order_id}
        level: row
      - name: item_known
        table: silver.products
        columns: {source_system: source_system, item_id: item_id}
        level: flag
"""
QTY = "expect_column_values_to_be_between(quantity)"
LINE_KEY = "expect_compound_columns_to_be_unique(source_system, order_id, line_no)"


@pytest.fixture(scope="module")
def rules():
    return parse_quality_rules(yaml.safe_load(RULES_YAML), check_with_gx=False)


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reports")


def _frame(spark, spec, rows):
    """A DataFrame of ``spec``'s schema from dicts; unnamed columns are null, source_system is shop."""
    return spark.createDataFrame(
        [tuple({"source_system": "shop", **row}.get(c) for c in spec.columns) for row in rows], spec.schema
    )


def _orders(spark, extra=()):
    clean = [
        {"order_id": f"O{i}", "user_key": f"u{i}", "order_time": T0 + timedelta(hours=i), "status": "paid"}
        | {"total_amount": Decimal("30.00"), "currency": "CNY"}
        for i in range(1, 11)
    ]
    return _frame(spark, SILVER_ORDERS, clean + list(extra))


def _products(spark, prices):
    return _frame(spark, SILVER_PRODUCTS, [{"item_id": f"P{i}", "price": p} for i, p in enumerate(prices, start=1)])


def _line(order_id, line_no, item_id, quantity, price):
    price = None if price is None else Decimal(price)
    return {"order_id": order_id, "line_no": line_no, "item_id": item_id, "quantity": quantity, "unit_price": price}


# Order lines with defects planted at known keys: (row, the first check it fails or None).
PLANTED_LINES = [
    *[(_line(f"O{o}", n, f"P{n}", n, "10.00"), None) for o in range(1, 11) for n in (1, 2, 3)],
    (_line("O1", 4, "P1", 0, "10.00"), QTY),
    (_line("O1", 5, "P1", None, "10.00"), None),  # a null quantity is for a not-null check to judge
    (_line("O2", 4, "P2", 1, "-5.00"), "unit_price_in_range"),
    (_line("O2", 5, "GIFT", 1, "-1.00"), None),  # `where` exempts gifts; unknown item only flagged
    (_line("O3", 1, "P4", 2, "10.00"), LINE_KEY),  # repeats the key of a clean line: both copies fail
    (_line("O99", 1, "P1", 1, "10.00"), "order_exists"),
    (_line("O98", 1, "P1", 1, "10.00"), "order_exists"),
    (_line("O97", 1, "P1", 500, "10.00"), QTY),  # also an orphan: the first check in declaration order wins
    (_line("O4", 4, "P9", 1, "10.00"), None),  # unknown item: flagged, kept
]


@pytest.fixture(scope="module")
def lines_case(spark):
    lines = _frame(spark, SILVER_ORDER_LINES, [row for row, _ in PLANTED_LINES])
    context = {"silver.orders": _orders(spark), "silver.products": _products(spark, [Decimal("10.00")] * 5)}
    return lines, context


def _expected_failures():
    tagged = [(row["order_id"], row["line_no"], tag) for row, tag in PLANTED_LINES if tag]
    return sorted(tagged + [("O3", 1, LINE_KEY)])  # the clean line O3/1 shares the repeated key


def test_row_failures_are_split_out_exactly_and_tagged(lines_case, rules):
    lines, context = lines_case
    passing, failing = split_row_failures(lines, rules["silver.order_lines"], context)

    assert failing.columns == [*lines.columns, FAILED_EXPECTATION]
    assert passing.schema == lines.schema
    found = sorted((r.order_id, r.line_no, r[FAILED_EXPECTATION]) for r in failing.collect())
    assert found == _expected_failures()
    kept = sorted((r.order_id, r.line_no) for r in passing.collect())
    all_keys = sorted((row["order_id"], row["line_no"]) for row, _ in PLANTED_LINES)
    for order_id, line_no, _ in found:
        all_keys.remove((order_id, line_no))
    assert kept == all_keys
    assert ("O2", 5) in kept and ("O4", 4) in kept  # flagged rows stay


def test_gx_counts_agree_with_the_planted_rows_and_the_gate_passes(lines_case, rules, reports):
    lines, context = lines_case
    gate = validate_table(lines, rules["silver.order_lines"], run_id="run-lines", reports_dir=reports, context=context)

    counts = {o.name: o.unexpected for o in gate.outcomes}
    assert counts == {
        "expect_column_values_to_not_be_null(item_id)": 0,
        LINE_KEY: 2,
        QTY: 2,
        "unit_price_in_range": 1,
        "order_exists": 3,
        "item_known": 2,
    }
    assert gate.success and gate.row_count == len(PLANTED_LINES)
    enforce(gate)  # every share is within the table's 0.5
    outcome = {o.name: o for o in gate.outcomes}
    assert sorted(s["order_id"] for s in outcome["order_exists"].sample) == ["O97", "O98", "O99"]
    assert outcome["order_exists"].checked == len(PLANTED_LINES)
    # GX's samples of unexpected values, fetched only for the checks that found some.
    assert sorted(outcome[QTY].sample) == [0, 500]
    assert outcome["unit_price_in_range"].sample == [Decimal("-5.00")]
    assert sorted(map(tuple, (s.values() for s in outcome[LINE_KEY].sample))) == [("shop", "O3", 1)] * 2
    assert outcome["expect_column_values_to_not_be_null(item_id)"].sample == []
    report = json.loads(Path(gate.report_path).read_text())
    assert report["table"] == "silver.order_lines" and report["run_id"] == "run-lines"


def test_negative_prices_and_duplicate_keys_fail_the_gate_naming_table_and_expectation(spark, rules, reports):
    products = _products(spark, [Decimal(-i) for i in range(1, 21)]).union(_products(spark, [Decimal("5.00")]))
    table_rules = rules["silver.products"]

    gate = validate_table(products, table_rules, run_id="run-products", reports_dir=reports)

    assert not gate.success
    assert {o.name for o in gate.failures} == {
        "expect_column_values_to_be_between(price)",
        "expect_column_values_to_be_unique(item_id)",
    }
    with pytest.raises(QualityGateFailed) as failed:
        enforce(gate)
    message = str(failed.value)
    assert "\n" not in message and message.startswith("silver.products: quality gate failed")
    assert "expect_column_values_to_be_between(price, 0..100000) [row] failed: 20 of 21 rows unexpected" in message
    assert "expect_column_values_to_be_unique(item_id) [table] failed: 2 of 21 rows unexpected" in message
    _, failing = split_row_failures(products, table_rules)
    assert failing.count() == 20


def test_clean_table_passes_and_results_and_data_docs_are_kept_per_run(spark, rules, reports):
    gate = validate_table(_orders(spark), rules["silver.orders"], run_id="run-orders", reports_dir=reports)

    assert gate.success and not gate.failures and gate.row_count == 10
    enforce(gate)
    run_dir = reports / "run-orders"
    assert Path(gate.report_path) == run_dir / "silver.orders.json"
    assert json.loads(Path(gate.report_path).read_text())["success"] is True
    assert gate.data_docs_path == str(run_dir / "data_docs" / "index.html")
    assert "silver.orders" in Path(gate.data_docs_path).read_text()
    pages = list((run_dir / "data_docs" / "validations" / "silver" / "orders" / "run-orders").rglob("*.html"))
    assert len(pages) == 1
    assert list((run_dir / "gx" / "validations").rglob("*.json"))  # GX's own result, kept too


def test_a_job_gating_several_tables_builds_the_data_docs_once_for_all_of_them(spark, rules, reports):
    deferred = {"run_id": "run-two", "reports_dir": reports, "data_docs": False}
    orders = validate_table(_orders(spark), rules["silver.orders"], **deferred)
    products = _products(spark, [Decimal("-1.00")])  # a failed gate gets its page too
    failed = validate_table(products, rules["silver.products"], **deferred)
    run_dir = reports / "run-two"
    assert orders.data_docs_path is None and failed.data_docs_path is None and not failed.success
    assert not (run_dir / "data_docs").exists()

    index = build_data_docs(reports, "run-two")

    assert index == str(run_dir / "data_docs" / "index.html")
    text = Path(index).read_text()
    assert "silver.orders" in text and "silver.products" in text
    for table in ("orders", "products"):
        assert len(list((run_dir / "data_docs" / "validations" / "silver" / table / "run-two").rglob("*.html"))) == 1


def test_row_level_uniqueness_set_and_timestamp_bounds_with_run_parameters(spark, rules):
    late = {"order_id": "O11", "order_time": datetime(2024, 6, 1, tzinfo=UTC), "status": "paid"}
    dup = {"order_id": "O1", "order_time": T0, "status": "refunded"}
    bogus = {"order_id": "O12", "order_time": T0, "status": "lost"}
    untimed = {"order_id": "O13", "order_time": None, "status": "paid"}  # null: not judged by a bound
    orders = _orders(spark, [late, dup, bogus, untimed])

    # A naive parameter value is read as UTC, like every instant in the lake.
    _, failing = split_row_failures(orders, rules["silver.orders"], params={"latest": datetime(2024, 5, 1)})

    found = sorted((r.order_id, r[FAILED_EXPECTATION]) for r in failing.collect())
    assert found == [
        ("O1", "expect_column_values_to_be_unique(order_id)"),
        ("O1", "expect_column_values_to_be_unique(order_id)"),
        ("O11", "expect_column_values_to_be_between(order_time)"),
        ("O12", "expect_column_values_to_be_in_set(status)"),
    ]


def test_an_undeclared_parameter_is_named_when_the_rules_load():
    data = yaml.safe_load(RULES_YAML)
    del data["parameters"]["latest"]
    with pytest.raises(ConfigError, match=r"tables\.silver\.orders: .*parameter 'latest' is neither declared"):
        parse_quality_rules(data, check_with_gx=False)


def test_a_reference_without_its_table_in_context_names_the_check(lines_case, rules):
    lines, _ = lines_case
    with pytest.raises(ValueError, match="order_exists.*silver.orders in context"):
        split_row_failures(lines, rules["silver.order_lines"], {})


@pytest.mark.parametrize(
    "table_body,expected",
    [
        (
            {"expectations": [{"expect_column_values_to_be_unique": {"column": "item_id"}, "levl": "row"}]},
            r"tables\.silver\.products\.expectations\.0\.levl: unknown key",
        ),
        ({"expectation": []}, r"tables\.silver\.products\.expectation: unknown key"),
        (
            {"expectations": [{"expect_column_values_to_be_unique": {"column": "sku"}}]},
            r"\['sku'\] not columns of silver\.products",
        ),
        (
            {
                "expectations": [
                    {"expect_column_values_to_be_unique": {"column": "item_id"}, "level": "row", "mostly": 0.9}
                ]
            },
            "mostly applies to level table",
        ),
        (
            {
                "expectations": [
                    {"expect_column_mean_to_be_between": {"column": "price", "min_value": 1}, "level": "row"}
                ]
            },
            "cannot judge single rows",
        ),
        (
            {"references": [{"name": "x", "table": "silver.orderz", "columns": {"item_id": "order_id"}}]},
            "unknown table 'silver.orderz'",
        ),
    ],
)
def test_bad_declarations_name_the_key(table_body, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_quality_rules({"tables": {"silver.products": table_body}}, check_with_gx=False)


def test_unknown_keys_in_quality_yaml_are_config_errors(tmp_path, cfg):
    (tmp_path / "quality.yaml").write_text("max_failure_shar: 0.1\ntables: {}\n")
    with pytest.raises(ConfigError, match=r"quality\.yaml.*max_failure_shar: unknown key"):
        load_quality_rules(cfg.model_copy(update={"conf_dir": str(tmp_path)}))


@pytest.mark.parametrize(
    "item,expected",
    [
        (
            {"expect_column_values_to_be_purple": {"column": "price"}},
            "no expectation expect_column_values_to_be_purple",
        ),
        ({"expect_column_values_to_be_in_set": {"column": "price", "value_sett": [1]}}, "value_sett"),
    ],
)
def test_gx_rejects_unknown_types_and_kwargs_at_load_time(item, expected):
    with pytest.raises(ConfigError, match=rf"tables\.silver\.products\.expectations\.0 .*{expected}"):
        parse_quality_rules({"tables": {"silver.products": {"expectations": [item]}}})


def test_project_rules_load_and_evaluate_on_every_silver_table(spark, cfg):
    rules = load_quality_rules(cfg)  # builds every declared expectation with GX

    assert set(rules) == {
        "silver.products",
        "silver.customers",
        "silver.events",
        "silver.orders",
        "silver.order_lines",
        "silver.campaign_touches",
    }
    empty = {name: spark.createDataFrame([], ALL_TABLES[name].schema) for name in rules}
    for name, table_rules in rules.items():
        # Building the plans analyses them: every column, `where` and join the declarations use.
        _, failing = split_row_failures(empty[name], table_rules, empty)
        assert failing.columns == [*ALL_TABLES[name].columns, FAILED_EXPECTATION]
        checked = with_reference_checks(empty[name], table_rules, empty)
        assert checked.columns == [*ALL_TABLES[name].columns, *(r.name for r in table_rules.references)]


def test_reports_go_to_the_lake_unless_it_is_remote(cfg):
    assert default_reports_dir(cfg) == f"{cfg.lake_root}/reports/quality"
    remote = cfg.model_copy(update={"lake": cfg.lake.model_copy(update={"root": "s3a://bucket/lake"})})
    # GX writes data docs to local folders only.
    assert "://" not in default_reports_dir(remote)
