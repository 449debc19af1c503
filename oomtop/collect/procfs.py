"""procfs: one process's OOM inputs (rss split, swap, page tables, oom_score, oom_score_adj).

Per tick only ``/proc/<pid>/statm`` is re-read (one pread on a kept descriptor): when its bytes are unchanged,
rss and the page tables that back it are too, so status and oom_score are re-read only on a change.  The name,
start time and command line are read once (again after an exec, seen as a change of name).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from oomtop.collect.files import FdBudget, KeptFile, read_once
from oomtop.model import Task

PF_KTHREAD = 0x00200000
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_MEMORY_KEYS = {b"RssAnon:": "anon", b"RssFile:": "file", b"RssShmem:": "shmem", b"VmPTE:": "pte", b"VmSwap:": "swap"}


class TaskGone(Exception):
    """The process exited (or its pid now names another process) while being read."""


def decode_untrusted(raw: bytes) -> str:
    """System text as a str that keeps invalid UTF-8 visible (``\\xff``) instead of failing or hiding it."""
    return raw.decode("utf-8", "backslashreplace")


def parse_stat(raw: bytes) -> tuple[str, int, int]:
    """(comm, flags, start time in clock ticks) from /proc/<pid>/stat; comm may hold spaces and parens."""
    open_paren = raw.find(b"(")
    close_paren = raw.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ValueError("malformed stat")
    comm = decode_untrusted(raw[open_paren + 1 : close_paren])
    fields = raw[close_paren + 2 :].split()
    # fields[0] is state (field 3); flags is field 9, starttime field 22
    return comm, int(fields[6]), int(fields[19])


@dataclass(frozen=True, slots=True)
class StatusMemory:
    """The memory lines of /proc/<pid>/status, in bytes; ``has_memory`` is False without them (no mm)."""

    anon: int = 0
    file: int = 0
    shmem: int = 0
    pte: int = 0
    swap: int = 0
    has_memory: bool = False


def parse_status_memory(raw: bytes) -> StatusMemory:
    """The Rss*/VmPTE/VmSwap lines.  They sit together from RssAnon to VmSwap, so one slice and one split of
    that block replace a scan of the whole ~1.4 KiB file (about a seventh of a regex's cost)."""
    start = raw.find(b"\nRssAnon:")
    if start < 0:
        return StatusMemory()
    end = raw.find(b"\nVmSwap:", start)
    end = raw.find(b"\n", end + 1) if end >= 0 else -1
    words = raw[start : end if end >= 0 else len(raw)].split()
    values: dict[str, int] = {}
    for index in range(0, len(words) - 1):
        key = _MEMORY_KEYS.get(words[index])
        if key is not None:  # plain kB digits only, else 0 (int() would take "-5" or "1_0")
            word = words[index + 1]
            values[key] = int(word) * 1024 if word.isdigit() and len(word) <= 16 else 0
    return StatusMemory(has_memory=True, **values)


def _from_statm(statm: bytes, before: StatusMemory) -> StatusMemory:
    """New rss figures from statm (pages: size resident shared ...), the rest carried from the last status."""
    fields = statm.split()
    if len(fields) < 3 or not (fields[1].isdigit() and fields[2].isdigit()) or len(fields[1]) > 16:
        return before  # not statm's plain page counts: keep what status said
    resident, shared = int(fields[1]) * PAGE_SIZE, int(fields[2]) * PAGE_SIZE
    if shared > resident:
        return before
    shmem = min(before.shmem, shared)
    return StatusMemory(
        anon=max(0, resident - shared),
        file=shared - shmem,
        shmem=shmem,
        pte=before.pte,
        swap=before.swap,
        has_memory=True,
    )


def parse_status_line(raw: bytes, key: bytes) -> bytes | None:
    """The value of one ``Key:`` line of a status file, or None."""
    start = raw.find(b"\n" + key) if not raw.startswith(key) else -1
    start = 0 if raw.startswith(key) else (start + 1 if start >= 0 else -1)
    if start < 0:
        return None
    end = raw.find(b"\n", start)
    return raw[start + len(key) : end if end >= 0 else len(raw)].strip()


def unescape_status_name(raw: bytes) -> str:
    """status escapes ``\\n`` and ``\\\\`` in the name; undo that so the comm matches the stat file's."""
    return decode_untrusted(raw.replace(b"\\n", b"\n").replace(b"\\\\", b"\\"))


def _first_int(raw: bytes | None) -> int | None:
    """The first word of a status value as a uid: plain digits below 2**32, else None."""
    words = raw.split() if raw else []
    if not words or not words[0].isdigit() or len(words[0]) > 10:
        return None
    value = int(words[0])
    return value if value < 1 << 32 else None


OOM_SCORE_ADJ_MIN, OOM_SCORE_ADJ_MAX = -1000, 1000
OOM_SCORE_MAX = 2000  # since 5.9 oom_score is 0..2000 (before, 0..1000)


def _small_int(raw: bytes) -> int | None:
    text = raw.strip()
    digits = text[1:] if text[:1] == b"-" else text
    return int(text) if digits.isdigit() and len(digits) <= 5 else None


def parse_oom_score_adj(raw: bytes) -> int:
    """/proc/<pid>/oom_score_adj: -1000..1000; anything else reads as 0, the kernel's default."""
    value = _small_int(raw)
    return value if value is not None and OOM_SCORE_ADJ_MIN <= value <= OOM_SCORE_ADJ_MAX else 0


def parse_oom_score(raw: bytes) -> int | None:
    """/proc/<pid>/oom_score: 0..2000, else None (unknown, not a made-up score)."""
    value = _small_int(raw)
    return value if value is not None and 0 <= value <= OOM_SCORE_MAX else None


def format_cmdline(raw: bytes, limit: int) -> str:
    return decode_untrusted(raw[:limit].rstrip(b"\0").replace(b"\0", b" "))


class TaskReader:
    """Reads one process for as long as it lives; raises TaskGone once it exits."""

    def __init__(self, procfs_root: str, pid: int, budget: FdBudget | None, cmdline_limit: int, redact: bool) -> None:
        self.pid = pid
        self.directory = f"{procfs_root}/{pid}"
        self._budget = budget
        self._cmdline_limit = cmdline_limit
        self._redact = redact
        try:
            stat_raw = read_once(self.directory + "/stat")
            self.comm, flags, self.start_ticks = parse_stat(stat_raw)
        except (OSError, ValueError, IndexError) as error:
            raise TaskGone(pid) from error
        self.is_kernel_thread = bool(flags & PF_KTHREAD)
        self._statm: KeptFile | None = None
        self._status: KeptFile | None = None
        self._stat: KeptFile | None = None
        self._adj_file: KeptFile | None = None
        self._score_file: KeptFile | None = None
        self._last_statm = b""
        self._memory = StatusMemory()
        self._status_stale = False  # rss came from statm since status was last read
        self.uid: int | None = None
        self.cmdline = ""
        self.oom_score: int | None = None
        self.oom_score_adj = 0
        self.last: Task | None = None
        try:
            if self.is_kernel_thread:
                # Kept open only to learn when the thread exits, so its pid can be reused by a real process.
                self._stat = KeptFile(self.directory + "/stat", budget)
                return
            self._statm = KeptFile(self.directory + "/statm", budget)
            self._status = KeptFile(self.directory + "/status", budget)
            self._read_cmdline()
            self.oom_score_adj = self._read_adj()
        except OSError as error:
            self.close()
            raise TaskGone(pid) from error

    def _read_cmdline(self) -> None:
        if self._redact:
            self.cmdline = ""
            return
        try:
            self.cmdline = format_cmdline(
                read_once(self.directory + "/cmdline", self._cmdline_limit), self._cmdline_limit
            )
        except OSError:
            self.cmdline = ""

    def _read_adj(self) -> int:
        if self._adj_file is None:
            self._adj_file = KeptFile(self.directory + "/oom_score_adj", self._budget)
        return parse_oom_score_adj(self._adj_file.read())

    def _start_ticks_now(self) -> int:
        try:
            return parse_stat(read_once(self.directory + "/stat"))[2]
        except (ValueError, IndexError) as error:
            raise TaskGone(self.pid) from error

    def kernel_thread_alive(self) -> bool:
        try:
            return self._stat is not None and bool(self._stat.read())
        except OSError:
            return False

    def read(self, cgroup: str, slow: bool) -> Task:
        """The process now.

        statm (one pread) is the change detector and, while the mappings stay the same size, the source of rss:
        status is re-read when the VM size moved (mmap, munmap, exec), at first sight, and on the slow tick for
        a task whose rss came from statm meanwhile (its page tables and swap).  ``oom_score`` and
        ``oom_score_adj`` are the kernel's files, re-read on the slow tick.
        """
        assert self._statm is not None and self._status is not None
        try:
            statm = self._statm.read()
            if not statm:
                raise TaskGone(self.pid)
            changed = statm != self._last_statm
            if slow and self._statm.fd < 0 and self._start_ticks_now() != self.start_ticks:
                raise TaskGone(self.pid)  # without a kept descriptor, a reused pid shows as a new start time
            if slow:
                adj = self._read_adj()
                if adj != self.oom_score_adj:
                    self.oom_score_adj = adj
                    changed = True
                self.oom_score = self._read_oom_score()
            if changed:
                vm_size_moved = statm.split(b" ", 1)[0] != self._last_statm.split(b" ", 1)[0]
                self._last_statm = statm
            else:
                vm_size_moved = False
            if (
                self.last is None
                or vm_size_moved
                or (slow and self._status_stale)
                or (changed and not self._memory.has_memory)
            ):
                self._read_status()
                if self.oom_score is None or self.last is None:
                    self.oom_score = self._read_oom_score()
            elif changed:
                # Pages touched or freed inside the existing mappings: statm has the new rss exactly (resident =
                # anon + file + shmem, shared = file + shmem); page tables and swap, which only status has, are
                # refreshed on the slow tick (they move by a page per 2 MiB touched).
                self._memory = _from_statm(statm, self._memory)
                self._status_stale = True
            elif self.last.cgroup == cgroup and self.last.oom_score == self.oom_score:
                return self.last
        except OSError as error:
            raise TaskGone(self.pid) from error
        memory = self._memory
        task = Task(
            pid=self.pid,
            start_ticks=self.start_ticks,
            comm=self.comm,
            cmdline=self.cmdline,
            uid=-1 if self.uid is None else self.uid,
            cgroup=cgroup,
            rss_anon_bytes=memory.anon,
            rss_file_bytes=memory.file,
            rss_shmem_bytes=memory.shmem,
            swap_bytes=memory.swap,
            pgtables_bytes=memory.pte,
            oom_score=self.oom_score,
            oom_score_adj=self.oom_score_adj,
            has_memory=memory.has_memory,
        )
        self.last = task
        return task

    def _read_status(self) -> None:
        assert self._status is not None
        status = self._status.read()
        name = parse_status_line(status, b"Name:")
        if name is not None:
            comm = unescape_status_name(name)
            if comm != self.comm:  # an exec: the command line changed too
                self.comm = comm
                self._read_cmdline()
        if self.uid is None:
            self.uid = _first_int(parse_status_line(status, b"Uid:"))
        self._memory = parse_status_memory(status)
        self._status_stale = False

    def _read_oom_score(self) -> int | None:
        try:
            if self._score_file is None:
                self._score_file = KeptFile(self.directory + "/oom_score", self._budget)
            return parse_oom_score(self._score_file.read())
        except OSError:
            return None

    def close(self) -> None:
        for handle in (self._statm, self._status, self._stat, self._adj_file, self._score_file):
            if handle is not None:
                handle.close()
        self._statm = self._status = self._stat = self._adj_file = self._score_file = None


def parse_memory_cgroup(text: str, version: int) -> str | None:
    """The memory cgroup in a /proc/<pid>/cgroup text: v1 the line whose controllers hold ``memory``, v2 ``0::``."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy_id, controllers, path = parts
        if version == 1 and "memory" in controllers.split(","):
            return path
        if version == 2 and hierarchy_id == "0" and controllers == "":
            return path
    return None


def list_pids(procfs_root: str) -> list[int]:
    """Every process id in procfs (used where no cgroup lists them, e.g. without a memory controller)."""
    try:
        return [int(name) for name in os.listdir(procfs_root) if name.isascii() and name.isdigit()]
    except OSError:
        return []
