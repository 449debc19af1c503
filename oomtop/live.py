"""The live Source: the collector's Samples and the OOM watcher's events, on one asyncio loop.

Samples come from :class:`~oomtop.collect.poller.LivePoller` (a worker thread per poll).  OOM detection does not
wait for a poll: the kernel log and the wake-up descriptors are registered with the loop (``add_reader``), so a
kill is reported within milliseconds whatever ``--interval`` is; a tick every TICK_S (20 ms) emits what
waited for a quiet period.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.collector import CollectorConfig
from oomtop.collect.identity import NodeNames
from oomtop.collect.oomwatch import QUIET_FLUSH_S, RECHECK_AFTER_S, OomWatcher
from oomtop.collect.poller import DEFAULT_INTERVAL_S, LivePoller
from oomtop.model import OomEvent
from oomtop.source import Notice, SourceMode, Update

TICK_S = 0.02  # how often waiting events are looked at (a rate-limited report waits HOLD_UNPLACED_S)


class LiveSource:
    """``async for update in LiveSource(config).updates()``: history first, then live Samples and kills."""

    mode: SourceMode = "live"

    def __init__(
        self,
        config: CollectorConfig | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
        kmsg_path: str | None = "/dev/kmsg",
        with_history: bool = True,
        samples: bool = True,
        tick_s: float = TICK_S,
    ) -> None:
        self.config = config or CollectorConfig()
        self.interval_s = interval_s
        self._kmsg_path = kmsg_path
        self._with_history = with_history
        self._samples = samples
        self._tick_s = tick_s  # how often waiting events are looked at: their latency, and ~50 wake-ups a second
        self._queue: asyncio.Queue[Update | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._poller: LivePoller | None = None
        self._watcher: OomWatcher | None = None
        self._readers: list[int] = []
        self._flush_scheduled = False
        self._closed = False

    @property
    def kmsg_readable(self) -> bool:
        """Whether the kernel log is being read (victim details); False before the start and with --kmsg none."""
        return self._watcher is not None and self._watcher.kmsg_fileno() is not None

    def _put_events(self, events: list[OomEvent]) -> None:
        for event in events:
            self._queue.put_nowait(event)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        hierarchy = discover_hierarchy(self.config.cgroup_root, self.config.procfs_root)
        watcher = self._watcher = OomWatcher(
            hierarchy, self._kmsg_path, NodeNames.load(self.config.host_root), procfs_root=self.config.procfs_root
        )
        for notice in watcher.notices:
            self._queue.put_nowait(Notice(notice, "watcher"))
        if self._with_history:
            self._put_events(watcher.history())
        kmsg_fd, wakeup_fd = watcher.kmsg_fileno(), watcher.wakeup_fileno()
        if kmsg_fd is not None:
            loop.add_reader(kmsg_fd, self._on_kmsg)
            self._readers.append(kmsg_fd)
        if wakeup_fd is not None:
            loop.add_reader(wakeup_fd, self._on_wakeup)
            self._readers.append(wakeup_fd)
        self._poller = LivePoller(self.config, self.interval_s)
        self._tasks.append(asyncio.create_task(self._poll()))
        self._tasks.append(asyncio.create_task(self._tick()))

    def _on_kmsg(self) -> None:
        assert self._watcher is not None
        self._put_events(self._watcher.on_kmsg())
        if not self._flush_scheduled:  # emit a finished block as soon as the log goes quiet, not at the next tick
            self._flush_scheduled = True
            asyncio.get_running_loop().call_later(QUIET_FLUSH_S + 0.002, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._watcher is not None and not self._closed:
            self._put_events(self._watcher.tick())

    def _on_wakeup(self) -> None:
        assert self._watcher is not None
        self._put_events(self._watcher.on_wakeup())
        loop = asyncio.get_running_loop()
        for delay in RECHECK_AFTER_S:  # v1 signals before it counts the kill: look again shortly
            loop.call_later(delay, self._recheck)

    def _recheck(self) -> None:
        if self._watcher is not None and not self._closed:
            self._put_events(self._watcher.recheck())

    async def _poll(self) -> None:
        assert self._poller is not None and self._watcher is not None
        reported: set[str] = set()
        try:
            async for sample in self._poller:
                if self._samples:
                    self._queue.put_nowait(sample)
                # its prediction is computed on the poller's thread now, not by the first kill that needs it
                self._put_events(self._watcher.on_sample(sample, self._poller.predict_ahead(sample)))
                for notice in self._watcher.notices:
                    if notice not in reported:
                        reported.add(notice)
                        self._queue.put_nowait(Notice(notice, "watcher"))
        except Exception as error:  # the UI learns why collection stopped  # noqa: BLE001
            self._queue.put_nowait(Notice(f"collection stopped: {error}", "poll-error"))

    async def _tick(self) -> None:
        assert self._watcher is not None
        while True:
            await asyncio.sleep(self._tick_s)
            self._put_events(self._watcher.tick())

    async def updates(self) -> AsyncIterator[Update]:
        self._start()
        try:
            while True:
                update = await self._queue.get()
                if update is None:
                    return
                yield update
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for fileno in self._readers:
                loop.remove_reader(fileno)
        for task in self._tasks:
            task.cancel()
        if self._poller is not None:
            self._poller.close()
        if self._watcher is not None:
            self._watcher.close()
        self._queue.put_nowait(None)
