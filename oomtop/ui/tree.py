"""The pod -> container -> process tree: a line-API ScrollView over a flat list of :class:`Row` values.

Textual's ``Tree`` keeps a node object per row and cannot reorder nodes in place; re-ranking 1,200 rows ten
times a second would mean rebuilding it.  This widget owns no per-row state at all: it is handed the visible
rows of each Sample, paints only the lines on screen, and tracks the cursor by row *key*, so the highlighted
row stays the same pod, container or process whatever the new order (rows never flicker: only the lines on
screen are repainted, and Textual diffs those).  Expansion lives in the app's :class:`TreeState`; this widget
never changes it: a key press calls the app's ``toggle_handler`` (or posts :class:`ProcessTree.ToggleRequested`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from oomtop.ui.cells import STYLE_NAMES, ColumnLayout, Palette, heading, render_row
from oomtop.ui.rows import Row, RowKey, Rows


class ProcessTree(ScrollView, can_focus=True):
    """Every memory cgroup and process of the node, ranked; one line per row, a heading line on top."""

    DEFAULT_CSS = """
    ProcessTree {
        overflow-x: hidden;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
        background: $surface;
    }
    ProcessTree > .tree--ok { color: $oomtop-ok; }
    ProcessTree > .tree--warn { color: $oomtop-warn; text-style: bold; }
    ProcessTree > .tree--crit { color: $oomtop-crit; text-style: bold; }
    ProcessTree > .tree--cache { text-style: dim; }
    ProcessTree > .tree--free { color: $oomtop-free; }
    ProcessTree > .tree--high { color: $oomtop-high; text-style: bold; }
    ProcessTree > .tree--victim { color: $oomtop-victim; text-style: bold; }
    ProcessTree > .tree--node-victim { color: $oomtop-node-victim; text-style: bold; }
    ProcessTree > .tree--dim { color: $oomtop-muted; }
    ProcessTree > .tree--pod { text-style: bold; }
    ProcessTree > .tree--group { text-style: italic; color: $oomtop-muted; }
    ProcessTree > .tree--match { background: $oomtop-match; text-style: bold; }
    ProcessTree > .tree--heading { text-style: bold; color: $text-accent; }
    ProcessTree > .tree--kills { color: $oomtop-crit; text-style: bold; }
    ProcessTree > .tree--cursor { background: $block-cursor-blurred-background; }
    ProcessTree:focus > .tree--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    """

    COMPONENT_CLASSES = {f"tree--{name}" for name in STYLE_NAMES} | {"tree--cursor"}

    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "Top", show=False),
        Binding("end", "edge(1)", "Bottom", show=False),
        Binding("enter", "toggle_row", "Expand/collapse"),
        Binding("right,l", "expand", "Expand", show=False),
        Binding("left,h", "collapse", "Collapse", show=False),
    ]

    class Highlighted(Message):
        """The cursor is on another key (or its row changed shape)."""

        def __init__(self, tree: ProcessTree, row: Row | None) -> None:
            super().__init__()
            self.tree = tree
            self.row = row

    class ToggleRequested(Message):
        """The user wants ``key`` expanded (True) or collapsed (False)."""

        def __init__(self, key: RowKey, expand: bool) -> None:
            super().__init__()
            self.key = key
            self.expand = expand

    class HeadingClicked(Message):
        """A click on the column heading (the app cycles the sort order)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: Rows = Rows([])
        self._index: dict[RowKey, int] = {}
        self.cursor_key: RowKey | None = None
        self.cursor_index = 0
        self._strips: dict[int, Strip] = {}
        self._styles: dict[str, Style] | None = None
        self._palettes: dict[tuple[bool, bool], Palette] = {}
        self._layout: ColumnLayout | None = None
        self._base: Style | None = None
        self._by_row: dict[RowKey, tuple[tuple[object, ...], Strip]] = {}
        #: called at once by expand/collapse (the app rebuilds the rows synchronously, so a second key press
        #: already sees the new shape); without it a ToggleRequested message is posted
        self.toggle_handler: Callable[[RowKey, bool], None] | None = None

    # ------------------------------------------------------------------------------------------- rows in

    def set_rows(self, rows: Sequence[Row]) -> None:
        """Replace the rows; the cursor stays on its key (or its nearest surviving ancestor)."""
        old_key, old_index = self.cursor_key, self.cursor_index
        old_parents = self._parent_chain(old_key)
        self.rows = rows if isinstance(rows, Rows) else Rows(list(rows))
        self._index = {key: i for i, key in enumerate(self.rows.keys())}
        self._strips.clear()
        self._forget_lines_off_screen()
        index = self._index.get(old_key) if old_key is not None else None
        if index is None:
            index = next((self._index[k] for k in old_parents if k in self._index), None)
        if index is None:
            index = min(old_index, len(self.rows) - 1) if self.rows else 0
        self.cursor_index = max(0, index)
        new_key = self.rows[self.cursor_index].key if self.rows else None
        size = Size(self.size.width, len(self.rows) + 1)
        if size != self.virtual_size:  # a layout pass for the whole screen: only when the row count changed
            self.virtual_size = size
        self._keep_cursor_visible()
        self.refresh()
        if new_key != old_key or old_key is None:
            self.cursor_key = new_key
            self.post_message(self.Highlighted(self, self.cursor_row))
        else:
            self.cursor_key = new_key

    def _parent_chain(self, key: RowKey | None) -> list[RowKey]:
        chain: list[RowKey] = []
        index = self._index.get(key) if key is not None else None
        row = self.rows[index] if index is not None else None
        while row is not None and row.parent is not None:
            chain.append(row.parent)
            parent_index = self._index.get(row.parent)
            row = self.rows[parent_index] if parent_index is not None else None
        return chain

    @property
    def cursor_row(self) -> Row | None:
        return self.rows[self.cursor_index] if 0 <= self.cursor_index < len(self.rows) else None

    def row_for(self, key: RowKey) -> Row | None:
        index = self._index.get(key)
        return self.rows[index] if index is not None else None

    def move_to(self, key: RowKey) -> bool:
        """Put the cursor on ``key`` if it is a visible row."""
        index = self._index.get(key)
        if index is None:
            return False
        self._set_cursor(index)
        return True

    # -------------------------------------------------------------------------------------------- actions

    def _set_cursor(self, index: int) -> None:
        if not self.rows:
            return
        index = max(0, min(index, len(self.rows) - 1))
        previous = self.cursor_index
        self.cursor_index = index
        self._strips.pop(previous, None)
        self._strips.pop(index, None)
        self._keep_cursor_visible()
        self.refresh()
        key = self.rows[index].key
        if key != self.cursor_key:
            self.cursor_key = key
            self.post_message(self.Highlighted(self, self.rows[index]))

    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 2)

    def action_cursor(self, delta: int) -> None:
        self._set_cursor(self.cursor_index + delta)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self.cursor_index + direction * self._page)

    def action_edge(self, end: int) -> None:
        self._set_cursor(len(self.rows) - 1 if end else 0)

    def request_toggle(self, key: RowKey, expand: bool) -> None:
        if self.toggle_handler is not None:
            self.toggle_handler(key, expand)
        else:
            self.post_message(self.ToggleRequested(key, expand))

    def action_toggle_row(self) -> None:
        row = self.cursor_row
        if row is not None and row.expandable:
            self.request_toggle(row.key, not row.expanded)

    def action_expand(self) -> None:
        row = self.cursor_row
        if row is None:
            return
        if row.expandable and not row.expanded:
            self.request_toggle(row.key, True)
        elif row.expandable:
            self._set_cursor(self.cursor_index + 1)  # already open: step to its first child

    def action_collapse(self) -> None:
        row = self.cursor_row
        if row is None:
            return
        if row.expandable and row.expanded:
            self.request_toggle(row.key, False)
        elif row.parent is not None and row.parent in self._index:
            self._set_cursor(self._index[row.parent])  # closed or a leaf: step to its parent

    def _keep_cursor_visible(self) -> None:
        height = self.scrollable_content_region.height - 1  # minus the heading line
        if height <= 0:
            return
        top = round(self.scroll_y)
        if self.cursor_index < top:
            self.scroll_to(y=self.cursor_index, animate=False, immediate=True)
        elif self.cursor_index >= top + height:
            self.scroll_to(y=self.cursor_index - height + 1, animate=False, immediate=True)

    # ---------------------------------------------------------------------------------------------- mouse

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            self.post_message(self.HeadingClicked())
            return
        index = round(self.scroll_y) + offset.y - 1
        if not 0 <= index < len(self.rows):
            return
        self.focus()
        row = self.rows[index]
        self._set_cursor(index)
        expander_at = 2 + 2 * row.depth
        if row.expandable and (event.chain >= 2 or expander_at <= offset.x < expander_at + 2):
            self.request_toggle(row.key, not row.expanded)

    # ------------------------------------------------------------------------------------------ rendering

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._palettes.clear()
        self._base = None
        self._strips.clear()
        self._by_row.clear()

    def on_resize(self, event: events.Resize) -> None:
        self._strips.clear()
        self._layout = None
        self.virtual_size = Size(event.size.width, len(self.rows) + 1)
        self._keep_cursor_visible()

    def on_focus(self) -> None:
        self._strips.pop(self.cursor_index, None)
        self.refresh()

    def on_blur(self) -> None:
        self._strips.pop(self.cursor_index, None)
        self.refresh()

    @property
    def styles_map(self) -> dict[str, Style]:
        if self._styles is None:
            self._styles = {name: self.get_component_rich_style(f"tree--{name}", partial=True) for name in STYLE_NAMES}
        return self._styles

    @property
    def layout_now(self) -> ColumnLayout:
        width = self.scrollable_content_region.width
        if self._layout is None or self._layout.width != width:
            self._layout = ColumnLayout.for_width(width)
        return self._layout

    def palette(self, cursor: bool = False) -> Palette:
        """The row styles over the widget's own (and, for the cursor row, the cursor's, focused or not)."""
        key = (cursor, cursor and self.has_focus)
        palette = self._palettes.get(key)
        if palette is None:
            under = self._base_style
            if cursor:
                under = under + self.get_component_rich_style("tree--cursor", partial=True)
            palette = self._palettes[key] = Palette(self.styles_map, under)
        return palette

    def render_line(self, y: int) -> Strip:
        layout = self.layout_now
        if y == 0:
            palette = self.palette()
            return Strip(heading(layout, palette).segments(palette.under), layout.width)
        index = round(self.scroll_y) + y - 1
        if not 0 <= index < len(self.rows):
            return Strip.blank(layout.width, self._base_style)
        strip = self._strips.get(index)
        if strip is None:
            row = self.rows[index]
            cursor = index == self.cursor_index
            # A row whose Cgroup/Task object and marks are unchanged (the collector hands out the same object
            # for an unchanged cgroup or process) reuses last Sample's line.
            signature = (row, cursor, cursor and self.has_focus, layout.width)
            previous = self._by_row.get(row.key)
            if previous is not None and previous[0] == signature:
                strip = previous[1]
            else:
                palette = self.palette(cursor)
                strip = Strip(render_row(row, layout, palette).segments(palette.under), layout.width)
            self._strips[index] = strip
            self._by_row[row.key] = (signature, strip)
        return strip

    def _forget_lines_off_screen(self) -> None:
        """Keep last Sample's lines only for the rows on screen and a screenful either side.

        A line is reused only when its row is painted again unchanged, which is a row on screen; lines kept for
        every row ever painted grew with the node's churn (each Strip carries its own caches: bench_soak measured
        the live view's RSS 8-16 MiB up after 5 minutes, a thousand Strips kept for rows scrolled past or gone).
        """
        height = max(self.size.height, 1)
        if len(self._by_row) <= 4 * height + 64:
            return
        top = round(self.scroll_y)
        low, high = top - height, top + 2 * height
        index = self._index
        self._by_row = {key: line for key, line in self._by_row.items() if low <= index.get(key, -(10**9)) <= high}

    @property
    def _base_style(self) -> Style:
        if self._base is None:
            self._base = self.rich_style
        return self._base
