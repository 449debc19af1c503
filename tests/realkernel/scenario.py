"""Randomized OOM scenarios whose outcome is decided by a clear margin, not by a coin flip.

A scenario fills an OOM domain with hogs of chosen sizes and oom_score_adj values, leaving a small headroom:

- ``container``: a container hits its own limit (siblings outside the domain must be ignored);
- ``pod``: the pod's limit is hit and every container of the pod is scanned (some containers have limits of
  their own, comfortably above what they hold);
- ``kubepods``: the limit of the (test tree's) kubepods cgroup is hit, so pods of every QoS class are scanned.

A trigger process (adj 0) then grows in 1 MiB steps until the domain OOMs; it stops at a cap a few MiB above
the headroom, so one kill is all it takes.

The kernel's points for a task are ``rss (anon + file + shmem) + swap + page-table pages + adj *
(totalpages / 1000)``; some hogs hold part of their memory as shmem (memfd) or as an mlocked file mapping, so
all three rss counters matter.  The generator estimates every hog's points from its size and adj, bounds the
trigger's points by its cap, and only keeps scenarios where the winner beats the runner-up and the trigger's
bound by ``MARGIN_PAGES``: more than the small overheads it cannot know exactly (a hog's own text and stack,
page tables, the kernel's per-cpu rss counter drift), so the predicted victim is the only possible one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

PAGE_SIZE = 4096
PAGES_PER_MIB = (1 << 20) // PAGE_SIZE
MIN_HOG_MIB = 10  # the victim must free more than the trigger's slack above the headroom
TRIGGER_SLACK_MIB = 4  # trigger cap = measured headroom + this
HOG_OVERHEAD_PAGES = 200  # rss_file (~163 pages for the static hog) + stack/data + page tables, measured ~190
HOG_OVERHEAD_USAGE_MIB = 0.5  # what a hog adds to its cgroup's usage besides its memory (measured ~0.3)
MARGIN_PAGES = 4 * PAGES_PER_MIB  # the winner's lead over every other candidate, trigger included
QOS_CHOICES = ("guaranteed", "burstable", "besteffort")
KINDS = ("container", "pod", "container", "pod", "kubepods")


@dataclass
class PodSpec:
    qos: str
    limit_mib: int | None


@dataclass
class ContainerSpec:
    pod: int  # index into Scenario.pods
    limit_mib: int | None
    in_domain: bool


@dataclass
class HogSpec:
    container: int  # index into Scenario.containers
    mib: int  # everything it holds
    adj: int
    shmem_mib: int = 0  # of mib, held as a memfd mapping
    file_mib: int = 0  # of mib, held as an mlocked shared file mapping

    @property
    def anon_mib(self) -> int:
        return self.mib - self.shmem_mib - self.file_mib


@dataclass
class Scenario:
    index: int
    kind: str
    kubepods_limit_mib: int | None
    pods: list[PodSpec]
    containers: list[ContainerSpec]
    hogs: list[HogSpec]
    domain_limit_mib: int
    domain_pod: int | None  # kind "pod"
    domain_container: int | None  # kind "container"
    trigger_container: int
    headroom_mib: int  # target headroom left for the trigger
    estimated_points: list[int] = field(default_factory=list)
    expected_winner: int = -1  # index into hogs
    trigger_bound_points: int = 0

    @property
    def domain_pages(self) -> int:
        return self.domain_limit_mib * PAGES_PER_MIB

    def domain_hogs(self) -> list[int]:
        return [i for i, hog in enumerate(self.hogs) if self.containers[hog.container].in_domain]

    def max_headroom_mib(self) -> int:
        """The most room the trigger can find: the limit minus the hogs' memory (overheads only shrink it)."""
        return self.domain_limit_mib - sum(self.hogs[i].mib for i in self.domain_hogs())

    def describe(self) -> str:
        where = {
            "pod": f"pod {self.domain_pod}",
            "container": f"container {self.domain_container}",
            "kubepods": "kubepods",
        }[self.kind]
        lines = [
            f"scenario {self.index}: {self.kind}-level OOM, domain {where} limit {self.domain_limit_mib} MiB, "
            f"kubepods limit {self.kubepods_limit_mib}, headroom ~{self.headroom_mib} MiB, trigger in "
            f"container {self.trigger_container}, expected winner hog {self.expected_winner}"
        ]
        for i, pod in enumerate(self.pods):
            lines.append(f"  pod {i}: {pod.qos}, limit {pod.limit_mib} MiB")
        for i, spec in enumerate(self.containers):
            lines.append(f"  container {i}: pod {spec.pod}, limit {spec.limit_mib} MiB, in domain {spec.in_domain}")
        for i, hog in enumerate(self.hogs):
            est = self.estimated_points[i] if i < len(self.estimated_points) else None
            split = ""
            if hog.anon_mib != hog.mib:
                split = f" ({hog.anon_mib} anon, {hog.shmem_mib} shmem, {hog.file_mib} file)"
            lines.append(f"  hog {i}: container {hog.container}, {hog.mib} MiB{split}, adj {hog.adj}, est points {est}")
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


def _hog(rng: random.Random, container: int, mib: int, adj: int) -> HogSpec:
    roll = rng.random()
    shmem = file = 0
    if roll < 0.2:
        shmem = rng.randint(mib // 4, mib)
    elif roll < 0.35:
        file = rng.randint(mib // 4, mib)
    return HogSpec(container, mib, adj, shmem, file)


def _usage_mib(hogs: list[HogSpec]) -> float:
    """What the hogs charge to their cgroups: their memory, plus kernel memory for it (measured on 6.18: ~3%
    of a written file in ext4 metadata and page-cache nodes, ~0.5% of a memfd)."""
    return sum(h.mib + HOG_OVERHEAD_USAGE_MIB + 0.05 * h.file_mib + 0.01 * h.shmem_mib for h in hogs)


def _fit(scenario: Scenario) -> bool:
    """Shrink the domain's largest hog until the domain's estimated usage leaves the planned headroom."""
    domain = [scenario.hogs[i] for i in scenario.domain_hogs()]
    for _ in range(20):
        deficit = _usage_mib(domain) + scenario.headroom_mib - scenario.domain_limit_mib
        if deficit <= 0:
            return True
        largest = max(domain, key=lambda h: h.mib)
        largest.mib -= int(deficit) + 1
        largest.file_mib = min(largest.file_mib, largest.mib)
        largest.shmem_mib = min(largest.shmem_mib, largest.mib - largest.file_mib)
        if largest.mib < MIN_HOG_MIB:
            return False
    return False


def _own_limit(rng: random.Random, hogs: list[HogSpec], trigger_cap: int, below: int, chance: float) -> int | None:
    """A limit of its own, comfortably above what the cgroup will ever hold, if that is below ``below``."""
    own = int(_usage_mib(hogs) + trigger_cap + rng.randint(24, 64))
    return own if own < below and rng.random() < chance else None


def _decide(scenario: Scenario) -> bool:
    """Fill in the estimates; True when the scenario fits its limit and the winner is decisive."""
    if not _fit(scenario):
        return False
    totalpages = scenario.domain_pages
    scenario.estimated_points = [estimate_points(h.mib, h.adj, totalpages) for h in scenario.hogs]
    scenario.trigger_bound_points = trigger_bound_points(scenario.max_headroom_mib())
    ranked = sorted(scenario.domain_hogs(), key=lambda i: scenario.estimated_points[i], reverse=True)
    winner = ranked[0]
    scenario.expected_winner = winner
    runner_up = max([scenario.estimated_points[i] for i in ranked[1:]] + [scenario.trigger_bound_points])
    return scenario.estimated_points[winner] - runner_up >= MARGIN_PAGES


def _container_scenario(rng: random.Random, index: int) -> Scenario:
    headroom = rng.randint(4, 10)
    limit = rng.randint(96, 320)
    n = rng.randint(2, 4)
    qos = rng.choice(QOS_CHOICES)
    containers = [ContainerSpec(0, limit, True)]
    budget = int(limit - headroom - n * HOG_OVERHEAD_USAGE_MIB - 1)
    hogs = [_hog(rng, 0, size, _random_adj(rng)) for size in _partition(rng, budget, n, MIN_HOG_MIB)]
    if rng.random() < 0.6:  # a sibling outside the domain: the kernel must not look at it
        containers.append(ContainerSpec(0, rng.choice([None, 256]), False))
        for _ in range(rng.randint(1, 2)):
            hogs.append(_hog(rng, 1, rng.randint(MIN_HOG_MIB, 40), rng.choice([0, 1000, rng.randint(1, 999)])))
    rng.shuffle(hogs)  # the domain's hogs need not come first
    pod_limit = None
    if qos == "guaranteed" or rng.random() < 0.5:
        pod_limit = int(limit + _usage_mib([h for h in hogs if h.container != 0]) + rng.randint(48, 160))
    return Scenario(index, "container", None, [PodSpec(qos, pod_limit)], containers, hogs, limit, None, 0, 0, headroom)


def _pod_scenario(rng: random.Random, index: int) -> Scenario:
    headroom = rng.randint(4, 10)
    limit = rng.randint(128, 384)
    k = rng.randint(2, 3)
    n = rng.randint(max(3, k), 6)
    per_container = _partition(rng, n, k, 1)
    budget = int(limit - headroom - n * HOG_OVERHEAD_USAGE_MIB - 1)
    sizes = _partition(rng, budget, n, MIN_HOG_MIB)
    hogs = []
    for c in range(k):
        for _ in range(per_container[c]):
            hogs.append(_hog(rng, c, sizes[len(hogs)], _random_adj(rng)))
    trigger_cap = trigger_cap_mib(limit - sum(sizes))
    containers = [
        ContainerSpec(0, _own_limit(rng, [h for h in hogs if h.container == c], trigger_cap, limit, 0.5), True)
        for c in range(k)
    ]
    pods = [PodSpec(rng.choice(QOS_CHOICES), limit)]
    return Scenario(index, "pod", None, pods, containers, hogs, limit, 0, None, rng.randrange(k), headroom)


def _kubepods_scenario(rng: random.Random, index: int) -> Scenario:
    headroom = rng.randint(4, 10)
    limit = rng.randint(192, 448)
    pod_count = rng.randint(2, 3)
    qos = rng.sample(QOS_CHOICES, pod_count)
    container_pods = [p for p in range(pod_count) for _ in range(rng.randint(1, 2))]
    k = len(container_pods)
    n = rng.randint(max(3, k), 6)
    per_container = _partition(rng, n, k, 1)
    budget = int(limit - headroom - n * HOG_OVERHEAD_USAGE_MIB - 1)
    sizes = _partition(rng, budget, n, MIN_HOG_MIB)
    hogs = []
    for c in range(k):
        for _ in range(per_container[c]):
            hogs.append(_hog(rng, c, sizes[len(hogs)], _random_adj(rng)))
    trigger_cap = trigger_cap_mib(limit - sum(sizes))
    containers = [
        ContainerSpec(
            container_pods[c], _own_limit(rng, [h for h in hogs if h.container == c], trigger_cap, limit, 0.4), True
        )
        for c in range(k)
    ]
    pods = []
    for p in range(pod_count):
        held = [h for h in hogs if containers[h.container].pod == p]
        chance = 1.0 if qos[p] == "guaranteed" else 0.4 if qos[p] == "burstable" else 0.0
        pods.append(PodSpec(qos[p], _own_limit(rng, held, trigger_cap, limit, chance) if held else None))
    return Scenario(index, "kubepods", limit, pods, containers, hogs, limit, None, None, rng.randrange(k), headroom)


_BUILDERS = {"container": _container_scenario, "pod": _pod_scenario, "kubepods": _kubepods_scenario}


def generate(seed: int, count: int) -> list[Scenario]:
    """``count`` decisive scenarios, cycling through container-, pod- and kubepods-level OOMs."""
    rng = random.Random(seed)
    scenarios = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        for _attempt in range(10000):
            scenario = _BUILDERS[kind](rng, index)
            if _decide(scenario):
                break
        else:  # pragma: no cover - the space of decisive scenarios is large
            raise AssertionError(f"no decisive {kind} scenario found for index {index} (seed {seed})")
        winner = scenario.expected_winner
        others = [scenario.estimated_points[i] for i in scenario.domain_hogs() if i != winner]
        lead = scenario.estimated_points[winner] - max([*others, scenario.trigger_bound_points])
        assert lead >= MARGIN_PAGES, f"generator produced an undecided scenario:\n{scenario.describe()}"
        assert all(h.mib >= MIN_HOG_MIB and h.anon_mib >= 0 for h in scenario.hogs)
        assert min(h.adj for h in scenario.hogs) >= 0 and max(h.adj for h in scenario.hogs) <= 1000
        domain_usage = _usage_mib([scenario.hogs[i] for i in scenario.domain_hogs()])
        assert domain_usage + scenario.headroom_mib <= scenario.domain_limit_mib, scenario.describe()
        assert scenario.containers[scenario.trigger_container].in_domain
        scenarios.append(scenario)
    return scenarios
