"""Live OOM detection: the kernel log, the cgroup counters and fast wake-ups, merged so each kill is one event.

Three detectors see a kill, each with its own blind spot:

- the kernel log (/dev/kmsg) names the victim, its cgroup and the candidate table, but needs root or CAP_SYSLOG;
- the cgroups' own counters (v1 ``oom_control`` oom_kill, v2 ``memory.events.local``) need no privilege, but a
  container's cgroup is often removed right after its kill, and v1 counts only in the victim's own cgroup;
- wake-ups (v1 eventfd, v2 inotify; :mod:`oomtop.collect.wakeups`) say *when*, at once, so the counters are read
  before the runtime removes the cgroup, instead of at the next poll.

The watcher emits a log event as soon as its block is complete (it then reads the victim cgroup's counter to add
that detector), and a counter increment that no log event explains after a short grace period becomes an event of
its own: pod and container from the path, no victim details.  On v2 the parents' hierarchical counters catch kills
in children that vanished between polls.
"""

from __future__ import annotations

import errno
import os
import select
import time
from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

from oomtop.collect.cgroupfs import (
    MemoryHierarchy,
    parse_pids,
    parse_v1_limit,
    parse_v2_limit,
    read_local_oom_counts,
    read_local_oom_kills,
)
from oomtop.collect.files import read_once
from oomtop.collect.identity import NodeNames, identify
from oomtop.collect.kmsg import LogRecord, OomParser, parse_kmsg_record
from oomtop.collect.procfs import parse_memory_cgroup
from oomtop.collect.wakeups import OomWakeups, WakeupsUnavailable
from oomtop.model import ContainerRef, KilledTask, OomEvent, PodRef, Sample
from oomtop.rank import is_under, predict

LOG_MATCH_WINDOW_S = 10.0  # a counter increment and a log event this far apart are not the same kill
QUIET_FLUSH_S = 0.01  # a complete log block with nothing after it for this long is emitted (a group kill's
#                       lines come microseconds apart)
LONE_INCREMENT_AGE_S = 0.005  # an increment this old, with the log quiet as long, has its report read already
KMSG_BATCH = 64  # records parsed per call: in a burst the kernel writes as fast as we read, and a finished kill
#                  must not wait for the reader to catch up (the descriptor stays readable; the loop calls again)
NAMES_RETRY_S = 0.5  # an unnamed cgroup's kill re-reads node metadata at most this often for that cgroup
HOLD_UNPLACED_S = 0.04  # how long a report without cgroups waits for a wake-up that shows where its victim lived
RECHECK_AFTER_S = (0.005, 0.02, 0.05, 0.15, 0.5)  # re-reads of woken cgroups: v1 signals before it counts


def _advance(counts: dict[str, int], path: str, value: int, new: bool) -> int:
    """Store a counter's new value; return how far it moved since the last read (0 for a first read of a cgroup
    that existed before, since its old kills are history; ``new`` cgroups count from zero)."""
    known = counts.get(path)
    counts[path] = value
    if known is None:
        if not new or value <= 0:
            return 0
        known = 0
    if value < known:
        # A Sample read before a wake-up's fresher read: keep the higher count.  (A cgroup removed and made
        # again between two polls would also read lower; it counts again once it passes the old value.)
        counts[path] = known
        return 0
    return value - known


def _vanished_counts(
    counts: dict[str, int],
    sample_counts: dict[str, int],
    paths: set[str],
    gone: dict[str, tuple[int, float]],
    now: float,
) -> dict[str, int]:
    """Counts read (at wake-ups) beyond the last sample in cgroups now gone, by the nearest ancestor still there.

    The gone cgroups' counts move to ``gone`` (with ``now``): a Sample also leaves out a cgroup that is still
    there when a read of it failed (the collector finds it again at its next scan), and when it is read again its
    count must go on from where it was, not from zero."""
    out: dict[str, int] = {}
    for path in [p for p in counts if p not in paths]:
        value = counts.pop(path)
        gone[path] = (value, now)
        counted = value - sample_counts.get(path, 0)
        if counted > 0:
            ancestor = path.rsplit("/", 1)[0] or "/"
            while ancestor not in paths and ancestor != "/":
                ancestor = ancestor.rsplit("/", 1)[0] or "/"
            out[ancestor] = out.get(ancestor, 0) + counted
    return out


def _restore(counts: dict[str, int], gone: dict[str, tuple[int, float]], path: str) -> None:
    """A cgroup read again after a Sample left it out goes on from the count it had (see _vanished_counts)."""
    if path not in counts and path in gone:
        counts[path] = gone.pop(path)[0]


def _beyond_children(
    sample: Sample,
    current: dict[str, int],
    previous: dict[str, int],
    local: Callable[[Any], int | None],
    local_before: dict[str, int],
    vanished: dict[str, int],
) -> dict[str, int]:
    """v2, per cgroup: how far a hierarchical counter moved beyond what its living children, its own local count
    and the wake-ups' counts in children now gone explain -- events in children made and removed between polls."""
    children: dict[str, list[str]] = {}
    for cgroup in sample.cgroups:
        if cgroup.parent_path is not None:
            children.setdefault(cgroup.parent_path, []).append(cgroup.path)
    out: dict[str, int] = {}
    for cgroup in sample.cgroups:
        own = local(cgroup)
        if cgroup.path not in previous or own is None:
            continue
        delta = current[cgroup.path] - previous[cgroup.path]
        if delta <= 0:
            continue
        explained = sum(current[child] - previous.get(child, 0) for child in children.get(cgroup.path, ()))
        unexplained = delta - explained - max(0, own - local_before.get(cgroup.path, 0)) - vanished.get(cgroup.path, 0)
        if unexplained > 0:
            out[cgroup.path] = unexplained
    return out


class KmsgStream:
    """/dev/kmsg, non-blocking.  A reader that falls behind gets EPIPE once and carries on (records are lost)."""

    def __init__(self, path: str, fd: int | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC) if fd is None else fd
        self.last_seq: int | None = None
        self.lost = 0

    @classmethod
    def from_fd(cls, fd: int, name: str = "kmsg") -> KmsgStream:
        """A stream over any descriptor that returns one record per read (tests use a SOCK_SEQPACKET pair)."""
        os.set_blocking(fd, False)
        return cls(name, fd)

    def fileno(self) -> int:
        return self.fd

    def read(self, limit: int = 100_000) -> list[LogRecord]:
        records: list[LogRecord] = []
        while len(records) < limit:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.lost += 1  # overwritten before we read them; the seq gap below counts how many
                continue
            except InterruptedError:
                continue
            if not raw:
                break
            record = parse_kmsg_record(raw)
            if record is None:
                continue
            if record.seq is not None:
                if self.last_seq is not None and record.seq > self.last_seq + 1:
                    self.lost += record.seq - self.last_seq - 1
                self.last_seq = record.seq
            records.append(record)
        return records

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(slots=True)
class _Increment:
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
class _Logged:
    """A log event already emitted, still able to absorb the counter increments its kill causes."""

    event: OomEvent
    seen_at: float
    absorb: int  # how many counter increments it may still explain (one per killed task)
    paths: tuple[str, ...] = field(default=())


class OomWatcher:
    """Feed it records, wake-ups and Samples; it returns OomEvents, each kill once."""

    def __init__(
        self,
        hierarchy: MemoryHierarchy | None,
        kmsg_path: str | KmsgStream | None = "/dev/kmsg",
        names: NodeNames | None = None,
        grace_s: float = 0.5,
        procfs_root: str = "/proc",
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.hierarchy = hierarchy
        self.names = names or NodeNames.empty()
        self.procfs_root = procfs_root
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self.notices: list[str] = []
        self._parser = OomParser()
        self._kmsg: KmsgStream | None = None
        self._history: list[OomEvent] = []
        self._samples: deque[Sample] = deque(maxlen=4)
        self._counts: dict[str, int] = {}
        self._hier_counts: dict[str, int] = {}
        self._pending: list[_Increment] = []
        self._logged: deque[_Logged] = deque()
        self._first_sample = True
        self._sample_local: dict[str, int] = {}  # each cgroup's own kill count as the last sample read it
        self._group_counts: dict[str, int] = {}  # v2 events.local oom_group_kill, as last read
        self._hier_group_counts: dict[str, int] = {}  # v2 memory.events oom_group_kill, as the last sample read it
        self._sample_group_local: dict[str, int] = {}
        self._group_debts: list[_GroupDebt] = []
        # counts of cgroups a Sample left out, for LOG_MATCH_WINDOW_S (see _vanished_counts)
        self._gone_counts: dict[str, tuple[int, float]] = {}
        self._gone_group_counts: dict[str, tuple[int, float]] = {}
        self._names_tried: dict[str, float] = {}  # unnamed cgroup path -> when node metadata was re-read for it
        self._held: list[tuple[OomEvent, float]] = []  # rate-limited reports waiting to be placed
        self._recent_pids: dict[int, tuple[str, float]] = {}  # pid -> (cgroup, when): members of woken cgroups
        self._ready: list[OomEvent] = []
        self._woken: dict[str, float] = {}  # cgroup path -> when it signalled, for the follow-up reads
        self._predictions: dict[int, Any] = {}  # id(sample) -> its Prediction (one per sample, not per event)
        self._last_record_at = 0.0
        self.grace_s = grace_s
        if kmsg_path is not None:
            self._open_kmsg(kmsg_path)
        else:
            self.notices.append(
                "the kernel log is not read (--kmsg none): OOM kills are detected from cgroup counters only, "
                "with pod and container but no victim details"
            )
        self.wakeups: OomWakeups | None = None
        if hierarchy is not None:
            try:
                self.wakeups = OomWakeups(hierarchy.path, hierarchy.version)
            except (WakeupsUnavailable, OSError) as error:
                self.notices.append(f"no fast OOM wake-ups ({error}): kills are seen at the next poll")
        if self._kmsg is None:
            self.grace_s = 0.0  # no log will come to explain a counter: emit at once

    # ------------------------------------------------------------------------------------------ kernel log

    def _open_kmsg(self, path: str | KmsgStream) -> None:
        try:
            stream = path if isinstance(path, KmsgStream) else KmsgStream(path)
            records = stream.read()
        except OSError as error:
            reason = (
                "permission denied" if error.errno in (errno.EACCES, errno.EPERM) else (error.strerror or str(error))
            )
            self.notices.append(
                f"cannot read the kernel log {getattr(path, 'path', path)} ({reason}): "
                "OOM kills are detected from cgroup counters only, "
                "with pod and container but no victim details; run as root (or with CAP_SYSLOG) for those"
            )
            return
        self._kmsg = stream
        offset = self._wall_clock() - self._monotonic()
        for event in self._parser_events(records) + self._parser.flush():
            event = replace(event, source=("kmsg",))
            self._history.append(self._finish(event, historical=True, clock_offset=offset))

    def _parser_events(self, records: list[LogRecord]) -> list[OomEvent]:
        events: list[OomEvent] = []
        for record in records:
            events.extend(self._parser.feed(record))
        return events

    def history(self) -> list[OomEvent]:
        """Kills already in the kernel's ring buffer when the watcher started (marked ``historical``)."""
        return list(self._history)

    def kmsg_fileno(self) -> int | None:
        return self._kmsg.fileno() if self._kmsg is not None else None

    def on_kmsg(self) -> list[OomEvent]:
        """New kernel log records are readable: parse them, emit finished kills."""
        if self._kmsg is None:
            return []
        records = self._kmsg.read(KMSG_BATCH)
        if records:
            self._last_record_at = self._monotonic()
        return self._emit_all(self._parser_events(records))

    # ------------------------------------------------------------------------------------ counter detectors

    def wakeup_fileno(self) -> int | None:
        return self.wakeups.fileno() if self.wakeups is not None else None

    def on_wakeup(self) -> list[OomEvent]:
        """Some cgroups signalled an OOM: read their counters now, before a dead container's cgroup goes.

        v1 signals when the OOM starts, before the kill is counted, so the woken cgroups are read again a few
        times over the next half second (:meth:`recheck`, scheduled by the caller at ``RECHECK_AFTER_S``)."""
        if self.wakeups is None or self.hierarchy is None:
            return []
        now = self._monotonic()
        for path in self.wakeups.drain():
            if path not in self._woken:
                self._note_members(path, now)
            self._woken[path] = now
        self._read_woken(now)
        return self.on_kmsg() + self._expire(now)

    def _note_members(self, path: str, now: float) -> None:
        """Who is in a cgroup that just signalled: the signal comes as the OOM starts, before the victim dies, so
        this is where a victim born and killed between two polls is found (the log may not say: rate limit)."""
        assert self.hierarchy is not None

        try:
            pids = parse_pids(
                read_once(os.path.join(self.hierarchy.path + ("" if path == "/" else path), "cgroup.procs"), 1 << 20)
            )
        except OSError:
            return
        for pid in pids:
            self._recent_pids[pid] = (path, now)
        if len(self._recent_pids) > 50_000:
            cutoff = now - LOG_MATCH_WINDOW_S
            self._recent_pids = {p: v for p, v in self._recent_pids.items() if v[1] >= cutoff}

    def recheck(self) -> list[OomEvent]:
        """Read the recently woken cgroups' counters again (see :meth:`on_wakeup`)."""
        now = self._monotonic()
        self._read_woken(now)
        return self.on_kmsg() + self._expire(now)

    def _read_woken(self, now: float) -> None:
        assert self.hierarchy is not None
        source = "eventfd" if self.hierarchy.version == 1 else "inotify"
        read: list[tuple[str, int]] = []
        for path, woke_at in list(self._woken.items()):
            if now - woke_at > RECHECK_AFTER_S[-1] + 0.1:
                del self._woken[path]
                continue
            counts = read_local_oom_counts(self.hierarchy, path)
            if counts is not None:  # a cgroup made since the last sample counts from zero
                read.append((path, counts[0]))
                self._count_group_kills(path, counts[1], now, new=not self._first_sample)
        for path, count in read:  # group kills first: they say how many of these increments are double counts
            self._count(path, count, now, source, new=not self._first_sample)

    def _count(self, path: str, value: int, now: float, source: str, new: bool = False) -> None:
        _restore(self._counts, self._gone_counts, path)
        delta = _advance(self._counts, path, value, new)
        if delta:
            self._add_increment(path, delta, now, {source})

    def _count_group_kills(self, path: str, value: int | None, now: float, new: bool) -> None:
        if value is None or self._kmsg is not None:  # with the log, the group's report says who died
            return
        _restore(self._group_counts, self._gone_group_counts, path)
        delta = _advance(self._group_counts, path, value, new)
        if delta:
            self._add_group_debt(path, delta, now)

    def _add_group_debt(self, path: str, count: int, now: float, vanished: bool = False) -> None:
        """Take the double counts of ``count`` group kills in ``path`` off the increments waiting there."""
        for pending in self._pending:
            if count and pending.vanished_child == vanished and (pending.path == path or is_under(pending.path, path)):
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
                    self._credit_gone(logged.event.task_cgroup, used)
                if count == 0:
                    return
        for pending in self._pending:
            if pending.path == path and pending.vanished_child == vanished:
                pending.count += count
                pending.sources |= sources
                return
        self._pending.append(_Increment(path, count, now, set(sources), vanished))

    def on_sample(self, sample: Sample) -> list[OomEvent]:
        """A new Sample: keep it for predictions, follow its counters, re-sync the wake-up registrations."""
        now = self._monotonic()
        self._samples.append(sample)
        new = not self._first_sample
        v2 = sample.node.cgroup_version == 2
        paths = {cgroup.path for cgroup in sample.cgroups}
        if v2:
            for cgroup in sample.cgroups:  # before the kill counts: how many of those are double counts
                self._count_group_kills(cgroup.path, cgroup.oom_group_kills_local, now, new)
        for cgroup in sample.cgroups:
            local = cgroup.oom_kills_local if v2 else cgroup.oom_kills
            if local is not None:
                self._count(cgroup.path, local, now, "counter", new)
        # Kills a wake-up already counted in a cgroup that is now gone: its parent's hierarchical counter shows
        # them too, and they must not be reported twice.
        for gone in (self._gone_counts, self._gone_group_counts):
            for path in [p for p, (_, at) in gone.items() if now - at > LOG_MATCH_WINDOW_S]:
                del gone[path]
        vanished_counted = _vanished_counts(self._counts, self._sample_local, paths, self._gone_counts, now)
        vanished_groups = _vanished_counts(
            self._group_counts, self._sample_group_local, paths, self._gone_group_counts, now
        )
        if v2:
            self._follow_hierarchical(sample, now, new, vanished_counted, vanished_groups)
        self._sample_local = {c.path: (c.oom_kills_local if v2 else c.oom_kills) or 0 for c in sample.cgroups}
        self._sample_group_local = {c.path: c.oom_group_kills_local or 0 for c in sample.cgroups}
        self._first_sample = False
        if self.wakeups is not None:
            self.wakeups.sync(paths)
            if self.wakeups.error and self.wakeups.error not in self.notices:
                self.notices.append(self.wakeups.error)
        return self._expire(now)

    def _follow_hierarchical(
        self, sample: Sample, now: float, new: bool, vanished_counted: dict[str, int], vanished_groups: dict[str, int]
    ) -> None:
        """v2: a parent's hierarchical oom_kill that moved more than its living children explain counts kills in
        children that were created and removed between two polls."""
        previous = dict(self._hier_counts)
        current = {cgroup.path: cgroup.oom_kills for cgroup in sample.cgroups}
        self._hier_counts = current
        previous_groups = dict(self._hier_group_counts)
        self._hier_group_counts = {cgroup.path: cgroup.oom_group_kills for cgroup in sample.cgroups}
        if not new:
            return
        if self._kmsg is None:  # group kills in children gone since: their double counts are in the parent
            for path, count in _beyond_children(
                sample,
                self._hier_group_counts,
                previous_groups,
                lambda c: c.oom_group_kills_local,
                self._sample_group_local,
                vanished_groups,
            ).items():
                self._group_debts.append(_GroupDebt(path, count, now))
        for path, count in _beyond_children(
            sample, current, previous, lambda c: c.oom_kills_local, self._sample_local, vanished_counted
        ).items():
            self._add_increment(path, count, now, {"counter"}, vanished=True)

    def tick(self) -> list[OomEvent]:
        """Called every few tens of ms: emit what waited long enough (quiet log blocks, unexplained counters)."""
        now = self._monotonic()
        events: list[OomEvent] = []
        if self._kmsg is not None and now - self._last_record_at >= QUIET_FLUSH_S:
            events.extend(self._emit_all(self._parser.flush()))
        return events + self._expire(now)

    def _emit_all(self, events: list[OomEvent]) -> list[OomEvent]:
        """Finished log events, except rate-limited reports whose cgroup is still unknown: those wait briefly
        (:data:`HOLD_UNPLACED_S`) for the counter increment that tells where the kill was."""
        out: list[OomEvent] = []
        now = self._monotonic()
        for event in events:
            event = self._where_it_lived(event)
            if event.task_cgroup is None and event.kind == "memcg" and self.hierarchy is not None:
                self._held.append((event, now))
            else:
                out.append(self._emit_logged(event))
        return out + self._drain_ready()

    def _drain_ready(self) -> list[OomEvent]:
        ready, self._ready = self._ready, []
        return ready

    def _expire(self, now: float) -> list[OomEvent]:
        while self._logged and now - self._logged[0].seen_at > LOG_MATCH_WINDOW_S:
            self._logged.popleft()
        for index, (held, since) in enumerate(self._held):  # a wake-up since may have seen where it lived
            placed = self._where_it_lived(held)
            if placed.task_cgroup is None and now - since >= HOLD_UNPLACED_S:
                placed = self._place_by_lone_increment(placed, now)
            if placed.task_cgroup is not None:
                self._held[index] = (placed, 0.0)
        while self._held and (now - self._held[0][1] >= HOLD_UNPLACED_S or self._held[0][0].task_cgroup):
            self._ready.append(self._emit_logged(self._held.pop(0)[0]))
        if self._ready:
            return self._drain_ready() + self._expire_counters(now)
        return self._expire_counters(now)

    def _expire_counters(self, now: float) -> list[OomEvent]:
        """Increments no log event explained within the grace period become events of their own, except those a
        rate-limited report that could not be placed stands for: that kill was reported already (the log said
        who, the counter where; which increment is whose is not known, so the report stays unplaced)."""
        ready = [p for p in self._pending if now - p.seen_at >= self.grace_s]
        self._pending = [p for p in self._pending if now - p.seen_at < self.grace_s]
        events: list[OomEvent] = []
        for pending in ready:
            for logged in self._logged:
                if pending.count and logged.absorb > 0 and not logged.paths and logged.event.kind == "memcg":
                    used = min(pending.count, logged.absorb)
                    logged.absorb -= used
                    pending.count -= used
            if pending.count:
                events.append(self._counter_event(pending))
        return events

    def _place_by_lone_increment(self, event: OomEvent, now: float) -> OomEvent:
        """A rate-limited report that nothing else placed, when exactly one kill is unexplained on each side: the
        one report without a cgroup and the one counter increment without a report are the same kill.

        The kernel counts a kill (``memcg_memory_event_mm``) after printing its report header and microseconds
        before "Killed process", so once the increment is a few ms old and the log has nothing unread, no other
        kill can own it.  Anything less certain (two reports waiting, an earlier unplaced report that may still
        own an increment, records lost, a report half read) leaves the event unplaced: a wrong pod is worse than
        none."""
        if len(self._held) != 1 or self._kmsg is None or self._kmsg.lost or self._parser.in_block:
            return event
        if any(not logged.paths and logged.absorb > 0 for logged in self._logged):
            return event
        if now - self._last_record_at < LONE_INCREMENT_AGE_S or self._kmsg_readable():
            return event
        if len(self._pending) != 1:
            return event
        pending = self._pending[0]
        if pending.vanished_child or pending.count != 1 or now - pending.seen_at < LONE_INCREMENT_AGE_S:
            return event
        return replace(event, task_cgroup=pending.path)

    def _kmsg_readable(self) -> bool:
        assert self._kmsg is not None
        try:
            return bool(select.select([self._kmsg.fileno()], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------------------------------- building

    def _where_it_lived(self, event: OomEvent) -> OomEvent:
        """The kernel rate-limits its OOM report (10 in 5 s): past that only "Killed process N (comm)" is logged,
        without cgroups.  The victim's cgroup is then the one the last samples saw it in."""
        if event.task_cgroup or event.victim.pid is None:
            return event
        for sample in reversed(self._samples):
            for task in sample.tasks:
                if task.pid == event.victim.pid and (event.victim.comm is None or task.comm == event.victim.comm):
                    domain = self._prediction(sample).nearest_limit.get(task.cgroup) if event.kind == "memcg" else None
                    return replace(event, task_cgroup=task.cgroup, oom_cgroup=event.oom_cgroup or domain)
        # Born and killed between two polls: it was a member of a cgroup that signalled the OOM, or, until its
        # parent reaps it, the dying task still names its cgroup.
        recent = self._recent_pids.get(event.victim.pid)
        if recent is not None and self._monotonic() - recent[1] < LOG_MATCH_WINDOW_S:
            return replace(event, task_cgroup=recent[0])
        path = self._proc_cgroup(event.victim.pid)
        if path is not None:
            return replace(event, task_cgroup=path)
        return event

    def _nearest_limit(self, path: str) -> str | None:
        """For a report whose header the kernel rate-limited: the nearest cgroup, from the victim's up, with a
        limit of its own (the likeliest domain; the report that named it exactly was not printed)."""
        if self.hierarchy is None:
            return None

        name, parse = (
            ("memory.limit_in_bytes", parse_v1_limit) if self.hierarchy.version == 1 else ("memory.max", parse_v2_limit)
        )
        current = path
        while current != "/":
            try:
                if parse(read_once(os.path.join(self.hierarchy.path + current, name))) is not None:
                    return current
            except OSError:
                pass
            current = current.rsplit("/", 1)[0] or "/"
        return None

    def _proc_cgroup(self, pid: int) -> str | None:
        """The memory cgroup /proc/<pid>/cgroup names; an exited task is moved to the root, which says nothing."""
        try:
            with open(f"{self.procfs_root}/{pid}/cgroup", "rb") as handle:
                text = handle.read(65536).decode("utf-8", "surrogateescape")
        except OSError:
            return None
        version = self.hierarchy.version if self.hierarchy is not None else 2
        path = parse_memory_cgroup(text, version)
        return path if path and path != "/" else None

    def _emit_logged(self, event: OomEvent, extra_sources: AbstractSet[str] = frozenset()) -> OomEvent:
        now = self._monotonic()
        event = self._where_it_lived(event)
        if event.kind == "memcg" and event.oom_cgroup is None and event.task_cgroup:
            event = replace(event, oom_cgroup=self._nearest_limit(event.task_cgroup))
        event = self._finish(replace(event, source=()), historical=False, clock_offset=self._wall_clock() - now)
        sources = {"kmsg"} | set(extra_sources)
        paths = tuple(p for p in (event.oom_group_path, event.task_cgroup) if p)
        # One count per task killed; an oom.group kill counts its first victim twice (killed, then again as a
        # member of the group).
        absorb = max(1, len(event.killed)) + (1 if event.oom_group_path else 0)
        # Explain increments already seen, and read the victim's counter now so it is not counted again later.
        for pending in list(self._pending):
            # (a parent's count for a child gone since, when the poll came before the log: the kill in that child)
            if absorb and any(
                pending.path == p or is_under(pending.path, p) or (pending.vanished_child and is_under(p, pending.path))
                for p in paths
            ):
                used = min(absorb, pending.count)
                absorb -= used
                pending.count -= used
                sources |= pending.sources
                if pending.vanished_child:
                    self._credit_gone(event.task_cgroup, used)
                if pending.count == 0:
                    self._pending.remove(pending)
        if self.hierarchy is not None and event.task_cgroup and absorb:
            count = read_local_oom_kills(self.hierarchy, event.task_cgroup)
            known = self._counts.get(event.task_cgroup)
            if count is not None and known is not None and count > known:
                used = min(absorb, count - known)
                absorb -= used
                self._counts[event.task_cgroup] = known + used
                sources.add("counter")
        self._logged.append(_Logged(event, now, absorb, paths))
        return replace(event, source=tuple(sorted(sources)))

    def _finish(self, event: OomEvent, historical: bool, clock_offset: float) -> OomEvent:
        """Identity, wall time and the prediction of the last sample taken before the kill."""
        time_s = event.time
        if time_s is None and event.kernel_time_s is not None:
            time_s = clock_offset + event.kernel_time_s
        path = event.task_cgroup or event.oom_cgroup
        pod, container = self._identity(path, refresh=not historical)  # history: its pods are mostly long gone
        predicted = None if historical else self._predicted(event)
        return replace(
            event,
            time=time_s,
            historical=historical,
            pod=event.pod or pod,
            container=event.container or container,
            predicted_victim_pid=predicted,
            source=event.source or ("kmsg",),
        )

    def _identity(self, path: str | None, refresh: bool = True) -> tuple[PodRef | None, ContainerRef | None]:
        if not path:
            return None, None
        for sample in reversed(self._samples):
            for cgroup in sample.cgroups:
                if cgroup.path == path and (cgroup.identity.pod is None or cgroup.identity.pod.name is not None):
                    return cgroup.identity.pod, cgroup.identity.container
        identity = identify(path, self.names)
        unnamed = (identity.pod is not None and identity.pod.name is None) or (
            identity.container is not None and identity.container.name is None
        )
        now = self._monotonic()
        if unnamed and refresh and now - self._names_tried.get(path, float("-inf")) > NAMES_RETRY_S:
            # A pod started since the names were read (the collector re-reads them only every few seconds): its
            # metadata (bundle, log directory) is on disk by the time it can be killed.  Once per cgroup, not
            # once per period: in a burst each new container's kill must see its own bundle.
            if len(self._names_tried) > 4096:
                self._names_tried = {p: t for p, t in self._names_tried.items() if now - t <= NAMES_RETRY_S}
            self._names_tried[path] = now
            self.names = self.names.refresh()
            identity = identify(path, self.names)
        return identity.pod, identity.container

    def _sample_before(self, kernel_time_s: float | None, victim_pid: int | None) -> Sample | None:
        """The last sample taken before the kill.  The kernel stamps records with its monotonic clock; where that
        does not line up with ours (another clock, a suspend), the last sample in which the victim still lived."""
        samples = list(self._samples)
        if kernel_time_s is not None and abs(kernel_time_s - self._monotonic()) < 60:
            samples = [s for s in samples if s.monotonic <= kernel_time_s]
        elif victim_pid is not None:
            alive = [s for s in samples if any(task.pid == victim_pid for task in s.tasks)]
            samples = alive or samples
        return samples[-1] if samples else None

    def _predicted(self, event: OomEvent) -> int | None:
        sample = self._sample_before(event.kernel_time_s, event.victim.pid)
        if sample is None:
            return None
        prediction = self._prediction(sample)
        if event.kind == "global":
            return prediction.node.victim.pid if prediction.node.victim else None
        verdict = prediction.by_domain.get(event.oom_cgroup or "")
        return verdict.victim.pid if verdict and verdict.victim else None

    def _prediction(self, sample: Sample) -> Any:
        prediction = self._predictions.get(id(sample))
        if prediction is None:
            live = {id(kept) for kept in self._samples}
            self._predictions = {key: value for key, value in self._predictions.items() if key in live}
            prediction = self._predictions[id(sample)] = predict(sample)
        return prediction

    def _counter_event(self, pending: _Increment) -> OomEvent:
        pod, container = self._identity(pending.path)
        domain = None
        predicted = None
        sample = self._samples[-2] if len(self._samples) >= 2 else (self._samples[-1] if self._samples else None)
        if sample is not None and not pending.vanished_child:
            prediction = self._prediction(sample)
            domain = prediction.nearest_limit.get(pending.path)
            verdict = prediction.by_domain.get(domain or "")
            predicted = verdict.victim.pid if verdict and verdict.victim else None
        return OomEvent(
            kind="memcg",
            time=self._wall_clock(),
            kernel_time_s=None,
            oom_cgroup=domain,
            task_cgroup=None if pending.vanished_child else pending.path,
            victim=KilledTask(pid=None, comm=None),
            killed=(),
            source=tuple(sorted(pending.sources)),
            pod=None if pending.vanished_child else pod,
            container=None if pending.vanished_child else container,
            predicted_victim_pid=predicted,
            count=pending.count,
            detected_in=pending.path,
        )

    def close(self) -> None:
        if self._kmsg is not None:
            self._kmsg.close()
        if self.wakeups is not None:
            self.wakeups.close()
