"""What a scrape reads: the metric families of the latest Sample, rendered once per Sample and format.

The collection loop (one asyncio thread) calls :meth:`Exporter.publish` for every Sample and kill; scrapes run
on the HTTP server's threads and only read the :class:`Snapshot` published last (swapped whole: a reference
assignment, so a scrape sees one Sample's families or the next one's, never a mix).  A scrape never triggers a
poll, and the text of one Sample is rendered once per format however many scrapers ask: ten scrapers cost ten
copies of the same bytes, not ten collections.  Only ``oomtop_sample_age_seconds`` is computed at scrape time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.registry import Collector

from oomtop import __version__
from oomtop.serve.metrics import PREFIX

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
FRESH_INTERVALS = 3  # /healthz: samples younger than this many intervals
_EOF = b"# EOF\n"


class _Families(Collector):
    """A fixed list of families, in the shape prometheus_client's renderers read (they only call collect())."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _openmetrics(registry: Collector) -> bytes:
    body: bytes = generate_openmetrics(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped
    return body


def wants_openmetrics(accept: str) -> bool:
    """Content negotiation as Prometheus does it: OpenMetrics when the scraper lists it, else the text format."""
    return any(part.split(";")[0].strip() == "application/openmetrics-text" for part in accept.split(","))


@dataclass
class Snapshot:
    """One Sample's families (and the kill counters as they stood), with its renderings once made."""

    families: list[Metric]
    sample_time: float | None  # wall clock of the Sample (the age a scrape reports)
    received: float  # monotonic: when the loop published it (what /healthz judges)
    rendered: dict[bool, bytes] = field(default_factory=dict)  # openmetrics? -> the body without the age

    def body(self, openmetrics: bool) -> bytes:
        cached = self.rendered.get(openmetrics)
        if cached is None:  # two scrapes racing here both render the same bytes: harmless
            registry = _Families(self.families)
            cached = _openmetrics(registry) if openmetrics else generate_latest(registry)
            if openmetrics and cached.endswith(_EOF):
                cached = cached[: -len(_EOF)]
            self.rendered[openmetrics] = cached
        return cached


class Exporter:
    """The latest Snapshot and the health of collection, for the HTTP threads."""

    def __init__(
        self,
        interval_s: float,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._wall = wall_clock
        self._monotonic = monotonic
        self._snapshot: Snapshot | None = None
        self._started = monotonic()
        self._lock = threading.Lock()  # publish() from the loop; health() reads two fields together
        self.kmsg_readable: bool | None = None
        self.collection_errors = 0
        self.last_error: str | None = None

    def publish(self, families: list[Metric], sample_time: float | None) -> None:
        snapshot = Snapshot([*families, *self._health_families()], sample_time, self._monotonic())
        with self._lock:
            self._snapshot = snapshot

    def error(self, text: str) -> None:
        """A collection error (a poll that failed): counted, and the reason /healthz gives while stale."""
        with self._lock:
            self.collection_errors += 1
            self.last_error = text

    def _health_families(self) -> list[Metric]:
        build = Metric(PREFIX + "build", "oomtop's version", "info")
        build.add_sample(PREFIX + "build_info", {"version": __version__}, 1)
        kmsg = Metric(PREFIX + "kmsg_readable", "1 when the kernel log is read (victim details), else 0", "gauge")
        kmsg.add_sample(kmsg.name, {}, 1 if self.kmsg_readable else 0)
        errors = Metric(PREFIX + "collection_errors", "Polls that failed since oomtop started", "counter")
        errors.add_sample(errors.name + "_total", {}, self.collection_errors)
        return [build, kmsg, errors]

    def scrape(self, accept: str) -> tuple[bytes, str]:
        """The response body and its content type for a scraper sending ``accept``."""
        openmetrics = wants_openmetrics(accept)
        snapshot = self._snapshot
        age = Metric(PREFIX + "sample_age", "Seconds since the Sample these metrics come from", "gauge", "seconds")
        if snapshot is not None and snapshot.sample_time is not None:
            age.add_sample(age.name, {}, max(0.0, self._wall() - snapshot.sample_time))
        dynamic = _Families([age])
        static = snapshot.body(openmetrics) if snapshot is not None else b""
        if openmetrics:
            return static + _openmetrics(dynamic), OPENMETRICS
        return static + generate_latest(dynamic), PROMETHEUS_TEXT

    def health(self) -> tuple[bool, str]:
        """(fresh, why): fresh while the last Sample is younger than FRESH_INTERVALS intervals."""
        with self._lock:
            snapshot, error = self._snapshot, self.last_error
        limit = FRESH_INTERVALS * self.interval_s
        if snapshot is None:
            waited = self._monotonic() - self._started
            reason = f"no sample yet ({waited:.1f} s since start)"
            return False, reason + (f"; last error: {error}" if error else "")
        age = self._monotonic() - snapshot.received
        if age >= limit:
            reason = (
                f"the last sample is {age:.1f} s old (more than {FRESH_INTERVALS} intervals of {self.interval_s:g} s)"
            )
            return False, reason + (f"; last error: {error}" if error else "")
        return True, f"ok: the last sample is {age:.2f} s old"
