"""The two header lines: what node this is, who dies first if it runs out, and how fresh the picture is.

A kill takes over the second line for a few seconds (``flash``), so it is seen even while looking elsewhere;
it stays listed in the event pane afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from oomtop.model import OomEvent
from oomtop.report import View
from oomtop.source import SourceMode
from oomtop.text import format_bytes, printable


@dataclass(frozen=True, slots=True)
class HeaderState:
    view: View | None
    now: float
    mode: SourceMode = "live"
    paused: bool = False
    pending: int = 0
    interval_s: float | None = None
    no_root: bool = False
    sort: str = "kill likelihood"
    filter_text: str = ""
    flash: OomEvent | None = None


def clock_time(t: float | None) -> str:
    if t is None:
        return "--:--:--"
    try:
        return time.strftime("%H:%M:%S", time.localtime(t))
    except (OverflowError, OSError, ValueError):
        return "--:--:--"


def event_where(event: OomEvent) -> str:
    """pod/container (or the cgroup path, or "node") of a kill, printable; a pod known only by its uid (no
    node metadata) is named as the tree names it, "pod <uid> <container id>", not by its long cgroup path."""
    if event.pod is not None:
        where = event.pod.label
        if event.container is not None:
            where += f" {event.container.label}"
        return printable(where)
    if event.kind == "global":
        return "node"
    return printable(event.task_cgroup or event.oom_cgroup or event.detected_in or "?")


def badge(text: str, style: str) -> Text:
    return Text(f" {text} ", style=style, end="")


def _first_line(state: HeaderState, width: int) -> Text:
    line = Text(no_wrap=True, end="")
    line.append("oomtop ", "bold")
    view = state.view
    if view is None:
        line.append("waiting for the first sample…", "dim")
    else:
        node = view.sample.node
        line.append(printable(node.hostname), "bold")
        line.append(f"  kernel {printable(node.kernel_release)}  cgroup {node.cgroup_layout}", "dim")
        line.append(f"  mem {format_bytes(node.mem_total_bytes)}")
        line.append(" total ", "dim")
        line.append(format_bytes(node.mem_available_bytes))
        line.append(" avail", "dim")
        if node.swap_total_bytes:
            line.append(f"  swap {format_bytes(node.swap_free_bytes)}/{format_bytes(node.swap_total_bytes)}")
    badges = Text(end="")
    if state.paused:
        badges.append_text(badge(f"PAUSED · {state.pending} pending", "bold reverse"))
    if state.mode == "replay":
        badges.append(" ")
        badges.append_text(badge("REPLAY", "bold reverse"))
    if state.no_root:
        badges.append(" ")
        badges.append_text(badge("NO ROOT", "bold reverse"))
    room = width - badges.cell_len
    line.truncate(max(0, room - 1), overflow="ellipsis", pad=True)
    line.append(" ")
    line.append_text(badges)
    return line


def _second_line(state: HeaderState) -> Text:
    line = Text(no_wrap=True, end="")
    view = state.view
    if view is not None:
        victim = view.prediction.node.victim
        line.append("node OOM kills: ", "dim")
        if victim is None:
            line.append("nothing killable")
        else:
            score = view.node_score(victim)
            line.append(f"{victim.pid} {printable(victim.comm)}", "bold")
            line.append(f" rss {format_bytes(victim.rss_bytes)} score {score}", "dim")
        line.append("  │  ", "dim")
        if state.interval_s is not None:
            line.append(f"every {state.interval_s:g}s · ", "dim")
        if state.mode == "replay":
            line.append(f"sample at {clock_time(view.sample.time)}")
        else:
            age = max(0.0, state.now - view.sample.time)
            line.append(f"sample {age:.1f}s old", "bold" if state.interval_s and age > 3 * state.interval_s else "")
    line.append("  │  sort: ", "dim")
    line.append(state.sort)
    if state.filter_text:
        line.append("  │  filter: ", "dim")
        line.append(printable(state.filter_text), "bold")
    return line


def _flash_line(event: OomEvent) -> Text:
    victim = event.victim
    line = Text(no_wrap=True, end="")
    line.append(f" OOM KILL {clock_time(event.time)} ", "bold")
    line.append(event_where(event))
    line.append(": pid ")
    line.append(f"{victim.pid if victim.pid is not None else '?'} {printable(victim.comm or '?')}", "bold")
    if event.count > 1:
        line.append(f" and {event.count - 1} more")
    line.append("   (e: events)")
    return line


class NodeHeader(Widget):
    """Node facts, the node-wide victim, interval and sample age; PAUSED / REPLAY / NO ROOT marks."""

    DEFAULT_CSS = """
    NodeHeader {
        height: 2;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    NodeHeader > .header--flash { color: $oomtop-flash-foreground; background: $oomtop-flash-background; }
    """

    COMPONENT_CLASSES = {"header--flash"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.state: HeaderState | None = None
        self._drawn: tuple[tuple[object, ...], list[Strip]] | None = None

    def show(self, state: HeaderState) -> None:
        self.state = state
        self.refresh()

    def render_line(self, y: int) -> Strip:
        """The two lines of :meth:`render` as strips, made once per state, width and theme.

        Through the line API rather than Textual's general path for a renderable: the header repaints with
        every Sample and is two lines long.
        """
        width = self.content_region.width
        base = self.rich_style
        key = (self.state, width, base, self.get_component_rich_style("header--flash", partial=True))
        if self._drawn is None or self._drawn[0] != key:
            console = self.app.console
            lines = self.render().split("\n")
            strips = [Strip(list(line.render(console))).apply_style(base).crop_extend(0, width, base) for line in lines]
            self._drawn = (key, strips)
        strips = self._drawn[1]
        return strips[y] if 0 <= y < len(strips) else Strip.blank(width, base)

    def render(self) -> Text:
        """Built at paint time, so the badges sit at the right edge of the real width."""
        state = self.state
        if state is None:
            return Text("oomtop", "bold", end="")
        width = max(20, self.content_region.width)
        text = _first_line(state, width)
        text.append("\n")
        if state.flash is not None:
            flash = _flash_line(state.flash)
            flash.truncate(width, overflow="ellipsis", pad=True)
            flash.stylize(self.get_component_rich_style("header--flash", partial=True))
            text.append_text(flash)
        else:
            second = _second_line(state)
            second.truncate(width, overflow="ellipsis")
            text.append_text(second)
        return text
