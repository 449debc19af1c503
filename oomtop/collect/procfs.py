"""procfs: one process's OOM inputs (rss split, swap, page tables, oom_score, oom_score_adj).

Per tick only ``/proc/<pid>/statm`` is re-read (one pread on a kept descriptor): when its bytes are unchanged,
rss and the page tables that back it are too, so status and oom_score are re-read only on a change.  The name,
start time and command line are read once (again after an exec, seen as a change of name).
"""

from __future__ import annotations

import os
import re

from oomtop.collect.files import FdBudget, KeptFile, read_once
from oomtop.model import Task

PF_KTHREAD = 0x00200000
_STATUS_FIELDS = re.compile(rb"^(Name|Uid|RssAnon|RssFile|RssShmem|VmSwap|VmPTE):\s*(.*)$", re.MULTILINE)


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


def parse_status(raw: bytes) -> dict[bytes, bytes]:
    return {key: value.strip() for key, value in _STATUS_FIELDS.findall(raw)}


def kib(fields: dict[bytes, bytes], key: bytes) -> int:
    value = fields.get(key)
    if not value:
        return 0
    try:
        return int(value.split()[0]) * 1024
    except ValueError:
        return 0


def unescape_status_name(raw: bytes) -> str:
    """status escapes ``\\n`` and ``\\\\`` in the name; undo that so the comm matches the stat file's."""
    return decode_untrusted(raw.replace(b"\\n", b"\n").replace(b"\\\\", b"\\"))


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
        self._last_statm = b""
        self._fields: dict[bytes, bytes] = {}
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
            self.cmdline = format_cmdline(read_once(self.directory + "/cmdline", self._cmdline_limit), self._cmdline_limit)
        except OSError:
            self.cmdline = ""

    def _read_adj(self) -> int:
        raw = read_once(self.directory + "/oom_score_adj")
        try:
            return int(raw)
        except ValueError:
            return 0

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
        """The process now.  Re-reads status and oom_score only when statm (or, on a slow tick, adj) changed."""
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
            if changed or self.last is None:
                self._last_statm = statm
                fields = parse_status(self._status.read())
                name = fields.get(b"Name")
                if name is not None:
                    comm = unescape_status_name(name)
                    if comm != self.comm:  # an exec: the command line changed too
                        self.comm = comm
                        self._read_cmdline()
                self._fields = fields
                self.oom_score = self._read_oom_score()
            elif self.last.cgroup == cgroup:
                return self.last
        except OSError as error:
            raise TaskGone(self.pid) from error
        fields = self._fields
        uid_field = fields.get(b"Uid", b"")
        try:
            uid = int(uid_field.split()[0])
        except (ValueError, IndexError):
            uid = -1
        task = Task(
            pid=self.pid,
            start_ticks=self.start_ticks,
            comm=self.comm,
            cmdline=self.cmdline,
            uid=uid,
            cgroup=cgroup,
            rss_anon_bytes=kib(fields, b"RssAnon"),
            rss_file_bytes=kib(fields, b"RssFile"),
            rss_shmem_bytes=kib(fields, b"RssShmem"),
            swap_bytes=kib(fields, b"VmSwap"),
            pgtables_bytes=kib(fields, b"VmPTE"),
            oom_score=self.oom_score,
            oom_score_adj=self.oom_score_adj,
            has_memory=b"RssAnon" in fields,
        )
        self.last = task
        return task

    def _read_oom_score(self) -> int | None:
        try:
            return int(read_once(self.directory + "/oom_score"))
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        for handle in (self._statm, self._status, self._stat):
            if handle is not None:
                handle.close()
        self._statm = self._status = self._stat = None


def list_pids(procfs_root: str) -> list[int]:
    """Every process id in procfs (used where no cgroup lists them, e.g. without a memory controller)."""
    try:
        return [int(name) for name in os.listdir(procfs_root) if name.isdigit()]
    except OSError:
        return []
