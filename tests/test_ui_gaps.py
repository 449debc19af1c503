"""Behaviours mutation testing found no test for: the "other cgroups" row's details, and paging the tree.

mutmut (issue 11) reported every mutant of ``details.group_details`` and ``ProcessTree.action_page`` as having
no test at all that runs it: the details pane of the node's "other cgroups" branch and PageUp/PageDown could
break silently.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from textual.widgets import Label

from oomtop.model import CgroupKind
from oomtop.report import View
from oomtop.ui.details import details_text
from oomtop.ui.filterbar import FilterBar
from oomtop.ui.history import History
from oomtop.ui.rows import OTHER_KEY, Ranking, TreeState, build_rows
from oomtop.ui.timeline import GotoScreen, parse_goto, timeline_text
from oomtop.ui.tree import ProcessTree
from tests.ui_fixtures import FIXED_TIME, MiB, collect, kube_host, make_app, settle, synthetic_sample, wait_for


def test_the_other_cgroups_row_says_how_many_and_how_much(tmp_path: Path) -> None:
    view = View.of(collect(kube_host(tmp_path, "v1")))
    ranking = Ranking(view)
    group = next(row for row in build_rows(ranking, TreeState()) if row.key == OTHER_KEY)
    text = details_text(group, ranking, History())
    assert text.plain == (
        "other cgroups\n2 cgroups of the node outside kubepods (system slices, Docker, plain), 450M in all"
    )
    assert group.group_usage_bytes == 450 * MiB


async def test_page_keys_move_the_cursor_by_a_screenful_and_stop_at_the_ends() -> None:
    app = make_app([synthetic_sample(pods=20, containers=2, procs=200)], open_cgroups=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        tree = app.process_tree
        page = tree.scrollable_content_region.height - 2
        assert len(tree.rows) > 3 * page, "the sample must be several screens long"
        await pilot.press("pagedown")
        await wait_for(lambda: tree.cursor_index == page, pilot, f"the cursor on row {page} after PageDown")
        await pilot.press("pagedown")
        await wait_for(lambda: tree.cursor_index == 2 * page, pilot, f"the cursor on row {2 * page}")
        await pilot.press("pageup")
        await wait_for(lambda: tree.cursor_index == page, pilot, f"the cursor back on row {page} after PageUp")
        for _ in range(3):
            await pilot.press("pageup")
        await wait_for(lambda: tree.cursor_index == 0, pilot, "the cursor on the first row (PageUp stops there)")
        for _ in range(len(tree.rows) // page + 2):
            await pilot.press("pagedown")
        last = len(tree.rows) - 1
        await wait_for(lambda: tree.cursor_index == last, pilot, "the cursor on the last row (PageDown stops there)")


async def test_home_and_end_reach_the_first_and_last_rows_and_end_scrolls_to_it() -> None:
    """mutmut: Home/End (``action_edge``) and the tree's virtual size never checked; a stale virtual size kept
    the last rows of a longer tree out of reach."""
    app = make_app([synthetic_sample(pods=3, containers=1, procs=10)], open_cgroups=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        tree = app.process_tree
        short = len(tree.rows)
        app.source.push(synthetic_sample(pods=20, containers=2, procs=200))  # the tree grows past the screen
        await wait_for(lambda: len(tree.rows) > 3 * short, pilot, "the bigger sample's rows")
        await pilot.press("end")
        last = len(tree.rows) - 1
        await wait_for(lambda: tree.cursor_index == last, pilot, "the cursor on the last row after End")
        assert tree.virtual_size.height == len(tree.rows) + 1  # the heading line and every row
        assert tree.scroll_y == tree.max_scroll_y > 0, "End must scroll the last row into view"
        await pilot.press("home")
        await wait_for(lambda: tree.cursor_index == 0 and tree.scroll_y == 0, pilot, "the first row after Home")


async def test_a_click_below_the_last_row_changes_nothing() -> None:
    app = make_app([synthetic_sample(pods=1, containers=1, procs=3)], open_cgroups=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        tree = app.process_tree
        rows = len(tree.rows)
        await pilot.press("down")
        await wait_for(lambda: tree.cursor_index == 1, pilot, "the cursor on row 1")
        assert await pilot.click(ProcessTree, offset=(5, rows + 1))  # the line just below the last row
        await pilot.pause()
        assert tree.cursor_index == 1 and len(tree.rows) == rows


async def test_escape_hides_the_filter_bar_and_gives_the_keys_back_to_the_tree() -> None:
    app = make_app([synthetic_sample(pods=2, containers=1, procs=6)])
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        bar = app.query_one(FilterBar)
        await pilot.press("slash")
        await wait_for(lambda: bar.has_class("-shown") and bar.display, pilot, "the filter bar shown")
        await pilot.press("escape")
        await wait_for(lambda: not bar.has_class("-shown"), pilot, "the filter bar hidden after Escape")
        await wait_for(lambda: app.focused is app.process_tree, pilot, "the tree focused after Escape")


def test_the_timeline_says_playing_or_paused() -> None:
    playing = timeline_text(150.0, 100.0, 200.0, [], playing=True, speed=2.0, width=120).plain
    paused = timeline_text(150.0, 100.0, 200.0, [], playing=False, speed=2.0, width=120).plain
    assert playing.startswith("▶ playing  2x") and "paused" not in playing
    assert paused.startswith("❚❚ paused  2x")


def test_goto_takes_every_form_its_prompt_names(utc: None) -> None:
    start = datetime(2026, 12, 8, 1, 0, 0, tzinfo=UTC).timestamp()
    assert parse_goto("+1h", start, start) == start + 3600
    assert parse_goto("-2m", start, start) == start - 120
    assert parse_goto("2026-12-08 03:04", start, start) == start + 2 * 3600 + 4 * 60
    assert parse_goto("2026-12-08 03:04:05", start, start) == start + 2 * 3600 + 4 * 60 + 5
    assert parse_goto("2026-12-08T03:04:05", start, start) == start + 2 * 3600 + 4 * 60 + 5
    assert parse_goto("03:04", start, start) == start + 2 * 3600 + 4 * 60
    assert parse_goto("+1d", start, start) is None and parse_goto("3 pm", start, start) is None


async def test_goto_says_when_what_was_typed_is_not_a_time() -> None:
    app = make_app([synthetic_sample(pods=1, containers=1, procs=3)])
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        app.push_screen(GotoScreen(FIXED_TIME, FIXED_TIME))
        await wait_for(lambda: isinstance(app.screen, GotoScreen), pilot, "the go-to prompt")
        await pilot.press(*"noon", "enter")
        error = app.screen.query_one("#goto-error", Label)
        await wait_for(lambda: error.has_class("-error"), pilot, "the error line")
        assert str(error.render()) == "not a time: noon"
        assert isinstance(app.screen, GotoScreen), "a bad time must keep the prompt open"


def test_the_details_of_an_oom_group_domain_name_the_group(tmp_path: Path) -> None:
    """mutmut: the victim line of a memory.oom.group domain (``line += ...`` made ``-=``, a TypeError) was never
    drawn by a test."""
    sample = collect(kube_host(tmp_path, "v2"))
    container = next(c for c in sample.cgroups if c.identity.kind is CgroupKind.CONTAINER and c.limit_bytes)
    grouped = replace(
        sample, cgroups=tuple(replace(c, oom_group=True) if c is container else c for c in sample.cgroups)
    )
    view = View.of(grouped)
    verdict = view.prediction.by_domain[container.path]
    assert verdict.group_path == container.path and verdict.victim is not None
    ranking = Ranking(view)
    row = next(
        r
        for r in build_rows(ranking, TreeState(), expand_all=True)
        if r.cgroup is not None and r.cgroup.path == container.path
    )
    text = details_text(row, ranking, History()).plain
    victim = verdict.victim
    assert f"{victim.pid} {victim.comm} (score " in text
    assert f"with all {len(verdict.group_victims)} of oom.group {container.path}" in text
