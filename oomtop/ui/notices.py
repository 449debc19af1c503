"""What the source could not do (no root, no kernel log, unreadable files), told once each.

Notices come from the Source (:class:`oomtop.source.Notice`) and from each Sample's ``warnings``; the bar keeps
one line per distinct notice, newest last, and hides itself when there is nothing to say.
"""

from __future__ import annotations

import re

from rich.text import Text
from textual.widgets import Static

from oomtop.text import printable

MAX_LINES = 3
_NO_ROOT_HINTS = ("permission denied", "run as root", "no-root")


def warning_key(text: str) -> str:
    """A Sample warning's identity without its numbers ("12 processes could not be read" is one notice)."""
    return "sample:" + re.sub(r"\d+", "#", text)


def means_no_root(key: str, text: str) -> bool:
    """A notice that says oomtop lacks privileges (shown as NO ROOT in the header)."""
    lowered = f"{key} {text}".lower()
    return any(hint in lowered for hint in _NO_ROOT_HINTS)


class NoticeBar(Static):
    """Up to three notice lines under the header, one line each (the help screen lists them in full)."""

    DEFAULT_CSS = """
    NoticeBar {
        height: auto;
        max-height: 4;
        background: $warning 15%;
        color: $text;
        padding: 0 1;
        display: none;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    NoticeBar.-shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.notices: list[tuple[str, str]] = []  # (key, text), oldest first

    def add(self, key: str, text: str) -> bool:
        """Show a notice once per key: the same key again only updates its text (a count that moved, say)."""
        for index, (known, old) in enumerate(self.notices):
            if known == key:
                if old == text:
                    return False
                self.notices[index] = (key, text)
                self._redraw()
                return False
        self.notices.append((key, text))
        self._redraw()
        return True

    def _redraw(self) -> None:
        text = Text(end="", no_wrap=True, overflow="ellipsis")  # one line each; ? shows them in full
        shown = self.notices[-MAX_LINES:]
        for i, (_, line) in enumerate(shown):
            if i:
                text.append("\n")
            text.append("note: ", "bold")
            text.append(printable(line))
        hidden = len(self.notices) - len(shown)
        if hidden:
            text.append(f"  (+{hidden} earlier, see ?)", "dim")
        self.update(text)
        self.set_class(bool(self.notices), "-shown")
