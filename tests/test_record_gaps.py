"""Writer behaviours mutation testing found unguarded (issue 11).

mutmut changed these in ``oomtop/record/writer.py`` and every test still passed:

* a cgroup that appears or goes away *inside* a segment (the scripted series only changed its cgroups at segment
  starts, so the delta path for a new cgroup, a removed one and a reordered list never ran: writing ``None`` for a
  new cgroup's record passed);
* text that is not ASCII (a CJK process name, an accented pod name): ``ensure_ascii`` dropped made the recorder
  raise on the first such name;
* a kill before the first sample (the kernel log's backlog), and a recording stopped before any sample: the file
  must still have its header;
* the header naming the schemas it was written with (what lets another oomtop version read the file);
* a short ``write()`` (a pipe, NFS, a nearly full disk): the rest of the bytes must follow.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from oomtop import __version__
from oomtop.model import OomEvent, Sample
from oomtop.record import codec, writer
from oomtop.record.frames import DATA, EVENT
from oomtop.record.reader import Recording
from oomtop.record.writer import RecordingFile
from tests.test_record import CTR2, INTERVAL, scripted_events, scripted_samples, valid_frames, write_recording

Series = tuple[list[Sample], list[OomEvent]]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Series:
    samples = scripted_samples(tmp_path_factory.mktemp("series") / "host", "v2")
    return samples, scripted_events(samples)


def replayed(path: Path) -> tuple[list[Sample], list[OomEvent], dict[str, object]]:
    recording = Recording(str(path))
    try:
        assert recording.damage is None, recording.damage
        return list(recording.iter_samples()), list(recording.events), dict(recording.header)
    finally:
        recording.close()


def test_one_long_segment_round_trips_cgroups_that_come_and_go_inside_it(series: Series, tmp_path: Path) -> None:
    samples, events = series
    appears = next(i for i, s in enumerate(samples) if any(c.path == CTR2 for c in s.cgroups))
    gone = next(i for i, s in enumerate(samples) if i > appears and not any(c.path == CTR2 for c in s.cgroups))
    assert 0 < appears < gone < len(samples) - 1  # both happen mid-recording
    path = tmp_path / "one-segment.oomrec"
    write_recording(path, samples, events, segment_s=3600.0)
    got, got_events, _header = replayed(path)
    recording = Recording(str(path))
    try:
        assert len(recording.segments) == 1, "the whole series must be deltas of one keyframe"
    finally:
        recording.close()
    for index, (sample, want) in enumerate(zip(got, samples, strict=True)):
        assert sample == want, f"sample {index} differs"
    assert got_events == events


def test_names_that_are_not_ascii_round_trip(series: Series, tmp_path: Path) -> None:
    samples, _events = series
    names = ["数据库-主", "café ✓", "🐘 postgres", "e\u0301"]
    renamed = []
    for index, sample in enumerate(samples[:12]):
        tasks = tuple(
            replace(task, comm=names[(index + k) % len(names)], cmdline=f"/bin/{names[k % len(names)]} --x=ü")
            for k, task in enumerate(sample.tasks)
        )
        renamed.append(replace(sample, tasks=tasks))
    path = tmp_path / "names.oomrec"
    write_recording(path, renamed)
    got, _events, _header = replayed(path)
    assert got == renamed


def test_a_kill_before_the_first_sample_and_a_recording_with_no_sample(series: Series, tmp_path: Path) -> None:
    samples, events = series
    early = tmp_path / "early.oomrec"
    recording = RecordingFile(str(early), INTERVAL)
    recording.write_event(events[0])  # the kernel log's backlog arrives before the first poll
    for sample in samples[:3]:
        recording.write_sample(sample)
    recording.close()
    got, got_events, header = replayed(early)
    assert got == samples[:3] and got_events == [events[0]]
    assert header["format"] >= 1
    assert recording.encoder.samples == 3 and recording.encoder.events == 1

    empty = tmp_path / "empty.oomrec"
    RecordingFile(str(empty), INTERVAL).close()  # stopped before the first sample
    got, got_events, header = replayed(empty)
    assert got == [] and got_events == [] and header["interval_s"] == INTERVAL


def test_the_header_names_the_writers_schemas_and_version(series: Series, tmp_path: Path) -> None:
    path = tmp_path / "header.oomrec"
    write_recording(path, series[0][:2])
    _samples, _events, header = replayed(path)
    assert header["schemas"] == codec.schemas()
    assert header["oomtop_version"] == __version__
    assert isinstance(header["created"], float | int) and header["created"] > 0


def test_short_writes_are_completed(series: Series, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples, events = series
    whole = tmp_path / "whole.oomrec"
    write_recording(whole, samples, events)
    real_write = os.write
    calls = 0

    def short_write(fd: int, data: bytes | memoryview) -> int:
        nonlocal calls
        calls += 1
        return real_write(fd, bytes(data[:7]))  # at most 7 bytes a call, as a pipe under pressure may

    monkeypatch.setattr(writer.os, "write", short_write)
    short = tmp_path / "short.oomrec"
    write_recording(short, samples, events)
    monkeypatch.undo()
    assert calls > 100
    got, got_events, _header = replayed(short)
    assert got == samples and got_events == events
    # every data and kill frame byte for byte (the header's creation time and the end frame's time differ)
    assert payloads(short.read_bytes()) == payloads(whole.read_bytes())


def payloads(data: bytes) -> list[tuple[int, bytes]]:
    return [(frame.type, frame.payload(data)) for frame in valid_frames(data) if frame.type in (DATA, EVENT)]
