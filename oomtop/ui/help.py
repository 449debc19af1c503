"""``?``: the keys, what the marks mean, and the ranking rule (the same words as the README)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from oomtop.text import printable

KEYS = (
    ("?", "this help"),
    ("/", "filter by text (pod, container, cgroup, process, pid, command line); esc clears"),
    ("s", "cycle the sort: kill likelihood, usage, limit, name, growth"),
    ("space", "pause the display (collection goes on; the header counts pending samples)"),
    ("enter / → / ←", "expand or collapse the row (→ on an open row steps in, ← on a closed one steps out)"),
    ("n / N", "jump to the next predicted victim / to the node-wide victim"),
    ("e", "focus the OOM kill list; enter opens a kill's explanation"),
    ("tab", "move between the tree and the kill list"),
    ("ctrl+p", "command palette (every key above, and the theme)"),
    ("q", "quit"),
)

RULE = (
    "Ranking (kill likelihood, the default sort)\n"
    "Among siblings, the cgroup nearest the limit that applies to it comes first: its own limit, or its nearest "
    "limited ancestor's, or node RAM when none. Within a cgroup, processes are ordered by memcg score, highest "
    "first: the score the kernel's oom_badness() gives them against their nearest limited cgroup,\n"
    "    points = rss + swap + page tables (pages) + oom_score_adj × (domain pages / 1000)\n"
    "    score  = points × 1000 / domain pages\n"
    "where the domain is the cgroup's limit plus the swap it may use. The kernel kills the highest score in the "
    "cgroup that hit its limit and all its descendants (on a tie, the later-scanned task); oom_score_adj -1000 "
    "is never picked; with cgroup v2 memory.oom.group the whole group dies. /proc/<pid>/oom_score only ranks "
    "a node-wide OOM, which is why it is shown but not used."
)

MARKS = (
    ("✗", "the process the kernel would kill next in that cgroup (the row says which: container, pod, ...)"),
    ("✦", "the process a node-wide OOM would kill"),
    ("█ ▒ · │", "headroom bar: working set, reclaimable file cache, free, memory.high"),
    ("no limit", "the cgroup has no limit of its own (the one above it, if any, applies)"),
)


def help_text(notices: Sequence[str] = ()) -> Text:
    text = Text(end="")
    if notices:
        text.append("Notices\n", "bold")
        for notice in notices:
            text.append("  • ")
            text.append(printable(notice) + "\n")
        text.append("\n")
    text.append("Keys\n", "bold")
    for key, what in KEYS:
        text.append(f"  {key:<15}", "bold")
        text.append(what + "\n")
    text.append("\nMarks\n", "bold")
    for mark, what in MARKS:
        text.append(f"  {mark:<15}", "bold")
        text.append(what + "\n")
    title, body = RULE.split("\n", 1)
    text.append(f"\n{title}\n", "bold")
    text.append(body)
    return text


class HelpScreen(ModalScreen[None]):
    """Keys, marks and the ranking rule; escape, q or ? closes it."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 96%;
        max-width: 110;
        height: auto;
        max-height: 90%;
        border: round $primary;
        border-title-color: $text-accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, notices: Sequence[str] = ()) -> None:
        super().__init__()
        self.notices = tuple(notices)

    def compose(self) -> ComposeResult:
        with VerticalScroll() as scroll:
            scroll.border_title = "oomtop help"
            scroll.border_subtitle = "esc to close"
            yield Static(help_text(self.notices), id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
