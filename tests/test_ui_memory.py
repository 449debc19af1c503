"""The live view's memory stays flat while the node churns (bench/bench_soak.py measures it for 30 minutes).

The tree keeps last Sample's painted lines to reuse them for unchanged rows.  It once kept them for every row
ever painted until the tree itself shrank, so on a churning node (new pods every few seconds, processes coming and
going) a thousand lines with their caches piled up: the soak saw the live view's RSS 8-16 MiB up after 5 minutes.
"""

from __future__ import annotations

from dataclasses import replace

from oomtop.model import Sample
from tests.ui_fixtures import make_app, settle, synthetic_sample, wait_for


def churned(base: Sample, tick: int) -> Sample:
    """``base`` with 40 processes replaced by new ones (new pids: new rows) at every tick."""
    tasks = list(base.tasks)
    for k in range(40):
        slot = (tick * 40 + k) % len(tasks)
        tasks[slot] = replace(tasks[slot], pid=100_000 + tick * 40 + k)
    return replace(base, tasks=tuple(tasks), monotonic=base.monotonic + tick, time=base.time + tick)


async def test_the_tree_keeps_painted_lines_only_around_the_screen() -> None:
    base = synthetic_sample(pods=30, containers=2, procs=400)
    app = make_app([base], open_cgroups=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await settle(pilot)
        tree = app.process_tree
        height = tree.size.height
        for tick in range(1, 40):
            app.source.push(churned(base, tick))
            await wait_for(lambda tick=tick: app.samples_shown > tick, pilot, f"sample {tick} applied")
            await pilot.press("pagedown")  # paint rows all over the tree, as a person scrolling would
        assert len(tree.rows) > 10 * height, "the tree must be much longer than the screen"
        assert len(tree._by_row) <= 4 * height + 64, f"{len(tree._by_row)} painted lines kept for {height} lines"
        # what is kept is still reused: an unchanged row on screen gets last Sample's very line again
        top = round(tree.scroll_y)
        kept = {key: strip for key, (_signature, strip) in tree._by_row.items()}
        app.source.push(churned(base, 39))  # the same processes again: every row unchanged
        await wait_for(lambda: app.samples_shown > 40, pilot, "the repeated sample applied")
        await pilot.pause()
        row = tree.rows[top + 5]
        assert tree.render_line(6) is kept[row.key]
