"""The poller: Samples at a fixed interval, produced off the event loop (the live Source, :mod:`oomtop.live`,
reads them and adds the OOM watcher's events).

One poll is a few milliseconds of CPU-bound reads; it runs on a single dedicated worker thread (one thread hop
per poll, not one per file: a hop costs more than reading a tiny /proc file).  Deadlines are absolute, so the
interval does not drift by the poll's own duration; a poll that overruns skips the missed ticks instead of
bursting to catch up.

:meth:`LivePoller.predict_ahead` queues a Sample's victim prediction on the same thread, right behind the poll, so
the OOM watcher has it ready when a kill comes instead of computing it on the kill path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor

from oomtop.collect.collector import Collector, CollectorConfig
from oomtop.model import Sample
from oomtop.rank import Prediction, predict

MIN_INTERVAL_S = 0.05
DEFAULT_INTERVAL_S = 0.5


class LivePoller:
    """``async for sample in LivePoller(config, interval)``: the node, once per interval."""

    def __init__(self, config: CollectorConfig | None = None, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        if interval_s < MIN_INTERVAL_S:
            raise ValueError(f"interval must be at least {MIN_INTERVAL_S} s")
        self.interval_s = interval_s
        self._config = config or CollectorConfig()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oomtop-poll")
        self._collector: Collector | None = None
        self._closed = False

    def _poll(self) -> Sample:
        if self._collector is None:
            self._collector = Collector(self._config)
        return self._collector.sample()

    async def sample(self) -> Sample:
        """One Sample now, read on the worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._poll)

    def predict_ahead(self, sample: Sample) -> Future[Prediction]:
        """Start this Sample's prediction on the worker thread (it runs before the next poll, which is an interval
        away) and return its pending result; the event loop stays free for kills meanwhile."""
        return self._executor.submit(predict, sample)

    async def __aiter__(self) -> AsyncIterator[Sample]:
        deadline = time.monotonic()
        while not self._closed:
            yield await self.sample()
            deadline += self.interval_s
            now = time.monotonic()
            if deadline < now:  # overran: skip the ticks we missed
                deadline = now + self.interval_s - ((now - deadline) % self.interval_s)
            await asyncio.sleep(deadline - now)

    def close(self) -> None:
        self._closed = True
        collector = self._collector
        self._collector = None
        if collector is not None:
            self._executor.submit(collector.close)
        self._executor.shutdown(wait=True)
