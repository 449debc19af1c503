"""Seeded OOM rounds with swap for the v2 tier: Kubernetes' ``LimitedSwap`` on a node with a swap device.

kubelet's NodeSwap ``LimitedSwap`` gives each Burstable container ``memory.swap.max = request / node memory *
swap`` (pkg/kubelet/cm/...: ``int64(float64(request)/float64(capacity)*float64(swapCapacity))``), and 0 to
Guaranteed and BestEffort containers (and to one whose request equals its limit); pods, QoS levels and kubepods
keep ``max``.  The kernel sizes a memcg OOM domain as ``memory.max + min(memory.swap.max of that cgroup, total
swap)`` (mm/memcontrol.c ``mem_cgroup_get_max()``, 6.1: ``max += min(READ_ONCE(memcg->swap.max),
total_swap_pages)`` while swappiness is not 0) and counts a task's swap entries in its points
(mm/oom_kill.c ``oom_badness()``).  So a pod- or kubepods-level domain is ``limit + all the swap`` even though no
container may use that much, and one adj point weighs accordingly more.

A round fills its domain with hogs whose points (rss + swap + page tables + adj * totalpages/1000) do not depend
on how much of them is swapped out, and keeps only rounds whose winner leads by ``MARGIN_PAGES``.  Half of the
rounds are drawn so that the winner *without* swap in totalpages would be another task (adj differences
weighted by the smaller domain), so swap has to be modelled to get them right; the test also counts, on the
kernel's own figures, how many rounds a model ignoring swap entries would have got wrong.

The trigger that pushes the domain over runs with adj -1000 (as a node agent may: it is never chosen, and its
size cannot take part) in a container without swap, so its cap can be generous.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from plan import HOG_OVERHEAD_PAGES, MARGIN_PAGES, PAGES_PER_MIB, kubelet_adj

MIB = 1 << 20


def kind_of(index: int) -> str:
    return ("container", "pod", "kubepods")[index % 3]


def naming_of(index: int) -> str:
    return ("cgroupfs", "systemd")[(index // 3) % 2]


def round_id(index: int) -> str:
    return f"swap{index:02d}-{kind_of(index)}-{naming_of(index)}"


def limited_swap_bytes(qos: str, request_mib: int, limit_mib: int | None, capacity: int, swap_total: int) -> int:
    """kubelet's LimitedSwap allowance for one container, rounded down to a page (the kernel does too)."""
    if qos != "burstable" or request_mib <= 0 or (limit_mib is not None and limit_mib == request_mib):
        return 0
    return int(request_mib * MIB / capacity * swap_total) // 4096 * 4096


@dataclass
class Ctr:
    pod: int
    name: str
    qos: str
    request_mib: int
    adj: int
    swap_bytes: int
    limit_mib: int | None = None
    hogs: list[list[int]] = field(default_factory=list)  # [MiB, adj] per process
    trigger_home: bool = False


@dataclass
class SwapRound:
    index: int
    seed: int
    kind: str
    naming: str
    limit_mib: int  # the domain's memory.max
    swap_total: int  # bytes of swap on the node
    pods: list[tuple[str, int | None]] = field(default_factory=list)  # (qos, limit MiB)
    ctrs: list[Ctr] = field(default_factory=list)
    domain_ctr: int = 0
    domain_pod: int = 0
    estimate: dict[tuple[int, int], int] = field(default_factory=dict)
    winner: tuple[int, int] = (-1, -1)
    lead: int = 0
    flip_designed: bool = False

    def domain_swap_bytes(self) -> int:
        """The swap the domain's own swap.max lets the kernel add (capped by the node's)."""
        if self.kind == "container":
            return min(self.ctrs[self.domain_ctr].swap_bytes, self.swap_total)
        return self.swap_total  # pods, QoS levels and kubepods keep swap.max = max

    @property
    def totalpages(self) -> int:
        return self.limit_mib * PAGES_PER_MIB + self.domain_swap_bytes() // 4096

    @property
    def totalpages_without_swap(self) -> int:
        return self.limit_mib * PAGES_PER_MIB

    def in_domain(self, c: int) -> bool:
        if self.kind == "container":
            return c == self.domain_ctr
        if self.kind == "pod":
            return self.ctrs[c].pod == self.domain_pod
        return True

    def domain_hogs(self) -> list[tuple[int, int]]:
        return [(c, h) for c, ctr in enumerate(self.ctrs) if self.in_domain(c) for h in range(len(ctr.hogs))]

    def describe(self) -> str:
        lines = [
            f"{round_id(self.index)} (seed {self.seed}): domain memory.max {self.limit_mib} MiB + swap "
            f"{self.domain_swap_bytes() / MIB:.1f} MiB -> totalpages {self.totalpages} (adj weight "
            f"{self.totalpages // 1000}; without swap {self.totalpages_without_swap // 1000}); expected winner ctr "
            f"{self.winner[0]} hog {self.winner[1]} by {self.lead} pages; flip designed {self.flip_designed}"
        ]
        for p, (qos, limit) in enumerate(self.pods):
            lines.append(f"  pod {p}: {qos}, limit {limit}")
        for c, ctr in enumerate(self.ctrs):
            lines.append(
                f"  ctr {c} {ctr.name} (pod {ctr.pod}, {ctr.qos}, request {ctr.request_mib} MiB, adj {ctr.adj}, "
                f"swap.max {ctr.swap_bytes / MIB:.1f} MiB, limit {ctr.limit_mib}"
                f"{', trigger' if ctr.trigger_home else ''}{', in domain' if self.in_domain(c) else ''}): "
                + ", ".join(f"{mib} MiB adj {adj}" for mib, adj in ctr.hogs)
            )
        return "\n".join(lines)


def estimate_points(mib: int, adj: int, totalpages: int) -> int:
    """rss + swap of a hog (the same however it is split), its overhead and page tables, and the adj bias."""
    return mib * PAGES_PER_MIB + HOG_OVERHEAD_PAGES + mib // 2 + adj * (totalpages // 1000)


def _burstable(rng: random.Random, pod: int, name: str, capacity: int, swap_total: int, lo: int, hi: int) -> Ctr:
    request = rng.randint(lo, hi)
    adj = kubelet_adj("burstable", request, capacity)
    return Ctr(
        pod, name, "burstable", request, adj, limited_swap_bytes("burstable", request, None, capacity, swap_total)
    )


def _hogs(rng: random.Random, ctr: Ctr, sizes: list[int]) -> None:
    for mib in sizes:
        adj = ctr.adj
        if adj < 1000 and rng.random() < 0.35:  # a process that raised its own adj (allowed without privilege)
            adj = rng.randint(adj, 1000)
        ctr.hogs.append([mib, adj])


def _swap_fits(rnd: SwapRound) -> bool:
    """Every container with swap must hold more anonymous memory than its swap.max (so reclaim fills its swap
    allowance and the trigger need not), and at least one hog in the domain must be able to swap."""
    for ctr in rnd.ctrs:
        anon = sum(mib for mib, _ in ctr.hogs) * MIB
        if ctr.swap_bytes and anon < ctr.swap_bytes + 8 * MIB:
            return False
    return any(rnd.ctrs[c].swap_bytes for c, _ in rnd.domain_hogs())


def _container(rng: random.Random, rnd: SwapRound, capacity: int) -> None:
    rnd.limit_mib = rng.randint(64, 112)
    rnd.pods = [("burstable", None)]
    # requests whose LimitedSwap share is 12-28 MiB of this node's swap
    per_mib = rnd.swap_total / capacity
    ctr = _burstable(rng, 0, "app", capacity, rnd.swap_total, max(8, int(12 * MIB / per_mib / MIB)),
                     max(9, int(28 * MIB / per_mib / MIB)))  # fmt: skip
    ctr.limit_mib = rnd.limit_mib
    ctr.trigger_home = True
    budget = rnd.limit_mib - rng.randint(6, 12)
    swap_mib = ctr.swap_bytes // MIB
    if swap_mib >= 12 and rng.random() < 0.7:
        # a close pair: the larger (started first, so swapped out first) leads by less than it will hold in swap,
        # so by rss alone the smaller would be chosen -- only its swap entries make it the kernel's victim
        lead = rng.randint(6, swap_mib - 4)
        small = (budget - lead) // 2
        ctr.hogs = [[small + lead, ctr.adj], [small, ctr.adj]]
    else:
        count = rng.randint(2, 3)
        cuts = sorted(rng.sample(range(8, budget - 8), count - 1))
        sizes = [b - a for a, b in zip([0, *cuts], [*cuts, budget], strict=True)]
        _hogs(rng, ctr, [max(8, s) for s in sizes])
    rnd.ctrs = [ctr]
    rnd.domain_ctr = 0


def _pod(rng: random.Random, rnd: SwapRound, capacity: int) -> None:
    rnd.limit_mib = rng.randint(96, 160)
    rnd.pods = [("burstable", rnd.limit_mib)]
    per_mib = rnd.swap_total / capacity
    k = rng.randint(2, 3)
    budget = rnd.limit_mib - rng.randint(8, 14)
    shares = [rng.random() + 0.2 for _ in range(k)]
    for c in range(k):
        ctr = _burstable(rng, 0, f"c{c}", capacity, rnd.swap_total, 8, max(9, int(20 * MIB / per_mib / MIB)))
        mib = max(12, int(budget * shares[c] / sum(shares)))
        _hogs(rng, ctr, [mib] if rng.random() < 0.6 else [mib // 2, mib - mib // 2])
        rnd.ctrs.append(ctr)
    # the trigger's home: no request, so no swap (and adj 999, which the trigger's own -1000 overrides)
    rnd.ctrs.append(Ctr(0, "push", "burstable", 0, 999, 0, trigger_home=True))
    rnd.domain_pod = 0


def _kubepods(rng: random.Random, rnd: SwapRound, capacity: int) -> None:
    rnd.limit_mib = rng.randint(144, 208)
    rnd.pods = [("guaranteed", rnd.limit_mib), ("burstable", None), ("besteffort", None)]
    if rng.random() < 0.5:
        rnd.pods.append(("burstable", None))
    per_mib = rnd.swap_total / capacity
    rnd.ctrs.append(Ctr(0, "push", "guaranteed", rnd.limit_mib, -997, 0, rnd.limit_mib, trigger_home=True))
    budget = rnd.limit_mib - rng.randint(10, 16)
    hosts: list[Ctr] = []
    for p, (qos, _) in enumerate(rnd.pods[1:], start=1):
        for c in range(1 if qos == "besteffort" else rng.randint(1, 2)):
            if qos == "besteffort":
                hosts.append(Ctr(p, f"p{p}c{c}", qos, 0, 1000, 0))
            else:
                hosts.append(
                    _burstable(rng, p, f"p{p}c{c}", capacity, rnd.swap_total, 8, max(9, int(20 * MIB / per_mib / MIB)))
                )
    shares = [rng.random() + 0.2 for _ in hosts]
    for ctr, share in zip(hosts, shares, strict=True):
        _hogs(rng, ctr, [max(12, int(budget * share / sum(shares)))])
    rnd.ctrs.extend(hosts)


def _decide(rnd: SwapRound) -> bool:
    def ranked(totalpages: int) -> list[tuple[tuple[int, int], int]]:
        points = {
            (c, h): estimate_points(rnd.ctrs[c].hogs[h][0], rnd.ctrs[c].hogs[h][1], totalpages)
            for c, h in rnd.domain_hogs()
        }
        return sorted(points.items(), key=lambda item: item[1], reverse=True)

    with_swap = ranked(rnd.totalpages)
    rnd.estimate = dict(with_swap)
    rnd.winner = with_swap[0][0]
    rnd.lead = with_swap[0][1] - with_swap[1][1] if len(with_swap) > 1 else with_swap[0][1]
    without = ranked(rnd.totalpages_without_swap)
    rnd.flip_designed = without[0][0] != rnd.winner and without[0][1] - without[1][1] >= MARGIN_PAGES // 2
    return len(with_swap) > 1 and rnd.lead >= MARGIN_PAGES


def make_round(seed: int, index: int, capacity: int, swap_total: int) -> SwapRound:
    """Round ``index`` of ``seed``: decisive; every other round one that swap decides by design."""
    rng = random.Random(f"swap:{seed}:{index}")
    build = {"container": _container, "pod": _pod, "kubepods": _kubepods}[kind_of(index)]
    want_flip = index % 2 == 0
    fallback = None
    for attempt in range(4000):
        rnd = SwapRound(index, seed, kind_of(index), naming_of(index), 0, swap_total)
        build(rng, rnd, capacity)
        if not _swap_fits(rnd) or not _decide(rnd):
            continue
        if rnd.flip_designed == want_flip or attempt > 3000:
            return rnd
        fallback = fallback or rnd
    if fallback is not None:
        return fallback
    raise AssertionError(f"no decisive swap round for index {index} (seed {seed})")
