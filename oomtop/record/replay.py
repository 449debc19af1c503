"""The replay Source: a recording played back as the live Source would have delivered it, with time travel.

The app drives it through plain methods (play/pause, step, seek, next/previous kill, speed); each one moves the
position and wakes :meth:`updates`, which yields the sample now under the cursor.  Kills are yielded as playback
passes them; a consumer that jumps backwards filters its event list by the current sample's time.

A damaged recording replays what it can: segments are decoded when the position first reaches them, so damage found
then is yielded as a :class:`~oomtop.source.Notice` right after the sample that met it (each damaged place once),
and a segment lost whole is stepped over like a gap in the recording.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator

from oomtop.model import OomEvent, Sample
from oomtop.record.reader import Recording
from oomtop.source import Notice, SourceMode, Update

SPEEDS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)


class ReplaySource:
    """A Source over a Recording: :class:`~oomtop.source.Seekable`."""

    mode: SourceMode = "replay"

    def __init__(self, recording: Recording, speed: float = 1.0, playing: bool = True) -> None:
        self.recording = recording
        self.speed = speed
        self.playing = playing
        self._segment = 0
        self._position = 0
        self._wake = asyncio.Event()
        self._closed = False
        self._moved = True
        self.event_times = sorted(event.time or 0.0 for event in recording.events)
        self._events = sorted(recording.events, key=lambda event: event.time or 0.0)
        self._emitted_events = 0
        self._end_time: float | None = None
        self._last_kill: tuple[int, tuple[int, int]] | None = None  # the kill last jumped to, and where it left us
        self._damage_told = 0  # recording.damage_notices already yielded

    # ----------------------------------------------------------------------------------------------- state

    def current(self) -> Sample | None:
        if not self.recording.segments:
            return None
        samples = self.recording.segment_samples(self._segment)
        if self._position >= len(samples) and (self._segment, self._position) == (0, 0):
            # The first segments were lost to damage: the recording starts at its first sample that decodes.
            found = self.recording.sample_at(float("-inf"))
            if found is None:
                return None
            self._segment, self._position, _sample = found
            return found[2]
        return samples[self._position] if self._position < len(samples) else None

    @property
    def position_time(self) -> float | None:
        sample = self.current()
        return sample.time if sample is not None else None

    @property
    def start_time(self) -> float | None:
        return self.recording.start_time

    @property
    def end_time(self) -> float | None:
        if self._end_time is None:  # decodes the last segment: once (the timeline asks four times a second)
            self._end_time = self.recording.end_time
        return self._end_time

    def events_until(self, time_s: float) -> list[OomEvent]:
        """Every recorded kill at or before ``time_s`` (for a consumer that jumped)."""
        return self._events[: bisect.bisect_right(self.event_times, time_s)]

    # -------------------------------------------------------------------------------------------- controls

    def _moved_to(self, segment: int, position: int) -> None:
        self._segment, self._position = segment, position
        self._moved = True
        self._wake.set()

    def play(self) -> None:
        self.playing = True
        self._wake.set()

    def pause(self) -> None:
        self.playing = False
        self._wake.set()

    def toggle(self) -> None:
        self.pause() if self.playing else self.play()

    def set_speed(self, speed: float) -> None:
        self.speed = max(0.01, speed)
        self._wake.set()

    def faster(self) -> None:
        self.set_speed(next((s for s in SPEEDS if s > self.speed), SPEEDS[-1]))

    def slower(self) -> None:
        self.set_speed(next((s for s in reversed(SPEEDS) if s < self.speed), SPEEDS[0]))

    def step(self, count: int = 1) -> bool:
        """Move ``count`` samples forward (negative: back); False at either end."""
        self.current()  # from the start of a recording whose first segments are lost: from its first sample
        segment, position = self._segment, self._position + count
        segments = self.recording.segments
        while True:
            samples = self.recording.segment_samples(segment)
            if 0 <= position < len(samples):
                self._moved_to(segment, position)
                return True
            if position < 0:
                if segment == 0:
                    return False
                segment -= 1
                position += len(self.recording.segment_samples(segment))
            else:
                if segment + 1 >= len(segments):
                    return False
                position -= len(samples)
                segment += 1

    def seek(self, time_s: float) -> bool:
        """Jump to the last sample at or before ``time_s`` (the first sample for earlier times)."""
        found = self.recording.sample_at(time_s)
        if found is None:
            return False
        segment, position, _sample = found
        self._moved_to(segment, position)
        return True

    def next_kill(self) -> OomEvent | None:
        """Jump to the first kill after the current position (to the last sample before it, so the screen shows
        what led to it).  Pressed again from there, it goes on to the kill after that one."""
        now = self.position_time
        index = bisect.bisect_right(self.event_times, now if now is not None else float("-inf"))
        if self._last_kill is not None and self._last_kill[1] == (self._segment, self._position):
            index = max(index, self._last_kill[0] + 1)
        return self._jump_to_kill(index)

    def previous_kill(self) -> OomEvent | None:
        """Jump to the last kill before the current position (to the sample just before it)."""
        now = self.position_time
        if now is None:
            return None
        index = bisect.bisect_left(self.event_times, now) - 1
        if self._last_kill is not None and self._last_kill[1] == (self._segment, self._position):
            index = min(index, self._last_kill[0] - 1)
        return self._jump_to_kill(index)

    def _jump_to_kill(self, index: int) -> OomEvent | None:
        if not 0 <= index < len(self._events):
            return None
        event = self._events[index]
        self.seek((event.time or 0.0) - 1e-6)
        self._last_kill = (index, (self._segment, self._position))
        return event

    # --------------------------------------------------------------------------------------------- stream

    def new_damage(self) -> list[Notice]:
        """Damage the recording found since the last call (when opened, or decoding a segment reached since)."""
        found = self.recording.damage_notices[self._damage_told :]
        self._damage_told += len(found)
        return [Notice(text, "recording-damage") for text in found]

    async def updates(self) -> AsyncIterator[Update]:
        for notice in self.new_damage():
            yield notice
        for text in self.recording.notices:
            yield Notice(f"recorded: {text}", "recorded-notice")
        while not self._closed:
            sample = self.current()
            for notice in self.new_damage():
                yield notice
            if sample is None:
                await self._wait(None)
                continue
            if self._moved:
                self._moved = False
                yield sample
                for event in self._events_through(sample.time):
                    yield event
            delay = None
            if self.playing:
                following = self._peek_next()
                if following is None:
                    self.playing = False
                else:
                    delay = max(0.0, (following.time - sample.time) / self.speed)
            for notice in self.new_damage():  # met looking ahead (the next segment decoded): said before waiting
                yield notice
            woke = await self._wait(delay)
            if not woke and self.playing:
                self.step(1)

    def _events_through(self, time_s: float) -> list[OomEvent]:
        end = bisect.bisect_right(self.event_times, time_s)
        if end <= self._emitted_events:
            if end < self._emitted_events:
                self._emitted_events = end  # jumped back: these kills will be passed again
            return []
        new = self._events[self._emitted_events : end]
        self._emitted_events = end
        return new

    def _peek_next(self) -> Sample | None:
        samples = self.recording.segment_samples(self._segment)
        if self._position + 1 < len(samples):
            return samples[self._position + 1]
        for segment in range(self._segment + 1, len(self.recording.segments)):
            following = self.recording.segment_samples(segment)
            if following:
                return following[0]
        return None

    async def _wait(self, timeout: float | None) -> bool:
        """Sleep until a control call (True) or the timeout (False)."""
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self._closed = True
        self._wake.set()
