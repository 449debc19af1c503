"""The kernel's OOM victim choice, modelled as pure functions of a Sample (mm/oom_kill.c, mm/memcontrol.c).

``/proc/<pid>/oom_score`` ranks tasks for a node-wide OOM only.  When a container hits its limit the kernel
scores every process of that cgroup *and its descendants* against the cgroup's own size, where
``oom_score_adj`` weighs far more; these functions redo that arithmetic exactly, in C integer semantics, so
the predicted victim is the one the kernel will pick.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple, TypeVar

from oomtop.model import Cgroup, QosClass, Sample, Task

_T = TypeVar("_T")

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000

KUBELET_GUARANTEED_ADJ = -997
KUBELET_SANDBOX_ADJ = -998
KUBELET_BESTEFFORT_ADJ = 1000
KUBELET_BURSTABLE_MIN_ADJ = 3  # 1000 + Guaranteed's -997 (2 while Guaranteed was -998, before ~1.15)
KUBELET_BURSTABLE_MAX_ADJ = 999


def c_div(numerator: int, denominator: int) -> int:
    """Integer division that truncates toward zero, as C's ``/`` does (Python's ``//`` floors)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def base_points(task: Task, page_size: int) -> int | None:
    """``oom_badness()`` before the adj bias: rss + swap entries + page-table pages; None when never picked."""
    if task.oom_score_adj == OOM_SCORE_ADJ_MIN or not task.has_memory or task.pid == 1:
        return None
    return (task.rss_bytes + task.swap_bytes) // page_size + task.pgtables_bytes // page_size


def badness_points(task: Task, totalpages: int, page_size: int) -> int | None:
    """``oom_badness()``: pages the task would free plus its adj bias; None when the kernel never picks it.

    points = rss + swap entries + page-table pages, then ``adj * (totalpages / 1000)`` is added.
    """
    points = base_points(task, page_size)
    return None if points is None else points + task.oom_score_adj * (totalpages // 1000)


def normalised_score(points: int, totalpages: int) -> int:
    """The score the kernel logs ("score N") and oomtop shows: points * 1000 / totalpages of the OOM domain."""
    return c_div(points * 1000, totalpages) if totalpages > 0 else 0


def proc_oom_score(points: int | None, totalpages: int) -> int:
    """What /proc/<pid>/oom_score reads on kernels 5.9+ (0..2000), from badness against the global domain."""
    if points is None or totalpages <= 0:
        return 0
    return c_div((1000 + c_div(points * 1000, totalpages)) * 2, 3)


def swap_allowance_bytes(cgroup: Cgroup, node_swap_total_bytes: int) -> int:
    """The swap ``mem_cgroup_get_max()`` adds to the cgroup's memory limit: its own swap limit (v2
    ``memory.swap.max``, v1 ``memsw.limit - limit``; not its ancestors'), capped by the node's swap.

    The kernel adds it only while swappiness is not 0 (v2: ``vm.swappiness``; v1: the cgroup's own); a Sample does
    not carry swappiness, so a node run with ``vm.swappiness = 0`` and swap on is modelled with the swap added.
    """
    if cgroup.swap_limit_bytes is not None:
        return min(cgroup.swap_limit_bytes, node_swap_total_bytes)
    return node_swap_total_bytes  # unlimited swap allowance: capped by what the node has


def memcg_totalpages(cgroup: Cgroup, node_swap_total_bytes: int, page_size: int) -> int | None:
    """``mem_cgroup_get_max()``: the cgroup's own limit plus the swap it may use, capped by the node's swap."""
    if cgroup.limit_bytes is None:
        return None
    swap = swap_allowance_bytes(cgroup, node_swap_total_bytes)
    # constrained_alloc(): "totalpages = mem_cgroup_get_max(memcg) ?: 1" -- never zero.
    return max(1, cgroup.limit_bytes // page_size + swap // page_size)


def global_totalpages(sample: Sample) -> int:
    """The node's OOM domain: RAM plus swap, in pages (``totalram_pages() + total_swap_pages``)."""
    node = sample.node
    return max(1, node.mem_total_bytes // node.page_size + node.swap_total_bytes // node.page_size)


class Candidate(NamedTuple):
    """A task as the kernel's scan sees it for one OOM domain (a tuple: a Sample makes thousands of them)."""

    task: Task
    points: int
    score: int  # points * 1000 / totalpages of this domain


class Eligible(NamedTuple):
    """A task the kernel may pick, with the part of its badness that is the same in every domain."""

    task: Task
    base: int  # rss + swap + page-table pages
    adj: int  # oom_score_adj


@dataclass(frozen=True, slots=True)
class DomainVerdict:
    """What the kernel would do if this domain (a limited cgroup, or the node) ran out now."""

    domain: str  # cgroup path, or "" for the node-wide (global) OOM
    totalpages: int
    victim: Task | None  # None when nothing is killable (the kernel then reports no eligible task)
    group_path: str | None  # the memory.oom.group cgroup whose every task dies with the victim
    group_victims: tuple[Task, ...]  # everything killed: the victim alone, or the whole oom.group
    eligible: Sequence[Eligible] = field(default=(), compare=False, repr=False)  # in the kernel's scan order
    _ranked: tuple[Candidate, ...] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def candidates(self) -> tuple[Candidate, ...]:
        """Every eligible task with its points and score, highest points first (ties in scan order).

        Built when first asked for: a Sample has a verdict per limited cgroup, and only the ones a person
        looks at (details, an explanation, the lab's report) need their whole table.
        """
        ranked = self._ranked
        if ranked is None:
            ranked = tuple(sorted(score_eligible(self.eligible, self.totalpages), key=_POINTS, reverse=True))
            object.__setattr__(self, "_ranked", ranked)
        return ranked


_POINTS = itemgetter(1)


def choose(candidates: Sequence[Candidate]) -> Candidate | None:
    """``oom_evaluate_task()`` keeps the first task with ``points >= chosen``: on a tie the later one wins."""
    chosen: Candidate | None = None
    for candidate in candidates:
        if chosen is None or candidate.points >= chosen.points:
            chosen = candidate
    return chosen


def score_tasks(tasks: Sequence[Task], totalpages: int, page_size: int) -> list[Candidate]:
    """Every eligible task with its points and normalised score, in the kernel's scan order."""
    return score_eligible(eligible(tasks, page_size), totalpages)


def eligible(tasks: Iterable[Task], page_size: int) -> list[Eligible]:
    """The tasks the kernel may pick, in the given order, each with its base points."""
    entries = []
    for task in tasks:  # base_points() inlined: every process, every Sample
        adj = task.oom_score_adj
        if adj == OOM_SCORE_ADJ_MIN or not task.has_memory or task.pid == 1:
            continue
        rss = task.rss_anon_bytes + task.rss_file_bytes + task.rss_shmem_bytes
        entries.append(Eligible(task, (rss + task.swap_bytes) // page_size + task.pgtables_bytes // page_size, adj))
    return entries


def score_eligible(entries: Iterable[Eligible], totalpages: int) -> list[Candidate]:
    """Points and normalised score of each entry against a domain of ``totalpages``, in the entries' order."""
    per_adj = totalpages // 1000
    candidates: list[Candidate] = []
    append = candidates.append
    for task, base, adj in entries:
        points = base + adj * per_adj
        if totalpages <= 0:
            score = 0
        elif points >= 0:
            score = points * 1000 // totalpages
        else:  # C division truncates toward zero
            score = -(-points * 1000 // totalpages)
        append(Candidate(task, points, score))
    return candidates


def scores_of(entries: Iterable[Eligible], totalpages: int) -> Iterable[tuple[tuple[int, int], int]]:
    """(task key, normalised score) of each entry against a domain of ``totalpages``."""
    per_adj = totalpages // 1000
    for task, base, adj in entries:
        points = (base + adj * per_adj) * 1000
        yield (task.pid, task.start_ticks), (points // totalpages if points >= 0 else -(-points // totalpages))


def oom_group_root(victim_cgroup: str, domain: str, oom_group: Mapping[str, bool]) -> str | None:
    """``mem_cgroup_get_oom_group()``: the highest cgroup from the victim's up to the domain with oom.group set.

    For a global OOM (domain "/") the walk goes up to the root; a victim in the root cgroup has no group.
    """
    if domain == "/" and victim_cgroup == "/":
        return None
    found = None
    path = victim_cgroup
    while True:
        if oom_group.get(path):
            found = path
        if path == domain or path == "/":
            return found
        path = path.rsplit("/", 1)[0] or "/"


def is_under(path: str, ancestor: str) -> bool:
    """True when ``path`` is ``ancestor`` or one of its descendants."""
    return ancestor == "/" or path == ancestor or path.startswith(ancestor + "/")


class SampleIndex:
    """The subtree order and task lists of a Sample, computed once so every domain's verdict is cheap."""

    def __init__(self, sample: Sample) -> None:
        self.sample = sample
        self.cgroups = {cgroup.path: cgroup for cgroup in sample.cgroups}
        tasks_by_cgroup: dict[str, list[Task]] = {}
        for task in sample.tasks:
            tasks_by_cgroup.setdefault(task.cgroup, []).append(task)
        children: dict[str, list[str]] = {}
        for cgroup in sample.cgroups:
            parent = cgroup.parent_path
            if parent is not None:
                children.setdefault(parent, []).append(cgroup.path)
        # Tasks whose cgroup is missing from the tree (it vanished mid-read, or a replay lacks it) still belong
        # to their ancestors: hang the path under its nearest known ancestor.
        for path in tasks_by_cgroup:
            if path not in self.cgroups and path != "/":
                children.setdefault(self.nearest_known_ancestor(path), []).append(path)
        self.children = children
        self.tasks_by_cgroup = tasks_by_cgroup
        self.oom_group = {c.path: bool(c.oom_group) for c in sample.cgroups}
        page_size = sample.node.page_size
        self.eligible_by_cgroup = {path: eligible(tasks, page_size) for path, tasks in tasks_by_cgroup.items()}
        self._subtree_eligible: dict[str, list[Eligible]] = {}
        self._subtree_tasks: dict[str, list[Task]] = {}

    def nearest_known_ancestor(self, path: str) -> str:
        """The closest proper ancestor of ``path`` that the Sample has ("/" at the latest)."""
        while path != "/":
            path = path.rsplit("/", 1)[0] or "/"
            if path in self.cgroups:
                return path
        return "/"

    def subtree_tasks(self, path: str) -> list[Task]:
        """Tasks of a cgroup and its descendants, in the pre-order walk ``mem_cgroup_scan_tasks()`` makes."""
        return list(self._walk(path, self.tasks_by_cgroup, self._subtree_tasks))

    def subtree_eligible(self, path: str) -> list[Eligible]:
        """The eligible tasks of :meth:`subtree_tasks`, in the same order (shared: do not change the list)."""
        return self._walk(path, self.eligible_by_cgroup, self._subtree_eligible)

    def _walk(self, path: str, own: Mapping[str, Sequence[_T]], memo: dict[str, list[_T]]) -> list[_T]:
        """The cgroup's own items, then each child's subtree in turn (a pre-order walk); each cgroup's list is
        built once per Sample and reused by its parent's."""
        found = memo.get(path)
        if found is None:
            found = list(own.get(path, ()))
            for child in self.children.get(path, ()):
                found += self._walk(child, own, memo)
            memo[path] = found
        return found


def verdict(index: SampleIndex, domain: str) -> DomainVerdict | None:
    """The kernel's choice for an OOM in ``domain`` (a cgroup path), or None when it has no limit."""
    sample = index.sample
    cgroup = index.cgroups.get(domain)
    if cgroup is None:
        return None
    totalpages = memcg_totalpages(cgroup, sample.node.swap_total_bytes, sample.node.page_size)
    if totalpages is None:
        return None
    return _verdict_over(index, domain, index.subtree_eligible(domain), totalpages)


def global_verdict(index: SampleIndex) -> DomainVerdict:
    """The kernel's choice for a node-wide OOM: every process, scored against RAM + swap."""
    entries = [entry for entries in index.eligible_by_cgroup.values() for entry in entries]
    entries.sort(key=lambda entry: (entry.task.start_ticks, entry.task.pid))
    return _verdict_over(index, "", entries, global_totalpages(index.sample))


def choose_eligible(entries: Iterable[Eligible], totalpages: int) -> Eligible | None:
    """:func:`choose` over the points of ``entries`` in this domain, without building a Candidate each."""
    per_adj = totalpages // 1000
    chosen: Eligible | None = None
    best = 0
    for entry in entries:
        points = entry[1] + entry[2] * per_adj
        if chosen is None or points >= best:
            chosen, best = entry, points
    return chosen


def _verdict_over(index: SampleIndex, domain: str, entries: Sequence[Eligible], totalpages: int) -> DomainVerdict:
    chosen = choose_eligible(entries, totalpages)
    if chosen is None:
        return DomainVerdict(domain, totalpages, None, None, (), entries)
    victim = chosen.task
    group_path = None
    if index.sample.node.cgroup_version == 2:
        group_path = oom_group_root(victim.cgroup, domain or "/", index.oom_group)
    if group_path is None:
        return DomainVerdict(domain, totalpages, victim, None, (victim,), entries)
    members = tuple(entry.task for entry in index.subtree_eligible(group_path))
    return DomainVerdict(domain, totalpages, victim, group_path, members, entries)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Every limited cgroup's verdict plus the node's, derived once per Sample."""

    by_domain: Mapping[str, DomainVerdict]
    node: DomainVerdict
    memcg_score: Mapping[tuple[int, int], int]  # task key -> score against its nearest limited ancestor
    nearest_limit: Mapping[str, str]  # cgroup path -> nearest ancestor-or-self with a limit


def predict(sample: Sample, index: SampleIndex | None = None) -> Prediction:
    """Verdicts for every cgroup with a limit and for the node, plus each task's memcg-relative score.

    ``index`` is this Sample's :class:`SampleIndex` when the caller has made one already.
    """
    if index is None:
        index = SampleIndex(sample)
    assert index.sample is sample
    by_domain: dict[str, DomainVerdict] = {}
    for cgroup in sample.cgroups:
        if cgroup.limit_bytes is not None:
            result = verdict(index, cgroup.path)
            if result is not None:
                by_domain[cgroup.path] = result
    nearest: dict[str, str] = {}
    for cgroup in sample.cgroups:  # parents come before children
        if cgroup.limit_bytes is not None:
            nearest[cgroup.path] = cgroup.path
        elif cgroup.parent_path in nearest:
            nearest[cgroup.path] = nearest[cgroup.parent_path]
    for path in index.tasks_by_cgroup:  # cgroups the Sample lacks take their nearest known ancestor's limit
        if path not in index.cgroups and path != "/":
            ancestor = index.nearest_known_ancestor(path)
            if ancestor in nearest:
                nearest[path] = nearest[ancestor]
    memcg_score: dict[tuple[int, int], int] = {}
    node = sample.node
    for path, entries in index.eligible_by_cgroup.items():
        domain = nearest.get(path)
        if domain is None:
            continue
        totalpages = memcg_totalpages(index.cgroups[domain], node.swap_total_bytes, node.page_size)
        if totalpages is None:
            continue
        memcg_score.update(scores_of(entries, totalpages))
    return Prediction(by_domain, global_verdict(index), memcg_score, nearest)


KUBELET_ADJ_POLICY = "kubelet 1.33+"
"""The kubelet behaviour oomtop's expected adj and implied request assume, as shown next to them.

Since kubernetes PR 128029 (kubelet 1.33) a restartable init container ("sidecar") gets its adj from
max(its own memory request, the smallest request among the pod's regular containers), so it never ranks above
them; before, a sidecar's adj came from its own request alone, like any other container's.  Later kubelets
also have the alpha ``KubeletOOMScoreAdjTieBreak`` gate (off by default: a few points' nudge by request size)
and pod-level requests (``PodLevelResources``: the unassigned part of a pod-level request is shared out among
the containers before the formula); oomtop cannot see either on a node, so it assumes both are off.
"""


def expected_kubelet_adj(
    qos: QosClass,
    memory_request_bytes: int | None,
    capacity_bytes: int,
    *,
    regular_requests_if_sidecar: Sequence[int | None] | None = None,
) -> int:
    """kubelet's ``GetContainerOOMScoreAdjust`` (pkg/kubelet/qos/policy.go, 1.33+): the adj a container gets.

    ``regular_requests_if_sidecar`` is given for a restartable init container: the memory requests of its pod's
    regular containers (None for one without a request).  Its raw adj is then lowered to the one of the
    smallest of them (``minRegularContainerMemory``), i.e. computed from max(own request, smallest regular
    request), before the clamp -- so a sidecar never carries a higher adj than the pod's main containers.
    Node-critical pods (priority class ``system-node-critical``) get Guaranteed's -997 whatever their QoS; that
    class is not on the node, so pass GUARANTEED for them.
    """
    if qos is QosClass.GUARANTEED:
        return KUBELET_GUARANTEED_ADJ
    if qos is QosClass.BEST_EFFORT:
        return KUBELET_BESTEFFORT_ADJ
    if capacity_bytes <= 0:
        return KUBELET_BURSTABLE_MAX_ADJ
    raw = 1000 - c_div(1000 * (memory_request_bytes or 0), capacity_bytes)
    if regular_requests_if_sidecar:  # kubelet indexes Containers[0]: a pod has at least one regular container
        smallest = min(request or 0 for request in regular_requests_if_sidecar)
        raw = min(raw, 1000 - c_div(1000 * smallest, capacity_bytes))
    # "if oomScoreAdjust < 1000 + guaranteedOOMScoreAdj" then "== besteffortOOMScoreAdj -> 999"; a negative
    # request is impossible, so raw never exceeds 1000 and this clamp is kubelet's exactly.
    return min(max(raw, KUBELET_BURSTABLE_MIN_ADJ), KUBELET_BURSTABLE_MAX_ADJ)


def implied_request_range(adj: int, capacity_bytes: int, *, capped_sidecar: bool = False) -> tuple[int, int] | None:
    """The memory requests (bytes, inclusive) that make kubelet give a Burstable container this adj.

    Inverts ``1000 - 1000 * request / capacity``; None when the adj is outside the Burstable range, and the
    clamped ends (3 and 999) stand for every request beyond them.  For a sidecar the formula's "request" is
    max(own request, smallest regular request): with ``capped_sidecar`` (the adj equals the highest adj of the
    pod's other containers, so kubelet may have capped it there) its own request can be anything below the
    range too, and the low end is 0.
    """
    if not KUBELET_BURSTABLE_MIN_ADJ <= adj <= KUBELET_BURSTABLE_MAX_ADJ or capacity_bytes <= 0:
        return None
    # 1000*request // capacity == 1000 - adj  <=>  (1000-adj)*cap <= 1000*req < (1001-adj)*cap
    low_quotient = 1000 - adj
    low = -(-low_quotient * capacity_bytes // 1000)
    high = -(-(low_quotient + 1) * capacity_bytes // 1000) - 1
    if adj == KUBELET_BURSTABLE_MIN_ADJ:
        high = capacity_bytes
    if adj == KUBELET_BURSTABLE_MAX_ADJ or capped_sidecar:
        low = 0
    return (low, high)
