"""Who a memory cgroup belongs to, from its path and the node's own metadata (no API server).

The path alone tells the Kubernetes structure (QoS class, pod uid, container id and runtime), because kubelet
and the runtimes encode it in cgroup names for both the cgroupfs and the systemd driver.  Human names (pod
namespace/name, container name) and the sandbox flag are not in the path; they come from :class:`NodeNames`,
read once from files every node has (/var/log/pods, /var/log/containers, the runtimes' OCI config.json).

:func:`identify` is pure and never raises: the collector calls it on every cgroup it finds, and a cgroup with
a strange name must show up as PLAIN, not take the poll down.  All I/O is in :meth:`NodeNames.load`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass, fields, replace

from oomtop.model import CgroupKind, ContainerRef, Identity, PodRef, QosClass

MAX_CONFIG_BYTES = 1 << 20  # an OCI config.json is ~10-30 KiB; anything past 1 MiB is not one we want to parse

_UID = r"([0-9a-fA-F][0-9a-fA-F_-]{7,})"  # dashed (API) or 32-hex (static pod) uid; systemd swaps '-' for '_'
_POD_RE = re.compile(rf"pod{_UID}|.+-pod{_UID}\.slice")  # "pod<uid>" or "kubepods-burstable-pod<uid>.slice"
_QOS_RE = re.compile(r"(?:.+-)?(burstable|besteffort)(?:\.slice)?")
_LEAF_RE = re.compile(r"(cri-containerd|crio-conmon|crio|docker)-(.+?)(?:\.scope)?")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DOCKER_SCOPE_RE = re.compile(r"docker-([0-9a-f]{64})\.scope")
_UNIT_SUFFIXES = (".slice", ".service", ".scope", ".mount", ".socket")
_RUNTIMES = {"cri-containerd": "containerd", "crio": "cri-o", "crio-conmon": "cri-o", "docker": "docker"}
_QOS = {"burstable": QosClass.BURSTABLE, "besteffort": QosClass.BEST_EFFORT}

# (directory under the host root, config.json below <dir>/<id>, runtime that keeps bundles there)
_BUNDLE_DIRS = (
    ("run/containerd/io.containerd.runtime.v2.task/k8s.io", "config.json", "containerd"),
    ("run/containerd/io.containerd.runtime.v1.linux/k8s.io", "config.json", "containerd"),
    ("run/containers/storage/overlay-containers", "userdata/config.json", "cri-o"),
)
# Annotation keys, containerd's first, then CRI-O's; both sets are accepted in any config.json.
_A_POD_NAME = ("io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name")
_A_POD_NS = ("io.kubernetes.cri.sandbox-namespace", "io.kubernetes.pod.namespace")
_A_POD_UID = ("io.kubernetes.cri.sandbox-uid", "io.kubernetes.pod.uid")
_A_NAME = ("io.kubernetes.cri.container-name", "io.kubernetes.container.name")
_A_TYPE = ("io.kubernetes.cri.container-type", "io.kubernetes.cri-o.ContainerType")
_A_SANDBOX_ID = ("io.kubernetes.cri.sandbox-id", "io.kubernetes.cri-o.SandboxID")


# --------------------------------------------------------------------------------------------- path parsing


def identify(path: str, names: NodeNames | None = None) -> Identity:
    """The Identity of the memory cgroup at ``path`` (relative to the hierarchy root, "/" for the root).

    ``names`` only adds human names and the sandbox flag; the kind, QoS, pod uid and container id come from
    the path.  Never raises: anything unrecognised (or a bug here) yields PLAIN labelled with the last element.
    """
    try:
        return _identify(path, names)
    except Exception:  # untrusted paths: a parser bug yields PLAIN, never a crash  # noqa: BLE001
        try:
            return Identity(kind=CgroupKind.PLAIN, label=str(path).rsplit("/", 1)[-1])
        except Exception:  # the fallback's fallback  # noqa: BLE001
            return Identity(kind=CgroupKind.PLAIN)


def _identify(path: str, names: NodeNames | None) -> Identity:
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Identity(kind=CgroupKind.ROOT, label="/") if path else Identity(kind=CgroupKind.PLAIN)
    # kubepods at any depth: kind and other nested nodes put the node's hierarchy under a prefix such as
    # /docker/<id>/ or /kubelet.slice/kubelet-kubepods.slice (kubelet --cgroup-root=/kubelet, systemd driver).
    # The first one wins, so a nested cluster inside a pod's container stays that container's.
    for k, part in enumerate(parts):
        if part in ("kubepods", "kubepods.slice") or part.endswith("-kubepods.slice"):
            return _kube(parts[k + 1 :], parts[-1], names)
    for j, part in enumerate(parts):
        m = _DOCKER_SCOPE_RE.fullmatch(part)
        cid = m.group(1) if m else None
        if cid is None and part == "docker" and j + 1 < len(parts) and _HEX64.fullmatch(parts[j + 1]):
            cid = parts[j + 1]
        if cid is not None:  # everything below a Docker container (e.g. a kind node's own units) is its own
            info = names.container(cid) if names is not None else None
            name = info.name if info is not None else None
            return Identity(kind=CgroupKind.DOCKER, container=ContainerRef(cid, "docker", name), label=name or cid[:12])
    kind = CgroupKind.SYSTEM if parts[-1].endswith(_UNIT_SUFFIXES) else CgroupKind.PLAIN
    return Identity(kind=kind, label=parts[-1])


def _kube(rest: list[str], last: str, names: NodeNames | None) -> Identity:
    """Parse what lies below kubepods(.slice); both drivers' spellings are accepted at every level."""
    if not rest:
        return Identity(kind=CgroupKind.KUBEPODS, label="kubepods")
    qos, i = QosClass.GUARANTEED, 0  # a pod directly under kubepods is Guaranteed
    m = _QOS_RE.fullmatch(rest[0])
    if m:
        qos, i = _QOS[m.group(1)], 1
        if len(rest) == 1:
            return Identity(kind=CgroupKind.QOS, qos=qos, label=m.group(1))
    m = _POD_RE.fullmatch(rest[i])
    if not m:
        return Identity(kind=CgroupKind.PLAIN, label=last)
    uid = (m.group(1) or m.group(2)).replace("_", "-").lower()
    known = names.pod(uid) if names is not None else None
    pod = PodRef(uid, qos, *known) if known else PodRef(uid, qos)
    if len(rest) == i + 1:
        return Identity(kind=CgroupKind.POD, qos=qos, pod=pod, label=pod.label)
    return _container(rest[i + 1], pod, names)  # deeper cgroups (nesting runtimes) belong to the container


def _container(leaf: str, pod: PodRef, names: NodeNames | None) -> Identity:
    """A pod's child is always a container (kubelet creates nothing else there), whatever its spelling."""
    m = _LEAF_RE.fullmatch(leaf)
    prefix, cid = (m.group(1), m.group(2)) if m else (None, leaf.removesuffix(".scope") or leaf)
    info = names.container(cid) if names is not None else None
    runtime = _RUNTIMES[prefix] if prefix else (info.runtime if info is not None else None)
    name, sandbox = (info.name, info.is_sandbox) if info is not None else (None, False)
    if (
        pod.name is None
        and info is not None
        and info.pod_name
        and info.pod_namespace
        and info.pod_uid in (None, pod.uid)
    ):
        # a pod /var/log/pods does not list: take the container's word
        pod = replace(pod, name=info.pod_name, namespace=info.pod_namespace)
    ref = ContainerRef(cid, runtime, name, sandbox)
    if prefix == "crio-conmon":
        kind, label = CgroupKind.CONMON, "conmon:" + (name or cid[:12])
    elif sandbox:
        kind, label = CgroupKind.SANDBOX, "sandbox:" + cid[:12]
    else:
        kind, label = CgroupKind.CONTAINER, name or cid[:12]
    return Identity(kind=kind, qos=pod.qos, pod=pod, container=ref, label=label)


# ---------------------------------------------------------------------------------------- node-local names


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What the node's files say about one container id; every field may be missing."""

    id: str
    name: str | None = None
    pod_uid: str | None = None
    pod_name: str | None = None
    pod_namespace: str | None = None
    type: str | None = None  # the runtime's annotation: "sandbox", "container" or None (not said)
    runtime: str | None = None  # from where its bundle was found: "containerd", "cri-o"
    sandbox_id: str | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.type == "sandbox"


class NodeNames:
    """Pod and container names from node-local files: an immutable snapshot, built by :meth:`load`.

    Refreshing is the caller's choice (e.g. when :func:`identify` returns a pod or container without a
    name): :meth:`refresh` returns a new snapshot and re-reads only config.json files it has not parsed
    yet, since a bundle's config never changes for a given container id.  The log directories are only
    listed (one readlink per /var/log/containers link), so a refresh costs little even with 100 pods.
    Names are untrusted text and are kept exactly as found.
    """

    __slots__ = ("_bundles", "_containers", "_pod_containers", "_pods", "host_root")

    def __init__(self, host_root: str = "/") -> None:
        self.host_root = host_root
        self._pods: dict[str, tuple[str, str]] = {}  # uid -> (name, namespace)
        self._pod_containers: dict[str, tuple[str, ...]] = {}  # uid -> container names from /var/log/pods
        self._containers: dict[str, ContainerInfo] = {}
        self._bundles: dict[str, ContainerInfo] = {}  # config.json path -> parsed, reused by refresh()

    @classmethod
    def empty(cls) -> NodeNames:
        return cls()

    @classmethod
    def load(cls, host_root: str = "/") -> NodeNames:
        """Read every source under ``host_root``; missing or broken sources are skipped, never raised."""
        return cls._load(host_root, {})

    def refresh(self) -> NodeNames:
        return self._load(self.host_root, self._bundles)

    def pod(self, uid: str) -> tuple[str, str] | None:
        """(name, namespace) of the pod with this uid, or None."""
        return self._pods.get(uid.lower())

    def container(self, cid: str) -> ContainerInfo | None:
        return self._containers.get(cid.lower())

    def container_names(self, uid: str) -> tuple[str, ...]:
        """Names of the pod's containers as /var/log/pods lists them (also exited ones), sorted."""
        return self._pod_containers.get(uid.lower(), ())

    @classmethod
    def _load(cls, host_root: str, cache: dict[str, ContainerInfo]) -> NodeNames:
        self = cls(host_root)
        logged: dict[str, ContainerInfo] = {}
        for step in (self._scan_pod_logs, lambda: self._scan_container_logs(logged), lambda: self._scan_bundles(cache)):
            with contextlib.suppress(Exception):
                step()
        self._merge(logged)
        return self

    def _join(self, *rel: str) -> str:
        return os.path.join(self.host_root, *rel)

    def _scan_pod_logs(self) -> None:
        base = self._join("var/log/pods")
        for entry in _listdir(base):
            parsed = _parse_pod_dir(entry)
            if parsed is not None and os.path.isdir(os.path.join(base, entry)):
                ns, name, uid = parsed
                self._pods[uid] = (name, ns)
                self._pod_containers[uid] = tuple(sorted(_listdir(os.path.join(base, entry))))

    def _scan_container_logs(self, out: dict[str, ContainerInfo]) -> None:
        base = self._join("var/log/containers")
        by_name: dict[tuple[str, str], str | None] = {}
        for uid, (name, ns) in self._pods.items():  # (ns, name) -> uid, None when two uids share it
            by_name[(ns, name)] = None if (ns, name) in by_name else uid
        for entry in _listdir(base):
            if not entry.endswith(".log"):
                continue
            head, _, cid = entry[:-4].rpartition("-")
            fields3 = head.split("_", 2)  # pod and namespace names cannot contain '_'
            if not _HEX64.fullmatch(cid) or len(fields3) != 3 or not all(fields3):
                continue
            pod, ns, ctr = fields3
            pod_uid = _link_uid(os.path.join(base, entry), ns, pod) or by_name.get((ns, pod))
            out[cid] = ContainerInfo(cid, name=ctr, pod_uid=pod_uid, pod_name=pod, pod_namespace=ns)

    def _scan_bundles(self, cache: dict[str, ContainerInfo]) -> None:
        for rel, config, runtime in _BUNDLE_DIRS:
            base = self._join(rel)
            for cid in _listdir(base):
                path = os.path.join(base, cid, config)
                info = cache.get(path) or _read_bundle(path, cid, runtime)
                if info is not None:  # failures are not cached: the file may not be written yet
                    self._bundles[path] = info

    def _merge(self, logged: dict[str, ContainerInfo]) -> None:
        """Combine the sources: config.json wins over log names; sandboxes named by sandbox-id get marked."""
        containers = dict(logged)
        for info in self._bundles.values():
            old = containers.get(info.id)
            containers[info.id] = info if old is None else _overlay(old, info)
        for info in list(containers.values()):
            sid = info.sandbox_id
            if sid and sid != info.id:
                old = containers.get(sid) or replace(info, id=sid, name=None, type=None, sandbox_id=sid)
                if old.type is None:
                    containers[sid] = replace(old, type="sandbox")
        for info in containers.values():
            if info.pod_uid and info.pod_name and info.pod_namespace:
                self._pods.setdefault(info.pod_uid, (info.pod_name, info.pod_namespace))
        self._containers = containers


_POD_FIELDS = ("pod_uid", "pod_name", "pod_namespace")


def _overlay(old: ContainerInfo, new: ContainerInfo) -> ContainerInfo:
    """``new``'s fields where it has them, ``old``'s elsewhere; but the pod (uid, name, namespace) is one fact:
    when the two name different pods, only ``new``'s is kept, so no pod is given another pod's name."""
    values = {f.name: getattr(new, f.name) for f in fields(ContainerInfo)}
    merged = {k: getattr(old, k) if v is None else v for k, v in values.items()}
    if _pod_conflict(old, new):
        merged.update({k: getattr(new, k) for k in _POD_FIELDS})
    return ContainerInfo(**merged)


def _pod_conflict(a: ContainerInfo, b: ContainerInfo) -> bool:
    """Whether two records of one container disagree on any pod field both of them have."""
    return any(
        getattr(a, k) is not None and getattr(b, k) is not None and getattr(a, k) != getattr(b, k) for k in _POD_FIELDS
    )


def _parse_pod_dir(entry: str) -> tuple[str, str, str] | None:
    """``<namespace>_<pod>_<uid>``: namespace and uid never contain '_', so extra ones belong to the name."""
    parts = entry.split("_")
    if len(parts) < 3:
        return None
    ns, name, uid = parts[0], "_".join(parts[1:-1]), parts[-1].lower()
    return (ns, name, uid) if ns and name and uid else None


def _link_uid(link: str, ns: str, pod: str) -> str | None:
    """The pod uid from a /var/log/containers link's target (/var/log/pods/<ns>_<pod>_<uid>/...)."""
    try:
        target = os.readlink(link)
    except (OSError, ValueError):
        return None
    for element in target.split("/"):
        parsed = _parse_pod_dir(element)
        if parsed is not None and parsed[:2] == (ns, pod):
            return parsed[2]
    return None


def _read_bundle(path: str, cid: str, runtime: str) -> ContainerInfo | None:
    data = _read_small(path)
    if data is None:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # invalid JSON or UTF-8, absurd nesting
        return None
    ann = doc.get("annotations") if isinstance(doc, dict) else None
    ann = ann if isinstance(ann, dict) else {}

    def get(keys: tuple[str, str]) -> str | None:
        for key in keys:
            value = ann.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    uid = get(_A_POD_UID)
    sandbox_id = get(_A_SANDBOX_ID)
    return ContainerInfo(
        cid.lower(), name=get(_A_NAME), pod_uid=uid.lower() if uid else None, pod_name=get(_A_POD_NAME),
        pod_namespace=get(_A_POD_NS), type=get(_A_TYPE), runtime=runtime,
        sandbox_id=sandbox_id.lower() if sandbox_id else None,
    )  # fmt: skip


def _read_small(path: str, limit: int = MAX_CONFIG_BYTES) -> bytes | None:
    """A regular file's bytes if it is at most ``limit`` long; None otherwise (O_NONBLOCK: a FIFO can't hang us)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        buf = bytearray()
        while len(buf) <= limit:
            chunk = os.read(fd, limit + 1 - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf) if len(buf) <= limit else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (OSError, ValueError):  # missing, not a directory, unreadable, NUL in host_root
        return []
