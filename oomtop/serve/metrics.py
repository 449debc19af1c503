"""The metric families ``oomtop serve`` exports, built from one Sample and the kills the watcher reported.

Pure: no I/O, no clock of its own, no HTTP.  :class:`KillLedger` keeps oomtop's own kill counters (they never
reset when a killed container's cgroup is removed and recreated, unlike cAdvisor's); :func:`sample_families`
turns a :class:`~oomtop.report.View` into gauges.  Everything follows Prometheus' naming conventions: base units
(``_bytes``, ``_seconds``), ``_total`` counters, ``_info`` for build information.

Label values from the node are untrusted and unbounded (process names are chosen by any user, a node may have
thousands of plain cgroups): :class:`Cap` bounds each such label to a fixed number of values, first come first
served, the rest ``other`` (a counter's series never changes its labels halfway through its life).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from oomtop.model import Cgroup, CgroupKind, ContainerRef, OomEvent, PodRef, QosClass
from oomtop.rank import DomainVerdict, badness_points, expected_kubelet_adj, normalised_score
from oomtop.report import View

PREFIX = "oomtop_"
OTHER = "other"
MAX_COMMS = 20  # victim_comm values kept per node: the rest are "other"
MAX_PLAIN_CGROUPS = 100  # limited cgroups outside Kubernetes exported by path
WORKLOAD_KINDS = (CgroupKind.POD, CgroupKind.CONTAINER)
DOMAIN_KIND = {  # the OOM domain label: which limit ran out
    CgroupKind.CONTAINER: "container",
    CgroupKind.POD: "pod",
    CgroupKind.KUBEPODS: "kubepods",
    CgroupKind.QOS: "qos",
    CgroupKind.ROOT: "node",
}
OUTCOMES = ("right", "wrong", "unknown")

Labels = tuple[tuple[str, str], ...]


class Cap:
    """At most ``limit`` distinct values of one label; later newcomers are reported as ``other``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) < self.limit:
            self._seen.add(value)
            return value
        return OTHER


def pod_labels(pod: PodRef | None, container: ContainerRef | None) -> dict[str, str]:
    """namespace, pod, pod_uid, container, qos: where known (Prometheus drops an empty label anyway)."""
    labels: dict[str, str] = {}
    if pod is not None:
        if pod.namespace and pod.name:
            labels["namespace"], labels["pod"] = pod.namespace, pod.name
        labels["pod_uid"] = pod.uid
        labels["qos"] = pod.qos.value
    if container is not None:
        labels["container"] = container.label
    return labels


def _metric(name: str, documentation: str, kind: str, unit: str = "") -> Metric:
    return Metric(PREFIX + name, documentation, kind, unit)


@dataclass
class KillLedger:
    """oomtop's own count of OOM kills and of how its predictions fared; kills from before the start (the ring
    buffer's history) are not counted: they happened before this process could see them happen."""

    comms: Cap = field(default_factory=lambda: Cap(MAX_COMMS))
    plain: Cap = field(default_factory=lambda: Cap(MAX_PLAIN_CGROUPS))
    kills: dict[Labels, int] = field(default_factory=dict)
    predictions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))

    def add(self, event: OomEvent) -> bool:
        """Count one kill report (``count`` kills for a counter-only event); False when it is history."""
        if event.historical:
            return False
        labels = pod_labels(event.pod, event.container)
        if event.pod is None and event.kind == "memcg":
            labels["cgroup"] = self.plain(event.task_cgroup or event.oom_cgroup or event.detected_in or "")
        labels["victim_comm"] = self.comms(event.victim.comm or "") if event.victim.pid is not None else ""
        labels["kind"] = event.kind
        key = tuple(sorted((k, v) for k, v in labels.items() if v))
        killed = max(1, len(event.killed)) if event.victim.pid is not None else max(1, event.count)
        self.kills[key] = self.kills.get(key, 0) + killed
        self.predictions[_outcome(event)] += 1
        return True

    def families(self) -> Iterator[Metric]:
        kills = _metric(
            "oom_kills",
            "OOM kills seen since oomtop started, by the victim's pod and container "
            "(kept by oomtop: a recreated container's count goes on)",
            "counter",
        )
        for labels, count in sorted(self.kills.items()):
            kills.add_sample(PREFIX + "oom_kills_total", dict(labels), count)
        yield kills
        predicted = _metric(
            "oom_kill_predictions",
            "OOM kills by whether oomtop's last prediction before the kill "
            "named the victim (unknown: no prediction, or the victim is not known)",
            "counter",
        )
        for outcome in OUTCOMES:
            predicted.add_sample(PREFIX + "oom_kill_predictions_total", {"outcome": outcome}, self.predictions[outcome])
        yield predicted


def _outcome(event: OomEvent) -> str:
    if event.predicted_victim_pid is None or event.victim.pid is None:
        return "unknown"
    return "right" if event.predicted_victim_pid == event.victim.pid else "wrong"


def _workloads(view: View, plain: Cap) -> Iterator[tuple[Cgroup, dict[str, str]]]:
    """Pods and containers with their labels, then the limited cgroups outside Kubernetes by path (capped)."""
    for cgroup in view.sample.cgroups:
        identity = cgroup.identity
        if identity.kind in WORKLOAD_KINDS and identity.pod is not None:
            yield cgroup, pod_labels(identity.pod, identity.container)
        elif identity.pod is None and identity.kind not in DOMAIN_KIND and cgroup.limit_bytes is not None:
            path = plain(cgroup.path)
            if path != OTHER:
                yield cgroup, {"cgroup": path}


def sample_families(view: View, plain: Cap, comms: Cap) -> list[Metric]:
    """The gauges of one Sample: memory per pod and container, kubelet's adj against the kernel's, and who the
    kernel would kill next in every OOM domain."""
    usage = _metric("memory_usage", "Memory charged to the cgroup (memory.current / usage_in_bytes)", "gauge", "bytes")
    wset = _metric("memory_working_set", "Usage minus inactive file pages (what kubelet evicts on)", "gauge", "bytes")
    limit = _metric("memory_limit", "The cgroup's own memory limit (only where it has one)", "gauge", "bytes")
    effective = _metric(
        "memory_effective_limit",
        "The limit that applies: the cgroup's own or its nearest limited ancestor's",
        "gauge",
        "bytes",
    )
    headroom = _metric("memory_headroom", "Effective limit minus working set", "gauge", "bytes")
    adj = _metric(
        "oom_score_adj",
        "oom_score_adj of a container: kind=expected is kubelet's QoS policy, "
        "kind=actual the largest value its processes hold",
        "gauge",
    )
    for cgroup, labels in _workloads(view, plain):
        usage.add_sample(usage.name, labels, cgroup.usage_bytes)
        working = cgroup.working_set_bytes
        wset.add_sample(wset.name, labels, working)
        if cgroup.limit_bytes is not None:
            limit.add_sample(limit.name, labels, cgroup.limit_bytes)
        applies = view.effective_limit(cgroup.path)
        if applies is not None:
            effective.add_sample(effective.name, labels, applies)
            headroom.add_sample(headroom.name, labels, applies - working)
        if cgroup.identity.kind is CgroupKind.CONTAINER:
            _adj_samples(adj, view, cgroup, labels)
    return [usage, wset, limit, effective, headroom, adj, _victims(view, plain, comms)]


def _adj_samples(adj: Metric, view: View, cgroup: Cgroup, labels: dict[str, str]) -> None:
    qos = cgroup.identity.qos
    tasks = view.tasks_by_cgroup.get(cgroup.path, ())
    actual = max((task.oom_score_adj for task in tasks), default=None)
    if actual is not None:
        adj.add_sample(adj.name, {**labels, "kind": "actual"}, actual)
    if qos is not None and qos is not QosClass.BURSTABLE:  # Burstable: depends on the request, not on the node
        expected = expected_kubelet_adj(qos, None, view.sample.node.mem_total_bytes)
        adj.add_sample(adj.name, {**labels, "kind": "expected"}, expected)


def _victims(view: View, plain: Cap, comms: Cap) -> Metric:
    """The kernel's pick in each OOM domain, by its score (points per 1000 of the domain's pages), labelled with
    the domain and the victim's container and process name; no pid, so a restart makes no new series."""
    victims = _metric(
        "predicted_victim_score",
        "oom_badness score (per 1000 pages of the domain) of the process "
        "the kernel would kill next if this domain ran out of memory",
        "gauge",
    )
    page_size = view.sample.node.page_size
    domains: list[tuple[Cgroup | None, DomainVerdict]] = [
        *((view.by_path.get(path), verdict) for path, verdict in view.prediction.by_domain.items()),
        (None, view.prediction.node),
    ]
    for cgroup, verdict in domains:
        victim = verdict.victim
        points = badness_points(victim, verdict.totalpages, page_size) if victim is not None else None
        if victim is None or points is None:
            continue
        labels = _domain_labels(cgroup, plain)
        if labels is None:
            continue
        holder = view.by_path.get(victim.cgroup)
        if holder is not None and holder.identity.pod is not None:  # victim_namespace, victim_pod, ...: joinable
            victim_of = pod_labels(holder.identity.pod, holder.identity.container)
            labels.update({f"victim_{k}": v for k, v in victim_of.items() if k != "qos"})
        labels["victim_comm"] = comms(victim.comm)
        victims.add_sample(victims.name, labels, normalised_score(points, verdict.totalpages))
    return victims


def _domain_labels(cgroup: Cgroup | None, plain: Cap) -> dict[str, str] | None:
    """domain=container|pod|qos|kubepods|node|cgroup and the domain's own pod labels; None for a plain cgroup
    beyond the cap."""
    if cgroup is None:
        return {"domain": "node"}
    identity = cgroup.identity
    kind = DOMAIN_KIND.get(identity.kind, "cgroup")
    labels = {"domain": kind, **pod_labels(identity.pod, identity.container)}
    if kind == "cgroup" and identity.pod is None:
        path = plain(cgroup.path)
        if path == OTHER:
            return None
        labels["cgroup"] = path
    return labels
