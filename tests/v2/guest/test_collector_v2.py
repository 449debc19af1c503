"""The collector on a real cgroup v2 kernel: every figure as the kernel's files report it.

A kubepods tree (a Guaranteed, a Burstable and a BestEffort pod, each with its pause sandbox) is built in
kubelet's cgroupfs naming and in its systemd naming (with containerd bundles, so names and the sandbox flag come
from node metadata), filled with hogs carrying kubelet's real oom_score_adj values (negative ones included),
and sampled by a fresh collector, then again after OOM kills, a memory.high breach and changed limits.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from figures import sample_against_kernel, snaps
from v2lib import (
    BESTEFFORT_ADJ,
    GUARANTEED_ADJ,
    MIB,
    PAGE_SIZE,
    KubeTree,
    fs,
    kubelet_adj,
    mem_total_bytes,
    read,
    read_kv,
)

from tests.realkernel.kmsg import pace_oom
from tests.realkernel.oracle import read_proc_memory

NAMINGS = ["cgroupfs", "systemd"]
REQUESTS_MIB = {"nginx": 256, "sidecar": 32}  # the Burstable containers' memory requests


def _build(tree: KubeTree):  # type: ignore[no-untyped-def]
    """The shared tree; returns (leaves by role, processes by role)."""
    capacity = mem_total_bytes()
    tree.build_kubepods(limit=1024 * MIB)
    g = tree.add_pod("guaranteed", limit=160 * MIB, name="db")
    g_sandbox, g_pause = tree.add_sandbox(g)
    g1 = tree.add_container(g, GUARANTEED_ADJ, limit=96 * MIB, oom_group=True, name="postgres")
    b = tree.add_pod("burstable", high=200 * MIB, name="web")  # no pod limit: b1 has none of its own
    b_sandbox, b_pause = tree.add_sandbox(b)
    b1 = tree.add_container(
        b, kubelet_adj("burstable", REQUESTS_MIB["nginx"] * MIB, capacity), high=64 * MIB, name="nginx"
    )
    b2 = tree.add_container(
        b, kubelet_adj("burstable", REQUESTS_MIB["sidecar"] * MIB, capacity), limit=40 * MIB, name="sidecar"
    )
    e = tree.add_pod("besteffort", name="batch")
    e_sandbox, e_pause = tree.add_sandbox(e)
    e1 = tree.add_container(e, BESTEFFORT_ADJ, name="job")
    procs = {
        "g_pause": g_pause,
        "b_pause": b_pause,
        "e_pause": e_pause,
        "g1a": tree.start(g1, 16, name="postgres"),
        "g1b": tree.start(g1, 8, name="pg-writer"),
        "b1": tree.start(b1, 12, name="nginx"),
        "b2": tree.start(b2, 8, name="envoy"),
        "e1": tree.start(e1, 8, name="job"),
    }
    leaves = {
        "g_sandbox": g_sandbox,
        "g1": g1,
        "b_sandbox": b_sandbox,
        "b1": b1,
        "b2": b2,
        "e_sandbox": e_sandbox,
        "e1": e1,
    }
    return leaves, procs


def _task_problems(sample, procs) -> list[str]:  # type: ignore[no-untyped-def]
    from oomtop.rank import badness_points, global_totalpages, proc_oom_score

    problems = []
    tasks = {t.pid: t for t in sample.tasks}
    totalpages = global_totalpages(sample)
    for proc in procs:
        if not proc.alive():
            continue
        task = tasks.get(proc.pid)
        label = f"{proc.name} pid {proc.pid} ({proc.mib} MiB, adj {proc.adj})"
        if task is None:
            problems.append(f"{label}: missing from sample.tasks")
            continue
        kernel = read_proc_memory(proc.pid)
        if task.cgroup != proc.cgroup:
            problems.append(f"{label}: cgroup {task.cgroup!r}, expected {proc.cgroup!r}")
        if task.comm != proc.name:
            problems.append(f"{label}: comm {task.comm!r}")
        if task.oom_score_adj != kernel.oom_score_adj or task.oom_score_adj != proc.adj:
            problems.append(f"{label}: oom_score_adj {task.oom_score_adj}, /proc says {kernel.oom_score_adj}")
        if task.oom_score != kernel.oom_score:
            problems.append(f"{label}: oom_score {task.oom_score}, /proc/{proc.pid}/oom_score {kernel.oom_score}")
        for name, got, want_kb in (
            ("rss_anon_bytes", task.rss_anon_bytes, kernel.rss_anon_kb),
            ("rss_file_bytes", task.rss_file_bytes, kernel.rss_file_kb),
            ("rss_shmem_bytes", task.rss_shmem_bytes, kernel.rss_shmem_kb),
            ("pgtables_bytes", task.pgtables_bytes, kernel.pte_kb),
            ("swap_bytes", task.swap_bytes, kernel.swap_kb),
        ):
            if abs(got - want_kb * 1024) > 256 * 1024:
                problems.append(f"{label}: {name} {got}, /proc/{proc.pid}/status {want_kb} kB")
        # 6.1 still caches rss deltas per task (SPLIT_RSS_COUNTING, up to 64 events): allow that lag.
        if task.rss_anon_bytes < proc.mib * MIB - 64 * PAGE_SIZE:
            problems.append(f"{label}: rss_anon_bytes {task.rss_anon_bytes} below the {proc.mib} MiB it touched")
        computed = proc_oom_score(badness_points(task, totalpages, sample.node.page_size), totalpages)
        if computed != kernel.oom_score:  # exact: C division truncates toward zero for the negative adj values
            problems.append(
                f"{label}: proc_oom_score(badness_points()) = {computed}, kernel's oom_score "
                f"{kernel.oom_score} (global totalpages {totalpages})"
            )
    return problems


def _identity_problems(sample, tree: KubeTree) -> list[str]:  # type: ignore[no-untyped-def]
    from oomtop.model import CgroupKind, QosClass

    qos_of = {"guaranteed": QosClass.GUARANTEED, "burstable": QosClass.BURSTABLE, "besteffort": QosClass.BEST_EFFORT}
    by_path = {c.path: c for c in sample.cgroups}
    problems = []

    def check(rel: str, what: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{rel}: identity {what} {got!r}, expected {want!r}")

    check(tree.kubepods, "kind", by_path[tree.kubepods].identity.kind, CgroupKind.KUBEPODS)
    for qos in ("burstable", "besteffort"):
        rel = tree.qos_dir(qos)
        check(rel, "kind", by_path[rel].identity.kind, CgroupKind.QOS)
        check(rel, "qos", by_path[rel].identity.qos, qos_of[qos])
    pods = {leaf.pod.path: leaf.pod for leaf in tree.leaves.values()}
    for rel, pod in pods.items():
        ident = by_path[rel].identity
        check(rel, "kind", ident.kind, CgroupKind.POD)
        check(rel, "qos", ident.qos, qos_of[pod.qos])
        check(rel, "pod.uid", ident.pod and ident.pod.uid, pod.uid)
        if tree.bundles:
            check(rel, "pod.name", ident.pod and ident.pod.name, pod.name)
            check(rel, "pod.namespace", ident.pod and ident.pod.namespace, "v2-tier")
    for rel, leaf in tree.leaves.items():
        ident = by_path[rel].identity
        sandbox_known = tree.bundles and leaf.sandbox
        check(rel, "kind", ident.kind, CgroupKind.SANDBOX if sandbox_known else CgroupKind.CONTAINER)
        check(rel, "qos", ident.qos, qos_of[leaf.pod.qos])
        check(rel, "pod.uid", ident.pod and ident.pod.uid, leaf.pod.uid)
        check(rel, "container.id", ident.container and ident.container.id, leaf.cid)
        check(
            rel,
            "container.runtime",
            ident.container and ident.container.runtime,
            "containerd" if tree.naming == "systemd" else None,
        )
        check(rel, "container.is_sandbox", ident.container and ident.container.is_sandbox, bool(sandbox_known))
        if tree.bundles and not leaf.sandbox:
            check(rel, "container.name", ident.container and ident.container.name, leaf.name)
    return problems


def _node_problems(sample) -> list[str]:  # type: ignore[no-untyped-def]
    node = sample.node
    problems = []
    if (node.cgroup_version, node.cgroup_layout) != (2, "v2"):
        problems.append(f"node: cgroup_version {node.cgroup_version}, layout {node.cgroup_layout}; expected 2, v2")
    if node.mem_total_bytes != mem_total_bytes():
        problems.append(f"node: mem_total_bytes {node.mem_total_bytes}, MemTotal {mem_total_bytes()}")
    if node.page_size != PAGE_SIZE or node.swap_total_bytes != 0:
        problems.append(f"node: page_size {node.page_size}, swap_total_bytes {node.swap_total_bytes}")
    return problems


def _json_problems(tree: KubeTree, procs) -> list[str]:  # type: ignore[no-untyped-def]
    """`python -m oomtop --once --json`: node, every container's oom_score_adj (expected by kubelet's policy,
    actual, implied request range) and every task's adj, as the kernel has them."""
    done = subprocess.run(
        [sys.executable, "-m", "oomtop", "--once", "--json"], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        return [f"exit status {done.returncode}: {done.stderr[-2000:]}"]
    doc = json.loads(done.stdout)
    problems = []
    if (doc["node"]["cgroup_version"], doc["node"]["cgroup_layout"]) != (2, "v2"):
        problems.append(f"node cgroup_version/layout {doc['node']['cgroup_version']}/{doc['node']['cgroup_layout']}")
    by_path = {c["path"]: c for c in doc["cgroups"]}
    capacity = mem_total_bytes()
    for rel, leaf in tree.leaves.items():
        cg = by_path.get(rel)
        if cg is None:
            problems.append(f"{rel}: missing")
            continue
        if leaf.sandbox:
            continue
        adj = cg.get("oom_score_adj") or {}
        expected = {"guaranteed": GUARANTEED_ADJ, "besteffort": BESTEFFORT_ADJ, "burstable": None}[leaf.pod.qos]
        if adj.get("actual") != leaf.adj or adj.get("expected") != expected:
            problems.append(f"{rel} ({leaf.name}): oom_score_adj {adj}, expected {expected}, actual {leaf.adj}")
        if leaf.pod.qos == "burstable":
            request = REQUESTS_MIB[leaf.name] * MIB
            implied = adj.get("implied_request_bytes")
            if not implied or not implied[0] <= request <= implied[1]:
                problems.append(
                    f"{rel} ({leaf.name}): implied_request_bytes {implied} does not hold its request "
                    f"{request} (adj {leaf.adj} = kubelet_adj(burstable, {request}, {capacity}))"
                )
    tasks = {t["pid"]: t for t in doc["tasks"]}
    for proc in procs.values():
        if proc.alive() and (proc.pid not in tasks or tasks[proc.pid]["oom_score_adj"] != proc.adj):
            problems.append(f"task {proc.pid} ({proc.name}): {tasks.get(proc.pid)}, adj should be {proc.adj}")
    return problems


def _oom_in(tree: KubeTree, leaf, cap_mib: int) -> None:  # type: ignore[no-untyped-def]
    """Push ``leaf`` over its memory.max with a trigger and wait for the kernel to kill something there."""
    before = read_kv(fs(leaf.path) + "/memory.events")["oom_kill"]
    pace_oom()
    trigger = tree.start_trigger(leaf, cap_mib, name="trigger")
    deadline = time.monotonic() + 60
    while read_kv(fs(leaf.path) + "/memory.events")["oom_kill"] == before:
        assert time.monotonic() < deadline, f"no OOM kill in {leaf.path} within 60 s"
        time.sleep(0.05)
    trigger.status(timeout=10)  # the trigger is the biggest task there: it is the one killed


def _breach_high(tree: KubeTree, leaf) -> None:  # type: ignore[no-untyped-def]
    """Set memory.high just above the usage and allocate 1 MiB past it: the kernel counts "high" events and
    reclaims (PSI).  The overage stays under ~9%, where the kernel's over-high penalty is below HZ/100 per
    fault and so not slept: a bigger one throttles every page by milliseconds (seconds per MiB in the VM)."""
    current = int(read(fs(leaf.path) + "/memory.current"))
    tree.set(leaf.path, "memory.high", current + MIB // 2)
    trigger = tree.start_trigger(leaf, 1, name="over-high")
    assert trigger.wait_for(b"D", 120.0) == b"D", "the memory.high trigger did not reach its cap"


@pytest.mark.parametrize("naming", NAMINGS)
def test_figures(naming: str, new_collector, record_property) -> None:  # type: ignore[no-untyped-def]
    from oomtop.rank import predict

    with KubeTree(naming, bundles=naming == "systemd") as tree:
        leaves, procs = _build(tree)
        problems: list[str] = []

        # 1. A fresh collector's first sample (a slow tick: every file is read).
        collector = new_collector()
        sample, found = sample_against_kernel(collector, tree.created)
        problems += [f"first sample: {p}" for p in found]
        problems += [f"first sample: {p}" for p in _task_problems(sample, procs.values())]
        problems += [f"first sample: {p}" for p in _identity_problems(sample, tree)]
        problems += [f"first sample: {p}" for p in _node_problems(sample)]
        prediction = predict(sample)
        for rel in (leaves["g1"].path, leaves["b2"].path, tree.kubepods):
            if rel not in prediction.by_domain:
                problems.append(f"first sample: predict() has no verdict for the limited cgroup {rel}")

        # 2. Make the kernel count things: an OOM kill in b2, a memory.high breach in g1, changed settings.
        _oom_in(tree, leaves["b2"], 40)
        _breach_high(tree, leaves["g1"])  # 24 MiB there: 1 MiB over is a small overage
        tree.limit(leaves["g1"].path, max_bytes=120 * MIB, oom_group=False)
        tree.limit(leaves["b1"].path, high_bytes=80 * MIB)
        tree.limit(leaves["b2"].path, oom_group=True)
        time.sleep(collector.config.slow_interval_s + 0.05)  # same collector, as oomtop runs; a slow tick next
        sample, found = sample_against_kernel(collector, tree.created)
        problems += [f"incremental sample: {p}" for p in found]
        problems += [f"incremental sample: {p}" for p in _task_problems(sample, procs.values())]

        # 3. A fresh collector after the events.
        sample, found = sample_against_kernel(new_collector(), tree.created)
        problems += [f"fresh sample after events: {p}" for p in found]
        problems += [f"fresh sample after events: {p}" for p in _identity_problems(sample, tree)]

        # 4. The JSON contract (`oomtop --once --json`), where kubelet's adj policy meets the real values.
        problems += [f"oomtop --once --json: {p}" for p in _json_problems(tree, procs)]

        # The kernel really counted what the figures were compared on.
        now = snaps([leaves["b2"].path, leaves["g1"].path])
        b2, g1 = now[leaves["b2"].path], now[leaves["g1"].path]
        record_property("b2_events", b2.events)
        record_property("b2_pressure", b2.pressure)
        record_property("g1_events", g1.events)
        record_property("g1_pressure", g1.pressure)
        assert b2.events["oom_kill"] >= 1 and b2.events_local["oom_kill"] >= 1, b2.events
        assert b2.events["max"] >= 1 and b2.events["oom"] >= 1, b2.events
        assert g1.events["high"] >= 1, f"memory.high breach not counted: {g1.events}"
        assert not problems, "collector figures disagree with the kernel:\n" + "\n".join(problems)


def test_fast_tick_oom_counters() -> None:
    """Between slow ticks a sample still carries the kill counters as the kernel has them right then.

    oomtop's CgroupReader.read promises "every tick reads the member list, the usage and the OOM counters";
    memory.events.local's oom_kill (``Cgroup.oom_kills_local``) is one of them.  For a leaf cgroup the local
    and the hierarchical count are the same number, so a Sample showing them apart is wrong either way.
    """
    from oomtop.collect.collector import Collector, CollectorConfig

    with KubeTree("cgroupfs") as tree:
        tree.build_kubepods()
        pod = tree.add_pod("burstable", name="tick")
        leaf = tree.add_container(pod, 500, limit=32 * MIB)
        tree.start(leaf, 4, name="small")
        collector = Collector(CollectorConfig(slow_interval_s=3600))  # only the first sample is a slow one
        try:
            _first, found = sample_against_kernel(collector, tree.created)
            assert not found, "\n".join(found)
            _oom_in(tree, leaf, 32)
            sample, found = sample_against_kernel(collector, tree.created)
            assert not collector.stats.slow
            kernel_local = read_kv(fs(leaf.path) + "/memory.events.local")["oom_kill"]
            kernel_hier = read_kv(fs(leaf.path) + "/memory.events")["oom_kill"]
            got = {c.path: c for c in sample.cgroups}[leaf.path]
            assert not found, "fast-tick figures disagree with the kernel:\n" + "\n".join(found)
            assert (got.oom_kills, got.oom_kills_local) == (kernel_hier, kernel_local), (
                f"{leaf.path} after an OOM kill, on a fast tick: oom_kills {got.oom_kills} / oom_kills_local "
                f"{got.oom_kills_local}; the kernel's memory.events oom_kill {kernel_hier} / memory.events.local "
                f"oom_kill {kernel_local}"
            )
        finally:
            collector.close()
