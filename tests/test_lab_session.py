"""A lab run's parts that need no cgroups: the options, the stop flag, the scenario API over a built lab
(:mod:`oomtop.lab.built`), the session's scenario thread (:mod:`oomtop.lab.session`) and the entry point's checks
and summary (:mod:`oomtop.lab.runner`).  The lab itself runs for real in tests/test_lab.py.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from oomtop.lab import LabError, runner
from oomtop.lab import session as session_module
from oomtop.lab.built import BuiltLab, setup_problems
from oomtop.lab.kubelet import MIB
from oomtop.lab.node import LabRuntimeError
from oomtop.lab.observe import LabSource
from oomtop.lab.options import LabOptions
from oomtop.lab.procs import LabProcess, Pipes
from oomtop.lab.report import Outcome
from oomtop.lab.session import Session
from oomtop.lab.stopping import Aborted, StopFlag
from oomtop.source import Update
from tests.test_lab_check import APP, EXEC, MAIN, SANDBOX, SIDE, SIDECAR, World, make_world

GI = 1 << 30


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


class _Inner:
    """A Source that never delivers (the tests feed the Tracker themselves)."""

    mode = "live"

    async def updates(self) -> AsyncIterator[Update]:
        return
        yield

    def close(self) -> None:
        pass


def _built(world: World, headless: bool = True, **options: object) -> tuple[BuiltLab, io.StringIO]:
    out = io.StringIO()
    lab = BuiltLab(
        options=LabOptions("seed", headless=headless, **options),  # type: ignore[arg-type]
        capacity_bytes=GI,
        runtime=world.node.runtime,
        node=world.node,
        klog=None,  # type: ignore[arg-type]  # nothing here reads the kernel log
        source=LabSource(_Inner(), world.tracker, "/oomtop-lab", world.node.lab_pids),  # type: ignore[arg-type]
        tracker=world.tracker,
        stop=StopFlag(),
        outcome=Outcome(),
        out=out,
    )
    return lab, out


# ------------------------------------------------------------------------------------------- options, stop


def test_pace_and_pauses_follow_the_view_unless_asked() -> None:
    assert LabOptions("seed", headless=True).effective_pace_s() == 0.0
    assert LabOptions("seed").effective_pace_s() == 2.5
    assert LabOptions("seed", headless=True, pace_s=6.0).effective_pace_s() == 6.0
    assert not LabOptions("seed", headless=True).effective_pauses()
    assert LabOptions("seed").effective_pauses()
    assert LabOptions("seed", headless=True, pauses=True).effective_pauses()


def test_stop_flag() -> None:
    flag = StopFlag()
    flag.check()
    started = time.monotonic()
    flag.sleep(0.05)
    assert time.monotonic() - started >= 0.05 and not flag.is_set()
    threading.Timer(0.05, flag.set).start()
    with pytest.raises(Aborted):
        flag.sleep(10)  # woken by the stop, not the timeout
    assert time.monotonic() - started < 5
    with pytest.raises(Aborted):
        flag.check()
    flag.wait()  # returns at once once set


# ------------------------------------------------------------------------------------------- settling


def test_a_sample_as_set_up_has_no_problems(world: World) -> None:
    procs = list(world.procs.values())
    assert setup_problems(world.sample, procs) == []


def test_setup_problems_name_the_first_difference_of_each_process(world: World) -> None:
    main, exec_, side, pause = (world.procs[pid] for pid in (MAIN, EXEC, SIDECAR, SANDBOX))
    main.mib = 200  # holds 100 MiB of it
    exec_.adj = 500  # the kernel holds 938
    side.cgroup = APP  # the Sample shows it in its own cgroup
    gone = LabProcess("gone", "process", SIDE, pause.pipes, pid=424242, container=side.container)
    assert setup_problems(world.sample, [main, exec_, side, gone, pause]) == [
        "app-main rss 100M of 200 MiB",
        "app-exec adj 938, the kernel holds 500",
        f"side in {SIDE}",
        "gone (pid 424242) not in the sample",
    ]
    unnamed = replace(
        world.sample, cgroups=tuple(replace(c, identity=replace(c.identity, pod=None)) for c in world.sample.cgroups)
    )
    problems = setup_problems(unnamed, [pause])
    assert len(problems) == 1 and problems[0].startswith("pause's cgroup not named: ")


def test_settle_waits_for_a_new_sample(world: World) -> None:
    lab, _out = _built(world)
    threading.Timer(0.1, world.tracker.feed, (world.sample, time.monotonic() + 0.1)).start()
    assert lab.settle(timeout_s=5) is world.sample


def test_settle_says_what_it_waited_for(world: World) -> None:
    lab, _out = _built(world)
    with pytest.raises(LabRuntimeError, match=r"as set up within 0 s: \? \(latest sample .* s ago\)"):
        lab.settle(timeout_s=0.2)  # no process is alive here, and no new Sample comes


# ------------------------------------------------------------------------------------------- scenario API


def test_emit_headless_prints_every_line(world: World) -> None:
    lab, out = _built(world)
    lab.emit("note: something", key="lab-adj")
    lab.emit("  why: ...", detail=True)
    assert out.getvalue() == "note: something\n  why: ...\n"
    assert world.tracker.notices == []


def test_emit_live_shows_notices_but_not_details(world: World) -> None:
    lab, out = _built(world, headless=False)
    lab.emit("note: something", key="lab-adj")
    lab.emit("  why: ...", detail=True)
    lab.emit("a step")
    assert out.getvalue() == ""
    assert [(n.text, n.key) for n in world.tracker.notices] == [("something", "lab-adj"), ("a step", "lab-1")]


def test_pacing(world: World) -> None:
    lab, _out = _built(world, headless=False)
    assert lab.delay_ms(4) == 100.0  # 2.5 s per 100 MiB: 100 ms per 4 MiB step
    lab.stop.set()
    with pytest.raises(Aborted):
        lab.pause(10)
    quiet, _out = _built(world, headless=True)
    assert quiet.delay_ms(4) == 0.0
    quiet.stop.set()
    quiet.pause(10)  # headless: no pauses, so nothing to abort


def test_grow_asks_the_hog_for_more(world: World) -> None:
    lab, _out = _built(world)
    pipes = Pipes()
    try:
        proc = LabProcess("hog", "process", APP, pipes, mib=10)
        assert lab.grow(proc, 20, 2)() is proc
        assert proc.mib == 30
        assert os.read(pipes.child_stdin, 100) == b"grow 20 2 0\n"
    finally:
        pipes.close()


def test_a_trigger_is_done_when_it_holds_its_memory_or_dies(world: World) -> None:
    pipes = Pipes()
    try:
        proc = LabProcess("hog", "process", APP, pipes)
        assert BuiltLab._done(proc, 7.0) is None  # still allocating
        os.write(pipes.child_stdout, b"R\n")
        assert BuiltLab._done(proc, 7.0) == 7.0
        os.write(pipes.child_stdout, b"E no memory\n")
        with pytest.raises(LabRuntimeError, match="hog failed: no memory"):
            BuiltLab._done(proc, 8.0)
        pipes.child_started()  # our write end closed: end of file, as when the hog dies
        assert BuiltLab._done(proc, 9.0) == 9.0
    finally:
        pipes.close()


def test_headroom_reads_the_kernel(world: World, tmp_path: Path) -> None:
    lab, _out = _built(world)
    directory = tmp_path / "unused/oomtop-lab/kubepods"
    directory.mkdir(parents=True)
    (directory / "memory.limit_in_bytes").write_text(str(100 * MIB))
    (directory / "memory.usage_in_bytes").write_text(str(60 * MIB))
    assert lab.headroom("/oomtop-lab/kubepods") == 40.0
    (directory / "memory.limit_in_bytes").write_text("9223372036854771712")
    with pytest.raises(LabRuntimeError, match="has no memory limit"):
        lab.headroom("/oomtop-lab/kubepods")


# ------------------------------------------------------------------------------------------- the session


class _Lab:
    """What the scenario thread's body needs of a built lab: somewhere to emit."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, text: str, key: str | None = None, detail: bool = False) -> None:
        self.lines.append((text, key))


def _session(world: World, scenario: object, headless: bool = True) -> Session:
    session = Session(LabOptions("test", headless=headless), scenario, GI, out=io.StringIO())  # type: ignore[arg-type]
    session.tracker.feed(world.sample, time.monotonic())
    return session


def test_a_finished_scenario(world: World) -> None:
    ran: list[object] = []
    session = _session(world, ran.append)
    lab = _Lab()
    session.run_scenario(lab)  # type: ignore[arg-type]
    assert ran == [lab] and session.outcome.finished and session.outcome.crash is None
    assert lab.lines == [] and session.exit_status() == 0


def test_a_crashing_scenario_is_reported(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(_lab: object) -> None:
        raise RuntimeError("the scenario broke")

    session = _session(world, boom)
    lab = _Lab()
    session.run_scenario(lab)  # type: ignore[arg-type]
    assert isinstance(session.outcome.crash, RuntimeError) and not session.outcome.finished
    assert lab.lines == [("the scenario failed: RuntimeError: the scenario broke", "lab-crash")]
    assert "Traceback" in capsys.readouterr().err  # a bug: its traceback
    assert session.exit_status() == 1


def test_a_lab_failure_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    def fails(_lab: object) -> None:
        raise LabRuntimeError("runc run failed")

    session = _session(world, fails)
    lab = _Lab()
    session.run_scenario(lab)  # type: ignore[arg-type]
    assert lab.lines == [("the scenario failed: oomtop.lab.node.LabRuntimeError: runc run failed", "lab-crash")]
    assert "Traceback" not in capsys.readouterr().err


def test_an_aborted_scenario_is_no_crash(world: World) -> None:
    def stopped(_lab: object) -> None:
        raise Aborted()

    session = _session(world, stopped)
    session.interrupt(signal.SIGTERM)
    session.interrupt(signal.SIGINT)  # the first signal is the one that counts
    session.run_scenario(_Lab())  # type: ignore[arg-type]
    assert session.outcome.crash is None and not session.outcome.finished
    assert session.exit_status() == 128 + signal.SIGTERM


def test_no_first_sample(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "FIRST_SAMPLE_S", 0.1)
    session = Session(LabOptions("test", headless=True), lambda _lab: None, GI)
    lab = _Lab()
    session.run_scenario(lab)  # type: ignore[arg-type]
    assert lab.lines == [
        (
            "the scenario failed: oomtop.lab.node.LabRuntimeError: oomtop's collector delivered no sample within 0 s",
            "lab-crash",
        )
    ]


def test_the_live_view_keeps_the_lab_until_the_user_quits(world: World) -> None:
    session = _session(world, lambda _lab: None, headless=False)
    lab = _Lab()
    thread = threading.Thread(target=session.run_scenario, args=(lab,))
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive() and lab.lines == [
        (
            "summary: 0 kills in 0 OOMs, 0 predicted right, 0 wrong, 0 missed; press q to quit (the lab's pods stay "
            "until then)",
            "lab-summary",
        )
    ]
    session.stop()
    thread.join(5)
    assert not thread.is_alive() and session.exit_status() == 0


def test_teardown_before_anything_was_built() -> None:
    session = Session(LabOptions("test", headless=True), lambda _lab: None, GI)
    assert session.teardown() == [] and session.teardown() == []
    assert session.outcome.problems == []


# ------------------------------------------------------------------------------------------- the entry point


def test_the_view_is_checked_before_anything_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    def factory(*_args: object) -> object:
        return object()

    assert runner._view_factory(LabOptions("seed", headless=True), None) is None
    monkeypatch.setattr("sys.stdin.isatty", lambda: False, raising=False)
    with pytest.raises(LabError, match="needs a terminal"):
        runner._view_factory(LabOptions("seed"), factory)  # type: ignore[arg-type]
    monkeypatch.setattr(runner.sys, "stdin", type("Tty", (), {"isatty": staticmethod(lambda: True)})())
    monkeypatch.setattr(runner.sys, "stdout", type("Tty", (), {"isatty": staticmethod(lambda: True)})())
    with pytest.raises(LabError, match="no live view"):
        runner._view_factory(LabOptions("seed"), None)
    assert runner._view_factory(LabOptions("seed"), factory) is factory  # type: ignore[arg-type]


def test_the_summary_and_the_signal_that_stopped_the_run() -> None:
    session = Session(LabOptions("test", headless=True), lambda _lab: None, GI)
    out = io.StringIO()
    runner._print_summary(session, out)
    assert out.getvalue() == "summary: 0 kills in 0 OOMs, 0 predicted right, 0 wrong, 0 missed\n"
    session.interrupt(signal.SIGINT)
    out = io.StringIO()
    runner._print_summary(session, out)
    assert out.getvalue().splitlines()[1] == "oomtop lab: stopped by SIGINT; everything the lab made is removed"
    live = Session(LabOptions("test"), lambda _lab: None, GI)
    out = io.StringIO()
    runner._print_summary(live, out)  # the live view showed it: nothing to print without kills
    assert out.getvalue() == ""
