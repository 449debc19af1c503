"""``/``: a one-line text filter above the footer.  Typing filters live; enter keeps the filter and returns
to the tree; escape clears it.  Matching rows are shown with their ancestors (opened to show them) and their
own subtree."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Input, Label


class FilterBar(Horizontal):
    DEFAULT_CSS = """
    FilterBar {
        height: 1;
        display: none;
        background: $panel;
    }
    FilterBar.-shown { display: block; }
    FilterBar > Label { width: auto; padding: 0 1; color: $text-accent; text-style: bold; }
    FilterBar > Input { border: none; height: 1; padding: 0; width: 1fr; background: $panel; }
    FilterBar > Input:focus { border: none; }
    """

    BINDINGS = [Binding("escape", "clear", "Clear filter")]

    class Changed(Message):
        def __init__(self, text: str, done: bool) -> None:
            super().__init__()
            self.text = text
            self.done = done  # enter (keep it, back to the tree) or escape (cleared)

    def __init__(self, *, cursor_blink: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self._cursor_blink = cursor_blink

    def compose(self) -> ComposeResult:
        yield Label("filter")
        # The placeholder and value are plain strings: Input never parses markup in what is typed.
        yield Input(placeholder="pod, container, process, pid… (enter: keep, esc: clear)", id="filter-input")

    def on_mount(self) -> None:
        self.query_one(Input).cursor_blink = self._cursor_blink

    @property
    def value(self) -> str:
        return self.query_one(Input).value

    def open(self) -> None:
        self.add_class("-shown")
        # focused now, not after the next refresh (Widget.focus defers): keys typed right after "/" (a fast
        # typist, a paste) must land in the filter, not trigger the app's own keys
        self.screen.set_focus(self.query_one(Input))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.Changed(event.value, done=False))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if not event.value:
            self.remove_class("-shown")
        self.post_message(self.Changed(event.value, done=True))

    def action_clear(self) -> None:
        self.query_one(Input).value = ""
        self.remove_class("-shown")
        self.post_message(self.Changed("", done=True))
