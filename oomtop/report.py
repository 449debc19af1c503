"""Headless views of one Sample: the ``--once`` tree and the ``--once --json`` document.

Both are pure functions of a Sample and its Prediction, so they are tested on fixture Samples and match what
the UI shows.  Ordering is by kill likelihood: siblings nearest their limit first, processes by memcg score.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from oomtop.model import Cgroup, CgroupKind, QosClass, Sample, Task
from oomtop.rank import (
    KUBELET_ADJ_POLICY,
    Prediction,
    SampleIndex,
    badness_points,
    expected_kubelet_adj,
    implied_request_range,
    memcg_totalpages,
    normalised_score,
    predict,
)
from oomtop.text import fit, format_bytes, printable

BAR_WIDTH = 10


@dataclass(frozen=True, slots=True)
class View:
    """A Sample with what every headless view derives from it, computed once."""

    sample: Sample
    prediction: Prediction
    by_path: dict[str, Cgroup]
    children: dict[str, list[str]]
    tasks_by_cgroup: dict[str, list[Task]]

    @classmethod
    def of(cls, sample: Sample) -> View:
        index = SampleIndex(sample)  # its path and task maps are the View's too (read-only once built)
        children: dict[str, list[str]] = {}
        for cgroup in sample.cgroups:
            parent = cgroup.parent_path
            if parent is not None:
                children.setdefault(parent, []).append(cgroup.path)
        return cls(sample, predict(sample, index), index.cgroups, children, index.tasks_by_cgroup)

    def effective_limit(self, path: str) -> int | None:
        """The limit that applies to this cgroup: its own or its nearest limited ancestor's."""
        domain = self.prediction.nearest_limit.get(path)
        return self.by_path[domain].limit_bytes if domain else None

    def fill(self, cgroup: Cgroup) -> float:
        """Usage as a share of the limit that applies (of node RAM when nothing limits it)."""
        limit = self.effective_limit(cgroup.path) or self.sample.node.mem_total_bytes
        return cgroup.usage_bytes / limit if limit else 0.0

    def task_score(self, task: Task) -> int:
        score = self.prediction.memcg_score.get(task.key)
        if score is not None:
            return score
        node_score = self.node_score(task)
        return node_score if node_score is not None else -(10**9)

    def node_score(self, task: Task) -> int | None:
        """The task's score in a node-wide OOM; None when the kernel would never pick it."""
        totalpages = self.prediction.node.totalpages
        points = badness_points(task, totalpages, self.sample.node.page_size)
        return None if points is None else normalised_score(points, totalpages)

    def ordered_children(self, path: str) -> list[Cgroup]:
        kids = [self.by_path[child] for child in self.children.get(path, ())]
        return sorted(kids, key=lambda c: (-self.fill(c), -c.usage_bytes, c.path))

    def ordered_tasks(self, path: str) -> list[Task]:
        """A cgroup's own processes, highest score first (then larger rss, then lower pid)."""
        tasks = self.tasks_by_cgroup.get(path)
        if not tasks:
            return []
        memcg_score = self.prediction.memcg_score

        def order(task: Task) -> tuple[int, int, int]:  # task_score() inlined: one call per process per Sample
            score = memcg_score.get((task.pid, task.start_ticks))
            if score is None:
                score = self.task_score(task)
            return (-score, -(task.rss_anon_bytes + task.rss_file_bytes + task.rss_shmem_bytes), task.pid)

        return sorted(tasks, key=order)

    def victim_domains(self, task: Task) -> list[str]:
        """The limited cgroups whose OOM would kill this task next."""
        return [
            domain
            for domain, verdict in self.prediction.by_domain.items()
            if verdict.victim is not None and verdict.victim.key == task.key
        ]


def cgroup_label(cgroup: Cgroup) -> str:
    identity = cgroup.identity
    if identity.kind is CgroupKind.ROOT:
        return "node"
    if identity.kind is CgroupKind.POD and identity.pod is not None:
        pod = identity.pod
        named = pod.label
        # Burstable and BestEffort pods sit under a row that names their class; Guaranteed ones do not.
        return f"{named} [Guaranteed]" if pod.qos is QosClass.GUARANTEED else named
    if identity.kind in (CgroupKind.CONTAINER, CgroupKind.SANDBOX, CgroupKind.CONMON) and identity.container:
        container = identity.container
        short_id = container.id[:12]
        kind = {CgroupKind.SANDBOX: "sandbox ", CgroupKind.CONMON: "conmon "}.get(identity.kind, "")
        runtime = f"{container.runtime} " if container.runtime else ""
        return f"{kind}{container.name} ({runtime}{short_id})" if container.name else f"{kind}{runtime}{short_id}"
    return identity.label or cgroup.name


def headroom_bar(fill: float | None) -> str:
    if fill is None:
        return "unlimited".ljust(BAR_WIDTH + 7)
    filled = min(BAR_WIDTH, round(fill * BAR_WIDTH))
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {min(fill, 9.99) * 100:3.0f}%"


def render_tree(sample: Sample, width: int = 120) -> str:
    """The ``--once`` text: node facts, the node-wide victim, then the cgroup tree with its processes."""
    view = View.of(sample)
    node = sample.node
    lines = [
        f"{printable(node.hostname)}  kernel {printable(node.kernel_release)}  cgroup {node.cgroup_layout}"
        f"  memory {format_bytes(node.mem_total_bytes)} total, {format_bytes(node.mem_available_bytes)} available"
        f"  swap {format_bytes(node.swap_total_bytes)}",
    ]
    node_victim = view.prediction.node.victim
    if node_victim is not None:
        lines.append(
            f"node-wide OOM would kill: {node_victim.pid} {printable(node_victim.comm)}"
            f" (rss {format_bytes(node_victim.rss_bytes)}, oom_score {node_victim.oom_score})"
        )
    for warning in sample.warnings:
        lines.append(f"note: {warning}")
    name_width = max(30, width - 70)
    lines.append("")
    lines.append(
        f"{'CGROUP / PROCESS':<{name_width}} {'USAGE':>7} {'WSET':>7} {'LIMIT':>7} {'HEADROOM':<17} "
        f"{'PEAK':>7} {'KILLS':>5}"
    )
    roots = [c for c in sample.cgroups if c.parent_path is None or c.parent_path not in view.by_path]
    for root in roots:
        for depth, item in _walk(view, root, 0):
            indent = "  " * depth
            if isinstance(item, Cgroup):
                lines.append(_cgroup_line(view, item, indent, name_width))
            else:
                lines.append(_task_line(view, item, indent, name_width))
    if not sample.cgroups:
        for task in sorted(sample.tasks, key=lambda t: -t.rss_bytes):
            lines.append(_task_line(view, task, "", name_width))
    return "\n".join(lines) + "\n"


def _walk(view: View, cgroup: Cgroup, depth: int) -> Iterator[tuple[int, Cgroup | Task]]:
    yield depth, cgroup
    for task in view.ordered_tasks(cgroup.path):
        yield depth + 1, task
    for child in view.ordered_children(cgroup.path):
        yield from _walk(view, child, depth + 1)


def _cgroup_line(view: View, cgroup: Cgroup, indent: str, name_width: int) -> str:
    """One cgroup's row; its label is cut and padded by terminal cells (a CJK or emoji name is wider than it is
    long), so the figures after it stay in their columns."""
    label = fit(indent + printable(cgroup_label(cgroup)), name_width)
    limit = cgroup.limit_bytes
    bar = headroom_bar(cgroup.usage_bytes / limit if limit else None)
    return (
        f"{label} {format_bytes(cgroup.usage_bytes):>7} {format_bytes(cgroup.working_set_bytes):>7}"
        f" {format_bytes(limit):>7} {bar:<17} {format_bytes(cgroup.peak_bytes):>7} {cgroup.oom_kills:>5}"
    )


def _task_line(view: View, task: Task, indent: str, name_width: int) -> str:
    marks = []
    domains = view.victim_domains(task)
    if domains:
        marks.append("<< next victim of " + ", ".join(_domain_name(view, d) for d in domains))
    if view.prediction.node.victim is not None and view.prediction.node.victim.key == task.key:
        marks.append("<< node-wide victim")
    score = view.prediction.memcg_score.get(task.key)
    figures = (
        f"rss {format_bytes(task.rss_bytes)}  adj {task.oom_score_adj}  oom_score {task.oom_score}"
        f"  memcg_score {score if score is not None else '-'}"
    )
    text = f"{indent}{task.pid} {printable(task.comm)}"
    return f"{fit(text, name_width)} {figures}  {'  '.join(marks)}".rstrip()


def _domain_name(view: View, path: str) -> str:
    cgroup = view.by_path[path]
    kind = cgroup.identity.kind
    if kind is CgroupKind.CONTAINER:
        return "container"
    if kind is CgroupKind.POD:
        return "pod"
    return printable(cgroup_label(cgroup))


# ------------------------------------------------------------------------------------------------------ JSON


def to_json(sample: Sample) -> dict[str, Any]:
    """The ``--once --json`` document (contract in the README; more fields may be added, none removed)."""
    view = View.of(sample)
    node = sample.node
    prediction = view.prediction
    node_verdict = prediction.node
    return {
        "time": sample.time,
        "node": {
            "hostname": node.hostname,
            "kernel_release": node.kernel_release,
            "cgroup_version": node.cgroup_version,
            "cgroup_layout": node.cgroup_layout,
            "mem_total_bytes": node.mem_total_bytes,
            "mem_available_bytes": node.mem_available_bytes,
            "swap_total_bytes": node.swap_total_bytes,
            "swap_free_bytes": node.swap_free_bytes,
            "page_size": node.page_size,
            "predicted_victim_pid": node_verdict.victim.pid if node_verdict.victim else None,
        },
        "cgroups": [_cgroup_json(view, cgroup) for cgroup in sample.cgroups],
        "tasks": [_task_json(view, task) for task in sample.tasks],
        "warnings": list(sample.warnings),
    }


def _cgroup_json(view: View, cgroup: Cgroup) -> dict[str, Any]:
    identity = cgroup.identity
    verdict = view.prediction.by_domain.get(cgroup.path)
    pod = identity.pod
    container = identity.container
    result: dict[str, Any] = {
        "path": cgroup.path,
        "kind": identity.kind.value,
        "label": identity.label,
        "usage_bytes": cgroup.usage_bytes,
        "limit_bytes": cgroup.limit_bytes,
        "working_set_bytes": cgroup.working_set_bytes,
        "high_bytes": cgroup.high_bytes,
        "peak_bytes": cgroup.peak_bytes,
        "failcnt": cgroup.failcnt,
        "anon_bytes": cgroup.anon_bytes,
        "file_bytes": cgroup.file_bytes,
        "inactive_file_bytes": cgroup.inactive_file_bytes,
        "shmem_bytes": cgroup.shmem_bytes,
        "swap_bytes": cgroup.swap_bytes,
        "swap_limit_bytes": cgroup.swap_limit_bytes,
        "oom_domain_bytes": _oom_domain_bytes(view, cgroup),
        "oom_events": cgroup.oom_events,
        "oom_kills": cgroup.oom_kills,
        "oom_kills_local": cgroup.oom_kills_local,
        "oom_group": cgroup.oom_group,
        "pressure": None,
        "pids": list(cgroup.pids),
        "qos": identity.qos.value if identity.qos else None,
        "pod": {"uid": pod.uid, "name": pod.name, "namespace": pod.namespace, "qos": pod.qos.value} if pod else None,
        "container": (
            {"id": container.id, "name": container.name, "runtime": container.runtime, "sandbox": container.is_sandbox}
            if container
            else None
        ),
        "predicted_victim_pid": verdict.victim.pid if verdict and verdict.victim else None,
        "predicted_kill_pids": [task.pid for task in verdict.group_victims] if verdict else [],
        "oom_group_path": verdict.group_path if verdict else None,
    }
    if cgroup.pressure is not None:
        p = cgroup.pressure
        result["pressure"] = {
            "some_avg10": p.some_avg10,
            "some_avg60": p.some_avg60,
            "some_avg300": p.some_avg300,
            "some_total_us": p.some_total_us,
            "full_avg10": p.full_avg10,
            "full_avg60": p.full_avg60,
            "full_avg300": p.full_avg300,
            "full_total_us": p.full_total_us,
        }
    if identity.kind is CgroupKind.CONTAINER and identity.qos is not None:
        result["oom_score_adj"] = qos_adj(view, cgroup, identity.qos)
    return result


def _oom_domain_bytes(view: View, cgroup: Cgroup) -> int | None:
    """The size of this cgroup's OOM domain as the kernel counts it (``mem_cgroup_get_max()``: its limit plus the
    swap it may use, capped by the node's swap), in bytes; None without a limit of its own."""
    node = view.sample.node
    pages = memcg_totalpages(cgroup, node.swap_total_bytes, node.page_size)
    return None if pages is None else pages * node.page_size


def qos_adj(view: View, cgroup: Cgroup, qos: QosClass) -> dict[str, Any]:
    """kubelet's expected oom_score_adj for the QoS class next to the one the container's tasks hold.

    ``kubelet`` names the behaviour assumed (:data:`~oomtop.rank.KUBELET_ADJ_POLICY`).  No file on a node says
    which containers are restartable init containers (sidecars), so ``implied_request_bytes`` reads the adj as a
    regular container's, and ``implied_request_bytes_if_sidecar`` as a sidecar's: a sidecar whose adj equals the
    highest of its pod's other containers may have been capped at it (its own request is then anything up to
    the range), and one whose adj is above all of them cannot be a sidecar under that kubelet (null).
    """
    tasks = view.tasks_by_cgroup.get(cgroup.path, [])
    actual = max((task.oom_score_adj for task in tasks), default=None)
    capacity = view.sample.node.mem_total_bytes
    expected = None if qos is QosClass.BURSTABLE else expected_kubelet_adj(qos, None, capacity)
    implied = implied_request_range(actual, capacity) if qos is QosClass.BURSTABLE and actual is not None else None
    others = [
        max((task.oom_score_adj for task in view.tasks_by_cgroup.get(path, [])), default=None)
        for path in view.children.get(cgroup.parent_path or "", [])
        if path != cgroup.path and (ref := view.by_path[path].identity.container) is not None and not ref.is_sandbox
    ]
    highest_other = max((adj for adj in others if adj is not None), default=None)
    if_sidecar = None
    if implied and actual is not None and highest_other is not None and actual <= highest_other:
        if_sidecar = implied_request_range(actual, capacity, capped_sidecar=actual == highest_other)
    return {
        "expected": expected,
        "actual": actual,
        "implied_request_bytes": list(implied) if implied else None,
        "implied_request_bytes_if_sidecar": list(if_sidecar) if if_sidecar else None,
        "kubelet": KUBELET_ADJ_POLICY,
    }


def _task_json(view: View, task: Task) -> dict[str, Any]:
    domain = view.prediction.nearest_limit.get(task.cgroup)
    return {
        "pid": task.pid,
        "start_ticks": task.start_ticks,
        "comm": task.comm,
        "cmdline": task.cmdline,
        "uid": task.uid,
        "cgroup": task.cgroup,
        "rss_bytes": task.rss_bytes,
        "rss_anon_bytes": task.rss_anon_bytes,
        "rss_file_bytes": task.rss_file_bytes,
        "rss_shmem_bytes": task.rss_shmem_bytes,
        "swap_bytes": task.swap_bytes,
        "pgtables_bytes": task.pgtables_bytes,
        "oom_score": task.oom_score,
        "oom_score_adj": task.oom_score_adj,
        "memcg_score": view.prediction.memcg_score.get(task.key),
        "memcg_domain": domain,
    }
