"""Reading the many tiny kernel files of a poll cheaply.

Measured on the target load: open+read+close of /proc/<pid>/status costs about 14 us, a ``pread`` on a
descriptor kept open about 4-9 us, and a thread hop (aiofiles) per file about 47 times the bare read.  So the
hot path keeps descriptors open and re-reads them with ``os.pread`` at offset 0 (procfs and kernfs regenerate
the text on every read from offset 0), all on one worker thread per poll.

A kept descriptor also pins the object behind it: reading the status file of a process that exited fails with
ESRCH even if its pid was reused, so a kept descriptor can never mix two processes.  The number of kept
descriptors is bounded by a budget under RLIMIT_NOFILE; past it, files fall back to open+read+close.
"""

from __future__ import annotations

import os
import resource

READ_SIZE = 65536  # the largest file read on the hot path (a v1 memory.stat) is ~2 KiB


class FdBudget:
    """How many descriptors the collector may keep open, raised once toward the hard RLIMIT_NOFILE."""

    def __init__(self, reserve: int = 256, wanted: int = 65536) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
        limit = wanted if soft == resource.RLIM_INFINITY else soft
        self.available = max(0, limit - reserve)

    def take(self) -> bool:
        if self.available <= 0:
            return False
        self.available -= 1
        return True

    def give_back(self) -> None:
        self.available += 1


class KeptFile:
    """A kernel file read again and again; ``read()`` returns its bytes or raises OSError when it is gone."""

    __slots__ = ("budget", "fd", "path")

    def __init__(self, path: str, budget: FdBudget | None) -> None:
        self.path = path
        self.budget = budget
        self.fd = -1
        if budget is not None and budget.take():
            try:
                self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                budget.give_back()
                raise

    def read(self) -> bytes:
        if self.fd >= 0:
            return os.pread(self.fd, READ_SIZE, 0)
        return read_once(self.path)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            if self.budget is not None:
                self.budget.give_back()


def read_once(path: str, limit: int = READ_SIZE) -> bytes:
    """open+read+close without Python's buffered file layer (about half its cost for tiny files)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, limit)
    finally:
        os.close(fd)


def read_text(path: str, limit: int = READ_SIZE) -> str | None:
    """A small file as text, or None when it cannot be read (missing, vanished, permission)."""
    try:
        return read_once(path, limit).decode("utf-8", "backslashreplace")
    except OSError:
        return None
