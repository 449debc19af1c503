"""Fast OOM wake-ups: be told the moment a cgroup OOMs instead of waiting for the next poll.

cgroup v1: an eventfd registered through ``cgroup.event_control`` against ``memory.oom_control``.  Checked on
this kernel (6.18, v1): an OOM in domain D signals the eventfds of D *and of every cgroup below D* (not of its
ancestors; the root never fires), and ``oom_control``'s ``oom_kill`` counts only in the victim's own cgroup.  So
registering on every cgroup catches every memcg OOM, pod-level ones included.
cgroup v2: ``memory.events`` raises a file-modified event on every change; inotify on it wakes us.

All registrations share one epoll descriptor, so a caller polls a single fd (``fileno()``) and then asks which
cgroups woke (``drain()``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import select

from oomtop.collect.inotify import IN_CREATE, IN_ISDIR, IN_MODIFY, Inotify, InotifyUnavailable


class WakeupsUnavailable(OSError):
    """No fast wake-ups here (no permission, no eventfd/inotify); the poll's counters still catch kills."""


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


class OomWakeups:
    """Registrations on a set of cgroups, kept in step with the Samples by :meth:`sync`."""

    def __init__(self, hierarchy_path: str, version: int) -> None:
        self.hierarchy_path = hierarchy_path
        self.version = version
        self._epoll = select.epoll()
        self._paths: set[str] = set()
        self._v1: dict[str, tuple[int, int]] = {}  # path -> (eventfd, oom_control fd)
        self._v1_by_fd: dict[int, str] = {}
        self._inotify: Inotify | None = None
        self.error: str | None = None
        if version == 2:
            try:
                self._inotify = Inotify()
            except InotifyUnavailable as error:
                raise WakeupsUnavailable(str(error)) from error
            self._epoll.register(self._inotify.fd, select.EPOLLIN)
        # New cgroups are registered the moment they are made, not at the next poll: a container that starts and
        # hits its limit within one interval must still wake us.
        self._directories: Inotify | None = None
        try:
            self._directories = Inotify()
            self._epoll.register(self._directories.fd, select.EPOLLIN)
        except InotifyUnavailable:
            self._directories = None

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _directory(self, path: str) -> str:
        return self.hierarchy_path + ("" if path == "/" else path)

    def sync(self, paths: set[str]) -> None:
        """Watch exactly these cgroups (new ones added, removed ones dropped)."""
        for path in paths - self._paths:
            self._watch(path)
        for path in self._paths - paths:
            if os.path.isdir(self._directory(path)):
                continue  # made after the Sample was read, registered from its directory event: keep it
            self._remove(path)
            self._paths.discard(path)
            if self._directories is not None:
                self._directories.remove(self._directory(path))

    def _watch(self, path: str) -> None:
        if path in self._paths:
            return
        self._paths.add(path)
        self._add(path)
        if self._directories is not None:
            with contextlib.suppress(InotifyUnavailable):
                self._directories.add(self._directory(path), IN_CREATE)

    def _new_directories(self) -> None:
        assert self._directories is not None
        root = self.hierarchy_path
        for directory, mask, name in self._directories.read():
            if directory is None or not mask & IN_ISDIR:
                continue
            base = directory[len(root) :] or "/"
            stack = [("" if base == "/" else base) + "/" + name]
            while stack:  # the new cgroup, and any made inside it before we looked
                path = stack.pop()
                if path in self._paths:  # removed and made again at the same path: the old watch is dead
                    self._remove(path)
                    self._paths.discard(path)
                self._watch(path)
                try:
                    stack += [path + "/" + entry.name for entry in os.scandir(self._directory(path)) if entry.is_dir()]
                except OSError:
                    continue

    def _add(self, path: str) -> bool:
        directory = self._directory(path)
        if self.version == 2:
            assert self._inotify is not None
            if path == "/":
                return False  # the root has no memory.events
            try:
                return self._inotify.add(os.path.join(directory, "memory.events"), IN_MODIFY)
            except InotifyUnavailable as error:
                self.error = f"inotify: {error}"
                return False
        if path == "/":
            return False  # v1 never signals the root's eventfd
        event_fd = control_fd = -1
        try:
            event_fd = _eventfd()
            control_fd = os.open(os.path.join(directory, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            writer = os.open(os.path.join(directory, "cgroup.event_control"), os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(writer, f"{event_fd} {control_fd}".encode())
            finally:
                os.close(writer)
            self._epoll.register(event_fd, select.EPOLLIN)
        except OSError as error:
            for fd in (event_fd, control_fd):
                if fd >= 0:
                    os.close(fd)
            if isinstance(error, PermissionError):
                self.error = "cgroup.event_control is not writable (not root): OOM kills are seen at the next poll"
            elif error.errno == errno.EROFS:
                self.error = (
                    "the cgroup filesystem is mounted read-only, so cgroup.event_control cannot be written: "
                    "OOM kills are seen at the next poll (mount it read-write for wake-ups within milliseconds)"
                )
            return False
        self._v1[path] = (event_fd, control_fd)
        self._v1_by_fd[event_fd] = path
        return True

    def _remove(self, path: str) -> None:
        if self.version == 2:
            if self._inotify is not None:
                self._inotify.remove(os.path.join(self._directory(path), "memory.events"))
            return
        fds = self._v1.pop(path, None)
        if fds is None:
            return
        event_fd, control_fd = fds
        self._v1_by_fd.pop(event_fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._epoll.unregister(event_fd)
        os.close(event_fd)
        os.close(control_fd)

    def drain(self) -> set[str]:
        """The cgroups that signalled since the last call (non-blocking)."""
        woke: set[str] = set()
        for fd, _mask in self._epoll.poll(0):
            if self._directories is not None and fd == self._directories.fd:
                self._new_directories()
                continue
            if self._inotify is not None and fd == self._inotify.fd:
                root = self.hierarchy_path
                for file_path, _event_mask, _name in self._inotify.read():
                    if file_path is not None:
                        directory = os.path.dirname(file_path)
                        woke.add(directory[len(root) :] or "/")
                continue
            path = self._v1_by_fd.get(fd)
            if path is None:
                continue
            try:
                os.read(fd, 8)
            except BlockingIOError:
                continue
            except OSError:
                pass
            woke.add(path)
        return woke

    def close(self) -> None:
        for path in list(self._v1):
            self._remove(path)
        for watcher in (self._inotify, self._directories):
            if watcher is not None:
                watcher.close()
        self._epoll.close()
