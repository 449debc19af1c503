"""Guest-side helpers of the cgroup v2 tier: kubepods-shaped trees, hog processes, the kernel log, the oracle.

Everything here reads the kernel directly (cgroupfs, procfs, /dev/kmsg) and never goes through oomtop, so a
test can tell an oomtop bug from a badly designed scenario.  Runs inside the VM started by
tests/test_v2_kernel.py (real root, cgroup2 at /sys/fs/cgroup with +memory at the root, swap off).

Paths handed out are relative to the cgroup2 root (``/kubepods/burstable/pod<uid>/<id>``): the form oomtop's
``Cgroup.path`` and the kernel's ``oom_memcg=`` use.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import select
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field

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
        self.processes: list[Proc] = []
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

    def set(self, rel: str, name: str, value: object) -> None:
        write(fs(rel) + "/" + name, str(value))

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

    def add_sandbox(self, pod: Pod) -> tuple[Leaf, Proc]:
        """The pod's pause container: its own leaf, one tiny process with adj -998."""
        leaf = self.add_container(pod, SANDBOX_ADJ, sandbox=True)
        return leaf, self.start(leaf, 0, name="pause")

    # -- processes -----------------------------------------------------------------------------------
    def start(self, leaf: Leaf, mib: int, adj: int | None = None, name: str = "") -> Proc:
        proc = Proc(self, "hog", mib, leaf.path, leaf.adj if adj is None else adj, name)
        proc.join_and_go()
        proc.wait_ready()
        return proc

    def start_trigger(self, leaf: Leaf, cap_mib: int, adj: int | None = None, name: str = "trigger") -> Proc:
        proc = Proc(self, "trigger", cap_mib, leaf.path, leaf.adj if adj is None else adj, name)
        proc.join_and_go()
        got = proc.wait_for(10.0)
        if got != b"S":
            proc.popen.wait(timeout=5)
            raise HarnessError(f"trigger {proc.pid} died before starting: status {proc.popen.returncode}")
        return proc

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


# --------------------------------------------------------------------------------------------- processes


def cgroup_of(pid: int) -> str | None:
    for line in read(f"/proc/{pid}/cgroup").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


class Proc:
    """One hog or trigger (hog.c), started blocked, moved into its cgroup with its adj, then released."""

    def __init__(self, tree: KubeTree, mode: str, mib: int, cgroup: str, adj: int, name: str = "") -> None:
        if not HOG or not os.access(HOG, os.X_OK):
            raise HarnessError(f"no hog binary (OOMTOP_V2_HOG={HOG!r})")
        self.tree, self.mode, self.mib, self.cgroup, self.adj, self.name = tree, mode, mib, cgroup, adj, name
        go_r, go_w = os.pipe()
        ready_r, ready_w = os.pipe()
        argv = [HOG, mode, str(mib), str(go_r), str(ready_w), name]
        try:
            self.popen = subprocess.Popen(argv, pass_fds=(go_r, ready_w), stdin=subprocess.DEVNULL)
        except BaseException:
            for fd in (go_r, go_w, ready_r, ready_w):
                os.close(fd)
            raise
        tree.processes.append(self)  # from here on, cleanup kills it
        os.close(go_r)
        os.close(ready_w)
        self._go_w, self._ready_r = go_w, ready_r
        self.pid = self.popen.pid

    def join_and_go(self) -> None:
        write(fs(self.cgroup) + "/cgroup.procs", str(self.pid))
        where = cgroup_of(self.pid)
        if where != self.cgroup:
            raise HarnessError(f"{self.pid} is in {where}, expected {self.cgroup}")
        write(f"/proc/{self.pid}/oom_score_adj", str(self.adj))
        got = int(read(f"/proc/{self.pid}/oom_score_adj"))
        if got != self.adj:
            raise HarnessError(f"oom_score_adj of {self.pid}: wrote {self.adj}, reads {got}")
        os.write(self._go_w, b"g")
        if self.mode != "hog":  # a hog keeps serving go_fd (touch_pages)
            os.close(self._go_w)
            self._go_w = -1

    def sync_rss(self) -> None:
        """Have a hog fold its cached rss deltas into the mm's counters (an munmap does that on 6.1)."""
        os.write(self._go_w, b"s")
        got = self.wait_for(10.0)
        if got != b"Y":
            raise HarnessError(f"hog {self.pid} could not sync its rss (got {got!r})")

    def touch_pages(self, count: int) -> None:
        """Have a hog touch ``count`` more pages, one at a time."""
        for _ in range(count):
            os.write(self._go_w, b"p")
            got = self.wait_for(10.0)
            if got != b"P":
                raise HarnessError(f"hog {self.pid} could not touch one more page (got {got!r})")

    def wait_for(self, timeout: float) -> bytes:
        """One status byte from the process, or b"" when it died first."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"{self.mode} {self.pid} sent nothing within {timeout}s")
            poller = select.poll()
            poller.register(self._ready_r, select.POLLIN | select.POLLHUP | select.POLLERR)
            if poller.poll(max(1, int(left * 1000))):
                data = os.read(self._ready_r, 1)
                if data == b"E":
                    raise HarnessError(f"{self.mode} {self.pid} could not map its memory")
                return data

    def wait_ready(self, timeout: float = 60.0) -> None:
        if self.wait_for(timeout) != b"R":
            self.popen.wait(timeout=5)
            raise HarnessError(
                f"hog {self.pid} ({self.mib} MiB) in {self.cgroup} died before ready: status {self.popen.returncode}"
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def status(self, timeout: float = 5.0) -> int | None:
        """The wait status (negative: killed by that signal), waiting up to ``timeout`` for it to exit."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
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

    def __repr__(self) -> str:
        return f"<{self.mode} {self.name or ''} pid={self.pid} {self.mib}MiB adj={self.adj} in {self.cgroup}>"


# -------------------------------------------------------------------------------------------- the oracle


@dataclass(frozen=True)
class ProcMemory:
    pid: int
    rss_anon_kb: int
    rss_file_kb: int
    rss_shmem_kb: int
    swap_kb: int
    pte_kb: int
    oom_score: int
    oom_score_adj: int

    def points(self, totalpages: int) -> int:
        """``oom_badness()`` from the kernel's own figures (mm/oom_kill.c), in pages."""
        kb = PAGE_SIZE // 1024
        rss = self.rss_anon_kb // kb + self.rss_file_kb // kb + self.rss_shmem_kb // kb
        return rss + self.swap_kb // kb + self.pte_kb // kb + self.oom_score_adj * (totalpages // 1000)


def proc_memory(pid: int) -> ProcMemory:
    values: dict[str, int] = {}
    for line in read(f"/proc/{pid}/status").splitlines():
        key, _, rest = line.partition(":")
        if key in ("RssAnon", "RssFile", "RssShmem", "VmSwap", "VmPTE") and rest.split():
            values[key] = int(rest.split()[0])
    return ProcMemory(
        pid,
        values.get("RssAnon", 0),
        values.get("RssFile", 0),
        values.get("RssShmem", 0),
        values.get("VmSwap", 0),
        values.get("VmPTE", 0),
        int(read(f"/proc/{pid}/oom_score")),
        int(read(f"/proc/{pid}/oom_score_adj")),
    )


# ------------------------------------------------------------------------------------------ the kernel log

KILLED_RE = re.compile(r"Killed process (\d+) \(([^)]*)\)")
GROUP_RE = re.compile(r"Tasks in (\S+) are going to be killed due to memory\.oom\.group set")


class Kmsg:
    """Follows /dev/kmsg from the moment it is opened."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.lines: list[str] = []

    def read_new(self) -> list[str]:
        while True:
            try:
                record = os.read(self.fd, 16384)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue
            if not record:
                break
            self.lines.append(record.decode("utf-8", "replace").partition(";")[2].split("\n", 1)[0])
        return self.lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Kmsg:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class KernelKill:
    """One OOM-killer decision as the log shows it: the victim first, then the rest of an oom.group."""

    victim: int
    killed: list[int]  # every pid named by a "Killed process" line of this decision, once each, victim first
    comms: dict[int, str]
    oom_memcg: str | None = None  # from the oom-kill: summary (absent when the header was rate-limited)
    task_memcg: str | None = None
    group_path: str | None = None
    text: list[str] = field(default_factory=list)


def parse_kills(lines: list[str]) -> list[KernelKill]:
    """Group "Killed process" lines into decisions.  A decision starts with the oom-kill: summary (or, when the
    kernel rate-limited the header, with a Killed line outside a group); an oom.group kill logs the victim, then
    "Tasks in <path> ... memory.oom.group set", then every member (the victim once more)."""
    kills: list[KernelKill] = []
    info: dict[str, str] = {}
    current: KernelKill | None = None
    in_group = False
    for line in lines:
        if line.startswith("oom-kill:"):
            info = dict(part.split("=", 1) for part in line[len("oom-kill:") :].split(",") if "=" in part)
            current, in_group = None, False
            continue
        if " invoked oom-killer:" in line:
            current, in_group = None, False
            continue
        match = GROUP_RE.search(line)
        if match and current is not None:
            current.group_path = match.group(1)
            current.text.append(line)
            in_group = True
            continue
        match = KILLED_RE.search(line)
        if not match:
            if current is not None and line.startswith("oom_reaper:"):
                current.text.append(line)
            continue
        pid, comm = int(match.group(1)), match.group(2)
        if current is None or not in_group:
            current = KernelKill(pid, [pid], {pid: comm}, info.get("oom_memcg"), info.get("task_memcg"))
            kills.append(current)
            info = {}
        elif pid not in current.killed:
            current.killed.append(pid)
            current.comms[pid] = comm
        current.text.append(line)
    return kills


def wait_kills(kmsg: Kmsg, want: int, timeout: float, settle: float = 0.3) -> list[KernelKill]:
    """Read new records until ``want`` decisions were logged and nothing new came for ``settle`` seconds."""
    deadline = time.monotonic() + timeout
    last_len, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        lines = kmsg.read_new()
        if len(lines) != last_len:
            last_len, quiet_since = len(lines), time.monotonic()
        elif len(parse_kills(lines)) >= want and time.monotonic() - quiet_since >= settle:
            break
        time.sleep(0.02)
    return parse_kills(kmsg.read_new())


_last_oom = [0.0]


def pace_oom() -> None:
    """Stay under the OOM report rate limit (10 per 5 s) so each kill's header (oom-kill: oom_memcg=) is logged."""
    wait = _last_oom[0] + 0.55 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _last_oom[0] = time.monotonic()


def oom_reports(lines: list[str]) -> list[dict[str, int]]:
    """Per "invoked oom-killer" report: the domain's usage and limit (kB), its memory.stat anon (bytes) and the
    rss (pages) of every task the report's table lists -- to tell memory held by live tasks from memory
    still charged for a task that is already gone."""
    reports: list[dict[str, int]] = []
    current: dict[str, int] | None = None
    in_stats = False
    for line in lines:
        if " invoked oom-killer:" in line:
            current = {"usage_kb": -1, "limit_kb": -1, "anon_bytes": -1, "listed_rss_pages": 0}
            reports.append(current)
            in_stats = False
            continue
        if current is None:
            continue
        match = re.match(r"memory: usage (\d+)kB, limit (\d+)kB", line)
        if match:
            current["usage_kb"], current["limit_kb"] = int(match.group(1)), int(match.group(2))
        elif line.startswith("Memory cgroup stats for"):
            in_stats = True
        elif in_stats and re.match(r"anon \d+", line):  # the stat block is one record, "\x0a" between lines
            current["anon_bytes"] = int(re.match(r"anon (\d+)", line).group(1))  # type: ignore[union-attr]
            in_stats = False
        elif re.match(r"\[\s*\d+\]", line):
            fields_ = line.replace("[", " ").replace("]", " ").split()
            if len(fields_) >= 5:
                current["listed_rss_pages"] += int(fields_[4])  # pid uid tgid total_vm rss ...
    return reports
