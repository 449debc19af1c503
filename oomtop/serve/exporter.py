"""What a scrape reads: the metric families of the latest Sample, rendered once per Sample and format.

The collection loop (one asyncio thread) calls :meth:`Exporter.publish` for every Sample and kill; scrapes run
on the HTTP server's threads and only read the :class:`Snapshot` published last (swapped whole: a reference
assignment, so a scrape sees one Sample's families or the next one's, never a mix).  A scrape never triggers a
poll, and the text of one Sample is rendered once per format however many scrapers ask: ten scrapers cost ten
copies of the same bytes, not ten collections.  Only ``oomtop_sample_age_seconds`` is computed at scrape time.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client.core import Metric

from oomtop import __version__
from oomtop.serve.metrics import PREFIX

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
FRESH_INTERVALS = 3  # /healthz: samples younger than this many intervals
_EOF = b"# EOF\n"


class Renderer:
    """Both exposition formats of a list of families, written directly.

    prometheus_client's renderers check and escape every label name character by character (about 16 ms for the
    1,800 series of a 1,000-process node); oomtop's label names are fixed and valid, and the label sets of a
    pod or container are the same from one Sample to the next, so their rendered text is kept and reused.  The
    output is the same exposition, sample for sample (tests parse both with prometheus_client's parsers).
    """

    MAX_CACHED = 50_000  # label sets kept (a node's pods, containers and domains, many times over)

    def __init__(self) -> None:
        self._labels: dict[tuple[tuple[str, str], ...], str] = {}

    def render(self, families: Iterable[Metric], openmetrics: bool) -> bytes:
        out: list[str] = []
        for family in families:
            self._family(out, family, openmetrics)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _family(self, out: list[str], family: Metric, openmetrics: bool) -> None:
        name, kind = family.name, family.type
        if openmetrics:
            out.append(f"# HELP {name} {_escape(family.documentation, quote=True)}\n# TYPE {name} {kind}\n")
            if family.unit:
                out.append(f"# UNIT {name} {family.unit}\n")
        else:  # the text format names a counter by its sample (_total) and has no info type
            shown = name + ("_total" if kind == "counter" else "_info" if kind == "info" else "")
            text_kind = "gauge" if kind == "info" else kind
            out.append(f"# HELP {shown} {_escape(family.documentation, quote=False)}\n# TYPE {shown} {text_kind}\n")
        labels_text = self._labels_text
        out.extend(f"{s.name}{labels_text(s.labels)} {_number(s.value)}\n" for s in family.samples)

    def _labels_text(self, labels: dict[str, str]) -> str:
        key = tuple(labels.items())
        text = self._labels.get(key)
        if text is None:
            if len(self._labels) >= self.MAX_CACHED:
                self._labels.clear()
            text = "{" + ",".join(f'{k}="{_escape(v, quote=True)}"' for k, v in key) + "}" if key else ""
            self._labels[key] = text
        return text


def _escape(text: str, quote: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if quote else text


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


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
    compressed: dict[bool, bytes] = field(default_factory=dict)  # the same, as a complete gzip member

    def gzipped(self, openmetrics: bool, renderer: Renderer) -> bytes:
        """The body as a gzip member of its own: a scrape sends it and then the age as a second member (a gzip
        stream may hold several), so one compression serves every scrape of this Sample."""
        cached = self.compressed.get(openmetrics)
        if cached is None:
            cached = self.compressed[openmetrics] = gzip.compress(self.body(openmetrics, renderer), compresslevel=1)
        return cached

    def body(self, openmetrics: bool, renderer: Renderer) -> bytes:
        cached = self.rendered.get(openmetrics)
        if cached is None:  # two scrapes racing here both render the same bytes: harmless
            cached = renderer.render(self.families, openmetrics)
            if openmetrics:
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
        self._renderer = Renderer()
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

    def scrape(self, accept: str, gzipped: bool = False) -> tuple[bytes, str]:
        """The response body and its content type for a scraper sending ``accept`` (gzip-encoded when asked:
        Prometheus asks, and a node's scrape is ten times smaller so)."""
        openmetrics = wants_openmetrics(accept)
        snapshot = self._snapshot
        age = Metric(PREFIX + "sample_age", "Seconds since the Sample these metrics come from", "gauge", "seconds")
        if snapshot is not None and snapshot.sample_time is not None:
            age.add_sample(age.name, {}, max(0.0, self._wall() - snapshot.sample_time))
        dynamic = self._renderer.render([age], openmetrics)
        content_type = OPENMETRICS if openmetrics else PROMETHEUS_TEXT
        if gzipped:
            static = snapshot.gzipped(openmetrics, self._renderer) if snapshot is not None else b""
            return static + gzip.compress(dynamic, compresslevel=1), content_type
        static = snapshot.body(openmetrics, self._renderer) if snapshot is not None else b""
        return static + dynamic, content_type

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
