"""oomtop's predicted OOM victim against a real cgroup v2 kernel's choice when tasks hold swap (issue 16).

The VM gets a scratch disk (tests/v2/vm.sh --swap); the module fixture makes it the node's swap device and turns
it off again at the end, so every other guest test keeps a node without swap.  Each round (swapplan.py) builds
pods with kubelet's LimitedSwap ``memory.swap.max`` per container, starts hogs, then has the kernel push part
of every swapping container out to swap (``memory.reclaim`` until its swap allowance is full), so the hogs hold
both rss and swap entries when oomtop samples.  Then:

- oomtop's domain size (``DomainVerdict.totalpages``) must be the kernel's ``mem_cgroup_get_max()``:
  ``memory.max + min(memory.swap.max, SwapTotal)`` of the domain cgroup itself;
- the oracle (tests/realkernel/oracle.py: /proc rss + swap + page tables, the adj bias) must name one winner by
  a clear margin, and oomtop's predicted victim must be the kernel's first kill;
- on the kernel's own figures, the round counts as *decided by swap* when the winner would differ without swap
  in totalpages, or without swap entries in the points (both recorded; the host prints the totals);
- ``oomtop --once --json`` on the first round of each kind: node ``swap_total_bytes``, every cgroup's
  ``swap_bytes`` (memory.swap.current) and every hog's ``swap_bytes`` (VmSwap) and ``memcg_score`` against the
  kernel's figures.

A last test makes the node itself run out (RAM and swap): a global OOM, whose domain is RAM + swap.
``OOMTOP_V2_SWAP_ROUNDS`` sets how many memcg rounds run (default 9).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time

import pytest
import swapplan
from v2lib import MIB, KubeTree, fs, mem_total_bytes, read

from tests.realkernel.kmsg import KmsgReader, collect_kills, pace_oom, parse_kills
from tests.realkernel.oracle import read_proc_memory

SEED = int(os.environ.get("OOMTOP_V2_SEED") or 1)
ROUNDS = int(os.environ.get("OOMTOP_V2_SWAP_ROUNDS") or 9)
SWAP_DEV = os.environ.get("OOMTOP_V2_SWAP_DEV", "")
PAGE = os.sysconf("SC_PAGE_SIZE")
DECISIVE_PAGES = swapplan.MARGIN_PAGES // 2
TRIGGER_SLACK_MIB = 32


def _meminfo() -> dict[str, int]:
    out = {}
    for line in read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0]) * 1024
    return out


@pytest.fixture(scope="module")
def swap_total() -> int:  # type: ignore[misc]
    """Turn the VM's scratch disk on as swap for this module, and off again after it."""
    if os.environ.get("OOMTOP_V2_GUEST") != "1":
        pytest.skip("runs inside the VM booted by tests/test_v2_kernel.py (OOMTOP_V2_GUEST is not set)")
    if not SWAP_DEV or not os.path.exists(SWAP_DEV):
        pytest.fail(f"no swap device in the VM (OOMTOP_V2_SWAP_DEV={SWAP_DEV!r}: vm.sh --swap attaches one)")
    subprocess.run(["mkswap", SWAP_DEV], check=True, capture_output=True)
    subprocess.run(["swapon", SWAP_DEV], check=True, capture_output=True)
    try:
        total = _meminfo()["SwapTotal"]
        swappiness = int(read("/proc/sys/vm/swappiness"))
        assert total > 0 and swappiness > 0, (total, swappiness)  # the kernel adds swap only with swappiness
        yield total
    finally:  # the other guest modules expect a node without swap
        subprocess.run(["swapoff", SWAP_DEV], check=True, capture_output=True)


@pytest.fixture(scope="module")
def collector():  # type: ignore[no-untyped-def]
    from oomtop.collect.collector import Collector, CollectorConfig

    instance = Collector(CollectorConfig())
    yield instance
    instance.close()


def _swap_max(rel: str) -> int | None:
    raw = read(fs(rel) + "/memory.swap.max").strip()
    return None if raw == "max" else int(raw)


def _fill_swap(tree: KubeTree, rel: str, allowance: int) -> None:
    """Have the kernel push this container's anonymous memory out until its swap allowance is (nearly) full, or
    stops growing: then the trigger need not fill it, and the hogs hold swap entries when oomtop samples."""
    deadline = time.monotonic() + 90
    last, still = -1, 0
    while time.monotonic() < deadline:
        held = int(read(fs(rel) + "/memory.swap.current"))
        if held >= allowance - 2 * MIB:
            return
        still = still + 1 if held <= last else 0
        if still >= 5 and held >= allowance // 2:
            return
        last = held
        with contextlib.suppress(OSError):  # EAGAIN: it reclaimed less than asked (the allowance is full, or nearly)
            tree.set(rel, "memory.reclaim", 64 * MIB)
    raise AssertionError(f"{rel}: swap.current {read(fs(rel) + '/memory.swap.current')} never neared {allowance}")


def _build(tree: KubeTree, rnd: swapplan.SwapRound):  # type: ignore[no-untyped-def]
    if rnd.kind == "kubepods":
        tree.build_kubepods(rnd.limit_mib * MIB)
    else:
        tree.build_kubepods()
    pods = []
    for p, (qos, limit) in enumerate(rnd.pods):
        pod = tree.add_pod(qos, None if limit is None else limit * MIB, name=f"pod{p}")
        sandbox, _ = tree.add_sandbox(pod)
        tree.set(sandbox.path, "memory.swap.max", 0)
        pods.append(pod)
    leaves, procs = [], {}
    for ctr in rnd.ctrs:
        leaf = tree.add_container(pods[ctr.pod], ctr.adj, None if ctr.limit_mib is None else ctr.limit_mib * MIB,
                                  name=ctr.name)  # fmt: skip
        tree.set(leaf.path, "memory.swap.max", ctr.swap_bytes)
        leaves.append(leaf)
    for c, ctr in enumerate(rnd.ctrs):
        # the largest first: its pages are the oldest, so reclaim swaps them out first and it ends up with less rss
        # than its points suggest (where a model counting rss alone would choose another)
        for h in sorted(range(len(ctr.hogs)), key=lambda h: -ctr.hogs[h][0]):
            mib, adj = ctr.hogs[h]
            procs[(c, h)] = tree.start(leaves[c], mib, adj, name=f"{ctr.name}-h{h}")
    for c, ctr in enumerate(rnd.ctrs):
        if ctr.swap_bytes:
            _fill_swap(tree, leaves[c].path, ctr.swap_bytes)
    for proc in procs.values():
        proc.sync_rss()
    domain = {"container": lambda: leaves[rnd.domain_ctr].path, "pod": lambda: pods[rnd.domain_pod].path}.get(
        rnd.kind, lambda: tree.kubepods
    )()
    trigger_leaf = next(leaves[c] for c, ctr in enumerate(rnd.ctrs) if ctr.trigger_home)
    return domain, procs, trigger_leaf


def _push(tree: KubeTree, leaf, cap_mib: int, ours: set[int], timeout: float, adj: int = -1000):  # type: ignore[no-untyped-def]
    """Grow a trigger (by default adj -1000: never chosen) in ``leaf`` until the kernel kills one of ``ours``, then
    kill the trigger at once, so the OOM killer is not driven on to other tasks; the kernel's decisions about
    ``ours``."""
    with KmsgReader() as kmsg:
        trigger = tree.start_trigger(leaf, cap_mib, adj=adj, name="trigger")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and trigger.alive():
            kmsg.read_new()
            if any(k.pid in ours for k in parse_kills(kmsg.lines)):
                break
            time.sleep(0.005)
        trigger.kill()
        return [k for k in collect_kills(kmsg, 1, 10.0) if k.pid in ours]


def _winner(points: dict[int, int]) -> tuple[int, int]:
    """The oracle's choice and its lead over the runner-up."""
    ranked = sorted(points.items(), key=lambda item: item[1], reverse=True)
    return ranked[0][0], ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else 0)


def _check_json(tree: KubeTree, procs: dict, domain: str, totalpages: int) -> list[str]:  # type: ignore[type-arg]
    """``oomtop --once --json`` against the kernel's swap figures, read right after it."""
    done = subprocess.run([sys.executable, "-m", "oomtop", "--once", "--json"], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip
    doc = json.loads(done.stdout)
    problems = []
    swap_total = _meminfo()["SwapTotal"]
    if doc["node"]["swap_total_bytes"] != swap_total:
        problems.append(f"node swap_total_bytes {doc['node']['swap_total_bytes']} != SwapTotal {swap_total}")
    cgroups = {c["path"]: c for c in doc["cgroups"]}
    for rel in tree.created:
        got = cgroups.get(rel, {}).get("swap_bytes")
        want = int(read(fs(rel) + "/memory.swap.current"))
        if got != want:
            problems.append(f"{rel}: swap_bytes {got} != memory.swap.current {want}")
    tasks = {t["pid"]: t for t in doc["tasks"]}
    for proc in procs.values():
        kernel = read_proc_memory(proc.pid)
        got = tasks.get(proc.pid, {})
        if got.get("swap_bytes") != kernel.swap_kb * 1024:
            problems.append(f"pid {proc.pid}: swap_bytes {got.get('swap_bytes')} != VmSwap {kernel.swap_kb} kB")
        if got.get("memcg_domain") == domain:
            score = kernel.points(totalpages) * 1000 // totalpages
            if got.get("memcg_score") != score:
                problems.append(f"pid {proc.pid}: memcg_score {got.get('memcg_score')} != kernel's {score}")
    return problems


@pytest.mark.parametrize("index", range(ROUNDS), ids=[swapplan.round_id(i) for i in range(ROUNDS)])
def test_swap_round(index: int, swap_total: int, collector, record_property) -> None:  # type: ignore[no-untyped-def]
    from oomtop.rank import predict

    rnd = swapplan.make_round(SEED, index, mem_total_bytes(), swap_total)
    print(rnd.describe())
    outcome: dict = {"round": swapplan.round_id(index), "seed": SEED, "kind": rnd.kind, "ran": False}
    record_property("swap_round", outcome)
    with KubeTree(rnd.naming) as tree:
        domain, procs, trigger_leaf = _build(tree, rnd)
        sample = collector.sample()
        verdict = predict(sample).by_domain.get(domain)

        limit = int(read(fs(domain) + "/memory.max"))
        own_swap = _swap_max(domain)
        allowance = swap_total if own_swap is None else min(own_swap, swap_total)
        totalpages = limit // PAGE + allowance // PAGE  # mem_cgroup_get_max(), written out here
        in_domain = {p.pid: p for p in procs.values() if p.cgroup == domain or p.cgroup.startswith(domain + "/")}
        kernel = {pid: read_proc_memory(pid) for pid in in_domain}
        points = {pid: memory.points(totalpages) for pid, memory in kernel.items()}
        expected, lead = _winner(points)
        no_swap_in_size = _winner({pid: memory.points(limit // PAGE) for pid, memory in kernel.items()})[0]
        no_swapents = _winner({pid: points[pid] - memory.swap_kb * 1024 // PAGE for pid, memory in kernel.items()})[0]
        held = {pid: (m.rss_kb // 1024, m.swap_kb // 1024) for pid, m in kernel.items()}
        design = f"{rnd.describe()}\n  kernel: totalpages {totalpages}, points {points}, (rss, swap) MiB {held}"
        assert sum(m.swap_kb for m in kernel.values()) > 0, f"no hog holds swap:\n{design}"
        assert lead >= DECISIVE_PAGES, f"round not decisive on the kernel's figures (lead {lead}):\n{design}"
        assert verdict is not None and verdict.victim is not None, f"no verdict for {domain}:\n{design}"
        assert verdict.totalpages == totalpages, (
            f"oomtop sizes {domain} at {verdict.totalpages} pages, mem_cgroup_get_max() at {totalpages}:\n{design}"
        )
        if index < 3:
            problems = _check_json(tree, procs, domain, totalpages)
            assert not problems, "oomtop --once --json disagrees with the kernel:\n" + "\n".join(problems)

        pace_oom()
        current = int(read(fs(domain) + "/memory.current"))
        kills = _push(tree, trigger_leaf, (limit - current) // MIB + TRIGGER_SLACK_MIB, set(in_domain), 120.0)
        report = f"{design}\n  oomtop: victim {verdict.victim.pid}, candidates " + ", ".join(
            f"({c.task.pid}, {c.points})" for c in verdict.candidates
        )
        outcome.update(
            ran=bool(kills),
            domain=domain,
            predicted=verdict.victim.pid,
            kernel_victims=[k.pid for k in kills],
            oracle=expected,
            totalpages=totalpages,
            totalpages_without_swap=limit // PAGE,
            flip_totalpages=bool(kills) and no_swap_in_size != kills[0].pid,
            flip_swapents=bool(kills) and no_swapents != kills[0].pid,
            swap_held_mib={str(pid): swap for pid, (_, swap) in held.items()},
        )
        outcome["decided_by_swap"] = outcome["flip_totalpages"] or outcome["flip_swapents"]
        assert kills, f"the kernel log shows no OOM kill of ours:\n{report}"
        outcome["victim_right"] = kills[0].pid == verdict.victim.pid
        if kills[0].oom_memcg is not None:
            assert kills[0].oom_memcg == domain, f"the kernel's domain is {kills[0].oom_memcg}:\n{report}"
        assert kills[0].pid == expected, f"the oracle expected {expected}, the kernel chose {kills[0].pid}:\n{report}"
        assert verdict.victim.pid == kills[0].pid, (
            f"oomtop predicted {verdict.victim.pid}, the kernel killed {kills[0].pid}:\n{report}"
        )


def test_node_oom_with_swap(swap_total: int, collector, record_property) -> None:  # type: ignore[no-untyped-def]
    """The node itself runs out of RAM and swap: a global OOM, whose domain is RAM + swap (``totalram_pages() +
    total_swap_pages``).  Two Burstable pods with LimitedSwap and BestEffort-free adj values are drawn so that
    the adj weight of the larger domain decides: without swap in totalpages the other hog would be chosen.  This
    test process and its shells run at adj -1000, and the trigger (adj 0, far too small to be the first choice) is
    killed the moment the kernel has chosen, so the kernel's choice is among the hogs and the guest session
    survives the global OOM."""
    from oomtop.rank import global_totalpages, predict

    mem = _meminfo()
    ram_pages = mem["MemTotal"] // PAGE
    totalpages = ram_pages + swap_total // PAGE
    unit, unit_without = totalpages // 1000, ram_pages // 1000
    # hog a: bigger, lower adj; hog b: smaller, adj +40; b wins only with swap counted in the domain
    size_b, adj_a, adj_b = 48, 900, 940
    gap_pages = (adj_b - adj_a) * (unit + unit_without) // 2  # halfway between the two weights of 40 adj points
    size_a = size_b + gap_pages // swapplan.PAGES_PER_MIB
    assert adj_b * unit > ram_pages, "design: a trigger at adj 0 holding all RAM must still weigh less than b"
    outcome: dict = {"round": "node", "kind": "node", "ran": False, "seed": SEED}
    record_property("swap_round", outcome)
    saved = _protect_ancestors()
    try:
        with KubeTree("cgroupfs") as tree:
            tree.build_kubepods()
            pod_a = tree.add_pod("burstable", name="a")
            pod_b = tree.add_pod("burstable", name="b")
            pod_t = tree.add_pod("guaranteed", name="push")
            leaf_a = tree.add_container(pod_a, adj_a, name="a")
            leaf_b = tree.add_container(pod_b, adj_b, name="b")
            leaf_t = tree.add_container(pod_t, -997, name="push")
            for leaf in (leaf_a, leaf_b, leaf_t):
                tree.set(leaf.path, "memory.swap.max", 16 * MIB if leaf is not leaf_t else 0)
            a = tree.start(leaf_a, size_a, name="hog-a")
            b = tree.start(leaf_b, size_b, name="hog-b")
            for leaf in (leaf_a, leaf_b):
                _fill_swap(tree, leaf.path, 16 * MIB)
            a.sync_rss()
            b.sync_rss()
            sample = collector.sample()
            prediction = predict(sample)
            assert prediction.node.totalpages == global_totalpages(sample) == totalpages
            every = {}
            for name in os.listdir("/proc"):
                if name.isdigit() and name != "1":
                    try:
                        memory = read_proc_memory(int(name))
                    except (OSError, ValueError, KeyError):
                        continue
                    if memory.oom_score_adj != -1000 and (memory.rss_kb or memory.swap_kb):
                        every[int(name)] = memory
            points = {pid: memory.points(totalpages) for pid, memory in every.items()}
            expected, lead = _winner(points)
            without = _winner({pid: memory.points(ram_pages) for pid, memory in every.items()})[0]
            design = f"a {a.pid} {size_a} MiB adj {adj_a}, b {b.pid} {size_b} MiB adj {adj_b}; top points " + str(
                sorted(points.items(), key=lambda item: -item[1])[:4]
            )
            assert expected == b.pid and without == a.pid and lead >= DECISIVE_PAGES, design
            victim = prediction.node.victim
            assert victim is not None, design
            pace_oom()
            free = _meminfo()
            cap = (free["MemTotal"] + free["SwapTotal"]) // MIB  # more than it can ever get: the OOM comes first
            # The trigger at adj 0 is never the first choice (it cannot hold the ~2.3 GiB it would take to outweigh
            # b's adj), but it is eligible: should it outgrow the kill (this process, swapped out under the
            # pressure, may react late), the kernel ends the cascade with it instead of finding nothing to kill.
            kills = _push(tree, leaf_t, cap, {a.pid, b.pid}, 400.0, adj=0)
            outcome.update(
                ran=bool(kills),
                predicted=victim.pid,
                kernel_victims=[k.pid for k in kills],
                totalpages=totalpages,
                flip_totalpages=bool(kills) and without != kills[0].pid,
                flip_swapents=False,
            )
            outcome["decided_by_swap"] = outcome["flip_totalpages"]
            assert kills, f"no global OOM kill of a or b in the kernel log ({design})"
            outcome["victim_right"] = kills[0].pid == victim.pid
            assert not kills[0].memcg_oom, f"a memcg OOM, not the node's: {kills[0].text}"
            assert kills[0].pid == expected, f"the kernel chose {kills[0].pid}, the oracle {expected} ({design})"
            assert victim.pid == kills[0].pid, f"oomtop predicted {victim.pid}, the kernel chose {kills[0].pid}"
    finally:
        for pid, adj in saved.items():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/oom_score_adj", "w", encoding="ascii") as handle:
                handle.write(str(adj))


def _protect_ancestors() -> dict[int, int]:
    """adj -1000 for this process and every ancestor up to init (the shells that run the guest session): a
    global OOM must not end the session.  Returns the values to restore."""
    saved = {}
    pid = os.getpid()
    while pid > 1:
        saved[pid] = int(read(f"/proc/{pid}/oom_score_adj"))
        with open(f"/proc/{pid}/oom_score_adj", "w", encoding="ascii") as handle:
            handle.write("-1000")
        pid = int(read(f"/proc/{pid}/stat").rsplit(")", 1)[1].split()[1])
    return saved
