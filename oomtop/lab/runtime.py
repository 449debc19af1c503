"""What a container runtime is to the lab, and the pods and containers it runs.

The node (:mod:`oomtop.lab.node`) starts and stops processes through a runtime; the runtimes
(:mod:`oomtop.lab.runtime_plain`, :mod:`oomtop.lab.runtime_runc`) need the node's pod and container records to do
it.  With the records and the :class:`Runtime` Protocol in this module of their own, the node depends on the
Protocol only and the runtimes on the records only: neither side imports the other (they used to import each
other, through ``TYPE_CHECKING`` and a lazy import).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Protocol

from oomtop.lab import bundle
from oomtop.lab.kubelet import Resources
from oomtop.lab.procs import LabProcess
from oomtop.model import QosClass


@dataclass(eq=False)
class Container:
    """One container of a pod (or its sandbox): where its cgroup is, what kubelet asked for, and its processes."""

    pod: Pod
    name: str  # "pause" for the sandbox
    id: str  # 64 hex digits, like containerd's
    path: str  # its memory cgroup
    resources: Resources
    wanted_adj: int
    adj: int
    sandbox: bool = False
    processes: list[LabProcess] = field(default_factory=list)
    started: bool = False

    @property
    def limit_bytes(self) -> int | None:
        return self.resources.limit_bytes

    @property
    def label(self) -> str:
        return f"{self.pod.namespace}/{self.pod.name}/{self.name}"


@dataclass(eq=False)
class Pod:
    """A pod as kubelet lays it out.  ``sandbox_id`` is known before the sandbox's Container exists, so every
    container's bundle can name its sandbox without waiting for (or asserting) the sandbox record."""

    name: str
    namespace: str
    uid: str
    qos: QosClass
    path: str
    limit_bytes: int | None
    sandbox_id: str
    containers: dict[str, Container] = field(default_factory=dict)
    sandbox: Container | None = None

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def sandbox_pid(self) -> int | None:
        if self.sandbox is None or not self.sandbox.processes:
            return None
        return self.sandbox.processes[0].pid


def container_id() -> str:
    """A fresh container id, 64 hex digits as containerd makes them (oomtop's identity parser expects that)."""
    return secrets.token_hex(32)


def cri_annotations(container: Container) -> dict[str, str]:
    """containerd's CRI annotations for ``container``'s bundle: what makes oomtop name the lab's pods and
    containers as it would on a node (both runtimes write them)."""
    pod = container.pod
    return bundle.cri_annotations(
        container_id=container.id,
        sandbox_id=pod.sandbox_id,
        pod_name=pod.name,
        namespace=pod.namespace,
        pod_uid=pod.uid,
        container_name=None if container.sandbox else container.name,
        sandbox=container.sandbox,
    )


class Runtime(Protocol):
    """A container runtime as the node drives it; :class:`~oomtop.lab.runtime_plain.PlainRuntime` and
    :class:`~oomtop.lab.runtime_runc.RuncRuntime` implement it (mypy checks both where the session picks one)."""

    @property
    def name(self) -> str:
        """``plain`` or ``runc``, as the lab's title line says."""

    @property
    def creates_cgroups(self) -> bool:
        """Whether the runtime makes each container's cgroup and applies its limit itself (runc, as for
        containerd); otherwise the node makes it and moves every process into it."""

    def prepare(self) -> None:
        """Set-up that must come before the lab starts any thread (runc: a private mount namespace)."""

    def start(self, container: Container, proc: LabProcess, argv: list[str], first: bool) -> None:
        """Start ``argv`` as ``proc`` in ``container`` (``first``: the container's first process, which makes
        the container) and fill in its pid and start time."""

    def stop_container(self, container: Container) -> list[str]:
        """Kill the container's processes and remove what the runtime made for it; the problems, if any."""

    def close(self) -> list[str]:
        """Remove everything the runtime still holds (teardown: after every container was stopped)."""
