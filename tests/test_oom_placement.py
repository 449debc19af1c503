"""Placement alone (oomtop.collect.oom_placement): where the victim of a report without cgroups lived, on a fixture
host, and how long such a report is held for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.collector import Collector
from oomtop.collect.oom_ledger import LOG_MATCH_WINDOW_S
from oomtop.collect.oom_placement import HOLD_UNPLACED_S, Placement
from oomtop.collect.oom_samples import RecentSamples
from oomtop.model import KilledTask, OomEvent
from tests.fakehost import FakeHost, FakeProcess

POD = "/kubepods/burstable/podA"
CTR = f"{POD}/c1"
OTHER = f"{POD}/c2"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def headless(pid: int, comm: str | None = "web") -> OomEvent:
    """A rate-limited report: only "Killed process N (comm)", no cgroups."""
    victim = KilledTask(pid, comm)
    return OomEvent(kind="memcg", time=None, kernel_time_s=None, oom_cgroup=None, task_cgroup=None, victim=victim,
                    killed=(victim,))  # fmt: skip


def host(tmp_path: Path, layout: str = "v1") -> FakeHost:
    fake = FakeHost(tmp_path, layout=layout)
    fake.add_cgroup("/kubepods")
    fake.add_cgroup("/kubepods/burstable")
    fake.add_cgroup(POD, limit=256 << 20)
    fake.add_cgroup(CTR)  # no limit of its own: the pod's applies
    fake.add_cgroup(OTHER, limit=50 << 20)
    return fake


def placement_for(fake: FakeHost, clock: Clock, sampled: bool = True) -> Placement:
    samples = RecentSamples(clock)
    if sampled:
        with Collector(fake.config(slow_interval_s=0.0), monotonic=clock) as collector:
            samples.add(collector.sample())
    hierarchy = discover_hierarchy(str(fake.cgroup_root), str(fake.proc))
    return Placement(hierarchy, str(fake.proc), samples, clock)


def write_proc_cgroup(fake: FakeHost, pid: int, path: str) -> None:
    (fake.proc / str(pid)).mkdir(parents=True, exist_ok=True)
    (fake.proc / str(pid) / "cgroup").write_text(f"12:memory:{path}\n11:pids:/\n")


# ------------------------------------------------------------------------------------------ where it lived


def test_a_victim_the_last_sample_saw_is_placed_with_its_domain(tmp_path: Path) -> None:
    fake = host(tmp_path)
    fake.add_process(FakeProcess(4242, comm="web"), CTR)
    placed = placement_for(fake, Clock()).where_it_lived(headless(4242))
    assert (placed.task_cgroup, placed.oom_cgroup) == (CTR, POD)  # the nearest limit is the pod's


def test_a_reused_pid_with_another_name_is_not_placed_from_the_sample(tmp_path: Path) -> None:
    fake = host(tmp_path)
    fake.add_process(FakeProcess(4242, comm="web"), CTR)
    placement = placement_for(fake, Clock())
    fake.remove_process(4242)
    assert placement.where_it_lived(headless(4242, comm="other")).task_cgroup is None


def test_a_member_of_a_woken_cgroup_is_placed_there_for_the_match_window(tmp_path: Path) -> None:
    """Born and killed between two polls: the wake-up came as the OOM started, while it was still listed."""
    fake = host(tmp_path)
    clock = Clock()
    placement = placement_for(fake, clock)
    fake.add_process(FakeProcess(7777, comm="hog"), OTHER)
    placement.note_members(OTHER, clock.now)
    fake.remove_process(7777)
    assert placement.where_it_lived(headless(7777, "hog")).task_cgroup == OTHER
    clock.now += LOG_MATCH_WINDOW_S
    assert placement.where_it_lived(headless(7777, "hog")).task_cgroup is None


def test_a_dying_task_still_names_its_cgroup_in_proc(tmp_path: Path) -> None:
    fake = host(tmp_path)
    placement = placement_for(fake, Clock())
    write_proc_cgroup(fake, 8888, OTHER)
    assert placement.where_it_lived(headless(8888)).task_cgroup == OTHER


def test_an_exited_task_moved_to_the_root_says_nothing(tmp_path: Path) -> None:
    fake = host(tmp_path)
    placement = placement_for(fake, Clock())
    write_proc_cgroup(fake, 8888, "/")
    assert placement.where_it_lived(headless(8888)).task_cgroup is None


def test_a_placed_event_is_left_as_it_is(tmp_path: Path) -> None:
    fake = host(tmp_path)
    placed = replace(headless(4242), task_cgroup=OTHER)
    assert placement_for(fake, Clock(), sampled=False).where_it_lived(placed) is placed


def test_the_nearest_limit_walks_up_from_the_victims_cgroup(tmp_path: Path) -> None:
    for layout in ("v1", "v2"):
        fake = host(tmp_path / layout, layout)
        placement = placement_for(fake, Clock(), sampled=False)
        assert placement.nearest_limit(OTHER) == OTHER
        assert placement.nearest_limit(CTR) == POD
        assert placement.nearest_limit("/kubepods/burstable") is None


# ------------------------------------------------------------------------------------------ reports on hold


def test_a_held_report_waits_then_goes_out_unplaced(tmp_path: Path) -> None:
    clock = Clock()
    placement = placement_for(host(tmp_path), clock)
    placement.hold(headless(7777), clock.now)
    assert placement.release(clock.now + HOLD_UNPLACED_S - 0.001, lambda: None) == []
    released = placement.release(clock.now + HOLD_UNPLACED_S + 0.001, lambda: None)
    assert [(event.victim.pid, event.task_cgroup) for event in released] == [(7777, None)]
    assert placement.held == 0


def test_a_held_report_goes_out_as_soon_as_a_wake_up_places_it(tmp_path: Path) -> None:
    fake = host(tmp_path)
    clock = Clock()
    placement = placement_for(fake, clock)
    placement.hold(headless(7777, "hog"), clock.now)
    fake.add_process(FakeProcess(7777, comm="hog"), OTHER)
    placement.note_members(OTHER, clock.now)
    released = placement.release(clock.now + 0.001, lambda: None)
    assert [event.task_cgroup for event in released] == [OTHER]


def test_the_lone_increment_places_a_lone_report_once_it_waited(tmp_path: Path) -> None:
    clock = Clock()
    placement = placement_for(host(tmp_path), clock)
    asked: list[int] = []

    def lone() -> str | None:
        asked.append(1)
        return OTHER

    placement.hold(headless(7777), clock.now)
    assert placement.release(clock.now + 0.001, lone) == [] and asked == []  # not before HOLD_UNPLACED_S
    released = placement.release(clock.now + HOLD_UNPLACED_S + 0.001, lone)
    assert [event.task_cgroup for event in released] == [OTHER] and asked == [1]


def test_two_held_reports_are_never_placed_by_an_increment(tmp_path: Path) -> None:
    """Two reports without cgroups: which increment is whose is not known, so neither is placed."""
    clock = Clock()
    placement = placement_for(host(tmp_path), clock)
    placement.hold(headless(7777), clock.now)
    placement.hold(headless(7779), clock.now)
    released = placement.release(clock.now + HOLD_UNPLACED_S + 0.001, lambda: OTHER)
    assert [(event.victim.pid, event.task_cgroup) for event in released] == [(7777, None), (7779, None)]


def test_held_reports_go_out_in_the_order_they_came(tmp_path: Path) -> None:
    fake = host(tmp_path)
    clock = Clock()
    placement = placement_for(fake, clock)
    placement.hold(headless(7777, "hog"), clock.now)
    placement.hold(headless(7779, "hog"), clock.now + 0.01)
    write_proc_cgroup(fake, 7779, OTHER)  # the second is placed first ...
    assert placement.release(clock.now + 0.011, lambda: None) == []  # ... but waits behind the first
    released = placement.release(clock.now + HOLD_UNPLACED_S + 0.001, lambda: None)
    assert [(event.victim.pid, event.task_cgroup) for event in released] == [(7777, None), (7779, OTHER)]


def test_a_path_relative_to_a_private_cgroup_namespace_is_resolved(tmp_path: Path) -> None:
    """oomtop in a container with its own cgroup namespace (containerd's default on v2): /proc/<pid>/cgroup of a
    host process is relative to oomtop's own cgroup, ``/../..<rest>``.  It is resolved against the cgroups the
    samples know, and without a sample against the hierarchy on disk: never taken as a path."""
    fake = host(tmp_path)
    write_proc_cgroup(fake, 7101, "/../../burstable/podA/c1")  # seen from inside /kubepods/besteffort/podB/ctr
    write_proc_cgroup(fake, 7102, "/../../../../nowhere/at/all")
    for sampled in (True, False):
        placement = placement_for(fake, Clock(), sampled=sampled)
        assert placement.where_it_lived(headless(7101)).task_cgroup == CTR
        assert placement.where_it_lived(headless(7102)).task_cgroup is None
    write_proc_cgroup(fake, 7103, OTHER)  # the host's own namespace: the path as it is
    assert placement_for(fake, Clock()).where_it_lived(headless(7103)).task_cgroup == OTHER
