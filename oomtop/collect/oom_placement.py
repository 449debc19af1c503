"""Where a kill happened, for the reports the kernel printed without saying.

The kernel rate-limits its OOM report (``oom_kill_process``: 10 reports in 5 s); past that only
"Killed process N (comm)" is logged, with no cgroup.  The victim's cgroup is then found, most certain first, in:
the last Samples (the task was seen there), the members of a cgroup that signalled an OOM (the wake-up comes as
the OOM starts, before the victim dies, so a task born and killed between two polls is still listed), and
/proc/<pid>/cgroup (until its parent reaps it, a dying task still names its cgroup).  Such a report waits briefly
(:data:`HOLD_UNPLACED_S`) for a wake-up that may place it; what stays unplaced is emitted without a pod, since a
wrong pod is worse than none.

The domain (the cgroup whose limit was hit) of a report without its header is the nearest limited cgroup from
the victim's up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace

from oomtop.collect.cgroupfs import MemoryHierarchy, parse_pids, parse_v1_limit, parse_v2_limit
from oomtop.collect.files import read_once
from oomtop.collect.oom_ledger import LOG_MATCH_WINDOW_S
from oomtop.collect.oom_samples import RecentSamples
from oomtop.collect.procfs import parse_memory_cgroup
from oomtop.model import OomEvent

HOLD_UNPLACED_S = 0.04  # how long a report without cgroups waits for a wake-up that shows where its victim lived
MAX_RECENT_PIDS = 50_000  # members of woken cgroups remembered before the old ones are dropped


MAX_WALKED = 50_000  # cgroup directories looked at for one path in a private cgroup namespace


class Placement:
    """Finds the victim's cgroup of a report without one, and holds such reports until it is found or given up."""

    def __init__(
        self,
        hierarchy: MemoryHierarchy | None,
        procfs_root: str,
        samples: RecentSamples,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hierarchy = hierarchy
        self.procfs_root = procfs_root
        self._samples = samples
        self._monotonic = monotonic
        self._recent_pids: dict[int, tuple[str, float]] = {}  # pid -> (cgroup, when): members of woken cgroups
        self._held: list[tuple[OomEvent, float]] = []  # rate-limited reports waiting to be placed, since when

    def note_members(self, path: str, now: float) -> None:
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
        if len(self._recent_pids) > MAX_RECENT_PIDS:
            cutoff = now - LOG_MATCH_WINDOW_S
            self._recent_pids = {p: v for p, v in self._recent_pids.items() if v[1] >= cutoff}

    def where_it_lived(self, event: OomEvent) -> OomEvent:
        """The event with the victim's cgroup (and, from the same Sample, its domain) filled in when it had none:
        the cgroup the last samples saw the victim in, else the one it was a member of at a wake-up, else the one
        /proc names."""
        if event.task_cgroup or event.victim.pid is None:
            return event
        for sample in self._samples.newest_first():
            for task in sample.tasks:
                if task.pid == event.victim.pid and (event.victim.comm is None or task.comm == event.victim.comm):
                    domain = None
                    if event.kind == "memcg":
                        domain = self._samples.prediction(sample).nearest_limit.get(task.cgroup)
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

    def nearest_limit(self, path: str) -> str | None:
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
        if not path or path == "/":
            return None
        return self._absolute(path)

    def _absolute(self, path: str) -> str | None:
        """The hierarchy path of what /proc/<pid>/cgroup said.  In a private cgroup namespace (oomtop in a
        container, as containerd sets up on cgroup v2) that path is relative to the namespace's root: ``/../x/y``
        for a cgroup outside it.  It is resolved against the cgroups the samples know: the one path that ends so.
        """
        known = {cgroup.path for sample in self._samples.newest_first() for cgroup in sample.cgroups}
        if path in known:
            return path
        suffix = path
        while suffix.startswith("/.."):
            suffix = suffix[3:]
        if suffix and suffix != "/":
            ends = [candidate for candidate in known if candidate.endswith(suffix)]
            if len(ends) == 1:
                return ends[0]
            if not ends and path.startswith("/.."):
                return self._find_on_disk(suffix)
        return None if path.startswith("/..") else path  # below the namespace root, or a cgroup no sample saw

    def _find_on_disk(self, suffix: str) -> str | None:
        """The one cgroup directory of the hierarchy whose path ends with ``suffix`` (no sample knew it: a rare,
        rate-limited report of a victim no poll saw); None when it is not exactly one."""
        if self.hierarchy is None:
            return None
        root = self.hierarchy.path.rstrip("/")
        found: list[str] = []
        for seen, (directory, _dirs, _files) in enumerate(os.walk(root)):
            if seen > MAX_WALKED:
                return None
            relative = directory[len(root) :] or "/"
            if relative.endswith(suffix):
                found.append(relative)
                if len(found) > 1:
                    return None
        return found[0] if found else None

    # ------------------------------------------------------------------------------------ reports on hold

    def hold(self, event: OomEvent, now: float) -> None:
        """A report that nothing placed yet: it waits up to :data:`HOLD_UNPLACED_S` (see :meth:`release`)."""
        self._held.append((event, now))

    @property
    def held(self) -> int:
        return len(self._held)

    def release(self, now: float, lone_increment: Callable[[], str | None]) -> list[OomEvent]:
        """The held reports to emit now, in the order they came: those placed since (a wake-up or a Sample saw
        their victim), and those that waited :data:`HOLD_UNPLACED_S` (unplaced, unless ``lone_increment`` names a
        cgroup: asked only when exactly one report waits, it is the cgroup of the one counter increment nothing
        else explains, and then that increment and that report are the same kill)."""
        for index, (held, since) in enumerate(self._held):  # a wake-up since may have seen where it lived
            placed = self.where_it_lived(held)
            if placed.task_cgroup is None and now - since >= HOLD_UNPLACED_S and len(self._held) == 1:
                path = lone_increment()
                if path is not None:
                    placed = replace(placed, task_cgroup=path)
            if placed.task_cgroup is not None:
                self._held[index] = (placed, 0.0)
        ready: list[OomEvent] = []
        while self._held and (now - self._held[0][1] >= HOLD_UNPLACED_S or self._held[0][0].task_cgroup):
            ready.append(self._held.pop(0)[0])
        return ready
