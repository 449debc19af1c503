"""Checking every kill the kernel makes in the lab against oomtop.

For every kill, the lab knows independently of oomtop's detectors (its own kernel-log reader and the cgroup
counters, see :mod:`oomtop.lab.truth`):

- the actual victim (and, under ``memory.oom.group``, everything killed with it);
- the domain that ran out (``oom_memcg=`` from the log; where the kernel's report rate limit dropped that line,
  the lab cgroup whose refused-charge counter rose: v1 ``memory.failcnt``, v2 ``memory.events.local`` oom);
- oomtop's prediction for that domain, from the last Sample that had fully arrived before the kill (with the
  tasks the kernel had already killed left out: they are skipped as "already exiting" by the next OOM);
- whether oomtop's watcher reported the kill, and how long after the kernel's timestamp the event arrived.

Kept apart from the session so that it can be read, and tested with hand-made kernel records, counters and
Samples, without cgroups or a kernel that kills: what it learns from the machine comes in as arguments or from
the LabNode's bookkeeping (which pid is which process, in which cgroup).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from oomtop.lab.describe import why_lines
from oomtop.lab.layout import CgroupLayout
from oomtop.lab.node import LabNode
from oomtop.lab.observe import Tracker
from oomtop.lab.procs import LabProcess
from oomtop.lab.truth import GroupKill, Killed, Record, Summary
from oomtop.model import OomEvent, Sample
from oomtop.rank import is_under, predict

EVENT_DEADLINE_S = 3.0  # a kill oomtop has not reported this long after it happened is missed
GROUP_WINDOW_S = 1.0  # kill lines this close after a victim's, in its memory.oom.group cgroup, are the same OOM

Counters = dict[str, dict[str, int]]  # CgroupTree.counters of every lab cgroup, by path
Found = dict[int, tuple[float, OomEvent]]  # killed pid -> (arrival, the first oomtop event that reported it)


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

    @property
    def killed_pids(self) -> list[int]:
        return [pid for pid, _ in self.killed if pid is not None]


@dataclass
class Episode:
    """One OOM decision as the kernel log tells it: the victim's kill line, the kill lines of the tasks that died
    with it (``memory.oom.group``), and the cgroup the kernel named for the group kill."""

    victim: Killed
    members: list[Killed] = field(default_factory=list)
    group_path: str | None = None


def is_ours(record: Record, node: LabNode) -> bool:
    """A kernel log record about the lab: its processes, its cgroups (other people's kills are not)."""
    if isinstance(record, Killed):
        return record.pid in node.lab_pids
    if isinstance(record, Summary):
        return record.pid in node.lab_pids or node.layout.owns(record.oom_memcg or "")
    return node.layout.owns(record.path)


def group_episodes(records: Sequence[Record], cgroup_of: Callable[[int], str | None]) -> list[Episode]:
    """The kill lines grouped into OOM decisions: a kill line joins the previous victim's when it comes within
    GROUP_WINDOW_S and its process (``cgroup_of``) lives in the cgroup the kernel named for a group kill right
    after that victim; a pid's second kill line is ignored."""
    groups = [r for r in records if isinstance(r, GroupKill)]
    episodes: list[Episode] = []
    seen: set[int] = set()
    for record in records:
        if not isinstance(record, Killed) or record.pid in seen:
            continue
        seen.add(record.pid)
        if episodes:
            last = episodes[-1]
            cgroup = cgroup_of(record.pid)
            if (
                last.group_path is not None
                and cgroup is not None
                and is_under(cgroup, last.group_path)
                and record.time_s - last.victim.time_s < GROUP_WINDOW_S
            ):
                last.members.append(record)
                continue
        episodes.append(Episode(record, group_path=_group_of(record, groups)))
    return episodes


def _group_of(victim: Killed, groups: Sequence[GroupKill]) -> str | None:
    """The memory.oom.group cgroup the kernel named within GROUP_WINDOW_S after the victim's kill line."""
    return next((g.path for g in groups if 0 <= g.time_s - victim.time_s < GROUP_WINDOW_S), None)


def kill_domain(
    summary: Summary | None,
    cgroup: str | None,
    before: Counters,
    after: Counters,
    layout: CgroupLayout,
    version: int,
) -> tuple[str | None, str]:
    """The cgroup that ran out, and how the lab knows: the log's ``oom_memcg=``, else the deepest lab cgroup above
    the victim (the summary's ``task_memcg``, else ``cgroup``) whose refused-charge counter rose."""
    if summary is not None and summary.oom_memcg and layout.owns(summary.oom_memcg):
        return summary.oom_memcg, "kernel log"
    if summary is not None and summary.task_memcg:
        cgroup = summary.task_memcg
    key = "oom" if version == 2 else "limit_hits"
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


def counted_kills(before: Counters, after: Counters) -> int:
    """Kills of the lab's tasks by the cgroups' own ``oom_kill`` counters between the two readings."""
    return sum(after[p].get("oom_kill", 0) - before[p].get("oom_kill", 0) for p in before if after.get(p))


def fill_prediction(check: KillCheck, sample: Sample | None, dead: set[int], node: LabNode) -> None:
    """oomtop's verdict for the check's domain from ``sample`` (the last one before the kill), with the tasks in
    ``dead`` left out: the kernel skips tasks it already killed (MMF_OOM_SKIP), so does the prediction."""
    if sample is None or check.domain is None:
        check.why = [f"  no prediction: {'no Sample before the kill' if sample is None else 'domain unknown'}"]
        return
    if dead:
        sample = replace(sample, tasks=tuple(t for t in sample.tasks if t.pid not in dead))
    verdict = predict(sample).by_domain.get(check.domain)
    if verdict is None or verdict.victim is None:
        check.why = [f"  no prediction: oomtop has no verdict for {check.domain}"]
        return
    check.predicted_pid = verdict.victim.pid
    check.predicted_name = verdict.victim.comm
    check.predicted_group = tuple(task.pid for task in verdict.group_victims)
    check.why = why_lines(verdict, sample, node)


def match_events(
    events: Iterable[tuple[float, OomEvent]], wanted: set[int], cgroup_of: Callable[[int], str | None]
) -> Found:
    """Which of the ``wanted`` pids oomtop's events reported: by victim pid, by the killed list, or (an event from
    the counters alone, without the victim's details) by its cgroup, one pid per such event."""
    found: Found = {}
    for arrival, event in events:
        pids = {task.pid for task in (event.victim, *event.killed) if task.pid is not None}
        for pid in pids & wanted:
            found.setdefault(pid, (arrival, event))
        if event.victim.pid is None:
            where = event.task_cgroup or event.detected_in
            for pid in wanted - set(found):
                cgroup = cgroup_of(pid)
                if cgroup is not None and where == cgroup:
                    found[pid] = (arrival, event)
                    break
    return found


def record_events(checks: Sequence[KillCheck], found: Found) -> None:
    """What oomtop reported, into each check: which kills went unreported, the detection latency from the kernel's
    timestamp, and the prediction the watcher's own event carried."""
    for check in checks:
        pids = check.killed_pids
        check.undetected = [pid for pid in pids if pid not in found]
        check.detected = bool(pids) and not check.undetected
        first = found.get(check.victim_pid) if check.victim_pid is not None else None
        if first is None:
            continue
        arrival, event = first
        if check.time_s is not None:
            check.latency_ms = max(0.0, (arrival - check.time_s) * 1000)
        if event.victim.pid == check.victim_pid:  # a counter-only event predicts for a guessed domain
            check.event_predicted_pid = event.predicted_victim_pid


class KillChecker:
    """The kill checks of one lab run: numbers them across episodes and remembers every pid already accounted for
    (a process the log lost is counted once)."""

    def __init__(self, node: LabNode, tracker: Tracker) -> None:
        self.node = node
        self.tracker = tracker
        self._kill_count = 0
        self._accounted: set[int] = set()

    def ours(self, record: Record) -> bool:
        return is_ours(record, self.node)

    def _cgroup_of(self, pid: int) -> str | None:
        proc = self.node.process_of(pid)
        return proc.cgroup if proc is not None else None

    def assemble(
        self, records: list[Record], before: Counters, after: Counters, expect: LabProcess | None
    ) -> list[KillCheck]:
        """The episode's kill checks: one per OOM decision in the log, then one per lab process the counters say
        was killed but the log lost (ring buffer overrun); each predicted from the last Sample before it."""
        episodes = group_episodes(records, self._cgroup_of)
        logged = {r.pid for r in records if isinstance(r, Killed)}
        lost = self._lost(before, after, episodes, logged)
        summaries = {r.pid: r for r in records if isinstance(r, Summary)}
        expected = expect.pid if expect is not None else None
        checks: list[KillCheck] = []
        dead: set[int] = set()
        for position, episode in enumerate(episodes):
            victim = episode.victim
            domain, source = kill_domain(
                summaries.get(victim.pid),
                self._cgroup_of(victim.pid),
                before,
                after,
                self.node.layout,
                self.node.tree.version,
            )
            check = KillCheck(
                index=self._kill_count + position + 1,
                victim_pid=victim.pid,
                victim_name=victim.comm,
                killed=[(victim.pid, victim.comm), *((m.pid, m.comm) for m in episode.members)],
                time_s=victim.time_s,
                domain=domain,
                domain_source=source,
                group_path=episode.group_path,
                expected_pid=expected,
                follow_up=position > 0,
            )
            self._predict(check, dead)
            dead.update(check.killed_pids)
            checks.append(check)
        for proc in lost:
            check = self._lost_check(proc, len(checks), expected)
            checks.append(check)
            self._predict(check, dead)
        self._kill_count += len(checks)
        self._accounted.update(pid for check in checks for pid in check.killed_pids)
        return checks

    def _lost(self, before: Counters, after: Counters, episodes: list[Episode], logged: set[int]) -> list[LabProcess]:
        """Kills the counters show but the log lost: the lab's released processes that died unasked."""
        if counted_kills(before, after) <= sum(1 + len(e.members) for e in episodes):
            return []
        return [
            proc
            for proc in self.node.processes
            if proc.released_at
            and not proc.stopped_by_lab
            and proc.pid not in logged
            and proc.pid not in self._accounted
            and not proc.alive()
        ]

    def _lost_check(self, proc: LabProcess, earlier: int, expected: int | None) -> KillCheck:
        return KillCheck(
            index=self._kill_count + earlier + 1,
            victim_pid=proc.pid,
            victim_name=proc.name,
            killed=[(proc.pid, proc.name)],
            time_s=None,
            domain=None,
            domain_source="counters (the kernel log lost this kill)",
            expected_pid=expected if not earlier else None,
            follow_up=bool(earlier),
        )

    def _predict(self, check: KillCheck, dead: set[int]) -> None:
        """From the last Sample that had fully arrived before the kill (or before now, without a timestamp)."""
        when = check.time_s if check.time_s is not None else time.monotonic()
        fill_prediction(check, self.tracker.sample_before(when), dead, self.node)

    def wait_for_events(self, checks: list[KillCheck], since: float, check_stop: Callable[[], None]) -> None:
        """Match every killed pid to oomtop's events, waiting up to EVENT_DEADLINE_S after the kill."""
        wanted = {pid for check in checks for pid in check.killed_pids}
        deadline = time.monotonic() + EVENT_DEADLINE_S
        while True:
            found = match_events(self.tracker.events_since(since - 0.5), wanted, self._cgroup_of)
            if set(found) >= wanted or time.monotonic() > deadline:
                break
            check_stop()
            self.tracker.wait(0.05)
        record_events(checks, found)
