"""The app driven as a person would, with Textual's pilot: every key, the mouse, re-ranking, pause, events."""

from __future__ import annotations

import builtins
import os
from dataclasses import replace
from pathlib import Path

import pytest

from oomtop.model import Sample
from oomtop.source import Notice
from oomtop.ui.explanation import ExplanationScreen
from oomtop.ui.help import HelpScreen
from oomtop.ui.rows import OTHER_KEY, RowKind, SortKey
from oomtop.ui.tree import ProcessTree
from tests.fakehost import FakeHost
from tests.ui_fixtures import (
    CID_DB,
    CID_WEB,
    FIXED_TIME,
    UID_DB,
    UID_WEB,
    MiB,
    collect,
    global_event,
    kill_event,
    kube_host,
    make_app,
    notice_no_root,
    settle,
)

SIZE = (160, 50)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return kube_host(tmp_path, "v1")


@pytest.fixture
def sample(host: FakeHost) -> Sample:
    return collect(host)


def labels(app) -> list[str]:  # type: ignore[no-untyped-def]
    return [row.label for row in app.process_tree.rows]


def header(app) -> str:  # type: ignore[no-untyped-def]
    return app.header_bar.render().plain


def cursor_label(app) -> str:  # type: ignore[no-untyped-def]
    row = app.process_tree.cursor_row
    return row.label if row is not None else ""


async def test_help_key_shows_the_ranking_rule(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.query_one("#help-text").render()
        plain = str(text)
        assert "nearest the limit that applies to it comes first" in plain
        assert "memcg score, highest first" in plain
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_filter_key_filters_live_keeps_on_enter_clears_on_escape(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        everything = labels(app)
        await pilot.press("slash")
        await pilot.press(*"postgres")  # an "s" typed into the filter must not cycle the sort
        await pilot.pause()
        assert app.state.sort is SortKey.KILL
        assert "3101 postgres" in labels(app) and "2201 java" not in labels(app)
        await pilot.press("enter")
        await pilot.pause()
        assert app.focused is app.process_tree and app.state.filter_text == "postgres"
        assert "filter: postgres" in header(app)
        await pilot.press("slash", "escape")
        await pilot.pause()
        assert app.state.filter_text == "" and labels(app) == everything


async def test_sort_key_cycles_every_order(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        seen = []
        for _ in SortKey:
            seen.append(app.state.sort)
            assert f"sort: {app.state.sort.value}" in header(app)
            await pilot.press("s")
            await pilot.pause()
        assert seen == list(SortKey) and app.state.sort is SortKey.KILL
        await pilot.press("s")  # usage: the bigger Burstable pod first
        await pilot.pause()
        rows = labels(app)
        assert rows.index("shop/web-0") < rows.index("data/postgres-0")


async def test_space_pauses_the_display_while_collection_goes_on(host: FakeHost, sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("space")
        later = replace(
            sample,
            time=FIXED_TIME + 1,
            monotonic=sample.monotonic + 1,
            seq=sample.seq + 1,
            cgroups=tuple(replace(c, usage_bytes=c.usage_bytes + MiB) for c in sample.cgroups),
        )
        app.source.push(later)
        app.source.push(replace(later, time=FIXED_TIME + 2, monotonic=sample.monotonic + 2))
        await settle(pilot, 3)
        assert app.paused and app.pending == 2
        assert "PAUSED · 2 pending" in header(app)
        assert app.view.sample is sample  # the display is frozen...
        assert app.latest is not sample and len(app.history.values(("cgroup", "/"))) == 3  # ...collection is not
        await pilot.press("space")
        await pilot.pause()
        assert not app.paused and app.view.sample is app.latest and "PAUSED" not in header(app)


async def test_enter_right_left_expand_and_collapse(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.process_tree
        assert tree.move_to(("container", "container", CID_WEB))
        await pilot.press("left")  # open row: collapse it
        await pilot.pause()
        assert "2201 java" not in labels(app) and tree.cursor_row.key == ("container", "container", CID_WEB)
        await pilot.press("left")  # closed row: step out to the pod
        await pilot.pause()
        assert tree.cursor_row.key == ("pod", UID_WEB)
        await pilot.press("enter")  # toggle: the pod closes
        await pilot.pause()
        assert f"app ({CID_WEB[:12]})" not in labels(app)
        await pilot.press("enter", "right")  # open again, then step in (each key sees the last one's effect)
        await pilot.pause()
        assert cursor_label(app) == f"app ({CID_WEB[:12]})"
        await pilot.press("right")  # the app container was left closed: → opens it
        await pilot.pause()
        assert "2201 java" in labels(app)
        await pilot.press("down", "down")
        await pilot.pause()
        assert cursor_label(app) == "2202 log-shipper"


async def test_n_jumps_through_the_victims_and_N_to_the_node_victim(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("n")
        await pilot.pause()
        assert cursor_label(app) == "5101 redis-server"  # the Guaranteed pod ranks first (78 % of its limit)
        await pilot.press("n")
        await pilot.pause()
        assert cursor_label(app) == "2201 java"
        await pilot.press("N")
        await pilot.pause()
        assert cursor_label(app) == "4101 python3"
        app.process_tree.move_to(("cgroup", "/kubepods"))
        await pilot.press("left", "home")  # close kubepods: every victim is hidden now
        await pilot.pause()
        assert "2201 java" not in labels(app)
        await pilot.press("n")
        await pilot.pause()
        assert cursor_label(app) == "5101 redis-server" and "2201 java" in labels(app)  # revealed


@pytest.mark.usefixtures("utc")
async def test_e_focuses_the_kills_and_enter_explains_one(sample: Sample) -> None:
    app = make_app([sample, kill_event(sample, historical=True), global_event()])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert [e.kind for e in app.event_pane.events] == ["global", "memcg"]  # newest first
        await pilot.press("e")
        await pilot.pause()
        assert app.focused is app.event_pane.option_list
        await pilot.press("down", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ExplanationScreen) and app.screen.event.kind == "memcg"
        verdict = str(app.screen.query_one("#explain-verdict").render())
        summary = str(app.screen.query_one("#explain-summary").render())
        assert "yes, the victim was the kernel's top candidate" in verdict
        assert "yes: pid 2201 was oomtop's predicted next victim" in summary
        ranking = app.screen.query_one("#explain-ranking")
        assert ranking is not None
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ExplanationScreen)
        await pilot.press("escape")  # and back to the tree
        await pilot.pause()
        assert app.focused is app.process_tree


async def test_q_quits_and_closes_the_source(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0
    assert app.source._closed.is_set()


async def test_command_palette_lists_every_key_and_runs_them(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        assert {
            "Help",
            "Filter",
            "Sort",
            "Pause / resume",
            "Expand / collapse",
            "Next victim",
            "Node-wide victim",
            "Events",
            "Quit",
            "Theme",
        } <= titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Next victim")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert cursor_label(app) == "5101 redis-server"


async def test_mouse_selects_toggles_and_sorts(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.process_tree
        index = next(i for i, row in enumerate(tree.rows) if row.key == ("pod", UID_DB))
        await pilot.click(ProcessTree, offset=(40, index + 1))  # +1: the heading line
        await pilot.pause()
        assert tree.cursor_row.key == ("pod", UID_DB)
        row = tree.cursor_row
        await pilot.click(ProcessTree, offset=(2 + 2 * row.depth, index + 1))  # on its ▾
        await pilot.pause()
        assert "3101 postgres" not in labels(app)
        await pilot.click(ProcessTree, offset=(40, index + 1), times=2)  # double click toggles too
        await pilot.pause()
        assert "3101 postgres" in labels(app)
        await pilot.click(ProcessTree, offset=(5, 0))  # the heading cycles the sort
        await pilot.pause()
        assert app.state.sort is SortKey.USAGE
        assert tree.cursor_row.key == ("pod", UID_DB)


async def test_cursor_and_expansion_survive_a_reranking(tmp_path: Path, host: FakeHost, sample: Sample) -> None:
    """Two Samples with the Burstable pods' order flipped: same key under the cursor, same rows closed."""
    db = f"/kubepods/burstable/pod{UID_DB}"
    host.add_cgroup(db, usage=1990 * MiB, limit=2 * 1024 * MiB)  # postgres-0 now at 97 % of its limit
    host.add_cgroup(f"{db}/{CID_DB}", usage=1980 * MiB, limit=2 * 1024 * MiB, inactive_file=10 * MiB)
    flipped = collect(host, at=FIXED_TIME + 1)
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        tree = app.process_tree
        order = labels(app)
        assert order.index("shop/web-0") < order.index("data/postgres-0")
        tree.move_to(("pod", UID_WEB))
        await pilot.press("enter")  # close shop/web-0
        await pilot.pause()
        tree.move_to(("container", "container", CID_DB))
        await pilot.pause()
        before = tree.cursor_index
        app.source.push(flipped)
        await settle(pilot, 2)
        order = labels(app)
        assert order.index("data/postgres-0") < order.index("shop/web-0")  # re-ranked
        assert tree.cursor_row.key == ("container", "container", CID_DB)  # the cursor followed its key
        assert tree.cursor_index != before
        web = tree.row_for(("pod", UID_WEB))
        assert web is not None and not web.expanded and "2201 java" not in order  # still closed
        assert tree.row_for(OTHER_KEY).expanded  # type: ignore[union-attr]
        details = str(app.details_pane.query_one("#details-text").render())
        assert f"postgres ({CID_DB[:12]})" in details and "97%" in details


async def test_a_vanished_row_leaves_the_cursor_on_its_parent(sample: Sample) -> None:
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.process_tree.move_to(("task", 2202, next(t.start_ticks for t in sample.tasks if t.pid == 2202)))
        gone = replace(sample, tasks=tuple(t for t in sample.tasks if t.pid != 2202), seq=99)
        app.source.push(gone)
        await settle(pilot, 2)
        assert app.process_tree.cursor_row.key == ("container", "container", CID_WEB)


@pytest.mark.usefixtures("utc")
async def test_a_kill_flashes_in_the_header_and_is_listed(sample: Sample) -> None:
    app = make_app([sample, kill_event(sample, historical=True)])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "OOM KILL" not in header(app)  # a kill from before start is listed, not flashed
        app.source.push(kill_event(sample, predicted=2202, at=FIXED_TIME))
        await settle(pilot, 3)
        assert "OOM KILL 22:13:20 shop/web-0 app: pid 2201 java" in header(app)
        assert len(app.event_pane.events) == 2 and not app.event_pane.events[0].historical
        app._end_flash()
        assert "OOM KILL" not in header(app)


async def test_no_limit_is_said_plainly_and_no_root_is_marked_once(sample: Sample) -> None:
    app = make_app([notice_no_root(), sample, notice_no_root(), Notice("something else", "other")])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert "NO ROOT" in header(app)
        assert [text for _, text in app.notice_bar.notices] == [notice_no_root().text, "something else"]
        tree = app.process_tree
        row = tree.row_for(("container", "container", "6c" * 32))
        index = tree.rows.index(row)
        line = "".join(segment.text for segment in tree.render_line(index + 1))
        assert "no limit" in line and "%" not in line


THEMES = ("light", "high-contrast", "colour-blind", "textual-dark", "dark")


def painted(tree: ProcessTree) -> list[list[tuple[str, str]]]:
    """Every line of the tree as (text, style) segments: what a terminal would show, colours included."""
    height = tree.scrollable_content_region.height
    return [[(seg.text, str(seg.style)) for seg in tree.render_line(y)] for y in range(height)]


async def _painted_from_start(sample: Sample, theme: str) -> list[list[tuple[str, str]]]:
    app = make_app([sample], theme=theme)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        return painted(app.process_tree)


async def test_themes_switch_at_run_time(sample: Sample) -> None:
    """After a switch at run time the tree paints exactly as an app started in that theme: no colour of the
    theme before survives in the tree's caches (and the themes do differ, so the comparison means something)."""
    expected = {name: await _painted_from_start(sample, name) for name in THEMES}
    assert len({repr(lines) for lines in expected.values()}) == len(THEMES), "two themes paint the tree alike"
    app = make_app([sample])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for name in THEMES:
            app.theme = name
            await pilot.pause()
            lines = painted(app.process_tree)
            assert (
                lines[1] and sum(len(text) for text, _ in lines[1]) == app.process_tree.scrollable_content_region.width
            )
            for y, (got, want) in enumerate(zip(lines, expected[name], strict=True)):
                assert got == want, f"after switching to {name}, tree line {y} keeps another theme's styles"


async def test_the_ui_never_opens_sys_or_proc(sample: Sample, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    app = make_app([sample, kill_event(sample)])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        for key in ("n", "e", "enter", "escape", "question_mark", "escape", "s", "space", "space"):
            await pilot.press(key)
        await pilot.pause()
    assert not [path for path in opened if path.startswith(("/sys", "/proc", "/dev/kmsg"))]


async def test_processes_only_when_there_is_no_memory_hierarchy(sample: Sample) -> None:
    bare = replace(sample, cgroups=(), warnings=("no cgroup hierarchy with the memory controller was found",))
    app = make_app([bare])
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        rows = app.process_tree.rows
        assert len(rows) == len(bare.tasks) > 0 and {row.kind for row in rows} == {RowKind.TASK}
        assert app.process_tree.rows[0].label == "2201 java"  # biggest rss first
        assert app.notice_bar.notices[0][1].startswith("no cgroup hierarchy")


async def test_a_repeated_warning_is_one_notice_that_keeps_its_latest_figure(sample: Sample) -> None:
    first = replace(sample, warnings=("3 processes could not be read from /proc (permission denied)",))
    second = replace(sample, warnings=("5 processes could not be read from /proc (permission denied)",), seq=2)
    app = make_app([first, second, second])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert [text for _, text in app.notice_bar.notices] == [second.warnings[0]]
        assert "NO ROOT" in header(app)


async def test_a_kill_right_after_one_in_its_domain_is_explained_as_the_exit_race(sample: Sample) -> None:
    """Two kills 10 ms apart in one pod (a real 6.18 log): the newer one's explanation names the race."""
    from oomtop.collect.kmsg import parse_log

    first, second = parse_log((Path(__file__).parent / "data" / "exit_race_6.18.dmesg").read_bytes())
    app = make_app([sample, first, second])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        listing = app.event_pane.option_list
        lines = [str(listing.get_option_at_index(i).prompt) for i in range(listing.option_count)]
        assert lines[0].endswith("exit race: 10 ms after 10196") and "exit race" not in lines[1]
        await pilot.press("e", "enter")  # the newest: the second kill
        await pilot.pause()
        assert isinstance(app.screen, ExplanationScreen) and app.screen.event.victim.pid == 10205
        verdict = str(app.screen.query_one("#explain-verdict").render())
        assert "10 ms after this domain's kill of pid 10196" in verdict and "MMF_OOM_SKIP" in verdict
        await pilot.press("escape", "down", "enter")  # the first kill: no earlier one in its domain
        await pilot.pause()
        assert isinstance(app.screen, ExplanationScreen) and app.screen.event.victim.pid == 10196
        assert "MMF_OOM_SKIP" not in str(app.screen.query_one("#explain-verdict").render())


async def test_a_kill_keeps_the_watchers_prediction(sample: Sample) -> None:
    """The prediction shown with a kill is the one the watcher attached (the last Sample before the kill): the
    Sample on screen, newer and predicting otherwise, never stands in for it, nor fills in a missing one."""
    screen_says = 2201  # what this Sample predicts for the app container (java)
    watcher_said = kill_event(sample, predicted=2202)
    unknown = global_event(predicted=None)
    app = make_app([sample, watcher_said, unknown])
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.view is not None and app.view.prediction.node.victim is not None
        verdict = next(v for path, v in app.view.prediction.by_domain.items() if path.endswith(CID_WEB))
        assert verdict.victim is not None and verdict.victim.pid == screen_says
        shown = {event.kind: event.predicted_victim_pid for event in app.event_pane.events}
        assert shown == {"memcg": 2202, "global": None}
