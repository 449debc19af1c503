"""Seeded OOM rounds for the v2 tier, each decided by a clear margin, never by a coin flip.

A round fills an OOM domain -- one container's limit, one pod's limit (every container of the pod scanned), or
the node-allocatable limit on kubepods (every pod of every QoS class scanned) -- with hogs carrying kubelet's
oom_score_adj values: Guaranteed -997, the pause sandbox -998, Burstable ``1000 - 1000 * request / MemTotal``
clamped to [3, 999], BestEffort 1000 (and now and then one process that raised its own adj, as some servers do).
A trigger then grows in 1 MiB steps until the domain OOMs; its cap (the headroom plus a few MiB) bounds its
own points, so one kill is all it takes and the trigger can never be the one chosen.

The kernel's points are ``rss + swap + page-table pages + adj * (totalpages / 1000)``.  The generator estimates
every hog's, bounds the trigger's, and keeps only rounds where the winner leads everyone by ``MARGIN_PAGES`` --
more than the overheads it cannot know exactly -- and the test checks that lead again on the kernel's own
figures before it pushes the domain over.

Round ``i`` of seed ``s`` depends on nothing else (``random.Random(f"{s}:{i}")``), so any single round replays.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PAGES_PER_MIB = 256
MIN_HOG_MIB = 8  # the victim must free more than the trigger's slack over the headroom
TRIGGER_SLACK_MIB = 4
HOG_OVERHEAD_PAGES = 220  # a static hog's own text/data/stack; measured about 190 under the 6.1 guest
PROC_USAGE_MIB = 0.4  # what one process adds to its cgroup's memory.current beyond what it touches
MARGIN_PAGES = 4 * PAGES_PER_MIB


def kind_of(index: int) -> str:
    return ("container", "pod", "container", "pod", "kubepods")[index % 5]


def naming_of(index: int) -> str:
    return ("cgroupfs", "systemd")[index % 2]


def round_id(index: int) -> str:
    return f"round{index:02d}-{kind_of(index)}-{naming_of(index)}"


def kubelet_adj(qos: str, request_mib: int, capacity_bytes: int) -> int:
    if qos == "guaranteed":
        return -997
    if qos == "besteffort":
        return 1000
    adj = 1000 - (1000 * request_mib * (1 << 20)) // capacity_bytes
    return 3 if adj < 3 else 999 if adj >= 1000 else adj


@dataclass
class PodSpec:
    qos: str
    limit_mib: int | None = None
    oom_group: bool = False  # kubelet never sets it on a pod; here it tests "the highest ancestor" rule


@dataclass
class CtrSpec:
    pod: int
    name: str
    adj: int
    request_mib: int | None = None
    limit_mib: int | None = None
    oom_group: bool = False
    hogs: list[list[int]] = field(default_factory=list)  # [mib, adj] per process; adj -1000: never killed


@dataclass
class Round:
    index: int
    seed: int
    kind: str
    naming: str
    domain_limit_mib: int
    pods: list[PodSpec]
    ctrs: list[CtrSpec]
    domain_ctr: int | None  # kind "container"
    domain_pod: int | None  # kind "pod"
    trigger_ctr: int
    kubepods_limit_mib: int | None = None
    estimate: dict[tuple[int, int], int] = field(default_factory=dict)  # (ctr, hog) -> points
    winner: tuple[int, int] = (-1, -1)
    lead: int = 0

    @property
    def totalpages(self) -> int:
        return self.domain_limit_mib * PAGES_PER_MIB

    def in_domain(self, ctr: int) -> bool:
        if self.kind == "container":
            return ctr == self.domain_ctr
        if self.kind == "pod":
            return self.ctrs[ctr].pod == self.domain_pod
        return True

    def domain_hogs(self) -> list[tuple[int, int]]:
        return [(c, h) for c, spec in enumerate(self.ctrs) if self.in_domain(c) for h in range(len(spec.hogs))]

    def domain_procs(self) -> int:
        """Processes the domain holds before the trigger: its hogs and its pods' pause processes."""
        pods = {self.ctrs[c].pod for c, _ in self.domain_hogs()} if self.kind != "container" else set()
        return len(self.domain_hogs()) + len(pods)

    def headroom_mib(self) -> float:
        used = sum(self.ctrs[c].hogs[h][0] for c, h in self.domain_hogs())
        return self.domain_limit_mib - used - self.domain_procs() * PROC_USAGE_MIB

    def describe(self) -> str:
        lines = [
            f"{round_id(self.index)} (seed {self.seed}): domain limit {self.domain_limit_mib} MiB, totalpages "
            f"{self.totalpages} (adj weight {self.totalpages // 1000} pages/point), est. headroom "
            f"{self.headroom_mib():.1f} MiB, trigger in ctr {self.trigger_ctr}, expected winner ctr "
            f"{self.winner[0]} hog {self.winner[1]} by {self.lead} pages"
        ]
        for p, pod in enumerate(self.pods):
            lines.append(f"  pod {p}: {pod.qos}, limit {pod.limit_mib}, oom.group {int(pod.oom_group)}")
        for c, ctr in enumerate(self.ctrs):
            hogs = ", ".join(
                f"{mib} MiB adj {adj} (est {self.estimate.get((c, h))})" for h, (mib, adj) in enumerate(ctr.hogs)
            )
            lines.append(
                f"  ctr {c} {ctr.name} (pod {ctr.pod}, adj {ctr.adj}, request {ctr.request_mib}, limit "
                f"{ctr.limit_mib}, oom.group {int(ctr.oom_group)}{', in domain' if self.in_domain(c) else ''})"
                f": {hogs}"
            )
        return "\n".join(lines)


def estimate_points(mib: int, adj: int, totalpages: int) -> int:
    return mib * PAGES_PER_MIB + HOG_OVERHEAD_PAGES + mib // 2 + adj * (totalpages // 1000)


def trigger_cap_mib(headroom_mib: float) -> int:
    return int(headroom_mib + 0.999) + TRIGGER_SLACK_MIB


def trigger_bound_points(cap_mib: int, adj: int, totalpages: int) -> int:
    """The most the trigger can weigh at any OOM: everything it may ever hold, its overheads, its adj."""
    return cap_mib * PAGES_PER_MIB + HOG_OVERHEAD_PAGES + cap_mib + adj * (totalpages // 1000)


def _partition(rng: random.Random, total: int, parts: int, minimum: int) -> list[int]:
    spare = total - parts * minimum
    assert spare >= 0, (total, parts, minimum)
    weights = [rng.random() + 0.05 for _ in range(parts)]
    sizes = [minimum + int(spare * w / sum(weights)) for w in weights]
    sizes[rng.randrange(parts)] += total - sum(sizes)
    return sizes


def _burstable_request(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.15:
        return 0  # no memory request: 1000 -> clamped to 999
    if roll < 0.25:
        return rng.randint(1900, 2100)  # a request near the whole node: clamped to 3
    return rng.randint(8, 1800)


def _container_adj(rng: random.Random, qos: str, capacity: int) -> tuple[int, int | None]:
    if qos == "burstable":
        request = _burstable_request(rng)
        return kubelet_adj(qos, request, capacity), request
    return kubelet_adj(qos, 0, capacity), None


def _maybe_raise(rng: random.Random, adj: int) -> int:
    """Now and then a process raises its own adj above its container's (allowed without any capability)."""
    if adj < 1000 and rng.random() < 0.2:
        return rng.randint(max(adj, 0), 1000)
    return adj


def _fill(rng: random.Random, rnd: Round, hosts: list[int], headroom: int) -> None:
    """Hogs for the containers in ``hosts`` (one per entry) using the domain's budget minus ``headroom``."""
    procs = len(hosts) + (0 if rnd.kind == "container" else len({rnd.ctrs[c].pod for c in hosts}))
    budget = int(rnd.domain_limit_mib - headroom - procs * PROC_USAGE_MIB - 1)
    for c, mib in zip(hosts, _partition(rng, budget, len(hosts), MIN_HOG_MIB), strict=False):
        rnd.ctrs[c].hogs.append([mib, _maybe_raise(rng, rnd.ctrs[c].adj)])


def _maybe_protect(rng: random.Random, ctr: CtrSpec, chance: float) -> None:
    """Now and then a process with adj -1000 (as a node agent runs): never chosen, and spared by an oom.group
    kill.  It takes its memory from the container's largest hog, so the domain's budget stays the same."""
    if not ctr.hogs or rng.random() >= chance:
        return
    largest = max(range(len(ctr.hogs)), key=lambda h: ctr.hogs[h][0])
    if ctr.hogs[largest][0] >= 2 * MIN_HOG_MIB + 1:
        ctr.hogs[largest][0] -= MIN_HOG_MIB + 1
        ctr.hogs.insert(rng.randrange(len(ctr.hogs) + 1), [MIN_HOG_MIB, -1000])


def _container_round(rng: random.Random, rnd: Round, capacity: int) -> None:
    qos = rng.choice(["guaranteed", "burstable"])
    rnd.domain_limit_mib = rng.randint(48, 128)
    rnd.pods = [PodSpec(qos, oom_group=rng.random() < 0.3)]  # above the domain: the kernel must ignore it
    adj, request = _container_adj(rng, qos, capacity)
    rnd.ctrs = [CtrSpec(0, "app", adj, request, rnd.domain_limit_mib, rng.random() < 0.5)]
    rnd.domain_ctr, rnd.trigger_ctr = 0, 0
    _fill(rng, rnd, [0] * rng.randint(2, 3), rng.randint(4, 8))
    _maybe_protect(rng, rnd.ctrs[0], 0.7 if rnd.ctrs[0].oom_group else 0.2)
    if rng.random() < 0.6:  # a sibling outside the domain: the kernel must not look at it
        adj, request = _container_adj(rng, qos, capacity)
        mib = rng.randint(MIN_HOG_MIB, 24)
        limit = mib + 32 if qos == "guaranteed" or rng.random() < 0.5 else None
        rnd.ctrs.append(CtrSpec(0, "sidecar", adj, request, limit, rng.random() < 0.5, [[mib, _maybe_raise(rng, adj)]]))
    if all(ctr.limit_mib is not None for ctr in rnd.ctrs):
        # kubelet sets a pod limit only when every container has one: their sum, plus the pod overhead (here
        # 8 MiB; with none, the pause process's own charge would make the pod the level that is hit first).
        rnd.pods[0].limit_mib = sum(ctr.limit_mib for ctr in rnd.ctrs) + 8  # type: ignore[misc]


def _pod_round(rng: random.Random, rnd: Round, capacity: int) -> None:
    qos = rng.choice(["guaranteed", "burstable"])
    rnd.domain_limit_mib = rng.randint(80, 160)
    rnd.pods = [PodSpec(qos, rnd.domain_limit_mib, rng.random() < 0.25)]
    rnd.domain_pod = 0
    k = rng.randint(2, 3)
    for c in range(k):
        adj, request = _container_adj(rng, qos, capacity)
        rnd.ctrs.append(CtrSpec(0, f"c{c}", adj, request, None, rng.random() < 0.5))
    hosts = list(range(k)) + [rng.randrange(k) for _ in range(rng.randint(0, 2))]
    _fill(rng, rnd, sorted(hosts), rng.randint(4, 8))
    for ctr in rnd.ctrs:
        _maybe_protect(rng, ctr, 0.4 if ctr.oom_group or rnd.pods[0].oom_group else 0.1)
    rnd.trigger_ctr = rng.randrange(k)
    cap = trigger_cap_mib(rnd.headroom_mib())
    for c, ctr in enumerate(rnd.ctrs):
        # Container limits comfortably above what each will ever hold, so the pod's limit is the one hit and
        # every container of the pod is scanned.  (kubelet would make a Guaranteed pod's limit their sum.)
        if qos == "guaranteed" or rng.random() < 0.5:
            held = sum(mib for mib, _ in ctr.hogs) + len(ctr.hogs) + (cap if c == rnd.trigger_ctr else 0)
            ctr.limit_mib = held + rng.randint(16, 48)


def _kubepods_round(rng: random.Random, rnd: Round, capacity: int) -> None:
    rnd.domain_limit_mib = rng.randint(128, 200)
    rnd.kubepods_limit_mib = rnd.domain_limit_mib
    rnd.pods = [PodSpec("guaranteed"), PodSpec("burstable"), PodSpec("besteffort")]
    if rng.random() < 0.5:
        rnd.pods.append(PodSpec(rng.choice(["burstable", "besteffort"])))
    for pod in rnd.pods:
        pod.oom_group = rng.random() < 0.25
    for p, pod in enumerate(rnd.pods):
        for c in range(1 if pod.qos == "guaranteed" else rng.randint(1, 2)):
            adj, request = _container_adj(rng, pod.qos, capacity)
            rnd.ctrs.append(CtrSpec(p, f"p{p}c{c}", adj, request, None, rng.random() < 0.5))
    hosts = list(range(len(rnd.ctrs)))
    _fill(rng, rnd, hosts, rng.randint(4, 8))
    rnd.trigger_ctr = 0  # the Guaranteed container: adj -997 keeps the trigger far out of the running
    guaranteed = rnd.ctrs[0]
    guaranteed.limit_mib = sum(mib for mib, _ in guaranteed.hogs) + 1 + trigger_cap_mib(rnd.headroom_mib()) + 32
    rnd.pods[0].limit_mib = guaranteed.limit_mib


def _decide(rnd: Round) -> bool:
    totalpages = rnd.totalpages
    rnd.estimate = {
        (c, h): estimate_points(rnd.ctrs[c].hogs[h][0], rnd.ctrs[c].hogs[h][1], totalpages)
        for c, h in rnd.domain_hogs()
        if rnd.ctrs[c].hogs[h][1] != -1000
    }
    ranked = sorted(rnd.estimate, key=lambda key: rnd.estimate[key], reverse=True)
    rnd.winner = ranked[0]
    bound = trigger_bound_points(trigger_cap_mib(rnd.headroom_mib()), rnd.ctrs[rnd.trigger_ctr].adj, totalpages)
    runner_up = max([rnd.estimate[key] for key in ranked[1:]] + [bound])
    rnd.lead = rnd.estimate[rnd.winner] - runner_up
    return rnd.lead >= MARGIN_PAGES


def make_round(seed: int, index: int, capacity_bytes: int) -> Round:
    """Round ``index`` of ``seed``: decisive, and the same on every run with the same seed and MemTotal."""
    rng = random.Random(f"{seed}:{index}")
    build = {"container": _container_round, "pod": _pod_round, "kubepods": _kubepods_round}[kind_of(index)]
    for _ in range(20000):
        rnd = Round(index, seed, kind_of(index), naming_of(index), 0, [], [], None, None, 0)
        build(rng, rnd, capacity_bytes)
        if rnd.headroom_mib() >= 3 and _decide(rnd):
            return rnd
    raise AssertionError(f"no decisive {kind_of(index)} round found for index {index} (seed {seed})")
