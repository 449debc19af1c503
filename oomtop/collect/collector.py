"""The collector: one call, one immutable Sample of every memory cgroup and every process.

It keeps state between calls so a poll re-reads only what changes: cgroup directories are watched with inotify
(no tree walk per tick), files are kept open and re-read with pread, a task's status is re-read only when its
statm changed, and Cgroup/Task values whose inputs did not change are handed out again as the same objects.
It is synchronous and CPU-bound by design; :mod:`oomtop.collect.poller` runs it off the event loop.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from oomtop.collect.cgroupfs import CgroupGone, CgroupReader, MemoryHierarchy, PidFilter, discover_hierarchy
from oomtop.collect.files import FdBudget
from oomtop.collect.identity import NodeNames, identify
from oomtop.collect.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_ISDIR,
    IN_Q_OVERFLOW,
    Inotify,
    InotifyUnavailable,
)
from oomtop.collect.node import NodeReader
from oomtop.collect.procfs import TaskGone, TaskReader, list_pids
from oomtop.model import Cgroup, CgroupKind, Identity, Sample, Task

_NAMED_KINDS = (CgroupKind.POD, CgroupKind.CONTAINER, CgroupKind.SANDBOX)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Where to read from and how often to re-read what rarely changes."""

    cgroup_root: str = "/sys/fs/cgroup"
    procfs_root: str = "/proc"
    host_root: str = "/"  # root of node-local metadata (/var/log/pods, runtime bundles)
    slow_interval_s: float = 1.0  # limits, oom_score_adj, oom.group, PSI
    names_refresh_s: float = 2.0  # at most this often, re-read metadata when an unnamed pod/container shows up
    cmdline_limit: int = 4096
    redact_cmdline: bool = False
    keep_open: bool = True  # keep descriptors open between polls (pread) instead of open+read+close


@dataclass(slots=True)
class PollStats:
    """What the last poll did (cgroups, tasks, re-reads, rescans): for the benchmarks and their tests."""

    cgroups: int = 0
    tasks: int = 0
    new_tasks: int = 0
    denied_tasks: int = 0  # listed in a cgroup but not readable in procfs (permissions, hidepid)
    task_reads: int = 0  # processes whose statm was re-read (the others sat in quiet cgroups)
    rescans: int = 0
    slow: bool = False


class Collector:
    """Builds Samples from cgroupfs and procfs under configurable roots."""

    def __init__(
        self,
        config: CollectorConfig | None = None,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config = config or CollectorConfig()
        self._wall_clock = wall_clock
        self._monotonic = monotonic
        self._budget = FdBudget() if config.keep_open else None
        self.hierarchy: MemoryHierarchy | None = discover_hierarchy(config.cgroup_root, config.procfs_root)
        self._node = NodeReader(config.procfs_root, self.hierarchy, config.host_root)
        self._names = NodeNames.load(config.host_root)
        self._names_loaded_at = monotonic()
        self._names_wanted = False
        self._cgroups: dict[str, CgroupReader] = {}
        self._inodes: dict[str, tuple[int, ...]] = {}  # path -> creation-order key (inodes from the root down)
        self._order: list[str] = []
        self._order_dirty = True
        self._tasks: dict[int, TaskReader] = {}
        self._kernel_threads: dict[int, TaskReader] = {}
        self._pid_filter = PidFilter()
        # cgroups still there but unreadable (v2 without memory files, reads that failed): looked at again
        self._unready: set[str] = set()
        self._last_membership: dict[int, str] = {}
        self._last_order: dict[int, int] = {}
        self._last_slow = float("-inf")
        self._seq = 0
        self._static_warnings: list[str] = []
        self.stats = PollStats()
        self._inotify: Inotify | None = None
        if self.hierarchy is None:
            self._static_warnings.append(
                f"no cgroup hierarchy with the memory controller was found under {config.cgroup_root}: "
                "showing processes only"
            )
        else:
            try:
                self._inotify = Inotify()
            except InotifyUnavailable:
                self._inotify = None
            self._scan("/")

    # ------------------------------------------------------------------------------------------ discovery

    def _directory(self, path: str) -> str:
        assert self.hierarchy is not None
        return self.hierarchy.path + ("" if path == "/" else path)

    def _scan(self, path: str) -> None:
        """Add ``path`` and every cgroup below it (a walk only at start, on a new directory, or on overflow)."""
        parent_key = self._inodes.get(path.rsplit("/", 1)[0] or "/", ()) if path != "/" else ()
        stack = [(path, parent_key)]
        while stack:
            current, key_prefix = stack.pop()
            directory = self._directory(current)
            try:
                inode = os.stat(directory).st_ino
            except OSError:
                continue
            key = (*key_prefix, inode)
            if current not in self._cgroups:
                self._add(current, key)  # watch first, then list: a child made in between is still seen
            try:
                entries = [entry.name for entry in os.scandir(directory) if entry.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            for name in entries:
                child = ("" if current == "/" else current) + "/" + name
                stack.append((child, key))

    def _add(self, path: str, key: tuple[int, ...]) -> None:
        assert self.hierarchy is not None
        identity = identify(path, self._names)
        self._want_names(identity)
        self._cgroups[path] = CgroupReader(self.hierarchy, path, identity, self._budget)
        self._inodes[path] = key
        self._order_dirty = True
        if self._inotify is not None:
            try:
                self._inotify.add(self._directory(path), IN_CREATE | IN_DELETE | IN_DELETE_SELF)
            except InotifyUnavailable:
                self._inotify.close()
                self._inotify = None

    def _remove(self, path: str) -> None:
        """Drop a cgroup and everything below it."""
        prefix = path + "/"
        for gone in [p for p in self._cgroups if p == path or p.startswith(prefix)]:
            reader = self._cgroups.pop(gone)
            reader.close()
            self._inodes.pop(gone, None)
            if self._inotify is not None:
                self._inotify.remove(self._directory(gone))
        self._order_dirty = True

    def _apply_directory_events(self) -> None:
        if self._inotify is None:
            return
        assert self.hierarchy is not None
        root = self.hierarchy.path
        for directory, mask, name in self._inotify.read():
            if mask & IN_Q_OVERFLOW or directory is None:
                self._rescan_all()
                return
            if not mask & IN_ISDIR and not mask & IN_DELETE_SELF:
                continue
            base = directory[len(root) :] or "/"
            if mask & IN_DELETE_SELF:
                self._remove(base)
                continue
            path = ("" if base == "/" else base) + "/" + name
            if mask & IN_CREATE:
                self._scan(path)
            elif mask & IN_DELETE:
                self._remove(path)

    def _rescan_all(self) -> None:
        self.stats.rescans += 1
        known = set(self._cgroups)
        self._scan("/")
        for path in known:
            if not os.path.isdir(self._directory(path)):
                self._remove(path)

    def _ordered_paths(self) -> list[str]:
        """Parents before children, siblings in creation order: the order the kernel's OOM scan walks."""
        if self._order_dirty:
            self._order = sorted(self._cgroups, key=lambda path: self._inodes.get(path, ()))
            self._order_dirty = False
        return self._order

    # ---------------------------------------------------------------------------------------------- names

    def _want_names(self, identity: Identity) -> None:
        if identity.kind in _NAMED_KINDS:
            missing_pod = identity.pod is not None and identity.pod.name is None
            missing_container = identity.container is not None and identity.container.name is None
            if missing_pod or missing_container:
                self._names_wanted = True

    def _refresh_names(self, now: float) -> None:
        if not self._names_wanted or now - self._names_loaded_at < self.config.names_refresh_s:
            return
        self._names_wanted = False
        self._names_loaded_at = now
        self._names = self._names.refresh()
        for path, reader in self._cgroups.items():
            identity = identify(path, self._names)
            if identity != reader.identity:
                reader.identity = identity
                if reader.last is not None:
                    reader.last = replace(reader.last, identity=identity)
            self._want_names(identity)

    # ---------------------------------------------------------------------------------------------- polls

    def sample(self) -> Sample:
        """Read the node now.  Anything that vanishes mid-read is left out of this Sample, never an error."""
        now = self._monotonic()
        slow = now - self._last_slow >= self.config.slow_interval_s
        if slow:
            self._last_slow = now
        stats = self.stats = PollStats(slow=slow)
        node = self._node.read()
        warnings = list(self._static_warnings)
        cgroups = []
        membership: dict[int, str] = {}
        quiet: set[str] = set()  # cgroups where nothing moved: their processes are not re-read this tick
        if self.hierarchy is not None:
            if self._inotify is None:
                if slow:
                    self._rescan_all()
                warnings.append("inotify is unavailable: new cgroups are found once a second")
            else:
                self._apply_directory_events()
            self._refresh_names(now)
            gone = []
            for path in self._ordered_paths():
                reader = self._cgroups[path]
                try:
                    cgroup = reader.read(slow, self._pid_filter)
                except CgroupGone:
                    gone.append(path)
                    continue
                cgroups.append(cgroup)
                if not reader.active:
                    quiet.add(path)
                for pid in cgroup.pids:
                    membership[pid] = path
            for path in gone:
                self._remove(path)
                if os.path.isdir(self._directory(path)):
                    # Still there: v2 without memory files (yet: the controller may be enabled later), or a read
                    # that failed mid-change; looked for again on the slow tick (inotify tells only of new
                    # directories, so nothing else would bring it back).
                    self._unready.add(path)
            if slow and self._unready:
                usage_file = "/memory.current" if self.hierarchy.version == 2 else "/memory.usage_in_bytes"
                for path in [p for p in self._unready if os.path.exists(self._directory(p) + usage_file)]:
                    self._unready.discard(path)
                    self._scan(path)
                self._unready = {p for p in self._unready if os.path.isdir(self._directory(p))}
        else:
            membership = {pid: "/" for pid in list_pids(self.config.procfs_root)}
        known_kernel_threads = len(self._kernel_threads)
        tasks = self._read_tasks(membership, quiet, slow, stats)
        if self.hierarchy is not None and self.hierarchy.version == 1:
            tasks = self._in_scan_order(tasks, membership)
        if len(self._kernel_threads) > known_kernel_threads:  # first sight of kernel threads: unlist them
            cgroups = [self._without_kernel_threads(cgroup) for cgroup in cgroups]
        if stats.denied_tasks:
            warnings.append(
                f"{stats.denied_tasks} processes could not be read from {self.config.procfs_root} "
                "(permission denied; run as root to see them)"
            )
        denied_files = sorted({name for reader in self._cgroups.values() for name in reader.denied})
        if denied_files:
            warnings.append("permission denied reading " + ", ".join(denied_files) + " of some cgroups")
        stats.cgroups = len(cgroups)
        stats.tasks = len(tasks)
        self._seq += 1
        return Sample(
            time=self._wall_clock(),
            monotonic=now,
            node=node,
            cgroups=tuple(cgroups),
            tasks=tuple(tasks),
            warnings=tuple(warnings),
            seq=self._seq,
        )

    def _in_scan_order(self, tasks: list[Task], membership: dict[int, str]) -> list[Task]:
        """v1 lists a cgroup's pids sorted, but the kernel scans them in the order they joined (on a tie the later
        one dies): within each cgroup, order by start time, the nearest knowable stand-in for joining order."""
        if membership == self._last_membership and len(tasks) == len(self._last_order):
            rank = self._last_order
        else:
            position = {path: index for index, path in enumerate(dict.fromkeys(membership.values()))}
            ordered = sorted(tasks, key=lambda task: (position.get(task.cgroup, 0), task.start_ticks, task.pid))
            rank = {task.pid: index for index, task in enumerate(ordered)}
            self._last_membership = dict(membership)
            self._last_order = rank
        return sorted(tasks, key=lambda task: rank.get(task.pid, 0))

    def _without_kernel_threads(self, cgroup: Cgroup) -> Cgroup:
        pids = self._pid_filter(cgroup.pids)
        if pids == cgroup.pids:
            return cgroup
        cgroup = replace(cgroup, pids=pids)
        self._cgroups[cgroup.path].last = cgroup
        return cgroup

    def _read_tasks(self, membership: dict[int, str], quiet: set[str], slow: bool, stats: PollStats) -> list[Task]:
        """Tasks of every listed pid.  In a quiet cgroup (same members, same usage and stats as last tick) a
        process's memory cannot have moved by more than the kernel's per-cpu charge batch, so its last Task
        is reused until the slow tick re-reads everything."""
        tasks: list[Task] = []
        known = self._tasks
        config = self.config
        for pid, cgroup_path in membership.items():
            reader = known.get(pid)
            if reader is not None:
                last = reader.last
                if not slow and cgroup_path in quiet and last is not None and last.cgroup == cgroup_path:
                    tasks.append(last)
                    continue
                stats.task_reads += 1
                try:
                    tasks.append(reader.read(cgroup_path, slow))
                    continue
                except TaskGone:
                    reader.close()
                    del known[pid]  # exited; if the pid is listed again it is a new process
            try:
                reader = TaskReader(config.procfs_root, pid, self._budget, config.cmdline_limit, config.redact_cmdline)
            except TaskGone as gone:
                if isinstance(gone.__cause__, PermissionError):
                    stats.denied_tasks += 1
                continue
            stats.new_tasks += 1
            if reader.is_kernel_thread:
                self._kernel_threads[pid] = reader
                self._pid_filter.kernel_threads.add(pid)
                continue
            try:
                tasks.append(reader.read(cgroup_path, slow))
            except TaskGone:
                reader.close()
                continue
            known[pid] = reader
        if len(known) > len(membership) or stats.new_tasks:
            for pid in [pid for pid in known if pid not in membership]:
                known.pop(pid).close()
        if slow:
            for pid in [pid for pid, reader in self._kernel_threads.items() if not reader.kernel_thread_alive()]:
                self._kernel_threads.pop(pid).close()
                self._pid_filter.kernel_threads.discard(pid)
        return tasks

    def close(self) -> None:
        for cgroup_reader in self._cgroups.values():
            cgroup_reader.close()
        for task_reader in list(self._tasks.values()) + list(self._kernel_threads.values()):
            task_reader.close()
        self._cgroups.clear()
        self._tasks.clear()
        self._kernel_threads.clear()
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
