"""The replay Source's controls and pacing, as mutation testing found them unguarded.

mutmut (issue 11) changed these and every test still passed: ``toggle()`` that never pauses, playback that still
says "playing" after the last sample, a seek during playback that lands one sample late, the wait before the next
sample computed from the wrong sample, and a step that walks backwards into a segment that decodes to nothing.
Pacing is checked without a clock: ``_wait`` is replaced by one that records the delay it was asked to sleep and
returns at once, so the test asserts the delays the Source computes, never wall time.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from oomtop.model import OomEvent, Sample
from oomtop.record import frames
from oomtop.record.frames import DATA, SEGMENT_START
from oomtop.record.reader import Recording
from oomtop.record.replay import ReplaySource
from tests.test_record import INTERVAL, scripted_events, scripted_samples, valid_frames, write_recording

Series = tuple[list[Sample], list[OomEvent]]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    samples = scripted_samples(tmp_path_factory.mktemp("series") / "host", "v2")
    return samples, scripted_events(samples)


@pytest.fixture(scope="module")
def recorded(series: Series, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("recorded") / "series.oomrec"
    write_recording(path, *series)
    return path


def test_toggle_pauses_a_playing_source_and_plays_a_paused_one(recorded: Path) -> None:
    recording = Recording(str(recorded))
    try:
        source = ReplaySource(recording)
        assert source.playing
        source.toggle()
        assert source.playing is False
        source.toggle()
        assert source.playing is True
    finally:
        recording.close()


class PacedSource(ReplaySource):
    """A ReplaySource whose sleeps are recorded and return at once (a timeout, as if the delay had passed)."""

    def __init__(self, recording: Recording, speed: float) -> None:
        super().__init__(recording, speed=speed)
        self.delays: list[float | None] = []
        self.on_wait: list[object] = []  # callbacks run at a given wait, to act "during" playback

    async def _wait(self, timeout: float | None) -> bool:
        self.delays.append(timeout)
        if self.on_wait:
            action = self.on_wait.pop(0)
            if callable(action):
                action()
                return True  # woken by a control call
        if timeout is None:
            self.close()  # the end: nothing would ever wake it
            return True
        await asyncio.sleep(0)
        return False


async def drain(source: ReplaySource) -> list[Sample]:
    shown: list[Sample] = []

    async def consume() -> None:
        async for update in source.updates():
            if isinstance(update, Sample):
                shown.append(update)

    await asyncio.wait_for(consume(), 30)
    return shown


@pytest.mark.parametrize("speed", [1.0, 4.0])
async def test_playback_waits_the_recorded_interval_over_the_speed_and_stops_at_the_end(
    series: Series, recorded: Path, speed: float
) -> None:
    samples, _events = series
    recording = Recording(str(recorded))
    try:
        source = PacedSource(recording, speed)
        shown = await drain(source)
        assert shown == samples
        waits = source.delays[:-1]  # the last wait is the open-ended one at the end of the recording
        assert len(waits) == len(samples) - 1
        for index, delay in enumerate(waits):
            assert delay == pytest.approx((samples[index + 1].time - samples[index].time) / speed), index
        assert source.delays[-1] is None
        assert source.playing is False, "the end of the recording must leave the Source paused"
    finally:
        recording.close()


async def test_a_seek_during_playback_shows_exactly_the_sample_sought(series: Series, recorded: Path) -> None:
    samples, _events = series
    recording = Recording(str(recorded))
    try:
        source = PacedSource(recording, 1.0)
        target = samples[23]
        source.on_wait = [None, None, lambda: source.seek(target.time)]  # the seek wakes the third wait
        shown = await drain(source)
        assert shown[:4] == [samples[0], samples[1], samples[2], target]
        assert shown[4] == samples[24]
    finally:
        recording.close()


def _undecodable_segment(recorded: Path, tmp_path: Path, index: int) -> tuple[Path, int]:
    """The file with segment ``index``'s first DATA frame replaced by garbage under a valid checksum: the frame
    index keeps the segment, decoding it yields nothing.  Returns the path and that segment's first frame offset."""
    data = recorded.read_bytes()
    starts = [frame for frame in valid_frames(data) if frame.type == DATA and frame.flags & SEGMENT_START]
    victim = starts[index]
    forged = frames.pack(DATA, b"not zlib at all" * 4, victim.time, SEGMENT_START)
    end = victim.payload_offset + victim.length
    path = tmp_path / "undecodable.oomrec"
    path.write_bytes(data[: victim.offset] + forged + data[end:])
    return path, victim.offset


def test_stepping_forward_and_back_walks_over_a_segment_that_decodes_to_nothing(
    series: Series, recorded: Path, tmp_path: Path
) -> None:
    samples, _events = series
    path, _offset = _undecodable_segment(recorded, tmp_path, 2)
    recording = Recording(str(path))
    try:
        source = ReplaySource(recording, playing=False)
        assert source.seek(samples[0].time)
        forward = [source.current()]
        while source.step(1):
            forward.append(source.current())
        backward = [source.current()]
        while source.step(-1):
            backward.append(source.current())
        assert len(recording.segment_samples(2)) == 0, "the forged segment must decode to nothing"
        lost = set(range(20, 30))  # the third of five 10-sample segments
        kept = [sample for index, sample in enumerate(samples) if index not in lost]
        assert forward == kept
        assert backward == kept[::-1]
    finally:
        recording.close()


def test_the_series_has_ten_samples_a_segment(recorded: Path) -> None:
    """What the step test above relies on: five segments of ten samples each, INTERVAL apart."""
    recording = Recording(str(recorded))
    try:
        assert [len(recording.segment_samples(i)) for i in range(len(recording.segments))] == [10] * 5
        assert recording.interval_s == INTERVAL
    finally:
        recording.close()
