"""The OOM counter ledger: cgroup kill counters in, kills no kernel-log report explains out.  No I/O.

The watcher reads the counters (from Samples, and at wake-ups before a dead container's cgroup goes) and hands the
values here, with the log's reports as :class:`LoggedKill`; the ledger decides which counter increments are kills
of their own.  It models how the kernel counts (mm/memcontrol.c, ``memcg_memory_event``):

- v1 counts a kill in ``memory.oom_control`` oom_kill of the victim's own cgroup only; v2 in the victim's
  ``memory.events.local`` and in ``memory.events`` of it and every ancestor (hierarchical);
- a cgroup is often removed right after its container's kill, taking its counter along: on v2 a parent's
  hierarchical counter that moved beyond its living children shows such kills;
- a Sample can also leave out a living cgroup whose read failed; when it is read again it goes on from the count
  it had, not from zero (the ``gone`` counts, kept for :data:`LOG_MATCH_WINDOW_S`);
- ``memory.oom.group`` kills count their first victim twice in oom_kill (as the victim, then as a member of the
  group) and the group kill once in oom_group_kill: without the log, that many increments are not kills;
- one logged report explains one increment per task it killed (plus one for the group's double count).

The arithmetic of single counters is in :mod:`oomtop.collect.oom_counters`; every way a kill could be counted
twice is decided here, in one place, so it can be tested with plain numbers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from oomtop.collect.oom_counters import CgroupCounters, advance, beyond_children, restore, vanished_counts
from oomtop.model import OomEvent
from oomtop.rank import is_under

LOG_MATCH_WINDOW_S = 10.0  # a counter increment and a log event this far apart are not the same kill


@dataclass(slots=True)
class Increment:
    """Kills a counter showed that no log event has explained yet."""

    path: str
    count: int
    seen_at: float
    sources: set[str]
    vanished_child: bool = False  # v2: a parent's hierarchical counter moved for a child that is gone


@dataclass(slots=True)
class _GroupDebt:
    """memory.oom.group kills a counter showed in ``path`` (v2 ``oom_group_kill``), without the log: each one made
    the kernel count its first victim twice in ``oom_kill``, so that many increments at or under ``path`` are
    not kills."""

    path: str
    count: int
    seen_at: float


@dataclass(slots=True)
class LoggedKill:
    """A kill the log reported, still able to absorb the counter increments it causes."""

    task_cgroup: str | None
    memcg: bool
    seen_at: float
    absorb: int  # how many counter increments it may still explain (one per killed task)
    paths: tuple[str, ...] = field(default=())  # where its increments can show: the group's and the victim's cgroup

    @classmethod
    def of(cls, event: OomEvent, now: float) -> LoggedKill:
        """One count per task killed; an oom.group kill counts its first victim twice (killed, then again as a
        member of the group)."""
        absorb = max(1, len(event.killed)) + (1 if event.oom_group_path else 0)
        paths = tuple(p for p in (event.oom_group_path, event.task_cgroup) if p)
        return cls(event.task_cgroup, event.kind == "memcg", now, absorb, paths)


class CounterLedger:
    """Counter values and logged reports in; :meth:`unexplained` gives the increments that are kills of their own.

    ``with_log``: the kernel log is read, so a group kill's report says who died and oom_group_kill is not needed.
    ``grace_s``: how long an increment waits for the log's report before it counts as a kill of its own.
    """

    def __init__(self, with_log: bool, grace_s: float) -> None:
        self.with_log = with_log
        self.grace_s = grace_s
        self._first_sample = True
        self._counts: dict[str, int] = {}  # each cgroup's own kill count, as last read (Sample or wake-up)
        self._hier_counts: dict[str, int] = {}  # v2 memory.events oom_kill, as the last sample read it
        self._sample_local: dict[str, int] = {}  # each cgroup's own kill count as the last sample read it
        self._group_counts: dict[str, int] = {}  # v2 events.local oom_group_kill, as last read
        self._hier_group_counts: dict[str, int] = {}  # v2 memory.events oom_group_kill, as the last sample read it
        self._hier_ahead: dict[str, int] = {}  # what children showed that the parent's read did not yet
        self._hier_group_ahead: dict[str, int] = {}
        self._sample_group_local: dict[str, int] = {}
        # counts of cgroups a Sample left out, for LOG_MATCH_WINDOW_S (see vanished_counts)
        self._gone_counts: dict[str, tuple[int, float]] = {}
        self._gone_group_counts: dict[str, tuple[int, float]] = {}
        self._pending: list[Increment] = []
        self._group_debts: list[_GroupDebt] = []
        self._logged: deque[LoggedKill] = deque()

    @property
    def has_baseline(self) -> bool:
        """A first Sample was taken: cgroups unknown from now on are new and count from zero."""
        return not self._first_sample

    # ------------------------------------------------------------------------------------------ counters in

    def count(self, path: str, value: int, now: float, source: str, new: bool = False) -> None:
        """A cgroup's own kill counter read ``value``; ``source`` is the detector that read it."""
        restore(self._counts, self._gone_counts, path)
        delta = advance(self._counts, path, value, new)
        if delta:
            self._add_increment(path, delta, now, {source})

    def count_group_kills(self, path: str, value: int | None, now: float, new: bool) -> None:
        """A cgroup's own oom_group_kill read ``value`` (v2; ignored with the log, whose report says who died)."""
        if value is None or self.with_log:
            return
        restore(self._group_counts, self._gone_group_counts, path)
        delta = advance(self._group_counts, path, value, new)
        if delta:
            self._add_group_debt(path, delta, now)

    def count_reads(self, reads: Iterable[tuple[str, int, int]], now: float, source: str) -> None:
        """(path, oom_kill, oom_group_kill) read at a wake-up.  Group kills first: they say how many of these
        increments are double counts."""
        reads = list(reads)
        for path, _, group_kills in reads:
            self.count_group_kills(path, group_kills, now, new=self.has_baseline)
        for path, kills, _ in reads:
            self.count(path, kills, now, source, new=self.has_baseline)

    def on_sample(self, cgroups: Sequence[CgroupCounters], v2: bool, now: float) -> None:
        """A Sample's counters: each cgroup's own (v1 oom_kill is its own), then the cgroups gone since, then on v2
        the parents' hierarchical counters for kills in children made and removed between two polls."""
        new = self.has_baseline
        paths = {cgroup.path for cgroup in cgroups}
        if v2:
            for cgroup in cgroups:  # before the kill counts: how many of those are double counts
                self.count_group_kills(cgroup.path, cgroup.oom_group_kills_local, now, new)
        for cgroup in cgroups:
            local = cgroup.oom_kills_local if v2 else cgroup.oom_kills
            if local is not None:
                self.count(cgroup.path, local, now, "counter", new)
        # Kills a wake-up already counted in a cgroup that is now gone: its parent's hierarchical counter shows
        # them too, and they must not be reported twice.
        for gone in (self._gone_counts, self._gone_group_counts):
            for path in [p for p, (_, at) in gone.items() if now - at > LOG_MATCH_WINDOW_S]:
                del gone[path]
        vanished_counted = vanished_counts(self._counts, self._sample_local, paths, self._gone_counts, now)
        vanished_groups = vanished_counts(
            self._group_counts, self._sample_group_local, paths, self._gone_group_counts, now
        )
        if v2:
            self._follow_hierarchical(cgroups, now, new, vanished_counted, vanished_groups)
        self._sample_local = {c.path: (c.oom_kills_local if v2 else c.oom_kills) or 0 for c in cgroups}
        self._sample_group_local = {c.path: c.oom_group_kills_local or 0 for c in cgroups}
        self._first_sample = False

    def _follow_hierarchical(
        self,
        cgroups: Sequence[CgroupCounters],
        now: float,
        new: bool,
        vanished_counted: dict[str, int],
        vanished_groups: dict[str, int],
    ) -> None:
        """v2: a parent's hierarchical oom_kill that moved more than its living children explain counts kills in
        children that were created and removed between two polls."""
        previous = dict(self._hier_counts)
        current = {cgroup.path: cgroup.oom_kills for cgroup in cgroups}
        self._hier_counts = current
        previous_groups = dict(self._hier_group_counts)
        self._hier_group_counts = {cgroup.path: cgroup.oom_group_kills for cgroup in cgroups}
        if not new:
            return
        if not self.with_log:  # group kills in children gone since: their double counts are in the parent
            for path, count in beyond_children(
                cgroups,
                self._hier_group_counts,
                previous_groups,
                lambda c: c.oom_group_kills_local,
                self._sample_group_local,
                vanished_groups,
                self._hier_group_ahead,
            ).items():
                self._group_debts.append(_GroupDebt(path, count, now))
        for path, count in beyond_children(
            cgroups,
            current,
            previous,
            lambda c: c.oom_kills_local,
            self._sample_local,
            vanished_counted,
            self._hier_ahead,
        ).items():
            self._add_increment(path, count, now, {"counter"}, vanished=True)

    def _add_group_debt(self, path: str, count: int, now: float) -> None:
        """Take the double counts of ``count`` group kills in ``path`` off the increments waiting there."""
        for pending in self._pending:
            if count and not pending.vanished_child and (pending.path == path or is_under(pending.path, path)):
                used = min(count, pending.count - 1) if pending.count > 1 else 0  # never the whole kill
                pending.count -= used
                count -= used
        if count:
            self._group_debts.append(_GroupDebt(path, count, now))

    def _credit_gone(self, path: str | None, kills: int) -> None:
        """Kills the log placed in ``path`` and an ancestor's counter stood for while a Sample left ``path`` out:
        its own counter shows them too when it is read again, so it goes on from past them (else one kill, two
        events)."""
        if path is not None and kills > 0 and path in self._gone_counts:
            value, at = self._gone_counts[path]
            self._gone_counts[path] = (value + kills, at)

    def _add_increment(self, path: str, count: int, now: float, sources: set[str], vanished: bool = False) -> None:
        if self._group_debts:
            self._group_debts = [d for d in self._group_debts if d.count > 0 and now - d.seen_at <= LOG_MATCH_WINDOW_S]
            for debt in self._group_debts:
                if count > 1 and (path == debt.path or is_under(path, debt.path)):
                    used = min(debt.count, count - 1)  # a group kill kills at least one task
                    debt.count -= used
                    count -= used
        for logged in self._logged:  # a kill the log already reported: add the detector, emit nothing new
            # (a parent's count for a child that is gone stands for kills the log placed in that child)
            if logged.absorb > 0 and any(
                path == p or is_under(path, p) or (vanished and is_under(p, path)) for p in logged.paths
            ):
                used = min(count, logged.absorb)
                logged.absorb -= used
                count -= used
                if vanished:
                    self._credit_gone(logged.task_cgroup, used)
                if count == 0:
                    return
        for pending in self._pending:
            if pending.path == path and pending.vanished_child == vanished:
                pending.count += count
                pending.sources |= sources
                return
        self._pending.append(Increment(path, count, now, set(sources), vanished))

    # ------------------------------------------------------------------------------------------- reports in

    def add_report(self, kill: LoggedKill) -> set[str]:
        """A kill the log reported: it explains the increments already waiting in its cgroups (their detectors are
        returned, to be added to the event's sources), and for :data:`LOG_MATCH_WINDOW_S` those still to come."""
        sources: set[str] = set()
        for pending in list(self._pending):
            # (a parent's count for a child gone since, when the poll came before the log: the kill in that child)
            if kill.absorb and any(
                pending.path == p or is_under(pending.path, p) or (pending.vanished_child and is_under(p, pending.path))
                for p in kill.paths
            ):
                used = min(kill.absorb, pending.count)
                kill.absorb -= used
                pending.count -= used
                sources |= pending.sources
                if pending.vanished_child:
                    self._credit_gone(kill.task_cgroup, used)
                if pending.count == 0:
                    self._pending.remove(pending)
        self._logged.append(kill)
        return sources

    def explain_read(self, kill: LoggedKill, value: int | None) -> bool:
        """The victim cgroup's own counter, read right after its report: what it moved beyond the count known is
        this kill, recorded as counted so a later read does not count it again.  True when the counter showed it."""
        path = kill.task_cgroup
        if path is None or value is None:
            return False
        known = self._counts.get(path)
        if known is None or value <= known:
            return False
        used = min(kill.absorb, value - known)
        kill.absorb -= used
        self._counts[path] = known + used
        return True

    # ----------------------------------------------------------------------------------------- kills out

    def forget_old_reports(self, now: float) -> None:
        """Reports older than :data:`LOG_MATCH_WINDOW_S` explain no more increments."""
        while self._logged and now - self._logged[0].seen_at > LOG_MATCH_WINDOW_S:
            self._logged.popleft()

    def unexplained(self, now: float) -> list[Increment]:
        """Increments no log event explained within the grace period: kills of their own, except those a
        rate-limited report that could not be placed stands for: that kill was reported already (the log said
        who, the counter where; which increment is whose is not known, so the report stays unplaced)."""
        ready = [p for p in self._pending if now - p.seen_at >= self.grace_s]
        self._pending = [p for p in self._pending if now - p.seen_at < self.grace_s]
        out: list[Increment] = []
        for pending in ready:
            for logged in self._logged:
                if pending.count and logged.absorb > 0 and not logged.paths and logged.memcg:
                    used = min(pending.count, logged.absorb)
                    logged.absorb -= used
                    pending.count -= used
            if pending.count:
                out.append(pending)
        return out

    def lone_increment(self, now: float, min_age_s: float) -> str | None:
        """The cgroup of the one increment no report explains, when it is the only one, counts one kill, is at
        least ``min_age_s`` old, and no unplaced report may still own it; else None (a wrong pod is worse than
        none)."""
        if any(not logged.paths and logged.absorb > 0 for logged in self._logged):
            return None
        if len(self._pending) != 1:
            return None
        pending = self._pending[0]
        if pending.vanished_child or pending.count != 1 or now - pending.seen_at < min_age_s:
            return None
        return pending.path
