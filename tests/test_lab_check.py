"""The lab's kill checks, the names it gives things and its report, from hand-made kernel records, counters,
events and Samples: no cgroups, no kernel that kills (:mod:`oomtop.lab.killcheck`, :mod:`oomtop.lab.describe`,
:mod:`oomtop.lab.report`).

The node is a real :class:`~oomtop.lab.node.LabNode` whose bookkeeping (pods, containers, processes) is filled in
by hand, and the Samples come from the real collector over a fixture host (tests/fakehost.py) holding the same
cgroups and processes, so the predictions are oomtop's own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from oomtop.collect.cgroupfs import MemoryHierarchy
from oomtop.collect.collector import Collector
from oomtop.lab import bundle
from oomtop.lab.describe import adj_reason, label, where, why_lines
from oomtop.lab.killcheck import (
    Episode,
    KillCheck,
    KillChecker,
    counted_kills,
    fill_prediction,
    group_episodes,
    is_ours,
    kill_domain,
    match_events,
    record_events,
)
from oomtop.lab.kubelet import MIB, AdjPolicy, Resources
from oomtop.lab.layout import CgroupLayout, CgroupTree
from oomtop.lab.node import LabNode
from oomtop.lab.observe import Tracker
from oomtop.lab.procs import LabProcess, Pipes
from oomtop.lab.report import Outcome, kill_line, summary
from oomtop.lab.runtime import Container, Pod, cri_annotations
from oomtop.lab.runtime_plain import PlainRuntime
from oomtop.lab.truth import GroupKill, Killed, Summary
from oomtop.model import KilledTask, OomEvent, QosClass, Sample
from oomtop.rank import predict
from tests.fakehost import FakeHost, FakeProcess

GI = 1 << 30
UID = "2a7c3c86-1f6b-4e1c-9d1a-4b1f0c2d9e11"
POD = f"/oomtop-lab/kubepods/burstable/pod{UID}"
APP_ID, SIDE_ID, PAUSE_ID = "a" * 64, "b" * 64, "c" * 64
APP, SIDE, PAUSE = f"{POD}/{APP_ID}", f"{POD}/{SIDE_ID}", f"{POD}/{PAUSE_ID}"
MAIN, EXEC, SIDECAR, SANDBOX = 900001, 900002, 900003, 900004  # pids no process has here: never alive


@dataclass
class World:
    node: LabNode
    pod: Pod
    procs: dict[int, LabProcess]
    sample: Sample
    tracker: Tracker


def _process(pid: int, name: str, container: Container, node: LabNode) -> LabProcess:
    pipes = Pipes()
    pipes.close()
    proc = LabProcess(name, "process", container.path, pipes, pid=pid, adj=container.adj, container=container)
    proc.wanted_adj = container.wanted_adj
    proc.released_at = 1.0
    container.processes.append(proc)
    node.processes.append(proc)
    node.lab_pids.add(pid)
    return proc


def make_world(tmp_path: Path) -> World:
    """The seed pod (Burstable, 123Mi) with app-main (100 MiB) and app-exec (30 MiB) in container app, a sidecar
    without a request (20 MiB) and the sandbox, on a machine that keeps adj >= 0 (the sandbox's -998 raised)."""
    tree = CgroupTree(MemoryHierarchy(1, str(tmp_path / "unused"), "v1"), CgroupLayout())
    node = LabNode(tree, PlainRuntime(str(tmp_path / "lab")), AdjPolicy(0), GI)
    pod = Pod("seed", "lab", UID, QosClass.BURSTABLE, POD, 123 * MIB, sandbox_id=PAUSE_ID)
    app = Container(pod, "app", APP_ID, APP, Resources(64 * MIB, 123 * MIB), 938, 938)
    side = Container(pod, "side", SIDE_ID, SIDE, Resources(), 1000, 1000)
    pod.containers = {"app": app, "side": side}
    pod.sandbox = Container(pod, "pause", PAUSE_ID, PAUSE, Resources(), -998, 0, sandbox=True)
    node.pods.append(pod)
    procs = {
        MAIN: _process(MAIN, "app-main", app, node),
        EXEC: _process(EXEC, "app-exec", app, node),
        SIDECAR: _process(SIDECAR, "side", side, node),
        SANDBOX: _process(SANDBOX, "pause", pod.sandbox, node),
    }
    host = FakeHost(tmp_path / "host", layout="v1")
    host.add_cgroup("/oomtop-lab", limit=GI)
    host.add_cgroup("/oomtop-lab/kubepods", limit=GI - 32 * MIB)
    host.add_cgroup("/oomtop-lab/kubepods/burstable")
    host.add_cgroup(POD, limit=123 * MIB)
    host.add_cgroup(APP, limit=123 * MIB, pids=(MAIN, EXEC))
    host.add_cgroup(SIDE, pids=(SIDECAR,))
    host.add_cgroup(PAUSE, pids=(SANDBOX,))
    for pid, comm, mib, adj in ((MAIN, "app-main", 100, 938), (EXEC, "app-exec", 30, 938), (SIDECAR, "side", 20, 1000)):
        host.add_process(FakeProcess(pid, comm=comm, rss_anon_kb=mib * 1024, adj=adj), None)
    host.add_process(FakeProcess(SANDBOX, comm="pause", rss_anon_kb=1024, adj=0), None)
    for container in (app, side, pod.sandbox):  # the bundles the runtime writes: oomtop names the pod from them
        bundle.write_config(str(host.root), container.id, {"annotations": cri_annotations(container)})
    with Collector(host.config()) as collector:
        sample = collector.sample()
    tracker = Tracker()
    tracker.feed(sample, 5.0)
    return World(node, pod, procs, sample, tracker)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _event(pid: int | None, comm: str | None = None, **fields: object) -> OomEvent:
    values: dict[str, object] = {
        "kind": "memcg",
        "time": None,
        "kernel_time_s": None,
        "oom_cgroup": POD,
        "task_cgroup": APP,
        "victim": KilledTask(pid=pid, comm=comm),
        "killed": (),
    }
    values.update(fields)
    return OomEvent(**values)  # type: ignore[arg-type]


def _counters(**values: int) -> dict[str, int]:
    return {"oom_kill": 0, "oom": 0, "limit_hits": 0, **values}


# ------------------------------------------------------------------------------------------ grouping the log


def test_kill_lines_of_one_group_kill_are_one_episode() -> None:
    cgroups = {1: "/g/c", 2: "/g/c", 3: "/other", 4: "/g/c"}
    records = [
        Killed(1, "a", 10.0, 1),
        GroupKill("/g", 10.0),
        Killed(2, "b", 10.05, 2),  # in the group's cgroup, right after: killed with 1
        Killed(1, "a", 10.06, 3),  # the same pid again: ignored
        Killed(3, "c", 10.1, 4),  # outside the group: an OOM of its own
        Killed(4, "d", 11.5, 5),  # inside, but a second and a half later: another OOM
        Summary(3, "/other", "/other", 10.1),
    ]
    episodes = group_episodes(records, cgroups.get)
    assert [(e.victim.pid, [m.pid for m in e.members], e.group_path) for e in episodes] == [
        (1, [2], "/g"),
        (3, [], None),
        (4, [], None),
    ]


def test_a_kill_line_without_a_group_kill_stays_alone() -> None:
    records = [Killed(1, "a", 10.0, 1), Killed(2, "b", 10.01, 2)]
    assert group_episodes(records, lambda _pid: "/g/c") == [
        Episode(Killed(1, "a", 10.0, 1)),
        Episode(Killed(2, "b", 10.01, 2)),
    ]


def test_only_the_labs_records_are_ours(world: World) -> None:
    assert is_ours(Killed(MAIN, "app-main", 1.0, 1), world.node)
    assert not is_ours(Killed(4242, "postgres", 1.0, 1), world.node)
    assert is_ours(Summary(4242, POD, APP, 1.0), world.node)  # a domain of the lab's, whoever died
    assert is_ours(Summary(MAIN, "/elsewhere", "/elsewhere", 1.0), world.node)
    assert not is_ours(Summary(4242, "/kubepods/pod1", "/kubepods/pod1/c", 1.0), world.node)
    assert is_ours(GroupKill(APP, 1.0), world.node) and not is_ours(GroupKill("/oomtop-lab2/x", 1.0), world.node)


# -------------------------------------------------------------------------------------------- the domain


def test_the_domain_is_the_logs_then_the_deepest_counter_that_rose() -> None:
    layout = CgroupLayout()
    before = {POD: _counters(), APP: _counters(), "/oomtop-lab/kubepods": _counters()}
    after = {POD: _counters(limit_hits=2), APP: _counters(), "/oomtop-lab/kubepods": _counters(limit_hits=1)}
    logged = Summary(MAIN, POD, APP, 10.0)
    assert kill_domain(logged, APP, before, after, layout, 1) == (POD, "kernel log")
    foreign = Summary(MAIN, "/kubepods/pod1", APP, 10.0)  # not a lab path: the counters decide
    assert kill_domain(foreign, None, before, after, layout, 1) == (POD, "counters")
    assert kill_domain(None, APP, before, after, layout, 1) == (POD, "counters")  # pod deeper than kubepods
    assert kill_domain(None, APP, before, after, layout, 2) == (None, "unknown")  # v2 counts "oom", not hits
    v2_after = {**after, APP: _counters(oom=1)}
    assert kill_domain(None, APP, before, v2_after, layout, 2) == (APP, "counters")
    assert kill_domain(None, None, before, after, layout, 1) == (None, "unknown")
    assert kill_domain(None, SIDE, before, after, layout, 1) == (POD, "counters")  # above the sidecar too


def test_counted_kills() -> None:
    before = {APP: _counters(oom_kill=1), SIDE: _counters()}
    assert counted_kills(before, {APP: _counters(oom_kill=3), SIDE: _counters(oom_kill=1)}) == 3
    assert counted_kills(before, {APP: _counters(oom_kill=3)}) == 2  # a cgroup gone since: not counted


# -------------------------------------------------------------------------------------------- predictions


def test_prediction_from_the_sample_without_the_already_killed(world: World) -> None:
    check = KillCheck(1, MAIN, "app-main", [(MAIN, "app-main")], 10.0, POD, "kernel log")
    fill_prediction(check, world.sample, set(), world.node)
    assert (check.predicted_pid, check.predicted_name, check.right) == (MAIN, "app-main", True)
    assert check.why[0].startswith("  why: pod lab/seed hit its limit of 123M")
    follow = KillCheck(2, EXEC, "app-exec", [(EXEC, "app-exec")], 10.2, POD, "kernel log")
    fill_prediction(follow, world.sample, {MAIN}, world.node)  # app-main is exiting: the kernel skips it
    assert follow.predicted_pid == EXEC


def test_no_prediction_says_why(world: World) -> None:
    check = KillCheck(1, MAIN, "app-main", [(MAIN, "app-main")], 10.0, None, "unknown")
    fill_prediction(check, world.sample, set(), world.node)
    assert check.why == ["  no prediction: domain unknown"] and check.predicted_pid is None
    fill_prediction(check, None, set(), world.node)
    assert check.why == ["  no prediction: no Sample before the kill"]
    elsewhere = replace(check, domain="/oomtop-lab/nothing")
    fill_prediction(elsewhere, world.sample, set(), world.node)
    assert elsewhere.why == ["  no prediction: oomtop has no verdict for /oomtop-lab/nothing"]


# ---------------------------------------------------------------------------------------- oomtop's events


def test_events_match_by_victim_killed_list_and_cgroup() -> None:
    cgroups = {1: "/g/c", 2: "/g/c", 3: "/g/d", 4: "/g/d"}
    events = [
        (10.1, _event(1, "a", killed=(KilledTask(1, "a"), KilledTask(2, "b")))),
        (10.2, _event(1, "a")),  # a second report of 1: the first one counts
        (10.3, _event(None, task_cgroup="/g/d")),  # counters only: one of the pids in /g/d
    ]
    found = match_events(events, {1, 2, 3, 4}, cgroups.get)
    assert found[1][0] == 10.1 and found[2][0] == 10.1
    assert len({3, 4} & set(found)) == 1 and found[next(iter({3, 4} & set(found)))][0] == 10.3
    assert match_events(events, {5}, cgroups.get) == {}


def test_events_fill_detection_and_latency() -> None:
    single = KillCheck(1, 1, "a", [(1, "a")], 10.0, "/g", "kernel log", predicted_pid=1)
    group = KillCheck(2, 3, "c", [(3, "c"), (4, "d")], 12.0, "/g", "kernel log")
    by_counters = KillCheck(3, 5, "e", [(5, "e")], 13.0, "/g", "kernel log")
    found = {
        1: (10.25, _event(1, "a", predicted_victim_pid=2)),
        3: (12.5, _event(3, "c", predicted_victim_pid=3)),
        5: (13.1, _event(None, predicted_victim_pid=9)),
    }
    record_events([single, group, by_counters], found)
    assert single.detected and single.latency_ms == pytest.approx(250) and single.event_predicted_pid == 2
    assert not group.detected and group.undetected == [4] and group.latency_ms == pytest.approx(500)
    assert by_counters.detected and by_counters.event_predicted_pid is None  # a counter event guessed its domain


# ------------------------------------------------------------------------------------------- the checker


def test_checker_numbers_kills_and_counts_a_lost_kill_once(world: World) -> None:
    checker = KillChecker(world.node, world.tracker)
    world.tracker.feed(_event(MAIN, "app-main", predicted_victim_pid=MAIN), 10.02)
    before = {POD: _counters(), APP: _counters()}
    after = {POD: _counters(limit_hits=1), APP: _counters(oom_kill=2)}  # two kills, one kill line
    records = [Killed(MAIN, "app-main", 10.0, 1), Summary(MAIN, POD, APP, 10.0)]
    checks = checker.assemble(records, before, after, world.procs[MAIN])
    checker.wait_for_events(checks, 9.0, lambda: None)
    assert [(c.index, c.victim_pid, c.domain_source, c.follow_up) for c in checks] == [
        (1, MAIN, "kernel log", False),
        (2, EXEC, "counters (the kernel log lost this kill)", True),
        (3, SIDECAR, "counters (the kernel log lost this kill)", True),
        (4, SANDBOX, "counters (the kernel log lost this kill)", True),
    ]  # every released lab process that is gone and the lab did not stop counts as lost
    assert checks[0].right and checks[0].as_expected and checks[0].detected
    assert checks[0].latency_ms == pytest.approx(20)
    again = checker.assemble([Killed(MAIN, "app-main", 20.0, 2)], before, after, None)
    assert [(c.index, c.victim_pid) for c in again] == [(5, MAIN)]  # the lost ones are not counted twice


def test_checker_leaves_processes_the_lab_stopped(world: World) -> None:
    for pid in (EXEC, SIDECAR, SANDBOX):
        world.procs[pid].stopped_by_lab = True
    checker = KillChecker(world.node, world.tracker)
    after = {APP: _counters(oom_kill=3)}
    checks = checker.assemble([Killed(MAIN, "app-main", 10.0, 1)], {APP: _counters()}, after, None)
    assert [c.victim_pid for c in checks] == [MAIN]


# ------------------------------------------------------------------------------------------------ names


def test_labels_and_adj_reasons(world: World) -> None:
    main, side, pause = world.procs[MAIN], world.procs[SIDECAR], world.procs[SANDBOX]
    assert label(main) == "lab/seed/app" and label(pause) == "lab/seed/pause" and label(None) == "?"
    assert adj_reason(main) == "(Burstable, request 64Mi)"
    assert adj_reason(side) == "(Burstable, request none)"
    assert adj_reason(pause) == "(sandbox; runtime sets -998)"  # this machine raised it to 0
    assert adj_reason(None) == ""
    guaranteed = Pod("db", "lab", UID, QosClass.GUARANTEED, "/p", MIB, sandbox_id=PAUSE_ID)
    db = Container(guaranteed, "db", APP_ID, "/p/c", Resources(MIB, MIB), -997, 0)
    proc = LabProcess("db", "process", "/p/c", main.pipes, container=db)
    assert adj_reason(proc) == "(Guaranteed; kubelet sets -997)"
    db.adj = -997
    assert adj_reason(proc) == "(Guaranteed)"
    db.pod = replace(guaranteed, qos=QosClass.BEST_EFFORT)
    assert adj_reason(proc) == "(BestEffort)"


def test_where_names_cgroups_as_oomtop_then_as_the_lab(world: World) -> None:
    node, sample = world.node, world.sample
    assert where(POD, node, sample) == "pod lab/seed"
    assert where(APP, node, sample) == "container lab/seed/app"
    assert where("/oomtop-lab/kubepods", node, sample) == "kubepods"
    assert where(POD, node) == "pod lab/seed"  # without a Sample: the lab's own records
    assert where(SIDE, node) == "container lab/seed/side"
    assert where("/oomtop-lab/kubepods", node) == "kubepods"
    assert where("/oomtop-lab", node, sample) == "/oomtop-lab"
    assert where(None, node) == "?"


def test_why_lines_show_the_scores(world: World) -> None:
    verdict = predict(world.sample).by_domain[POD]
    lines = why_lines(verdict, world.sample, world.node)
    assert lines[0] == (
        "  why: pod lab/seed hit its limit of 123M (31488 pages); each process scores rss pages + oom_score_adj x 31:"
    )
    assert lines[1].startswith("    1. app-main      pid 900001  lab/seed/app") and lines[1].endswith("<- dies")
    assert "(Burstable, request 64Mi)" in lines[1]
    assert [line.split()[1] for line in lines[1:]] == ["app-main", "app-exec", "side", "pause"]
    tasks = tuple(c.task for c in verdict.candidates[:2])
    many = replace(verdict, eligible=tuple(verdict.eligible) * 2, group_path=APP, group_victims=tasks)
    more = why_lines(many, world.sample, world.node)
    assert more[-2:] == [
        "    ... and 3 more",
        "    memory.oom.group is set on container lab/seed/app: all 2 of its processes die together",
    ]


# ----------------------------------------------------------------------------------------------- report


def _check(**fields: object) -> KillCheck:
    values: dict[str, object] = {
        "index": 1,
        "victim_pid": MAIN,
        "victim_name": "app-main",
        "killed": [(MAIN, "app-main")],
        "time_s": 10.0,
        "domain": POD,
        "domain_source": "kernel log",
        "predicted_pid": MAIN,
        "predicted_name": "app-main",
        "detected": True,
        "latency_ms": 16.4,
    }
    values.update(fields)
    return KillCheck(**values)  # type: ignore[arg-type]


def test_kill_lines(world: World) -> None:
    node = world.node
    assert kill_line(_check(), node) == (
        "kill 1: predicted 900001 app-main (lab/seed/app), killed 900001 app-main (lab/seed/app); "
        "domain pod lab/seed; latency 16 ms; right"
    )
    wrong = _check(predicted_pid=SIDECAR, predicted_name="side", detected=False, latency_ms=None)
    assert kill_line(wrong, node) == (
        "kill 1: predicted 900003 side (lab/seed/side), killed 900001 app-main (lab/seed/app); "
        "domain pod lab/seed; latency MISSED; WRONG"
    )
    group = _check(
        killed=[(MAIN, "app-main"), (EXEC, "app-exec")],
        group_path=APP,
        predicted_group=(MAIN, EXEC),
        detected=False,
        undetected=[EXEC],
    )
    assert "killed 900001 app-main (lab/seed/app) and 1 more (memory.oom.group);" in kill_line(group, node)
    assert "latency MISSED (1 not reported); right" in kill_line(group, node)
    noted = _check(
        index=2,
        follow_up=True,
        expected_pid=EXEC,
        event_predicted_pid=SIDECAR,
        domain=None,
        domain_source="counters",
        predicted_pid=None,
    )
    assert kill_line(noted, node) == (
        "kill 2: predicted nothing, killed 900001 app-main (lab/seed/app); domain ?; latency 16 ms; WRONG "
        "(a follow-up OOM while the first victim was still exiting; oomtop's kill event said 900003; "
        "domain from the counters)"
    )
    unexpected = _check(expected_pid=EXEC)
    assert kill_line(unexpected, node).endswith("right (the scenario meant app-exec to die)")


def test_summary() -> None:
    assert summary([]) == "summary: 0 kills in 0 OOMs, 0 predicted right, 0 wrong, 0 missed"
    assert summary([_check()]) == (
        "summary: 1 kill in 1 OOM, 1 predicted right, 0 wrong, 0 missed; detection latency median 16 ms, max 16 ms"
    )
    checks = [
        _check(killed=[(MAIN, "app-main"), (EXEC, "app-exec")], group_path=APP, predicted_group=(MAIN,)),
        _check(latency_ms=40.0, follow_up=True, undetected=[SIDECAR], event_predicted_pid=SIDECAR),
        _check(latency_ms=None, expected_pid=EXEC, event_predicted_pid=SANDBOX),
    ]
    assert summary(checks) == (
        "summary: 4 kills in 3 OOMs, 2 predicted right, 1 wrong, 1 missed; detection latency median 28 ms, "
        "max 40 ms; 1 follow-up OOM; 1 not the victim the scenario meant; 2 kill events from oomtop's watcher "
        "named another predicted victim"
    )


@pytest.mark.parametrize(
    "outcome, headless, status",
    [
        (Outcome(checks=[_check()], finished=True), True, 0),
        (Outcome(checks=[_check(predicted_pid=EXEC)], finished=True), True, 1),
        (Outcome(checks=[_check(undetected=[MAIN])], finished=True), True, 1),
        (Outcome(checks=[_check(expected_pid=EXEC)], finished=True), True, 1),
        (Outcome(checks=[_check(expected_pid=EXEC, follow_up=True)], finished=True), True, 0),
        (Outcome(problems=["app-exec reached its size without an OOM kill"], finished=True), True, 1),
        (Outcome(crash=RuntimeError("boom")), True, 1),
        (Outcome(), True, 1),  # headless and the scenario never finished
        (Outcome(), False, 0),  # the live view closed before it finished: the user's choice
        (Outcome(checks=[_check(predicted_pid=EXEC)], interrupted=15), True, 128 + 15),
    ],
)
def test_exit_status(outcome: Outcome, headless: bool, status: int) -> None:
    assert outcome.exit_status(headless) == status
