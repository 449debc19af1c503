"""Guest-side helpers of the cgroup v2 tier: kubepods-shaped trees on cgroup2, with hog processes in them.

Everything here reads the kernel directly (cgroupfs, procfs) and never goes through oomtop, so a test can tell
an oomtop bug from a badly designed scenario.  What the v1 tier needs too is shared with it from tests/realkernel/
(the repository root is on PYTHONPATH in the guest): the hog program and its driver (hog.py), the oracle
(oracle.py: /proc figures and the kernel's points) and the kernel log's OOM decisions (kmsg.py).  Runs inside
the VM started by tests/test_v2_kernel.py (real root, cgroup2 at /sys/fs/cgroup with +memory at the root, swap off).

Paths handed out are relative to the cgroup2 root (``/kubepods/burstable/pod<uid>/<id>``): the form oomtop's
``Cgroup.path`` and the kernel's ``oom_memcg=`` use.
"""

from __future__ import annotations

import errno
import json
import os
import time
import uuid
from dataclasses import dataclass, field

from tests.realkernel.hog import HogProcess, start_hog, start_trigger

CGROUP_ROOT = "/sys/fs/cgroup"
MIB = 1 << 20
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PAGES_PER_MIB = MIB // PAGE_SIZE
HOG = os.environ.get("OOMTOP_V2_HOG", "")
CONTAINERD_BUNDLES = "/run/containerd/io.containerd.runtime.v2.task/k8s.io"

GUARANTEED_ADJ = -997
SANDBOX_ADJ = -998
BESTEFFORT_ADJ = 1000


class HarnessError(AssertionError):
    """The test's own set-up went wrong (not an oomtop finding)."""


# ------------------------------------------------------------------------------------------------ files


def write(path: str, value: str) -> None:
    """One os.write on a fresh fd, so the kernel's verdict (EINVAL, EBUSY, EACCES) surfaces as an error."""
    fd = os.open(path, os.O_WRONLY)
    try:
        data = value.encode()
        if os.write(fd, data) != len(data):
            raise HarnessError(f"short write to {path}")
    finally:
        os.close(fd)


def read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_kv(path: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in read(path).splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out


def fs(rel: str) -> str:
    return CGROUP_ROOT + ("" if rel == "/" else rel)


def hog_binary() -> str:
    """The hog program (tests/realkernel/hog.c, built on the host before the boot; conftest copies it to tmpfs)."""
    if not HOG or not os.access(HOG, os.X_OK):
        raise HarnessError(f"no hog binary (OOMTOP_V2_HOG={HOG!r})")
    return HOG


def mem_total_bytes() -> int:
    for line in read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise HarnessError("no MemTotal in /proc/meminfo")


def kubelet_adj(qos: str, request_bytes: int, capacity_bytes: int) -> int:
    """pkg/kubelet/qos/policy.go GetContainerOOMScoreAdjust, written out independently of oomtop.rank."""
    if qos == "guaranteed":
        return GUARANTEED_ADJ
    if qos == "besteffort":
        return BESTEFFORT_ADJ
    adj = 1000 - (1000 * request_bytes) // capacity_bytes  # both non-negative: floor == C truncation
    if adj < 1000 + GUARANTEED_ADJ:
        return 1000 + GUARANTEED_ADJ
    if adj == BESTEFFORT_ADJ:
        return adj - 1
    return adj


# ------------------------------------------------------------------------------------------------- trees


@dataclass
class Pod:
    uid: str
    qos: str  # "guaranteed", "burstable", "besteffort"
    path: str
    name: str
    containers: list[str] = field(default_factory=list)
    sandbox: str | None = None


@dataclass
class Leaf:
    """A container cgroup and what the test knows about it."""

    path: str
    cid: str
    pod: Pod
    adj: int
    sandbox: bool = False
    name: str = ""


def new_cid() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex  # 64 hex digits, like a containerd/CRI-O id


class KubeTree:
    """A kubepods hierarchy at the cgroup2 root, in kubelet's cgroupfs or systemd naming; cleans up on close().

    The memory controller is enabled down the tree through each parent's cgroup.subtree_control; processes only
    ever go into leaves (the no-internal-process rule).  ``close()`` kills every process this tree started,
    removes the containerd bundle files it wrote and the directories bottom-up, retrying while the kernel still
    lists a dying task.  It runs also when the test body fails.
    """

    def __init__(self, naming: str, bundles: bool = False) -> None:
        if naming not in ("cgroupfs", "systemd"):
            raise ValueError(naming)
        self.naming = naming
        self.bundles = bundles  # write containerd config.json files (pod/container names, sandbox type)
        self.created: list[str] = []
        self.processes: list[HogProcess] = []
        self.bundle_dirs: list[str] = []
        self.leaves: dict[str, Leaf] = {}
        self.kubepods = "/kubepods" if naming == "cgroupfs" else "/kubepods.slice"

    # -- structure -----------------------------------------------------------------------------------
    def __enter__(self) -> KubeTree:
        if os.path.exists(fs(self.kubepods)):
            raise HarnessError(f"{fs(self.kubepods)} exists already: an earlier test did not clean up")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mkdir(self, rel: str) -> str:
        parent = rel.rsplit("/", 1)[0] or "/"
        os.mkdir(fs(rel))
        self.created.append(rel)
        if parent != "/":
            controllers = read(fs(parent) + "/cgroup.subtree_control").split()
            if "memory" not in controllers:
                write(fs(parent) + "/cgroup.subtree_control", "+memory")
        if not os.path.exists(fs(rel) + "/memory.current"):
            raise HarnessError(f"{rel} has no memory controller after enabling it in {parent}")
        return rel

    def file(self, rel: str, name: str) -> str:
        """The filesystem path of a cgroup's file (what tests/realkernel/hog.py writes cgroup.procs through)."""
        return fs(rel) + "/" + name

    def set(self, rel: str, name: str, value: object) -> None:
        write(self.file(rel, name), str(value))

    def limit(
        self, rel: str, max_bytes: int | None = None, high_bytes: int | None = None, oom_group: bool | None = None
    ) -> None:
        if max_bytes is not None:
            self.set(rel, "memory.max", max_bytes)
        if high_bytes is not None:
            self.set(rel, "memory.high", high_bytes)
        if oom_group is not None:
            self.set(rel, "memory.oom.group", int(oom_group))

    def build_kubepods(self, limit: int | None = None) -> str:
        self.mkdir(self.kubepods)
        if limit is not None:
            self.limit(self.kubepods, limit)
        return self.kubepods

    def qos_dir(self, qos: str) -> str:
        if qos == "guaranteed":
            return self.kubepods
        rel = f"{self.kubepods}/{qos}" if self.naming == "cgroupfs" else f"{self.kubepods}/kubepods-{qos}.slice"
        if rel not in self.created:
            self.mkdir(rel)
        return rel

    def add_pod(self, qos: str, limit: int | None = None, name: str | None = None, high: int | None = None) -> Pod:
        uid = str(uuid.uuid4())
        parent = self.qos_dir(qos)
        if self.naming == "cgroupfs":
            rel = f"{parent}/pod{uid}"
        else:
            prefix = "kubepods" if qos == "guaranteed" else f"kubepods-{qos}"
            rel = f"{parent}/{prefix}-pod{uid.replace('-', '_')}.slice"
        self.mkdir(rel)
        self.limit(rel, limit, high)
        return Pod(uid, qos, rel, name or f"pod-{uid[:8]}")

    def add_container(
        self,
        pod: Pod,
        adj: int,
        limit: int | None = None,
        high: int | None = None,
        oom_group: bool | None = None,
        sandbox: bool = False,
        name: str | None = None,
    ) -> Leaf:
        cid = new_cid()
        leaf_name = cid if self.naming == "cgroupfs" else f"cri-containerd-{cid}.scope"
        rel = self.mkdir(f"{pod.path}/{leaf_name}")
        self.limit(rel, limit, high, oom_group)
        leaf = Leaf(rel, cid, pod, adj, sandbox, name or ("POD" if sandbox else f"c{len(pod.containers)}"))
        if sandbox:
            pod.sandbox = rel
        else:
            pod.containers.append(rel)
        self.leaves[rel] = leaf
        if self.bundles:
            self._write_bundle(leaf)
        return leaf

    def _write_bundle(self, leaf: Leaf) -> None:
        """containerd's OCI bundle config.json with the CRI annotations oomtop reads names from."""
        pod = leaf.pod
        annotations = {
            "io.kubernetes.cri.sandbox-name": pod.name,
            "io.kubernetes.cri.sandbox-namespace": "v2-tier",
            "io.kubernetes.cri.sandbox-uid": pod.uid,
            "io.kubernetes.cri.container-type": "sandbox" if leaf.sandbox else "container",
        }
        if not leaf.sandbox:
            annotations["io.kubernetes.cri.container-name"] = leaf.name
            sandbox_leaf = self.leaves.get(pod.sandbox or "")
            if sandbox_leaf is not None:
                annotations["io.kubernetes.cri.sandbox-id"] = sandbox_leaf.cid
        directory = os.path.join(CONTAINERD_BUNDLES, leaf.cid)
        os.makedirs(directory)
        self.bundle_dirs.append(directory)
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as handle:
            json.dump({"ociVersion": "1.1.0", "annotations": annotations}, handle)

    def add_sandbox(self, pod: Pod) -> tuple[Leaf, HogProcess]:
        """The pod's pause container: its own leaf, one tiny process with adj -998."""
        leaf = self.add_container(pod, SANDBOX_ADJ, sandbox=True)
        return leaf, self.start(leaf, 0, name="pause")

    # -- processes -----------------------------------------------------------------------------------
    def start(self, leaf: Leaf, mib: int, adj: int | None = None, name: str = "") -> HogProcess:
        """A hog of ``mib`` MiB named ``name`` in ``leaf`` (with the leaf's adj unless given), ready."""
        adj = leaf.adj if adj is None else adj
        return start_hog(self, hog_binary(), leaf.path, mib, adj, timeout=60.0, name=name)

    def start_trigger(self, leaf: Leaf, cap_mib: int, adj: int | None = None, name: str = "trigger") -> HogProcess:
        """A trigger growing to ``cap_mib`` MiB in ``leaf``, started (wait for its b"D" at the cap)."""
        return start_trigger(self, hog_binary(), leaf.path, cap_mib, leaf.adj if adj is None else adj, name=name)

    # -- kernel's figures ----------------------------------------------------------------------------
    def procs(self, rel: str) -> list[int]:
        return [int(x) for x in read(fs(rel) + "/cgroup.procs").split()]

    def subtree(self, rel: str) -> list[str]:
        return [p for p in self.created if p == rel or p.startswith(rel + "/")]

    # -- cleanup -------------------------------------------------------------------------------------
    def close(self) -> None:
        problems = []
        for proc in self.processes:
            proc.kill()
        for directory in reversed(self.bundle_dirs):
            try:
                os.unlink(os.path.join(directory, "config.json"))
                os.rmdir(directory)
            except OSError as error:
                problems.append(f"{directory}: {error}")
        self.bundle_dirs.clear()
        for rel in reversed(self.created):
            problem = _rmdir_retry(fs(rel))
            if problem:
                problems.append(problem)
        self.created.clear()
        self.processes.clear()
        if problems:
            raise HarnessError("cleanup failed: " + "; ".join(problems))


def _rmdir_retry(path: str, timeout: float = 10.0) -> str | None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return None
        except FileNotFoundError:
            return None
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                return f"rmdir {path}: {error}"
            time.sleep(0.05)
