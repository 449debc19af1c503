"""Sources: anything that yields Samples and OomEvents (live node, a recording, a fixture).

Every consumer (the Textual app, ``oomtop events``, the recorder) reads one async stream of :data:`Update`s and
never knows where they come from, so the same app runs on a node, on a replay and in snapshot tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from oomtop.model import OomEvent, Sample


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should be told once (no root, no kernel log, a damaged recording...)."""

    text: str
    key: str = ""  # a stable name ("no-kmsg", "no-root") so a consumer can show each kind once


Update = Sample | OomEvent | Notice

#: Where a Source's updates come from, shown in the header: the node now, a recording, or a fixed list (tests).
SourceMode = Literal["live", "replay", "fixture"]


async def close_updates(updates: AsyncIterator[Update]) -> None:
    """Close a source's stream of updates when it can be closed (an async generator: its ``finally`` runs now)."""
    aclose = getattr(updates, "aclose", None)
    if aclose is not None:
        await aclose()


class Source(Protocol):
    """What the app and the headless consumers read from."""

    mode: SourceMode

    def updates(self) -> AsyncIterator[Update]:
        """Samples, events and notices in the order they happened; ends when the source is exhausted."""
        ...

    def close(self) -> None:
        """Stop collecting and release every descriptor."""
        ...


@runtime_checkable
class Seekable(Protocol):
    """A Source the user can move through in time: a recording.  The app offers the timeline and the replay keys
    (play, step, kills, go to, speed) exactly when its Source is Seekable; every other Source is live."""

    mode: SourceMode
    playing: bool
    speed: float
    #: the times of every recorded kill, in order (the timeline's marks)
    event_times: list[float]

    @property
    def start_time(self) -> float | None:
        """The first sample's time (None: nothing was recorded)."""
        ...

    @property
    def end_time(self) -> float | None:
        """The last sample's time."""
        ...

    def updates(self) -> AsyncIterator[Update]: ...

    def close(self) -> None: ...

    def events_until(self, time_s: float) -> list[OomEvent]:
        """Every kill at or before ``time_s``: the event list after a jump back in time."""
        ...

    def toggle(self) -> None:
        """Play or pause."""
        ...

    def pause(self) -> None: ...

    def faster(self) -> None: ...

    def slower(self) -> None: ...

    def step(self, count: int) -> bool:
        """``count`` samples on (negative: back); False at either end."""
        ...

    def seek(self, time_s: float) -> bool:
        """To the last sample at or before ``time_s``; False when there is none."""
        ...

    def next_kill(self) -> OomEvent | None:
        """To the sample just before the next kill; None when there is none."""
        ...

    def previous_kill(self) -> OomEvent | None: ...


class StaticSource:
    """A fixed list of updates (tests, snapshots): yields them in order, then waits until closed."""

    mode: SourceMode = "fixture"

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
