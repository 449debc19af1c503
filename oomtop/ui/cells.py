"""One tree row as the Rich segments of exactly the tree's width: columns, headroom bar and victim marks.

A row is assembled as (text, style) pieces in a :class:`Line` and turned straight into segments whose styles
already hold the widget's base style (and the cursor's), so a repaint builds no Rich ``Text`` and makes no
second pass over the segments: the tree paints about fifty of these lines per Sample, ten times a second.
The pieces split into segments exactly where Rich's ``Text`` would split them (at every styled piece, with
unstyled neighbours joined), so the screen is the same to the byte.

Every piece of system text goes in as a plain string, never through a markup parser, and was passed through
:func:`oomtop.text.printable` when the row was built: a name holding ``[red]`` or an escape sequence is shown
literally and cannot reach beyond its own cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style

from oomtop.model import CgroupKind
from oomtop.text import format_bytes
from oomtop.ui.rows import Row, RowKind

BAR_CELLS = 10
WARN_FILL = 0.75
CRIT_FILL = 0.90

# (name, heading, width, narrowest tree width that still shows it)
_OPTIONAL = (("wset", "WSET", 7, 92), ("peak", "PEAK", 7, 104), ("kills", "KILLS", 5, 70), ("psi", "PSI10", 6, 124))

#: style names a theme provides (see ProcessTree.COMPONENT_CLASSES); missing ones render unstyled
STYLE_NAMES = (
    "ok",
    "warn",
    "crit",
    "cache",
    "free",
    "high",
    "victim",
    "node-victim",
    "dim",
    "pod",
    "group",
    "match",
    "heading",
    "kills",
)


@dataclass(frozen=True, slots=True)
class ColumnLayout:
    """Which columns fit in ``width`` cells, and how wide the name column is."""

    width: int
    name_width: int
    columns: tuple[str, ...]

    @classmethod
    def for_width(cls, width: int) -> ColumnLayout:
        columns = ["usage"]
        optional = {name: (w, min_width) for name, _, w, min_width in _OPTIONAL}
        if width >= optional["wset"][1]:
            columns.append("wset")
        columns += ["limit", "bar"]
        for name in ("peak", "kills", "psi"):
            if width >= optional[name][1]:
                columns.append(name)
        fixed = sum(_width(c) + 1 for c in columns)
        return cls(width, max(12, width - fixed), tuple(columns))


def _width(column: str) -> int:
    if column in ("usage", "limit"):
        return 7
    if column == "bar":
        return BAR_CELLS + 5
    return next(w for name, _, w, _ in _OPTIONAL if name == column)


_HEADINGS = {"usage": "USAGE", "limit": "LIMIT", "bar": "HEADROOM", **{n: h for n, h, _, _ in _OPTIONAL}}


def fill_level(fill: float) -> str:
    return "crit" if fill >= CRIT_FILL else "warn" if fill >= WARN_FILL else "ok"


class Palette:
    """The style of every look a piece can take, by the style names it combines (left to right).

    ``named`` holds the theme's style per name (a name it lacks is unstyled).  ``under`` is what every piece
    of the line sits on (the widget's base style, plus the cursor's on the cursor row): it is folded into each
    combination once, when first asked for, instead of into every segment of every repaint.
    """

    __slots__ = ("_combined", "_named", "name_cells", "under")

    def __init__(self, named: Mapping[str, Style], under: Style | None = None) -> None:
        self._named = named
        self.under = under
        self._combined: dict[tuple[str, ...], Style | None] = {}
        #: name cells already laid out in these styles (see :func:`render_row`)
        self.name_cells: dict[tuple[object, ...], Line] = {}

    def get(self, *names: str) -> Style | None:
        """The combined style of ``names``, or None when none of them styles anything (a plain piece)."""
        try:
            return self._combined[names]
        except KeyError:
            pass
        style: Style | None = None
        for name in names:
            named = self._named.get(name)
            if named:
                style = named if style is None else style + named
        combined = (style if self.under is None else self.under + style) if style else None
        self._combined[names] = combined
        return combined


class Line:
    """A line being assembled: (text, style) pieces, None for a plain piece, and their width in cells."""

    __slots__ = ("cells", "styles", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.styles: list[Style | None] = []
        self.cells = 0

    def add(self, text: str, style: Style | None = None) -> None:
        if text:
            self.texts.append(text)
            self.styles.append(style)
            self.cells += cell_len(text)

    def copy(self) -> Line:
        line = Line()
        line.texts, line.styles, line.cells = self.texts.copy(), self.styles.copy(), self.cells
        return line

    def extend(self, other: Line) -> None:
        self.texts += other.texts
        self.styles += other.styles
        self.cells += other.cells

    @property
    def plain(self) -> str:
        return "".join(self.texts)

    def fit(self, width: int, ellipsis: bool = False) -> None:
        """Exactly ``width`` cells: cut (ending in "…" when ``ellipsis``) or padded with plain spaces.

        As ``Text.truncate(width, pad=True)`` does: the "…" takes the style of the piece it replaces.
        """
        if self.cells > width:
            room = width - 1 if ellipsis else width
            used = 0
            for index, text in enumerate(self.texts):
                cells = cell_len(text)
                if used + cells > room:
                    kept = set_cell_size(text, room - used) if room > used else ""
                    kept = kept + "…" if ellipsis else kept
                    del self.texts[index + 1 :], self.styles[index + 1 :]
                    if kept:
                        self.texts[index] = kept
                    else:
                        del self.texts[index], self.styles[index]
                    break
                used += cells
            self.cells = width
        elif self.cells < width:
            self.add(" " * (width - self.cells))

    def segments(self, under: Style | None) -> list[Segment]:
        """One segment per styled piece, plain neighbours joined (as Rich's ``Text`` splits them)."""
        segments: list[Segment] = []
        plain: list[str] = []
        for text, style in zip(self.texts, self.styles, strict=False):
            if style is None:
                plain.append(text)
                continue
            if plain:
                segments.append(Segment("".join(plain), under))
                plain = []
            segments.append(Segment(text, style))
        if plain:
            segments.append(Segment("".join(plain), under))
        return segments


def heading(layout: ColumnLayout, palette: Palette) -> Line:
    line = Line()
    style = palette.get("heading")
    line.add("CGROUP / PROCESS".ljust(layout.name_width)[: layout.name_width], style)
    for column in layout.columns:
        label = _HEADINGS[column]
        cell = label.ljust(_width(column)) if column == "bar" else label.rjust(_width(column))
        line.add(" " + cell, style)
    return line


def headroom_bar(line: Line, usage: int, working_set: int, limit: int | None, high: int | None,
                 palette: Palette) -> None:  # fmt: skip
    """``█`` working set, ``▒`` reclaimable cache, ``·`` free, ``│`` at memory.high; "no limit" when there is none."""
    if limit is None or limit <= 0:
        line.add("no limit".ljust(BAR_CELLS + 5), palette.get("dim"))
        return
    fill = usage / limit
    level_name = fill_level(fill)
    used_cells = min(BAR_CELLS, round(fill * BAR_CELLS))
    ws_cells = min(used_cells, round(working_set / limit * BAR_CELLS))
    cells = ["█"] * ws_cells + ["▒"] * (used_cells - ws_cells) + ["·"] * (BAR_CELLS - used_cells)
    looks = [(level_name,)] * ws_cells + [(level_name, "cache")] * (used_cells - ws_cells)
    looks += [("free",)] * (BAR_CELLS - used_cells)
    if high is not None and 0 < high < limit:
        at = min(BAR_CELLS - 1, int(high / limit * BAR_CELLS))
        cells[at], looks[at] = "│", ("high",)
    for char, look in zip(cells, looks, strict=True):
        line.add(char, palette.get(*look))
    line.add(f" {min(fill, 9.99) * 100:3.0f}%", palette.get(level_name))


def _right(value: str, column: str) -> str:
    return value.rjust(_width(column))[-_width(column) :]


def _name_cell(row: Row, layout: ColumnLayout, palette: Palette) -> Line:
    """Gutter marks, indent, expander and the label, cut to the name column.

    A process row also carries its memcg score and oom_score_adj, right-aligned in the name column (its label
    is short), so the victim mark after the USAGE column has room; the label gives way first when narrow.
    """
    line = Line()
    if row.kind is RowKind.TASK:
        line.add("✗" if row.victim_of else " ", palette.get("victim"))
        line.add("✦" if row.node_victim else " ", palette.get("node-victim"))
    else:
        line.add("  ")
    line.add("  " * row.depth)
    if row.expandable:
        line.add("▾ " if row.expanded else "▸ ", palette.get("dim"))
    elif row.kind is not RowKind.TASK:
        line.add("  ")
    line.add(row.label, _label_style(row, palette))
    if row.kind is RowKind.GROUP:
        line.add(f" ({row.group_size})", palette.get("dim"))
    if row.kind is RowKind.TASK and row.task is not None:
        # the full label first; then as many figures as fit: score and adj, the score alone, nothing
        for with_adj in (True, False):
            figures = _task_figures(row, palette, with_adj)
            room = layout.name_width - figures.cells - 1
            if room >= line.cells:
                line.fit(room)
                line.add(" ")
                line.extend(figures)
                break
    line.fit(layout.name_width, ellipsis=True)
    return line


def _task_figures(row: Row, palette: Palette, with_adj: bool = True) -> Line:
    task = row.task
    assert task is not None
    line = Line()
    score = row.score
    dim = palette.get("dim")
    line.add("score ", dim)
    line.add(f"{'-' if score is None else score:>5}", dim if score is None else None)
    if with_adj:
        line.add("  adj ", dim)
        line.add(f"{task.oom_score_adj:>5}", dim if task.oom_score_adj == 0 else None)
    return line


def _label_style(row: Row, palette: Palette) -> Style | None:
    look: tuple[str, ...] = ()
    if row.kind is RowKind.GROUP:
        look = ("group",)
    elif row.cgroup is not None:
        kind = row.cgroup.identity.kind
        if kind in (CgroupKind.POD, CgroupKind.ROOT):
            look = ("pod",)
        elif kind in (CgroupKind.SANDBOX, CgroupKind.CONMON, CgroupKind.QOS, CgroupKind.KUBEPODS):
            look = ("dim",)
    if row.matched and palette.get("match") is not None:
        look += ("match",)
    return palette.get(*look) if look else None


NAME_CELLS_KEPT = 8192


def render_row(row: Row, layout: ColumnLayout, palette: Palette) -> Line:
    """The full line for ``row``; exactly ``layout.width`` cells.

    The name cell (marks, indent, label, score and adj, cut to fit) is the costly part and rarely changes
    while the figures after it move every Sample, so it is kept per look in the palette.
    """
    task = row.task
    look = (
        row.key,
        row.label,
        row.depth,
        row.expandable,
        row.expanded,
        row.matched,
        bool(row.victim_of),
        row.node_victim,
        row.score,
        task.oom_score_adj if task is not None else None,
        row.group_size,
        layout.name_width,
        row.cgroup.identity.kind if row.cgroup is not None else None,
    )
    cached = palette.name_cells.get(look)
    if cached is None:
        if len(palette.name_cells) >= NAME_CELLS_KEPT:
            palette.name_cells.clear()
        cached = palette.name_cells[look] = _name_cell(row, layout, palette)
    line = cached.copy()
    if row.kind is RowKind.TASK:
        _task_cells(line, row, layout, palette)
    elif row.kind is RowKind.GROUP:
        line.add(" " + _right(format_bytes(row.group_usage_bytes), "usage"))
    else:
        _cgroup_cells(line, row, layout, palette)
    line.fit(layout.width)
    return line


def _cgroup_cells(line: Line, row: Row, layout: ColumnLayout, palette: Palette) -> None:
    cgroup = row.cgroup
    assert cgroup is not None
    for column in layout.columns:
        line.add(" ")
        if column == "usage":
            line.add(_right(format_bytes(cgroup.usage_bytes), column))
        elif column == "wset":
            line.add(_right(format_bytes(cgroup.working_set_bytes), column))
        elif column == "limit":
            limit = cgroup.limit_bytes
            line.add(_right(format_bytes(limit), column), palette.get("dim") if limit is None else None)
        elif column == "bar":
            headroom_bar(
                line, cgroup.usage_bytes, cgroup.working_set_bytes, cgroup.limit_bytes, cgroup.high_bytes, palette
            )
        elif column == "peak":
            line.add(_right(format_bytes(cgroup.peak_bytes), column))
        elif column == "kills":
            kills = cgroup.oom_kills
            line.add(_right(str(kills) if kills else "·", column), palette.get("kills" if kills else "dim"))
        elif column == "psi":
            pressure = cgroup.pressure
            value = f"{pressure.some_avg10:.1f}" if pressure is not None else "-"
            stalled = pressure is not None and pressure.some_avg10 > 0
            line.add(_right(value, column), None if stalled else palette.get("dim"))


def _task_cells(line: Line, row: Row, layout: ColumnLayout, palette: Palette) -> None:
    """rss in the USAGE column, then what would kill it, then the kernel's global oom_score.

    Nothing is cut in the middle: the victim mark shortens to fit, and oom_score is shown only whole.
    """
    task = row.task
    assert task is not None
    line.add(" " + _right(format_bytes(task.rss_bytes), "usage"))
    marks: list[tuple[tuple[str, ...], str]] = []
    if row.victim_of:
        marks.append((("  ← next victim of " + ", ".join(row.victim_of), "  ← next victim", "  ← victim"), "victim"))
    if row.node_victim:
        marks.append((("  ← node-wide victim", "  ← node victim", "  ← node"), "node-victim"))
    for variants, style in marks:
        room = layout.width - line.cells
        # measured in cells: the domain names in the mark are cgroup labels, which may be CJK or emoji
        choice = next((v for v in variants if cell_len(v) <= room), variants[-1])
        line.add(choice, palette.get(style))
    score = f"  oom_score {'-' if task.oom_score is None else task.oom_score}"
    if len(score) <= layout.width - line.cells:  # ASCII digits: as many cells as characters
        line.add(score, palette.get("dim"))
