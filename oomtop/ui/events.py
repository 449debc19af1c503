"""OOM kills, newest first: time, where, the victim and its rss, the domain, and whether oomtop saw it coming.

Selecting one (enter or a click) asks the app to open its explanation.
"""

from __future__ import annotations

from collections.abc import Mapping

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from oomtop.model import OomEvent
from oomtop.text import format_bytes, printable
from oomtop.ui.header import clock_time, event_where

MAX_EVENTS = 500


def victim_rss(event: OomEvent) -> int | None:
    victim = event.victim
    parts = (victim.anon_rss_bytes, victim.file_rss_bytes, victim.shmem_rss_bytes)
    return None if all(p is None for p in parts) else sum(p or 0 for p in parts)


def prediction_mark(event: OomEvent) -> tuple[str, str]:
    """("predicted" | "not predicted" | "no prediction", style name)."""
    if event.predicted_victim_pid is None or event.victim.pid is None:
        return "no prediction", "dim"
    if event.predicted_victim_pid == event.victim.pid:
        return "predicted", "ok"
    return f"predicted {event.predicted_victim_pid}", "crit"


def kill_list_row(
    event: OomEvent, styles: Mapping[str, Style] | None = None, race: tuple[float, int | None] | None = None
) -> Text:
    """One kill of the list; ``race``: (seconds, pid) of the kill before it in its domain when this one is the
    kernel's exit race (see :func:`oomtop.explain.exit_race_gap_s`)."""
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(clock_time(event.time), "bold")
    text.append("  ")
    text.append(event_where(event))
    victim = event.victim
    text.append("  pid ")
    text.append(f"{victim.pid if victim.pid is not None else '?'} {printable(victim.comm or '?')}", "bold")
    rss = victim_rss(event)
    if rss is not None:
        text.append(f"  rss {format_bytes(rss)}")
    if event.count > 1:
        text.append(f"  ×{event.count}")
    domain = "node (global)" if event.kind == "global" else "memcg"
    if event.kind != "global" and event.limit_bytes is not None:
        domain += f" {format_bytes(event.limit_bytes)}"
    text.append(f"  {domain}", "dim")
    mark, style = prediction_mark(event)
    text.append(f"  {mark}", (styles or {}).get(style) or ("dim" if style == "dim" else "bold"))
    if race is not None:
        text.append(f"  exit race: {race[0] * 1000:.0f} ms after {race[1] if race[1] is not None else '?'}", "dim")
    if event.historical:
        text.append("  (before start)", "dim")
    return text


def exit_races(events: list[OomEvent]) -> list[tuple[float, int | None] | None]:
    """For each kill of ``events`` (newest first): (seconds, pid) of the kill it followed in the kernel's exit
    race, else None.  One pass from the oldest, remembering the last kill of each domain."""
    from oomtop.explain import Explainer, exit_race_gap_s  # the explainer loads when the first kill comes

    seen = Explainer()
    races: list[tuple[float, int | None] | None] = []
    for event in reversed(events):
        previous = seen.previous(event)
        seen.remember(event)
        gap_s = exit_race_gap_s(event, previous)
        races.append((gap_s, previous.victim.pid) if gap_s is not None and previous is not None else None)
    races.reverse()
    return races


class EventPane(Vertical):
    """The kill log; ``e`` focuses it, enter opens the selected kill's explanation."""

    DEFAULT_CSS = """
    EventPane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        background: $surface;
        height: 12;
    }
    EventPane:focus-within { border: round $primary; }
    EventPane > OptionList { border: none; height: 1fr; background: $surface; padding: 0; }
    EventPane > OptionList:focus { border: none; }
    EventPane > .events--ok { color: $oomtop-ok; }
    EventPane > .events--crit { color: $oomtop-crit; text-style: bold; }
    """

    COMPONENT_CLASSES = {"events--ok", "events--crit"}
    BINDINGS = [Binding("escape", "app.focus_tree", "Back to the tree")]

    class Chosen(Message):
        """A kill was picked; ``previous`` is the kill before it in the same domain, if the pane holds one."""

        def __init__(self, event: OomEvent, previous: OomEvent | None = None) -> None:
            super().__init__()
            self.event = event
            self.previous = previous

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.events: list[OomEvent] = []  # newest first

    def compose(self) -> ComposeResult:
        yield OptionList(Option(Text("no OOM kills seen", "dim", end=""), disabled=True), id="event-list")

    def on_mount(self) -> None:
        self._title()

    def _title(self) -> None:
        self.border_title = f"OOM kills ({len(self.events)})" if self.events else "OOM kills"

    @property
    def option_list(self) -> OptionList:
        return self.query_one(OptionList)

    def add(self, event: OomEvent) -> None:
        """Newest first; a highlighted kill stays highlighted (kills are rare: the list is simply rebuilt)."""
        listing = self.option_list
        previous = listing.highlighted if self.events else None
        self.events.insert(0, event)
        del self.events[MAX_EVENTS:]
        listing.clear_options()
        listing.add_options(self._options())
        if previous is not None:
            listing.highlighted = min(previous + 1, len(self.events) - 1)
        elif listing.has_focus:
            listing.highlighted = 0
        self._title()

    def replace_all(self, events: list[OomEvent]) -> None:
        """Show exactly these kills (oldest first in ``events``): a replay that jumped back in time."""
        listing = self.option_list
        self.events = list(reversed(events))[:MAX_EVENTS]
        listing.clear_options()
        if self.events:
            listing.add_options(self._options())
        else:
            listing.add_options([Option(Text("no OOM kills seen", "dim", end=""), disabled=True)])
        self._title()

    def _options(self) -> list[Option]:
        styles = {name: self.get_component_rich_style(f"events--{name}", partial=True) for name in ("ok", "crit")}
        return [
            Option(kill_list_row(item, styles, race))
            for item, race in zip(self.events, exit_races(self.events), strict=False)
        ]

    def focus_newest(self) -> None:
        listing = self.option_list
        listing.focus()
        if self.events and listing.highlighted is None:
            listing.highlighted = 0

    def on_option_list_option_selected(self, message: OptionList.OptionSelected) -> None:
        message.stop()
        index = message.option_index
        if 0 <= index < len(self.events):
            event = self.events[index]
            from oomtop.explain import previous_in_domain  # the explainer loads when a kill is opened

            self.post_message(self.Chosen(event, previous_in_domain(self.events[index + 1 :], event)))
