"""cgroupfs: find the hierarchy that holds the memory controller and read one cgroup's memory figures.

v1 and v2 name the same facts differently (``memory.limit_in_bytes`` vs ``memory.max``, ``oom_control`` vs
``memory.events``); this module turns both into one :class:`~oomtop.model.Cgroup`.  Files that change every
tick are kept open and re-read with pread; those that rarely change (limits, oom.group, PSI, whose averages
the kernel only updates every 2 s) are read on the slow tick.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from oomtop.collect.files import FdBudget, KeptFile, read_once
from oomtop.model import Cgroup, Identity, Pressure

# v1 reports "no limit" as LONG_MAX rounded down to a page (9223372036854771712 with 4 KiB pages).  Anything at
# or above 2**62 is no real limit on any machine.
UNLIMITED_FLOOR = 1 << 62

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class MemoryHierarchy:
    """Where the memory controller lives: ``path`` is the directory of the root memory cgroup on this host."""

    version: int  # 1 or 2
    path: str
    layout: str  # "v1", "v2" or "hybrid"


def _mount_entries(procfs_root: str) -> list[tuple[str, str, set[str]]]:
    for name in ("1/mounts", "self/mounts"):
        try:
            text = read_once(os.path.join(procfs_root, name), 1 << 20).decode("utf-8", "replace")
        except OSError:
            continue
        entries = []
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[2] in ("cgroup", "cgroup2"):
                mountpoint = fields[1].replace("\\040", " ")
                entries.append((fields[2], mountpoint, set(fields[3].split(","))))
        if entries:
            return entries
    return []


def _under_root(mountpoint: str, cgroup_root: str) -> str | None:
    """Map a mount point seen in the mount table to the same place under the configured cgroup root."""
    standard = "/sys/fs/cgroup"
    if mountpoint == standard or mountpoint.startswith(standard + "/"):
        return cgroup_root + mountpoint[len(standard) :]
    if os.path.normpath(cgroup_root) == standard or cgroup_root == "/sys/fs/cgroup/":
        return mountpoint
    return None


def _v2_has_memory(path: str) -> bool:
    try:
        return "memory" in read_once(os.path.join(path, "cgroup.controllers")).decode().split()
    except OSError:
        return False


def discover_hierarchy(cgroup_root: str, procfs_root: str) -> MemoryHierarchy | None:
    """Find the memory hierarchy from the mount table, then by probing ``cgroup_root`` (fixture trees)."""
    v1_path = v2_path = None
    has_v1 = has_v2 = False
    for fstype, mountpoint, options in _mount_entries(procfs_root):
        mapped = _under_root(mountpoint, cgroup_root)
        if mapped is None or not os.path.isdir(mapped):
            continue
        if fstype == "cgroup":
            has_v1 = True
            if "memory" in options:
                v1_path = mapped
        else:
            has_v2 = True
            if _v2_has_memory(mapped):
                v2_path = mapped
    if v1_path is None and v2_path is None:  # no usable mount table: probe the directory itself
        if os.path.exists(os.path.join(cgroup_root, "memory", "memory.usage_in_bytes")):
            v1_path, has_v1 = os.path.join(cgroup_root, "memory"), True
            has_v2 = os.path.exists(os.path.join(cgroup_root, "unified", "cgroup.controllers"))
        elif os.path.exists(os.path.join(cgroup_root, "memory.usage_in_bytes")):
            v1_path, has_v1 = cgroup_root, True
        elif _v2_has_memory(cgroup_root):
            v2_path, has_v2 = cgroup_root, True
    if v1_path is not None:
        return MemoryHierarchy(1, v1_path, "hybrid" if has_v2 else "v1")
    if v2_path is not None:
        return MemoryHierarchy(2, v2_path, "hybrid" if has_v1 else "v2")
    return None


MAX_COUNTER = 1 << 64  # every figure in these files is a 64-bit counter or size


def parse_int(raw: bytes) -> int | None:
    """A one-number file (``memory.current``, ``memory.limit_in_bytes``, ``memory.oom.group`` ...), else None.

    The kernel writes plain ASCII digits: a sign, an underscore (Python's ``int`` reads "1_000"), other digit
    systems or more than 64 bits are garbage, and garbage is None, never a number taken for the real one.
    """
    try:
        value = int(raw)
    except ValueError:
        return None
    # int() succeeded, so raw is not empty; its first byte must be a digit (no sign, no blank)
    return value if 0x30 <= raw[0] <= 0x39 and value < MAX_COUNTER and b"_" not in raw else None


def parse_v1_limit(raw: bytes) -> int | None:
    value = parse_int(raw)
    return None if value is None or value >= UNLIMITED_FLOOR else value


def parse_v2_limit(raw: bytes) -> int | None:
    if raw.rstrip() in (b"max", b""):
        return None
    value = parse_int(raw)
    return None if value is None or value >= UNLIMITED_FLOOR else value


def parse_flat_keyed(raw: bytes) -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.events, memory.oom_control); malformed lines are skipped, and a
    key the file gives twice is left out (which of the two would be right?)."""
    result: dict[str, int] = {}
    dropped: set[str] = set()  # garbage values, and keys given twice
    for line in raw.split(b"\n"):
        key, space, value = line.partition(b" ")
        if space:  # "key " without a value is a garbage line of that key, not nothing
            name = key.decode("ascii", "replace")
            try:
                number = int(value)
            except ValueError:
                number = -1
            # as parse_int, inlined (memory.events is read every tick): plain digits below 2**64, and once
            if 0 <= number < MAX_COUNTER and 0x30 <= value[0] <= 0x39 and b"_" not in value and name not in result:
                if name not in dropped:
                    result[name] = number
            else:
                dropped.add(name)
    for name in dropped:
        result.pop(name, None)
    return result


V1_STAT_KEYS = (b"total_rss", b"total_cache", b"total_inactive_file", b"total_shmem", b"total_swap")
V2_STAT_KEYS = (b"anon", b"file", b"kernel", b"inactive_file", b"shmem")


def parse_stat_keys(raw: bytes, keys: tuple[bytes, ...]) -> dict[str, int]:
    """The values of ``keys`` in a ``key value`` file, found directly (a key absent from the file is absent, and
    so is one whose value is not a plain 64-bit number or that the file gives twice)."""
    result: dict[str, int] = {}
    for name, first, inner in _stat_needles(keys):
        if raw.startswith(first):
            start = len(first)
        else:
            found = raw.find(inner)
            if found < 0:
                continue
            start = found + len(inner)
        end = raw.find(b"\n", start)
        if end < 0:
            end = len(raw)
        elif raw.find(inner, end) >= 0:
            continue
        value = parse_int(raw[start:end])
        if value is not None:
            result[name] = value
    return result


@functools.lru_cache(maxsize=16)
def _stat_needles(keys: tuple[bytes, ...]) -> tuple[tuple[str, bytes, bytes], ...]:
    """(name, ``key `` at the file's start, ``\\nkey `` inside it) per key, built once per key set (a poll parses
    memory.stat of every changed cgroup with the same few key tuples)."""
    return tuple((key.decode(), key + b" ", b"\n" + key + b" ") for key in keys)


def parse_pids(raw: bytes) -> tuple[int, ...]:
    """cgroup.procs: one pid a line; words that are not plain pids (signs, underscores, huge) are dropped."""
    if b"-" not in raw and b"+" not in raw and b"_" not in raw:
        try:
            return tuple(map(int, raw.split()))
        except ValueError:
            pass
    return tuple(int(word) for word in raw.split() if word.isdigit() and len(word) <= 10)


_PSI_LINE = re.compile(
    r"(some|full) avg10=(\d{1,3}\.\d\d) avg60=(\d{1,3}\.\d\d) avg300=(\d{1,3}\.\d\d) total=(\d{1,20})"
)


def parse_pressure(raw: bytes) -> Pressure | None:
    """PSI: ``some avg10=0.00 avg60=0.00 avg300=0.00 total=0`` and a ``full`` line (absent on the root and on old
    kernels: zeros).  None unless the ``some`` line is exactly that shape with shares up to 100 % and a 64-bit
    total: "nan", "inf", "1e9" or "-1" are not a stall share."""
    lines: dict[str, tuple[float, float, float, int]] = {}
    for line in raw.decode("ascii", "replace").splitlines():
        m = _PSI_LINE.fullmatch(line.strip())
        if m is None:
            continue
        avg = (float(m[2]), float(m[3]), float(m[4]))
        total = int(m[5])
        if max(avg) > 100.0 or total >= MAX_COUNTER or m[1] in lines:
            return None
        lines[m[1]] = (*avg, total)
    some = lines.get("some")
    if some is None:
        return None
    full = lines.get("full", (0.0, 0.0, 0.0, 0))
    return Pressure(*some, *full)


class CgroupGone(Exception):
    """The cgroup was removed while it was being read: drop it from this sample."""


class CgroupReader:
    """Reads one cgroup again and again, re-parsing a file only when its bytes changed."""

    def __init__(self, hierarchy: MemoryHierarchy, path: str, identity: Identity, budget: FdBudget | None) -> None:
        self.hierarchy = hierarchy
        self.path = path
        self.directory = hierarchy.path + ("" if path == "/" else path)
        self.identity = identity
        self.is_root = path == "/"
        self._budget = budget
        self._files: dict[str, KeptFile | None] = {}
        self._raw: dict[str, bytes] = {}
        self._parsed: dict[str, Any] = {}  # each file's last parse: its type depends on the file (see _value)
        self._dirty = False
        self.active = True
        self.denied: set[str] = set()  # files this process may not read
        self.last: Cgroup | None = None

    def _read(self, name: str) -> bytes | None:
        """A file's bytes; None when this kernel does not have it; CgroupGone when the cgroup vanished."""
        handle: KeptFile | Literal[False] | None = self._files.get(name, False)
        if handle is None:
            return None
        try:
            if handle is False:
                # v1 serves cgroup.procs from a pid list cached per open file and kept while it is read at least
                # once a second: a kept descriptor would never see a process join.  Open it afresh each time.
                budget = None if name == "cgroup.procs" and self.hierarchy.version == 1 else self._budget
                handle = self._files[name] = KeptFile(os.path.join(self.directory, name), budget)
            return handle.read()
        except FileNotFoundError:
            if not os.path.isdir(self.directory):
                raise CgroupGone(self.path) from None
            self._files[name] = None
            return None
        except (ProcessLookupError, OSError) as error:
            if isinstance(error, PermissionError):
                self._files[name] = None
                self.denied.add(name)
                return None
            # Another error: the cgroup is dropped from this Sample even if its directory is still there (a read
            # that failed mid-kill); the collector looks for it again on its slow tick.  Its last bytes are not
            # passed off as live figures: a kill counter read back one step would be counted twice.
            raise CgroupGone(self.path) from error

    def _changed(self, name: str) -> tuple[bool, bytes | None]:
        raw = self._read(name)
        if raw is None:
            gone = self._raw.pop(name, None) is not None
            self._dirty |= gone
            return (gone, None)
        if self._raw.get(name) == raw:
            return (False, raw)
        self._raw[name] = raw
        self._dirty = True
        return (True, raw)

    def _keyed(self, name: str, now: bool = True) -> dict[str, int]:
        """A ``key value`` file, re-read when ``now`` (else the last parse), re-parsed only on new bytes."""
        if now or name not in self._parsed:
            changed, raw = self._changed(name)
            if changed or name not in self._parsed:
                self._parsed[name] = parse_flat_keyed(raw) if raw is not None else {}
        keyed: dict[str, int] = self._parsed[name]
        return keyed

    def _value(self, name: str, parse: Callable[[bytes], _T], now: bool = True) -> _T | None:
        """A one-value file, re-read when ``now`` (else the last parse), re-parsed only on new bytes."""
        if now or name not in self._parsed:
            changed, raw = self._changed(name)
            if changed or name not in self._parsed:
                self._parsed[name] = parse(raw) if raw is not None else None
        value: _T | None = self._parsed[name]  # a file is always parsed by the same function
        return value

    def read(self, slow: bool, pid_filter: PidFilter) -> Cgroup:
        """This cgroup's figures now.

        Every tick reads the member list, the usage and the OOM counters; memory.stat only when the usage
        moved; limits, failcnt, swap, oom.group and PSI on the slow tick.  ``self.active`` tells the collector
        whether anything changed, so it can skip re-reading the processes of a quiet cgroup.
        """
        self._dirty = False
        slow = slow or self.last is None
        cgroup = self._read_v1(slow, pid_filter) if self.hierarchy.version == 1 else self._read_v2(slow, pid_filter)
        self.active = self._dirty
        if cgroup is None:
            assert self.last is not None  # _read_v1/_read_v2 return None only when there is a last Cgroup
            return self.last
        self.last = cgroup
        return cgroup

    def _pids(self, pid_filter: PidFilter, now: bool = True) -> tuple[int, ...]:
        pids = self._value("cgroup.procs", parse_pids, now)
        return pid_filter(pids if isinstance(pids, tuple) else ())

    def _stat(self, name: str, keys: tuple[bytes, ...], now: bool) -> dict[str, int]:
        """memory.stat's few lines oomtop uses, picked out without splitting its ~70 lines."""
        if now or name not in self._parsed:
            changed, raw = self._changed(name)
            if changed or name not in self._parsed:
                self._parsed[name] = parse_stat_keys(raw, keys) if raw is not None else {}
        stat: dict[str, int] = self._parsed[name]
        return stat

    def _peak_due(self, slow: bool, usage: int) -> bool:
        last = self.last
        return slow or last is None or last.peak_bytes is None or usage > last.peak_bytes

    def _read_v1(self, slow: bool, pid_filter: PidFilter) -> Cgroup | None:
        usage = self._value("memory.usage_in_bytes", parse_int)
        if usage is None:
            raise CgroupGone(self.path)
        # v1 serves cgroup.procs from a pid list it caches per open file, so it is opened afresh for every read;
        # that costs an open per cgroup, so it is read only when the usage moved (a process that comes or goes
        # charges or frees memory) and on the slow tick.
        pids = self._pids(pid_filter, now=self._dirty or slow)
        stat = self._stat("memory.stat", V1_STAT_KEYS, now=self._dirty or slow)
        oom_control = self._keyed("memory.oom_control")
        limit = None if self.is_root else self._value("memory.limit_in_bytes", parse_v1_limit, slow)
        peak = self._value("memory.max_usage_in_bytes", parse_int, self._peak_due(slow, usage))
        failcnt = self._value("memory.failcnt", parse_int, slow)
        memsw = self._value("memory.memsw.limit_in_bytes", parse_v1_limit, slow)
        if not self._dirty and self.last is not None:
            return None
        swap_limit = None
        if memsw is not None and limit is not None:
            swap_limit = max(0, memsw - limit)
        return Cgroup(
            path=self.path,
            usage_bytes=usage,
            limit_bytes=limit,
            high_bytes=None,
            peak_bytes=peak,
            failcnt=failcnt,
            anon_bytes=stat.get("total_rss", 0),
            file_bytes=stat.get("total_cache", 0),
            inactive_file_bytes=stat.get("total_inactive_file", 0),
            shmem_bytes=stat.get("total_shmem", 0),
            swap_bytes=stat.get("total_swap"),
            swap_limit_bytes=swap_limit,
            oom_events=0,
            oom_kills=oom_control.get("oom_kill", 0),
            oom_kills_local=None,
            oom_group=None,
            under_oom=bool(oom_control.get("under_oom", 0)),
            pressure=None,
            pids=pids,
            identity=self.identity,
        )

    def _read_v2(self, slow: bool, pid_filter: PidFilter) -> Cgroup | None:
        pids = self._pids(pid_filter)
        current = self._value("memory.current", parse_int)  # exists on the root only on newer kernels
        if current is None and not self.is_root:
            raise CgroupGone(self.path)
        stat = self._stat("memory.stat", V2_STAT_KEYS, now=self._dirty or slow)
        if self.is_root:
            usage = (
                current
                if isinstance(current, int)
                else stat.get("anon", 0) + stat.get("file", 0) + stat.get("kernel", 0)
            )
            limit = high = swap_limit = None
            events: dict[str, int] = {}
            local: dict[str, int] = {}
            oom_group = None
            peak = None
        else:
            assert current is not None  # raised CgroupGone above
            usage = current
            events = self._keyed("memory.events")
            local = self._keyed("memory.events.local")
            limit = self._value("memory.max", parse_v2_limit, slow)
            high = self._value("memory.high", parse_v2_limit, slow)
            swap_limit = self._value("memory.swap.max", parse_v2_limit, slow)
            # No memory.swap.max: the kernel runs without swap accounting (swapaccount=0, or no CONFIG_MEMCG_SWAP).
            # Its swap counter then keeps its initial PAGE_COUNTER_MAX, nothing stops the cgroup from swapping,
            # and mem_cgroup_get_max() adds min(that, total_swap_pages): the node's whole swap.  So unlimited
            # (None), not 0.
            group = self._value("memory.oom.group", parse_int, slow)
            oom_group = None if group is None else bool(group)
            peak = self._value("memory.peak", parse_int, self._peak_due(slow, usage))
        swap = self._value("memory.swap.current", parse_int, slow)
        pressure = self._value("memory.pressure", parse_pressure, slow)
        if not self._dirty and self.last is not None:
            return None
        return Cgroup(
            path=self.path,
            usage_bytes=usage,
            limit_bytes=limit,
            high_bytes=high,
            peak_bytes=peak,
            failcnt=events.get("max") if events else None,
            anon_bytes=stat.get("anon", 0),
            file_bytes=stat.get("file", 0),
            inactive_file_bytes=stat.get("inactive_file", 0),
            shmem_bytes=stat.get("shmem", 0),
            swap_bytes=swap,
            swap_limit_bytes=swap_limit,
            oom_events=events.get("oom", 0),
            oom_kills=events.get("oom_kill", 0),
            oom_kills_local=local.get("oom_kill") if local else None,
            oom_group=oom_group,
            under_oom=False,
            pressure=pressure,
            pids=pids,
            identity=self.identity,
            oom_group_kills=events.get("oom_group_kill", 0),
            oom_group_kills_local=local.get("oom_group_kill") if local else None,
        )

    def close(self) -> None:
        for handle in self._files.values():
            if handle:
                handle.close()
        self._files.clear()


class PidFilter:
    """Drops pids the collector knows are kernel threads, so they never reach a Sample."""

    def __init__(self) -> None:
        self.kernel_threads: set[int] = set()

    def __call__(self, pids: tuple[int, ...]) -> tuple[int, ...]:
        if not self.kernel_threads:
            return pids
        kernel = self.kernel_threads
        return tuple(pid for pid in pids if pid not in kernel)


def read_local_oom_kills(hierarchy: MemoryHierarchy, path: str) -> int | None:
    """Kills counted in this cgroup itself, read now (v1 ``oom_control`` oom_kill, v2 ``events.local``).

    Called right after a wake-up, before the runtime removes a dead container's cgroup; None when it is gone.
    """
    counts = read_local_oom_counts(hierarchy, path)
    return None if counts is None else counts[0]


def read_local_oom_counts(hierarchy: MemoryHierarchy, path: str) -> tuple[int, int] | None:
    """(oom_kill, oom_group_kill) counted in this cgroup itself, from one read (group kills: v2 only, else 0)."""
    directory = hierarchy.path + ("" if path == "/" else path)
    name = "memory.oom_control" if hierarchy.version == 1 else "memory.events.local"
    try:
        keyed = parse_flat_keyed(read_once(os.path.join(directory, name)))
    except OSError:
        return None
    return keyed.get("oom_kill", 0), keyed.get("oom_group_kill", 0)
