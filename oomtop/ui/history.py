"""Usage over the last minutes, per row key: the details sparkline, the growth rate and the ``growth`` sort.

It is fed every Sample, also while the display is paused, so nothing is lost.  One point is kept per
``resolution_s`` (the newest value always replaces the open point's), in flat ``array('d')`` buffers: 1,200
keys over five minutes cost a few MiB, not the tens a deque of tuples would.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from oomtop.model import Sample
from oomtop.ui.rows import RowKey, cgroup_key

SPAN_S = 300.0
RESOLUTION_S = 1.0
GROWTH_WINDOW_S = 30.0


def trim_slack(capacity: int) -> int:
    """Points a series may hold beyond its span before the oldest are dropped (a tenth of it, at least 8)."""
    return max(8, capacity // 10)


@dataclass(slots=True)
class Series:
    times: array[float] = field(default_factory=lambda: array("d"))
    values: array[float] = field(default_factory=lambda: array("d"))

    def add(self, t: float, value: float, resolution_s: float, capacity: int) -> None:
        if self.times and t - self.times[-1] < resolution_s and len(self.times) > 1:
            # still inside the open bucket: the newest value wins, the bucket keeps its start time
            self.values[-1] = value
            return
        self.times.append(t)
        self.values.append(value)
        if len(self.times) > capacity + trim_slack(capacity):
            # Trimmed a little past the span, not at twice it: a series is full (and memory flat) once the span
            # has passed, and the del stays rare (once every ``trim_slack`` points).
            del self.times[: len(self.times) - capacity]
            del self.values[: len(self.values) - capacity]


class History:
    """``record(sample)`` on every Sample; ``values``/``growth`` for the keys the rows use."""

    def __init__(self, span_s: float = SPAN_S, resolution_s: float = RESOLUTION_S) -> None:
        self.span_s = span_s
        self.resolution_s = resolution_s
        self._capacity = max(2, int(span_s / resolution_s))
        self._series: dict[RowKey, Series] = {}
        self._latest: dict[RowKey, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._series)

    def record(self, sample: Sample) -> None:
        t = sample.monotonic
        seen: set[RowKey] = set()
        add = self._add
        for cgroup in sample.cgroups:
            key = cgroup_key(cgroup)
            if key in seen:
                key = ("cgroup", cgroup.path)
            add(key, t, cgroup.usage_bytes)
            seen.add(key)
        # every process, every Sample: the per-task work of _add() inlined
        series_of, latest, resolution_s, capacity = self._series, self._latest, self.resolution_s, self._capacity
        for task in sample.tasks:
            key = ("task", task.pid, task.start_ticks)  # task_key()
            value = task.rss_anon_bytes + task.rss_file_bytes + task.rss_shmem_bytes
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = Series()
            times = series.times
            if len(times) > 1 and t - times[-1] < resolution_s:
                series.values[-1] = value  # still inside the open bucket (Series.add)
            else:
                series.add(t, value, resolution_s, capacity)
            latest[key] = (t, value)
            seen.add(key)
        if len(self._series) > len(seen):  # forget what is gone (exited processes, removed cgroups)
            for key in [k for k in self._series if k not in seen]:
                del self._series[key]
                self._latest.pop(key, None)

    def _add(self, key: RowKey, t: float, value: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = Series()
        series.add(t, value, self.resolution_s, self._capacity)
        self._latest[key] = (t, value)

    def values(self, key: RowKey) -> list[float]:
        """The points of the last ``span_s``, oldest first."""
        series = self._series.get(key)
        if series is None:
            return []
        values = series.values
        return list(values[-self._capacity :])

    def growth(self, key: RowKey, window_s: float = GROWTH_WINDOW_S) -> float | None:
        """Bytes per second over the last ``window_s`` (or all there is); None before two points."""
        series = self._series.get(key)
        latest = self._latest.get(key)
        if series is None or latest is None or not series.times:
            return None
        t_now, v_now = latest
        times, values = series.times, series.values
        old = len(times) - 1
        while old > 0 and t_now - times[old - 1] <= window_s:
            old -= 1
        dt = t_now - times[old]
        if dt <= 0:
            return None
        return (v_now - values[old]) / dt


def time_to_limit(usage_bytes: int, limit_bytes: int | None, growth_bytes_s: float | None) -> float | None:
    """Seconds until ``usage`` reaches ``limit`` at this growth; None when unlimited or not growing."""
    if limit_bytes is None or growth_bytes_s is None or growth_bytes_s <= 0:
        return None
    return max(0.0, (limit_bytes - usage_bytes) / growth_bytes_s)
