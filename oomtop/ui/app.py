"""The oomtop Textual app: reads one Source, shows the node's cgroups and processes ranked by kill likelihood.

``OomtopApp(source, clock=...)`` runs on anything that yields Updates (the live node, a replay, a fixture), so
tests drive the real app.  Collection never stops: while the display is paused, Samples are recorded into the
history and counted, and the newest one is shown on resume; kills are always listed and flashed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer

from oomtop.model import OomEvent, Sample
from oomtop.report import View
from oomtop.source import Notice, Seekable, Source, Update
from oomtop.ui.details import DetailsPane
from oomtop.ui.events import EventPane
from oomtop.ui.explanation import ExplanationScreen
from oomtop.ui.filterbar import FilterBar
from oomtop.ui.header import HeaderState, NodeHeader
from oomtop.ui.help import HelpScreen
from oomtop.ui.history import History
from oomtop.ui.notices import NoticeBar, means_no_root, warning_key
from oomtop.ui.rows import (
    Ranking,
    Row,
    RowKey,
    TreeState,
    ancestors,
    build_rows,
    task_key,
    victim_keys,
    visible_rows,
)
from oomtop.ui.themes import DEFAULT_THEME, Catalogue, discover, to_textual, variable_defaults
from oomtop.ui.timeline import GotoScreen, Timeline
from oomtop.ui.tree import ProcessTree

FLASH_S = 6.0
NARROW_BELOW = 140


def tune_gc() -> None:
    """Keep the cyclic GC from stalling the screen (measured in bench/bench_ui.py: a full collection over the
    app's ~300,000 long-lived objects cost 100+ ms every few updates, the p95).  Everything alive once the first
    Sample is on screen (Textual's widgets, styles, caches) moves to the permanent generation, and young
    collections run less often.  Process-wide, so only the ``oomtop`` command turns it on, not tests."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class OomtopApp(App[None]):
    """top for memory cgroups."""

    TITLE = "oomtop"
    CSS = """
    Screen { layout: vertical; background: $background; }
    #main { layout: horizontal; height: 1fr; }
    #tree { width: 1fr; height: 100%; }
    #side { width: 52; height: 100%; layout: vertical; }
    #details { height: 1fr; }
    #events { height: 12; }
    #main.-narrow { layout: vertical; }
    #main.-narrow #tree { width: 100%; height: 1fr; }
    #main.-narrow #side { width: 100%; height: 8; layout: horizontal; }
    #main.-narrow #details { width: 1fr; height: 100%; }
    #main.-narrow #events { width: 1fr; height: 100%; }
    """

    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "sort", "Sort"),
        Binding("space", "pause", "Pause"),
        Binding("n", "next_victim", "Next victim"),
        Binding("N", "node_victim", "Node victim", show=False),
        Binding("e", "events", "Events"),
        Binding("q", "quit", "Quit"),
        # Replay only (check_action hides them on a live source):
        Binding("comma", "step(-1)", "Step back"),
        Binding("full_stop", "step(1)", "Step"),
        Binding("left_square_bracket", "previous_kill", "Prev kill"),
        Binding("right_square_bracket", "next_kill", "Next kill"),
        Binding("g", "goto", "Go to"),
        Binding("plus", "speed(1)", "Faster", show=False),
        Binding("minus", "speed(-1)", "Slower", show=False),
    ]
    REPLAY_ACTIONS = {"step", "previous_kill", "next_kill", "goto", "speed"}

    def __init__(
        self,
        source: Source,
        *,
        clock: Callable[[], float] = time.time,
        theme: str | None = None,
        catalogue: Catalogue | None = None,
        notices: Iterable[Notice] = (),
        cursor_blink: bool = True,
        interval_s: float | None = None,
        tune_gc: bool = False,
        open_cgroups: bool = False,
    ) -> None:
        super().__init__()
        self.source = source
        #: the same Source when it can move in time (a recording): the timeline and the replay keys are offered
        self.replay: Seekable | None = source if isinstance(source, Seekable) else None
        self.clock = clock
        self.cursor_blink = cursor_blink
        self.tune_gc = tune_gc
        self.interval_s = interval_s if interval_s is not None else getattr(source, "interval_s", None)
        self.state = TreeState(open_by_default=open_cgroups)
        self.history = History()
        self.view: View | None = None
        self.ranking: Ranking | None = None
        self.latest: Sample | None = None
        self.paused = False
        self.pending = 0
        self.no_root = False
        self.flash: OomEvent | None = None
        self._flash_timer: Timer | None = None
        self.updates_seen = 0
        self.samples_shown = 0
        self._startup_notices = list(notices)
        self._last_sample_time: float | None = None
        self._observed_interval: float | None = None
        self._ui_ready = False
        catalogue = catalogue if catalogue is not None else discover()
        for spec in catalogue.themes.values():
            self.register_theme(to_textual(spec))
        chosen = theme or DEFAULT_THEME
        self.theme = (
            chosen
            if chosen in self.available_themes
            else (DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark")
        )

    # -------------------------------------------------------------------------------------------- layout

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return variable_defaults()

    def compose(self) -> ComposeResult:
        # Held by reference: while a modal screen is up, queries would search that screen instead.
        self.header_bar = NodeHeader(id="header")
        self.notice_bar = NoticeBar(id="notices")
        self.process_tree = ProcessTree(id="tree")
        self.process_tree.toggle_handler = self._toggle
        self.details_pane = DetailsPane(id="details")
        self.event_pane = EventPane(id="events")
        self.filter_bar = FilterBar(id="filter", cursor_blink=self.cursor_blink)
        yield self.header_bar
        yield self.notice_bar
        with Container(id="main") as main:
            self.main_area = main
            yield self.process_tree
            with Container(id="side"):
                yield self.details_pane
                yield self.event_pane
        yield self.filter_bar
        self.timeline: Timeline | None = None
        if self.replaying:
            self.timeline = Timeline(id="timeline")
            yield self.timeline
        yield Footer()

    def on_mount(self) -> None:
        self._ui_ready = True
        self.process_tree.focus()
        for notice in self._startup_notices:
            self.notice_bar.add(self._notice_key(notice), notice.text)
        self._refresh_header()
        self._consume()
        self.set_interval(1.0, self._refresh_header)
        if self.replaying:
            self.set_interval(0.25, self._refresh_timeline)

    def on_resize(self) -> None:
        self.main_area.set_class(self.size.width < NARROW_BELOW, "-narrow")

    # ---------------------------------------------------------------------------------------- the source

    @work(exclusive=True, group="source")
    async def _consume(self) -> None:
        try:
            async for update in self.source.updates():
                self.apply(update)
                self.updates_seen += 1
        except Exception as error:  # a failing source is a notice on screen, not a traceback  # noqa: BLE001
            self._apply_notice(Notice(f"the source stopped: {error}", "source-error"))

    def apply(self, update: Update) -> None:
        """One Update from the source (also called directly by tests and the benchmark)."""
        if isinstance(update, Sample):
            self._apply_sample(update)
        elif isinstance(update, OomEvent):
            self._apply_event(update)
        elif isinstance(update, Notice):
            self._apply_notice(update)

    @property
    def replaying(self) -> bool:
        return self.replay is not None

    def _apply_sample(self, sample: Sample) -> None:
        if self.replay is not None and self.latest is not None and sample.time < self.latest.time:
            # Jumped back: the history and the kill list start over at the new position.
            self.history = History()
            self.event_pane.replace_all(self.replay.events_until(sample.time))
        self.history.record(sample)
        self.latest = sample
        if self.interval_s is None and self._last_sample_time is not None:
            step = sample.time - self._last_sample_time
            self._observed_interval = step if step > 0 else None
        self._last_sample_time = sample.time
        for warning in sample.warnings:
            self._apply_notice(Notice(warning, warning_key(warning)))
        if self.paused:
            self.pending += 1
            self._refresh_header()
            return
        self._show(sample)
        self._refresh_timeline()

    def _show(self, sample: Sample) -> None:
        self.view = View.of(sample)
        self.ranking = Ranking(self.view, growth=self.history.growth)
        self.samples_shown += 1
        self.rebuild()
        if self.tune_gc and self.samples_shown == 1:
            tune_gc()

    def _apply_event(self, event: OomEvent) -> None:
        # The prediction shown with a kill is the one the watcher attached (from the last Sample before the kill);
        # the Sample on screen may be newer, already without the victim, and must not stand in for it.
        self.event_pane.add(event)
        if not event.historical:
            self.flash = event
            if self._flash_timer is not None:
                self._flash_timer.stop()
            self._flash_timer = self.set_timer(FLASH_S, self._end_flash)
        self._refresh_header()

    def _end_flash(self) -> None:
        self.flash = None
        self._refresh_header()

    @staticmethod
    def _notice_key(notice: Notice) -> str:
        """Sample warnings are keyed without their numbers; a source's notices by kind and text (the live
        source gives every watcher notice the same kind)."""
        return notice.key if notice.key.startswith("sample:") else f"{notice.key}\0{notice.text}"

    def _apply_notice(self, notice: Notice) -> None:
        if means_no_root(notice.key, notice.text):
            self.no_root = True
        if self._ui_ready:
            self.notice_bar.add(self._notice_key(notice), notice.text)
        else:
            self._startup_notices.append(notice)
        self._refresh_header()

    # ------------------------------------------------------------------------------------------ painting

    def rebuild(self) -> None:
        """Rows from the View on screen and the user's state; the tree keeps its cursor by key."""
        if self.ranking is None:
            return
        self.process_tree.set_rows(visible_rows(self.ranking, self.state))
        self._refresh_header()
        self._refresh_details()

    def _refresh_header(self) -> None:
        if not self._ui_ready:
            return
        interval = self.interval_s if self.interval_s is not None else self._observed_interval
        self.header_bar.show(HeaderState(
            view=self.view, now=self.clock(), mode=self.source.mode, paused=self.paused,
            pending=self.pending, interval_s=interval, no_root=self.no_root, sort=self.state.sort.value,
            filter_text=self.state.filter_text, flash=self.flash,
        ))  # fmt: skip

    def _refresh_details(self) -> None:
        self.details_pane.show(self.process_tree.cursor_row, self.ranking, self.history)

    def on_process_tree_highlighted(self, message: ProcessTree.Highlighted) -> None:
        self._refresh_details()

    def on_process_tree_toggle_requested(self, message: ProcessTree.ToggleRequested) -> None:
        self._toggle(message.key, message.expand)

    def _toggle(self, key: RowKey, expand: bool) -> None:
        self.state.expanded[key] = expand
        self.rebuild()

    def on_process_tree_heading_clicked(self, message: ProcessTree.HeadingClicked) -> None:
        self.action_sort()

    def on_filter_bar_changed(self, message: FilterBar.Changed) -> None:
        self.state.filter_text = message.text
        self.rebuild()
        if message.done:
            self.process_tree.focus()

    def on_event_pane_chosen(self, message: EventPane.Chosen) -> None:
        self.push_screen(ExplanationScreen(message.event, message.previous))

    # ------------------------------------------------------------------------------------------- actions

    def action_help(self) -> None:
        self.push_screen(HelpScreen([text for _, text in self.notice_bar.notices]))

    def action_filter(self) -> None:
        self.filter_bar.open()

    def action_sort(self) -> None:
        self.state.sort = self.state.sort.next()
        self.rebuild()

    def _refresh_timeline(self) -> None:
        replay = self.replay
        if self.timeline is None or replay is None or not self._ui_ready:
            return
        end = self.latest.time if self.latest is not None else None
        self.timeline.show(
            position=end,
            start=replay.start_time,
            end=replay.end_time or end,
            kill_times=replay.event_times,
            playing=replay.playing,
            speed=replay.speed,
        )

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in self.REPLAY_ACTIONS and not self.replaying)

    def action_step(self, count: int) -> None:
        if self.replay is None:
            return
        self.replay.pause()
        if not self.replay.step(count):
            self.notify("start of the recording" if count < 0 else "end of the recording", timeout=2)
        self._refresh_timeline()

    def action_next_kill(self) -> None:
        if self.replay is None:
            return
        if self.replay.next_kill() is None:
            self.notify("no later OOM kill in this recording", timeout=3)
        self._refresh_timeline()

    def action_previous_kill(self) -> None:
        if self.replay is None:
            return
        if self.replay.previous_kill() is None:
            self.notify("no earlier OOM kill in this recording", timeout=3)
        self._refresh_timeline()

    def action_speed(self, direction: int) -> None:
        if self.replay is None:
            return
        if direction > 0:
            self.replay.faster()
        else:
            self.replay.slower()
        self._refresh_timeline()

    def action_goto(self) -> None:
        replay = self.replay
        if replay is None:
            return

        def jump(target: float | None) -> None:
            if target is not None:
                replay.seek(target)
                self._refresh_timeline()

        self.push_screen(GotoScreen(self.latest.time if self.latest else None, replay.start_time), jump)

    def action_pause(self) -> None:
        if self.replay is not None:  # over a recording, space plays and pauses the recording itself
            self.replay.toggle()
            self._refresh_timeline()
            return
        self.paused = not self.paused
        if not self.paused:
            self.pending = 0
            if self.latest is not None and (self.view is None or self.latest is not self.view.sample):
                self._show(self.latest)
        self._refresh_header()

    def _reveal(self, key: RowKey | None) -> bool:
        """Open every ancestor of ``key`` and put the cursor on it."""
        if key is None or self.ranking is None:
            return False
        full = build_rows(self.ranking, self.state, expand_all=True)
        if not any(row.key == key for row in full):
            return False
        for parent in ancestors(full, key):
            self.state.expanded[parent] = True
        self.rebuild()
        self.process_tree.focus()
        return self.process_tree.move_to(key)

    def action_next_victim(self) -> None:
        if self.ranking is None:
            return
        full: list[Row] = build_rows(self.ranking, self.state, expand_all=True)
        victims = victim_keys(full)
        if not victims:
            self.notify("no process is a predicted victim", timeout=3)
            return
        position = {row.key: i for i, row in enumerate(full)}
        here = position.get(self.process_tree.cursor_key, -1) if self.process_tree.cursor_key is not None else -1
        target = next((key for key in victims if position[key] > here), victims[0])
        self._reveal(target)

    def action_node_victim(self) -> None:
        victim = self.view.prediction.node.victim if self.view is not None else None
        if victim is None or not self._reveal(task_key(victim)):
            self.notify("no node-wide victim on screen", timeout=3)

    def action_focus_tree(self) -> None:
        self.process_tree.focus()

    def action_events(self) -> None:
        self.event_pane.focus_newest()

    async def action_quit(self) -> None:
        self.source.close()
        self.exit()

    def on_unmount(self) -> None:
        self.source.close()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Keys, marks and the ranking rule (?)", self.action_help)
        yield SystemCommand("Filter", "Filter rows by text (/)", self.action_filter)
        yield SystemCommand("Sort", f"Cycle the sort order, now {self.state.sort.value} (s)", self.action_sort)
        yield SystemCommand("Pause / resume", "Freeze the display; collection goes on (space)", self.action_pause)
        yield SystemCommand(
            "Expand / collapse", "Open or close the selected row (enter)", self.process_tree.action_toggle_row
        )
        yield SystemCommand("Next victim", "Jump to the next predicted victim (n)", self.action_next_victim)
        yield SystemCommand("Node-wide victim", "Jump to the node-wide OOM victim (N)", self.action_node_victim)
        yield SystemCommand("Events", "Focus the OOM kill list (e)", self.action_events)
        if self.replaying:
            yield SystemCommand("Replay: play / pause", "Play or pause the recording (space)", self.action_pause)
            yield SystemCommand("Replay: step back", "One sample back (,)", lambda: self.action_step(-1))
            yield SystemCommand("Replay: step forward", "One sample forward (.)", lambda: self.action_step(1))
            yield SystemCommand("Replay: previous kill", "Jump to the previous OOM kill ([)", self.action_previous_kill)
            yield SystemCommand("Replay: next kill", "Jump to the next OOM kill (])", self.action_next_kill)
            yield SystemCommand("Replay: go to a time", "Jump to a time (g)", self.action_goto)
            yield SystemCommand("Replay: faster / slower", "Play speed (+ / -)", lambda: self.action_speed(1))
