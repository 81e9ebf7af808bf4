"""Local or not (common.paths)."""

from __future__ import annotations

import pytest

from common.paths import has_scheme, is_local, local_path


@pytest.mark.parametrize(
    ("path", "local", "scheme"),
    [
        ("lake", True, False),
        ("/tmp/lake", True, False),
        ("file:///tmp/lake", True, True),
        ("s3a://bucket/lake", False, True),
        ("abfss://c@acct.dfs.core.windows.net/lake", False, True),
    ],
)
def test_is_local(path, local, scheme):
    assert is_local(path) is local
    assert has_scheme(path) is scheme


def test_local_path_drops_the_file_scheme_only():
    assert local_path("file:///tmp/lake") == "/tmp/lake"
    assert local_path("/tmp/lake") == "/tmp/lake"
    assert local_path("s3a://b/lake") == "s3a://b/lake"
