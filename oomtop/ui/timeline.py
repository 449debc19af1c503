"""The replay timeline: where in the recording the screen is, the recording's kills, and the replay keys.

Shown only over a replay.  It draws the recording's span as a bar with the position and a mark for every kill, so
a 3 a.m. kill is visible (and one key away) in an overnight recording.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static


def clock(time_s: float | None) -> str:
    if time_s is None:
        return "--:--:--"
    return datetime.fromtimestamp(time_s).strftime("%Y-%m-%d %H:%M:%S")


def timeline_text(
    position: float | None,
    start: float | None,
    end: float | None,
    kill_times: list[float],
    playing: bool,
    speed: float,
    width: int,
) -> Text:
    """``▶ 1x  <start> ━━━━●─────✗── <end>  at <time>`` fitted to ``width`` cells."""
    text = Text(no_wrap=True, end="")
    text.append("▶ playing" if playing else "❚❚ paused", "bold")
    text.append(f"  {speed:g}x  ", "dim")
    left, right = clock(start), clock(end)
    bar_width = max(10, width - text.cell_len - len(left) - len(right) - 24)
    cells = ["─"] * bar_width
    span = (end - start) if start is not None and end is not None and end > start else None
    if span is not None and start is not None:
        for kill in kill_times:
            index = min(bar_width - 1, max(0, int((kill - start) / span * (bar_width - 1))))
            cells[index] = "✗"
    at = None
    if span is not None and start is not None and position is not None:
        at = min(bar_width - 1, max(0, int((position - start) / span * (bar_width - 1))))
    text.append(left + " ", "dim")
    for index, cell in enumerate(cells):
        if index == at:
            text.append("●", "bold")
        elif at is not None and index < at:
            text.append("━" if cell == "─" else cell, "bold red" if cell == "✗" else "")
        else:
            text.append(cell, "bold red" if cell == "✗" else "dim")
    text.append(" " + right, "dim")
    text.append("  at ", "dim")
    text.append(clock(position)[11:], "bold")
    return text


class Timeline(Static):
    """One line: play state, speed, the recording's span with its kills, and the time on screen."""

    DEFAULT_CSS = """
    Timeline { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def show(
        self,
        position: float | None,
        start: float | None,
        end: float | None,
        kill_times: list[float],
        playing: bool,
        speed: float,
    ) -> None:
        width = max(40, self.size.width - 2)
        self.update(timeline_text(position, start, end, kill_times, playing, speed, width))


def parse_goto(text: str, current: float | None, start: float | None) -> float | None:
    """A time the user typed: ``HH:MM[:SS]`` (on the recording's day), ``YYYY-MM-DD HH:MM[:SS]``, or a relative
    ``+10m`` / ``-30s`` / ``+1h`` from the position on screen.  None when it is not a time."""
    text = text.strip()
    if not text:
        return None
    if text[0] in "+-" and current is not None:
        units = {"s": 1, "m": 60, "h": 3600}
        unit = text[-1] if text[-1] in units else "s"
        number = text[1:-1] if text[-1] in units else text[1:]
        try:
            amount = float(number) * units[unit]
        except ValueError:
            return None
        return current + amount if text[0] == "+" else current - amount
    for pattern in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text, pattern).timestamp()
        except ValueError:
            continue
    base = datetime.fromtimestamp(start if start is not None else (current or 0.0))
    for pattern in ("%H:%M:%S", "%H:%M"):
        try:
            parsed = datetime.strptime(text, pattern)
        except ValueError:
            continue
        return base.replace(hour=parsed.hour, minute=parsed.minute, second=parsed.second, microsecond=0).timestamp()
    return None


class GotoScreen(ModalScreen[float | None]):
    """Asks for a time to jump to; dismisses with the time, or None."""

    DEFAULT_CSS = """
    GotoScreen { align: center middle; }
    GotoScreen > Vertical { width: 60; height: auto; border: round $primary; background: $surface; padding: 0 1; }
    GotoScreen Label.-error { color: $error; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, current: float | None, start: float | None) -> None:
        super().__init__()
        self.current = current
        self.start = start

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("go to a time: HH:MM[:SS], YYYY-MM-DD HH:MM:SS, or +10m / -30s")
            yield Input(placeholder=clock(self.current)[11:], id="goto")
            yield Label("", id="goto-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        target = parse_goto(event.value, self.current, self.start)
        if target is None:
            error = self.query_one("#goto-error", Label)
            error.update(Text(f"not a time: {event.value}", end=""))
            error.add_class("-error")
            return
        self.dismiss(target)

    def action_cancel(self) -> None:
        self.dismiss(None)
