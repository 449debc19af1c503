"""Swap where it decides an OOM kill, in the details pane (issue 16).

The kernel sizes a memcg OOM domain as the limit plus the swap the cgroup may use (``mem_cgroup_get_max()``), so
one adj point weighs more than the limit alone suggests, and a task's swapped-out pages count in its points as
much as its rss.  The details pane says both: a limited cgroup's usage line shows the swap added to its limit,
and a task holding swap gets its points term by term.  Nodes without swap look as before.
"""

from __future__ import annotations

from oomtop.report import View
from oomtop.ui.details import details_text
from oomtop.ui.history import History
from oomtop.ui.rows import Ranking, RowKind, TreeState, build_rows
from tests.test_rank import GiB, MiB, cgroup, node, sample, task

CTR = "/kubepods/burstable/poda/c1"


def _rows(swap_total: int, swap_limit: int | None, swapped_pages: int):  # type: ignore[no-untyped-def]
    groups = [
        cgroup("/"),
        cgroup("/kubepods"),
        cgroup("/kubepods/burstable"),
        cgroup("/kubepods/burstable/poda"),
        cgroup(CTR, 64 * MiB, swap_limit=swap_limit),
    ]
    tasks = [task(10, CTR, rss_pages=4096, adj=500, swap_pages=swapped_pages, pgtables_bytes=8 * 4096)]
    snap = sample(groups, tasks, node(2, mem_total=4 * GiB, swap_total=swap_total))
    ranking = Ranking(View.of(snap))
    rows = build_rows(ranking, TreeState(), expand_all=True)
    ctr = next(row for row in rows if row.cgroup is not None and row.cgroup.path == CTR)
    proc = next(row for row in rows if row.kind is RowKind.TASK)
    return details_text(ctr, ranking, History()).plain, details_text(proc, ranking, History()).plain


def test_the_swap_a_limited_cgroup_may_use_is_shown_next_to_its_limit() -> None:
    ctr, _ = _rows(swap_total=1 * GiB, swap_limit=32 * MiB, swapped_pages=0)
    assert "of 64.0M (0%) + 32.0M swap" in ctr
    capped, _ = _rows(swap_total=16 * MiB, swap_limit=None, swapped_pages=0)  # no swap.max: the node's swap caps it
    assert "+ 16.0M swap" in capped


def test_no_swap_no_swap_figure() -> None:
    ctr, proc = _rows(swap_total=0, swap_limit=None, swapped_pages=0)
    usage = next(line for line in ctr.splitlines() if line.startswith("usage"))
    assert usage.endswith("of 64.0M (0%)"), usage
    assert "points" not in proc


def test_a_task_holding_swap_shows_its_points_term_by_term() -> None:
    _, proc = _rows(swap_total=1 * GiB, swap_limit=32 * MiB, swapped_pages=2048)
    # totalpages = 64 MiB + 32 MiB = 24576 pages; adj 500 x (24576 / 1000 = 24) = 12000
    # points = 4096 rss + 2048 swap + 8 page tables + 12000
    assert "points    18152 = rss 4096 + swap 2048 + page tables 8 + adj 500 x 24 (pages)" in proc
