"""HTML reports from Jinja2 templates: one environment, the shared macros of
``common/templates/macros.html.j2`` and one way to format a value.

Layout lives in the templates; Python collects the data and draws the charts. A template
is named ``<package>/<file>`` and read from ``<package>/templates/<file>`` with
importlib.resources, so the same code reads it from a checkout, a wheel or the
``--py-files`` zip. Autoescape is on: only :class:`markupsafe.Markup` (the charts' SVG)
is written unescaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

import jinja2
from markupsafe import Markup


def fmt(value: Any) -> str:
    """A value as report text: ``-`` for None, yes/no, thousands separators, at most four decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (datetime, date)):
        return value.isoformat(sep=" ", timespec="seconds") if isinstance(value, datetime) else value.isoformat()
    if is_flat_list(value) or (isinstance(value, tuple) and is_flat_list(list(value))):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def is_flat_list(value: Any) -> bool:
    """A list of scalars (shown as one comma-separated cell)."""
    return isinstance(value, list) and all(not isinstance(v, (Mapping, list)) for v in value)


def is_records(value: Any) -> bool:
    """A non-empty list of mappings (shown as a table)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list)) or is_flat_list(value)


def _columns(rows: list[Mapping[str, Any]]) -> list[str]:
    """The union of the rows' keys in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k in r))


class Chart(NamedTuple):
    """A drawn chart for a template: its id (``data-chart``), caption and inline SVG."""

    id: str
    title: str
    svg: Markup


def chart(chart_id: str, title: str, fig) -> Chart:
    from common.charts import svg

    return Chart(chart_id, title, Markup(svg(fig, chart_id)))


def _load(name: str) -> tuple[str, str, Any]:
    package, _, file = name.partition("/")
    if not package or not file:
        raise jinja2.TemplateNotFound(name)
    try:
        source = resources.files(package).joinpath("templates", file).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise jinja2.TemplateNotFound(name) from exc
    return source, name, lambda: True


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render instead of printing nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        fmt=fmt,
        columns=_columns,
        flat_items=lambda m: [(k, v) for k, v in m.items() if _is_scalar(v)],
        nested_items=lambda m: [(k, v) for k, v in m.items() if not _is_scalar(v)],
    )
    env.tests.update(records=is_records, flat_list=is_flat_list, list=lambda v: isinstance(v, list))
    return env


def render(template: str, **context: Any) -> str:
    """Render ``<package>/<file>`` with ``context``."""
    return environment().get_template(template).render(**context)


def macros(template: str) -> Any:
    """The macros of a template, callable from Python (each returns Markup)."""
    return environment().get_template(template).module
