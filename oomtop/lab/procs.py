"""A process the lab started (a hog or a sandbox), and the pipes it is driven through.

The lab keeps the write end of the hog's stdin for the hog's whole life: the hog waits on it for ``go`` and exits
when it reads end-of-file, so a lab that exits, crashes or is SIGKILLed takes its hogs with it, even hogs that
runc started in containers (which are not the lab's children).

Process control of the processes runc started goes through psutil: its Process knows a pid by its creation time,
so a kill or a wait never reaches a process that merely inherited the pid, and its wait sleeps on a pidfd instead
of polling /proc.  This is off the hot path (a few calls per hog per run), where a clear API is worth more than the
microseconds; the collector's per-tick reads stay direct (bench/bench_deps.py).  The start time itself is still
read from /proc/<pid>/stat: it is the identity oomtop's own Samples carry (Task.start_ticks, in clock ticks), which
psutil only gives as float seconds.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass, field

import psutil

import oomtop

HOG_MODULE = "oomtop.lab.hog"


def package_root() -> str:
    """The directory that holds the ``oomtop`` package (goes on the hog's PYTHONPATH)."""
    return os.path.dirname(os.path.dirname(os.path.abspath(oomtop.__file__)))


def hog_argv(name: str, mib: float, step_mib: float, delay_ms: float, pause: bool = False) -> list[str]:
    argv = [sys.executable, "-m", HOG_MODULE, "--name", name]
    if pause:
        return [*argv, "--pause"]
    return [*argv, "--mib", f"{mib:g}", "--step-mib", f"{step_mib:g}", "--delay-ms", f"{delay_ms:g}"]


def hog_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "PYTHONPATH": package_root(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "LANG": "C.UTF-8",
    }


def start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat: with the pid, a process's identity (pids are reused), in the clock ticks the
    collector's Task.start_ticks holds, so a LabProcess's key matches its Task in a Sample."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def psutil_process(pid: int, ticks: int | None) -> psutil.Process | None:
    """psutil's handle on the process with this pid and start time; None when it is gone or the pid now belongs to
    another process.  The handle is made first and the start time checked after, so a pid reused in between is
    caught; from then on psutil tells a reused pid by the creation time it took when the handle was made."""
    if pid <= 0 or ticks is None:
        return None
    try:
        handle = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None
    return handle if start_ticks(pid) == ticks else None


_DEAD_STATES = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


class Pipes:
    """The hog's stdin (``go``/``grow`` lines) and stdout (``R``/``E`` answers), from the lab's side."""

    def __init__(self) -> None:
        self.child_stdin, self.go = os.pipe()
        self.answers, self.child_stdout = os.pipe()

    def child_started(self) -> None:
        """The child holds its ends now: close ours, so its death shows as end-of-file."""
        for fd in (self.child_stdin, self.child_stdout):
            if fd >= 0:
                os.close(fd)
        self.child_stdin = self.child_stdout = -1

    def close(self) -> None:
        self.child_started()
        for fd in (self.go, self.answers):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.go = self.answers = -1


@dataclass(eq=False)
class LabProcess:
    """One hog or sandbox: where it must live, what adj it must carry, and how to talk to it."""

    name: str
    role: str  # "sandbox" or "process"
    cgroup: str
    pipes: Pipes
    pid: int = 0
    ticks: int | None = None
    adj: int = 0  # what the kernel holds for it (read back after setting)
    wanted_adj: int = 0  # kubelet's (or the runtime's) value
    mib: float = 0.0  # what it holds once ready (and grown)
    popen: subprocess.Popen[bytes] | None = None  # plain runtime: the lab's own child
    container: object = None  # the lab.runtime.Container it belongs to (object: runtime imports this module)
    released_at: float = 0.0
    ready_at: float = 0.0
    stopped_by_lab: bool = False
    _buffer: bytes = field(default=b"", repr=False)
    _handle: psutil.Process | None = field(default=None, repr=False)
    _gone: bool = field(default=False, repr=False)

    @property
    def key(self) -> tuple[int, int | None]:
        return (self.pid, self.ticks)

    def send(self, line: str) -> None:
        with contextlib.suppress(OSError):  # it died: the caller sees that from alive() / the kernel log
            os.write(self.pipes.go, (line + "\n").encode())

    def release(self) -> None:
        self.released_at = time.monotonic()
        self.send("go")

    def read_answer(self, timeout_s: float) -> str | None:
        """The next answer line; "" when the process closed its stdout (died); None on timeout."""
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.pipes.answers < 0:
                return None if self.pipes.answers >= 0 else ""
            poller = select.poll()
            poller.register(self.pipes.answers, select.POLLIN | select.POLLHUP | select.POLLERR)
            if not poller.poll(max(1, int(left * 1000))):
                continue
            try:
                chunk = os.read(self.pipes.answers, 256)
            except OSError:
                chunk = b""
            if not chunk:
                return ""
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("ascii", "replace").strip()

    def process(self) -> psutil.Process | None:
        """This exact process as a psutil handle (made once); None once it is gone (dead stays dead)."""
        if self._gone:
            return None
        if self._handle is None or self._handle.pid != self.pid:
            self._handle = psutil_process(self.pid, self.ticks)
        if self._handle is None or not self._handle.is_running():  # is_running: False for a reused pid too
            self._handle = None
            self._gone = self.pid > 0 and self.ticks is not None
            return None
        return self._handle

    def alive(self) -> bool:
        """Running (a zombie or a reused pid is dead)."""
        if self.popen is not None:
            return self.popen.poll() is None
        handle = self.process()
        if handle is None:
            return False
        try:
            status = handle.status()
        except psutil.NoSuchProcess:
            return False
        if status == psutil.STATUS_ZOMBIE:
            # Under runc the lab is the containers' subreaper (as containerd-shim is): reap it.  wait(0) reaps a
            # child of ours and raises TimeoutExpired for a zombie whose parent is another (a pod's pause).
            with contextlib.suppress(psutil.TimeoutExpired, psutil.NoSuchProcess):
                handle.wait(timeout=0)
        return status not in _DEAD_STATES

    def kill(self) -> None:
        """SIGKILL (only this exact process: the pid and its start time must still match)."""
        self.stopped_by_lab = True
        if self.popen is not None:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        elif self.alive():
            handle = self.process()
            if handle is not None:
                with contextlib.suppress(psutil.NoSuchProcess):  # psutil refuses a pid that another process took
                    handle.kill()

    def wait_dead(self, timeout_s: float) -> bool:
        """Until the process is dead (a zombie counts as dead), at most ``timeout_s``; True when it is.

        psutil's wait sleeps on a pidfd and wakes when the process exits; the loop around it is for a zombie that
        another process must reap (psutil waits for it to vanish, the lab only for it to die)."""
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout_s
        while self.alive():
            left = deadline - time.monotonic()
            handle = self.process()
            if left <= 0:
                return False
            if handle is not None:
                psutil.wait_procs([handle], timeout=min(left, 0.1))
        return True

    def close(self) -> None:
        self.pipes.close()
