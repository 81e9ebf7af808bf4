"""Reading a ShopLake report back (its HTML, or the DOM a browser dumped) for tests:
per section, the charts that hold a drawing and the text of every table."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class SectionView:
    charts: list[str] = field(default_factory=list)  # data-chart of figures holding an <svg> or <img>
    tables: list[list[list[str]]] = field(default_factory=list)  # table -> rows -> cell texts
    text: str = ""


class ReportDom(HTMLParser):
    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, SectionView] = {}
        self.body_attrs: dict[str, str] = {}
        self.scripts = 0
        self._section: SectionView | None = None
        self._figure: str | None = None
        self._figure_drawn = False
        # Open tables (nested ones inside cells), each with its rows and its open cell.
        self._tables: list[list[list[str]]] = []
        self._cells: list[list[str] | None] = []
        self._svg_depth = 0
        self.feed(document)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.body_attrs = {k: v or "" for k, v in a.items()}
        elif tag == "script":
            self.scripts += 1
        elif tag == "section":
            self._section = self.sections.setdefault(a.get("id", ""), SectionView())
        elif tag == "figure" and "chart" in (a.get("class") or "").split():
            self._figure, self._figure_drawn = a.get("data-chart", ""), False
        elif tag in ("svg", "img") and self._figure is not None:
            self._figure_drawn = True
        if tag == "svg":
            self._svg_depth += 1
        if self._svg_depth:
            return
        if tag == "table":
            self._tables.append([])
            self._cells.append(None)
        elif tag == "tr" and self._tables:
            self._tables[-1].append([])
        elif tag in ("td", "th") and self._tables:
            self._cells[-1] = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg_depth -= 1
            return
        if self._svg_depth:
            return
        if tag in ("td", "th") and self._cells and self._cells[-1] is not None and self._tables[-1]:
            self._tables[-1][-1].append(" ".join("".join(self._cells[-1]).split()))
            self._cells[-1] = None
        elif tag == "table" and self._tables:
            done = self._tables.pop()
            self._cells.pop()
            if self._section is not None and not self._tables:
                self._section.tables.append(done)
        elif tag == "figure" and self._figure is not None:
            if self._section is not None and self._figure_drawn:
                self._section.charts.append(self._figure)
            self._figure = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._svg_depth:
            return
        for cell in self._cells:
            if cell is not None:
                cell.append(data)
        if self._section is not None:
            self._section.text += data

    def table_with_header(self, section: str, first_header: str) -> list[dict[str, str]]:
        """The section's first table whose first header cell is ``first_header``, as dicts."""
        for rows in self.sections[section].tables:
            if rows and rows[0] and rows[0][0] == first_header:
                return [dict(zip(rows[0], r)) for r in rows[1:]]
        raise AssertionError(f"no table starting with {first_header!r} in section {section}")
