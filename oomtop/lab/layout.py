"""The lab's cgroups: kubelet's hierarchy (both drivers' naming) under a parent cgroup of the lab's own.

Paths are relative to the memory hierarchy's root, as oomtop's ``Cgroup.path`` and the kernel's ``oom_memcg=``
write them.  cgroupfs driver::

    /oomtop-lab/kubepods/pod<uid>/<container id>                       Guaranteed
    /oomtop-lab/kubepods/burstable/pod<uid>/<container id>
    /oomtop-lab/kubepods/besteffort/pod<uid>/<container id>

systemd driver (the names only: no systemd is involved)::

    /oomtop-lab/kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope
    /oomtop-lab/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope

:class:`CgroupTree` creates and removes them, and refuses any path outside the lab's parent: the lab never writes
to a cgroup it did not create.  On cgroup v2 every level the lab creates gets ``+memory`` in its
``cgroup.subtree_control`` before a child is made, so the children have memory files; the root's must already
have it (the lab does not change the root).
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from enum import Enum

from oomtop.collect.cgroupfs import UNLIMITED_FLOOR, MemoryHierarchy
from oomtop.collect.procfs import parse_memory_cgroup
from oomtop.lab import LAB_NAME, LabError
from oomtop.model import QosClass

LAB_CGROUP = "/" + LAB_NAME


class Driver(str, Enum):
    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


_QOS_NAME = {QosClass.BURSTABLE: "burstable", QosClass.BEST_EFFORT: "besteffort"}


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where kubelet (and containerd) would put each cgroup, under ``parent``.  (Named for what it lays out: the
    UI has a ``Layout`` of its own, of table columns.)"""

    driver: Driver = Driver.CGROUPFS
    parent: str = LAB_CGROUP

    @property
    def kubepods(self) -> str:
        return self.parent + ("/kubepods" if self.driver is Driver.CGROUPFS else "/kubepods.slice")

    def qos(self, qos: QosClass) -> str:
        """The QoS level's cgroup; Guaranteed pods sit directly in kubepods."""
        if qos is QosClass.GUARANTEED:
            return self.kubepods
        name = _QOS_NAME[qos]
        return self.kubepods + (f"/{name}" if self.driver is Driver.CGROUPFS else f"/kubepods-{name}.slice")

    def qos_levels(self) -> list[str]:
        return [self.qos(QosClass.BURSTABLE), self.qos(QosClass.BEST_EFFORT)]

    def pod(self, qos: QosClass, uid: str) -> str:
        if self.driver is Driver.CGROUPFS:
            return f"{self.qos(qos)}/pod{uid}"
        escaped = uid.replace("-", "_")  # systemd unit names cannot carry '-' inside a slice name's element
        prefix = "kubepods" if qos is QosClass.GUARANTEED else f"kubepods-{_QOS_NAME[qos]}"
        return f"{self.qos(qos)}/{prefix}-pod{escaped}.slice"

    def container(self, pod_path: str, container_id: str) -> str:
        """containerd's container (and sandbox) cgroup below the pod's."""
        leaf = container_id if self.driver is Driver.CGROUPFS else f"cri-containerd-{container_id}.scope"
        return f"{pod_path}/{leaf}"

    def owns(self, path: str) -> bool:
        return path == self.parent or path.startswith(self.parent + "/")


def _write(path: str, value: str) -> None:
    """One write on a fresh descriptor, so the kernel's verdict (EINVAL, EBUSY...) surfaces as an OSError."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as handle:
        return handle.read()


def _keyed(text: str) -> dict[str, int]:
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


def rmdir_tree(directory: str, timeout_s: float = 5.0) -> list[str]:
    """Remove a cgroup directory and every cgroup below it, deepest first; the problems, if any.

    A cgroup directory holds only kernel files and child cgroups, so rmdir bottom-up is all it takes; a dying task
    keeps a cgroup busy for a moment (EBUSY), so each rmdir is retried for a while.
    """
    problems: list[str] = []
    if not os.path.isdir(directory):
        return problems
    for current, _dirs, _files in os.walk(directory, topdown=False):
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.rmdir(current)
                break
            except FileNotFoundError:
                break
            except OSError as error:
                if error.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() > deadline:
                    problems.append(f"cannot remove {current}: {error.strerror}")
                    break
                time.sleep(0.02)
    return problems


class CgroupTree:
    """The lab's cgroups in the memory hierarchy: created, written and removed only below ``layout.parent``."""

    def __init__(self, hierarchy: MemoryHierarchy, layout: CgroupLayout) -> None:
        self.hierarchy = hierarchy
        self.layout = layout
        self.created: list[str] = []  # in creation order, parents first

    @property
    def version(self) -> int:
        return self.hierarchy.version

    def fs(self, path: str) -> str:
        if not self.layout.owns(path):
            raise ValueError(f"{path} is not one of the lab's cgroups")
        return self.hierarchy.path + path

    def file(self, path: str, name: str) -> str:
        return os.path.join(self.fs(path), name)

    # ------------------------------------------------------------------------------------------- building

    def check_root(self) -> None:
        """On v2 the root must already hand the memory controller to its children."""
        if self.version != 2:
            return
        try:
            enabled = _read(os.path.join(self.hierarchy.path, "cgroup.subtree_control")).split()
        except OSError as error:
            raise LabError(f"cannot read {self.hierarchy.path}/cgroup.subtree_control: {error.strerror}") from None
        if "memory" not in enabled:
            raise LabError(
                f"the memory controller is not enabled for child cgroups of {self.hierarchy.path} "
                "(cgroup.subtree_control), so the lab's cgroups would have no memory files"
            )

    def enable_memory(self, path: str) -> None:
        """v2: let ``path``'s children have the memory controller (``+memory`` in its cgroup.subtree_control)."""
        if self.version != 2:
            return
        control = self.file(path, "cgroup.subtree_control")
        if "memory" not in _read(control).split():
            _write(control, "+memory")

    def create(self, path: str, limit_bytes: int | None = None) -> str:
        parent = path.rsplit("/", 1)[0] or "/"
        if parent != "/" and self.layout.owns(parent):
            self.enable_memory(parent)
        os.mkdir(self.fs(path))
        self.created.append(path)
        if limit_bytes is not None:
            self.set_limit(path, limit_bytes)
        return path

    def adopt(self, path: str) -> None:
        """A cgroup a runtime (runc) made for the lab: removed with the others."""
        self.fs(path)
        if path not in self.created:
            self.created.append(path)

    def set_limit(self, path: str, limit_bytes: int) -> None:
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        _write(self.file(path, name), str(limit_bytes))
        got = self.limit(path)
        page = os.sysconf("SC_PAGE_SIZE")
        if got is None or abs(got - limit_bytes) >= page:
            raise LabError(f"{path}: wrote a memory limit of {limit_bytes} bytes, the kernel holds {got}")

    def set_oom_group(self, path: str) -> bool:
        """v2 ``memory.oom.group = 1``, as kubelet sets it on every container from 1.28; False where it does not
        exist."""
        name = self.file(path, "memory.oom.group")
        if self.version != 2 or not os.path.exists(name):
            return False
        _write(name, "1")
        return True

    def move(self, pid: int, path: str) -> None:
        _write(self.file(path, "cgroup.procs"), str(pid))

    # -------------------------------------------------------------------------------------------- reading

    def limit(self, path: str) -> int | None:
        if self.version == 1:
            value = int(_read(self.file(path, "memory.limit_in_bytes")))
            return None if value >= UNLIMITED_FLOOR else value
        raw = _read(self.file(path, "memory.max")).strip()
        return None if raw == "max" else int(raw)

    def usage(self, path: str) -> int:
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        return int(_read(self.file(path, name)))

    def counters(self, path: str) -> dict[str, int]:
        """The OOM counters of one cgroup: ``oom_kill`` (kills of its own tasks), ``oom`` (OOMs in this domain,
        v2 only) and ``limit_hits`` (v1 failcnt / v2 events.local max: charges refused at this level)."""
        try:
            if self.version == 1:
                control = _keyed(_read(self.file(path, "memory.oom_control")))
                failcnt = int(_read(self.file(path, "memory.failcnt")))
                return {"oom_kill": control.get("oom_kill", 0), "oom": 0, "limit_hits": failcnt}
            local = _keyed(_read(self.file(path, "memory.events.local")))
            return {"oom_kill": local.get("oom_kill", 0), "oom": local.get("oom", 0), "limit_hits": local.get("max", 0)}
        except OSError:
            return {}

    def procs(self, path: str) -> list[int]:
        try:
            return [int(p) for p in _read(self.file(path, "cgroup.procs")).split()]
        except OSError:
            return []

    # -------------------------------------------------------------------------------------------- removing

    def remove(self, path: str) -> list[str]:
        problems = rmdir_tree(self.fs(path))
        if not problems:
            self.created = [p for p in self.created if not (p == path or p.startswith(path + "/"))]
        return problems

    def remove_all(self) -> list[str]:
        return self.remove(self.layout.parent)


def memory_cgroup_of(pid: int, version: int) -> str | None:
    """The memory cgroup of a process from ``/proc/<pid>/cgroup`` (v1: the memory line, v2: the ``0::`` line)."""
    try:
        return parse_memory_cgroup(_read(f"/proc/{pid}/cgroup"), version)
    except (OSError, UnicodeDecodeError):
        return None
