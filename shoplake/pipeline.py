"""The pipeline: registered jobs in order under one run id, stopped by the first
failure and resumable from it.

Every step is one ``run_job`` call, so each records its input and output Delta
versions, counts, timings and status in ``ops.run_log`` under the pipeline's run
id. Each step's row also carries the pipeline's plan (``parameters.pipeline``:
the job list and every result-affecting setting), so ``--resume RUN_ID`` can
rebuild the run from the run log alone: steps already ``succeeded`` are skipped,
the rest run with the recorded job list and settings (the same ``gold.as_of``).

Used by ``shoplake pipeline``, the spark-submit entry and notebooks::

    from shoplake.pipeline import run_pipeline, resume_pipeline
    result = run_pipeline(spark, cfg, ["ingest", "clean"])
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TextIO

from pyspark.sql import SparkSession

from common import runlog
from common.config import ShopLakeConfig
from common.errors import ConfigError, ShopLakeError
from common.runlog import JobResult, new_run_id
from shoplake.registry import JOBS, PIPELINE, check_job_order, get_job, job_parameters, run_job

log = logging.getLogger(__name__)

PLAN_KEY = "pipeline"
# Settings that do not change any table's content (both engines write the same
# Delta tables), so a resume may differ in them.
RESULT_NEUTRAL = frozenset({"lake.backend"})


class PipelineStepFailed(ShopLakeError):
    """A step failed; the message names the step, the cause and the resume command.
    The exit code is the cause's, so scripts see the same code as for ``shoplake run``."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class ResumeRefused(ConfigError):
    """``--resume`` cannot continue this run as it was recorded."""


@dataclass
class Step:
    name: str
    status: str  # succeeded | skipped (succeeded in an earlier attempt of the run)
    seconds: float = 0.0
    result: JobResult | None = None


@dataclass
class PipelineResult:
    run_id: str
    jobs: list[str]
    steps: list[Step] = field(default_factory=list)

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "succeeded"]


# ---------------------------------------------------------------------------- plan
def check_job_list(names: Sequence[str]) -> list[str]:
    """The pipeline's jobs in the given order; unknown or repeated names, and a job
    listed before the writer of a table it reads, are errors."""
    names = [n.strip() for n in names if n.strip()]
    unknown = [n for n in names if n not in JOBS]
    if unknown:
        raise ConfigError(f"--jobs: unknown job(s) {unknown}; known jobs: {', '.join(JOBS)}")
    if not names:
        raise ConfigError(f"--jobs: no job given; known jobs: {', '.join(JOBS)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--jobs: {repeated} listed more than once")
    check_job_order(names)
    return names


def result_settings(cfg: ShopLakeConfig, names: Sequence[str]) -> dict[str, Any]:
    """Every setting the jobs' outputs depend on, flattened to dotted keys: the lake
    and the config sections the jobs declare in the registry."""
    merged: dict[str, Any] = {}
    for name in names:
        merged.update(job_parameters(get_job(name), cfg))
    return {k: v for k, v in _flatten(merged).items() if k not in RESULT_NEUTRAL}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): value}


def _json_value(value: Any) -> Any:
    """The value as the run log stores it (JSON round trip: tuples become lists, dates strings)."""
    return json.loads(json.dumps(value, default=str))


# ---------------------------------------------------------------------------- progress
class Progress:
    """Step n of m, job name and elapsed time on ``stream`` (stderr). On a terminal
    the running step's clock ticks in place; elsewhere (logs, CI) one line per
    step start and end."""

    def __init__(self, stream: TextIO | None = None, tick_seconds: float = 1.0) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.tick_seconds = tick_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()

    def start(self, index: int, total: int, name: str) -> None:
        label = f"[{index}/{total}] {name}"
        started = time.monotonic()
        if not self.live:
            self._write(f"{label} ...")
            return
        self._stop.clear()

        def tick() -> None:
            while not self._stop.wait(self.tick_seconds):
                self._write(f"\r{label} ... {format_seconds(time.monotonic() - started)}", end="")

        self._write(f"{label} ...", end="")
        self._thread = threading.Thread(target=tick, name="shoplake-progress", daemon=True)
        self._thread.start()

    def _stop_ticking(self) -> None:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._write("\r\033[K", end="")

    def finish(self, index: int, total: int, name: str, status: str, seconds: float, note: str = "") -> None:
        self._stop_ticking()
        self._write(f"[{index}/{total}] {name} {status} in {format_seconds(seconds)}{note}")

    def skip(self, index: int, total: int, name: str, run_id: str) -> None:
        self._write(f"[{index}/{total}] {name} skipped: succeeded earlier in run {run_id}")


def format_seconds(seconds: float) -> str:
    """``7.2s`` below a minute, ``3m05s`` above."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


# ---------------------------------------------------------------------------- running
def run_pipeline(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    jobs: Sequence[str] = PIPELINE,
    run_id: str | None = None,
    progress: Progress | None = None,
    echo: Callable[[str], None] | None = None,
    _skip: frozenset[str] = frozenset(),
    _plan: dict[str, Any] | None = None,
) -> PipelineResult:
    """Run ``jobs`` in order under one run id; the first failure stops the pipeline.

    When ``gold.as_of`` is not set, it is resolved once before the first job that
    reads the ``gold`` section and pinned for every later step (and recorded), so
    all gold outputs of one run share one date, including after a resume.

    Raises:
        PipelineStepFailed: naming the step, its error and the ``--resume`` command.
    """
    names = check_job_list(jobs)
    run_id = run_id or new_run_id("pipeline")
    plan = _plan or {"jobs": names, "settings": result_settings(cfg, names)}
    result = PipelineResult(run_id, names)
    log.info("pipeline %s: %s", run_id, " -> ".join(names))
    for index, name in enumerate(names, start=1):
        if name in _skip:
            if progress:
                progress.skip(index, len(names), name, run_id)
            result.steps.append(Step(name, "skipped"))
            continue
        if progress:
            progress.start(index, len(names), name)
        started = time.monotonic()
        try:
            if "gold" in get_job(name).config_sections and cfg.gold.as_of is None:
                cfg = pin_gold_as_of(spark, cfg)
            step_result = run_job(spark, cfg, name, run_id, recorded_parameters={PLAN_KEY: {**plan, "step": index}})
        except Exception as exc:
            seconds = time.monotonic() - started
            if progress:
                progress.finish(index, len(names), name, "FAILED", seconds)
            cause = (str(exc).strip().splitlines() or [""])[0]
            raise PipelineStepFailed(
                f"pipeline run {run_id} stopped at step {index}/{len(names)} ({name}): "
                f"{type(exc).__name__}: {cause} -- fix the cause, then resume with "
                f"`shoplake pipeline --resume {run_id}` (finished steps are not redone)",
                getattr(exc, "exit_code", 1),
            ) from exc
        seconds = time.monotonic() - started
        if echo and step_result.summary:
            echo(step_result.summary)
        if progress:
            progress.finish(index, len(names), name, "done", seconds)
        result.steps.append(Step(name, "succeeded", seconds, step_result))
    return result


def pin_gold_as_of(spark: SparkSession, cfg: ShopLakeConfig) -> ShopLakeConfig:
    """``cfg`` with ``gold.as_of`` resolved (the data's last day) when it is not set."""
    from common.asof import resolve_as_of
    from common.delta import open_store

    if cfg.gold.as_of is not None:
        return cfg
    as_of = resolve_as_of(open_store(spark, cfg), cfg)
    log.info("pipeline: gold.as_of pinned to %s for every gold step of this run", as_of.isoformat())
    return with_gold_as_of(cfg, as_of)


def with_gold_as_of(cfg: ShopLakeConfig, as_of: date) -> ShopLakeConfig:
    return cfg.model_copy(update={"gold": cfg.gold.model_copy(update={"as_of": as_of})})


# ---------------------------------------------------------------------------- resuming
@dataclass(frozen=True)
class RecordedRun:
    """What the run log says about one pipeline run."""

    run_id: str
    jobs: list[str]
    settings: dict[str, Any]
    succeeded: frozenset[str]
    failed: frozenset[str]
    gold_as_of: date | None  # the date gold steps ran with, when one ran


def read_recorded_run(spark: SparkSession, cfg: ShopLakeConfig, run_id: str) -> RecordedRun:
    """The pipeline run ``run_id`` as ``ops.run_log`` recorded it.

    Raises:
        ResumeRefused: unknown run id, or a run not started by the pipeline.
    """
    from common.delta import open_store

    store = open_store(spark, cfg)
    if not runlog.has_run_log(store):
        raise ResumeRefused(f"--resume {run_id}: no ops.run_log in the lake {cfg.lake_root}; nothing to resume")
    steps = runlog.run_steps(store, run_id, order_by="finished_at")
    if not steps:
        raise ResumeRefused(f"--resume {run_id}: unknown run id in {cfg.lake_root}/ops/run_log")
    plans = [s.parameters.get(PLAN_KEY) for s in steps]
    if any(p is None for p in plans):
        raise ResumeRefused(f"--resume {run_id}: that run was not started by `shoplake pipeline`")
    plan = plans[-1]
    succeeded = frozenset(s.job for s in steps if s.status == "succeeded")
    failed = frozenset(s.job for s in steps if s.status == "failed") - succeeded
    gold_days = {s.parameters["gold"].get("as_of") for s in steps if "gold" in s.parameters} - {None}
    return RecordedRun(
        run_id=run_id,
        jobs=list(plan["jobs"]),
        settings=plan["settings"],
        succeeded=succeeded,
        failed=failed,
        gold_as_of=date.fromisoformat(max(gold_days)) if gold_days else None,
    )


def plan_resume(
    recorded: RecordedRun, cfg: ShopLakeConfig, jobs: Sequence[str] | None = None
) -> tuple[ShopLakeConfig, list[str]]:
    """The config and job list a resume of ``recorded`` runs with.

    ``gold.as_of`` comes from the record when it is not given; any other
    result-affecting setting that differs from the record, or a different job
    list, refuses the resume naming what differs.

    Raises:
        ResumeRefused: when the run finished, or the job list or settings differ.
    """
    run_id = recorded.run_id
    if jobs is not None and list(jobs) != recorded.jobs:
        raise ResumeRefused(
            f"--resume {run_id}: --jobs {','.join(jobs)} differs from the run's job list "
            f"{','.join(recorded.jobs)}; leave --jobs out to resume, or start a new run"
        )
    remaining = [j for j in recorded.jobs if j not in recorded.succeeded]
    if not remaining:
        raise ResumeRefused(f"--resume {run_id}: every step succeeded; nothing to resume (start a new run instead)")
    expected = dict(recorded.settings)
    if "gold.as_of" in expected and expected["gold.as_of"] is None and recorded.gold_as_of:
        expected["gold.as_of"] = recorded.gold_as_of.isoformat()  # the data's last day, pinned by the run
    # The recorded date wins over "not set": a resume computes gold as of the same day.
    recorded_as_of = _recorded_date(expected.get("gold.as_of"))
    if recorded_as_of and cfg.gold.as_of is None:
        cfg = with_gold_as_of(cfg, recorded_as_of)
    current = {k: _json_value(v) for k, v in result_settings(cfg, recorded.jobs).items()}
    differences = [
        f"{key}: recorded {expected.get(key, '<absent>')!r}, now {current.get(key, '<absent>')!r}"
        for key in sorted(set(current) | set(expected))
        if current.get(key, "<absent>") != expected.get(key, "<absent>")
    ]
    if differences:
        raise ResumeRefused(
            f"--resume {run_id}: the configuration differs from the recorded run in ways that change results "
            f"({'; '.join(differences)}); resume with the same configuration or start a new run"
        )
    return cfg, recorded.jobs


def _recorded_date(value: Any) -> date | None:
    return date.fromisoformat(value) if isinstance(value, str) else None


def resume_pipeline(
    spark: SparkSession,
    cfg: ShopLakeConfig,
    run_id: str,
    jobs: Sequence[str] | None = None,
    progress: Progress | None = None,
    echo: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Continue pipeline run ``run_id`` from its first unfinished step, under the same
    run id, skipping steps that succeeded (see :func:`plan_resume` for refusals)."""
    recorded = read_recorded_run(spark, cfg, run_id)
    cfg, names = plan_resume(recorded, cfg, jobs)
    log.info(
        "resuming pipeline %s: %s succeeded, %s to run",
        run_id,
        sorted(recorded.succeeded) or "none",
        [j for j in names if j not in recorded.succeeded],
    )
    return run_pipeline(
        spark,
        cfg,
        names,
        run_id=run_id,
        progress=progress,
        echo=echo,
        _skip=recorded.succeeded,
        _plan={"jobs": recorded.jobs, "settings": recorded.settings},
    )


# ---------------------------------------------------------------------------- diagnostics
def _where_code_runs(_: Any) -> list[tuple[str, str]]:
    import os

    import common

    # Executors run in their work folder, where the shipped zip's path is relative.
    return [(os.path.abspath(common.__file__), sys.executable)]


def code_origins(spark: SparkSession) -> dict[str, tuple[str, str]]:
    """Where the driver and an executor import ShopLake from, and their Python:
    on a cluster, executors must run the shipped zip with the intended interpreter."""
    import common

    executor = spark.sparkContext.parallelize([0], 1).flatMap(_where_code_runs).collect()[0]
    return {"driver": (common.__file__, sys.executable), "executor": executor}
