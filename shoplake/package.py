"""Build what spark-submit needs to run ShopLake on a cluster (``shoplake package``,
``make dist``):

- ``dist/shoplake-<version>.zip`` for ``--py-files``: the ``common``, ``jobs`` and
  ``shoplake`` packages (with their resource files, e.g. the generator's ``shoplake/generate/data/``)
  plus ``conf/`` at the zip's root. A driver that runs on the cluster
  (YARN cluster mode, Kubernetes) has no project folder, so it reads the conf
  shipped in the zip (see ``common.config.find_conf_dir``); ``--conf-dir`` or
  ``$SHOPLAKE_CONF_DIR`` still win.
- ``dist/main.py``: the entry file (a copy of ``shoplake/main.py``).
- ``dist/shoplake-<version>-py3-none-any.whl``: for images or nodes that
  ``pip install`` ShopLake with its dependencies (built with pip).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from common.config import PROJECT_ROOT, find_conf_dir
from common.errors import EnvironmentProblem

ZIP_PACKAGES = ("common", "jobs", "shoplake")
# Package resources (read with importlib.resources, which reads them from the zip too), per
# package: the same files as [tool.setuptools.package-data] in pyproject.toml puts in the wheel.
ZIP_RESOURCES = {
    "common": ("templates/*.j2",),
    "jobs": ("campaign/templates/*.j2",),
    "shoplake": ("generate/data/*.json", "report/templates/*"),
}
# A fixed timestamp makes the zip byte-identical for identical sources.
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def project_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("shoplake")
    except PackageNotFoundError:
        return "0.0.0"


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in suffixes and "__pycache__" not in p.parts)


def build_zip(target: Path, conf_dir: Path | None = None) -> Path:
    """Write the ``--py-files`` zip: ``common/``, ``jobs/``, ``shoplake/`` (code and
    :data:`ZIP_RESOURCES`) and ``conf/`` (YAML only)."""
    import common
    import jobs
    import shoplake

    conf = Path(conf_dir) if conf_dir else find_conf_dir()
    entries: list[tuple[Path, str]] = []
    for package in (common, jobs, shoplake):
        folder = Path(package.__file__).resolve().parent
        resources = [p for pattern in ZIP_RESOURCES.get(folder.name, ()) for p in sorted(folder.glob(pattern))]
        for p in _files(folder, (".py",)) + resources:
            entries.append((p, f"{folder.name}/{p.relative_to(folder).as_posix()}"))
    entries += [(p, f"conf/{p.relative_to(conf).as_posix()}") for p in _files(conf, (".yaml", ".yml"))]
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source, name in entries:
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())
    partial.replace(target)
    return target


def build_wheel(dist: Path) -> Path:
    """Build the project's wheel into ``dist`` with pip (needs the project's source tree)."""
    if not (PROJECT_ROOT / "pyproject.toml").is_file():
        raise EnvironmentProblem(f"no pyproject.toml in {PROJECT_ROOT}: the wheel is built from a source checkout")
    before = set(dist.glob("shoplake-*.whl"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(dist), str(PROJECT_ROOT)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EnvironmentProblem(f"building the wheel failed (pip wheel exit {proc.returncode}): {last}")
    built = sorted(set(dist.glob("shoplake-*.whl")) - before) or sorted(dist.glob("shoplake-*.whl"))
    return built[-1]


def build_dist(dist: str | Path = "dist", wheel: bool = True, conf_dir: str | Path | None = None) -> dict[str, Path]:
    """Build the zip, the entry file and (optionally) the wheel into ``dist``."""
    dist = Path(dist).resolve()
    dist.mkdir(parents=True, exist_ok=True)
    version = project_version()
    out = {
        "zip": build_zip(dist / f"shoplake-{version}.zip", Path(conf_dir) if conf_dir else None),
        "entry": Path(shutil.copyfile(Path(__file__).with_name("main.py"), dist / "main.py")),
    }
    if wheel:
        out["wheel"] = build_wheel(dist)
    return out
