"""Pipeline planning without Spark: job lists, resume decisions, progress lines,
and the spark-submit package's contents."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from datetime import date
from pathlib import Path

import pytest

from common.config import load_config
from common.errors import ConfigError
from shoplake import registry
from shoplake.pipeline import Progress, RecordedRun, ResumeRefused, check_job_list, plan_resume, result_settings
from shoplake.registry import JobSpec

JOBS = ["ingest", "clean"]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def recorded(cfg, succeeded=("ingest",), gold_as_of=None, settings=None, jobs=tuple(JOBS)) -> RecordedRun:
    return RecordedRun(
        run_id="pipeline-x",
        jobs=list(jobs),
        settings=settings if settings is not None else _json(result_settings(cfg, jobs)),
        succeeded=frozenset(succeeded),
        failed=frozenset({"clean"}),
        gold_as_of=gold_as_of,
    )


def _json(settings):
    import json

    return json.loads(json.dumps(settings, default=str))


def test_job_list_keeps_order_and_rejects_unknown_repeated_or_empty():
    assert check_job_list(["basket", " recommend"]) == ["basket", "recommend"]  # independent: any order
    with pytest.raises(ConfigError, match=r"--jobs: unknown job\(s\) \['cleen'\]; known jobs: ingest, clean"):
        check_job_list(["ingest", "cleen"])
    with pytest.raises(ConfigError, match=r"\['ingest'\] listed more than once"):
        check_job_list(["ingest", "ingest"])
    with pytest.raises(ConfigError, match="no job given"):
        check_job_list([""])


def test_settings_are_the_jobs_sections_flattened_without_the_engine():
    cfg = load_config("local", ["lake.root=/tmp/l"])
    settings = result_settings(cfg, ["clean"])
    assert settings["lake.root"] == "/tmp/l"
    assert settings["clean.event_dedup_window_seconds"] == 10
    assert settings["privacy.secret_env"] == "SHOPLAKE_PSEUDONYM_SECRET"
    assert "lake.backend" not in settings
    assert not any(k.startswith("ingest.") for k in settings)  # clean does not read ingest's section


def test_resume_runs_the_recorded_jobs_with_the_same_config():
    cfg = load_config("local", ["lake.root=/tmp/l"])
    resumed_cfg, jobs = plan_resume(recorded(cfg), cfg)
    assert jobs == JOBS
    assert resumed_cfg == cfg


def test_resume_refuses_a_changed_setting_naming_it():
    cfg = load_config("local", ["lake.root=/tmp/l"])
    changed = load_config("local", ["lake.root=/tmp/l", "clean.event_dedup_window_seconds=30"])
    with pytest.raises(ResumeRefused) as err:
        plan_resume(recorded(cfg), changed)
    assert "clean.event_dedup_window_seconds: recorded 10, now 30" in str(err.value)
    assert "lake.root" not in str(err.value)


def test_resume_ignores_settings_that_do_not_change_results():
    cfg = load_config("local", ["lake.root=/tmp/l"])
    other = load_config("local", ["lake.root=/tmp/l", "lake.backend=delta-rs", "spark.conf.spark.x=1"])
    assert plan_resume(recorded(cfg), other)[1] == JOBS


def test_resume_refuses_a_finished_run_and_another_job_list():
    cfg = load_config("local", ["lake.root=/tmp/l"])
    with pytest.raises(ResumeRefused, match="every step succeeded; nothing to resume"):
        plan_resume(recorded(cfg, succeeded=JOBS), cfg)
    with pytest.raises(ResumeRefused, match="--jobs ingest differs from the run's job list ingest,clean"):
        plan_resume(recorded(cfg), cfg, ["ingest"])


def test_resume_adopts_the_recorded_gold_as_of(monkeypatch):
    # A gold job (one that reads the `gold` section) makes gold.as_of a recorded setting.
    monkeypatch.setitem(registry.JOBS, "probe_gold", JobSpec("probe_gold", "jobs.clean", "test", ("gold",)))
    jobs = (*JOBS, "probe_gold")
    cfg = load_config("local", ["lake.root=/tmp/l"])
    settings = _json(result_settings(cfg, jobs))
    assert settings["gold.as_of"] is None
    pinned_run = recorded(cfg, gold_as_of=date(2024, 3, 5), settings=settings, jobs=jobs)
    # The run pinned 2024-03-05 itself: a resume without --as-of uses it, --as-of that day is fine.
    assert plan_resume(pinned_run, cfg)[0].gold.as_of == date(2024, 3, 5)
    same_day = load_config("local", ["lake.root=/tmp/l", "gold.as_of=2024-03-05"])
    assert plan_resume(pinned_run, same_day)[0].gold.as_of == date(2024, 3, 5)
    other_day = load_config("local", ["lake.root=/tmp/l", "gold.as_of=2024-03-01"])
    with pytest.raises(ResumeRefused, match="gold.as_of: recorded '2024-03-05', now '2024-03-01'"):
        plan_resume(pinned_run, other_day)
    # A date given to the original run is used when the resume gives none.
    explicit = recorded(cfg, settings={**settings, "gold.as_of": "2024-02-29"}, jobs=jobs)
    assert plan_resume(explicit, cfg)[0].gold.as_of == date(2024, 2, 29)


def test_progress_off_a_terminal_prints_one_line_per_step_event():
    out = io.StringIO()
    progress = Progress(out)
    progress.start(1, 3, "ingest")
    progress.finish(1, 3, "ingest", "done", 7.25)
    progress.skip(2, 3, "clean", "pipeline-x")
    progress.start(3, 3, "profile")
    progress.finish(3, 3, "profile", "FAILED", 125)
    assert out.getvalue().splitlines() == [
        "[1/3] ingest ...",
        "[1/3] ingest done in 7.2s",
        "[2/3] clean skipped: succeeded earlier in run pipeline-x",
        "[3/3] profile ...",
        "[3/3] profile FAILED in 2m05s",
    ]


def test_package_zip_holds_code_and_conf_and_the_entry_file(tmp_path):
    from shoplake.package import build_dist

    built = build_dist(tmp_path / "dist", wheel=False)
    names = set(zipfile.ZipFile(built["zip"]).namelist())
    assert {
        "common/__init__.py",
        "common/config/loading.py",
        "jobs/__init__.py",
        "jobs/clean/job.py",
        "shoplake/generate/data/catalogue.json",
        "shoplake/main.py",
        "shoplake/pipeline.py",
    } <= names
    assert {"conf/base.yaml", "conf/local.yaml", "conf/cluster.yaml", "conf/sources/shop.yaml"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert built["entry"].name == "main.py"
    assert built["entry"].read_bytes() == (PROJECT_ROOT / "shoplake" / "main.py").read_bytes()
    # Same sources, same bytes: the zip is reproducible.
    first = built["zip"].read_bytes()
    assert build_dist(tmp_path / "dist", wheel=False)["zip"].read_bytes() == first


def run_from_zip(
    tmp_path: Path, code: str, *args: str, timeout: float = 120
) -> tuple[Path, subprocess.CompletedProcess]:
    """Build the ``--py-files`` zip and run ``python -c code args`` with only the zip on the
    path, in an empty working directory (no project folder, no ./conf)."""
    from shoplake.package import build_dist

    zip_path = build_dist(tmp_path / "dist", wheel=False)["zip"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHOPLAKE_CONF_DIR")}
    env["PYTHONPATH"] = str(zip_path)
    run_dir = tmp_path / "cwd"
    run_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=run_dir, timeout=timeout
    )
    return zip_path, proc


def test_the_reports_render_from_the_templates_inside_the_zip(tmp_path):
    """The run report's and the campaign report's Jinja2 templates are package resources:
    rendered from the zip alone, with no project folder."""
    code = (
        "from datetime import datetime; from shoplake.report import ReportData, Unavailable, render; "
        "from common import templating; gone = Unavailable('gone'); "
        "page = render(ReportData('run-z', '/lake', datetime(2024, 1, 1), [], quality=gone, rfm=gone, "
        "segments=gone, churn=gone, rules=gone, recommendations=gone)); "
        "print(templating.__file__); print(page.count('<section id=')); "
        "print(templating.render('jobs.campaign/campaign_report.html.j2', as_of='2024-01-01', guard='g', "
        "tables=[('T', [{'a': '1'}], ['a'])], charts=[], warnings=['w']).count('<td>1</td>'))"
    )
    zip_path, proc = run_from_zip(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{zip_path}/common/templating.py", "9", "1"]


def test_code_run_from_the_zip_reads_the_conf_inside_it(tmp_path):
    """No project folder, no ./conf: the conf shipped in the zip is used, and
    relative paths resolve against the working directory, not the temporary copy."""
    code = (
        "import common.config as c; cfg = c.load_config('cluster'); "
        "print(c.__file__); print(cfg.spark.conf['spark.sql.shuffle.partitions']); print(cfg.lake_root); "
        "print(cfg.conf_dir)"
    )
    zip_path, proc = run_from_zip(tmp_path, code, timeout=60)
    run_dir = tmp_path / "cwd"
    assert proc.returncode == 0, proc.stderr
    module_file, partitions, lake_root, conf_dir = proc.stdout.splitlines()
    assert module_file == f"{zip_path}/common/config/__init__.py"
    assert partitions == "200"  # conf/cluster.yaml's value, read from the zip
    assert lake_root == str(run_dir / "lake")
    assert conf_dir.endswith("/conf") and not conf_dir.startswith(str(tmp_path))
    assert not Path(conf_dir).exists()  # the extracted copy is removed when the process exits


def test_the_zip_ships_the_generators_data_and_the_generator_runs_from_it(tmp_path):
    """The generator's reference data are package resources: in the zip (and read from it
    with importlib.resources, no project folder), and in the wheel (package-data)."""
    from shoplake.generate import generate
    from shoplake.package import ZIP_RESOURCES

    code = (
        "import sys; from datetime import date; import shoplake.generate as g; print(g.__file__); "
        "g.generate(sys.argv[1], 60, 3, 2, date(2024, 5, 1), duplicates='varied')"
    )
    zip_path, proc = run_from_zip(tmp_path, code, str(tmp_path / "from_zip"))
    names = set(zipfile.ZipFile(zip_path).namelist())
    data = sorted(p.name for p in (PROJECT_ROOT / "shoplake" / "generate" / "data").glob("*.json"))
    assert data and {f"shoplake/generate/data/{n}" for n in data} <= names
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{zip_path}/shoplake/generate/__init__.py"
    generate(tmp_path / "here", 60, 3, 2, date(2024, 5, 1), duplicates="varied")
    for path in sorted((tmp_path / "here").rglob("*.*")):
        twin = tmp_path / "from_zip" / path.relative_to(tmp_path / "here")
        assert twin.read_bytes() == path.read_bytes(), path.name
    tomllib = pytest.importorskip("tomllib")
    package_data = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    shipped = {f"{pkg}/{pattern}" for pkg, patterns in ZIP_RESOURCES.items() for pattern in patterns}
    in_wheel = {f"{pkg.replace('.', '/')}/{pattern}" for pkg, patterns in package_data.items() for pattern in patterns}
    assert shipped == in_wheel
