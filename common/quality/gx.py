"""Great Expectations helpers: the import (about 3 s, once), an expectation from a rule, and
the ephemeral context whose results and data docs live in the run's folder."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rules imports this module: only the type is needed here
    from common.quality.rules import ExpectationRule


log = logging.getLogger(__name__)


def one_line(exc: BaseException) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
        except (TypeError, KeyError):
            pass
    return " ".join(str(exc).split())


def import_gx() -> Any:
    """Import GX (about 3 s, once per process) with its INFO chatter kept out of job logs."""
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        # GX logs every decorator it skips and every datasource it loads at INFO.
        gx_log.setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def gx_expectation(
    rule: ExpectationRule, kwargs: Mapping[str, Any], allowed: float, description: str | None = None
) -> Any:
    """The GX Expectation object for ``rule`` (looked up by class name in ``gx.expectations``)."""
    gx = import_gx()

    class_name = "".join(part.capitalize() for part in rule.type.split("_"))
    cls = getattr(gx.expectations, class_name, None)
    if cls is None:
        raise ValueError(f"GX {gx.__version__} has no expectation {rule.type}")
    extra: dict[str, Any] = {"meta": {"shoplake_name": rule.name, "level": rule.level}}
    if rule.where:
        extra.update(row_condition=rule.where, condition_parser="spark")
    if rule.notes:
        extra["notes"] = rule.notes
    if description:
        extra["description"] = description  # data docs show it instead of GX's own sentence
    # Row/flag rules: GX's `mostly` carries the allowed share, so GX's verdict is the gate's.
    if rule.level != "table" or rule.mostly is not None:
        extra["mostly"] = 1.0 - allowed
    return cls(**kwargs, **extra)


def new_gx_context(run_dir: Path) -> Any:
    """An ephemeral GX context whose suites, results and data docs live under ``run_dir``.

    Filesystem stores (instead of the default in-memory ones) let every table validated in
    the run appear in one data-docs index, and keep GX's own JSON results next to it.
    """
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    def backend(sub: str) -> dict[str, str]:
        return {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(run_dir / sub)}

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        # tqdm bars on stderr are noise in job logs.
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites={
            "shoplake": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": backend("data_docs"),
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    config.stores["expectations_store"] = {"class_name": "ExpectationsStore", "store_backend": backend("gx/suites")}
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": backend("gx/validations"),
    }
    return gx.get_context(project_config=config, mode="ephemeral")
