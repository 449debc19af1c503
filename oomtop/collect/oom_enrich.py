"""What a kill event carries beyond what its detector saw: pod and container names, wall time, the prediction.

Names come from the Samples' identities, else from the node's metadata (containerd/CRI-O bundles, the kubelet's
log directories).  A container that OOMs right at its start is newer than the metadata the collector last read
(it re-reads only every few seconds), but its bundle is on disk by the time it can be killed: an unnamed cgroup's
kill re-reads the metadata, at most once per :data:`NAMES_RETRY_S` for that cgroup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

from oomtop.collect.identity import NodeNames, identify
from oomtop.collect.oom_ledger import Increment
from oomtop.collect.oom_samples import RecentSamples
from oomtop.model import ContainerRef, KilledTask, OomEvent, PodRef

NAMES_RETRY_S = 0.5  # an unnamed cgroup's kill re-reads node metadata at most this often for that cgroup
MAX_NAMES_TRIED = 4096  # cgroups remembered for NAMES_RETRY_S before the old ones are dropped


class EventEnricher:
    """Completes logged events and builds the events of kills only a counter saw."""

    def __init__(
        self,
        samples: RecentSamples,
        names: NodeNames,
        monotonic: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.names = names
        self._samples = samples
        self._monotonic = monotonic
        self._wall_clock = wall_clock
        self._names_tried: dict[str, float] = {}  # unnamed cgroup path -> when node metadata was re-read for it

    def finish(self, event: OomEvent, historical: bool, clock_offset: float) -> OomEvent:
        """Identity, wall time and the prediction of the last sample taken before the kill."""
        time_s = event.time
        if time_s is None and event.kernel_time_s is not None:
            time_s = clock_offset + event.kernel_time_s
        path = event.task_cgroup or event.oom_cgroup
        pod, container = self.identity(path, refresh=not historical)  # history: its pods are mostly long gone
        predicted = None if historical else self._samples.predicted_victim(event)
        return replace(
            event,
            time=time_s,
            historical=historical,
            pod=event.pod or pod,
            container=event.container or container,
            predicted_victim_pid=predicted,
            source=event.source or ("kmsg",),
        )

    def identity(self, path: str | None, refresh: bool = True) -> tuple[PodRef | None, ContainerRef | None]:
        """The pod and container of a cgroup: as a Sample named them, else from the node's metadata."""
        if not path:
            return None, None
        for sample in self._samples.newest_first():
            for cgroup in sample.cgroups:
                if cgroup.path == path and (cgroup.identity.pod is None or cgroup.identity.pod.name is not None):
                    return cgroup.identity.pod, cgroup.identity.container
        identity = identify(path, self.names)
        unnamed = (identity.pod is not None and identity.pod.name is None) or (
            identity.container is not None and identity.container.name is None
        )
        now = self._monotonic()
        if unnamed and refresh and now - self._names_tried.get(path, float("-inf")) > NAMES_RETRY_S:
            # A pod started since the names were read (the collector re-reads them only every few seconds): its
            # metadata (bundle, log directory) is on disk by the time it can be killed.  Once per cgroup, not
            # once per period: in a burst each new container's kill must see its own bundle.
            if len(self._names_tried) > MAX_NAMES_TRIED:
                self._names_tried = {p: t for p, t in self._names_tried.items() if now - t <= NAMES_RETRY_S}
            self._names_tried[path] = now
            self.names = self.names.refresh()
            identity = identify(path, self.names)
        return identity.pod, identity.container

    def counter_event(self, pending: Increment) -> OomEvent:
        """A kill only a counter saw: pod and container from the path, the domain and predicted victim from the
        Sample before it, no victim details.  A parent's count for a child gone since names no cgroup of the
        kill (which child is not known): only ``detected_in`` says where it was seen."""
        pod, container = self.identity(pending.path)
        domain = None
        predicted = None
        sample = self._samples.before_increment()
        if sample is not None and not pending.vanished_child:
            prediction = self._samples.prediction(sample)
            domain = prediction.nearest_limit.get(pending.path)
            verdict = prediction.by_domain.get(domain or "")
            predicted = verdict.victim.pid if verdict and verdict.victim else None
        return OomEvent(
            kind="memcg",
            time=self._wall_clock(),
            kernel_time_s=None,
            oom_cgroup=domain,
            task_cgroup=None if pending.vanished_child else pending.path,
            victim=KilledTask(pid=None, comm=None),
            killed=(),
            source=tuple(sorted(pending.sources)),
            pod=None if pending.vanished_child else pod,
            container=None if pending.vanished_child else container,
            predicted_victim_pid=predicted,
            count=pending.count,
            detected_in=pending.path,
        )
