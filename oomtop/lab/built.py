"""What :meth:`Session.build <oomtop.lab.session.Session.build>` made, and the scenario API over it.

A scenario gets a :class:`BuiltLab`: the runtime, the cgroup tree, the node, the kernel-log reader and the lab's
Source all exist by the time it is created, so no step of a scenario has to ask whether they do.  It is the only
thing the scenario thread works with; what it finds (the kill checks, the problems) goes into the run's shared
:class:`~oomtop.lab.report.Outcome`, and it stops when the run's :class:`~oomtop.lab.stopping.StopFlag` is set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from oomtop.lab.killcheck import KillCheck, KillChecker
from oomtop.lab.kubelet import MIB
from oomtop.lab.layout import CgroupTree
from oomtop.lab.node import LabNode, LabRuntimeError
from oomtop.lab.observe import LabSource, Tracker
from oomtop.lab.options import LabOptions
from oomtop.lab.procs import LabProcess
from oomtop.lab.report import Outcome, kill_line
from oomtop.lab.runtime import Container, Runtime
from oomtop.lab.stopping import StopFlag
from oomtop.lab.truth import KernelLog, Killed, Record
from oomtop.model import Cgroup, CgroupKind, Sample
from oomtop.source import Notice
from oomtop.text import format_bytes

EPISODE_SETTLE_S = 0.5  # after the first kill, how long to wait for more kill lines (oom.group, follow-ups)
SETTLE_TIMEOUT_S = 10.0
RSS_READY = 0.9  # a hog counts as holding its memory at this share of it (the kernel's counters lag a little)

Scenario = Callable[["BuiltLab"], None]


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


def setup_problems(sample: Sample, procs: list[LabProcess]) -> list[str]:
    """Where ``sample`` shows the lab's processes differently from how the lab set them up (the first difference
    of each): not there, in another cgroup, another adj, not yet holding their memory, or their cgroup not yet
    named.  Empty when the Sample is good to predict from."""
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
        elif task.rss_bytes < proc.mib * MIB * RSS_READY:
            problems.append(f"{proc.name} rss {format_bytes(task.rss_bytes)} of {proc.mib:g} MiB")
        elif not _named(cgroups.get(proc.cgroup), proc.container):
            cgroup = cgroups.get(proc.cgroup)
            problems.append(f"{proc.name}'s cgroup not named: {cgroup.identity if cgroup else None}")
    return problems


class BuiltLab:
    """The built lab and the scenario API; scenarios call its methods from the scenario thread."""

    def __init__(
        self,
        *,
        options: LabOptions,
        capacity_bytes: int,
        runtime: Runtime,
        node: LabNode,
        klog: KernelLog,
        source: LabSource,
        tracker: Tracker,
        stop: StopFlag,
        outcome: Outcome,
        out: TextIO,
    ) -> None:
        self.options = options
        self.capacity_bytes = capacity_bytes
        self.headless = options.headless
        self.pace_s = options.effective_pace_s()
        self.pauses = options.effective_pauses()
        self.runtime = runtime
        self.node = node
        self.tree: CgroupTree = node.tree
        self.klog = klog
        self.source = source
        self.tracker = tracker
        self.stop = stop
        self.outcome = outcome
        self.out = out
        self.checker = KillChecker(node, tracker)

    # ------------------------------------------------------------------------------------------- output

    def emit(self, text: str, key: str | None = None, detail: bool = False) -> None:
        """A line for the user: on stdout headless; as a notice in the live view, unless it is a detail (the
        view explains a selected kill itself)."""
        if self.headless:
            print(text, file=self.out, flush=True)
        elif not detail:
            self.source.inject(Notice(text.removeprefix("note: "), key or f"lab-{len(self.tracker.notices)}"))

    # ------------------------------------------------------------------------------------------ pacing

    def check_stop(self) -> None:
        self.stop.check()

    def sleep(self, seconds: float) -> None:
        self.stop.sleep(seconds)

    def delay_ms(self, step_mib: float) -> float:
        """The pause after each allocation step that makes a hog take ``pace_s`` per 100 MiB."""
        return self.pace_s * 1000 * step_mib / 100

    def pause(self, seconds: float) -> None:
        """A moment for the user to look (the live view and the demo recording)."""
        if self.pauses:
            self.sleep(seconds)

    # ---------------------------------------------------------------------------------------- scenario API

    def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> Sample:
        """Wait for a Sample, taken from now on, that shows every running lab process as the lab set it up: in
        its cgroup, with the adj the kernel holds, holding what it allocated.  Predictions are only as good as
        the Sample they come from."""
        procs = [p for p in self.node.processes if p.ready_at and p.alive()]
        sample = self.tracker.wait_sample(
            lambda s: not setup_problems(s, procs), time.monotonic(), timeout_s, self.check_stop
        )
        if sample is not None:
            return sample
        latest = self.tracker.latest()
        detail = ("; ".join(setup_problems(latest[1], procs)) or "?") if latest else "no sample"
        if latest:
            detail += f" (latest sample {time.monotonic() - latest[0]:.1f} s ago)"
        notices = [n.text for n in self.tracker.notices if not n.key.startswith("lab")]
        if notices:
            detail += "; notices: " + " | ".join(notices[-3:])
        raise LabRuntimeError(
            f"oomtop's samples did not show the lab's {len(procs)} processes as set up within {timeout_s:.0f} s: "
            f"{detail}"
        )

    def trigger(self, container: Container, name: str, mib: float, step_mib: float = 1.0) -> Callable[[], LabProcess]:
        """An action for :meth:`provoke`: start a process in ``container`` that grows to ``mib`` MiB."""
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
        limit = self.tree.limit(path)
        if limit is None:
            raise LabRuntimeError(f"{path} has no memory limit")
        return (limit - self.tree.usage(path)) / MIB

    def provoke(
        self, action: Callable[[], LabProcess], expect: LabProcess | None, why: bool = False, timeout_s: float = 30.0
    ) -> list[KillCheck]:
        """Run ``action`` (which makes a process allocate) until the kernel kills, then check every kill."""
        tree = self.tree
        paths = list(tree.created)
        before = {path: tree.counters(path) for path in paths}
        self.klog.poll()  # what came before is not this episode's
        started = time.monotonic()
        trigger = action()
        deadline = started + timeout_s + self.pace_s * trigger.mib / 100
        records, done_at = self._watch(trigger, deadline)
        for record in records:  # a killed process with shmem or a big heap takes a moment to go
            proc = self.node.process_of(record.pid) if isinstance(record, Killed) else None
            if proc is not None:
                proc.wait_dead(5.0)
        records += [record for record in self.klog.poll() if self.checker.ours(record)]
        after = {path: tree.counters(path) for path in paths}
        ooms = self.checker.assemble(records, before, after, expect)
        if not ooms:
            self._no_kill(trigger, done_at, deadline - started)
            return []
        self.checker.wait_for_events(ooms, started, self.check_stop)
        for check in ooms:
            if why or not check.right or not check.as_expected:
                for line in check.why:
                    self.emit(line, detail=True)
            self.emit(kill_line(check, self.node), key=f"lab-kill-{check.index}")
        self.outcome.checks += ooms
        return ooms

    def _watch(self, trigger: LabProcess, deadline: float) -> tuple[list[Record], float | None]:
        """The lab's kernel-log records while ``trigger`` allocates, and when it was done (None: never).  The
        episode is over EPISODE_SETTLE_S after the first kill once the trigger is done (or dead), a while longer
        if it is not, EPISODE_SETTLE_S after the trigger finished without any kill, or at the deadline: kill
        lines of one OOM (a group, a follow-up) come in over a moment, and must all be in one episode."""
        records: list[Record] = []
        first_kill_seen: float | None = None
        done_at: float | None = None
        while True:
            self.check_stop()
            now = time.monotonic()
            for record in self.klog.poll():
                if self.checker.ours(record):
                    records.append(record)
                    if isinstance(record, Killed):
                        first_kill_seen = first_kill_seen or now
            if done_at is None:
                done_at = self._done(trigger, now)
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
        return records, done_at

    @staticmethod
    def _done(trigger: LabProcess, now: float) -> float | None:
        """``now`` once the trigger answered that it holds its memory (``R``) or died (end of file); None while
        it still allocates; LabRuntimeError when it reported a failure."""
        answer = trigger.read_answer(0.001)
        if answer == "R" or answer == "":  # "": the allocating process itself died (the victim, or its group's)
            return now
        if answer is not None and answer.startswith("E"):
            raise LabRuntimeError(f"{trigger.name} failed: {answer[2:]}")
        return None

    def _no_kill(self, trigger: LabProcess, done_at: float | None, waited_s: float) -> None:
        """The episode made no kill: a problem of the run (exit 1), told to the user."""
        reason = (
            "reached its size without an OOM kill"
            if done_at is not None
            else f"caused no OOM kill within {waited_s:.0f} s"
        )
        self.outcome.problems.append(f"{trigger.name} {reason}")
        self.emit(f"no kill: {trigger.name} {reason}", key=f"lab-nokill-{len(self.outcome.problems)}")
