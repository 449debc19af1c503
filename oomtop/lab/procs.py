"""A process the lab started (a hog or a sandbox), and the pipes it is driven through.

The lab keeps the write end of the hog's stdin for the hog's whole life: the hog waits on it for ``go`` and exits
when it reads end-of-file, so a lab that exits, crashes or is SIGKILLed takes its hogs with it, even hogs that
runc started in containers (which are not the lab's children).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

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
    """Field 22 of /proc/<pid>/stat: with the pid, a process's identity (pids are reused)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


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

    def alive(self) -> bool:
        """Running (a zombie or a reused pid is dead)."""
        if self.popen is not None:
            return self.popen.poll() is None
        if not self.pid:
            return False
        if start_ticks(self.pid) != self.ticks:
            return False
        state = _state(self.pid)
        if state == "Z":  # under runc the lab is the containers' subreaper (as containerd-shim is): reap it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, os.WNOHANG)
        return state is not None and state not in ("Z", "X")

    def kill(self) -> None:
        """SIGKILL (only this exact process: the pid and its start time must still match)."""
        self.stopped_by_lab = True
        if self.popen is not None:
            if self.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.popen.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=10)
        elif self.pid and self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait_dead(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self) -> None:
        self.pipes.close()
