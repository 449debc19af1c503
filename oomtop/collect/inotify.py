"""A minimal inotify binding (ctypes, Linux only) for cgroup directory changes.

Walking the whole cgroup tree every tick costs a directory listing per cgroup; inotify tells which directory
gained or lost a child instead, so discovery costs one non-blocking read per tick.  When inotify is missing
(not Linux, no libc symbol, watch limit reached) callers fall back to a periodic rescan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct

IN_MODIFY = 0x00000002
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_ISDIR = 0x40000000
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
_HEADER = struct.Struct("iIII")


class InotifyUnavailable(OSError):
    """inotify cannot be used here; the caller rescans instead."""


class Inotify:
    """Non-blocking inotify instance: ``add`` watches a path, ``read`` returns (path, mask, name) events."""

    def __init__(self) -> None:
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            self._init1 = libc.inotify_init1
            self._add_watch = libc.inotify_add_watch
            self._rm_watch = libc.inotify_rm_watch
        except (OSError, AttributeError) as error:
            raise InotifyUnavailable(str(error)) from error
        self._add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self.fd = self._init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise InotifyUnavailable(os.strerror(ctypes.get_errno()))
        self._paths: dict[int, str] = {}
        self._watches: dict[str, int] = {}

    def add(self, path: str, mask: int) -> bool:
        """Watch ``path``; False when it vanished or the watch limit is reached (the caller rescans)."""
        wd = self._add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            code = ctypes.get_errno()
            if code in (errno.ENOSPC, errno.ENOMEM):
                raise InotifyUnavailable(os.strerror(code))
            return False
        self._paths[wd] = path
        self._watches[path] = wd
        return True

    def remove(self, path: str) -> None:
        wd = self._watches.pop(path, None)
        if wd is not None:
            self._paths.pop(wd, None)
            self._rm_watch(self.fd, wd)

    def read(self) -> list[tuple[str | None, int, str]]:
        """Pending events; a path of None with IN_Q_OVERFLOW means events were lost (rescan everything)."""
        events: list[tuple[str | None, int, str]] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return events
            offset = 0
            while offset + _HEADER.size <= len(data):
                wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
                raw = data[offset + _HEADER.size : offset + _HEADER.size + length]
                offset += _HEADER.size + length
                name = os.fsdecode(raw.rstrip(b"\0"))
                path = self._paths.get(wd)
                if mask & IN_IGNORED:
                    if path is not None:
                        self._paths.pop(wd, None)
                        self._watches.pop(path, None)
                    continue
                events.append((path, mask, name))

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
