"""Sources: anything that yields Samples and OomEvents (live node, a recording, a fixture).

Every consumer (the Textual app, ``oomtop events``, the recorder) reads one async stream of :data:`Update`s and
never knows where they come from, so the same app runs on a node, on a replay and in snapshot tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from oomtop.model import OomEvent, Sample


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should be told once (no root, no kernel log, a damaged recording...)."""

    text: str
    key: str = ""  # a stable name ("no-kmsg", "no-root") so a consumer can show each kind once


Update = Sample | OomEvent | Notice


async def close_updates(updates: AsyncIterator[Update]) -> None:
    """Close a source's stream of updates when it can be closed (an async generator: its ``finally`` runs now)."""
    aclose = getattr(updates, "aclose", None)
    if aclose is not None:
        await aclose()


class Source(Protocol):
    """What the app and the headless consumers read from."""

    #: "live", "replay" or "fixture": shown in the header.
    mode: str

    def updates(self) -> AsyncIterator[Update]:
        """Samples, events and notices in the order they happened; ends when the source is exhausted."""
        ...

    def close(self) -> None:
        """Stop collecting and release every descriptor."""
        ...


class StaticSource:
    """A fixed list of updates (tests, snapshots): yields them in order, then waits until closed."""

    mode = "fixture"

    def __init__(self, updates: Iterable[Update], hold: bool = True, delay_s: float = 0.0) -> None:
        self._updates = list(updates)
        self._hold = hold
        self._delay_s = delay_s
        self._closed = asyncio.Event()

    async def updates(self) -> AsyncIterator[Update]:
        for update in self._updates:
            if self._closed.is_set():
                return
            yield update
            if self._delay_s:
                await asyncio.sleep(self._delay_s)
        if self._hold:
            await self._closed.wait()

    def close(self) -> None:
        self._closed.set()
