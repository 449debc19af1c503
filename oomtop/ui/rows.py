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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple, overload

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
    open_by_default: bool = False  # every cgroup starts expanded, "other cgroups" too (the lab's view)


def cgroup_key(cgroup: Cgroup) -> RowKey:
    """A pod by its uid, a container by its id, anything else by its path."""
    identity = cgroup.identity
    if identity.kind is CgroupKind.POD and identity.pod is not None:
        return ("pod", identity.pod.uid)
    if identity.container is not None and identity.kind in (
        CgroupKind.CONTAINER,
        CgroupKind.SANDBOX,
        CgroupKind.CONMON,
        CgroupKind.DOCKER,
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
        kubepods = [c.path for c in view.sample.cgroups if c.identity.kind is CgroupKind.KUBEPODS]
        self.has_kubepods = bool(kubepods)
        # A kubepods below the root (kubelet in a container, a nested runtime) keeps its ancestors out of
        # "other cgroups": the pods stay in plain sight.
        self.holds_kubepods = frozenset(
            path[:at] for path in kubepods for at in range(1, len(path) + 1) if at == len(path) or path[at] == "/"
        )

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


#: a process row not built yet: (task, depth, parent key, matched)
_Pending = tuple[Task, int, RowKey, bool]


_SLOT = Row(("slot",), RowKind.CGROUP, 0, "")  # where a cgroup's row goes once its inner rows are known


class _Builder:
    """Walks the View once, appending rows in display order to ``out``.

    Process rows (the bulk: a thousand on a busy node) are appended as :data:`_Pending` tuples and become
    :class:`Row` values only when something looks at them (:class:`Rows`): the tree paints fifty.
    """

    def __init__(self, ranking: Ranking, state: TreeState, expand_all: bool) -> None:
        self.ranking = ranking
        self.state = state
        self.needle = state.filter_text.casefold()
        self.expand_all = expand_all
        self.seen: set[RowKey] = set()
        self.victim_domains = ranking.victim_domains
        self.node_victim_key = ranking.node_victim_key
        self.memcg_score = ranking.view.prediction.memcg_score
        self.out: list[Row | _Pending] = []
        self.hits = 0  # rows in ``out`` that match the filter themselves

    def unique(self, key: RowKey, cgroup: Cgroup) -> RowKey:
        if key in self.seen:  # two cgroups claiming one id (a nested runtime): fall back to the path
            key = ("cgroup", cgroup.path)
        self.seen.add(key)
        return key

    def is_expanded(self, key: RowKey, default: bool) -> bool:
        return self.expand_all or self.state.expanded.get(key, default or self.state.open_by_default)

    def task_row(self, task: Task, depth: int, parent: RowKey, matched: bool) -> Row:
        pid, start = task.pid, task.start_ticks
        tkey = (pid, start)
        domains = self.victim_domains.get(tkey)
        return Row(  # positional: key, kind, depth, label, parent, cgroup, task, expandable, expanded, matched, ...
            ("task", pid, start),
            RowKind.TASK,
            depth,
            _task_label(pid, task.comm),
            parent,
            None,
            task,
            False,
            False,
            matched,
            tuple(self.ranking.domain_name(d) for d in domains) if domains else (),
            tkey == self.node_victim_key,
            self.memcg_score.get(tkey),
        )

    def built(self, item: Row | _Pending) -> Row:
        return item if type(item) is Row else self.task_row(*item)

    def add_tasks(self, tasks: list[Task], depth: int, parent: RowKey, matched: bool) -> None:
        """The processes of one cgroup (those the filter keeps), pending."""
        out, needle = self.out, self.needle
        if not needle:
            out.extend([(task, depth, parent, False) for task in tasks])
            return
        for task in tasks:
            hit = needle in _task_text(task)
            if matched or hit:
                out.append((task, depth, parent, hit))
                self.hits += hit

    def close(self, at: int, row: Row) -> None:
        """Put a cgroup's own row at ``at``; without expansion its rows below go again."""
        self.out[at] = row
        self.hits += row.matched
        if not row.expanded:
            del self.out[at + 1 :]

    def subtree(self, cgroup: Cgroup, depth: int, parent: RowKey | None, inherited: bool, in_other: bool) -> None:
        """This cgroup's row and, when expanded, its processes and children; nothing when the filter hides it all."""
        ranking, sort, needle, out = self.ranking, self.state.sort, self.needle, self.out
        key = self.unique(cgroup_key(cgroup), cgroup)
        self_match = bool(needle) and needle in _cgroup_text(cgroup)
        matched = inherited or self_match or not needle
        tasks = ranking.tasks(cgroup.path, sort)
        kids = ranking.children(cgroup.path, sort)
        expandable = bool(tasks or kids)
        expanded = self.is_expanded(key, not in_other)
        at, hits_before = len(out), self.hits
        out.append(_SLOT)  # this cgroup's row, once its inner rows are known: close() puts it here
        if expanded or needle:
            self.add_tasks(tasks, depth + 1, key, matched)
            for kid in kids:
                self.subtree(kid, depth + 1, key, matched and bool(needle), in_other)
        if needle and not matched and len(out) == at + 1:
            del out[at:]
            return
        if needle and self.hits > hits_before:
            expanded = True  # opened to show what matched below (not remembered)
        self.close(
            at,
            Row(
                key=key,
                kind=RowKind.CGROUP,
                depth=depth,
                parent=parent,
                cgroup=cgroup,
                label=printable(cgroup_label(cgroup)),
                expandable=expandable,
                expanded=expandable and expanded,
                matched=self_match,
            ),
        )

    def root(self, root: Cgroup) -> None:
        """The node row: its own processes, kubepods, and (on a Kubernetes node) the other cgroups grouped."""
        ranking, sort, needle, out = self.ranking, self.state.sort, self.needle, self.out
        key = self.unique(cgroup_key(root), root)
        self_match = bool(needle) and needle in _cgroup_text(root)
        matched = self_match or not needle
        tasks = ranking.tasks(root.path, sort)
        kids = ranking.children(root.path, sort)
        expanded = self.is_expanded(key, True)
        at, hits_before = len(out), self.hits
        out.append(_SLOT)  # this row, once its inner rows are known: close() puts it here
        if expanded or needle:
            self.add_tasks(tasks, 1, key, matched)
            if ranking.has_kubepods:
                self.grouped(kids, key, self_match)
            else:
                for kid in kids:
                    self.subtree(kid, 1, key, self_match, False)
        if needle and self.hits > hits_before:
            expanded = True
        if needle and not matched and len(out) == at + 1:
            del out[at:]
            return
        self.close(
            at,
            Row(
                key=key,
                kind=RowKind.CGROUP,
                depth=0,
                cgroup=root,
                label=printable(cgroup_label(root)),
                expandable=bool(tasks or kids),
                expanded=bool(tasks or kids) and expanded,
                matched=self_match,
            ),
        )

    def grouped(self, kids: list[Cgroup], parent: RowKey, inherited: bool) -> None:
        """kubepods in place, the node's other cgroups under one collapsible row where the first of them ranks."""
        holds = self.ranking.holds_kubepods
        others = [kid for kid in kids if kid.path not in holds]
        placed = False
        for kid in kids:
            if kid.path in holds:
                self.subtree(kid, 1, parent, inherited, False)
            elif not placed:
                placed = True
                self.other_group(others, parent, inherited)

    def other_group(self, others: list[Cgroup], parent: RowKey, inherited: bool) -> None:
        needle, out = self.needle, self.out
        expanded = self.is_expanded(OTHER_KEY, True)
        at, hits_before = len(out), self.hits
        out.append(_SLOT)  # this row, once its inner rows are known: close() puts it here
        if expanded or needle:
            for kid in others:
                self.subtree(kid, 2, OTHER_KEY, inherited, True)
        if needle and not inherited and len(out) == at + 1:
            del out[at:]
            return
        if needle and self.hits > hits_before:
            expanded = True
        self.close(
            at,
            Row(
                key=OTHER_KEY,
                kind=RowKind.GROUP,
                depth=1,
                parent=parent,
                label="other cgroups",
                expandable=True,
                expanded=expanded,
                group_usage_bytes=sum(c.usage_bytes for c in others),
                group_size=len(others),
            ),
        )


class Rows(Sequence[Row]):
    """The visible rows, top to bottom; a process row is built the first time it is looked at.

    Indexing, iteration and :meth:`keys` (every row's key, without building the rows) are what the tree
    needs; the list is never changed after it is made.
    """

    __slots__ = ("_builder", "_items", "_keys")

    def __init__(self, items: list[Row | _Pending], builder: _Builder | None = None) -> None:
        self._items = items
        self._builder = builder
        self._keys: list[RowKey] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._items)))]
        item = self._items[index]
        if type(item) is not Row:
            assert self._builder is not None
            item = self._items[index] = self._builder.built(item)
        return item

    def __iter__(self) -> Iterator[Row]:
        for index in range(len(self._items)):
            yield self[index]

    def keys(self) -> list[RowKey]:
        if self._keys is None:
            self._keys = [
                item.key if type(item) is Row else ("task", item[0].pid, item[0].start_ticks)  # type: ignore[union-attr]  # mypy leaves Row in the else of type(item) is Row
                for item in self._items
            ]
        return self._keys


def visible_rows(ranking: Ranking, state: TreeState, expand_all: bool = False) -> Rows:
    """The visible rows, top to bottom, process rows built on demand.  ``expand_all`` ignores collapsed
    state (to find hidden victims)."""
    builder = _Builder(ranking, state, expand_all)
    view = ranking.view
    sample = view.sample
    if not sample.cgroups:  # no memory hierarchy: processes only, as ``--once`` lists them
        tasks = ranking.order_tasks(sorted(sample.tasks, key=lambda t: -t.rss_bytes), state.sort)
        for task in tasks:
            if not builder.needle or builder.needle in _task_text(task):
                builder.out.append((task, 0, NODE_KEY, bool(builder.needle)))
        return Rows(builder.out, builder)
    for root in (c for c in sample.cgroups if c.parent_path is None or c.parent_path not in view.by_path):
        if root.path == "/":
            builder.root(root)
        else:
            builder.subtree(root, 0, None, False, False)
    return Rows(builder.out, builder)


def build_rows(ranking: Ranking, state: TreeState, expand_all: bool = False) -> list[Row]:
    """:func:`visible_rows`, every row built."""
    return list(visible_rows(ranking, state, expand_all))


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
