"""Build and drive the hog program (hog.c).

A hog is started blocked on a pipe.  The parent moves it into its cgroup (cgroup.procs), sets its
oom_score_adj (checked by reading it back: without CAP_SYS_RESOURCE only values >= 0 take), and only then lets
it allocate, so every page it touches is charged to the test cgroup.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import time

from .cgroups import TestHierarchy, read_file, write_file

HOG_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hog.c")


class HogError(AssertionError):
    pass


def build_hog(directory: str) -> str:
    """Compile hog.c into ``directory``; static when the toolchain allows it (smaller, steadier rss_file)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise HogError("gcc not found")
    out = os.path.join(directory, "oomtop-hog")
    attempts = [[gcc, "-O2", "-static", "-o", out, HOG_SOURCE], [gcc, "-O2", "-o", out, HOG_SOURCE]]
    errors = []
    for cmd in attempts:
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode == 0:
            return out
        errors.append(f"{' '.join(cmd)}: {result.stderr.strip()}")
    raise HogError("cannot build the hog: " + " | ".join(errors))


def memory_cgroup_of(pid: int) -> str | None:
    """The v1 memory cgroup path of a process, from /proc/<pid>/cgroup."""
    for line in read_file(f"/proc/{pid}/cgroup").splitlines():
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    return None


def set_oom_score_adj(pid: int, adj: int) -> None:
    path = f"/proc/{pid}/oom_score_adj"
    try:
        write_file(path, str(adj))
    except PermissionError as error:
        raise HogError(f"cannot set oom_score_adj={adj} on {pid} ({error}); values below 0 need "
                       "CAP_SYS_RESOURCE") from error
    got = int(read_file(path))
    if got != adj:
        raise HogError(f"oom_score_adj of {pid}: wrote {adj}, reads back {got}")


class HogProcess:
    """One hog or trigger process, in a cgroup of a TestHierarchy."""

    def __init__(self, hierarchy: TestHierarchy, binary: str, mode: str, mib: int, cgroup: str, adj: int,
                 step_kib: int = 1024) -> None:
        self.hierarchy = hierarchy
        self.mode = mode
        self.mib = mib
        self.cgroup = cgroup
        self.adj = adj
        self.state = "new"
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        argv = [binary, mode, str(mib), str(go_r), str(ready_w), str(step_kib)]
        try:
            self.popen = subprocess.Popen(argv, pass_fds=(go_r, ready_w), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
            raise
        hierarchy.processes.append(self)  # from here on, cleanup kills it
        os.close(go_r)
        os.close(ready_w)
        self._go_w = go_w
        self._ready_r = ready_r
        self.pid = self.popen.pid

    # -- handshake ---------------------------------------------------------------------------------------
    def join_and_go(self) -> None:
        """Move into the cgroup, set the adj, verify both, then release the allocation."""
        write_file(self.hierarchy.file(self.cgroup, "cgroup.procs"), str(self.pid))
        where = memory_cgroup_of(self.pid)
        if where != self.cgroup:
            raise HogError(f"hog {self.pid} is in memory cgroup {where}, expected {self.cgroup}")
        set_oom_score_adj(self.pid, self.adj)
        os.write(self._go_w, b"g")
        os.close(self._go_w)
        self._go_w = -1

    def wait_for(self, expected: bytes, timeout: float) -> bytes:
        """Wait for one status byte; returns it, or b"" when the process died first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HogError(f"{self.mode} {self.pid} sent nothing within {timeout}s (waiting for {expected!r})")
            readable, _, _ = select.select([self._ready_r], [], [], left)
            if not readable:
                continue
            data = os.read(self._ready_r, 1)
            if data == b"E":
                raise HogError(f"{self.mode} {self.pid} could not map its memory")
            return data

    def wait_ready(self, timeout: float = 10.0) -> None:
        got = self.wait_for(b"R", timeout)
        if got != b"R":
            self.popen.wait(timeout=5)
            raise HogError(f"hog {self.pid} ({self.mib} MiB, adj {self.adj}) in {self.cgroup} died before "
                           f"ready: status {self.popen.returncode}")
        self.state = "ready"

    # -- state -------------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.popen.poll() is None

    def killed_by_sigkill(self) -> bool:
        return self.popen.poll() == -signal.SIGKILL

    def kill(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for fd in (self._go_w, self._ready_r):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._go_w = self._ready_r = -1

    def __repr__(self) -> str:
        return f"<{self.mode} pid={self.pid} {self.mib}MiB adj={self.adj} in {self.cgroup}>"


def start_hog(hierarchy: TestHierarchy, binary: str, cgroup: str, mib: int, adj: int,
              timeout: float = 10.0) -> HogProcess:
    """Start a hog, join it to ``cgroup`` with ``adj``, let it touch ``mib`` MiB and wait until it has."""
    hog = HogProcess(hierarchy, binary, "hog", mib, cgroup, adj)
    hog.join_and_go()
    hog.wait_ready(timeout)
    return hog


def start_trigger(hierarchy: TestHierarchy, binary: str, cgroup: str, cap_mib: int, adj: int = 0,
                  step_kib: int = 1024) -> HogProcess:
    """Start a trigger that grows in ``step_kib`` steps up to ``cap_mib`` MiB (or until killed)."""
    trigger = HogProcess(hierarchy, binary, "trigger", cap_mib, cgroup, adj, step_kib)
    trigger.join_and_go()
    got = trigger.wait_for(b"S", 10.0)
    if got != b"S":
        trigger.popen.wait(timeout=5)
        raise HogError(f"trigger {trigger.pid} died before starting: status {trigger.popen.returncode}")
    trigger.state = "started"
    return trigger
