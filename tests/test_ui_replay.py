"""The app over a recording: the timeline, its keys, and snapshots of the replay screen."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from oomtop.model import Sample
from oomtop.record.reader import Recording
from oomtop.record.replay import ReplaySource
from oomtop.record.writer import RecordingFile
from oomtop.ui.timeline import parse_goto, timeline_text
from tests.ui_fixtures import FIXED_TIME, collect, fixed_clock, kill_event, kube_host, wait_for


class Mono:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_recording(tmp_path: Path, count: int = 40) -> tuple[str, list[Sample]]:
    """``count`` samples one second apart (usage growing) with a kill after the 25th, in 10 s segments."""
    base = collect(kube_host(tmp_path / "host", "v1"))
    samples = []
    for index in range(count):
        cgroups = tuple(replace(c, usage_bytes=c.usage_bytes + index * (1 << 20)) for c in base.cgroups)
        samples.append(replace(base, time=FIXED_TIME + index, monotonic=1000.0 + index, cgroups=cgroups, seq=index))
    path = str(tmp_path / "session.oomrec")
    clock = Mono()
    recording = RecordingFile(path, 1.0, segment_s=10.0, monotonic=clock)
    for index, sample in enumerate(samples):
        clock.now += 1.0
        recording.write_sample(sample)
        if index == 25:
            recording.write_event(kill_event(sample, at=sample.time + 0.5))
    recording.close()
    return path, samples


def app_for(path: str, playing: bool = False):  # type: ignore[no-untyped-def]
    from oomtop.ui.app import OomtopApp

    source = ReplaySource(Recording(path), playing=playing)
    return OomtopApp(source, clock=fixed_clock, cursor_blink=False, interval_s=1.0)


Wait = tuple[Callable[[], bool], Callable[[], str]]


async def reach(pilot: Any, wait: Wait) -> None:
    """Wait for a state of the replay; fail saying which state and what was shown instead."""
    await wait_for(wait[0], pilot, wait[1])


def at_sample(app: Any, samples: list[Sample], index: int) -> Wait:
    """A wait for the app to show ``samples[index]``, and what it showed instead (for the timeout's message)."""

    def shown() -> str:
        latest = app.latest
        if latest is None:
            return f"sample {index}; nothing is shown yet"
        return f"sample {index}; the app shows sample {round(latest.time - samples[0].time)}"

    return (lambda: app.latest is not None and app.latest.time == samples[index].time), shown


def kills_listed(app: Any, count: int) -> Wait:
    return (lambda: len(app.event_pane.events) == count), (
        lambda: f"{count} kill(s) in the list; it has {len(app.event_pane.events)}"
    )


async def test_replay_keys_move_through_time(tmp_path: Path, utc: None) -> None:
    path, samples = make_recording(tmp_path)
    app = app_for(path)
    async with app.run_test(size=(160, 50)) as pilot:
        await reach(pilot, at_sample(app, samples, 0))  # a paused replay opens on its first sample
        await pilot.press("full_stop")
        await reach(pilot, at_sample(app, samples, 1))  # . steps forward
        await pilot.press("comma")
        await reach(pilot, at_sample(app, samples, 0))  # , steps back
        await pilot.press("right_square_bracket")
        await reach(pilot, at_sample(app, samples, 25))  # ] : the sample just before the next kill
        assert len(app.event_pane.events) == 0
        await pilot.press("full_stop")
        await reach(pilot, at_sample(app, samples, 26))
        await reach(pilot, kills_listed(app, 1))  # stepping over the kill lists it
        await pilot.press("left_square_bracket")
        await reach(pilot, at_sample(app, samples, 25))  # [ : back to just before it
        await reach(pilot, kills_listed(app, 0))  # ... where it is not listed any more
        await pilot.press("g")
        await pilot.press(*"+10s")
        await pilot.press("enter")
        await reach(pilot, at_sample(app, samples, 35))  # g +10s: ten seconds on
        assert not app.source.playing and app.source.speed == 1.0
        await pilot.press("plus")
        assert app.source.speed == 2.0
        await pilot.press("minus")
        assert app.source.speed == 1.0
        await pilot.press("plus")
        await pilot.press("space")
        assert app.source.playing
        await reach(pilot, at_sample(app, samples, len(samples) - 1))  # playing runs to the end
        assert "REPLAY" in str(app.header_bar.render())


async def test_replay_keys_are_absent_on_a_live_source() -> None:
    from tests.ui_fixtures import make_app

    app = make_app([])
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.check_action("next_kill", ()) is False
        assert app.timeline is None


def test_goto_parsing() -> None:
    start = FIXED_TIME
    assert parse_goto("+10m", start, start) == start + 600
    assert parse_goto("-30s", start, start) == start - 30
    assert parse_goto("+2", start, start) == start + 2
    assert parse_goto("yesterday", start, start) is None
    assert parse_goto("", start, start) is None
    at = parse_goto("12:34:56", start, start)
    assert at is not None and abs(at - start) < 86400


def test_timeline_marks_kills_and_position() -> None:
    text = timeline_text(150.0, 100.0, 200.0, [180.0], playing=False, speed=1.0, width=120).plain
    assert "✗" in text and "●" in text and "paused" in text
    assert text.index("●") < text.index("✗")


def test_replay_screen_snapshot(snap_compare: Any, tmp_path: Path, utc: None) -> None:
    path, samples = make_recording(tmp_path)

    async def run_before(pilot: Any) -> None:
        app = pilot.app
        await reach(pilot, at_sample(app, samples, 0))
        await pilot.press("right_square_bracket")
        await reach(pilot, at_sample(app, samples, 25))
        await pilot.press("full_stop")
        await reach(pilot, kills_listed(app, 1))

    assert snap_compare(app_for(path), terminal_size=(160, 50), run_before=run_before)


def test_only_a_recording_is_seekable(tmp_path: Path) -> None:
    """The app offers time travel exactly for a Seekable source: a replay is one, a live or recording-while-live
    source is not (the recorder wrapper no longer passes unknown attributes through to what it wraps)."""
    from oomtop.record.recorder import Recorder, RecordingSource
    from oomtop.source import Seekable, StaticSource

    path, samples = make_recording(tmp_path)
    replay = ReplaySource(Recording(path), playing=False)
    try:
        assert isinstance(replay, Seekable)
        assert (replay.start_time, replay.end_time) == (samples[0].time, samples[-1].time)
        live = StaticSource([])
        recording = RecordingSource(live, Recorder(str(tmp_path / "out.oomrec"), 1.0, False))
        assert not isinstance(live, Seekable) and not isinstance(recording, Seekable)
        assert not hasattr(recording, "seek")
    finally:
        replay.recording.close()
