"""The values that cross every boundary in oomtop.

A :class:`Sample` is one immutable picture of the node: its memory cgroups, its tasks and who they belong to.
The collector builds Samples, the ranking model derives predictions from them, and every consumer (the
``--once`` printer, the UI, the recorder) only ever reads them.  Frozen, slotted dataclasses keep them cheap
to build thousands of times a second and impossible to change by accident after they are handed out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

#: What ran out: a memory cgroup's limit ("memcg", the kernel's ``CONSTRAINT_MEMCG``) or the node ("global").
EventKind = Literal["memcg", "global"]


class QosClass(str, Enum):
    """Kubernetes QoS class, as kubelet encodes it in the cgroup path."""

    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


class CgroupKind(str, Enum):
    """What a cgroup is for, so consumers can group the node's cgroups without re-parsing paths."""

    ROOT = "root"
    KUBEPODS = "kubepods"  # the kubepods(.slice) cgroup itself
    QOS = "qos"  # kubepods/burstable, kubepods-besteffort.slice
    POD = "pod"
    CONTAINER = "container"  # an application container of a pod
    SANDBOX = "sandbox"  # a pod's pause/infra container
    CONMON = "conmon"  # CRI-O's per-container monitor scope
    SYSTEM = "system"  # systemd slices and services
    DOCKER = "docker"  # a Docker container outside Kubernetes
    PLAIN = "plain"  # any other cgroup


@dataclass(frozen=True, slots=True)
class PodRef:
    """A pod as the node knows it: the uid is always there, names only when node-local metadata had them."""

    uid: str
    qos: QosClass
    name: str | None = None
    namespace: str | None = None

    @property
    def label(self) -> str:
        """How every view names a pod: ``namespace/name`` where node metadata named it, else ``pod <uid>``
        (raw text from the node: print it through :func:`oomtop.text.printable`)."""
        return f"{self.namespace}/{self.name}" if self.name and self.namespace else f"pod {self.uid}"


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A container of a pod (or a Docker container); ``name`` is None when no metadata named it."""

    id: str
    runtime: str | None  # "containerd", "cri-o", "docker", or None when the leaf name does not tell
    name: str | None = None
    is_sandbox: bool = False

    @property
    def label(self) -> str:
        """How every view names a container: its name, else the first 12 characters of its id (as runtimes do)."""
        return self.name or self.id[:12]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a cgroup belongs to, derived from its path and the node's metadata."""

    kind: CgroupKind
    qos: QosClass | None = None
    pod: PodRef | None = None
    container: ContainerRef | None = None
    label: str = ""  # a short human name: pod name, container name, unit name or the last path element


@dataclass(frozen=True, slots=True)
class Pressure:
    """PSI memory pressure of a cgroup (v2 ``memory.pressure``): share of wall time stalled on memory."""

    some_avg10: float
    some_avg60: float
    some_avg300: float
    some_total_us: int
    full_avg10: float
    full_avg60: float
    full_avg300: float
    full_total_us: int


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One memory cgroup's figures at one instant.

    ``limit_bytes`` is None when the cgroup has no limit of its own (v1's page-aligned LONG_MAX, v2's "max"),
    so no consumer ever shows a giant number or divides by it.  ``swap_limit_bytes`` is the swap the cgroup
    may use on top of its memory limit (v2 ``memory.swap.max``; v1 ``memsw.limit - limit``), None when
    unlimited or unknown; the kernel adds it (capped by the node's swap) to the OOM domain size.
    """

    path: str  # "/" for the root, else "/kubepods/burstable/pod.../<id>", relative to the memory hierarchy
    usage_bytes: int
    limit_bytes: int | None
    high_bytes: int | None
    peak_bytes: int | None
    failcnt: int | None  # v1 memory.failcnt, v2 memory.events "max"
    anon_bytes: int
    file_bytes: int
    inactive_file_bytes: int
    shmem_bytes: int
    swap_bytes: int | None
    swap_limit_bytes: int | None
    oom_events: int  # v2 memory.events "oom"; v1 has no such counter (0)
    oom_kills: int  # v1 memory.oom_control oom_kill (this cgroup only), v2 memory.events oom_kill (with descendants)
    oom_kills_local: int | None  # v2 memory.events.local oom_kill: kills in this cgroup itself
    oom_group: bool | None  # v2 memory.oom.group; None on v1, where it does not exist
    under_oom: bool  # v1 memory.oom_control under_oom (only with oom_kill_disable)
    pressure: Pressure | None
    pids: tuple[int, ...]  # processes directly in this cgroup, in the order the kernel lists them
    identity: Identity
    # v2 memory.events / events.local oom_group_kill: memory.oom.group kills (the kernel counts the first victim of
    # each twice in oom_kill, once as the victim and once as a member of the group).  0 / None on v1.
    oom_group_kills: int = 0
    oom_group_kills_local: int | None = None

    @property
    def working_set_bytes(self) -> int:
        """What kubelet evicts on and ``kubectl top`` shows: usage minus inactive file cache, floored at 0."""
        return max(0, self.usage_bytes - self.inactive_file_bytes)

    @property
    def parent_path(self) -> str | None:
        if self.path == "/":
            return None
        head = self.path.rsplit("/", 1)[0]
        return head or "/"

    @property
    def name(self) -> str:
        return "/" if self.path == "/" else self.path.rsplit("/", 1)[1]


@dataclass(frozen=True, slots=True)
class Task:
    """One process (thread-group leader) with the inputs of the kernel's ``oom_badness``.

    ``start_ticks`` (field 22 of /proc/<pid>/stat) together with ``pid`` is the task's key: a reused pid
    gets a new start time, so two processes are never mixed.
    """

    pid: int
    start_ticks: int
    comm: str
    cmdline: str
    uid: int
    cgroup: str  # memory cgroup path, same form as Cgroup.path
    rss_anon_bytes: int
    rss_file_bytes: int
    rss_shmem_bytes: int
    swap_bytes: int
    pgtables_bytes: int
    oom_score: int | None  # the kernel's /proc/<pid>/oom_score (global), None when unreadable
    oom_score_adj: int
    has_memory: bool = True  # False for tasks without an mm of their own (exiting, zombie): never picked

    @property
    def key(self) -> tuple[int, int]:
        return (self.pid, self.start_ticks)

    @property
    def rss_bytes(self) -> int:
        return self.rss_anon_bytes + self.rss_file_bytes + self.rss_shmem_bytes


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """Facts about the node that the model needs (page size, RAM and swap for the global OOM domain)."""

    hostname: str
    kernel_release: str
    cgroup_version: int  # the hierarchy that holds the memory controller: 1 or 2 (0: none found)
    cgroup_layout: str  # "v1", "v2", "hybrid" or "none"
    mem_total_bytes: int
    mem_available_bytes: int
    swap_total_bytes: int
    swap_free_bytes: int
    page_size: int
    clock_ticks: int
    boot_time: float


@dataclass(frozen=True, slots=True)
class Sample:
    """The whole node at one instant.  ``warnings`` says what could not be read (no root, missing files)."""

    time: float  # wall clock, seconds since the epoch
    monotonic: float
    node: NodeInfo
    cgroups: tuple[Cgroup, ...]  # parents before children
    tasks: tuple[Task, ...]
    warnings: tuple[str, ...] = field(default=())
    seq: int = 0


@dataclass(frozen=True, slots=True)
class KernelCandidate:
    """One row of the task table the kernel prints before it kills (values in pages unless named bytes).

    Columns differ between kernels; a column the log did not have is None.
    """

    pid: int
    comm: str
    oom_score_adj: int
    rss_pages: int
    uid: int | None = None
    tgid: int | None = None
    total_vm_pages: int | None = None
    rss_anon_pages: int | None = None
    rss_file_pages: int | None = None
    rss_shmem_pages: int | None = None
    pgtables_bytes: int | None = None
    swapents: int | None = None


@dataclass(frozen=True, slots=True)
class KilledTask:
    """A task the kernel killed, as its "Killed process" line (or a cgroup counter) reports it."""

    pid: int | None
    comm: str | None
    anon_rss_bytes: int | None = None
    file_rss_bytes: int | None = None
    shmem_rss_bytes: int | None = None
    total_vm_bytes: int | None = None
    uid: int | None = None
    pgtables_bytes: int | None = None
    oom_score_adj: int | None = None


@dataclass(frozen=True, slots=True)
class OomEvent:
    """One OOM kill (one per kernel decision: an oom.group kill is one event listing every task killed).

    ``time`` is wall-clock seconds since the epoch when the log or the detector gives it; ``kernel_time_s`` is
    the kernel's own timestamp (seconds since boot) where the log has one.
    """

    kind: EventKind
    time: float | None
    kernel_time_s: float | None
    oom_cgroup: str | None  # the domain that ran out ("/" for a global OOM)
    task_cgroup: str | None  # the victim's own cgroup
    victim: KilledTask
    killed: tuple[KilledTask, ...]  # every task killed, the victim first
    candidates: tuple[KernelCandidate, ...] = ()
    usage_bytes: int | None = None  # of the domain when the kernel logged it
    limit_bytes: int | None = None
    swap_limit_bytes: int | None = None  # memsw limit minus memory limit (v1), when logged
    node_ram_pages: int | None = None  # global OOM: "N pages RAM" of show_mem
    node_swap_bytes: int | None = None  # "Total swap = NkB"
    invoker_comm: str | None = None  # the task whose allocation invoked the OOM killer
    invoker_oom_score_adj: int | None = None
    constraint: str | None = None
    oom_group_path: str | None = None  # "Tasks in X are going to be killed due to memory.oom.group set"
    logged_score: int | None = None  # older kernels: "Kill process N (comm) score S or sacrifice child"
    source: tuple[str, ...] = ()  # detectors that saw it: "kmsg", "log", "counter", "eventfd", "inotify"
    historical: bool = False  # found in the ring buffer at start, not seen happening
    seq: int | None = None  # /dev/kmsg sequence number of the block's first record
    pod: PodRef | None = None
    container: ContainerRef | None = None
    predicted_victim_pid: int | None = None  # what oomtop had predicted at the last sample before the kill
    count: int = 1  # kills this event stands for (a counter jump of 3 with no log: one event, count 3)
    detected_in: str | None = None  # the cgroup whose counter showed the kill, when no log named the victim's
