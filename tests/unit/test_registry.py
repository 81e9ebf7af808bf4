"""The job registry's declared reads and writes: the pipeline order comes from them,
and they match what each job's code touches."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from common import tables
from common.errors import ConfigError
from common.tables import ALL_TABLES, GOLD_PROFILES, GOLD_SEGMENTS, SILVER_ORDERS
from shoplake.pipeline import check_job_list
from shoplake.registry import JOBS, ON_DEMAND, PIPELINE, JobSpec, pipeline_order

SPEC_BY_VARIABLE = {name: v for name, v in vars(tables).items() if isinstance(v, tables.TableSpec)}


def test_every_table_but_the_run_log_has_one_registered_writer():
    writers = {t.name: t.written_by for t in ALL_TABLES.values()}
    assert writers.pop("ops.run_log") == ""
    every_job = {**JOBS, **ON_DEMAND}
    assert set(writers.values()) <= set(every_job), writers
    assert {t.name for spec in every_job.values() for t in spec.writes} == set(writers)
    # A pipeline job reads only what pipeline jobs write: the on-demand stream's own table
    # (ops.stream_progress) is read by the report, never by a job.
    on_demand_tables = {t.name for spec in ON_DEMAND.values() for t in spec.writes}
    assert not {t.name for spec in JOBS.values() for t in spec.inputs} & on_demand_tables


def test_pipeline_order_follows_the_declared_reads():
    position = {name: i for i, name in enumerate(PIPELINE)}
    assert set(PIPELINE) == set(JOBS)
    for spec in JOBS.values():
        for table in spec.inputs:
            assert position[table.written_by] <= position[spec.name], (spec.name, table.name)
    # Ties keep the declaration order: today that is the order the jobs are declared in.
    assert PIPELINE == tuple(JOBS)


def test_order_is_derived_not_declared():
    # Declared backwards, the reads still put the writers first.
    backwards = {name: JOBS[name] for name in ("segment", "profile", "clean", "ingest")}
    assert pipeline_order(backwards) == ("ingest", "clean", "profile", "segment")


def test_a_read_nobody_writes_and_a_cycle_are_refused():
    with pytest.raises(ValueError, match="segment reads gold.profiles, which no registered job writes"):
        pipeline_order({"segment": JOBS["segment"]})
    cycle = {
        "ingest": JOBS["ingest"],
        "clean": JOBS["clean"],
        "profile": dataclasses.replace(JOBS["profile"], reads_if_present=(GOLD_SEGMENTS,)),
        "segment": JOBS["segment"],
    }
    with pytest.raises(ValueError, match=r"\['profile', 'segment'\] read each other's tables in a cycle"):
        pipeline_order(cycle)


def test_a_job_list_against_the_reads_is_refused_naming_the_table():
    assert check_job_list(["profile", "segment"]) == ["profile", "segment"]
    assert check_job_list(["segment"]) == ["segment"]  # the writer is not in this run: the lake has it
    with pytest.raises(ConfigError, match="--jobs: segment reads gold.profiles, which profile writes, but profile"):
        check_job_list(["segment", "profile"])


def _job_tree(module_name: str) -> ast.Module:
    """The job's code: its module, or every module of its package (jobs/recommend/)."""
    module = importlib.import_module(module_name)
    if not hasattr(module, "__path__"):
        return ast.parse(inspect.getsource(module))
    files = sorted(Path(module.__path__[0]).glob("*.py"))
    return ast.Module(body=[n for f in files for n in ast.parse(f.read_text(encoding="utf-8")).body], type_ignores=[])


def _tables_named_in(module_name: str) -> set[str]:
    tree = _job_tree(module_name)
    return {SPEC_BY_VARIABLE[n.id].name for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in SPEC_BY_VARIABLE}


def _required_in(module_name: str) -> set[str]:
    tree = _job_tree(module_name)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "require"]
    return {SPEC_BY_VARIABLE[a.id].name for call in calls for a in call.args if isinstance(a, ast.Name)}


def _undeclared(spec: JobSpec) -> set[str]:
    declared = {t.name for t in (*spec.writes, *spec.inputs)}
    return _tables_named_in(spec.module) - declared


@pytest.mark.parametrize("spec", [s for s in JOBS.values() if s.name not in ("ingest", "clean")], ids=lambda s: s.name)
def test_declared_reads_match_the_code(spec: JobSpec):
    """Every table a gold job's module names is one it writes or declares reading, and
    the tables it calls ``store.require`` on are its declared ``reads``."""
    assert not _undeclared(spec), f"{spec.name} uses undeclared tables {sorted(_undeclared(spec))}"
    assert _required_in(spec.module) == {t.name for t in spec.reads}


def test_the_code_check_sees_a_missing_declaration():
    churn = JOBS["churn"]
    assert _undeclared(dataclasses.replace(churn, reads=())) == {SILVER_ORDERS.name}
    assert _undeclared(dataclasses.replace(churn, reads_if_present=churn.reads_if_present[1:])) == {"silver.customers"}
    assert _required_in("jobs.segment") == {GOLD_PROFILES.name}
    # A job that is a package is read whole: recommend requires in job.py, names tables in several modules.
    assert _required_in("jobs.recommend") == {"silver.orders", "silver.order_lines", "silver.products"}
    recommend = JOBS["recommend"]
    assert _undeclared(dataclasses.replace(recommend, reads_if_present=())) >= {"silver.events"}
