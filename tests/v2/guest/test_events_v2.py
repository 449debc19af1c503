"""OOM events on a real cgroup v2 kernel: wake-ups, oom.group kills, removed cgroups, latency.

(a) ``OomWakeups`` (oomtop.collect.wakeups) used directly: inotify on memory.events wakes for the cgroup whose
    task was killed and for its ancestors, not for a bystander sibling, soon after the kill.
(b) A memory.oom.group kill (a container with oom.group=1 and three tasks, one at adj -1000 which the kernel
    spares) seen by ``python -m oomtop events --json``: one event listing every task killed exactly once (the
    kernel logs the first victim twice), with the pod and container identity from containerd's bundle.
(c) A kill in a container cgroup removed the moment its last task is gone: still caught with the kernel log,
    and with ``--kmsg none`` through the pod's hierarchical memory.events (one event, detected in the pod,
    count 1).  "runtime-first": both oomtop processes are stopped (SIGSTOP) from just before the kill until
    the cgroup is gone, so they only ever see it removed; "oomtop-first": removed right after ``--kmsg none``
    reported the kill from its wake-up.
(d) Latency inside the VM: from the kernel's stamp of the "Killed process" record (on CLOCK_MONOTONIC by the
    offset measured with our own /dev/kmsg writes) to the moment this process read the event's line from
    ``events --json``'s stdout, over ``OOMTOP_V2_EVENT_KILLS`` (default 10) kills, with the kernel log and
    with ``--kmsg none``; the host summary prints it.

Two ``oomtop events --json`` processes (with the kernel log, and ``--kmsg none``; ``--interval 0.5``) run for
the whole module: Python starts slowly in the VM (about 6 s to import oomtop's CLI), so they are started once
and every check looks only at events about its own pod (paths under it, or its own pids), never at history.
Where the order of a poll, a wake-up and a kill decides the outcome, oomtop's Collector and OomWatcher are
driven by hand in this process instead (``evlib.DrivenWatcher``), so the order is fixed and the result too.

Each kill scenario builds its pod the way runc and systemd do (``evlib.pod_born_with_memory``), and the cgroupfs
and systemd namings alternate from one scenario to the next so that no cgroup path is removed and made again
between two polls (see test_recreated_path_keeps_its_wakeup).

"""

from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass, field

import pytest
from evlib import (
    DrivenWatcher,
    EventsProcess,
    KmsgTail,
    Seen,
    event_brief,
    measure_kmsg_clock,
    percentile,
    pod_born_with_memory,
    rmdir_when_empty,
)
from plan import trigger_cap_mib
from v2lib import CGROUP_ROOT, MIB, KubeTree, fs, read, read_kv, write

from tests.realkernel.kmsg import pace_oom

KILLS = int(os.environ.get("OOMTOP_V2_EVENT_KILLS") or 10)
EVENT_TIMEOUT_S = 15.0  # the VM is slow: a generous bound for an event to come at all
NAMES_REFRESH_S = 2.0  # CollectorConfig.names_refresh_s: how soon oomtop may re-read pod and container names
SETTLE_S = 1.5  # after the last expected event: the watcher's 0.5 s grace, a few polls, the VM's slowness


def _in_vm() -> None:
    if os.environ.get("OOMTOP_V2_GUEST") != "1":
        pytest.skip("runs inside the VM booted by tests/test_v2_kernel.py (OOMTOP_V2_GUEST is not set)")


@dataclass
class Watchers:
    log: EventsProcess  # oomtop events --json (the kernel log, counters, inotify wake-ups)
    nolog: EventsProcess  # oomtop events --json --kmsg none (counters and wake-ups only)

    def both(self) -> tuple[EventsProcess, EventsProcess]:
        return self.log, self.nolog

    def wait_sampled(self, cgroups: list[str]) -> None:
        for ev in self.both():
            ev.wait_sampled(cgroups)

    def describe(self, under: str, pids: set[int] = frozenset()) -> str:  # type: ignore[assignment]
        return "\n".join("  " + ev.describe(under, pids) for ev in self.both())


@pytest.fixture(scope="module")
def watchers():  # type: ignore[no-untyped-def]
    _in_vm()
    log = EventsProcess("--interval", "0.5")
    nolog = EventsProcess("--kmsg", "none", "--interval", "0.5")
    try:
        yield Watchers(log, nolog)
    finally:
        log.stop()
        nolog.stop()


def _kernel_log(tail: KmsgTail) -> str:
    return "--- kernel log ---\n" + "\n".join(r.text for r in tail.poll() if not r.text.startswith(" "))


def _poll_fd(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(1, int(timeout * 1000))))


# ------------------------------------------------------------------------------ (a) inotify wake-ups


def test_inotify_wakeup_on_kill(record_property) -> None:  # type: ignore[no-untyped-def]
    """The kill is the only change to the victim container's memory.events: the pod's limit is hit (max and
    oom events go to the pod and its ancestors), the victim is an idle task in one container, the allocation
    comes from a task at adj -997 in another.  OomWakeups must report the victim's container once its oom_kill
    is counted, and the pod, and neither the allocating container nor an idle bystander (nor the root)."""
    from oomtop.collect.wakeups import OomWakeups

    with KubeTree("systemd") as tree, KmsgTail() as tail:
        pod = pod_born_with_memory(tree, "burstable", "wake", limit=48 * MIB)
        tree.add_sandbox(pod)
        victim_leaf = tree.add_container(pod, 900, name="victim")
        alloc_leaf = tree.add_container(pod, -997, name="alloc")
        idle_leaf = tree.add_container(pod, 500, name="idle")
        victim = tree.start(victim_leaf, 24, name="victim")
        idle = tree.start(idle_leaf, 4, name="idle")
        wakeups = OomWakeups(CGROUP_ROOT, 2)
        try:
            wakeups.sync(set(tree.created) | {"/"})
            assert wakeups.error is None, wakeups.error
            time.sleep(0.1)
            before = wakeups.drain()
            assert not before, f"wake-ups before any OOM: {sorted(before)}"
            headroom_mib = (48 * MIB - int(read(fs(pod.path) + "/memory.current"))) / MIB
            pace_oom()
            trigger = tree.start_trigger(alloc_leaf, trigger_cap_mib(headroom_mib), name="alloc")
            woke: dict[str, float] = {}  # path -> the wake-up at which its memory.events showed the kill
            first_wake: dict[str, float] = {}
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and victim_leaf.path not in woke:
                if not _poll_fd(wakeups.fileno(), 0.1):
                    continue
                now = time.monotonic()
                for path in wakeups.drain():
                    first_wake.setdefault(path, now)
                    if path not in woke and read_kv(fs(path) + "/memory.events").get("oom_kill", 0) >= 1:
                        woke[path] = now
            status = victim.status(10.0)
            trigger.wait_for(b"D", 30.0)  # "D" at its cap
            time.sleep(0.3)  # late notifications (kernfs sends them at most every 20 ms per file)
            late = time.monotonic()
            for path in wakeups.drain():
                first_wake.setdefault(path, late)
            killed = tail.killed()
        finally:
            wakeups.close()
        clock = measure_kmsg_clock()
        context = (
            f"woke (first) {first_wake}\nwoke with oom_kill {woke}\nkilled {sorted(killed)}\n"
            f"victim {victim.pid} status {status}\n{_kernel_log(tail)}"
        )
        first = min(killed, key=lambda pid: killed[pid][0].seq) if killed else None
        assert status == -9 and first == victim.pid, f"the kernel's first kill is not the victim:\n{context}"
        kill_t = clock.monotonic(killed[victim.pid][0].usec)
        latency_ms = (woke[victim_leaf.path] - kill_t) * 1000 if victim_leaf.path in woke else None
        record_property(
            "wakeup",
            {
                "latency_ms": None if latency_ms is None else round(latency_ms, 1),
                "clock_uncertainty_ms": round(clock.uncertainty_s * 1000, 2),
                "woke": sorted(first_wake),
                "kernel_kills": len(killed),
            },
        )
        assert victim_leaf.path in woke, f"no wake-up for the victim's container {victim_leaf.path}:\n{context}"
        assert pod.path in first_wake, f"no wake-up for the pod {pod.path} (its hierarchical events):\n{context}"
        assert alloc_leaf.path not in first_wake, (
            f"the allocating container woke: its events did not change:\n{context}"
        )
        if idle.pid not in killed:  # now and then the kernel kills again before the victim's pages are uncharged
            assert idle_leaf.path not in first_wake, f"the idle bystander container woke:\n{context}"
        assert "/" not in first_wake, f"the root woke (it has no memory.events):\n{context}"
        assert latency_ms is not None and latency_ms < 2000, f"wake-up {latency_ms} ms after the kill:\n{context}"


def test_recreated_path_keeps_its_wakeup() -> None:
    from oomtop.collect.wakeups import OomWakeups

    with KubeTree("cgroupfs") as tree:
        pod = pod_born_with_memory(tree, "besteffort", "again")
        wakeups = OomWakeups(CGROUP_ROOT, 2)
        try:
            rel = f"{pod.path}/svc"
            tree.mkdir(rel)
            wakeups.sync(set(tree.created))
            os.rmdir(fs(rel))  # stopped ...
            tree.mkdir(rel)  # ... and started again under the same name, within one poll interval
            tree.limit(rel, 16 * MIB)
            time.sleep(0.1)
            wakeups.drain()  # the old file's IN_IGNORED, the new directory's IN_CREATE
            wakeups.sync(set(tree.created))  # the next poll sees the cgroup, as before
            wakeups.drain()
            pace_oom()
            leaf = _as_leaf(tree, rel, pod)
            trigger = tree.start_trigger(leaf, 32, name="svc")
            status = trigger.status(10.0)
            woke: set[str] = set()
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline and rel not in woke:
                if _poll_fd(wakeups.fileno(), 0.1):
                    woke |= wakeups.drain()
        finally:
            wakeups.close()
    assert status == -9, f"the kernel did not kill the trigger (status {status})"
    assert rel in woke, f"no wake-up for {rel}, re-created at the same path, after a kill in it (woke: {sorted(woke)})"


def _as_leaf(tree: KubeTree, rel: str, pod):  # type: ignore[no-untyped-def]
    from v2lib import Leaf

    leaf = Leaf(rel, "", pod, 1000, name="svc")
    tree.leaves[rel] = leaf
    return leaf


# ------------------------------------------------------------------------------ (b) one memory.oom.group kill


@dataclass
class GroupKill:
    pod_uid: str
    pod_path: str
    leaf_path: str
    container_id: str
    member: int
    spared: int
    trigger: int
    kernel_killed: dict[int, int]  # pid -> how many "Killed process" records name it
    kernel_events: dict[str, int]
    spared_alive: bool
    log_events: list[Seen]
    nolog_events: list[Seen]
    context: str = field(repr=False, default="")


@pytest.fixture(scope="module")
def group_kill(watchers: Watchers) -> GroupKill:
    """A Burstable pod (cgroupfs naming, containerd bundles: names from node metadata), its container with
    memory.max 48 MiB and memory.oom.group 1 holding a hog (adj 500), a hog at adj -1000 and the trigger
    (adj 500) that pushes it over: the kernel kills the trigger (the largest) and, for the group, the hog."""
    with KubeTree("cgroupfs", bundles=True) as tree, KmsgTail() as tail:
        pod = pod_born_with_memory(tree, "burstable", "grouped")
        tree.add_sandbox(pod)
        leaf = tree.add_container(pod, 500, limit=48 * MIB, oom_group=True, name="app")
        member = tree.start(leaf, 8, name="member")
        spared = tree.start(leaf, 4, adj=-1000, name="spared")
        made = time.monotonic()
        watchers.wait_sampled(tree.created)
        time.sleep(max(0.0, NAMES_REFRESH_S + 1.2 - (time.monotonic() - made)))  # names: test_driven_early_kill_named
        pace_oom()
        trigger = tree.start_trigger(leaf, 60, name="trigger")
        trigger.wait_for(b"D", 30.0)
        statuses = {p.pid: p.status(5.0) for p in (member, trigger)}
        pids = {member.pid, spared.pid, trigger.pid}
        watchers.log.wait_until(
            lambda: any(s.victim_pid is not None for s in watchers.log.about(pod.path, pids)), EVENT_TIMEOUT_S
        )
        watchers.nolog.wait_until(lambda: bool(watchers.nolog.about(pod.path, pids)), EVENT_TIMEOUT_S)
        time.sleep(SETTLE_S)
        killed = {pid: len(records) for pid, records in tail.killed().items()}
        run = GroupKill(
            pod.uid,
            pod.path,
            leaf.path,
            leaf.cid,
            member.pid,
            spared.pid,
            trigger.pid,
            killed,
            read_kv(fs(leaf.path) + "/memory.events"),
            spared.alive(),
            watchers.log.about(pod.path, pids),
            watchers.nolog.about(pod.path, pids),
        )
        run.context = (
            f"member {member.pid}, spared {spared.pid} (adj -1000), trigger {trigger.pid}; wait statuses "
            f"{statuses}; kernel 'Killed process' records per pid {killed}; the container's "
            f"memory.events {run.kernel_events}\n{watchers.describe(pod.path, pids)}\n{_kernel_log(tail)}"
        )
    return run


def _group_problems(run: GroupKill, event: Seen) -> list[str]:
    e = event.event
    problems = []
    if event.victim_pid != run.trigger:
        problems.append(f"victim {event.victim_pid}, the kernel's first kill was {run.trigger}")
    if event.killed_pids != [run.trigger, run.member]:
        problems.append(f"killed {event.killed_pids}, the kernel killed [{run.trigger}, {run.member}] (each once)")
    if run.spared in event.killed_pids:
        problems.append(f"the adj -1000 task {run.spared} is listed as killed")
    for key, want in (
        ("oom_group_path", run.leaf_path),
        ("task_cgroup", run.leaf_path),
        ("oom_cgroup", run.leaf_path),
        ("kind", "memcg"),
        ("count", 1),
    ):
        if e.get(key) != want:
            problems.append(f"{key} {e.get(key)!r}, want {want!r}")
    pod, ctr = e.get("pod") or {}, e.get("container") or {}
    want_pod = {"uid": run.pod_uid, "name": "grouped", "namespace": "v2-tier", "qos": "Burstable"}
    if {k: pod.get(k) for k in want_pod} != want_pod:
        problems.append(f"pod {pod}, want {want_pod}")
    if (ctr.get("id"), ctr.get("name"), ctr.get("sandbox")) != (run.container_id, "app", False):
        problems.append(f"container {ctr}, want id {run.container_id} name 'app'")
    if "kmsg" not in (e.get("source") or ()):
        problems.append(f"source {e.get('source')}: not from the kernel log")
    return problems


def _group_preconditions(run: GroupKill) -> None:
    assert set(run.kernel_killed) == {run.trigger, run.member}, (
        f"the kernel did not kill exactly the trigger and the member:\n{run.context}"
    )
    assert run.spared_alive, f"the adj -1000 task died:\n{run.context}"
    assert run.kernel_events.get("oom_group_kill") == 1, f"not one oom.group kill:\n{run.context}"


def _victim_counted_twice(run: GroupKill) -> None:
    if run.kernel_killed.get(run.trigger) != 2 or run.kernel_events.get("oom_kill") != 3:
        pytest.skip(
            f"the kernel did not log and count the first victim twice this time ({run.kernel_killed}, "
            f"{run.kernel_events}): the double count this test is about did not happen"
        )


def test_group_kill_log_event(group_kill: GroupKill, record_property) -> None:  # type: ignore[no-untyped-def]
    """The kernel log's event of the group kill lists every task killed once, victim first, the adj -1000
    task spared, with the pod and container named from containerd's bundle."""
    run = group_kill
    record_property(
        "group_kill",
        {
            "kernel_killed_records": run.kernel_killed,
            "memory_events": run.kernel_events,
            "log_events": [s.brief() for s in run.log_events],
            "nolog_events": [s.brief() for s in run.nolog_events],
        },
    )
    _group_preconditions(run)
    logged = [s for s in run.log_events if s.victim_pid is not None]
    assert logged, f"no event naming the victim:\n{run.context}"
    assert len(logged) == 1, f"{len(logged)} events name a victim:\n{run.context}"
    problems = _group_problems(run, logged[0])
    assert not problems, "\n".join(problems) + "\n" + run.context


def test_group_kill_exactly_one_event(group_kill: GroupKill) -> None:
    run = group_kill
    _group_preconditions(run)
    _victim_counted_twice(run)
    assert len(run.log_events) == 1, f"{len(run.log_events)} events for one oom.group kill (want one):\n{run.context}"
    problems = _group_problems(run, run.log_events[0])
    assert not problems, "\n".join(problems) + "\n" + run.context


def test_group_kill_no_kmsg_counts_each_task_once(group_kill: GroupKill) -> None:
    """Without the log, the container's events.local oom_kill counts the first victim twice (3 for 2 tasks); its
    oom_group_kill (1) says a group kill happened, and the watcher takes that double count off."""
    run = group_kill
    _group_preconditions(run)
    _victim_counted_twice(run)
    total = sum(s.event.get("count") or 0 for s in run.nolog_events)
    assert run.nolog_events, f"--kmsg none saw nothing:\n{run.context}"
    assert total == 2, f"--kmsg none counts {total} kills for the 2 tasks the group kill killed:\n{run.context}"


# ------------------------------------------------------------------------- (c) a cgroup removed right after


@dataclass
class RemovedKill:
    order: str  # "runtime-first" or "oomtop-first"
    pod_uid: str
    pod_path: str
    leaf_path: str
    container_id: str
    victim: int
    status: int | None
    removed_after_death_ms: float
    kernel_killed: list[int]
    pod_events: dict[str, int]
    log_events: list[Seen]
    nolog_events: list[Seen]
    context: str = field(repr=False, default="")

    def figure(self) -> dict:
        return {
            "removed_after_death_ms": self.removed_after_death_ms,
            "log_events": len(self.log_events),
            "nolog_events": len(self.nolog_events),
            "nolog_detected_in": [self._where(s.event.get("detected_in")) for s in self.nolog_events],
        }

    def _where(self, path: str | None) -> str | None:
        return {self.pod_path: "pod", self.leaf_path: "container"}.get(path or "", path)


def _removed_kill(watchers: Watchers, order: str) -> RemovedKill:
    """A BestEffort pod (containerd bundles) whose container (memory.max 24 MiB) holds only the trigger; the
    kernel kills it and its cgroup is removed the moment the kernel lets us (its task gone)."""
    naming = "systemd" if order == "runtime-first" else "cgroupfs"  # alternate: see the module docstring
    with KubeTree(naming, bundles=True) as tree, KmsgTail() as tail:
        pod = pod_born_with_memory(tree, "besteffort", f"gone-{order}")
        tree.add_sandbox(pod)
        leaf = tree.add_container(pod, 1000, limit=24 * MIB, name="short")
        watchers.wait_sampled(tree.created)
        frozen = order == "runtime-first"
        pace_oom()
        if frozen:
            for ev in watchers.both():
                ev.freeze()
        try:
            trigger = tree.start_trigger(leaf, 40, name="short")
            status = trigger.status(10.0)
            died = time.monotonic()
            if not frozen:
                watchers.nolog.wait_until(
                    lambda: any(s.event.get("detected_in") == leaf.path for s in watchers.nolog.about(pod.path)),
                    EVENT_TIMEOUT_S,
                )
            removed = rmdir_when_empty(fs(leaf.path))
        finally:
            if frozen:
                for ev in watchers.both():
                    ev.thaw()
        pids = {trigger.pid}
        watchers.log.wait_until(
            lambda: any(s.victim_pid == trigger.pid for s in watchers.log.about(pod.path, pids)), EVENT_TIMEOUT_S
        )
        watchers.nolog.wait_until(lambda: bool(watchers.nolog.about(pod.path, pids)), EVENT_TIMEOUT_S)
        time.sleep(SETTLE_S)
        run = RemovedKill(
            order,
            pod.uid,
            pod.path,
            leaf.path,
            leaf.cid,
            trigger.pid,
            status,
            round((removed - died) * 1000, 1),
            sorted(tail.killed()),
            read_kv(fs(pod.path) + "/memory.events"),
            watchers.log.about(pod.path, pids),
            watchers.nolog.about(pod.path, pids),
        )
        run.context = (
            f"{order}: victim {trigger.pid} (wait status {status}) in {leaf.path}, removed "
            f"{run.removed_after_death_ms} ms after its death; kernel killed {run.kernel_killed}; the "
            f"pod's memory.events {run.pod_events}\n{watchers.describe(pod.path, pids)}\n{_kernel_log(tail)}"
        )
    return run


@pytest.fixture(scope="module")
def removed_first(watchers: Watchers) -> RemovedKill:
    return _removed_kill(watchers, "runtime-first")


@pytest.fixture(scope="module")
def removed_after(watchers: Watchers) -> RemovedKill:
    return _removed_kill(watchers, "oomtop-first")


def _removed_run(request, order: str) -> RemovedKill:  # type: ignore[no-untyped-def]
    run: RemovedKill = request.getfixturevalue("removed_first" if order == "runtime-first" else "removed_after")
    request.node.user_properties.append(("removed_" + order.replace("-", "_"), run.figure()))
    assert run.status == -9 and run.kernel_killed == [run.victim], (
        f"the kernel did not kill the trigger:\n{run.context}"
    )
    assert run.pod_events.get("oom_kill") == 1, f"the pod's hierarchical oom_kill is not 1:\n{run.context}"
    return run


def _log_problems(run: RemovedKill, event: Seen) -> list[str]:
    e = event.event
    problems = []
    pod, ctr = e.get("pod") or {}, e.get("container") or {}
    if e.get("task_cgroup") != run.leaf_path or e.get("oom_cgroup") != run.leaf_path:
        problems.append(f"task_cgroup {e.get('task_cgroup')}, oom_cgroup {e.get('oom_cgroup')}: want {run.leaf_path}")
    # The uid, QoS and container id come from the path; the names from the bundle only once oomtop re-read
    # node metadata, which a kill this soon after the start may precede (test_driven_early_kill_named).
    if (pod.get("uid"), pod.get("qos")) != (run.pod_uid, "BestEffort"):
        problems.append(f"pod {pod}: want uid {run.pod_uid}, BestEffort")
    if ctr.get("id") != run.container_id:
        problems.append(f"container {ctr}: want id {run.container_id}")
    return problems


@pytest.mark.parametrize("order", ["runtime-first", "oomtop-first"])
def test_removed_cgroup_caught_with_log(order: str, request) -> None:  # type: ignore[no-untyped-def]
    """The kernel log names the victim of a kill whose container is already gone; pod and container come from
    the last sample that saw it."""
    run = _removed_run(request, order)
    named = [s for s in run.log_events if s.victim_pid == run.victim]
    assert len(named) == 1, f"{len(named)} events name the victim {run.victim} (want 1):\n{run.context}"
    problems = _log_problems(run, named[0])
    assert not problems, "\n".join(problems) + "\n" + run.context


def test_removed_cgroup_one_event_with_log(request) -> None:  # type: ignore[no-untyped-def]
    """Runtime first: the one kill is one event, also once the pod's hierarchical counter has moved for the
    child that is gone."""
    run = _removed_run(request, "runtime-first")
    assert len(run.log_events) == 1, f"{len(run.log_events)} events for one kill (want one):\n{run.context}"


def test_removed_cgroup_no_kmsg_parent_counter(request) -> None:  # type: ignore[no-untyped-def]
    """``--kmsg none``, runtime first: the container was gone before oomtop looked, so only the pod's
    hierarchical memory.events oom_kill shows the kill, one more than its living children explain: one
    event, detected in the pod, count 1, no victim."""
    run = _removed_run(request, "runtime-first")
    events = run.nolog_events
    assert len(events) == 1, f"{len(events)} events from --kmsg none (want one):\n{run.context}"
    e = events[0].event
    got = (e.get("detected_in"), e.get("count"), e.get("kind"), (e.get("victim") or {}).get("pid"))
    assert got == (run.pod_path, 1, "memcg", None), (
        f"(detected_in, count, kind, victim pid) {got}, want ({run.pod_path}, 1, 'memcg', None):\n{run.context}"
    )


def test_removed_cgroup_no_kmsg_from_wakeup(request) -> None:  # type: ignore[no-untyped-def]
    """``--kmsg none``, oomtop first: the wake-up read the container's own counter before it went, so the first
    event names the container, with pod and container identity, count 1."""
    run = _removed_run(request, "oomtop-first")
    assert run.nolog_events, f"no event from --kmsg none:\n{run.context}"
    e = run.nolog_events[0].event
    pod, ctr = e.get("pod") or {}, e.get("container") or {}
    got = (e.get("detected_in"), e.get("count"), pod.get("uid"), ctr.get("id"))
    assert got == (run.leaf_path, 1, run.pod_uid, run.container_id), (
        f"(detected_in, count, pod uid, container id) {got}, want "
        f"({run.leaf_path}, 1, {run.pod_uid}, {run.container_id}):\n{run.context}"
    )


# -------------------------------------------- (c, in order) the watcher driven by hand: polls, wake-ups, kills


def _driven_pod(tree: KubeTree, name: str):  # type: ignore[no-untyped-def]
    pod = pod_born_with_memory(tree, "besteffort", name)
    tree.add_sandbox(pod)
    return pod


def _kill_in(tree: KubeTree, leaf) -> int:  # type: ignore[no-untyped-def]
    pace_oom()
    trigger = tree.start_trigger(leaf, 32, name="short")
    status = trigger.status(10.0)
    assert status == -9, f"the trigger in {leaf.path} was not killed (status {status})"
    return trigger.pid


def _about(driven: DrivenWatcher, pod_path: str) -> list:
    return [
        e
        for e in driven.events
        if not e.historical
        and any(
            p and (p == pod_path or p.startswith(pod_path + "/")) for p in (e.task_cgroup, e.detected_in, e.oom_cgroup)
        )
    ]


def test_driven_removed_after_wakeup_counted_once() -> None:
    with KubeTree("systemd") as tree, DrivenWatcher() as driven:
        pod = _driven_pod(tree, "driven-gone")
        leaf = tree.add_container(pod, 1000, limit=16 * MIB, name="short")
        driven.poll()
        time.sleep(0.2)
        driven.poll()
        _kill_in(tree, leaf)
        driven.run(0.7)  # the wake-up: the container's counter read while it is still there
        seen_at_wakeup = [event_brief(e) for e in _about(driven, pod.path)]
        rmdir_when_empty(fs(leaf.path))
        driven.poll()
        driven.run(0.6)
        driven.poll()
        events = [event_brief(e) for e in _about(driven, pod.path)]
    assert len(seen_at_wakeup) == 1, f"the wake-up did not report the kill once: {seen_at_wakeup}"
    assert len(events) == 1, f"{len(events)} events for one kill: {events}"


def test_driven_new_container_kill_no_kmsg() -> None:
    with KubeTree("cgroupfs") as tree, DrivenWatcher() as driven:
        pod = _driven_pod(tree, "driven-new")
        driven.poll()
        time.sleep(0.2)
        driven.poll()
        leaf = tree.add_container(pod, 1000, limit=16 * MIB, name="short")
        driven.run(0.2)  # its directory event: registered for wake-ups, no poll yet
        _kill_in(tree, leaf)
        driven.run(0.7)
        driven.poll()
        driven.run(0.3)
        driven.poll()
        events = [event_brief(e) for e in _about(driven, pod.path)]
    assert len(events) == 1, f"{len(events)} events for one kill in a container made after the last poll: {events}"


def test_driven_early_kill_named() -> None:
    """A container that OOMs right at its start, within CollectorConfig.names_refresh_s (2 s) of oomtop's last
    read of node metadata: containerd's bundle was on disk before its first task ran, so the event names the pod
    and the container although the Sample's identity does not yet (the watcher re-reads names for that cgroup)."""
    t0 = time.monotonic()
    with KubeTree("cgroupfs", bundles=True) as tree, DrivenWatcher(kmsg=True) as driven:
        pod = pod_born_with_memory(tree, "burstable", "early")  # after oomtop loaded the node's metadata
        tree.add_sandbox(pod)
        leaf = tree.add_container(pod, 500, limit=16 * MIB, name="early")
        driven.poll()  # the container's first poll: oomtop knows it, and it has its bundle on disk
        polled = time.monotonic() - t0
        pid = _kill_in(tree, leaf)
        driven.run(0.5)
        named = [e for e in driven.events if e.victim.pid == pid]
    if polled >= NAMES_REFRESH_S - 0.2:
        pytest.skip(
            f"the first poll came {polled:.1f} s after the metadata load: "
            "too late to test the window before the names refresh"
        )
    assert len(named) == 1, f"{len(named)} events name the victim {pid}: {[event_brief(e) for e in driven.events]}"
    event = named[0]
    got = (event.pod and event.pod.name, event.pod and event.pod.namespace, event.container and event.container.name)
    assert got == ("early", "v2-tier", "early"), (
        f"(pod name, namespace, container name) {got}: the container's first poll came {polled:.1f} s after oomtop "
        f"loaded node metadata, its bundle already on disk"
    )


# ------------------------------------------------------------------------------------------- (d) latency


def test_event_latency(watchers: Watchers, record_property) -> None:  # type: ignore[no-untyped-def]
    """KILLS container-level kills, one after the other, each in its own container (memory.max 16 MiB): every
    kill comes out of ``events --json`` once, from the log (victim named) and from ``--kmsg none`` (the
    container's counter, read at its inotify wake-up); the latency is the time from the kernel's "Killed
    process" stamp to the line read here."""
    with KubeTree("systemd") as tree, KmsgTail() as tail:
        pod = pod_born_with_memory(tree, "burstable", "latency")
        tree.add_sandbox(pod)
        leaves = [tree.add_container(pod, 500, limit=16 * MIB, name=f"c{i}") for i in range(KILLS)]
        watchers.wait_sampled(tree.created)
        clock = measure_kmsg_clock()
        kills = []
        for leaf in leaves:
            pace_oom()
            trigger = tree.start_trigger(leaf, 32, name=f"lat{len(kills)}")
            kills.append((leaf.path, trigger.pid, trigger.status(10.0)))
        pids = {pid for _, pid, _ in kills}
        cgroups = {path for path, _, _ in kills}
        watchers.log.wait_until(
            lambda: pids <= {s.victim_pid for s in watchers.log.about(pod.path, pids)}, EVENT_TIMEOUT_S
        )
        watchers.nolog.wait_until(
            lambda: cgroups <= {s.event.get("detected_in") for s in watchers.nolog.about(pod.path, pids)},
            EVENT_TIMEOUT_S,
        )
        time.sleep(1.0)
        clock_after = measure_kmsg_clock()
        killed = tail.killed()
        log_events, nolog_events = watchers.log.about(pod.path, pids), watchers.nolog.about(pod.path, pids)
        context = (
            f"kills (cgroup, pid, wait status): {kills}\nkernel killed {sorted(killed)}\n"
            f"{watchers.describe(pod.path, pids)}\n{_kernel_log(tail)}"
        )
    problems = [f"{pid} in {path}: wait status {status}" for path, pid, status in kills if status != -9]
    problems += [
        f"{pid}: the kernel log names {len(killed.get(pid, []))} kills"
        for _, pid, _ in kills
        if len(killed.get(pid, [])) != 1
    ]
    assert not problems, "the kills did not happen as planned: " + "; ".join(problems) + "\n" + context
    lat: dict[str, list[float]] = {"kmsg": [], "none": []}
    for path, pid, _ in kills:
        kill_t = clock.monotonic(killed[pid][0].usec)
        named = [s for s in log_events if s.victim_pid == pid]
        if len(named) != 1:
            problems.append(f"{pid}: {len(named)} events name it (want 1)")
        if named:
            lat["kmsg"].append((named[0].t - kill_t) * 1000)
        counted = [s for s in nolog_events if s.event.get("detected_in") == path]
        if len(counted) != 1 or counted[0].event.get("count") != 1:
            problems.append(f"{path}: --kmsg none gave {[s.brief() for s in counted]} (want one event, count 1)")
        if counted:
            lat["none"].append((counted[0].t - kill_t) * 1000)
    extra = [s.brief() for s in log_events if s.victim_pid not in pids]
    if extra:
        problems.append(f"events with the kernel log that name no victim of ours: {extra}")
    figure = {
        "kills": len(kills),
        "clock_uncertainty_ms": round(clock.uncertainty_s * 1000, 2),
        "clock_drift_ms": round((clock_after.offset_s - clock.offset_s) * 1000, 2),
    }
    for mode, values in lat.items():
        figure[mode] = {
            "n": len(values),
            "p50_ms": _r(percentile(values, 50)),
            "p95_ms": _r(percentile(values, 95)),
            "max_ms": _r(max(values, default=None)),
            "all_ms": [_r(v) for v in values],
        }
    record_property("event_latency", figure)
    assert not problems, "\n".join(problems) + "\n" + context


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ----------------------------------------------------------------------- the collector, as the watcher sees it


def test_cgroup_gaining_memory_later_is_collected() -> None:
    from oomtop.collect.collector import Collector, CollectorConfig

    with KubeTree("systemd") as tree:
        tree.build_kubepods()
        parent = tree.kubepods + "/late.slice"
        tree.mkdir(parent)  # memory enabled in kubepods by mkdir; not yet inside late.slice
        collector = Collector(CollectorConfig())
        try:
            collector.sample()
            child = parent + "/app.scope"
            os.mkdir(fs(child))
            tree.created.append(child)
            assert not os.path.exists(fs(child) + "/memory.current"), "the child has memory files already"
            collector.sample()  # sees the new directory without its memory files
            write(fs(parent) + "/cgroup.subtree_control", "+memory")
            assert os.path.exists(fs(child) + "/memory.current"), "the child has no memory files after +memory"
            time.sleep(1.1)  # past the slow tick too
            collector.sample()
            paths = {c.path for c in collector.sample().cgroups}
        finally:
            collector.close()
    assert child in paths, f"{child} has memory.current now, but oomtop's Sample does not list it"
