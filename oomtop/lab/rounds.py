"""The ``random`` scenario's rounds, planned before anything runs: pods, containers, requests, limits and hog
sizes drawn from a seed, each round an OOM at a container's own limit or at kubepods.

Planning is pure arithmetic (no cgroups, no processes), kept apart from the scenarios that carry the rounds out so
it can be read and tested alone.  Every round is decisive: the process meant to die leads every other candidate by
at least ``MARGIN_MIB`` of points, far more than what the lab cannot know exactly (a Python interpreter's own few
MiB, page tables, the kernel's per-cpu counters), so a wrong prediction means oomtop is wrong, not that the round
was a coin flip.  Sizes count a hog's memory in MiB on top of its interpreter's own (``BASE_MIB``), which every
hog holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from oomtop.lab.kubelet import MIB, AdjPolicy, Resources, allocatable, container_adj, pod_qos
from oomtop.lab.node import LabRuntimeError
from oomtop.model import QosClass

BASE_MIB = 14  # rss of an idle hog (the interpreter: ~7.5 MiB anon, ~6.5 MiB file), measured on Python 3.11
CHARGED_BASE_MIB = 10  # what a hog's start charges to its cgroup under runc (born there; plain moves it later)
SLACK_MIB = 4  # a trigger grows to the room left plus this: surely one OOM, and not much more
MARGIN_MIB = 8  # the lead of the process meant to die over every other candidate
MIN_VICTIM_MIB = 48  # a victim frees at least ~38 MiB less than it holds before the kernel may look again
ROOM_MIB = 24  # free space kept below limits that must not be hit
PAGES_PER_MIB = MIB // 4096


@dataclass
class ContainerPlan:
    pod: int
    name: str
    resources: Resources
    hogs: list[int] = field(default_factory=list)  # MiB of each hog


@dataclass
class PodPlan:
    name: str
    containers: list[int]  # indexes into RoundPlan.containers

    qos: QosClass = QosClass.BEST_EFFORT


@dataclass
class RoundPlan:
    index: int
    kind: str  # "container" (a container's own limit) or "kubepods" (the node's allocatable)
    pods: list[PodPlan]
    containers: list[ContainerPlan]
    trigger: int  # the container whose new process grows
    domain_mib: int
    winner: tuple[int, int]  # (container, hog index) meant to die
    lead_mib: float = 0.0

    def describe(self) -> str:
        parts = [
            (
                f"round {self.index}: {self.kind}-level OOM, domain {self.domain_mib} MiB, winner {self.winner}, "
                f"lead {self.lead_mib:.0f} MiB"
            )
        ]
        for pod in self.pods:
            for ci in pod.containers:
                c = self.containers[ci]
                parts.append(
                    f"  {pod.name}/{c.name} ({pod.qos.value}, request {c.resources.request_bytes}, "
                    f"limit {c.resources.limit_bytes}): hogs {c.hogs}{' + trigger' if ci == self.trigger else ''}"
                )
        return "\n".join(parts)


def _adj(plan: RoundPlan, container: int, policy: AdjPolicy, capacity_mib: int) -> int:
    spec = plan.containers[container]
    qos = plan.pods[spec.pod].qos
    return policy.effective(container_adj(qos, spec.resources, capacity_mib * MIB))


def _points(mib: float, adj: int, domain_mib: int) -> float:
    """``oom_badness`` in MiB-equivalents: rss + adj x (totalpages / 1000) pages."""
    return mib + BASE_MIB + adj * (domain_mib * PAGES_PER_MIB // 1000) / PAGES_PER_MIB


def _decisive(plan: RoundPlan, policy: AdjPolicy, capacity_mib: int) -> bool:
    """Whether the planned winner leads every other candidate, the trigger at its largest included."""
    in_domain = [plan.winner[0]] if plan.kind == "container" else list(range(len(plan.containers)))
    scores = []
    for ci in in_domain:
        adj = _adj(plan, ci, policy, capacity_mib)
        scores += [((ci, hi), _points(mib, adj, plan.domain_mib)) for hi, mib in enumerate(plan.containers[ci].hogs)]
    held = sum(mib for ci in in_domain for mib in plan.containers[ci].hogs)
    trigger = _points(
        plan.domain_mib - held + SLACK_MIB + 1, _adj(plan, plan.trigger, policy, capacity_mib), plan.domain_mib
    )  # the most it can hold: the room a plain runtime leaves (nothing charged)
    sandboxes = [_points(0, policy.effective(-998), plan.domain_mib)]
    best = max(scores, key=lambda item: item[1])
    others = [score for key, score in scores if key != best[0]] + [trigger] + sandboxes
    winner_mib = plan.containers[best[0][0]].hogs[best[0][1]]
    plan.winner = best[0]
    plan.lead_mib = best[1] - max(others)
    return plan.lead_mib >= MARGIN_MIB and winner_mib >= MIN_VICTIM_MIB


def _fits(plan: RoundPlan) -> bool:
    """Every limit that must not be hit keeps its room, even with runc charging each hog's interpreter."""
    for ci, spec in enumerate(plan.containers):
        limit = spec.resources.limit_bytes
        if limit is None or (plan.kind == "container" and ci == plan.winner[0]):
            continue
        need = sum(spec.hogs) + CHARGED_BASE_MIB * (len(spec.hogs) + 1) + ROOM_MIB
        if ci == plan.trigger:
            held = sum(sum(c.hogs) for c in plan.containers)
            need += plan.domain_mib - held + SLACK_MIB
        if need > limit // MIB:
            return False
    return True


def _container_round(rng: random.Random, index: int) -> RoundPlan:
    qos = rng.choice([QosClass.GUARANTEED, QosClass.BURSTABLE])
    limit = rng.randint(160, 320)
    request = limit if qos is QosClass.GUARANTEED else rng.randint(16, limit // 2)
    count = rng.randint(2, 3)
    budget = limit - CHARGED_BASE_MIB * (count + 2) - ROOM_MIB
    winner = _between(rng, max(MIN_VICTIM_MIB, limit - budget + SLACK_MIB + MARGIN_MIB + 2), budget - 16 * (count - 1))
    others = []
    left = budget - winner
    for k in range(count - 1):
        others.append(_between(rng, 16, min(winner - MARGIN_MIB - 1, left - 16 * (count - 2 - k))))
        left -= others[-1]
    hogs = [winner, *others]
    rng.shuffle(hogs)
    containers = [ContainerPlan(0, "app", Resources(request * MIB, limit * MIB), hogs)]
    if rng.random() < 0.6:  # a sibling outside the domain, often holding more and with a higher adj
        if qos is QosClass.GUARANTEED:
            sibling_limit = rng.randint(96, 200)
            resources = Resources(sibling_limit * MIB, sibling_limit * MIB)
        else:
            sibling_limit = rng.randint(120, 256)
            resources = Resources(rng.randint(8, 32) * MIB, sibling_limit * MIB if rng.random() < 0.6 else None)
        size = _between(rng, 16, sibling_limit - 2 * CHARGED_BASE_MIB - ROOM_MIB)
        containers.append(ContainerPlan(0, "sidecar", resources, [size]))
    pods = [PodPlan(f"r{index:02d}-pod", list(range(len(containers))))]
    pods[0].qos = pod_qos([c.resources for c in containers])
    return RoundPlan(index, "container", pods, containers, 0, limit, (0, 0))


def _kubepods_round(rng: random.Random, index: int, capacity_mib: int) -> RoundPlan:
    pods: list[PodPlan] = []
    containers: list[ContainerPlan] = []
    for p in range(rng.randint(2, 4)):
        kind = rng.choice([QosClass.GUARANTEED, QosClass.BURSTABLE, QosClass.BEST_EFFORT])
        members = []
        for c in range(rng.randint(1, 2)):
            if kind is QosClass.GUARANTEED:
                size = rng.randint(64, 224)
                resources = Resources(size * MIB, size * MIB)
            elif kind is QosClass.BURSTABLE:
                request = rng.randint(16, capacity_mib // 3)
                limit = None if rng.random() < 0.4 else rng.randint(request + 96, capacity_mib)
                resources = Resources(request * MIB, limit * MIB if limit is not None else None)
            else:
                resources = Resources()
            members.append(len(containers))
            containers.append(ContainerPlan(p, f"c{c}", resources))
        pods.append(PodPlan(f"r{index:02d}-p{p}", members))
    for pod in pods:
        pod.qos = pod_qos([containers[ci].resources for ci in pod.containers])
        if pod.qos is QosClass.GUARANTEED and any(
            containers[ci].resources.limit_bytes is None for ci in pod.containers
        ):
            pod.qos = QosClass.BURSTABLE  # pragma: no cover - cannot happen (kind decides)
    procs = sum(rng.randint(1, 2) for _ in containers)
    budget = allocatable(capacity_mib * MIB) // MIB - CHARGED_BASE_MIB * (procs + len(pods) + 1) - ROOM_MIB - 24
    sizes = _partition(rng, budget, procs, 12)
    for k, size in enumerate(sizes):
        containers[k % len(containers) if k < len(containers) else rng.randrange(len(containers))].hogs.append(size)
    trigger = rng.randrange(len(containers))
    return RoundPlan(index, "kubepods", pods, containers, trigger, allocatable(capacity_mib * MIB) // MIB, (0, 0))


class _Retry(Exception):
    """This draw cannot make a valid round: draw again."""


def _between(rng: random.Random, low: int, high: int) -> int:
    if low > high:
        raise _Retry()
    return rng.randint(low, high)


def _partition(rng: random.Random, total: int, parts: int, minimum: int) -> list[int]:
    weights = [rng.random() ** 2 + 0.05 for _ in range(parts)]
    scale = sum(weights)
    spare = total - parts * minimum
    sizes = [minimum + int(spare * w / scale) for w in weights]
    return sizes


def plan_rounds(seed: int, count: int, policy: AdjPolicy, capacity_mib: int) -> list[RoundPlan]:
    """``count`` decisive rounds, alternating container- and kubepods-level OOMs."""
    rng = random.Random(seed)
    plans = []
    for index in range(1, count + 1):
        for _attempt in range(20000):
            try:
                plan = _container_round(rng, index) if index % 2 else _kubepods_round(rng, index, capacity_mib)
            except _Retry:
                continue
            if (
                all(c.hogs or plan.kind == "kubepods" for c in plan.containers)
                and _decisive(plan, policy, capacity_mib)
                and _fits(plan)
            ):
                break
        else:  # pragma: no cover - the space of decisive rounds is large
            raise LabRuntimeError(f"no decisive round {index} found for seed {seed}")
        plans.append(plan)
    return plans
