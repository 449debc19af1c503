"""One kill explained: the kernel's candidate ranking re-scored with its own arithmetic, whether the victim was
its top candidate, and whether oomtop had predicted it (``OomEvent.predicted_victim_pid`` against the victim).

The ranking comes from :func:`oomtop.explain.explain` (imported when a kill is opened, so the app starts
without it); every piece of logged text (comm, cgroup paths) is shown as plain text.
"""

from __future__ import annotations

from typing import Any

from rich.console import JustifyMethod
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from oomtop.model import OomEvent
from oomtop.text import format_bytes, printable, truncate
from oomtop.ui.events import victim_rss
from oomtop.ui.header import clock_time, event_where

MAX_CANDIDATES = 15
COMM_CELLS = 24  # as ``oomtop explain`` cuts a comm (its \xNN escapes can make it long); in cells, not characters


def _field(text: Text, name: str, value: str, style: str = "") -> None:
    text.append(f"{name:<11}", "dim")
    text.append(value, style)
    text.append("\n")


def prediction_sentence(event: OomEvent) -> tuple[str, str]:
    victim = event.victim.pid
    if event.predicted_victim_pid is None:
        return "no prediction (no sample of that cgroup before the kill)", "dim"
    if victim is not None and event.predicted_victim_pid == victim:
        return f"yes: pid {victim} was oomtop's predicted next victim", "bold"
    return f"no: oomtop expected pid {event.predicted_victim_pid}, the kernel killed pid {victim}", "bold"


def summary(event: OomEvent) -> Text:
    text = Text(end="")
    kind = "memory cgroup limit" if event.kind == "memcg" else "node out of memory (global)"
    text.append(f"OOM kill at {clock_time(event.time)} · {kind} · ", "bold")
    text.append(event_where(event) + "\n", "bold")
    domain = printable(event.oom_cgroup or "?")
    if event.kind == "memcg":
        domain += f"  usage {format_bytes(event.usage_bytes, '?')} / limit {format_bytes(event.limit_bytes, '?')}"
    _field(text, "domain", domain)
    if event.task_cgroup and event.task_cgroup != event.oom_cgroup:
        _field(text, "cgroup", printable(event.task_cgroup))
    victim = event.victim
    killed = f"pid {victim.pid if victim.pid is not None else '?'} {printable(victim.comm or '?')}"
    rss = victim_rss(event)
    if rss is not None:
        killed += f"  rss {format_bytes(rss)}"
    if victim.oom_score_adj is not None:
        killed += f"  adj {victim.oom_score_adj}"
    _field(text, "killed", killed, "bold")
    if len(event.killed) > 1:
        _field(
            text, "oom.group", f"{len(event.killed)} tasks killed together in {printable(event.oom_group_path or '?')}"
        )
    if event.invoker_comm:
        _field(text, "invoked by", printable(event.invoker_comm))
    sentence, style = prediction_sentence(event)
    _field(text, "predicted", sentence, style)
    if event.historical:
        _field(text, "seen", "in the kernel log at start (before oomtop ran)", "dim")
    return text


def explanation_parts(event: OomEvent, previous: OomEvent | None = None) -> tuple[Text, Table | None]:
    """The kernel's side: top candidate or not, the why-sentence, the ranking table.  ``previous``: the kill
    before this one in its domain (a kill right after it may be the kernel's exit race)."""
    text = Text(end="")
    try:
        from oomtop.explain import explain

        explanation: Any = explain(event, previous=previous)
    except Exception as error:  # a failed explanation says so in the pane  # noqa: BLE001
        _field(text, "kernel", f"no explanation: {printable(str(error))}", "dim")
        return text, None
    top = getattr(explanation, "victim_is_top", None)
    verdict = {True: "yes, the victim was the kernel's top candidate", False: "no, it was not the top candidate",
               None: "cannot tell (no task table in the log)"}[top]  # fmt: skip
    _field(text, "top", verdict, "bold" if top is False else "")
    _field(text, "why", printable(str(getattr(explanation, "why", ""))))
    for note in getattr(explanation, "notes", ()):
        _field(text, "note", printable(str(note)), "dim")
    ranking = tuple(getattr(explanation, "ranking", ()))
    if not ranking:
        return text, None
    killed = {k.pid for k in event.killed}
    pages = getattr(explanation, "totalpages", None)
    table = Table(
        title=Text(f"candidates (domain {pages} pages)" if pages else "candidates", style="bold"),
        title_justify="left",
        box=None,
        pad_edge=False,
        show_edge=False,
        header_style="bold",
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("", "left"),
        ("#", "right"),
        ("pid", "right"),
        ("comm", "left"),
        ("points", "right"),
        ("score", "right"),
        ("adj", "right"),
        ("rss", "right"),
        ("swap", "right"),
    )
    for column, justify in columns:
        table.add_column(Text(column, end=""), justify=justify, no_wrap=True)
    for place, candidate in enumerate(ranking[:MAX_CANDIDATES], 1):
        mark = "✗" if candidate.pid in killed else ("-" if not candidate.eligible else "")
        cells = [
            mark,
            str(place),
            str(candidate.pid),
            truncate(printable(candidate.comm), COMM_CELLS),
            str(candidate.points),
            "-" if candidate.score is None else str(candidate.score),
            str(candidate.oom_score_adj),
            format_bytes(candidate.rss_pages * 4096),
            str(candidate.swapents),
        ]
        style = "bold" if candidate.pid in killed else ("dim" if not candidate.eligible else "")
        table.add_row(*(Text(cell, style=style, end="") for cell in cells))
    if len(ranking) > MAX_CANDIDATES:
        table.add_row(
            *(
                Text(cell, "dim", end="")
                for cell in ("", "", "", f"… {len(ranking) - MAX_CANDIDATES} more", "", "", "", "", "")
            )
        )
    return text, table


class ExplanationScreen(ModalScreen[None]):
    """Opened from the event pane; escape closes it."""

    DEFAULT_CSS = """
    ExplanationScreen { align: center middle; }
    ExplanationScreen > VerticalScroll {
        width: 96%;
        max-width: 120;
        height: auto;
        max-height: 90%;
        border: round $primary;
        border-title-color: $text-accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, event: OomEvent, previous: OomEvent | None = None) -> None:
        super().__init__()
        self.event = event
        self.previous = previous

    def compose(self) -> ComposeResult:
        text, table = explanation_parts(self.event, self.previous)
        with VerticalScroll() as scroll:
            scroll.border_title = "why this process?"
            scroll.border_subtitle = "esc to close"
            yield Static(summary(self.event), id="explain-summary")
            yield Static(text, id="explain-verdict")
            if table is not None:
                yield Static(table, id="explain-ranking")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
