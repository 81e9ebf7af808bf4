"""Matplotlib helpers shared by the HTML reports (``shoplake report``, the campaign
report): figures never attached to pyplot, saved as inline SVG or as PNG files."""

from __future__ import annotations

import io
from pathlib import Path


def figure(width: float = 6.4, height: float = 3.6):
    """A matplotlib Figure not attached to pyplot, so no global backend state is touched
    (notebooks keep their inline backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def svg(fig, chart_id: str) -> str:
    """The figure as inline ``<svg>`` (text kept as text; ids salted per chart so several
    charts in one page never share clip-path ids)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": chart_id}):
        fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def png(fig, path: str | Path) -> Path:
    """Write the figure as a PNG file (for markdown reports) and return its path."""
    path = Path(path)
    fig.savefig(path, format="png", dpi=110)
    return path
