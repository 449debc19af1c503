"""The tree as a flat list of visible rows, derived from a :class:`~oomtop.report.View` and the user's state.

The UI keeps no widget per row: every Sample is turned into a new list of :class:`Row` values, keyed by what
a row *is* (pod uid, container id, cgroup path, ``(pid, start_ticks)``), and the tree widget paints only the
rows on screen.  Expansion and the cursor are held by key, so they survive any re-ranking.

The default order is the ``--once`` order, computed by the same :class:`View` methods: siblings nearest the
limit that applies to them first, processes by memcg score.  The other sort keys only reorder siblings; the
tree shape never changes.
"""

from __future__ import annotations

import functools

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from enum import Enum

from oomtop.model import Cgroup, CgroupKind, Task
from oomtop.report import View, cgroup_label
from oomtop.text import printable

RowKey = tuple[object, ...]

NODE_KEY: RowKey = ("cgroup", "/")
OTHER_KEY: RowKey = ("group", "other")


class RowKind(str, Enum):
    CGROUP = "cgroup"
    GROUP = "group"  # the synthetic "other cgroups" branch of a Kubernetes node
    TASK = "task"


class SortKey(str, Enum):
    """The orders ``s`` cycles through; KILL is the ``--once`` ranking."""

    KILL = "kill likelihood"
    USAGE = "usage"
    LIMIT = "limit"
    NAME = "name"
    GROWTH = "growth"

    def next(self) -> SortKey:
        members = list(SortKey)
        return members[(members.index(self) + 1) % len(members)]


class Row(NamedTuple):
    """One line of the tree.  ``label`` is already passed through :func:`printable`.

    A tuple, not a frozen dataclass: a Sample makes one per visible process and cgroup (1,200 on a busy node,
    ten times a second), and a tuple is built in a third of the time.
    """

    key: RowKey
    kind: RowKind
    depth: int
    label: str
    parent: RowKey | None = None
    cgroup: Cgroup | None = None
    task: Task | None = None
    expandable: bool = False
    expanded: bool = False
    matched: bool = False  # the filter text is in this row itself
    victim_of: tuple[str, ...] = ()  # names of the limited cgroups whose OOM would kill this task next
    node_victim: bool = False
    score: int | None = None  # TASK rows: memcg score against the nearest limited ancestor
    group_usage_bytes: int = 0  # GROUP rows: the members' usage summed
    group_size: int = 0


@dataclass(slots=True)
class TreeState:
    """What the user chose: survives every Sample."""

    expanded: dict[RowKey, bool] = field(default_factory=dict)
    sort: SortKey = SortKey.KILL
    filter_text: str = ""


def cgroup_key(cgroup: Cgroup) -> RowKey:
    """A pod by its uid, a container by its id, anything else by its path."""
    identity = cgroup.identity
    if identity.kind is CgroupKind.POD and identity.pod is not None:
        return ("pod", identity.pod.uid)
    if identity.container is not None and identity.kind in (
        CgroupKind.CONTAINER, CgroupKind.SANDBOX, CgroupKind.CONMON, CgroupKind.DOCKER,
    ):
        return ("container", identity.kind.value, identity.container.id)
    return ("cgroup", cgroup.path)


def task_key(task: Task) -> RowKey:
    return ("task", task.pid, task.start_ticks)


class Ranking:
    """Per-Sample lookups the rows need, computed once (the View's own helpers scan per call)."""

    def __init__(self, view: View, growth: Callable[[RowKey], float | None] | None = None) -> None:
        self.view = view
        self.growth = growth or (lambda key: None)
        victims: dict[tuple[int, int], list[str]] = {}
        for domain, verdict in view.prediction.by_domain.items():
            if verdict.victim is not None:
                victims.setdefault(verdict.victim.key, []).append(domain)
        self.victim_domains = victims
        node_victim = view.prediction.node.victim
        self.node_victim_key = node_victim.key if node_victim is not None else None
        self.has_kubepods = any(c.identity.kind is CgroupKind.KUBEPODS for c in view.sample.cgroups)

    def domain_name(self, path: str) -> str:
        """How a task's victim mark names the domain: "container", "pod", or the cgroup's label."""
        cgroup = self.view.by_path[path]
        if cgroup.identity.kind is CgroupKind.CONTAINER:
            return "container"
        if cgroup.identity.kind is CgroupKind.POD:
            return "pod"
        return printable(cgroup_label(cgroup))

    # ------------------------------------------------------------------------------------------ ordering

    def children(self, path: str, sort: SortKey) -> list[Cgroup]:
        kill_order = self.view.ordered_children(path)
        if sort is SortKey.KILL:
            return kill_order
        return sorted(kill_order, key=self._cgroup_sort_key(sort))

    def tasks(self, path: str, sort: SortKey) -> list[Task]:
        return self.order_tasks(self.view.ordered_tasks(path), sort)

    def order_tasks(self, kill_order: list[Task], sort: SortKey) -> list[Task]:
        if sort in (SortKey.KILL, SortKey.LIMIT):
            return kill_order
        if sort is SortKey.USAGE:
            return sorted(kill_order, key=lambda t: -t.rss_bytes)
        if sort is SortKey.NAME:
            return sorted(kill_order, key=lambda t: (t.comm.casefold(), t.pid))
        return sorted(kill_order, key=lambda t: -(self.growth(task_key(t)) or 0.0))

    def _cgroup_sort_key(self, sort: SortKey) -> Callable[[Cgroup], Any]:
        """Python's sort is stable: ties keep the kill-likelihood order."""
        if sort is SortKey.USAGE:
            return lambda c: -c.usage_bytes
        if sort is SortKey.LIMIT:
            def by_limit(c: Cgroup) -> tuple[bool, int]:
                limit = self.view.effective_limit(c.path)
                return (limit is None, limit or 0)
            return by_limit
        if sort is SortKey.NAME:
            return lambda c: cgroup_label(c).casefold()
        return lambda c: -(self.growth(cgroup_key(c)) or 0.0)


def _cgroup_text(cgroup: Cgroup) -> str:
    identity = cgroup.identity
    parts = [cgroup.path, cgroup_label(cgroup), identity.label]
    if identity.pod is not None:
        parts += [identity.pod.uid, identity.pod.name or "", identity.pod.namespace or ""]
    if identity.container is not None:
        parts += [identity.container.id, identity.container.name or ""]
    return "\n".join(parts).casefold()


def _task_text(task: Task) -> str:
    return f"{task.pid}\n{task.comm}\n{task.cmdline}".casefold()


@functools.lru_cache(maxsize=16384)
def _task_label(pid: int, comm: str) -> str:
    """A process row's label (comm made printable), cached: the same few thousand processes every tick."""
    return f"{pid} {printable(comm)}"


class _Builder:
    def __init__(self, ranking: Ranking, state: TreeState, expand_all: bool) -> None:
        self.ranking = ranking
        self.state = state
        self.needle = state.filter_text.casefold()
        self.expand_all = expand_all
        self.seen: set[RowKey] = set()
        self.victim_domains = ranking.victim_domains
        self.node_victim_key = ranking.node_victim_key
        self.memcg_score = ranking.view.prediction.memcg_score

    def unique(self, key: RowKey, cgroup: Cgroup) -> RowKey:
        if key in self.seen:  # two cgroups claiming one id (a nested runtime): fall back to the path
            key = ("cgroup", cgroup.path)
        self.seen.add(key)
        return key

    def is_expanded(self, key: RowKey, default: bool) -> bool:
        return self.expand_all or self.state.expanded.get(key, default)

    def task_row(self, task: Task, depth: int, parent: RowKey, matched: bool) -> Row:
        # The hottest function of a repaint (one call per process row): look-ups hoisted, labels cached.
        pid, start = task.pid, task.start_ticks
        tkey = (pid, start)
        domains = self.victim_domains.get(tkey)
        return Row(  # positional: key, kind, depth, label, parent, cgroup, task, expandable, expanded, matched, ...
            ("task", pid, start), RowKind.TASK, depth, _task_label(pid, task.comm), parent, None, task, False, False,
            matched, tuple(self.ranking.domain_name(d) for d in domains) if domains else (),
            tkey == self.node_victim_key, self.memcg_score.get(tkey),
        )

    def subtree(self, cgroup: Cgroup, depth: int, parent: RowKey | None, inherited: bool, in_other: bool) -> list[Row]:
        """This cgroup's row and, when expanded, its processes and children; [] when the filter hides it all."""
        ranking, sort = self.ranking, self.state.sort
        key = self.unique(cgroup_key(cgroup), cgroup)
        self_match = bool(self.needle) and self.needle in _cgroup_text(cgroup)
        matched = inherited or self_match or not self.needle
        tasks = ranking.tasks(cgroup.path, sort)
        kids = ranking.children(cgroup.path, sort)
        expandable = bool(tasks or kids)
        expanded = self.is_expanded(key, not in_other)
        inner: list[Row] = []
        if expanded or self.needle:
            for task in tasks:
                hit = bool(self.needle) and self.needle in _task_text(task)
                if matched or hit:
                    inner.append(self.task_row(task, depth + 1, key, hit))
            for kid in kids:
                inner.extend(self.subtree(kid, depth + 1, key, matched and bool(self.needle), in_other))
        if self.needle and not matched and not inner:
            return []
        if self.needle and any(row.matched for row in inner):
            expanded = True  # opened to show what matched below (not remembered)
        row = Row(
            key=key, kind=RowKind.CGROUP, depth=depth, parent=parent, cgroup=cgroup,
            label=printable(cgroup_label(cgroup)), expandable=expandable, expanded=expandable and expanded,
            matched=self_match,
        )
        return [row, *inner] if expanded else [row]

    def root(self, root: Cgroup) -> list[Row]:
        """The node row: its own processes, kubepods, and (on a Kubernetes node) the other cgroups grouped."""
        ranking, sort = self.ranking, self.state.sort
        key = self.unique(cgroup_key(root), root)
        self_match = bool(self.needle) and self.needle in _cgroup_text(root)
        matched = self_match or not self.needle
        tasks = ranking.tasks(root.path, sort)
        kids = ranking.children(root.path, sort)
        expanded = self.is_expanded(key, True)
        inner: list[Row] = []
        if expanded or self.needle:
            for task in tasks:
                if matched or self.needle in _task_text(task):
                    inner.append(self.task_row(task, 1, key, bool(self.needle) and self.needle in _task_text(task)))
            if ranking.has_kubepods:
                inner.extend(self.grouped(kids, key, self_match))
            else:
                for kid in kids:
                    inner.extend(self.subtree(kid, 1, key, self_match, False))
        if self.needle and any(row.matched for row in inner):
            expanded = True
        row = Row(
            key=key, kind=RowKind.CGROUP, depth=0, cgroup=root, label=printable(cgroup_label(root)),
            expandable=bool(tasks or kids), expanded=bool(tasks or kids) and expanded, matched=self_match,
        )
        if self.needle and not matched and not inner:
            return []
        return [row, *inner] if expanded else [row]

    def grouped(self, kids: list[Cgroup], parent: RowKey, inherited: bool) -> list[Row]:
        """kubepods in place, the node's other cgroups under one collapsible row where the first of them ranks."""
        others = [kid for kid in kids if kid.identity.kind is not CgroupKind.KUBEPODS]
        rows: list[Row] = []
        placed = False
        for kid in kids:
            if kid.identity.kind is CgroupKind.KUBEPODS:
                rows.extend(self.subtree(kid, 1, parent, inherited, False))
            elif not placed:
                placed = True
                rows.extend(self.other_group(others, parent, inherited))
        return rows

    def other_group(self, others: list[Cgroup], parent: RowKey, inherited: bool) -> list[Row]:
        expanded = self.is_expanded(OTHER_KEY, True)
        inner: list[Row] = []
        if expanded or self.needle:
            for kid in others:
                inner.extend(self.subtree(kid, 2, OTHER_KEY, inherited, True))
        if self.needle and not inherited and not inner:
            return []
        if self.needle and any(row.matched for row in inner):
            expanded = True
        row = Row(
            key=OTHER_KEY, kind=RowKind.GROUP, depth=1, parent=parent, label="other cgroups",
            expandable=True, expanded=expanded, group_usage_bytes=sum(c.usage_bytes for c in others),
            group_size=len(others),
        )
        return [row, *inner] if expanded else [row]


def build_rows(ranking: Ranking, state: TreeState, expand_all: bool = False) -> list[Row]:
    """The visible rows, top to bottom.  ``expand_all`` ignores collapsed state (to find hidden victims)."""
    builder = _Builder(ranking, state, expand_all)
    view = ranking.view
    sample = view.sample
    if not sample.cgroups:  # no memory hierarchy: processes only, as ``--once`` lists them
        tasks = ranking.order_tasks(sorted(sample.tasks, key=lambda t: -t.rss_bytes), state.sort)
        return [
            builder.task_row(task, 0, NODE_KEY, bool(builder.needle))
            for task in tasks
            if not builder.needle or builder.needle in _task_text(task)
        ]
    rows: list[Row] = []
    for root in (c for c in sample.cgroups if c.parent_path is None or c.parent_path not in view.by_path):
        if root.path == "/":
            rows.extend(builder.root(root))
        else:
            rows.extend(builder.subtree(root, 0, None, False, False))
    return rows


def victim_keys(rows: Iterable[Row]) -> list[RowKey]:
    """Task rows that some OOM would kill next, in display order."""
    return [row.key for row in rows if row.kind is RowKind.TASK and (row.victim_of or row.node_victim)]


def ancestors(rows: Iterable[Row], key: RowKey) -> list[RowKey]:
    """The chain of parent keys of ``key`` (nearest first) in a full (expand_all) row list."""
    parents: Mapping[RowKey, RowKey | None] = {row.key: row.parent for row in rows}
    chain: list[RowKey] = []
    parent = parents.get(key)
    while parent is not None:
        chain.append(parent)
        parent = parents.get(parent)
    return chain
