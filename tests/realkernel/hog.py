"""Build and drive the hog program (hog.c), for both real-kernel tiers.

A hog is started blocked on a pipe.  The parent moves it into its cgroup (cgroup.procs), sets its
oom_score_adj (checked by reading it back: without CAP_SYS_RESOURCE only values >= 0 take), and only then lets
it allocate, so every page it touches is charged to the test cgroup.

Shared by the cgroup v1 tests on the host (a :class:`tests.realkernel.cgroups.TestHierarchy`), the cgroup v2
tier's host harness (:func:`build_hog`) and its guest (``KubeTree`` of tests/v2/guest/v2lib.py), so it only
uses the standard library.  A *tree* is anything with a ``processes`` list (every process started in it, which
its clean-up kills) and ``file(cgroup, name)``, the filesystem path of a cgroup's file.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import time
from typing import Protocol

HOG_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hog.c")
ADDR_NO_RANDOMIZE = 0x0040000


class HogError(AssertionError):
    pass


class Tree(Protocol):
    processes: list[HogProcess]

    def file(self, rel: str, name: str) -> str: ...


def _libc():  # type: ignore[no-untyped-def]
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def _write(path: str, value: str) -> None:
    """One os.write on a fresh fd, so the kernel's verdict (EINVAL, EACCES, EBUSY) surfaces as an error."""
    fd = os.open(path, os.O_WRONLY)
    try:
        data = value.encode()
        if os.write(fd, data) != len(data):
            raise HogError(f"short write to {path}")
    finally:
        os.close(fd)


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
    """The memory cgroup path of a process, from /proc/<pid>/cgroup: the v1 memory hierarchy's line when there
    is one, else the unified (cgroup v2) hierarchy's ``0::`` line."""
    unified = None
    for line in _read(f"/proc/{pid}/cgroup").splitlines():
        hierarchy_id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
        if hierarchy_id == "0" and controllers == "":
            unified = path
    return unified


def set_oom_score_adj(pid: int, adj: int) -> None:
    path = f"/proc/{pid}/oom_score_adj"
    try:
        _write(path, str(adj))
    except PermissionError as error:
        raise HogError(
            f"cannot set oom_score_adj={adj} on {pid} ({error}); values below 0 need CAP_SYS_RESOURCE"
        ) from error
    got = int(_read(path))
    if got != adj:
        raise HogError(f"oom_score_adj of {pid}: wrote {adj}, reads back {got}")


class HogProcess:
    """One hog, trigger or twins forker (hog.c), in a cgroup of a tree."""

    def __init__(
        self,
        tree: Tree,
        binary: str,
        mode: str,
        mib: int,
        cgroup: str,
        adj: int,
        step_kib: int = 1024,
        shmem_mib: int = 0,
        file_mib: int = 0,
        file_dir: str | None = None,
        name: str = "",
        low_pid: int = 0,
        cpus: set[int] | None = None,
        aslr: bool = True,
    ) -> None:
        self.tree = tree
        self.mode = mode
        self.mib = mib  # anonymous MiB (hog, each twin) or cap (trigger)
        self.shmem_mib = shmem_mib
        self.file_mib = file_mib
        self.cgroup = cgroup
        self.adj = adj
        self.name = name  # the comm hog.c sets; "" keeps the binary's name ("oomtop-trigger" for a trigger)
        self.state = "new"
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        argv = [binary, mode, str(mib), str(go_r), str(ready_w), f"step={step_kib}"]
        if shmem_mib:
            argv.append(f"shmem={shmem_mib}")
        if file_mib:
            argv += [f"file={file_mib}", f"dir={file_dir or os.path.dirname(binary)}"]
        if name:
            argv.append(f"name={name}")
        if low_pid:
            argv.append(f"low={low_pid}")
        self.extra_pids: list[int] = []  # processes it forked (twins mode); killed with it
        preexec = None
        if cpus is not None or not aslr:

            def preexec() -> None:  # before exec, so every page the process ever touches is counted on one CPU
                if cpus is not None:
                    os.sched_setaffinity(0, cpus)
                if not aslr:  # the same layout every time, so identical hogs need identical page tables
                    _libc().personality(ADDR_NO_RANDOMIZE)

        try:
            self.popen = subprocess.Popen(argv, pass_fds=(go_r, ready_w), stdin=subprocess.DEVNULL, preexec_fn=preexec)
        except BaseException:
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
            raise
        tree.processes.append(self)  # from here on, cleanup kills it
        os.close(go_r)
        os.close(ready_w)
        self._go_w = go_w
        self._ready_r = ready_r
        self.pid = self.popen.pid

    # -- handshake ---------------------------------------------------------------------------------------
    def join_and_go(self) -> None:
        """Move into the cgroup, set the adj, verify both, then release the allocation.  A hog keeps its go
        pipe open for :meth:`touch_pages` and :meth:`sync_rss`; the other modes have no more use for it."""
        _write(self.tree.file(self.cgroup, "cgroup.procs"), str(self.pid))
        where = memory_cgroup_of(self.pid)
        if where != self.cgroup:
            raise HogError(f"{self.mode} {self.pid} is in memory cgroup {where}, expected {self.cgroup}")
        set_oom_score_adj(self.pid, self.adj)
        os.write(self._go_w, b"g")
        if self.mode != "hog":
            os.close(self._go_w)
            self._go_w = -1

    def wait_for(self, expected: bytes, timeout: float) -> bytes:
        """Wait for one status byte; returns it, or b"" when the process died first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HogError(f"{self.mode} {self.pid} sent nothing within {timeout}s (waiting for {expected!r})")
            poller = select.poll()  # not select(): the collector may hold more than 1024 descriptors
            poller.register(self._ready_r, select.POLLIN | select.POLLHUP | select.POLLERR)
            if not poller.poll(max(1, int(left * 1000))):
                continue
            data = os.read(self._ready_r, 1)
            if data == b"E":
                raise HogError(f"{self.mode} {self.pid} failed to set up its memory (see its stderr)")
            return data

    def wait_ready(self, timeout: float = 10.0) -> None:
        got = self.wait_for(b"R", timeout)
        if got != b"R":
            self.popen.wait(timeout=5)
            raise HogError(
                f"hog {self.pid} ({self.total_mib} MiB, adj {self.adj}) in {self.cgroup} died before "
                f"ready: status {self.popen.returncode}"
            )
        self.state = "ready"

    def _ask(self, command: bytes, answer: bytes, what: str) -> None:
        if self.mode != "hog" or self._go_w < 0:
            raise HogError(f"{self!r} takes no more commands")
        os.write(self._go_w, command)
        got = self.wait_for(answer, 10.0)
        if got != answer:
            raise HogError(f"hog {self.pid} could not {what} (got {got!r})")

    def touch_pages(self, count: int) -> None:
        """Have a ready hog touch ``count`` more pages, one at a time."""
        for _ in range(count):
            self._ask(b"p", b"P", "touch one more page")

    def sync_rss(self) -> None:
        """Have a ready hog fold its cached rss deltas into the mm's counters (an munmap does that on 6.1)."""
        self._ask(b"s", b"Y", "sync its rss")

    # -- state -------------------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.popen.poll() is None

    def killed_by_sigkill(self) -> bool:
        return self.popen.poll() == -signal.SIGKILL

    def status(self, timeout: float = 5.0) -> int | None:
        """The wait status (negative: killed by that signal), waiting up to ``timeout`` for it to exit."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        for pid in self.extra_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)
        for fd in (self._go_w, self._ready_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._go_w = self._ready_r = -1

    @property
    def total_mib(self) -> int:
        return self.mib + self.shmem_mib + self.file_mib

    def __repr__(self) -> str:
        extra = f" +{self.shmem_mib}MiB shmem +{self.file_mib}MiB file" if self.shmem_mib or self.file_mib else ""
        name = f" {self.name}" if self.name else ""
        return f"<{self.mode}{name} pid={self.pid} {self.mib}MiB{extra} adj={self.adj} in {self.cgroup}>"


def start_hog(
    tree: Tree,
    binary: str,
    cgroup: str,
    mib: int,
    adj: int,
    timeout: float = 10.0,
    shmem_mib: int = 0,
    file_mib: int = 0,
    file_dir: str | None = None,
    cpus: set[int] | None = None,
    aslr: bool = True,
    name: str = "",
) -> HogProcess:
    """Start a hog, join it to ``cgroup`` with ``adj``, let it touch ``mib`` MiB of anonymous memory (plus
    ``shmem_mib`` of memfd and ``file_mib`` of mlocked file mapping in ``file_dir``) and wait until it has."""
    hog = HogProcess(
        tree,
        binary,
        "hog",
        mib,
        cgroup,
        adj,
        shmem_mib=shmem_mib,
        file_mib=file_mib,
        file_dir=file_dir,
        name=name,
        cpus=cpus,
        aslr=aslr,
    )
    hog.join_and_go()
    hog.wait_ready(timeout)
    return hog


def start_trigger(
    tree: Tree, binary: str, cgroup: str, cap_mib: int, adj: int = 0, step_kib: int = 1024, name: str = ""
) -> HogProcess:
    """Start a trigger that grows in ``step_kib`` steps up to ``cap_mib`` MiB (or until killed)."""
    trigger = HogProcess(tree, binary, "trigger", cap_mib, cgroup, adj, step_kib, name=name)
    trigger.join_and_go()
    got = trigger.wait_for(b"S", 10.0)
    if got != b"S":
        trigger.popen.wait(timeout=5)
        raise HogError(f"trigger {trigger.pid} died before starting: status {trigger.popen.returncode}")
    trigger.state = "started"
    return trigger


def start_twins(
    tree: Tree, binary: str, cgroup: str, mib: int, adj: int, cpu: int = 0, timeout: float = 10.0
) -> tuple[HogProcess, int, int]:
    """A forker in ``cgroup`` whose two children hold ``mib`` MiB each, identically (all on one CPU).

    The second child is forked later but gets a lower pid, so the kernel's scan order (fork order) and pid
    order (how v1's cgroup.procs lists them) disagree.  Returns (forker, first child pid, second child pid).
    """
    for _attempt in range(5):
        # The forker picks a free pid below its first child's (pids may have wrapped, so no guess from here).
        forker = HogProcess(tree, binary, "twins", mib, cgroup, adj, cpus={cpu})
        forker.join_and_go()
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            try:
                got = forker.wait_for(b"T", max(0.1, deadline - time.monotonic()))
            except HogError:
                break
            if not got:
                break
            line += got
        if line.startswith(b"T ") and line.endswith(b"\n"):
            first, second = (int(x) for x in line.split()[1:3])
            forker.extra_pids = [first, second]
            forker.state = "ready"
            return forker, first, second
        forker.kill()  # the low pid was taken meanwhile (EEXIST), or clone3 is not allowed: try another
        tree.processes.remove(forker)
    raise HogError("could not start twins (clone3 with set_tid needs CAP_SYS_ADMIN and kernel 5.5+)")
