"""Every sort key orders every group of siblings as its help text says, and only the siblings.

Found by mutation testing: reversing the usage order, sorting processes by name when asked for usage, or
ignoring the limit in the limit order all passed the suite, which only checked two pods and one level.  Here
the orders are checked on every sibling group of a 1,000-process node against keys computed by the test from
the rows' own data, ties keeping the kill-likelihood order (Python's sort is stable, and the UI promises it).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from oomtop.model import Cgroup, Sample, Task
from oomtop.report import View, cgroup_label
from oomtop.ui.rows import Ranking, Row, RowKey, RowKind, SortKey, TreeState, build_rows, cgroup_key, task_key
from tests.ui_fixtures import synthetic_sample


def growth_of(key: RowKey) -> float | None:
    """A made-up growth rate per row (bytes/s), fixed per key, some rows unknown (None) and some shrinking."""
    spread = zlib.crc32(repr(key).encode()) % 1000
    return None if spread % 7 == 0 else float(spread - 300)


def siblings(rows: list[Row]) -> dict[tuple[RowKey | None, RowKind], list[Row]]:
    """The rows of each parent, cgroups and processes apart, in display order."""
    groups: dict[tuple[RowKey | None, RowKind], list[Row]] = {}
    for row in rows:
        if row.kind is not RowKind.GROUP:
            groups.setdefault((row.parent, row.kind), []).append(row)
    return groups


def cgroup_sort_key(view: View, sort: SortKey) -> Callable[[Cgroup], Any]:
    if sort is SortKey.USAGE:
        return lambda c: -c.usage_bytes  # the biggest first
    if sort is SortKey.LIMIT:
        # the tightest limit that applies first; cgroups under no limit at all last
        return lambda c: (view.effective_limit(c.path) is None, view.effective_limit(c.path) or 0)
    if sort is SortKey.NAME:
        return lambda c: cgroup_label(c).casefold()
    return lambda c: -(growth_of(cgroup_key(c)) or 0.0)  # the fastest growing first; unknown counts as 0


def task_sort_key(sort: SortKey) -> Callable[[Task], Any] | None:
    if sort is SortKey.USAGE:
        return lambda t: -t.rss_bytes
    if sort is SortKey.NAME:
        return lambda t: (t.comm.casefold(), t.pid)
    if sort is SortKey.GROWTH:
        return lambda t: -(growth_of(task_key(t)) or 0.0)
    return None  # KILL and LIMIT: processes keep the kill order (they share their cgroup's limit)


@pytest.fixture(scope="module")
def sample() -> Sample:
    """A node where the kill order is not the usage order: processes carry different oom_score_adj values."""
    base = synthetic_sample(tick=3, pods=12, containers=3, procs=300)
    return replace(base, tasks=tuple(replace(task, oom_score_adj=(task.pid * 37) % 5 * 150) for task in base.tasks))


@pytest.mark.parametrize("sort", [SortKey.USAGE, SortKey.LIMIT, SortKey.NAME, SortKey.GROWTH])
def test_each_sort_key_orders_every_sibling_group(sample: Sample, sort: SortKey) -> None:
    view = View.of(sample)
    kill_rows = build_rows(Ranking(view, growth_of), TreeState(sort=SortKey.KILL), expand_all=True)
    sorted_rows = build_rows(Ranking(view, growth_of), TreeState(sort=sort), expand_all=True)
    kill_groups, sorted_groups = siblings(list(kill_rows)), siblings(list(sorted_rows))
    assert kill_groups.keys() == sorted_groups.keys(), "a sort key changed the tree's shape"
    reordered = {RowKind.CGROUP: 0, RowKind.TASK: 0}
    for group, in_kill_order in kill_groups.items():
        _parent, kind = group
        shown = [row.key for row in sorted_groups[group]]
        if kind is RowKind.CGROUP:
            by = cgroup_sort_key(view, sort)
            expected = [row.key for row in sorted(in_kill_order, key=lambda row: by(row.cgroup))]
        else:
            task_by = task_sort_key(sort)
            expected = [
                row.key for row in (sorted(in_kill_order, key=lambda r: task_by(r.task)) if task_by else in_kill_order)
            ]
        assert shown == expected, f"{sort.value}: the children of {group[0]} are out of order"
        reordered[kind] += shown != [row.key for row in in_kill_order]
    # the check above means something only if the order really differs from the kill order somewhere
    assert reordered[RowKind.CGROUP] >= 2, f"{sort.value}: the sample cannot tell cgroup orders apart"
    if task_sort_key(sort) is not None:
        assert reordered[RowKind.TASK] >= 10, f"{sort.value}: the sample cannot tell process orders apart"


def test_limit_order_puts_unlimited_cgroups_last_and_keeps_processes_in_kill_order(sample: Sample) -> None:
    view = View.of(sample)
    rows = build_rows(Ranking(view), TreeState(sort=SortKey.LIMIT), expand_all=True)
    for (_parent, kind), group in siblings(list(rows)).items():
        if kind is RowKind.CGROUP:
            limits = [view.effective_limit(row.cgroup.path) for row in group]  # type: ignore[union-attr]
            limited = [limit for limit in limits if limit is not None]
            assert limits == limited + [None] * (len(limits) - len(limited))
            assert limited == sorted(limited)
        else:
            pids = [row.task.pid for row in group]  # type: ignore[union-attr]
            path = group[0].task.cgroup  # type: ignore[union-attr]
            assert pids == [task.pid for task in view.ordered_tasks(path)]


def test_rows_build_when_no_process_is_eligible_on_the_node(sample: Sample) -> None:
    """No node-wide victim (every process exempt): the rows still build, and no row is marked."""
    exempt = replace(sample, tasks=tuple(replace(task, oom_score_adj=-1000) for task in sample.tasks))
    view = View.of(exempt)
    assert view.prediction.node.victim is None
    rows = list(build_rows(Ranking(view), TreeState(), expand_all=True))
    assert any(row.kind is RowKind.TASK for row in rows)
    assert not any(row.node_victim or row.victim_of for row in rows)
