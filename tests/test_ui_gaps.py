"""Behaviours mutation testing found no test for: the "other cgroups" row's details, and paging the tree.

mutmut (issue 11) reported every mutant of ``details.group_details`` and ``ProcessTree.action_page`` as having
no test at all that runs it: the details pane of the node's "other cgroups" branch and PageUp/PageDown could
break silently.
"""

from __future__ import annotations

from pathlib import Path

from oomtop.report import View
from oomtop.ui.details import details_text
from oomtop.ui.history import History
from oomtop.ui.rows import OTHER_KEY, Ranking, TreeState, build_rows
from tests.ui_fixtures import MiB, collect, kube_host, make_app, settle, synthetic_sample, wait_for


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
