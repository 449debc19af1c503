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

This module only wires the parts together and does the reads they ask for; each part is its own module:
:mod:`~oomtop.collect.kmsg_stream` (the log), :mod:`~oomtop.collect.oom_ledger` (which increments are kills of
their own), :mod:`~oomtop.collect.oom_placement` (where a report without cgroups happened),
:mod:`~oomtop.collect.oom_enrich` (names, time, prediction) over :mod:`~oomtop.collect.oom_samples`.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace

from oomtop.collect.cgroupfs import MemoryHierarchy, read_local_oom_counts, read_local_oom_kills
from oomtop.collect.identity import NodeNames
from oomtop.collect.kmsg_stream import KMSG_BATCH, QUIET_FLUSH_S, KernelLog, KmsgStream
from oomtop.collect.oom_enrich import NAMES_RETRY_S, EventEnricher
from oomtop.collect.oom_ledger import LOG_MATCH_WINDOW_S, CounterLedger, LoggedKill
from oomtop.collect.oom_placement import HOLD_UNPLACED_S, Placement
from oomtop.collect.oom_samples import RecentSamples
from oomtop.collect.wakeups import OomWakeups, WakeupsUnavailable
from oomtop.model import OomEvent, Sample
from oomtop.rank import Prediction

__all__ = [
    "HOLD_UNPLACED_S",
    "KMSG_BATCH",
    "LOG_MATCH_WINDOW_S",
    "LONE_INCREMENT_AGE_S",
    "NAMES_RETRY_S",
    "QUIET_FLUSH_S",
    "RECHECK_AFTER_S",
    "KmsgStream",
    "OomWatcher",
]

LONE_INCREMENT_AGE_S = 0.005  # an increment this old, with the log quiet as long, has its report read already
RECHECK_AFTER_S = (0.005, 0.02, 0.05, 0.15, 0.5)  # re-reads of woken cgroups: v1 signals before it counts


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
        self.procfs_root = procfs_root
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self.notices: list[str] = []
        self._samples = RecentSamples(monotonic)
        self._enricher = EventEnricher(self._samples, names or NodeNames.empty(), monotonic, wall_clock)
        self._placement = Placement(hierarchy, procfs_root, self._samples, monotonic)
        self._log: KernelLog | None = None
        self._history: list[OomEvent] = []
        self._woken: dict[str, float] = {}  # cgroup path -> when it signalled, for the follow-up reads
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
        # without the log, no report will come to explain a counter: emit at once
        self._ledger = CounterLedger(with_log=self._log is not None, grace_s=grace_s if self._log is not None else 0.0)

    @property
    def names(self) -> NodeNames:
        """The node's metadata as last read (re-read for kills in cgroups it does not name yet)."""
        return self._enricher.names

    @property
    def grace_s(self) -> float:
        """How long a counter increment waits for the log's report (0 without the log)."""
        return self._ledger.grace_s

    # ------------------------------------------------------------------------------------------ kernel log

    def _open_kmsg(self, path: str | KmsgStream) -> None:
        try:
            self._log, backlog = KernelLog.open(path, self._monotonic)
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
        offset = self._wall_clock() - self._monotonic()
        for event in backlog:
            event = replace(event, source=("kmsg",))
            self._history.append(self._enricher.finish(event, historical=True, clock_offset=offset))

    def history(self) -> list[OomEvent]:
        """Kills already in the kernel's ring buffer when the watcher started (marked ``historical``)."""
        return list(self._history)

    def kmsg_fileno(self) -> int | None:
        return self._log.fileno() if self._log is not None else None

    def on_kmsg(self) -> list[OomEvent]:
        """New kernel log records are readable: parse them, emit finished kills."""
        if self._log is None:
            return []
        return self._emit_all(self._log.read())

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
                self._placement.note_members(path, now)
            self._woken[path] = now
        self._read_woken(now)
        return self.on_kmsg() + self._expire(now)

    def recheck(self) -> list[OomEvent]:
        """Read the recently woken cgroups' counters again (see :meth:`on_wakeup`)."""
        now = self._monotonic()
        self._read_woken(now)
        return self.on_kmsg() + self._expire(now)

    def _read_woken(self, now: float) -> None:
        assert self.hierarchy is not None
        source = "eventfd" if self.hierarchy.version == 1 else "inotify"
        reads: list[tuple[str, int, int]] = []
        for path, woke_at in list(self._woken.items()):
            if now - woke_at > RECHECK_AFTER_S[-1] + 0.1:
                del self._woken[path]
                continue
            counts = read_local_oom_counts(self.hierarchy, path)
            if counts is not None:  # a cgroup made since the last sample counts from zero
                reads.append((path, *counts))
        self._ledger.count_reads(reads, now, source)

    def on_sample(self, sample: Sample, prediction: Future[Prediction] | None = None) -> list[OomEvent]:
        """A new Sample: keep it for predictions, follow its counters, re-sync the wake-up registrations.

        ``prediction`` is the Sample's prediction being computed off the kill path (the live Source has the
        poller's thread do it), so the first kill after this Sample does not compute it."""
        now = self._monotonic()
        self._samples.add(sample, prediction)
        self._ledger.on_sample(sample.cgroups, sample.node.cgroup_version == 2, now)
        if self.wakeups is not None:
            self.wakeups.sync({cgroup.path for cgroup in sample.cgroups})
            if self.wakeups.error and self.wakeups.error not in self.notices:
                self.notices.append(self.wakeups.error)
        return self._expire(now)

    # ------------------------------------------------------------------------------------------- merging

    def tick(self) -> list[OomEvent]:
        """Called every few tens of ms: emit what waited long enough (quiet log blocks, unexplained counters)."""
        now = self._monotonic()
        events: list[OomEvent] = []
        if self._log is not None:
            events.extend(self._emit_all(self._log.flush_if_quiet(now)))
        return events + self._expire(now)

    def _emit_all(self, events: list[OomEvent]) -> list[OomEvent]:
        """Finished log events, except rate-limited reports whose cgroup is still unknown: those wait briefly
        (:data:`HOLD_UNPLACED_S`) for the counter increment that tells where the kill was."""
        out: list[OomEvent] = []
        now = self._monotonic()
        for event in events:
            event = self._placement.where_it_lived(event)
            if event.task_cgroup is None and event.kind == "memcg" and self.hierarchy is not None:
                self._placement.hold(event, now)
            else:
                out.append(self._emit_logged(event))
        return out

    def _expire(self, now: float) -> list[OomEvent]:
        """Held reports placed since or held long enough, then increments no report explained in time."""
        self._ledger.forget_old_reports(now)
        released = self._placement.release(now, lambda: self._lone_increment(now))
        logged = [self._emit_logged(event) for event in released]
        return logged + [self._enricher.counter_event(pending) for pending in self._ledger.unexplained(now)]

    def _lone_increment(self, now: float) -> str | None:
        """For the one report waiting without a cgroup: the cgroup of the one increment no report explains.

        The kernel counts a kill (``memcg_memory_event_mm``) after printing its report header and microseconds
        before "Killed process", so once the increment is a few ms old and the log has nothing unread, no other
        kill can own it.  Anything less certain (two reports waiting, an earlier unplaced report that may still
        own an increment, records lost, a report half read) leaves the event unplaced: a wrong pod is worse than
        none."""
        if self._log is None:
            return None
        path = self._ledger.lone_increment(now, LONE_INCREMENT_AGE_S)
        if path is None or not self._log.settled(now, LONE_INCREMENT_AGE_S):
            return None
        return path

    def _emit_logged(self, event: OomEvent) -> OomEvent:
        """A logged kill, placed and named, with the detectors that saw it; the ledger learns what it explains."""
        now = self._monotonic()
        event = self._placement.where_it_lived(event)
        if event.kind == "memcg" and event.oom_cgroup is None and event.task_cgroup:
            event = replace(event, oom_cgroup=self._placement.nearest_limit(event.task_cgroup))
        event = self._enricher.finish(
            replace(event, source=()), historical=False, clock_offset=self._wall_clock() - now
        )
        kill = LoggedKill.of(event, now)
        # Explain increments already seen, and read the victim's counter now so it is not counted again later.
        sources = {"kmsg"} | self._ledger.add_report(kill)
        if (
            self.hierarchy is not None
            and kill.task_cgroup
            and kill.absorb
            and self._ledger.explain_read(kill, read_local_oom_kills(self.hierarchy, kill.task_cgroup))
        ):
            sources.add("counter")
        return replace(event, source=tuple(sorted(sources)))

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        if self.wakeups is not None:
            self.wakeups.close()
