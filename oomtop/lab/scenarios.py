"""The lab's scenarios: what to build, what to push over its limit, and who should die.

Each scenario is a function of a :class:`~oomtop.lab.built.BuiltLab` (what the session built): it adds pods to the
lab's node, starts hogs, waits for oomtop to have seen them (:meth:`~oomtop.lab.built.BuiltLab.settle`), and then
lets one process allocate (:meth:`~oomtop.lab.built.BuiltLab.provoke`), which makes the kernel kill; every kill is
checked.  Every scenario keeps its outcome decisive: the process meant to die leads every other candidate by far
more than what the lab cannot know exactly (see :mod:`oomtop.lab.rounds`, which plans the ``random`` rounds), so a
wrong prediction means oomtop is wrong, not that the scenario was a coin flip.
"""

from __future__ import annotations

from oomtop.lab.built import BuiltLab, Scenario
from oomtop.lab.kubelet import MIB, Resources, allocatable, format_quantity
from oomtop.lab.node import LabRuntimeError
from oomtop.lab.procs import LabProcess
from oomtop.lab.rounds import SLACK_MIB, plan_rounds
from oomtop.lab.runtime import Container

DEFAULT_CAPACITY = {"seed": 1 << 30, "qos": 384 * MIB, "multi": 1 << 30, "random": 512 * MIB}
MIN_CAPACITY = {"seed": 256 * MIB, "qos": 256 * MIB, "multi": 384 * MIB, "random": 384 * MIB}


def room(lab: BuiltLab, container: Container) -> float:
    """MiB that ``container`` may still allocate: the least headroom of its cgroup and its limited ancestors."""
    layout = lab.tree.layout
    path, best = container.path, float("inf")
    while layout.owns(path):
        if lab.tree.limit(path) is not None:
            best = min(best, lab.headroom(path))
        path = path.rsplit("/", 1)[0]
    if best == float("inf"):
        raise LabRuntimeError(f"{container.label} has no limit above it")
    return best


def _start_all(lab: BuiltLab, plans: list[tuple[Container, str, float]]) -> list[LabProcess]:
    """Start several hogs, then release them together and wait until each holds its memory."""
    procs = [lab.node.start(container, name, mib, 4, lab.delay_ms(4), release=False) for container, name, mib in plans]
    for proc in procs:
        proc.release()
    for proc in procs:
        lab.node.wait_ready(proc, 20.0 + lab.pace_s * proc.mib / 100)
    return procs


# --------------------------------------------------------------------------------------------------- seed


def seed(lab: BuiltLab) -> None:
    """A Burstable pod limited to 123Mi; its container runs a 100 MiB hog, then a second one of 50 MiB: the first
    dies, because it is the biggest in the pod and both carry the container's oom_score_adj."""
    node = lab.node
    pod = node.add_pod("seed", [("app", Resources(64 * MIB, 123 * MIB))])
    app = pod.containers["app"]
    lab.emit(
        f"seed: pod {pod.label} is {pod.qos.value} (memory request 64Mi, limit 123Mi: its pod and container "
        f"cgroups get 123Mi); kubelet gives its container oom_score_adj {app.wanted_adj}",
        key="lab-step",
    )
    lab.pause(1.0)
    main = node.start(app, "app-main", 100, 2, lab.delay_ms(2))
    lab.settle()
    lab.emit(
        "seed: app-main holds 100 MiB; app-exec starts in the same container and grows towards 50 MiB", key="lab-step"
    )
    lab.pause(1.5)
    lab.provoke(lab.trigger(app, "app-exec", 50), expect=main, why=True)
    lab.pause(2.0)


# ---------------------------------------------------------------------------------------------------- qos


def qos(lab: BuiltLab) -> None:
    """One pod of each QoS class under kubepods, limited to the node's allocatable memory.  The Burstable pod grows
    until kubepods is full: the BestEffort pod dies first although it holds the least (adj 1000 adds the whole
    domain to its score); grown again, the Burstable pod dies before the bigger Guaranteed one."""
    node = lab.node
    scale = lab.capacity_bytes / (384 * MIB)

    def mib(value: float) -> int:
        return max(1, int(value * scale))

    guaranteed = node.add_pod("qos-guaranteed", [("db", Resources(mib(160) * MIB, mib(160) * MIB))])
    burstable = node.add_pod("qos-burstable", [("web", Resources(mib(192) * MIB, mib(320) * MIB))])
    besteffort = node.add_pod("qos-besteffort", [("batch", Resources())])
    capacity = format_quantity(lab.capacity_bytes)
    for pod, what in (
        (guaranteed, f"request = limit = {mib(160)}Mi"),
        (burstable, f"request {mib(192)}Mi of the node's {capacity}, limit {mib(320)}Mi"),
        (besteffort, "no request, no limit"),
    ):
        container = next(iter(pod.containers.values()))
        lowered = f" (kubelet wants {container.wanted_adj})" if container.adj != container.wanted_adj else ""
        lab.emit(
            f"qos: pod {pod.label} is {pod.qos.value} ({what}): oom_score_adj {container.adj}{lowered}",
            key=f"lab-pod-{pod.name}",
        )
    db, batch, web = _start_all(
        lab,
        [
            (guaranteed.containers["db"], "db", mib(120)),
            (besteffort.containers["batch"], "batch", mib(64)),
            (burstable.containers["web"], "web", mib(16)),
        ],
    )
    lab.settle()
    kubepods = node.layout.kubepods
    lab.emit(
        f"qos: web grows until kubepods ({format_quantity(allocatable(lab.capacity_bytes))}, the node's "
        f"allocatable memory) is full",
        key="lab-step",
    )
    lab.pause(1.5)
    lab.provoke(lab.grow(web, int(lab.headroom(kubepods)) + SLACK_MIB), expect=batch, why=True)
    lab.settle()
    lab.emit("qos: web grows again, with the BestEffort pod's memory free", key="lab-step")
    lab.pause(1.5)
    lab.provoke(lab.grow(web, int(lab.headroom(kubepods)) + SLACK_MIB), expect=web, why=True)
    lab.emit(f"qos: {db.name} (Guaranteed) is still running", key="lab-step")
    lab.pause(2.0)


# -------------------------------------------------------------------------------------------------- multi


def multi(lab: BuiltLab) -> None:
    """Several processes in one container: the one with the highest score goes; with cgroup v2's
    memory.oom.group on the container (kubelet 1.28+), the whole container goes."""
    node = lab.node
    pod = node.add_pod("multi", [("workers", Resources(128 * MIB, 256 * MIB))])
    workers = pod.containers["workers"]
    group = lab.tree.version == 2
    lab.emit(
        f"multi: pod {pod.label} ({pod.qos.value}, limit 256Mi), one container with three workers; "
        + (
            "memory.oom.group is set on it (cgroup v2), so an OOM kills all of them"
            if group
            else "cgroup v1 has no memory.oom.group, so an OOM kills one process"
        ),
        key="lab-step",
    )
    _a, b, _c = _start_all(lab, [(workers, "worker-a", 40), (workers, "worker-b", 90), (workers, "worker-c", 60)])
    lab.settle()
    lab.emit("multi: worker-d starts in the same container and grows until the pod's 256Mi are used up", key="lab-step")
    lab.pause(1.5)
    lab.provoke(lab.trigger(workers, "worker-d", int(room(lab, workers)) + SLACK_MIB), expect=b, why=True)
    lab.pause(2.0)


# ------------------------------------------------------------------------------------------------- random


def random_scenario(lab: BuiltLab) -> None:
    """``random --count N --seed S``: random pods, containers, requests, limits and hog sizes, each round an OOM
    at a container's own limit or at kubepods, with a decisive winner (planned by :mod:`oomtop.lab.rounds`)."""
    node = lab.node
    capacity_mib = lab.capacity_bytes // MIB
    plans = plan_rounds(lab.options.seed, lab.options.count, node.policy, capacity_mib)
    lab.emit(f"random: {len(plans)} rounds, seed {lab.options.seed}", key="lab-step")
    for plan in plans:
        lab.check_stop()
        pods = []
        containers: list[Container] = []
        for pod_plan in plan.pods:
            pod = node.add_pod(
                pod_plan.name, [(plan.containers[ci].name, plan.containers[ci].resources) for ci in pod_plan.containers]
            )
            pods.append(pod)
            containers += [pod.containers[plan.containers[ci].name] for ci in pod_plan.containers]
        hogs = {}
        starts = []
        for ci, spec in enumerate(plan.containers):
            for hi, mib in enumerate(spec.hogs):
                starts.append(((ci, hi), (containers[ci], f"r{plan.index:02d}c{ci}h{hi}", mib)))
        for key, proc in zip([key for key, _ in starts], _start_all(lab, [args for _, args in starts]), strict=False):
            hogs[key] = proc
        lab.settle()
        trigger = containers[plan.trigger]
        cap = int(room(lab, trigger)) + SLACK_MIB
        lab.emit(
            f"round {plan.index}/{len(plans)}: {plan.kind}-level, {len(pods)} pods, {len(hogs)} hogs; "
            f"a process in {trigger.label} grows {cap} MiB",
            key="lab-step",
        )
        lab.provoke(lab.trigger(trigger, f"r{plan.index:02d}grow", cap), expect=hogs[plan.winner])
        for pod in pods:
            node.remove_pod(pod)


SCENARIOS: dict[str, Scenario] = {
    "seed": seed,
    "qos": qos,
    "multi": multi,
    "random": random_scenario,
}

__all__ = ["DEFAULT_CAPACITY", "MIN_CAPACITY", "SCENARIOS"]
