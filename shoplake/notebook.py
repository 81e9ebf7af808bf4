"""The set-up every notebook in ``notebooks/`` shares: a config, a Spark session and a
store for a lake, chosen by environment variables so the same notebook runs on a
developer's lake, in CI and on a fresh machine.

    from shoplake.notebook import open_lake
    lake = open_lake()                  # $SHOPLAKE_LAKE, or a small generated lake
    lake.read("silver.orders").count()
    lake.run("profile")                 # a registered job, recorded in ops.run_log

Environment variables (all optional):

- ``SHOPLAKE_LAKE``: the lake root to explore. Unset: a small shop is generated in a
  temporary folder and taken through ingest and clean first.
- ``SHOPLAKE_ENV``: config environment (``conf/<env>.yaml``), default ``local``.
- ``SHOPLAKE_SET``: extra config overrides, ``key=value`` separated by ``;``.
- ``SHOPLAKE_NB_USERS``, ``SHOPLAKE_NB_DAYS``, ``SHOPLAKE_NB_SEED``: size and seed of the
  generated shop (default 150 users, 30 days, seed 7).

Like the CLI, this is an entry point: it creates the session that jobs receive.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from common import runlog
from common.config import ShopLakeConfig, load_config
from common.runlog import JobResult
from common.tables import get_table

log = logging.getLogger(__name__)

DEFAULT_USERS, DEFAULT_DAYS, DEFAULT_SEED = 150, 30, 7


@dataclass
class NotebookLake:
    """A lake opened for exploration."""

    cfg: ShopLakeConfig
    spark: SparkSession
    store: Any
    generated: bool = False
    manifest: dict[str, Any] = field(default_factory=dict)

    def read(self, table: str) -> DataFrame:
        """A table by ``<layer>.<table>`` name (the error lists the known names)."""
        return self.store.read(get_table(table))

    def exists(self, table: str) -> bool:
        return self.store.exists(get_table(table))

    def run(self, job: str, **job_args: Any) -> JobResult:
        """Run a registered job on this lake (recorded in ops.run_log like a CLI run)."""
        from shoplake.registry import run_job

        result = run_job(self.spark, self.cfg, job, **job_args)
        print(result.summary)
        return result

    def latest_metrics(self, job: str) -> dict[str, Any]:
        """The ``metrics`` of the job's latest successful run in ops.run_log ({} if none)."""
        if not runlog.has_run_log(self.store):
            return {}
        step = runlog.latest_run(self.store, jobs=[job], status="succeeded")
        return step.metrics if step else {}

    def latest_as_of(self, table: str) -> DataFrame:
        """A gold table's rows for its latest as-of date."""
        df = self.read(table)
        last = df.agg(F.max("as_of")).first()[0]
        return df.where(F.col("as_of") == F.lit(last))


def _overrides() -> list[str]:
    text = os.environ.get("SHOPLAKE_SET", "")
    return [part.strip() for part in text.split(";") if part.strip()]


def open_lake(lake_root: str | None = None, env: str | None = None) -> NotebookLake:
    """Open ``lake_root`` (default ``$SHOPLAKE_LAKE``), or build a small generated lake.

    Building one needs a pseudonym secret: ``$SHOPLAKE_PSEUDONYM_SECRET`` when set, else a
    random one for this process only (said so), since the lake is thrown away.
    """
    from common.delta import open_store
    from common.spark import build_spark

    env = env or os.environ.get("SHOPLAKE_ENV", "local")
    lake_root = lake_root or os.environ.get("SHOPLAKE_LAKE")
    generated = lake_root is None
    if generated:
        folder = tempfile.mkdtemp(prefix="shoplake-nb-")
        lake_root = os.path.join(folder, "lake")
        landing = os.path.join(folder, "landing")
        overrides = [f"lake.root={lake_root}", f"landing.root={landing}", f"generate.out={landing}", *_overrides()]
    else:
        overrides = [f"lake.root={lake_root}", *_overrides()]
    cfg = load_config(env, overrides)
    spark = build_spark(cfg)
    lake = NotebookLake(cfg, spark, open_store(spark, cfg), generated=generated)
    if generated:
        lake.manifest = _build_small_lake(lake)
    print(f"lake: {cfg.lake_root} ({'generated' if generated else 'given'}), Spark {spark.version}")
    return lake


def _build_small_lake(lake: NotebookLake) -> dict[str, Any]:
    from shoplake.generate import generate

    secret_env = lake.cfg.privacy.secret_env
    if not os.environ.get(secret_env):
        os.environ[secret_env] = secrets.token_hex(32)
        print(f"{secret_env} was not set: using a random secret for this throw-away lake")
    manifest = generate(
        lake.cfg.landing_root,
        users=int(os.environ.get("SHOPLAKE_NB_USERS", DEFAULT_USERS)),
        days=int(os.environ.get("SHOPLAKE_NB_DAYS", DEFAULT_DAYS)),
        seed=int(os.environ.get("SHOPLAKE_NB_SEED", DEFAULT_SEED)),
        start_date=date(2024, 1, 1),
    )
    lake.run("ingest")
    lake.run("clean")
    return manifest
