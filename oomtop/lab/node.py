"""Pods without Kubernetes: the lab's kubelet, laying pods out and starting their processes through a runtime.

Every process goes through one handshake before it may allocate: it is placed in its container's cgroup (moved
there by the lab, or born there under runc), its ``oom_score_adj`` is set to kubelet's value (raised to the
lowest this machine allows) and both are read back from the kernel; only then does it get ``go``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence

from oomtop.lab.kubelet import (
    SANDBOX_ADJ,
    AdjPolicy,
    Resources,
    allocatable,
    container_adj,
    pod_limit,
    pod_qos,
    write_adj,
)
from oomtop.lab.layout import CgroupTree, memory_cgroup_of
from oomtop.lab.procs import LabProcess, Pipes, hog_argv
from oomtop.lab.runtime import Container, Pod, Runtime, container_id
from oomtop.model import QosClass

READY_TIMEOUT_S = 20.0


class LabRuntimeError(Exception):
    """Something the lab needed from the kernel or the runtime failed mid-run (exit status 1, after cleanup)."""


class LabNode:
    """The lab's kubelet: pod cgroups, limits and adj values, and the processes of every container."""

    def __init__(self, tree: CgroupTree, runtime: Runtime, policy: AdjPolicy, capacity_bytes: int) -> None:
        self.tree = tree
        self.layout = tree.layout
        self.runtime = runtime
        self.policy = policy
        self.capacity_bytes = capacity_bytes
        self.pods: list[Pod] = []
        self.lab_pids: set[int] = set()  # every pid the lab ever started (read by other threads)
        self.processes: list[LabProcess] = []
        self._lock = threading.RLock()
        self._closed = False
        self.check_stop: Callable[[], None] = lambda: None  # raises when the run is being stopped

    # --------------------------------------------------------------------------------------------- the node

    def setup(self) -> None:
        """The lab parent (limited to the node capacity), kubepods (the allocatable memory) and the QoS levels."""
        self.tree.check_root()
        self.tree.create(self.layout.parent, self.capacity_bytes)
        self.tree.create(self.layout.kubepods, allocatable(self.capacity_bytes))
        for level in self.layout.qos_levels():
            self.tree.create(level)

    # ------------------------------------------------------------------------------------------------ pods

    def add_pod(self, name: str, containers: Sequence[tuple[str, Resources]], namespace: str = "lab") -> Pod:
        """Create the pod's cgroup and start its sandbox; its containers start with their first process."""
        with self._lock:
            self._check_open()
            specs = [resources for _name, resources in containers]
            qos = pod_qos(specs)
            uid = str(uuid.uuid4())
            path = self.layout.pod(qos, uid)
            limit = pod_limit(specs) if qos is not QosClass.BEST_EFFORT else None
            pod = Pod(name, namespace, uid, qos, path, limit, sandbox_id=container_id())
            self.tree.create(path, pod.limit_bytes)
            self.pods.append(pod)
            pod.sandbox = Container(
                pod,
                "pause",
                pod.sandbox_id,
                self.layout.container(path, pod.sandbox_id),
                Resources(),
                SANDBOX_ADJ,
                self.policy.effective(SANDBOX_ADJ),
                sandbox=True,
            )
            for cname, resources in containers:
                wanted = container_adj(qos, resources, self.capacity_bytes)
                cid = container_id()
                pod.containers[cname] = Container(
                    pod, cname, cid, self.layout.container(path, cid), resources, wanted, self.policy.effective(wanted)
                )
        sandbox = self._start(pod.sandbox, "pause", hog_argv("pause", 0, 0, 0, pause=True), role="sandbox")
        self.release(sandbox)
        return pod

    def start(
        self,
        container: Container,
        name: str,
        mib: float,
        step_mib: float = 4.0,
        delay_ms: float = 0.0,
        release: bool = True,
    ) -> LabProcess:
        """A hog in ``container`` (its first process starts the container), handshaken; released unless told not."""
        proc = self._start(container, name, hog_argv(name, mib, step_mib, delay_ms))
        proc.mib = mib
        if release:
            self.release(proc, timeout_s=READY_TIMEOUT_S + mib / max(step_mib, 0.1) * delay_ms / 1000)
        return proc

    def release(self, proc: LabProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
        proc.release()
        self.wait_ready(proc, timeout_s)

    def wait_ready(self, proc: LabProcess, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:  # in short waits, so a Ctrl-C does not wait for a slowly growing hog
            self.check_stop()
            answer = proc.read_answer(min(0.2, max(0.001, deadline - time.monotonic())))
            if answer is not None or time.monotonic() >= deadline:
                break
        if answer == "R":
            proc.ready_at = time.monotonic()
            return
        if answer is None:
            raise LabRuntimeError(f"{proc.name} (pid {proc.pid}) did not finish allocating within {timeout_s:.0f} s")
        if answer == "":
            raise LabRuntimeError(f"{proc.name} (pid {proc.pid}) died before it was ready")
        raise LabRuntimeError(f"{proc.name} (pid {proc.pid}) failed: {answer[2:] or answer}")

    def remove_pod(self, pod: Pod) -> list[str]:
        with self._lock:
            problems = self._stop_pod(pod)
            problems += self.tree.remove(pod.path)
            if pod in self.pods:
                self.pods.remove(pod)
            return problems

    # ------------------------------------------------------------------------------------------- handshake

    def _start(self, container: Container, name: str, argv: list[str], role: str = "process") -> LabProcess:
        with self._lock:
            self._check_open()
            proc = LabProcess(name, role, container.path, Pipes(), wanted_adj=container.wanted_adj, container=container)
            first = not container.started
            if first and not self.runtime.creates_cgroups:
                self.tree.create(container.path, container.limit_bytes)
                if not container.sandbox:
                    self.tree.set_oom_group(container.path)
            self.processes.append(proc)
            container.processes.append(proc)
            try:
                self.runtime.start(container, proc, argv, first)
            finally:
                proc.pipes.child_started()
            if proc.pid:
                self.lab_pids.add(proc.pid)
            container.started = True
            if first and self.runtime.creates_cgroups:
                self.tree.adopt(container.path)
                held = self.tree.limit(container.path)
                if held != container.limit_bytes:
                    raise LabRuntimeError(
                        f"{container.path}: the runtime set a limit of {held}, "
                        f"kubelet asked for {container.limit_bytes}"
                    )
        if not self.runtime.creates_cgroups:
            self.tree.move(proc.pid, container.path)
        self._check_placed(proc)
        try:
            proc.adj = write_adj(proc.pid, container.adj)
        except OSError as error:
            raise LabRuntimeError(
                f"cannot set oom_score_adj {container.adj} on {name} (pid {proc.pid}): {error.strerror}"
            ) from None
        if proc.adj != container.adj:
            raise LabRuntimeError(
                f"{name} (pid {proc.pid}): wrote oom_score_adj {container.adj}, the kernel holds {proc.adj}"
            )
        return proc

    def _check_placed(self, proc: LabProcess) -> None:
        deadline = time.monotonic() + 5.0
        while True:
            where = memory_cgroup_of(proc.pid, self.tree.version)
            if where == proc.cgroup:
                return
            if time.monotonic() > deadline or not proc.alive():
                raise LabRuntimeError(
                    f"{proc.name} (pid {proc.pid}) is in memory cgroup {where}, expected {proc.cgroup}"
                )
            time.sleep(0.005)

    def _check_open(self) -> None:
        if self._closed:
            raise LabRuntimeError("the lab is shutting down")

    # --------------------------------------------------------------------------------------------- teardown

    def _stop_pod(self, pod: Pod) -> list[str]:
        problems: list[str] = []
        for container in [*pod.containers.values(), *([pod.sandbox] if pod.sandbox else [])]:
            if container.started or container.processes:
                try:
                    problems += self.runtime.stop_container(container)
                except Exception as error:  # teardown goes on: every problem is reported  # noqa: BLE001
                    problems.append(f"stopping {container.label}: {error}")
            for proc in container.processes:
                proc.close()
        return problems

    def close(self) -> list[str]:
        """Every process and cgroup of the lab, gone (idempotent; safe from any thread)."""
        with self._lock:
            self._closed = True
            problems: list[str] = []
            for pod in reversed(self.pods):
                problems += self._stop_pod(pod)
            for proc in self.processes:  # anything started outside a pod's bookkeeping
                if proc.alive():
                    proc.kill()
                proc.close()
            self.pods.clear()
            try:
                problems += self.runtime.close()
            except Exception as error:  # teardown goes on: every problem is reported  # noqa: BLE001
                problems.append(f"closing the runtime: {error}")
            problems += self.tree.remove_all()
            return problems

    # ----------------------------------------------------------------------------------------------- views

    def process_of(self, pid: int) -> LabProcess | None:
        for proc in reversed(self.processes):
            if proc.pid == pid:
                return proc
        return None
