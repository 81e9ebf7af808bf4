"""Where the configuration lives: the project's ``conf/``, ``$SHOPLAKE_CONF_DIR``, or the ``conf/``
shipped in a ``--py-files`` zip (extracted once)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from common.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the project (or the --py-files zip) above common/config/
CONF_DIR_ENV = "SHOPLAKE_CONF_DIR"
# The YAML files of conf/ that are not environments (conf/<env>.yaml).
NOT_ENV_FILES = ("base", "quality", "campaigns", "tags")


def find_conf_dir(conf_dir: str | Path | None = None) -> Path:
    """The conf folder: an explicit path, then $SHOPLAKE_CONF_DIR, then the project's ``conf/``."""
    candidates = [conf_dir, os.environ.get(CONF_DIR_ENV), PROJECT_ROOT / "conf", Path.cwd() / "conf"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "base.yaml").is_file():
            return Path(candidate).resolve()
    packaged = packaged_conf_dir()
    if packaged is not None:
        return packaged
    raise ConfigError(
        f"no conf/base.yaml found (looked in: {', '.join(str(c) for c in candidates if c)}); "
        f"pass --conf-dir or set {CONF_DIR_ENV}"
    )


PACKAGED_CONF_DIRS: list[Path] = []


def packaged_conf_dir() -> Path | None:
    """``conf/`` shipped inside the ``--py-files`` zip this code was imported from
    (``shoplake package``), extracted once to a temporary folder because loading
    reads real files; None when the code is not running from such a zip."""
    if PACKAGED_CONF_DIRS:
        return PACKAGED_CONF_DIRS[0]
    if not zipfile.is_zipfile(PROJECT_ROOT):
        return None
    with zipfile.ZipFile(PROJECT_ROOT) as archive:
        members = [m for m in archive.namelist() if m.startswith("conf/") and not m.endswith("/")]
        if "conf/base.yaml" not in members:
            return None
        folder = Path(tempfile.mkdtemp(prefix="shoplake-conf-"))
        atexit.register(shutil.rmtree, folder, True)
        archive.extractall(folder, members)
    PACKAGED_CONF_DIRS.append(folder / "conf")
    return folder / "conf"
