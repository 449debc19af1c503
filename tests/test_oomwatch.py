"""The OOM watcher on fixtures: kernel log records through a socket, counters through a fixture host."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.collector import Collector
from oomtop.collect.oomwatch import KmsgStream, OomWatcher
from oomtop.model import Sample
from tests import kernlog
from tests.fakehost import FakeHost, FakeProcess

POD = "8a2f4c1e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
CTR = "3f" * 32
CONTAINER = f"/kubepods/burstable/pod{POD}/{CTR}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Kmsg:
    """A fake /dev/kmsg: one record per read, like the real device."""

    def __init__(self) -> None:
        self.writer, reader = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.stream = KmsgStream.from_fd(reader.detach())
        self.seq = 100

    def send(self, messages: list[str], start_us: int = 500_000_000) -> None:
        for offset, text in enumerate(messages):
            self.writer.send(f"6,{self.seq},{start_us + offset},-;{text}\n".encode())
            self.seq += 1

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
def kmsg() -> Iterator[Kmsg]:
    fake = Kmsg()
    yield fake
    fake.close()


def block(pid: int = 4242, cgroup: str = CONTAINER) -> list[str]:
    tasks = (kernlog.Task(pid - 1, comm="sh", anon=10, file=100), kernlog.Task(pid, comm="web", anon=12000, file=67))
    return kernlog.memcg_block(tasks, oom_cgroup=cgroup, task_cgroup=cgroup, limit_kb=51200)


def host_with_container(tmp_path: Path, layout: str = "v1") -> FakeHost:
    host = FakeHost(tmp_path, layout=layout)
    host.add_cgroup("/kubepods")
    host.add_cgroup("/kubepods/burstable")
    host.add_cgroup(f"/kubepods/burstable/pod{POD}", limit=256 << 20)
    host.add_cgroup(CONTAINER, limit=50 << 20)
    host.add_process(FakeProcess(4242, comm="web", rss_anon_kb=40000), CONTAINER)
    return host


def watcher_for(host: FakeHost, kmsg: Kmsg | None, clock: Clock) -> tuple[OomWatcher, Collector]:
    collector = Collector(host.config(slow_interval_s=0.0), monotonic=clock)
    hierarchy = discover_hierarchy(str(host.cgroup_root), str(host.proc))
    watcher = OomWatcher(hierarchy, kmsg.stream if kmsg else str(host.root / "no-kmsg"), monotonic=clock)
    return watcher, collector


def started(host: FakeHost, kmsg: Kmsg | None) -> tuple[Clock, FakeHost, OomWatcher, Collector]:
    """A watcher over ``host`` that has taken its first sample (the baseline of every counter)."""
    clock = Clock()
    watcher, collector = watcher_for(host, kmsg, clock)
    watcher.on_sample(collector.sample())
    return clock, host, watcher, collector


def test_history_from_the_ring_buffer(tmp_path: Path, kmsg: Kmsg) -> None:
    kmsg.send(["unrelated boot message", *block(), "later unrelated message"])
    watcher, collector = watcher_for(host_with_container(tmp_path), kmsg, Clock())
    history = watcher.history()
    assert len(history) == 1
    event = history[0]
    assert event.historical and event.source == ("kmsg",)
    assert event.victim.pid == 4242 and event.task_cgroup == CONTAINER
    assert event.pod is not None and event.pod.uid == POD
    assert event.container is not None and event.container.id == CTR
    collector.close()
    watcher.close()


def test_live_kill_is_one_event_with_both_detectors(tmp_path: Path, kmsg: Kmsg) -> None:
    clock = Clock()
    host = host_with_container(tmp_path)
    watcher, collector = watcher_for(host, kmsg, clock)
    assert watcher.on_sample(collector.sample()) == []
    host.set_file(CONTAINER, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    kmsg.send(block())
    events = watcher.on_kmsg()
    clock.now += 0.1
    events += watcher.tick()  # the block is complete and quiet
    clock.now += 1.0
    events += watcher.on_sample(collector.sample()) + watcher.tick()
    assert len(events) == 1
    assert events[0].victim.pid == 4242
    assert set(events[0].source) == {"kmsg", "counter"}
    assert events[0].predicted_victim_pid == 4242  # the last sample before the kill had predicted it
    collector.close()
    watcher.close()


def test_counter_only_without_kernel_log(tmp_path: Path) -> None:
    clock = Clock()
    host = host_with_container(tmp_path)
    watcher, collector = watcher_for(host, None, clock)
    assert any("cannot read the kernel log" in notice for notice in watcher.notices)
    watcher.on_sample(collector.sample())
    host.set_file(CONTAINER, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    events = watcher.on_sample(collector.sample())
    assert len(events) == 1
    event = events[0]
    assert event.count == 3 and event.victim.pid is None
    assert event.pod is not None and event.pod.uid == POD and event.container is not None
    assert event.source == ("counter",)
    collector.close()
    watcher.close()


def test_counter_waits_for_the_log_then_merges(tmp_path: Path, kmsg: Kmsg) -> None:
    clock, host, watcher, collector = started(host_with_container(tmp_path), kmsg)
    host.set_file(CONTAINER, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    clock.now += 0.1
    assert watcher.on_sample(collector.sample()) == []  # within the grace period: the log may still come
    kmsg.send(block())
    events = watcher.on_kmsg()
    clock.now += 0.1
    events += watcher.tick()
    clock.now += 2
    events += watcher.tick()
    assert [event.victim.pid for event in events] == [4242]
    assert "counter" in events[0].source


def test_burst_of_kills_each_reported_once(tmp_path: Path, kmsg: Kmsg) -> None:
    clock, host, watcher, collector = started(host_with_container(tmp_path), kmsg)
    events = []
    for n in range(20):
        kmsg.send(block(pid=5000 + 2 * n), start_us=600_000_000 + n * 1000)
        events += watcher.on_kmsg()
    host.set_file(CONTAINER, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 20\n")
    clock.now += 0.1
    events += watcher.tick()
    clock.now += 1
    events += watcher.on_sample(collector.sample()) + watcher.tick()
    assert sorted(event.victim.pid for event in events) == [5000 + 2 * n for n in range(20)]


def test_v2_parent_counter_catches_a_vanished_child(tmp_path: Path, kmsg: Kmsg) -> None:
    _clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), None)
    pod = f"/kubepods/burstable/pod{POD}"
    host.remove_cgroup(CONTAINER)  # the container was killed and its cgroup removed before the next poll
    host.set_file(pod, "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    events = watcher.on_sample(collector.sample())
    assert len(events) == 1
    assert events[0].detected_in == pod and events[0].count == 1


# Rate-limited reports: past 10 reports in 5 s the kernel logs only "Killed process N (comm)", without cgroups.

OTHER = f"/kubepods/burstable/pod{POD}/{'4e' * 32}"


def headless(pid: int, comm: str = "hog") -> list[str]:
    return [kernlog.killed(kernlog.Task(pid, comm=comm, anon=12000, file=67))]


def two_containers(tmp_path: Path) -> FakeHost:
    host = host_with_container(tmp_path)
    host.add_cgroup(OTHER, limit=50 << 20)
    return host


def kills(host: FakeHost, path: str, count: int) -> None:
    host.set_file(path, "memory.oom_control", f"oom_kill_disable 0\nunder_oom 0\noom_kill {count}\n")


def run_out(watcher: OomWatcher, clock: Clock, seconds: float = 2.0, step: float = 0.02) -> list:  # type: ignore[type-arg]
    events = []
    for _ in range(int(seconds / step)):
        clock.now += step
        events += watcher.tick()
    return events


def test_headless_report_after_its_increment_is_placed_by_it(tmp_path: Path, kmsg: Kmsg) -> None:
    """The counter moved (a sample saw it) before the log said who died; one kill on each side: the same kill."""
    clock, host, watcher, collector = started(host_with_container(tmp_path), kmsg)
    kills(host, CONTAINER, 1)
    events = watcher.on_sample(collector.sample())
    clock.now += 0.01
    kmsg.send(headless(7777))  # born and killed between two samples: no sample knew it
    events += watcher.on_kmsg() + run_out(watcher, clock)
    assert len(events) == 1
    event = events[0]
    assert event.victim.pid == 7777 and event.task_cgroup == CONTAINER
    assert event.oom_cgroup == CONTAINER and event.pod is not None and event.pod.uid == POD
    assert set(event.source) == {"counter", "kmsg"}


def test_two_headless_reports_stay_unplaced_and_are_counted_once(tmp_path: Path, kmsg: Kmsg) -> None:
    """Two reports without cgroups and two increments: which is whose is not known, so no pod is guessed, and the
    increments are not reported again as kills of their own."""
    clock, host, watcher, collector = started(two_containers(tmp_path), kmsg)
    kills(host, CONTAINER, 1)
    kills(host, OTHER, 1)
    events = watcher.on_sample(collector.sample())
    clock.now += 0.01
    kmsg.send(headless(7777) + headless(7779), start_us=700_000_000)
    events += watcher.on_kmsg() + run_out(watcher, clock)
    assert sorted(event.victim.pid for event in events) == [7777, 7779]
    assert all(event.task_cgroup is None and event.pod is None for event in events)


def test_increment_after_an_unplaced_report_is_not_a_second_kill(tmp_path: Path, kmsg: Kmsg) -> None:
    """The report is emitted unplaced first; its kill's increment shows only at the next poll."""
    clock, host, watcher, collector = started(host_with_container(tmp_path), kmsg)
    kmsg.send(headless(7777))
    events = watcher.on_kmsg() + run_out(watcher, clock, 0.2)
    assert [event.task_cgroup for event in events] == [None]
    kills(host, CONTAINER, 1)
    events += watcher.on_sample(collector.sample()) + run_out(watcher, clock)
    assert len(events) == 1


def test_increment_beside_a_placed_report_is_its_own_kill(tmp_path: Path, kmsg: Kmsg) -> None:
    """A full report explains its own cgroup's increment only; another cgroup's increment is another kill."""
    clock, host, watcher, collector = started(two_containers(tmp_path), kmsg)
    kmsg.send(block())
    kills(host, CONTAINER, 1)
    kills(host, OTHER, 1)
    events = watcher.on_kmsg() + watcher.on_sample(collector.sample()) + run_out(watcher, clock)
    assert sorted((event.victim.pid or 0, event.task_cgroup) for event in events) == [(0, OTHER), (4242, CONTAINER)]


# memory.oom.group kills without the log: the kernel counts the group's first victim twice in oom_kill (once as
# the victim, once as a member of the group) and counts the group kill itself in oom_group_kill.


def events_file(oom_kill: int, group_kill: int) -> str:
    return f"low 0\nhigh 0\nmax 9\noom 1\noom_kill {oom_kill}\noom_group_kill {group_kill}\n"


def test_group_kill_without_log_counts_each_task_once(tmp_path: Path) -> None:
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), None)
    host.set_file(CONTAINER, "memory.events.local", events_file(3, 1))  # two tasks killed, the first counted twice
    host.set_file(CONTAINER, "memory.events", events_file(3, 1))
    events = watcher.on_sample(collector.sample()) + run_out(watcher, clock)
    assert sum(event.count for event in events) == 2
    assert {event.task_cgroup for event in events} == {CONTAINER}


def test_group_kill_in_a_vanished_child_counts_each_task_once(tmp_path: Path) -> None:
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), None)
    pod = f"/kubepods/burstable/pod{POD}"
    host.remove_cgroup(CONTAINER)
    host.set_file(pod, "memory.events", events_file(3, 1))
    events = watcher.on_sample(collector.sample()) + run_out(watcher, clock)
    assert [(event.detected_in, event.count) for event in events] == [(pod, 2)]


def test_plain_kills_beside_a_group_kill_are_all_counted(tmp_path: Path) -> None:
    """A group kill's correction takes one count per group kill, never a kill of its own."""
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), None)
    host.set_file(CONTAINER, "memory.events.local", events_file(1, 1))  # the victim's mm was gone: counted once
    host.set_file(CONTAINER, "memory.events", events_file(1, 1))
    events = watcher.on_sample(collector.sample()) + run_out(watcher, clock)
    assert sum(event.count for event in events) == 1


def test_kill_right_after_start_is_named_from_a_new_bundle(tmp_path: Path, kmsg: Kmsg) -> None:
    """A container that OOMs right at its start: its bundle appeared after the names were read (and after the
    history's old, unnamed kills were looked up); the event still carries the pod and container names."""
    from oomtop.collect.identity import NodeNames
    from tests.test_identity import containerd

    clock = Clock()
    host = host_with_container(tmp_path, layout="v2")
    old_pod = "0" * 8 + "-0000-4000-8000-" + "0" * 12
    kmsg.send(block(pid=900, cgroup=f"/kubepods/burstable/pod{old_pod}/{'ab' * 32}"), start_us=100_000_000)
    collector = Collector(host.config(slow_interval_s=0.0), monotonic=clock)
    watcher = OomWatcher(
        discover_hierarchy(str(host.cgroup_root), str(host.proc)),
        kmsg.stream,
        NodeNames.load(str(host.root)),
        monotonic=clock,
    )
    assert len(watcher.history()) == 1
    containerd(host.root, CTR, name="early", uid=POD, pod="early", ns="v2-tier")
    watcher.on_sample(collector.sample())
    kmsg.send(block())
    clock.now += 0.01
    events = watcher.on_kmsg() + run_out(watcher, clock, 0.1)
    assert len(events) == 1
    event = events[0]
    assert event.pod is not None and (event.pod.name, event.pod.namespace) == ("early", "v2-tier")
    assert event.container is not None and event.container.name == "early"
    collector.close()
    watcher.close()


def test_v2_parent_count_before_the_log_of_a_removed_child_is_one_kill(tmp_path: Path, kmsg: Kmsg) -> None:
    """The container was removed right after its kill and a poll saw the pod's counter move before the log's
    report was read: the report explains the pod's increment."""
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), kmsg)
    pod = f"/kubepods/burstable/pod{POD}"
    host.remove_cgroup(CONTAINER)
    host.set_file(pod, "memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    events = watcher.on_sample(collector.sample())
    clock.now += 0.02
    kmsg.send(block())
    events += watcher.on_kmsg() + run_out(watcher, clock)
    assert [(event.victim.pid, event.task_cgroup) for event in events] == [(4242, CONTAINER)]


def without_container(sample: Sample) -> Sample:
    """The Sample as the collector gives it when a read of the container failed (it leaves the cgroup out)."""
    from dataclasses import replace

    return replace(sample, cgroups=tuple(c for c in sample.cgroups if c.path != CONTAINER))


def test_a_cgroup_left_out_of_one_sample_is_not_counted_again(tmp_path: Path, kmsg: Kmsg) -> None:
    """A Sample can leave out a living cgroup (a read of it failed mid-kill, so the collector drops it until its
    next scan); when the cgroup is read again its kill count is the one already explained, not a new kill."""
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), kmsg)
    host.set_file(CONTAINER, "memory.events.local", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n")
    kmsg.send(block())
    events = watcher.on_kmsg()
    clock.now += 0.1
    events += watcher.tick()
    assert [event.victim.pid for event in events] == [4242]
    clock.now += 0.5
    events += watcher.on_sample(without_container(collector.sample()))
    clock.now += 0.5
    events += watcher.on_sample(collector.sample())  # the container is read again: still one kill
    events += run_out(watcher, clock)
    assert [event.victim.pid for event in events] == [4242]
    collector.close()
    watcher.close()


@pytest.mark.parametrize("log_first", [False, True], ids=["sample-first", "log-first"])
def test_a_kill_seen_in_the_parent_while_its_cgroup_was_left_out_is_not_counted_again(
    tmp_path: Path, kmsg: Kmsg, log_first: bool
) -> None:
    """A Sample leaves out the container (a read failed mid-kill) while the pod's hierarchical counter already
    shows the kill; the log names it; when the container is read again, its own count of that kill is the one
    already explained, not a second kill (seen twice in the v2 VM: one kill, a named event and a counter one)."""
    clock, host, watcher, collector = started(host_with_container(tmp_path, layout="v2"), kmsg)
    counted = "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\noom_group_kill 0\n"
    for path in ("/kubepods", "/kubepods/burstable", f"/kubepods/burstable/pod{POD}", CONTAINER):
        host.set_file(path, "memory.events", counted)
    host.set_file(CONTAINER, "memory.events.local", counted)
    events: list = []
    if log_first:
        kmsg.send(block())
        events += watcher.on_kmsg()
        clock.now += 0.05
    events += watcher.on_sample(without_container(collector.sample()))
    if not log_first:
        clock.now += 0.05
        kmsg.send(block())
        events += watcher.on_kmsg()
    clock.now += 0.1
    events += watcher.tick()
    clock.now += 0.5
    events += watcher.on_sample(collector.sample())  # the container is read again: still one kill
    events += run_out(watcher, clock)
    assert [event.victim.pid for event in events] == [4242]
    collector.close()
    watcher.close()
