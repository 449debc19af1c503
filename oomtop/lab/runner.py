"""Running a lab scenario, live or headless, and checking every kill it causes against oomtop's prediction.

One lab run is a :class:`Session`: it takes the lab's lock, builds the node (cgroups, runtime), starts oomtop's
own live Source (collector plus OOM watcher, narrowed to the lab by :class:`~oomtop.lab.observe.LabSource`) and
runs the scenario on a thread of its own, while the main thread runs the live UI or, with ``--headless``, just
consumes the Source.

For every kill the kernel makes in the lab's cgroups, the lab knows independently of oomtop's detectors (its own
kernel-log reader and the cgroup counters, see :mod:`oomtop.lab.truth`):

- the actual victim (and, under ``memory.oom.group``, everything killed with it);
- the domain that ran out (``oom_memcg=`` from the log; where the kernel's report rate limit dropped that line,
  the lab cgroup whose refused-charge counter rose: v1 ``memory.failcnt``, v2 ``memory.events.local`` oom);
- oomtop's prediction for that domain, from the last Sample that had fully arrived before the kill (with the
  tasks the kernel had already killed left out: they are skipped as "already exiting" by the next OOM);
- whether oomtop's watcher reported the kill, and how long after the kernel's timestamp the event arrived.

A run fails (exit status 1) when any prediction was wrong, any kill went unreported, or the scenario could not do
what it meant to; the lab cleans up on every path out (see :mod:`oomtop.lab.cleanup`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol, TextIO

from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.collector import CollectorConfig
from oomtop.lab import LAB_DIR, LabError, cleanup
from oomtop.lab.kubelet import MIB, AdjPolicy, format_quantity, probe_lowest_adj
from oomtop.lab.layout import CgroupTree, Driver, Layout
from oomtop.lab.node import Container, LabNode, LabRuntimeError
from oomtop.lab.observe import LabSource, StrippedSource, Tracker
from oomtop.lab.procs import LabProcess
from oomtop.lab.runtime_plain import PlainRuntime
from oomtop.lab.runtime_runc import RuncRuntime
from oomtop.lab.truth import GroupKill, KernelLog, Killed, Record, Summary
from oomtop.model import Cgroup, CgroupKind, OomEvent, QosClass, Sample
from oomtop.rank import DomainVerdict, is_under, predict
from oomtop.source import Notice, Source
from oomtop.text import format_bytes, printable

EVENT_DEADLINE_S = 3.0  # a kill oomtop has not reported this long after it happened is missed
EPISODE_SETTLE_S = 0.5  # after the first kill, how long to wait for more kill lines (oom.group, follow-ups)
SETTLE_TIMEOUT_S = 10.0


class Aborted(Exception):
    """The run was stopped (Ctrl-C, SIGTERM, the UI closed)."""


@dataclass
class LabOptions:
    scenario: str
    runtime: str = "plain"
    driver: Driver = Driver.CGROUPFS
    headless: bool = False
    record: str | None = None
    count: int = 10
    seed: int = 1
    capacity_bytes: int | None = None
    interval_s: float = 0.2
    theme: str | None = None
    pace_s: float | None = None  # seconds per 100 MiB a hog takes to allocate (None: 0 headless, 2.5 in the UI)
    pauses: bool | None = None  # moments for the user to look between steps (None: in the live view only)
    hostname: str | None = None  # replaces the node's hostname in every Sample (the shipped demo)
    strip_parent: bool = False  # record paths without the lab's parent cgroup, as a node's (the shipped demo)
    redact_cmdline: bool = False


class LabView(Protocol):
    """The live view a lab run shows (the UI's :class:`oomtop.ui.lab_view.LabAppView`; the lab never imports it)."""

    def run(self) -> None:
        """Show the view on the main thread until it exits."""

    def exit_soon(self) -> None:
        """Ask the view to exit; called from a signal handler."""


ViewFactory = Callable[[Source, "str | None", float], LabView]  # (source, theme, interval_s) -> the view


@dataclass
class KillCheck:
    """One OOM decision of the kernel in the lab, and what oomtop made of it."""

    index: int
    victim_pid: int | None
    victim_name: str
    killed: list[tuple[int | None, str]]  # everything killed, the victim first
    time_s: float | None  # kernel timestamp (monotonic) of the victim's kill line
    domain: str | None
    domain_source: str
    predicted_pid: int | None = None
    predicted_name: str = "?"
    predicted_group: tuple[int, ...] = ()
    group_path: str | None = None
    expected_pid: int | None = None
    follow_up: bool = False
    latency_ms: float | None = None
    detected: bool = False
    undetected: list[int] = field(default_factory=list)
    event_predicted_pid: int | None = None
    why: list[str] = field(default_factory=list)

    @property
    def right(self) -> bool:
        if self.victim_pid is None or self.predicted_pid != self.victim_pid:
            return False
        if self.group_path is not None or len(self.killed) > 1:
            return set(self.predicted_group) == {pid for pid, _ in self.killed if pid is not None}
        return True

    @property
    def as_expected(self) -> bool:
        return self.expected_pid is None or self.follow_up or self.victim_pid == self.expected_pid


def _named(cgroup: Cgroup | None, container: object) -> bool:
    """Whether oomtop already names the container's cgroup from the lab's bundles (pod, and container or sandbox)."""
    if cgroup is None or not isinstance(container, Container):
        return False
    identity = cgroup.identity
    if identity.pod is None or identity.pod.name != container.pod.name:
        return False
    if container.sandbox:
        return identity.kind is CgroupKind.SANDBOX
    return identity.container is not None and identity.container.name == container.name


def _unready(sample: Sample, procs: list[LabProcess]) -> str:
    """What the latest Sample shows differently from how the lab set its processes up (for the error)."""
    tasks = {task.pid: task for task in sample.tasks}
    cgroups = {cgroup.path: cgroup for cgroup in sample.cgroups}
    problems = []
    for proc in procs:
        task = tasks.get(proc.pid)
        if task is None:
            problems.append(f"{proc.name} (pid {proc.pid}) not in the sample")
        elif task.cgroup != proc.cgroup:
            problems.append(f"{proc.name} in {task.cgroup}")
        elif task.oom_score_adj != proc.adj:
            problems.append(f"{proc.name} adj {task.oom_score_adj}, the kernel holds {proc.adj}")
        elif task.rss_bytes < proc.mib * MIB * 0.9:
            problems.append(f"{proc.name} rss {format_bytes(task.rss_bytes)} of {proc.mib:g} MiB")
        elif not _named(cgroups.get(proc.cgroup), proc.container):
            cgroup = cgroups.get(proc.cgroup)
            problems.append(f"{proc.name}'s cgroup not named: {cgroup.identity if cgroup else None}")
    return "; ".join(problems) or "?"


def _label(proc: LabProcess | None) -> str:
    container = getattr(proc, "container", None) if proc is not None else None
    return container.label if isinstance(container, Container) else "?"


class Session:
    """One lab run.  Scenario code calls the methods in the "scenario API" section from the scenario thread."""

    def __init__(
        self, options: LabOptions, scenario: Callable[[Session], None], capacity_bytes: int, out: TextIO = sys.stdout
    ) -> None:
        self.options = options
        self.scenario = scenario
        self.capacity_bytes = capacity_bytes
        self.out = out
        self.headless = options.headless
        self.pace_s = options.pace_s if options.pace_s is not None else (0.0 if options.headless else 2.5)
        self.pauses = options.pauses if options.pauses is not None else not options.headless
        self.checks: list[KillCheck] = []
        self.problems: list[str] = []  # the scenario could not do what it meant to (exit 1)
        self.notes: list[str] = []
        self.crash: BaseException | None = None
        self.interrupted: int | None = None
        self.finished = False
        self._stop = threading.Event()
        self._torn_down = False
        self._teardown_lock = threading.Lock()
        self.node: LabNode | None = None
        self.tree: CgroupTree | None = None
        self.runtime: object = None  # PlainRuntime or RuncRuntime (same methods; see oomtop.lab.node)
        self.tracker = Tracker()
        self.source: LabSource | None = None
        self.klog: KernelLog | None = None
        self._acquired = False
        self._kill_count = 0
        self._accounted: set[int] = set()  # pids already reported as killed

    # ------------------------------------------------------------------------------------------- output

    def emit(self, text: str, key: str | None = None, detail: bool = False) -> None:
        """A line for the user: on stdout headless; as a notice in the live view, unless it is a detail (the
        view explains a selected kill itself)."""
        if self.headless:
            print(text, file=self.out, flush=True)
        elif self.source is not None and not detail:
            self.source.inject(Notice(text.removeprefix("note: "), key or f"lab-{len(self.tracker.notices)}"))

    # ------------------------------------------------------------------------------------------ set-up

    def preflight(self) -> None:
        if os.geteuid() != 0:
            raise LabError(
                "oomtop lab needs root: it creates cgroups, moves processes into them and sets their "
                "oom_score_adj (run it with sudo)"
            )
        hierarchy = discover_hierarchy("/sys/fs/cgroup", "/proc")
        if hierarchy is None:
            raise LabError("oomtop lab needs the cgroup memory controller, and none is mounted under /sys/fs/cgroup")
        try:
            os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
        except OSError as error:
            raise LabError(
                f"oomtop lab needs to read the kernel log /dev/kmsg to see what the kernel kills ({error.strerror})"
            ) from None
        if self.options.runtime == "runc":
            from oomtop.lab.runtime_runc import runc_path

            if runc_path() is None:
                raise LabError("--runtime runc needs runc, which is not installed (Debian: apt-get install runc)")
        available = _mem_available()
        if available is not None and self.capacity_bytes > available - 256 * MIB:
            raise LabError(
                f"a lab capacity of {format_quantity(self.capacity_bytes)} needs more memory than this "
                f"machine has available ({format_bytes(available)}); choose a smaller --capacity"
            )
        self.hierarchy = hierarchy

    def build(self) -> None:
        """Lock, runtime, cgroups, the live Source; everything from here on is undone by :meth:`teardown`."""
        cleanup.acquire(LAB_DIR)
        self._acquired = True
        atexit.register(self.teardown)
        policy = AdjPolicy(probe_lowest_adj())
        runtime: PlainRuntime | RuncRuntime
        if self.options.runtime == "runc":
            runtime = RuncRuntime(LAB_DIR, self.hierarchy.version)
        else:
            runtime = PlainRuntime(LAB_DIR)
        self.runtime = runtime
        runtime.prepare()  # runc: a private mount namespace, before any thread exists
        layout = Layout(self.options.driver)
        self.tree = CgroupTree(self.hierarchy, layout)
        self.node = LabNode(self.tree, runtime, policy, self.capacity_bytes)
        self.node.check_stop = self.check_stop
        self.node.setup()
        self.klog = KernelLog()
        from oomtop.live import LiveSource

        interval = self.options.interval_s
        config = CollectorConfig(
            host_root=LAB_DIR,
            slow_interval_s=interval,
            names_refresh_s=interval,
            redact_cmdline=self.options.redact_cmdline,
        )
        live = LiveSource(config, interval_s=interval, with_history=False)
        self.source = LabSource(live, self.tracker, layout.parent, self.node.lab_pids, self.options.hostname)
        hierarchy = self.hierarchy
        self.emit(
            f"oomtop lab {self.options.scenario}: runtime {runtime.name}, {layout.driver.value} driver, cgroup "
            f"v{hierarchy.version} ({hierarchy.layout}); node capacity {format_quantity(self.capacity_bytes)}; "
            f"a sample every {interval:g} s",
            key="lab-title",
        )
        note = policy.note()
        if note:
            self.emit(f"note: {note}", key="lab-adj")

    def teardown(self) -> list[str]:
        """Everything the lab made, gone; idempotent, from any thread, also at exit."""
        with self._teardown_lock:
            if self._torn_down:
                return []
            self._torn_down = True
            problems: list[str] = []
            if self.node is not None:
                problems += self.node.close()
            if self.klog is not None:
                self.klog.close()
            if self._acquired:
                problems += cleanup.sweep_cgroups()
                problems += cleanup.release(LAB_DIR)
            for problem in problems:
                print(f"oomtop lab: cleanup: {problem}", file=sys.stderr, flush=True)
            self.problems += [f"cleanup: {p}" for p in problems]
            return problems

    # ---------------------------------------------------------------------------------------- stopping

    def interrupt(self, signum: int) -> None:
        if self.interrupted is None:
            self.interrupted = signum
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def check_stop(self) -> None:
        if self._stop.is_set():
            raise Aborted()

    def sleep(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Aborted()

    # ------------------------------------------------------------------------------------ scenario thread

    def run_scenario(self) -> None:
        try:
            first = self.tracker.wait_sample(lambda _s: True, 0.0, 15.0, self.check_stop)
            if first is None:
                raise LabRuntimeError("oomtop's collector delivered no sample within 15 s")
            self.scenario(self)
            self.finished = True
            if not self.headless:
                self.emit(self.summary() + "; press q to quit (the lab's pods stay until then)", key="lab-summary")
                self._stop.wait()
        except Aborted:
            pass
        except BaseException as error:  # the scenario thread's crash is reported; the lab still cleans up  # noqa: BLE001
            self.crash = error
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            if not isinstance(error, (LabRuntimeError, LabError)):
                traceback.print_exc(file=sys.stderr)
            self.emit(f"the scenario failed: {detail}", key="lab-crash")
        finally:
            self.teardown()

    # ---------------------------------------------------------------------------------------- scenario API

    def delay_ms(self, step_mib: float) -> float:
        """The pause after each allocation step that makes a hog take ``pace_s`` per 100 MiB."""
        return self.pace_s * 1000 * step_mib / 100

    def pause(self, seconds: float) -> None:
        """A moment for the user to look (the live view and the demo recording)."""
        if self.pauses:
            self.sleep(seconds)

    def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> Sample:
        """Wait for a Sample, taken from now on, that shows every running lab process as the lab set it up: in
        its cgroup, with the adj the kernel holds, holding what it allocated.  Predictions are only as good as
        the Sample they come from."""
        assert self.node is not None
        procs = [p for p in self.node.processes if p.ready_at and p.alive()]

        def ready(sample: Sample) -> bool:
            tasks = {task.pid: task for task in sample.tasks}
            cgroups = {cgroup.path: cgroup for cgroup in sample.cgroups}
            for proc in procs:
                task = tasks.get(proc.pid)
                if task is None or task.cgroup != proc.cgroup or task.oom_score_adj != proc.adj:
                    return False
                if task.rss_bytes < proc.mib * MIB * 0.9:
                    return False
                if not _named(cgroups.get(proc.cgroup), proc.container):
                    return False
            return True

        sample = self.tracker.wait_sample(ready, time.monotonic(), timeout_s, self.check_stop)
        if sample is None:
            latest = self.tracker.latest()
            detail = _unready(latest[1], procs) if latest else "no sample"
            if latest:
                detail += f" (latest sample {time.monotonic() - latest[0]:.1f} s ago)"
            notices = [n.text for n in self.tracker.notices if not n.key.startswith("lab")]
            if notices:
                detail += "; notices: " + " | ".join(notices[-3:])
            raise LabRuntimeError(
                f"oomtop's samples did not show the lab's {len(procs)} processes as set up "
                f"within {timeout_s:.0f} s: {detail}"
            )
        return sample

    def trigger(self, container: Container, name: str, mib: float, step_mib: float = 1.0) -> Callable[[], LabProcess]:
        """An action for :meth:`provoke`: start a process in ``container`` that grows to ``mib`` MiB."""
        assert self.node is not None
        node = self.node

        def start() -> LabProcess:
            proc = node.start(container, name, mib, step_mib, self.delay_ms(step_mib), release=False)
            proc.release()
            return proc

        return start

    def grow(self, proc: LabProcess, mib: float, step_mib: float = 1.0) -> Callable[[], LabProcess]:
        """An action for :meth:`provoke`: make a running hog allocate ``mib`` MiB more."""

        def start() -> LabProcess:
            proc.mib += mib
            proc.send(f"grow {mib:g} {step_mib:g} {self.delay_ms(step_mib):g}")
            return proc

        return start

    def headroom(self, path: str) -> float:
        """MiB left below the limit of the lab cgroup ``path`` (read from the kernel now)."""
        assert self.tree is not None
        limit = self.tree.limit(path)
        if limit is None:
            raise LabRuntimeError(f"{path} has no memory limit")
        return (limit - self.tree.usage(path)) / MIB

    def provoke(
        self, action: Callable[[], LabProcess], expect: LabProcess | None, why: bool = False, timeout_s: float = 30.0
    ) -> list[KillCheck]:
        """Run ``action`` (which makes a process allocate) until the kernel kills, then check every kill."""
        assert self.node is not None and self.tree is not None and self.klog is not None
        node, tree = self.node, self.tree
        paths = list(tree.created)
        before = {path: tree.counters(path) for path in paths}
        self.klog.poll()  # what came before is not this episode's
        started = time.monotonic()
        trigger = action()
        records: list[Record] = []
        first_kill_seen: float | None = None
        done_at: float | None = None
        deadline = started + timeout_s + self.pace_s * trigger.mib / 100
        while True:
            self.check_stop()
            now = time.monotonic()
            for record in self.klog.poll():
                if self._ours(record):
                    records.append(record)
                    if isinstance(record, Killed):
                        first_kill_seen = first_kill_seen or now
            if done_at is None:
                answer = trigger.read_answer(0.001)
                if answer == "R":
                    done_at = now
                elif answer == "":
                    done_at = now  # the allocating process itself died (the victim, or its group's)
                elif answer is not None and answer.startswith("E"):
                    raise LabRuntimeError(f"{trigger.name} failed: {answer[2:]}")
            if first_kill_seen is not None:
                if done_at is not None and now - first_kill_seen >= EPISODE_SETTLE_S:
                    break
                if now - first_kill_seen >= 3 * EPISODE_SETTLE_S + 2:
                    break
            elif done_at is not None and now - done_at >= EPISODE_SETTLE_S:
                break
            if now > deadline:
                break
            time.sleep(0.01)
        victims = [r for r in records if isinstance(r, Killed)]
        for record in victims:  # a killed process with shmem or a big heap takes a moment to go
            proc = node.process_of(record.pid)
            if proc is not None:
                proc.wait_dead(5.0)
        records += [record for record in self.klog.poll() if self._ours(record)]
        after = {path: tree.counters(path) for path in paths}
        ooms = self._assemble(records, before, after, started, expect)
        if not ooms:
            reason = (
                "reached its size without an OOM kill"
                if done_at is not None
                else f"caused no OOM kill within {deadline - started:.0f} s"
            )
            self.problems.append(f"{trigger.name} {reason}")
            self.emit(f"no kill: {trigger.name} {reason}", key=f"lab-nokill-{len(self.problems)}")
            return []
        self._wait_for_events(ooms, started)
        for check in ooms:
            if why or not check.right or not check.as_expected:
                for line in check.why:
                    self.emit(line, detail=True)
            self.emit(self._line(check), key=f"lab-kill-{check.index}")
        self.checks += ooms
        return ooms

    # ------------------------------------------------------------------------------------- checking kills

    def _ours(self, record: Killed | Summary | GroupKill) -> bool:
        """A kernel log record about the lab: its processes, its cgroups (other people's kills are not)."""
        assert self.node is not None
        layout = self.node.layout
        if isinstance(record, Killed):
            return record.pid in self.node.lab_pids
        if isinstance(record, Summary):
            return record.pid in self.node.lab_pids or layout.owns(record.oom_memcg or "")
        return layout.owns(record.path)

    def _assemble(
        self,
        records: list[Record],
        before: dict[str, dict[str, int]],
        after: dict[str, dict[str, int]],
        started: float,
        expect: LabProcess | None,
    ) -> list[KillCheck]:
        """Group the kernel's kill lines into OOM decisions and predict each from the last Sample before it."""
        assert self.node is not None and self.tree is not None
        node = self.node
        summaries = {r.pid: r for r in records if isinstance(r, Summary)}
        groups = [r for r in records if isinstance(r, GroupKill)]
        ooms: list[tuple[Killed, list[Killed], str | None]] = []
        seen: set[int] = set()
        for record in (r for r in records if isinstance(r, Killed)):
            if record.pid in seen:
                continue
            seen.add(record.pid)
            proc = node.process_of(record.pid)
            if ooms:
                victim, members, group_path = ooms[-1]
                if group_path is None:
                    group_path = next((g.path for g in groups if 0 <= g.time_s - victim.time_s < 1.0), None)
                    ooms[-1] = (victim, members, group_path)
                if (
                    group_path is not None
                    and proc is not None
                    and is_under(proc.cgroup, group_path)
                    and record.time_s - victim.time_s < 1.0
                ):
                    members.append(record)
                    continue
            ooms.append((record, [], None))
        if ooms and ooms[-1][2] is None:
            victim, members, _ = ooms[-1]
            ooms[-1] = (victim, members, next((g.path for g in groups if 0 <= g.time_s - victim.time_s < 1.0), None))
        # Kills the counters show but the log lost (ring buffer overrun): the lab's processes that died unasked.
        counted = sum(after[p].get("oom_kill", 0) - before[p].get("oom_kill", 0) for p in before if after.get(p))
        logged = sum(1 + len(members) for _v, members, _g in ooms)
        unlogged = (
            [
                proc
                for proc in node.processes
                if proc.released_at
                and not proc.stopped_by_lab
                and proc.pid not in seen
                and proc.pid not in self._accounted
                and not proc.alive()
            ]
            if counted > logged
            else []
        )
        checks: list[KillCheck] = []
        dead: set[int] = set()
        for position, (victim, members, group_path) in enumerate(ooms):
            proc = node.process_of(victim.pid)
            domain, source = self._domain(victim, summaries, before, after, proc, expect)
            check = KillCheck(
                index=self._kill_count + position + 1,
                victim_pid=victim.pid,
                victim_name=victim.comm,
                killed=[(victim.pid, victim.comm), *((m.pid, m.comm) for m in members)],
                time_s=victim.time_s,
                domain=domain,
                domain_source=source,
                group_path=group_path,
                expected_pid=expect.pid if expect is not None else None,
                follow_up=position > 0,
            )
            self._predict(check, dead)
            dead.update(pid for pid, _ in check.killed if pid is not None)
            checks.append(check)
        for proc in unlogged:
            checks.append(
                KillCheck(
                    index=self._kill_count + len(checks) + 1,
                    victim_pid=proc.pid,
                    victim_name=proc.name,
                    killed=[(proc.pid, proc.name)],
                    time_s=None,
                    domain=None,
                    domain_source="counters (the kernel log lost this kill)",
                    expected_pid=expect.pid if expect is not None and not checks else None,
                    follow_up=bool(checks),
                )
            )
            self._predict(checks[-1], dead)
        self._kill_count += len(checks)
        self._accounted.update(pid for check in checks for pid, _ in check.killed if pid is not None)
        return checks

    def _domain(
        self,
        victim: Killed,
        summaries: dict[int, Summary],
        before: dict[str, dict[str, int]],
        after: dict[str, dict[str, int]],
        proc: LabProcess | None,
        expect: LabProcess | None,
    ) -> tuple[str | None, str]:
        assert self.tree is not None
        summary = summaries.get(victim.pid)
        if summary is not None and summary.oom_memcg and self.tree.layout.owns(summary.oom_memcg):
            return summary.oom_memcg, "kernel log"
        cgroup = summary.task_memcg if summary is not None and summary.task_memcg else (proc.cgroup if proc else None)
        key = "oom" if self.tree.version == 2 else "limit_hits"
        rose = [
            path
            for path in before
            if after.get(path)
            and after[path].get(key, 0) > before[path].get(key, 0)
            and cgroup is not None
            and is_under(cgroup, path)
        ]
        if rose:
            return max(rose, key=len), "counters"  # the kernel counts a refused charge on the level that refused it
        return None, "unknown"

    def _predict(self, check: KillCheck, dead: set[int]) -> None:
        """oomtop's verdict for the domain, from the last Sample that had fully arrived before the kill."""
        assert self.node is not None
        when = check.time_s if check.time_s is not None else time.monotonic()
        sample = self.tracker.sample_before(when)
        if sample is None or check.domain is None:
            check.why = [f"  no prediction: {'no Sample before the kill' if sample is None else 'domain unknown'}"]
            return
        if dead:  # the kernel skips tasks it already killed (MMF_OOM_SKIP): so does the prediction
            sample = replace(sample, tasks=tuple(t for t in sample.tasks if t.pid not in dead))
        verdict = predict(sample).by_domain.get(check.domain)
        if verdict is None or verdict.victim is None:
            check.why = [f"  no prediction: oomtop has no verdict for {check.domain}"]
            return
        check.predicted_pid = verdict.victim.pid
        check.predicted_name = verdict.victim.comm
        check.predicted_group = tuple(task.pid for task in verdict.group_victims)
        check.why = self._why(verdict, sample)

    def _why(self, verdict: DomainVerdict, sample: Sample) -> list[str]:
        assert self.node is not None
        cgroups = {c.path: c for c in sample.cgroups}
        domain = cgroups.get(verdict.domain)
        per_point = verdict.totalpages // 1000
        limit = domain.limit_bytes if domain is not None else None
        lines = [
            (
                f"  why: {self._where(verdict.domain, sample)} hit its limit of {format_bytes(limit)} "
                f"({verdict.totalpages} pages); each process scores rss pages + oom_score_adj x {per_point}:"
            )
        ]
        for rank, candidate in enumerate(verdict.candidates[:5]):
            task = candidate.task
            proc = self.node.process_of(task.pid)
            mark = "<- dies" if task.pid == (verdict.victim.pid if verdict.victim else None) else ""
            lines.append(
                f"    {rank + 1}. {printable(task.comm):<13} pid {task.pid:<7} {_label(proc):<34} "
                f"rss {format_bytes(task.rss_bytes):>6}  adj {task.oom_score_adj:>5} "
                f"{self._adj_reason(proc):<34} points {candidate.points:>7} {mark}".rstrip()
            )
        if len(verdict.candidates) > 5:
            lines.append(f"    ... and {len(verdict.candidates) - 5} more")
        if verdict.group_path is not None:
            lines.append(
                f"    memory.oom.group is set on {self._where(verdict.group_path, sample)}: "
                f"all {len(verdict.group_victims)} of its processes die together"
            )
        return lines

    def _adj_reason(self, proc: LabProcess | None) -> str:
        container = getattr(proc, "container", None)
        if not isinstance(container, Container):
            return ""
        qos = container.pod.qos
        lowered = container.adj != container.wanted_adj
        if container.sandbox:
            return f"(sandbox; runtime sets {container.wanted_adj})" if lowered else "(sandbox)"
        if qos is QosClass.GUARANTEED:
            return f"(Guaranteed; kubelet sets {container.wanted_adj})" if lowered else "(Guaranteed)"
        if qos is QosClass.BEST_EFFORT:
            return "(BestEffort)"
        request = container.resources.effective_request
        return f"(Burstable, request {format_quantity(request) if request else 'none'})"

    def _where(self, path: str | None, sample: Sample | None = None) -> str:
        if path is None:
            return "?"
        if sample is not None:
            for cgroup in sample.cgroups:
                if cgroup.path == path:
                    identity = cgroup.identity
                    if identity.kind is CgroupKind.POD and identity.pod is not None:
                        return f"pod {identity.label}"
                    if identity.kind is CgroupKind.CONTAINER and identity.pod is not None:
                        return f"container {identity.pod.namespace}/{identity.pod.name}/{identity.label}"
                    if identity.kind is CgroupKind.KUBEPODS:
                        return "kubepods"
        assert self.node is not None
        for pod in self.node.pods:
            if pod.path == path:
                return f"pod {pod.label}"
            for container in pod.containers.values():
                if container.path == path:
                    return f"container {container.label}"
        if path == self.node.layout.kubepods:
            return "kubepods"
        return path

    def _wait_for_events(self, checks: list[KillCheck], since: float) -> None:
        """Match every killed pid to oomtop's events (by victim pid, by the killed list, or a counter event for
        its cgroup), waiting up to EVENT_DEADLINE_S after the kill."""
        wanted = {pid for check in checks for pid, _ in check.killed if pid is not None}
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            found = self._match(self.tracker.events_since(since - 0.5), wanted)
            if set(found) >= wanted or time.monotonic() > deadline:
                break
            self.check_stop()
            self.tracker.wait(0.05)
        for check in checks:
            pids = [pid for pid, _ in check.killed if pid is not None]
            check.undetected = [pid for pid in pids if pid not in found]
            check.detected = bool(pids) and not check.undetected
            first = found.get(check.victim_pid) if check.victim_pid is not None else None
            if first is not None:
                arrival, event = first
                if check.time_s is not None:
                    check.latency_ms = max(0.0, (arrival - check.time_s) * 1000)
                if event.victim.pid == check.victim_pid:  # a counter-only event predicts for a guessed domain
                    check.event_predicted_pid = event.predicted_victim_pid

    def _match(self, events: Iterable[tuple[float, OomEvent]], wanted: set[int]) -> dict[int, tuple[float, OomEvent]]:
        assert self.node is not None
        found: dict[int, tuple[float, OomEvent]] = {}
        for arrival, event in events:
            pids = {task.pid for task in (event.victim, *event.killed) if task.pid is not None}
            for pid in pids & wanted:
                found.setdefault(pid, (arrival, event))
            if event.victim.pid is None:  # a counter-only event: pod and container, no victim details
                where = event.task_cgroup or event.detected_in
                for pid in wanted - set(found):
                    proc = self.node.process_of(pid)
                    if proc is not None and where == proc.cgroup:
                        found[pid] = (arrival, event)
                        break
        return found

    # ----------------------------------------------------------------------------------------- reporting

    def _line(self, check: KillCheck) -> str:
        assert self.node is not None
        node = self.node
        victim = node.process_of(check.victim_pid) if check.victim_pid is not None else None
        predicted = node.process_of(check.predicted_pid) if check.predicted_pid is not None else None
        killed = f"{check.victim_pid} {printable(check.victim_name)} ({_label(victim)})"
        if len(check.killed) > 1:
            killed += f" and {len(check.killed) - 1} more (memory.oom.group)"
        guess = (
            f"{check.predicted_pid} {printable(check.predicted_name)} ({_label(predicted)})"
            if check.predicted_pid is not None
            else "nothing"
        )
        latency = f"{check.latency_ms:.0f} ms" if check.latency_ms is not None else "-"
        if not check.detected:
            latency = "MISSED" + (f" ({len(check.undetected)} not reported)" if len(check.killed) > 1 else "")
        verdict = "right" if check.right else "WRONG"
        extra = []
        if check.follow_up:
            extra.append("a follow-up OOM while the first victim was still exiting")
        if not check.as_expected:
            expected = node.process_of(check.expected_pid) if check.expected_pid is not None else None
            extra.append(f"the scenario meant {expected.name if expected else check.expected_pid} to die")
        if check.event_predicted_pid not in (None, check.predicted_pid):
            extra.append(f"oomtop's kill event said {check.event_predicted_pid}")
        if check.domain_source != "kernel log":
            extra.append(f"domain from the {check.domain_source}")
        tail = f" ({'; '.join(extra)})" if extra else ""
        return (
            f"kill {check.index}: predicted {guess}, killed {killed}; domain {self._where(check.domain)}; "
            f"latency {latency}; {verdict}{tail}"
        )

    def summary(self) -> str:
        checks = self.checks
        kills = sum(len(check.killed) for check in checks)
        right = sum(check.right for check in checks)
        missed = sum(len(check.undetected) for check in checks)
        latencies = [check.latency_ms for check in checks if check.latency_ms is not None]
        text = (
            f"summary: {kills} kill{'s' if kills != 1 else ''} in {len(checks)} OOM"
            f"{'s' if len(checks) != 1 else ''}, {right} predicted right, {len(checks) - right} wrong, "
            f"{missed} missed"
        )
        if latencies:
            text += f"; detection latency median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
        follow = sum(check.follow_up for check in checks)
        if follow:
            text += f"; {follow} follow-up OOM{'s' if follow != 1 else ''}"
        unexpected = sum(not check.as_expected for check in checks)
        if unexpected:
            text += f"; {unexpected} not the victim the scenario meant"
        disagree = sum(check.event_predicted_pid not in (None, check.predicted_pid) for check in checks)
        if disagree:
            text += (
                f"; {disagree} kill event{'s' if disagree != 1 else ''} from oomtop's watcher named another "
                "predicted victim"
            )
        return text

    def exit_status(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted
        failed = (
            self.crash is not None
            or self.problems
            or any(not c.right or c.undetected or not c.as_expected for c in self.checks)
        )
        if self.headless and not self.finished and self.crash is None:
            failed = True
        return 1 if failed else 0


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


# ---------------------------------------------------------------------------------------------- entry points


async def _consume(source: Source) -> None:
    async for _update in source.updates():
        pass


async def _headless(session: Session, source: Source) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, session.interrupt, signum)
    consumer = asyncio.create_task(_consume(source))
    thread = threading.Thread(target=session.run_scenario, name="oomtop-lab-scenario", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            if consumer.done() and not session._stop.is_set():
                session.stop()  # the Source ended: nothing more can be observed
            await asyncio.sleep(0.05)
    finally:
        source.close()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(signum)


def _wrap_recording(session: Session, source: Source) -> Source:
    if not session.options.record:
        return source
    if session.options.strip_parent:
        assert session.tree is not None
        source = StrippedSource(source, session.tree.layout.parent)
    from oomtop.record.recorder import Recorder, RecordingSource
    from oomtop.record.writer import RecordingStopped

    try:
        recorder = Recorder(session.options.record, session.options.interval_s, session.options.redact_cmdline)
    except RecordingStopped as error:
        raise LabError(str(error)) from None
    return RecordingSource(source, recorder)


def _run_ui(session: Session, source: Source, open_view: ViewFactory) -> None:
    view = open_view(source, session.options.theme, session.options.interval_s)

    def on_signal(signum: int, _frame: object) -> None:
        session.interrupt(signum)
        view.exit_soon()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    thread = threading.Thread(target=session.run_scenario, name="oomtop-lab-scenario", daemon=True)
    thread.start()
    try:
        view.run()
    finally:
        session.stop()
        source.close()
        thread.join(60)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run(
    options: LabOptions,
    scenario: Callable[[Session], None],
    capacity_bytes: int,
    out: TextIO = sys.stdout,
    open_view: ViewFactory | None = None,
) -> int:
    """One lab run; returns the exit status.  LabError (before anything was made) is the caller's to print.
    Without ``--headless`` the live view comes from ``open_view`` (the CLI passes the UI's)."""
    session = Session(options, scenario, capacity_bytes, out)
    session.preflight()
    if not options.headless and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LabError("the live view needs a terminal; add --headless to print each kill instead")
    if not options.headless and open_view is None:
        raise LabError("this oomtop has no live view to show the lab in; add --headless")
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in handled}
    try:
        # Until the event loop (or the UI) takes the signals over, they must still lead to a clean-up.
        for signum in handled:
            signal.signal(signum, lambda number, _frame: session.interrupt(number))
        session.build()
        assert session.source is not None
        source = _wrap_recording(session, session.source)
        if options.headless:
            asyncio.run(_headless(session, source))
        else:
            assert open_view is not None  # checked above, before anything was made
            _run_ui(session, source, open_view)
    except LabError:
        session.teardown()
        raise
    except KeyboardInterrupt:
        session.interrupt(signal.SIGINT)
    finally:
        session.teardown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if session.crash is not None and options.headless:
        pass  # already told on stdout
    if options.headless or session.checks:
        print(session.summary(), file=out, flush=True)
        if session.interrupted is not None:
            print(
                f"oomtop lab: stopped by {signal.Signals(session.interrupted).name}; everything the lab made is "
                "removed",
                file=out,
                flush=True,
            )
    return session.exit_status()
