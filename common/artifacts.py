"""Where jobs keep what is not a table: fitted models and per-run reports.

Both live beside the tables under the lake root, so a lake copied or moved keeps
its models, and a cluster run writes them where every executor can read them.
"""

from __future__ import annotations

import os

from common.config import ShopLakeConfig
from common.paths import is_local, local_path


def model_dir(cfg: ShopLakeConfig, name: str, version: str) -> str:
    """``<lake root>/models/<name>/<version>``: a fitted pyspark.ml pipeline (save/load)."""
    return f"{cfg.lake_root.rstrip('/')}/models/{name}/{version}"


def report_path(cfg: ShopLakeConfig, job: str, filename: str) -> str:
    """``<lake root>/reports/<job>/<filename>`` on a local lake (folder created); for a
    lake on object storage, ``reports/<job>`` under the project root on the driver."""
    root = cfg.lake_root
    base = os.path.join(local_path(root), "reports") if is_local(root) else cfg.resolve_path("reports")
    folder = os.path.join(base, job)
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, filename)
