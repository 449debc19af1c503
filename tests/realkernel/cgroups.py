"""A throw-away, kubepods-shaped cgroup v1 memory hierarchy that always cleans up after itself.

Everything lives under one unique parent, ``/sys/fs/cgroup/memory/oomtop-test-<random>``; nothing outside it
is ever written.  Paths handed out are relative to the memory hierarchy root (``/oomtop-test-ab12/kubepods/
burstable/pod<uid>/<64 hex>``), the form oomtop's ``Cgroup.path`` and the kernel's ``oom_memcg=`` use.

Cleanup (``close()``, also run from ``atexit`` and on SIGTERM/SIGHUP) kills every process the hierarchy
started, waits for it, then removes the directories bottom-up, retrying while the kernel still lists a dying
task.  The hog program dies with its parent too (PR_SET_PDEATHSIG), so even a SIGKILLed test run leaves at most
empty directories behind.
"""

from __future__ import annotations

import atexit
import errno
import os
import secrets
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .env import MEMORY_ROOT

if TYPE_CHECKING:
    from .hog import HogProcess

TEST_PREFIX = "oomtop-test-"
UNLIMITED_THRESHOLD = 1 << 62  # v1 reports "no limit" as a page-aligned LONG_MAX (9223372036854771712)

_live: set[TestHierarchy] = set()
_created_parents: list[str] = []  # every parent this process ever created (relative paths), for the final check
_registry_lock = threading.Lock()
_handlers_installed = False


class CgroupError(AssertionError):
    """A cgroup file did not take the value written to it."""


def write_file(path: str, value: str) -> None:
    """Write with one os.write on a fresh fd, so the kernel's verdict (EINVAL, EACCES, EBUSY) surfaces."""
    fd = os.open(path, os.O_WRONLY)
    try:
        data = value.encode()
        written = os.write(fd, data)
        if written != len(data):
            raise CgroupError(f"short write to {path}: {written} of {len(data)} bytes")
    finally:
        os.close(fd)


def read_file(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_kv(path: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, memory.oom_control) as a dict of ints."""
    result: dict[str, int] = {}
    for line in read_file(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            result[parts[0]] = int(parts[1])
    return result


@dataclass
class Pod:
    uid: str
    qos: str  # "guaranteed", "burstable" or "besteffort"
    path: str  # relative to the memory hierarchy root
    containers: list[str] = field(default_factory=list)


def _rmdir_retry(fs_path: str, timeout: float = 5.0) -> str | None:
    """rmdir, retrying while tasks are still leaving; returns an error text or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(fs_path)
            return None
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() > deadline:
                try:
                    procs = read_file(os.path.join(fs_path, "cgroup.procs")).split()
                except OSError:
                    procs = []
                return f"rmdir {fs_path}: {error} (tasks still listed: {procs})"
            time.sleep(0.02)


class TestHierarchy:
    """One unique test parent with a kubepods tree under it (cgroupfs driver naming)."""

    __test__ = False  # not a pytest test class

    def __init__(self, memory_root: str = MEMORY_ROOT) -> None:
        self.memory_root = memory_root
        self.parent = "/" + TEST_PREFIX + secrets.token_hex(6)
        self.processes: list[HogProcess] = []
        self.pods: list[Pod] = []
        self._created: list[str] = []  # relative paths in creation order (parents first)
        self._closed = False

    # -- paths -------------------------------------------------------------------------------------------
    def fs(self, rel: str) -> str:
        """Filesystem path of a cgroup given by its hierarchy-relative path."""
        assert rel == self.parent or rel.startswith(self.parent + "/"), f"{rel} is not ours"
        return self.memory_root + rel

    def file(self, rel: str, name: str) -> str:
        return os.path.join(self.fs(rel), name)

    @property
    def kubepods(self) -> str:
        return self.parent + "/kubepods"

    # -- building ----------------------------------------------------------------------------------------
    def __enter__(self) -> TestHierarchy:
        _install_handlers()
        with _registry_lock:
            _live.add(self)
        os.mkdir(self.memory_root + self.parent)
        self._created.append(self.parent)
        _created_parents.append(self.parent)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mkdir(self, rel: str, limit_bytes: int | None = None) -> str:
        os.mkdir(self.fs(rel))
        self._created.append(rel)
        if limit_bytes is not None:
            self.set_limit(rel, limit_bytes)
        return rel

    def build_kubepods(self, kubepods_limit: int | None = None) -> None:
        self.mkdir(self.kubepods, kubepods_limit)
        self.mkdir(self.kubepods + "/burstable")
        self.mkdir(self.kubepods + "/besteffort")

    def add_pod(self, qos: str, limit_bytes: int | None = None) -> Pod:
        if self.kubepods not in self._created:
            self.build_kubepods()
        uid = str(uuid.uuid4())
        if qos == "guaranteed":
            path = f"{self.kubepods}/pod{uid}"
        elif qos in ("burstable", "besteffort"):
            path = f"{self.kubepods}/{qos}/pod{uid}"
        else:
            raise ValueError(qos)
        self.mkdir(path, limit_bytes)
        pod = Pod(uid, qos, path)
        self.pods.append(pod)
        return pod

    def add_container(self, pod: Pod, limit_bytes: int | None = None) -> str:
        path = f"{pod.path}/{secrets.token_hex(32)}"
        self.mkdir(path, limit_bytes)
        pod.containers.append(path)
        return path

    def set_limit(self, rel: str, limit_bytes: int) -> int:
        write_file(self.file(rel, "memory.limit_in_bytes"), str(limit_bytes))
        got = self.limit(rel)
        if got is None or abs(got - limit_bytes) >= os.sysconf("SC_PAGE_SIZE"):
            raise CgroupError(f"{rel}: wrote memory.limit_in_bytes={limit_bytes}, reads back {got}")
        return got

    # -- reading -----------------------------------------------------------------------------------------
    def limit(self, rel: str) -> int | None:
        value = int(read_file(self.file(rel, "memory.limit_in_bytes")))
        return None if value >= UNLIMITED_THRESHOLD else value

    def usage(self, rel: str) -> int:
        return int(read_file(self.file(rel, "memory.usage_in_bytes")))

    def oom_control(self, rel: str) -> dict[str, int]:
        return read_kv(self.file(rel, "memory.oom_control"))

    def procs(self, rel: str) -> list[int]:
        return [int(p) for p in read_file(self.file(rel, "cgroup.procs")).split()]

    def created(self) -> list[str]:
        return list(self._created)

    # -- cleanup -----------------------------------------------------------------------------------------
    def kill_processes(self) -> None:
        for proc in list(self.processes):
            proc.kill()
        self.processes.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[str] = []
        try:
            self.kill_processes()
        except Exception as error:  # noqa: BLE001
            errors.append(f"killing processes: {error!r}")
        root = self.memory_root + self.parent
        if os.path.isdir(root):
            # Bottom-up over what is really there (cgroup dirs only hold control files, never subdirs of ours
            # that we did not make).
            for dirpath, _dirnames, _files in os.walk(root, topdown=False):
                problem = _rmdir_retry(dirpath)
                if problem:
                    errors.append(problem)
        with _registry_lock:
            _live.discard(self)
        if errors:
            raise CgroupError("cleanup of " + self.parent + " incomplete: " + "; ".join(errors))


def cleanup_all() -> list[str]:
    """Close every live hierarchy (atexit / signal path); returns the errors instead of raising."""
    errors = []
    with _registry_lock:
        live = list(_live)
    for hierarchy in live:
        try:
            hierarchy.close()
        except Exception as error:  # clean-up goes on: every problem is reported  # noqa: BLE001
            errors.append(str(error))
    return errors


def created_parents() -> list[str]:
    return list(_created_parents)


def leftover_test_cgroups(memory_root: str = MEMORY_ROOT) -> list[str]:
    """Every ``oomtop-test-*`` directory directly under the memory root (ours or a concurrent run's)."""
    try:
        names = os.listdir(memory_root)
    except OSError:
        return []
    return sorted("/" + n for n in names if n.startswith(TEST_PREFIX) and os.path.isdir(os.path.join(memory_root, n)))


def _atexit_cleanup() -> None:
    for error in cleanup_all():
        print(f"oomtop real-kernel tests: {error}", flush=True)


def _on_signal(signum: int, _frame: object) -> None:
    # Unwind through the tests' finally blocks; atexit finishes the job if that is cut short.
    raise KeyboardInterrupt(f"signal {signum}")


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_atexit_cleanup)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)
