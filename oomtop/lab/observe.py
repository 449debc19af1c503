"""The lab's view of oomtop's live Source: only the lab's cgroups and kills, and a log of when each update came.

:class:`LabSource` sits between oomtop's :class:`~oomtop.live.LiveSource` and its consumer (the UI, a recorder, or
the headless runner).  It narrows every Sample to the lab's own subtree (the node's other cgroups and processes
are not part of the experiment, and a recording of it should not carry them), drops kills elsewhere on the
machine, hands the lab's own notices in among the updates, and tells a :class:`Tracker` what came when, so the
scenario thread can wait for a Sample that shows its set-up and find the last Sample before a kill.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import replace
from typing import overload

from oomtop.model import OomEvent, Sample
from oomtop.rank import is_under
from oomtop.source import Notice, Source, Update

_END = object()


class Tracker:
    """Samples and events as they arrived (``time.monotonic()``), shared with the scenario thread."""

    def __init__(self, keep: int = 600) -> None:
        self._cond = threading.Condition()
        self._samples: deque[tuple[float, Sample]] = deque(maxlen=keep)
        self.events: list[tuple[float, OomEvent]] = []
        self.notices: list[Notice] = []
        self.ended = False

    def feed(self, update: Update, arrival: float) -> None:
        with self._cond:
            if isinstance(update, Sample):
                self._samples.append((arrival, update))
            elif isinstance(update, OomEvent):
                self.events.append((arrival, update))
            elif isinstance(update, Notice):
                self.notices.append(update)
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def latest(self) -> tuple[float, Sample] | None:
        with self._cond:
            return self._samples[-1] if self._samples else None

    def sample_before(self, time_s: float) -> Sample | None:
        """The last Sample that had fully arrived before ``time_s`` (monotonic)."""
        with self._cond:
            arrivals = [arrival for arrival, _ in self._samples]
            index = bisect.bisect_right(arrivals, time_s) - 1
            return self._samples[index][1] if index >= 0 else None

    def wait_sample(
        self,
        predicate: Callable[[Sample], bool],
        after: float,
        timeout_s: float,
        stop: Callable[[], None] | None = None,
    ) -> Sample | None:
        """The first Sample arriving after ``after`` for which ``predicate`` holds (None at the timeout)."""
        deadline = time.monotonic() + timeout_s
        seen = 0.0
        with self._cond:
            while True:
                if stop is not None:
                    stop()
                for arrival, sample in self._samples:
                    if arrival > max(after, seen):
                        seen = arrival
                        if predicate(sample):
                            return sample
                left = deadline - time.monotonic()
                if left <= 0 or self.ended:
                    return None
                self._cond.wait(min(left, 0.1))

    def events_since(self, since: float) -> list[tuple[float, OomEvent]]:
        with self._cond:
            return [(arrival, event) for arrival, event in self.events if arrival >= since]

    def wait(self, timeout_s: float) -> None:
        with self._cond:
            self._cond.wait(timeout_s)


def scope_sample(sample: Sample, parent: str, hostname: str | None = None) -> Sample:
    """The Sample narrowed to the root cgroup (without its processes) and ``parent``'s subtree."""
    cgroups = tuple(
        replace(cgroup, pids=()) if cgroup.path == "/" else cgroup
        for cgroup in sample.cgroups
        if cgroup.path == "/" or is_under(cgroup.path, parent)
    )
    tasks = tuple(task for task in sample.tasks if is_under(task.cgroup, parent))
    node = replace(sample.node, hostname=hostname) if hostname is not None else sample.node
    return replace(sample, cgroups=cgroups, tasks=tasks, node=node)


def event_is_ours(event: OomEvent, parent: str, pids: Collection[int]) -> bool:
    paths = (event.oom_cgroup, event.task_cgroup, event.detected_in, event.oom_group_path)
    if any(path and path != "/" and is_under(path, parent) for path in paths):
        return True
    return any(task.pid is not None and task.pid in pids for task in (event.victim, *event.killed))


class LabSource:
    """A Source over another, narrowed to the lab, with the lab's notices mixed in."""

    def __init__(
        self, inner: Source, tracker: Tracker, parent: str, lab_pids: Collection[int], hostname: str | None = None
    ) -> None:
        self.inner = inner
        self.tracker = tracker
        self.parent = parent
        self.lab_pids = lab_pids
        self.hostname = hostname
        self.mode = inner.mode
        self.interval_s = getattr(inner, "interval_s", None)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[object] | None = None
        self._early: list[Notice] = []

    def inject(self, notice: Notice) -> None:
        """From any thread: show the lab's own notice among the updates."""
        self.tracker.feed(notice, time.monotonic())
        loop, queue = self._loop, self._queue
        if loop is None or queue is None:
            self._early.append(notice)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is listening any more
            loop.call_soon_threadsafe(queue.put_nowait, notice)

    def _scope(self, update: Update) -> Update | None:
        if isinstance(update, Sample):
            return scope_sample(update, self.parent, self.hostname)
        if isinstance(update, OomEvent):
            return update if event_is_ours(update, self.parent, self.lab_pids) else None
        return update

    async def _pump(self, queue: asyncio.Queue[object]) -> None:
        try:
            async for update in self.inner.updates():
                scoped = self._scope(update)
                if scoped is None:
                    continue
                self.tracker.feed(scoped, time.monotonic())
                queue.put_nowait(scoped)
        finally:
            queue.put_nowait(_END)

    async def updates(self) -> AsyncIterator[Update]:
        self._loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._queue = queue
        for notice in self._early:
            queue.put_nowait(notice)
        self._early.clear()
        pump = asyncio.create_task(self._pump(queue))
        try:
            while True:
                update = await queue.get()
                if update is _END:
                    return
                yield update  # type: ignore[misc]  # the queue holds Updates and the _END sentinel, so it is typed object
        finally:
            pump.cancel()
            self.tracker.end()

    def close(self) -> None:
        self.inner.close()


@overload
def _strip(path: str, prefix: str) -> str: ...
@overload
def _strip(path: None, prefix: str) -> None: ...
@overload
def _strip(path: str | None, prefix: str) -> str | None: ...


def _strip(path: str | None, prefix: str) -> str | None:
    if path is None or path == "/":
        return path
    if path == prefix:
        return "/"
    return path[len(prefix) :] if path.startswith(prefix + "/") else path


def strip_sample(sample: Sample, prefix: str) -> Sample:
    """The Sample as if the lab's parent cgroup were the node's root: ``/oomtop-lab/kubepods/...`` becomes
    ``/kubepods/...`` (the lab parent itself is left out; the root keeps the node's figures)."""
    cgroups = tuple(
        replace(cgroup, path=_strip(cgroup.path, prefix)) for cgroup in sample.cgroups if cgroup.path != prefix
    )
    tasks = tuple(replace(task, cgroup=_strip(task.cgroup, prefix)) for task in sample.tasks)
    return replace(sample, cgroups=cgroups, tasks=tasks)


def strip_event(event: OomEvent, prefix: str) -> OomEvent:
    return replace(
        event,
        oom_cgroup=_strip(event.oom_cgroup, prefix),
        task_cgroup=_strip(event.task_cgroup, prefix),
        detected_in=_strip(event.detected_in, prefix),
        oom_group_path=_strip(event.oom_group_path, prefix),
    )


class StrippedSource:
    """Another Source's updates with the lab's parent taken off every path (the shipped demo: the live view then
    shows the lab's kubepods as a node's, open, instead of inside the node's "other cgroups")."""

    def __init__(self, inner: Source, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix
        self.mode = inner.mode
        self.interval_s = getattr(inner, "interval_s", None)

    async def updates(self) -> AsyncIterator[Update]:
        async for update in self.inner.updates():
            if isinstance(update, Sample):
                yield strip_sample(update, self.prefix)
            elif isinstance(update, OomEvent):
                yield strip_event(update, self.prefix)
            else:
                yield update

    def close(self) -> None:
        self.inner.close()
