"""The package layout: names that cannot collide with the standard library."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", ["jobs", "common", "shoplake"])
def test_no_module_shadows_the_standard_library(package):
    # `spark-submit shoplake/main.py` puts jobs/ first on sys.path, so a jobs/profile.py
    # would be imported for the standard library's profile (pyspark imports cProfile).
    modules = {p.stem for p in (PROJECT / package).glob("*.py")} | {
        p.name for p in (PROJECT / package).iterdir() if (p / "__init__.py").is_file()
    }
    assert not modules & set(sys.stdlib_module_names), sorted(modules & set(sys.stdlib_module_names))
