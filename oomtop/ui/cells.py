"""One tree row as a Rich ``Text`` of exactly the tree's width: columns, headroom bar and victim marks.

Every piece of system text goes in as a plain string (``Text.append(str, style)``), never through a markup
parser, and was passed through :func:`oomtop.text.printable` when the row was built: a name holding
``[red]`` or an escape sequence is shown literally and cannot reach beyond its own cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rich.style import Style
from rich.text import Text

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
    "ok", "warn", "crit", "cache", "free", "high", "victim", "node-victim", "dim", "pod", "group", "match",
    "heading", "kills",
)


@dataclass(frozen=True, slots=True)
class Layout:
    """Which columns fit in ``width`` cells, and how wide the name column is."""

    width: int
    name_width: int
    columns: tuple[str, ...]

    @classmethod
    def for_width(cls, width: int) -> Layout:
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


def heading(layout: Layout, styles: Mapping[str, Style]) -> Text:
    text = Text(no_wrap=True, end="")
    text.append("CGROUP / PROCESS".ljust(layout.name_width)[: layout.name_width], styles.get("heading"))
    for column in layout.columns:
        label = _HEADINGS[column]
        cell = label.ljust(_width(column)) if column == "bar" else label.rjust(_width(column))
        text.append(" " + cell, styles.get("heading"))
    return text


def headroom_bar(usage: int, working_set: int, limit: int | None, high: int | None,
                 styles: Mapping[str, Style]) -> Text:  # fmt: skip
    """``█`` working set, ``▒`` reclaimable cache, ``·`` free, ``│`` at memory.high; "no limit" when there is none."""
    if limit is None or limit <= 0:
        return Text("no limit".ljust(BAR_CELLS + 5), styles.get("dim") or "", end="")
    fill = usage / limit
    level = styles.get(fill_level(fill))
    used_cells = min(BAR_CELLS, round(fill * BAR_CELLS))
    ws_cells = min(used_cells, round(working_set / limit * BAR_CELLS))
    cells = ["█"] * ws_cells + ["▒"] * (used_cells - ws_cells) + ["·"] * (BAR_CELLS - used_cells)
    kinds = ["ws"] * ws_cells + ["cache"] * (used_cells - ws_cells) + ["free"] * (BAR_CELLS - used_cells)
    if high is not None and 0 < high < limit:
        at = min(BAR_CELLS - 1, int(high / limit * BAR_CELLS))
        cells[at], kinds[at] = "│", "high"
    text = Text(end="")
    for char, kind in zip(cells, kinds, strict=True):
        style = level if kind == "ws" else styles.get("cache" if kind == "cache" else kind)
        if kind == "cache" and level is not None:
            style = level + (styles.get("cache") or Style())
        text.append(char, style)
    text.append(f" {min(fill, 9.99) * 100:3.0f}%", level)
    return text


def _right(value: str, column: str) -> str:
    return value.rjust(_width(column))[-_width(column):]


def _name_cell(row: Row, layout: Layout, styles: Mapping[str, Style]) -> Text:
    """Gutter marks, indent, expander and the label, cut to the name column.

    A process row also carries its memcg score and oom_score_adj, right-aligned in the name column (its label
    is short), so the victim mark after the USAGE column has room; the label gives way first when narrow.
    """
    text = Text(no_wrap=True, end="")
    if row.kind is RowKind.TASK:
        text.append("✗" if row.victim_of else " ", styles.get("victim"))
        text.append("✦" if row.node_victim else " ", styles.get("node-victim"))
    else:
        text.append("  ")
    text.append("  " * row.depth)
    if row.expandable:
        text.append("▾ " if row.expanded else "▸ ", styles.get("dim"))
    elif row.kind is not RowKind.TASK:
        text.append("  ")
    text.append(row.label, _label_style(row, styles))
    if row.kind is RowKind.GROUP:
        text.append(f" ({row.group_size})", styles.get("dim"))
    if row.kind is RowKind.TASK and row.task is not None:
        # the full label first; then as many figures as fit: score and adj, the score alone, nothing
        for with_adj in (True, False):
            figures = _task_figures(row, styles, with_adj)
            room = layout.name_width - figures.cell_len - 1
            if room >= text.cell_len:
                text.truncate(room, pad=True)
                text.append(" ")
                text.append_text(figures)
                break
    text.truncate(layout.name_width, overflow="ellipsis", pad=True)
    return text


def _task_figures(row: Row, styles: Mapping[str, Style], with_adj: bool = True) -> Text:
    task = row.task
    assert task is not None
    text = Text(end="")
    score = row.score
    text.append("score ", styles.get("dim"))
    text.append(f"{'-' if score is None else score:>5}", styles.get("dim") if score is None else None)
    if with_adj:
        text.append("  adj ", styles.get("dim"))
        text.append(f"{task.oom_score_adj:>5}", styles.get("dim") if task.oom_score_adj == 0 else None)
    return text


def _label_style(row: Row, styles: Mapping[str, Style]) -> Style | None:
    style: Style | None = None
    if row.kind is RowKind.GROUP:
        style = styles.get("group")
    elif row.cgroup is not None:
        kind = row.cgroup.identity.kind
        if kind in (CgroupKind.POD, CgroupKind.ROOT):
            style = styles.get("pod")
        elif kind in (CgroupKind.SANDBOX, CgroupKind.CONMON, CgroupKind.QOS, CgroupKind.KUBEPODS):
            style = styles.get("dim")
    if row.matched and styles.get("match") is not None:
        style = (style or Style()) + styles["match"]
    return style


def render_row(row: Row, layout: Layout, styles: Mapping[str, Style]) -> Text:
    """The full line for ``row``; exactly ``layout.width`` cells."""
    text = _name_cell(row, layout, styles)
    if row.kind is RowKind.TASK:
        _task_cells(text, row, layout, styles)
    elif row.kind is RowKind.GROUP:
        text.append(" " + _right(format_bytes(row.group_usage_bytes), "usage"))
    else:
        _cgroup_cells(text, row, layout, styles)
    text.truncate(layout.width, pad=True)
    return text


def _cgroup_cells(text: Text, row: Row, layout: Layout, styles: Mapping[str, Style]) -> None:
    cgroup = row.cgroup
    assert cgroup is not None
    for column in layout.columns:
        text.append(" ")
        if column == "usage":
            text.append(_right(format_bytes(cgroup.usage_bytes), column))
        elif column == "wset":
            text.append(_right(format_bytes(cgroup.working_set_bytes), column))
        elif column == "limit":
            limit = cgroup.limit_bytes
            text.append(_right(format_bytes(limit), column), styles.get("dim") if limit is None else None)
        elif column == "bar":
            text.append_text(headroom_bar(cgroup.usage_bytes, cgroup.working_set_bytes, cgroup.limit_bytes,
                                          cgroup.high_bytes, styles))
        elif column == "peak":
            text.append(_right(format_bytes(cgroup.peak_bytes), column))
        elif column == "kills":
            kills = cgroup.oom_kills
            text.append(_right(str(kills) if kills else "·", column), styles.get("kills" if kills else "dim"))
        elif column == "psi":
            pressure = cgroup.pressure
            value = f"{pressure.some_avg10:.1f}" if pressure is not None else "-"
            stalled = pressure is not None and pressure.some_avg10 > 0
            text.append(_right(value, column), None if stalled else styles.get("dim"))


def _task_cells(text: Text, row: Row, layout: Layout, styles: Mapping[str, Style]) -> None:
    """rss in the USAGE column, then what would kill it, then the kernel's global oom_score.

    Nothing is cut in the middle: the victim mark shortens to fit, and oom_score is shown only whole.
    """
    task = row.task
    assert task is not None
    text.append(" " + _right(format_bytes(task.rss_bytes), "usage"))
    marks: list[tuple[tuple[str, ...], str]] = []
    if row.victim_of:
        marks.append((("  ← next victim of " + ", ".join(row.victim_of), "  ← next victim", "  ← victim"), "victim"))
    if row.node_victim:
        marks.append((("  ← node-wide victim", "  ← node victim", "  ← node"), "node-victim"))
    for variants, style in marks:
        room = layout.width - text.cell_len
        choice = next((v for v in variants if len(v) <= room), variants[-1])
        text.append(choice, styles.get(style))
    score = f"  oom_score {'-' if task.oom_score is None else task.oom_score}"
    if len(score) <= layout.width - text.cell_len:
        text.append(score, styles.get("dim"))
