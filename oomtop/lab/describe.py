"""How the lab names what it talks about: a process by its container, a cgroup by its pod or container, an
``oom_score_adj`` by the kubelet rule that gave it, and a prediction by the scores behind it (the "why" lines).

These only read: a Sample, the LabNode's bookkeeping (its pods and processes) and a verdict of
:func:`oomtop.rank.predict`.  They are kept apart from the kill checks that use them so the checks and the
report can both use them without importing each other, and so the wording can be tested with hand-made data.
"""

from __future__ import annotations

from oomtop.lab.kubelet import format_quantity
from oomtop.lab.node import LabNode
from oomtop.lab.procs import LabProcess
from oomtop.lab.runtime import Container
from oomtop.model import CgroupKind, QosClass, Sample
from oomtop.rank import DomainVerdict
from oomtop.text import format_bytes, pad, printable

WHY_CANDIDATES = 5  # the why lines list this many candidates; the rest are counted


def container_of(proc: LabProcess | None) -> Container | None:
    """The lab container ``proc`` runs in (LabProcess holds it as ``object``: the runtime module imports procs)."""
    container = proc.container if proc is not None else None
    return container if isinstance(container, Container) else None


def label(proc: LabProcess | None) -> str:
    """namespace/pod/container of the process, or "?" for a pid the lab did not start."""
    container = container_of(proc)
    return container.label if container is not None else "?"


def adj_reason(proc: LabProcess | None) -> str:
    """Why the process carries its ``oom_score_adj``: its pod's QoS class, and where the machine raised kubelet's
    value (no CAP_SYS_RESOURCE) the value kubelet wanted."""
    container = container_of(proc)
    if container is None:
        return ""
    qos = container.pod.qos
    lowered = container.adj != container.wanted_adj
    if container.sandbox:
        return f"(sandbox; runtime sets {container.wanted_adj})" if lowered else "(sandbox)"
    if qos is QosClass.GUARANTEED:
        return f"(Guaranteed; kubelet sets {container.wanted_adj})" if lowered else "(Guaranteed)"
    if qos is QosClass.BEST_EFFORT:
        return "(BestEffort)"
    request = container.resources.effective_request
    return f"(Burstable, request {format_quantity(request) if request else 'none'})"


def where(path: str | None, node: LabNode, sample: Sample | None = None) -> str:
    """A cgroup path as the user knows it: as oomtop's Sample names it (the product's own naming), else as the
    lab made it, else the path itself."""
    if path is None:
        return "?"
    if sample is not None:
        named = _named_in_sample(path, sample)
        if named is not None:
            return named
    for pod in node.pods:
        if pod.path == path:
            return f"pod {pod.label}"
        for container in pod.containers.values():
            if container.path == path:
                return f"container {container.label}"
    if path == node.layout.kubepods:
        return "kubepods"
    return path


def _named_in_sample(path: str, sample: Sample) -> str | None:
    for cgroup in sample.cgroups:
        if cgroup.path == path:
            identity = cgroup.identity
            if identity.kind is CgroupKind.POD and identity.pod is not None:
                return f"pod {identity.label}"
            if identity.kind is CgroupKind.CONTAINER and identity.pod is not None:
                return f"container {identity.pod.namespace}/{identity.pod.name}/{identity.label}"
            if identity.kind is CgroupKind.KUBEPODS:
                return "kubepods"
    return None


def why_lines(verdict: DomainVerdict, sample: Sample, node: LabNode) -> list[str]:
    """The prediction explained: the domain and its limit, the top candidates with the score formula's inputs,
    and the memory.oom.group that takes a whole cgroup."""
    cgroups = {c.path: c for c in sample.cgroups}
    domain = cgroups.get(verdict.domain)
    per_point = verdict.totalpages // 1000
    limit = domain.limit_bytes if domain is not None else None
    lines = [
        (
            f"  why: {where(verdict.domain, node, sample)} hit its limit of {format_bytes(limit)} "
            f"({verdict.totalpages} pages); each process scores rss pages + oom_score_adj x {per_point}:"
        )
    ]
    victim = verdict.victim.pid if verdict.victim else None
    for rank, candidate in enumerate(verdict.candidates[:WHY_CANDIDATES]):
        task = candidate.task
        proc = node.process_of(task.pid)
        mark = "<- dies" if task.pid == victim else ""
        lines.append(
            f"    {rank + 1}. {pad(printable(task.comm), 13)} pid {task.pid:<7} {pad(label(proc), 34)} "
            f"rss {format_bytes(task.rss_bytes):>6}  adj {task.oom_score_adj:>5} "
            f"{pad(adj_reason(proc), 34)} points {candidate.points:>7} {mark}".rstrip()
        )
    if len(verdict.candidates) > WHY_CANDIDATES:
        lines.append(f"    ... and {len(verdict.candidates) - WHY_CANDIDATES} more")
    if verdict.group_path is not None:
        lines.append(
            f"    memory.oom.group is set on {where(verdict.group_path, node, sample)}: "
            f"all {len(verdict.group_victims)} of its processes die together"
        )
    return lines
