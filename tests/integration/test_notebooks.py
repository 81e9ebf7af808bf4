"""Every notebook in notebooks/ runs top to bottom, so none can rot.

The notebooks share one small lake (150 users x 30 days through ingest and clean),
passed in $SHOPLAKE_LAKE; they run in file order, so a later notebook may use the
gold tables an earlier one built. A notebook names the jobs it runs in its metadata
(``shoplake.jobs``) and is skipped, saying which, while one of them is not registered
yet. The executed copies are kept in test-artifacts/notebooks/ for inspection.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shoplake.registry import JOBS
from tests.conftest import PROJECT_ROOT, SUBPROCESS_SPARK_CONF, TEST_SECRET

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "notebooks"


@pytest.fixture(scope="session")
def notebook_lake(silver_lake, tmp_path_factory) -> Path:
    """A private copy of a small shared silver lake (the notebooks write gold tables)."""
    cfg = silver_lake(users=150, days=30).copy_to(tmp_path_factory.mktemp("notebooks"))
    return Path(cfg.lake_root)


def test_every_notebook_is_stripped_and_declares_its_jobs():
    import nbformat

    assert [p.name for p in NOTEBOOKS][:1] == ["01_explore_lake.ipynb"]
    for path in NOTEBOOKS:
        book = nbformat.read(path, as_version=4)
        nbformat.validate(book)
        assert "jobs" in book.metadata.get("shoplake", {}), f"{path.name}: metadata.shoplake.jobs missing"
        code = [c for c in book.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name}: outputs not stripped"
        assert not any("sys.path" in c.source for c in code), f"{path.name}: import the installed project instead"


ONE_POINT_ALS_GRID = [
    "recommend.grid.rank=[16]",
    "recommend.grid.reg_param=[0.3]",
    "recommend.grid.alpha=[5.0]",
    "recommend.grid.confidence=[raw]",
]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, notebook_lake, monkeypatch):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    book = nbformat.read(path, as_version=4)
    needed = book.metadata["shoplake"]["jobs"]
    missing = [job for job in needed if job not in JOBS]
    if missing:
        pytest.skip(f"{path.name} runs job(s) {missing}, not registered in shoplake.registry.JOBS yet")

    # The kernel inherits this environment: the lake, its secret, small-test Spark settings and
    # a one-point ALS grid (the default grid's eight fits cost minutes and show nothing more).
    monkeypatch.setenv("SHOPLAKE_LAKE", str(notebook_lake))
    monkeypatch.setenv("SHOPLAKE_PSEUDONYM_SECRET", TEST_SECRET)
    monkeypatch.setenv("SHOPLAKE_SET", ";".join([*SUBPROCESS_SPARK_CONF, *ONE_POINT_ALS_GRID]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(
        book, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name}: a cell failed (executed copy in {ARTIFACTS}):\n{exc}", pytrace=False)
    finally:
        nbformat.write(book, ARTIFACTS / path.name)

    # Every notebook draws: at least one cell shows a PNG chart.
    images = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} drew no chart"
