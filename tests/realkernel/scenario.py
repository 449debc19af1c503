"""Randomized OOM scenarios whose outcome is decided by a clear margin, not by a coin flip.

A scenario fills an OOM domain (a container's limit, or a pod's limit over several containers) with hogs of
chosen sizes and oom_score_adj values, leaving a small headroom.  A trigger process (adj 0) then grows in 1 MiB
steps until the domain OOMs; it stops at a cap a few MiB above the headroom, so one kill is all it takes.

The kernel's points for a task are ``rss (anon + file + shmem) + swap + page-table pages + adj *
(totalpages / 1000)``.  The generator estimates every hog's points from its size and adj, bounds the trigger's
points by its cap, and only keeps scenarios where the winner beats the runner-up and the trigger's bound by
``MARGIN_PAGES``: more than the small overheads it cannot know exactly (a hog's own text and stack, page tables,
the kernel's per-cpu counter drift), so the predicted victim is the only possible one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PAGE_SIZE = 4096
PAGES_PER_MIB = (1 << 20) // PAGE_SIZE
MIN_HOG_MIB = 10  # the victim must free more than the trigger's slack above the headroom
TRIGGER_SLACK_MIB = 4  # trigger cap = measured headroom + this
HOG_OVERHEAD_PAGES = 200  # rss_file (~163 pages for the static hog) + stack/data + page tables, measured ~190
HOG_OVERHEAD_USAGE_MIB = 0.5  # what a hog adds to its cgroup's usage besides its allocation (measured ~0.3)
MARGIN_PAGES = 4 * PAGES_PER_MIB  # the winner's lead over every other candidate, trigger included
QOS_CHOICES = ("guaranteed", "burstable", "besteffort")


@dataclass
class ContainerSpec:
    limit_mib: int | None
    in_domain: bool


@dataclass
class HogSpec:
    container: int  # index into Scenario.containers
    mib: int
    adj: int


@dataclass
class Scenario:
    index: int
    kind: str  # "container": a container hits its own limit; "pod": the pod's limit, every container scanned
    qos: str
    pod_limit_mib: int | None
    domain_limit_mib: int
    domain_container: int | None  # the container that OOMs (kind "container"), None for a pod OOM
    containers: list[ContainerSpec]
    hogs: list[HogSpec]
    trigger_container: int
    headroom_mib: int  # target headroom left for the trigger
    estimated_points: list[int] = field(default_factory=list)
    expected_winner: int = -1  # index into hogs
    trigger_bound_points: int = 0

    @property
    def domain_pages(self) -> int:
        return self.domain_limit_mib * PAGES_PER_MIB

    def max_headroom_mib(self) -> int:
        """The most room the trigger can find: the limit minus the hogs' allocations (overheads only shrink it)."""
        return self.domain_limit_mib - sum(self.hogs[i].mib for i in self.domain_hogs())

    def domain_hogs(self) -> list[int]:
        return [i for i, hog in enumerate(self.hogs) if self.containers[hog.container].in_domain]

    def describe(self) -> str:
        where = "pod" if self.kind == "pod" else f"container {self.domain_container}"
        lines = [f"scenario {self.index}: {self.kind}-level OOM ({self.qos} pod), domain {where} limit "
                 f"{self.domain_limit_mib} MiB, pod limit {self.pod_limit_mib}, headroom ~{self.headroom_mib} MiB, "
                 f"trigger in container {self.trigger_container}, expected winner hog {self.expected_winner}"]
        for i, spec in enumerate(self.containers):
            lines.append(f"  container {i}: limit {spec.limit_mib} MiB, in domain {spec.in_domain}")
        for i, hog in enumerate(self.hogs):
            est = self.estimated_points[i] if i < len(self.estimated_points) else None
            lines.append(f"  hog {i}: container {hog.container}, {hog.mib} MiB, adj {hog.adj}, est points {est}")
        lines.append(f"  trigger bound {self.trigger_bound_points} points")
        return "\n".join(lines)


def estimate_points(mib: int, adj: int, totalpages: int) -> int:
    pgtables = mib // 2 + 20  # one PTE page per 2 MiB, plus the upper levels and the binary's own
    return mib * PAGES_PER_MIB + HOG_OVERHEAD_PAGES - 20 + pgtables + adj * (totalpages // 1000)


def trigger_cap_mib(headroom_mib: float) -> int:
    """What the trigger may hold at most: the headroom rounded up plus a few MiB, so it surely OOMs once."""
    return int(headroom_mib + 0.999) + TRIGGER_SLACK_MIB


def trigger_bound_points(headroom_mib: float) -> int:
    """The most the trigger can weigh at any OOM: all it may ever hold, plus its own small overheads (adj 0)."""
    cap = trigger_cap_mib(headroom_mib)
    return cap * PAGES_PER_MIB + HOG_OVERHEAD_PAGES + cap


def _random_adj(rng: random.Random) -> int:
    roll = rng.random()
    if roll < 0.3:
        return 0
    if roll < 0.4:
        return 1000
    if roll < 0.5:
        return rng.randint(1, 20)
    return rng.randint(1, 999)


def _partition(rng: random.Random, total: int, parts: int, minimum: int) -> list[int]:
    spare = total - parts * minimum
    assert spare >= 0, (total, parts, minimum)
    weights = [rng.random() + 0.05 for _ in range(parts)]
    scale = sum(weights)
    sizes = [minimum + int(spare * w / scale) for w in weights]
    sizes[rng.randrange(parts)] += total - sum(sizes)
    return sizes


def _usage_mib(hogs: list[HogSpec]) -> float:
    return sum(h.mib + HOG_OVERHEAD_USAGE_MIB for h in hogs)


def _decide(scenario: Scenario) -> bool:
    """Fill in the estimates; True when the winner is decisive."""
    totalpages = scenario.domain_pages
    scenario.estimated_points = [estimate_points(h.mib, h.adj, totalpages) for h in scenario.hogs]
    scenario.trigger_bound_points = trigger_bound_points(scenario.max_headroom_mib())
    in_domain = scenario.domain_hogs()
    ranked = sorted(in_domain, key=lambda i: scenario.estimated_points[i], reverse=True)
    winner = ranked[0]
    scenario.expected_winner = winner
    runner_up = max([scenario.estimated_points[i] for i in ranked[1:]] + [scenario.trigger_bound_points])
    return scenario.estimated_points[winner] - runner_up >= MARGIN_PAGES


def _one(rng: random.Random, index: int, kind: str) -> Scenario:
    qos = rng.choice(QOS_CHOICES)
    headroom = rng.randint(4, 10)
    containers: list[ContainerSpec] = []
    hogs: list[HogSpec] = []
    if kind == "container":
        limit = rng.randint(96, 320)
        n = rng.randint(2, 4)
        containers.append(ContainerSpec(limit, True))
        budget = int(limit - headroom - n * HOG_OVERHEAD_USAGE_MIB - 1)
        for size in _partition(rng, budget, n, MIN_HOG_MIB):
            hogs.append(HogSpec(0, size, _random_adj(rng)))
        if rng.random() < 0.6:  # a sibling outside the domain: the kernel must not look at it
            sibling_limit = rng.choice([None, 256])
            containers.append(ContainerSpec(sibling_limit, False))
            for _ in range(rng.randint(1, 2)):
                hogs.append(HogSpec(1, rng.randint(MIN_HOG_MIB, 40), rng.choice([0, 1000, rng.randint(1, 999)])))
        pod_limit = None
        if qos == "guaranteed" or rng.random() < 0.5:
            others = _usage_mib([h for h in hogs if h.container != 0])
            pod_limit = int(limit + others + rng.randint(48, 160))
        domain_container: int | None = 0
        trigger_container = 0
    else:
        limit = rng.randint(128, 384)
        k = rng.randint(2, 3)
        n = rng.randint(max(3, k), 6)
        per_container = _partition(rng, n, k, 1)
        budget = int(limit - headroom - n * HOG_OVERHEAD_USAGE_MIB - 1)
        sizes = _partition(rng, budget, n, MIN_HOG_MIB)
        trigger_container = rng.randrange(k)
        pos = 0
        for c in range(k):
            for _ in range(per_container[c]):
                hogs.append(HogSpec(c, sizes[pos], _random_adj(rng)))
                pos += 1
        trigger_cap = trigger_cap_mib(limit - sum(sizes))
        for c in range(k):
            # Some containers get a limit of their own, comfortably above what they will ever hold, so the
            # pod's limit is the one hit and the model must still scan the whole pod.
            own = _usage_mib([h for h in hogs if h.container == c]) + trigger_cap + rng.randint(24, 64)
            containers.append(ContainerSpec(int(own) if own < limit and rng.random() < 0.5 else None, True))
        pod_limit = limit
        domain_container = None
    return Scenario(index, kind, qos, pod_limit, limit, domain_container, containers, hogs, trigger_container,
                    headroom)


def generate(seed: int, count: int) -> list[Scenario]:
    """``count`` decisive scenarios, alternating container- and pod-level OOMs."""
    rng = random.Random(seed)
    scenarios = []
    for index in range(count):
        kind = "container" if index % 2 == 0 else "pod"
        for _attempt in range(10000):
            scenario = _one(rng, index, kind)
            if _decide(scenario):
                break
        else:  # pragma: no cover - the space of decisive scenarios is large
            raise AssertionError(f"no decisive {kind} scenario found for index {index} (seed {seed})")
        winner = scenario.expected_winner
        others = [scenario.estimated_points[i] for i in scenario.domain_hogs() if i != winner]
        lead = scenario.estimated_points[winner] - max(others + [scenario.trigger_bound_points])
        assert lead >= MARGIN_PAGES, f"generator produced an undecided scenario:\n{scenario.describe()}"
        assert all(h.mib >= MIN_HOG_MIB for h in scenario.hogs)
        assert 0 <= min(h.adj for h in scenario.hogs) and max(h.adj for h in scenario.hogs) <= 1000
        domain_usage = _usage_mib([scenario.hogs[i] for i in scenario.domain_hogs()])
        assert domain_usage + scenario.headroom_mib <= scenario.domain_limit_mib, scenario.describe()
        scenarios.append(scenario)
    return scenarios
