"""Untrusted recordings (issue 15): files whose frames are intact but whose contents are not what oomtop writes.

A recording attached to a bug report may have been cut, spliced or edited, and its frames re-checksummed.  The
reader must replay every sample before the first damage exactly as written, skip what is bad with one notice saying
where, and never end in a traceback: not in :class:`Recording`, not in :class:`ReplaySource` (seeks, steps, play),
not in ``oomtop replay FILE --json``, not in the replay view.

The files are made here by the real writer from the real collector's samples (tests/test_record.py's scripted
host), then damaged two ways: whole frames dropped, repeated, moved or cut (compressed bytes as written), and single
values inside records replaced, the frames re-compressed and re-checksummed with the writer's own helpers.  Which
values are bad is decided here from the model's type hints with a table of this file's own, not with the code
under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import typing
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oomtop.cli import main
from oomtop.model import Cgroup, Identity, KernelCandidate, KilledTask, NodeInfo, OomEvent, PodRef, Sample, Task
from oomtop.record import codec, frames
from oomtop.record.frames import DATA, EVENT, FRAME, MAGIC, SEGMENT_START
from oomtop.record.reader import Recording, RecordingError
from oomtop.record.replay import ReplaySource
from oomtop.record.writer import _dumps
from oomtop.source import Notice
from oomtop.ui.timeline import timeline_text
from tests.test_record import (
    T0,
    one_line,
    run_oomtop,
    scripted_events,
    scripted_samples,
    with_header,
    write_recording,
)

COUNT = 30  # samples: a new container, a task that exits, another that starts, a reused pid, an identity change
SEGMENT_S = 2.5  # five samples a segment: six segments
# Hypothesis runs each example in the same scratch directory (a function-scoped tmp_path cannot be used with @given).
PROPERTY = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------------------------- the file's parts


@dataclass
class Part:
    """One frame of a recording, decoded: DATA frames as their records, the others as their payload."""

    type: int
    flags: int
    time: float
    records: list[Any]  # DATA: the sample records it holds
    payload: bytes  # the others


@dataclass(repr=False)  # Hypothesis prints the arguments of a failing example: not the whole file
class Written:
    samples: list[Sample]
    events: list[OomEvent]
    data: bytes
    parts: list[Part]  # parts[0] is the header
    scratch: Path

    def counts(self) -> list[int]:
        """The number of samples each frame holds."""
        return [len(part.records) for part in self.parts]

    def __repr__(self) -> str:
        return f"Written({len(self.samples)} samples, {len(self.events)} kills, {len(self.data)} bytes)"

    def segment_starts(self) -> list[int]:
        """The index of every segment's first sample (its keyframe)."""
        starts = []
        seen = 0
        for part in self.parts:
            if part.type == DATA and part.flags & SEGMENT_START:
                starts.append(seen)
            seen += len(part.records)
        return starts

    def segment_ends(self) -> list[int]:
        """For every sample, the index of the first sample of the next segment (or the sample count)."""
        starts = self.segment_starts()
        total = len(self.samples)
        return [next((start for start in starts if start > index), total) for index in range(total)]


def explode(data: bytes) -> list[Part]:
    """The frames of an intact file, DATA frames decompressed and split into records (independently of the reader)."""
    parts = []
    decompressor = zlib.decompressobj()
    for frame in frames.scan(data, len(MAGIC)):
        assert isinstance(frame, frames.Frame), frame
        payload = frame.payload(data)
        records: list[Any] = []
        if frame.type == DATA:
            if frame.flags & SEGMENT_START:
                decompressor = zlib.decompressobj()
            lines = decompressor.decompress(payload).split(b"\n")
            assert lines[-1] == b""
            records = [json.loads(line) for line in lines[:-1]]
        parts.append(Part(frame.type, frame.flags, frame.time, records, payload))
    return parts


def assemble(parts: list[Part]) -> bytes:
    """A file from parts, as the writer makes one: a zlib stream per segment, sync-flushed at every frame's end,
    every frame checksummed by frames.pack (so only the contents can be wrong, never a checksum)."""
    out = [MAGIC]
    compressor: Any = None
    for part in parts:
        if part.type != DATA:
            out.append(frames.pack(part.type, part.payload, part.time, part.flags))
            continue
        if part.flags & SEGMENT_START or compressor is None:
            compressor = zlib.compressobj(6)
        payload = b"".join(compressor.compress(_dumps(record) + b"\n") for record in part.records)
        out.append(frames.pack(DATA, payload + compressor.flush(zlib.Z_SYNC_FLUSH), part.time, part.flags))
    return b"".join(out)


def raw_frames(data: bytes) -> list[bytes]:
    """Every frame's bytes as written (header first)."""
    found = [item for item in frames.scan(data, len(MAGIC)) if isinstance(item, frames.Frame)]
    return [data[frame.offset : frame.offset + FRAME.size + frame.length] for frame in found]


def offset_of(data: bytes, index: int) -> int:
    """The byte offset of the ``index``-th frame of an intact file (the header is frame 0)."""
    found = [item for item in frames.scan(data, len(MAGIC)) if isinstance(item, frames.Frame)]
    return found[index].offset


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Written:
    samples = scripted_samples(tmp_path_factory.mktemp("host") / "host", "v2")
    first, second, node_wide = scripted_events(samples)
    events = [first, dataclasses.replace(node_wide, time=samples[22].time + 0.1), second]  # in time order
    samples = samples[:COUNT]
    path = tmp_path_factory.mktemp("written") / "series.oomrec"
    write_recording(path, samples, events, segment_s=SEGMENT_S)
    data = path.read_bytes()
    parts = explode(data)
    assert assemble(parts) == data, "assemble() must make the writer's bytes, else the mutations test another format"
    return Written(samples, events, data, parts, tmp_path_factory.mktemp("scratch") / "damaged.oomrec")


# ------------------------------------------------------------------------------------------ the invariants


@dataclass
class Replayed:
    samples: list[Sample]
    events: list[OomEvent]
    notices: list[str]
    stderr: str


def replay_everywhere(path: Path, samples: list[Sample]) -> Replayed:
    """Replay the file through Recording, ReplaySource (steps, seeks, kills, play) and ``oomtop replay --json``,
    checking that they agree and that nothing raises; returns what replayed."""
    recording = Recording(str(path))
    try:
        replayed = list(recording.iter_samples())
        for notice in recording.damage_notices:
            assert one_line(notice), notice
        source = ReplaySource(recording, playing=False)
        walked = [source.current()] if source.current() is not None else []
        while source.step(1):
            walked.append(source.current())
        assert walked == replayed, "stepping through the file shows other samples than reading it"
        while source.step(-1):
            pass
        for target in (0.0, samples[0].time, samples[len(samples) // 2].time, samples[-1].time + 1, 1e12):
            assert source.seek(target) == bool(replayed)
            assert (source.current() is not None) == bool(replayed)
        for _ in range(len(source.event_times) + 1):
            source.next_kill()
        for _ in range(len(source.event_times) + 1):
            source.previous_kill()
        fresh = Recording(str(path))  # decoded as it plays: damage is met on the way, not all known at the start
        try:
            played, told = asyncio.run(play(ReplaySource(fresh, speed=1e9), len(replayed)))
        finally:
            fresh.close()
        assert played == replayed, "playing the file shows other samples than reading it"
        assert told == recording.damage_notices, "the replay does not tell every damaged place once"
        events = list(recording.events)
        notices = list(recording.damage_notices)
    finally:
        recording.close()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["replay", str(path), "--json"])
    assert status == 0 and "Traceback" not in err.getvalue(), err.getvalue()
    assert len(err.getvalue().splitlines()) == (1 if notices else 0), err.getvalue()
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [doc["time"] for doc in docs if doc["type"] == "sample"] == [sample.time for sample in replayed]
    assert sum(doc["type"] == "event" for doc in docs) == len(events)
    return Replayed(replayed, events, notices, err.getvalue())


async def play(source: ReplaySource, count: int) -> tuple[list[Sample], list[str]]:
    """The samples and damage notices the source yields while playing through ``count`` samples (and the notices
    it yields once at the end, where it waits for a key)."""
    samples: list[Sample] = []
    told: list[str] = []
    updates = source.updates()

    async def consume(until: int | None) -> None:
        async for update in updates:
            if isinstance(update, Sample):
                samples.append(update)
            elif isinstance(update, Notice) and update.key == "recording-damage":
                told.append(update.text)
            if len(samples) == until:
                return

    if count:
        await asyncio.wait_for(consume(count), 20)
    with contextlib.suppress(TimeoutError):  # the end: what it still says before it waits
        await asyncio.wait_for(consume(None), 0.01)
    source.close()
    await updates.aclose()  # type: ignore[attr-defined]
    return samples, told


# ------------------------------------------------------------------------------------ (a) frame-level damage


@st.composite
def frame_damage(draw: st.DrawFn, count: int) -> tuple[list[int], int | None]:
    """Frame indexes (the header, 0, stays first) after one to three drops, repeats and moves, and maybe a cut:
    how many bytes of the last frame are kept (None: no cut)."""
    order = list(range(count))
    for _ in range(draw(st.integers(1, 3))):
        operation = draw(st.sampled_from(["drop", "repeat", "move", "swap"]))
        index = draw(st.integers(1, len(order) - 1))
        if operation == "drop" and len(order) > 2:
            del order[index]
        elif operation == "repeat":
            order.insert(draw(st.integers(1, len(order))), order[index])
        elif operation == "move":
            order.insert(draw(st.integers(1, len(order) - 1)), order.pop(index))
        else:
            other = draw(st.integers(1, len(order) - 1))
            order[index], order[other] = order[other], order[index]
    cut = draw(st.none() | st.integers(0, FRAME.size + 64))
    return order, cut


@PROPERTY
@given(damage=st.data())
def test_dropped_repeated_moved_and_cut_frames_replay_up_to_the_damage(written: Written, damage: st.DataObject) -> None:
    pieces = raw_frames(written.data)
    order, cut = damage.draw(frame_damage(len(pieces)))
    body = [pieces[index] for index in order]
    if cut is not None:
        body[-1] = body[-1][: min(cut, len(body[-1]) - 1)]
    written.scratch.write_bytes(MAGIC + b"".join(body))
    intact = 0
    while intact < len(order) and order[intact] == intact and not (cut is not None and intact == len(order) - 1):
        intact += 1
    kept = sum(written.counts()[:intact])
    result = replay_everywhere(written.scratch, written.samples)
    assert result.samples[:kept] == written.samples[:kept], f"frames {order} (cut {cut}): the intact start changed"
    changed = order != list(range(len(pieces))) or cut is not None
    assert changed or result.notices == []


# ------------------------------------------------------------------------------- (b) bad values in records

PATH_NAMES = {"path", "cgroup", "oom_cgroup", "task_cgroup", "oom_group_path", "detected_in"}
ADJ_NAMES = {"oom_score_adj", "invoker_oom_score_adj"}
LONG_TEXT = "x" * ((1 << 20) + 1)
BAD_PATHS = ["", "../..", "a//b", "/a//b", "/a/", "/a/../b", "/a/./b", "/..", "/a\0b", "/" + "x" * 5000]


def bad_values(annotation: Any, name: str) -> list[Any]:
    """Values the field ``name`` of this type can never hold, from its type hint and this file's own table."""
    arguments = typing.get_args(annotation)
    optional = type(None) in arguments
    base = next((a for a in arguments if a is not type(None)), annotation) if optional else annotation
    values: list[Any] = [[], {"a": 1}]
    origin = typing.get_origin(base)
    if base is int:
        values += ["7", 7.5, True, 2**64]
        values += [1001, -1001] if name in ADJ_NAMES else ([] if name == "logged_score" else [-1])
        if name == "page_size":
            values.append(0)
    elif base is float:
        values += ["7", True, -1.0, float("nan"), float("inf"), 1e300]
    elif base is str:
        values += [7, True] + (BAD_PATHS if name in PATH_NAMES else [LONG_TEXT])
    elif base is bool:
        values += [0, 1, "true"]
        values.remove([])
        values.append([True])
    elif origin is typing.Literal or (isinstance(base, type) and issubclass(base, Enum)):
        values += ["nope", 5, ""]
    elif origin is tuple:
        item = typing.get_args(base)[0]
        values = ["x", [None], [[]], {"a": 1}]
        values += [[-1], [1.5]] if item is int else [[1]]
        if dataclasses.is_dataclass(item):
            values += [[5], [{"pid": "1", "comm": "x"}]]
    elif dataclasses.is_dataclass(base):
        values += ["x", [1], [None] * 8, 5]
    else:
        raise AssertionError(f"no bad values for {name}: {annotation}")
    if not optional:
        values.append(None)
    return values


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


SCHEMAS = codec.schemas()
CGROUP_HINTS, TASK_HINTS, NODE_HINTS = hints(Cgroup), hints(Task), hints(NodeInfo)
SAMPLE_HINTS, IDENTITY_HINTS = hints(Sample), hints(Identity)


def sites(record: list[Any]) -> Iterator[tuple[tuple[Any, ...], Any, str]]:
    """Every value of a sample record with its type: (where in the record, type hint, field name)."""
    yield (1,), SAMPLE_HINTS["time"], "time"
    yield (2,), SAMPLE_HINTS["monotonic"], "monotonic"
    yield (3,), SAMPLE_HINTS["seq"], "seq"
    if record[4] is not None:
        for index, name in enumerate(SCHEMAS["node"]):
            yield (4, index), NODE_HINTS[name], name
    if record[5] is not None:
        yield (5,), SAMPLE_HINTS["warnings"], "warnings"
    for path in record[6]:
        for index, name in enumerate(["kind", "qos", "pod", "container", "label"]):
            yield (6, path, index), IDENTITY_HINTS[name], name
    keyframe = record[0] == "K"
    for slot, schema, field_hints, keys in (
        (7, SCHEMAS["cgroup"], CGROUP_HINTS, 1),
        (8 if keyframe else 9, SCHEMAS["task"], TASK_HINTS, 2),
    ):
        for position, values in enumerate(record[slot]):
            if len(values) == len(schema):
                for index, name in enumerate(schema):
                    yield (slot, position, index), field_hints[name], name
            else:
                changes = values[keys]
                for pair in range(0, len(changes), 2):
                    name = schema[changes[pair]]
                    yield (slot, position, keys, pair + 1), field_hints[name], name


def put(record: Any, where: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``record`` with the value at ``where`` replaced."""
    copy = json.loads(json.dumps(record))
    target = copy
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    return copy


@dataclass(repr=False)
class RecordDamage:
    parts: list[Part]
    frame: int  # index of the damaged frame in parts
    sample: int  # index of the damaged record among all samples
    what: str

    def __repr__(self) -> str:
        return f"RecordDamage(frame={self.frame}, sample={self.sample}, what={self.what!r})"


def all_records(parts: list[Part]) -> list[tuple[int, int]]:
    """(frame index, record index in it) of every sample record."""
    return [(index, position) for index, part in enumerate(parts) for position in range(len(part.records))]


@st.composite
def bad_record(draw: st.DrawFn, written: Written) -> RecordDamage:
    """One value of one sample record replaced by a value its field can never hold."""
    records = all_records(written.parts)
    which = draw(st.integers(0, len(records) - 1))
    frame, position = records[which]
    record = written.parts[frame].records[position]
    where, annotation, name = draw(st.sampled_from(list(sites(record))))
    value = draw(st.sampled_from(bad_values(annotation, name)))
    parts = list(written.parts)
    damaged_records = list(parts[frame].records)
    damaged_records[position] = put(record, where, value)
    parts[frame] = dataclasses.replace(parts[frame], records=damaged_records)
    return RecordDamage(parts, frame, which, f"{name} at {where} = {str(value)[:40]!r}")


@PROPERTY
@given(damage=st.data())
def test_a_bad_value_skips_to_the_next_keyframe_with_one_notice(written: Written, damage: st.DataObject) -> None:
    """The strong form: the value is one its field can never hold, so the samples from its record to the end of its
    segment are skipped (they are deltas on it), every other sample replays as written, and the notice names the
    frame that holds it."""
    bad = damage.draw(bad_record(written))
    data = assemble(bad.parts)
    written.scratch.write_bytes(data)
    result = replay_everywhere(written.scratch, written.samples)
    end = written.segment_ends()[bad.sample]
    assert result.samples == written.samples[: bad.sample] + written.samples[end:], bad.what
    assert result.events == written.events
    assert len(result.notices) == 1 and f"frame at byte {offset_of(data, bad.frame)} " in result.notices[0], (
        bad.what,
        result.notices,
    )
    assert f"byte {offset_of(data, bad.frame)} " in result.stderr


def junk() -> st.SearchStrategy[Any]:
    """Anything JSON can say, weighted towards the values issue 15 names."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.sampled_from([-1, -(2**63), 2**63, 2**64, 10**30]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.sampled_from([*BAD_PATHS, "K", "D", "/", "Burstable", "memcg"]),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=8,
    )


def nodes(value: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Where every value inside a JSON value is (not the value itself)."""
    if isinstance(value, list):
        for index, element in enumerate(value):
            yield (*where, index)
            yield from nodes(element, (*where, index))
    elif isinstance(value, dict):
        for key, element in value.items():
            yield (*where, key)
            yield from nodes(element, (*where, key))


@PROPERTY
@given(damage=st.data())
def test_any_value_anywhere_replays_the_rest_and_never_raises(written: Written, damage: st.DataObject) -> None:
    """The weak form: any position of any record (structure included: tags, orders, change indexes) gets any
    value, which may even be a valid one; the samples before that record and every later segment replay as
    written, and nothing raises."""
    records = all_records(written.parts)
    which = damage.draw(st.integers(0, len(records) - 1))
    frame, position = records[which]
    record = written.parts[frame].records[position]
    where = damage.draw(st.sampled_from(list(nodes(record))))
    value = damage.draw(junk())
    parts = list(written.parts)
    damaged_records = list(parts[frame].records)
    damaged_records[position] = put(record, where, value)
    parts[frame] = dataclasses.replace(parts[frame], records=damaged_records)
    written.scratch.write_bytes(assemble(parts))
    result = replay_everywhere(written.scratch, written.samples)
    end = written.segment_ends()[which]
    later = written.samples[end:]
    assert result.samples[:which] == written.samples[:which]
    assert result.samples[len(result.samples) - len(later) :] == later
    assert len(result.samples) <= len(written.samples)


def event_sites(event: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], Any, str]]:
    """Every value of an event object with its type."""
    nested = {"victim": KilledTask, "pod": PodRef, "container": None}
    event_hints = hints(OomEvent)
    for name, value in event.items():
        yield (name,), event_hints[name], name
        if name in ("killed", "candidates"):
            cls = KilledTask if name == "killed" else KernelCandidate
            for position, element in enumerate(value):
                for key in element:
                    yield (name, position, key), hints(cls)[key], key
        elif name in nested and value is not None:
            cls = nested[name] or typing.get_args(event_hints[name])[0]
            for key in value:
                yield (name, key), hints(cls)[key], key


@PROPERTY
@given(damage=st.data())
def test_a_bad_kill_is_left_out_with_one_notice(written: Written, damage: st.DataObject) -> None:
    """One kill's object gets either a value its field can never hold (the kill is left out, one notice names its
    frame) or any value anywhere, the whole object included (it may stay: the value may be a valid one); the
    samples and the other kills replay as written either way."""
    events = [index for index, part in enumerate(written.parts) if part.type == EVENT]
    frame = damage.draw(st.sampled_from(events))
    event = json.loads(written.parts[frame].payload)
    typed = damage.draw(st.booleans())
    if typed:
        where, annotation, name = damage.draw(st.sampled_from(list(event_sites(event))))
        changed = put(event, where, damage.draw(st.sampled_from(bad_values(annotation, name))))
    else:
        where = damage.draw(st.sampled_from([(), *nodes(event)]))
        changed = put(event, where, damage.draw(junk())) if where else damage.draw(junk())
    parts = list(written.parts)
    parts[frame] = dataclasses.replace(parts[frame], payload=_dumps(changed))
    data = assemble(parts)
    written.scratch.write_bytes(data)
    result = replay_everywhere(written.scratch, written.samples)
    assert result.samples == written.samples
    position = events.index(frame)
    others = written.events[:position] + written.events[position + 1 :]
    if typed or len(result.events) < len(written.events):
        assert result.events == others, (where, changed)
        assert len(result.notices) == 1 and f"kill recorded at byte {offset_of(data, frame)}" in result.notices[0]
    else:
        assert [event for index, event in enumerate(result.events) if index != position] == others


# --------------------------------------------------------------------------------- the crashes of issue 15


def with_record(written: Written, frame_kind: str, change: Any) -> tuple[bytes, int]:
    """The file with ``change(record)`` applied to the first keyframe ("K") or the first delta ("D") of its second
    segment; returns the bytes and the offset of the frame that holds it."""
    starts = [index for index, part in enumerate(written.parts) if part.type == DATA and part.flags & SEGMENT_START]
    parts = list(written.parts)
    for index in range(starts[1], len(parts)):
        records = parts[index].records
        for position, record in enumerate(records):
            if record[0] == frame_kind:
                changed = list(records)
                changed[position] = change(json.loads(json.dumps(record)))
                parts[index] = dataclasses.replace(parts[index], records=changed)
                data = assemble(parts)
                return data, offset_of(data, index)
    raise AssertionError("no such record")


def field_index(kind: str, name: str) -> int:
    return SCHEMAS[kind].index(name)


def null_rss(record: list[Any]) -> list[Any]:
    """rank.eligible: a null where a byte count belongs (the task's anonymous RSS)."""
    record[8][0][field_index("task", "rss_anon_bytes")] = None
    return record


def null_path(record: list[Any]) -> list[Any]:
    """model.parent_path: a cgroup whose path is null (its identity moved along)."""
    record[7][-1][0] = None
    return record


def string_inactive_file(record: list[Any]) -> list[Any]:
    """model.working_set_bytes: usage minus a string."""
    record[7][1][field_index("cgroup", "inactive_file_bytes")] = "many"
    return record


def cgroup_not_a_list(record: list[Any]) -> list[Any]:
    """codec.cgroup: a cgroup record that is a number."""
    record[7][0] = 7
    return record


def changed_usage_is_null(record: list[Any]) -> list[Any]:
    """A delta whose changed value is null: later deltas would build on it."""
    for values in record[7]:
        if len(values) == 2:
            values[1][1] = None
            return record
    raise AssertionError("this delta changes no cgroup")


CRASHES = {
    "rank.eligible null bytes": ("K", null_rss),
    "model.parent_path null path": ("K", null_path),
    "model.working_set_bytes string": ("K", string_inactive_file),
    "codec.cgroup not a list": ("K", cgroup_not_a_list),
    "a delta's null change": ("D", changed_usage_is_null),
}


@pytest.mark.parametrize("crash", list(CRASHES))
def test_the_crashes_of_issue_15_are_skipped_with_one_notice(written: Written, tmp_path: Path, crash: str) -> None:
    kind, change = CRASHES[crash]
    data, offset = with_record(written, kind, change)
    path = tmp_path / "crash.oomrec"
    path.write_bytes(data)
    result = replay_everywhere(path, written.samples)
    first, second = written.segment_starts()[1:3]
    bad = first if kind == "K" else first + 1  # the keyframe, or the delta right after it
    assert result.samples == written.samples[:bad] + written.samples[second:]
    assert len(result.notices) == 1 and f"frame at byte {offset} " in result.notices[0], result.notices
    done = run_oomtop("replay", str(path), "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.splitlines()) == 1 and f"byte {offset} " in done.stderr, done.stderr


def twice(slot: int) -> Any:
    def change(record: list[Any]) -> list[Any]:
        record[slot].append(record[slot][-1])
        return record

    change.__doc__ = f"a keyframe that lists its last {'cgroup' if slot == 7 else 'task'} twice"
    return change


def set_slot(slot: int, value: Any) -> Any:
    def change(record: list[Any]) -> list[Any]:
        record[slot] = value
        return record

    return change


def change_the_path(record: list[Any]) -> list[Any]:
    """A delta whose change names field 0, the cgroup's path: its key."""
    for values in record[7]:
        if len(values) == 2:
            values[1][:2] = [0, "/elsewhere"]
            return record
    raise AssertionError("this delta changes no cgroup")


def odd_changes(record: list[Any]) -> list[Any]:
    """A delta whose change list has an index without a value."""
    for values in record[7]:
        if len(values) == 2:
            values[1].append(1)
            return record
    raise AssertionError("this delta changes no cgroup")


STRUCTURE = {
    "a cgroup listed twice": ("K", twice(7)),
    "a task listed twice": ("K", twice(8)),
    "an order inserting a cgroup without a record": ("D", set_slot(8, {"del": [], "ins": [[0, "/nowhere"]]})),
    "an order naming a task twice": ("D", set_slot(10, [[101, 1100], [101, 1100]])),
    "an order change of another shape": ("D", set_slot(8, {"move": []})),
    "a change of the key": ("D", change_the_path),
    "a change list of odd length": ("D", odd_changes),
    "an unknown record kind": ("D", set_slot(0, "Q")),
    "a second keyframe": ("D", lambda record: ["K", *record[1:9]]),
    "a delta of another length": ("D", lambda record: [*record, None]),
    "a keyframe that is a delta": ("K", lambda record: ["D", *record[1:7], [], None, [], None]),
}


@pytest.mark.parametrize("damage", list(STRUCTURE))
def test_records_of_the_wrong_shape_skip_to_the_next_keyframe(written: Written, tmp_path: Path, damage: str) -> None:
    """Records whose values may all be valid but whose shape no writer makes: applied, each would show a picture
    that was never recorded (a member doubled, one without figures, a cgroup under another path)."""
    kind, change = STRUCTURE[damage]
    data, offset = with_record(written, kind, change)
    path = tmp_path / "shape.oomrec"
    path.write_bytes(data)
    result = replay_everywhere(path, written.samples)
    first, second = written.segment_starts()[1:3]
    bad = first if kind == "K" else first + 1
    assert result.samples == written.samples[:bad] + written.samples[second:]
    assert len(result.notices) == 1 and f"frame at byte {offset} " in result.notices[0], result.notices


def test_the_first_delta_holds_a_change_for_the_crash_test(written: Written) -> None:
    """The control for the delta case above: the first delta of the second segment does change a cgroup, and it is
    the segment's second sample (so the skip is one sample later than the keyframe's)."""
    starts = [index for index, part in enumerate(written.parts) if part.type == DATA and part.flags & SEGMENT_START]
    records = [record for part in written.parts[starts[1] : starts[2]] for record in part.records]
    assert records[0][0] == "K" and records[1][0] == "D"
    assert any(len(values) == 2 for values in records[1][7])


async def test_the_replay_view_shows_a_damaged_recording_and_says_where(written: Written, tmp_path: Path) -> None:
    """The Textual app over a file with a bad keyframe in its second segment and a bad kill: it opens on the first
    sample, steps across the lost segment, plays to the end, and shows both notices; never a traceback."""
    from oomtop.ui.app import OomtopApp
    from tests.ui_fixtures import fixed_clock, wait_for

    data, offset = with_record(written, "K", null_rss)
    parts = explode(data)
    kill = next(index for index, part in enumerate(parts) if part.type == EVENT)
    parts[kill] = dataclasses.replace(parts[kill], payload=_dumps({"kind": "memcg", "victim": None}))
    path = tmp_path / "view.oomrec"
    data = assemble(parts)
    path.write_bytes(data)
    source = ReplaySource(Recording(str(path)), playing=False)
    app = OomtopApp(source, clock=fixed_clock, cursor_blink=False, interval_s=0.5)
    first, second = written.segment_starts()[1:3]
    kept = written.samples[:first] + written.samples[second:]  # the second segment is lost
    async with app.run_test(size=(160, 50)) as pilot:
        await wait_for(lambda: app.latest == kept[0], pilot, "the first sample")
        for index in range(1, first + 4):
            await pilot.press("full_stop")
            await wait_for(lambda index=index: app.latest == kept[index], pilot, f"step {index}")
        await pilot.press("comma")
        await wait_for(lambda: app.latest == kept[first + 2], pilot, "a step back")
        await pilot.press("plus", "plus", "plus", "plus", "plus", "plus", "space")
        await wait_for(lambda: app.latest == kept[-1], pilot, "the end")
        shown = [text for _key, text in app.notice_bar.notices]
        assert len(source.recording.damage_notices) == 2, source.recording.damage_notices
        assert sum(f"frame at byte {offset} " in text for text in shown) == 1, shown
        assert sum(f"kill recorded at byte {offset_of(data, kill)}" in text for text in shown) == 1, shown
    source.recording.close()


# -------------------------------------------------------------------- not a recording, or a newer format


def test_files_that_are_no_recording_or_a_newer_one_exit_2_with_one_line(written: Written, tmp_path: Path) -> None:
    cases = {
        "text.oomrec": b"this is not a recording\n",
        "binary.oomrec": bytes(range(256)) * 4,
        "magic-only.oomrec": MAGIC,
        "header-is-a-list.oomrec": MAGIC + frames.pack(frames.HEADER, b"[1, 2]", T0),
        "header-not-json.oomrec": MAGIC + frames.pack(frames.HEADER, b"{" * 100_000, T0),
        "newer.oomrec": with_header(written.data, format=2, oomtop_version="9.0\n\x1b[31mred"),
        "format-is-a-string.oomrec": with_header(written.data, format="1"),
        "format-zero.oomrec": with_header(written.data, format=0),
        "schemas-a-list.oomrec": with_header(written.data, schemas=[1]),
        "schema-without-usage.oomrec": with_header(
            written.data, schemas={**SCHEMAS, "cgroup": [n for n in SCHEMAS["cgroup"] if n != "usage_bytes"]}
        ),
        "schema-path-not-first.oomrec": with_header(
            written.data, schemas={**SCHEMAS, "cgroup": [*SCHEMAS["cgroup"][1:], "path"]}
        ),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(RecordingError) as caught:
            Recording(str(tmp_path / name))
        assert one_line(str(caught.value)) and "\x1b" not in str(caught.value), (name, str(caught.value))
        for argv in (["replay", str(tmp_path / name), "--json"], ["replay", str(tmp_path / name)]):
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
            assert status == 2 and out.getvalue() == "", (name, argv, out.getvalue())
            assert err.getvalue() == f"oomtop: {caught.value}\n", (name, err.getvalue())
    for name in ("text.oomrec", "newer.oomrec", "schema-without-usage.oomrec"):  # the process: no traceback
        for argv in (["replay", str(tmp_path / name), "--json"], ["replay", str(tmp_path / name)]):
            done = run_oomtop(*argv)
            assert done.returncode == 2 and done.stdout == "", (name, argv, done.stdout)
            assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("oomtop: "), (name, done.stderr)
    with pytest.raises(RecordingError, match="upgrade oomtop"):
        Recording(str(tmp_path / "newer.oomrec"))


def test_a_header_with_a_bad_interval_replays_at_one_second(written: Written, tmp_path: Path) -> None:
    for interval in ("fast", -1, 0, float("nan"), None, [1]):
        path = tmp_path / "interval.oomrec"
        path.unlink(missing_ok=True)
        path.write_bytes(with_header(written.data, interval_s=interval))
        recording = Recording(str(path))
        try:
            assert recording.interval_s == 1.0
        finally:
            recording.close()


@pytest.mark.parametrize("segment", [0, 1])
@pytest.mark.parametrize("bad_time", [float("nan"), float("inf"), -1.0, 1e300])
def test_a_frame_with_an_impossible_time_is_skipped_with_one_notice(
    written: Written, tmp_path: Path, bad_time: float, segment: int
) -> None:
    """A checksummed frame whose time no clock can show (the timeline and every seek use frame times): its segment
    is skipped from it on, with one notice, and the recording's span stays the samples' span."""
    index = [i for i, part in enumerate(written.parts) if part.type == DATA and part.flags & SEGMENT_START][segment]
    parts = list(written.parts)
    parts[index] = dataclasses.replace(parts[index], time=bad_time)
    data = assemble(parts)
    path = tmp_path / "time.oomrec"
    path.write_bytes(data)
    result = replay_everywhere(path, written.samples)
    first, second = written.segment_starts()[segment : segment + 2]
    kept = written.samples[:first] + written.samples[second:]
    assert result.samples == kept
    assert len(result.notices) == 1 and f"frame at byte {offset_of(data, index)} " in result.notices[0]
    recording = Recording(str(path))
    try:
        assert (recording.start_time, recording.end_time) == (kept[0].time, kept[-1].time)
        timeline_text(None, recording.start_time, recording.end_time, [], playing=False, speed=1.0, width=80)
    finally:
        recording.close()


def test_a_frame_whose_records_are_not_from_its_time_ends_its_segment(written: Written, tmp_path: Path) -> None:
    """A frame takes the time of the first record it holds; a frame whose first record has another time was not
    written there (a frame moved or repeated by damage, whose stream may still decompress into plausible records),
    so its segment ends before it, with one notice."""
    starts = [i for i, part in enumerate(written.parts) if part.type == DATA and part.flags & SEGMENT_START]
    index = next(i for i in range(starts[1] + 1, starts[2]) if written.parts[i].type == DATA)
    parts = list(written.parts)
    parts[index] = dataclasses.replace(parts[index], time=parts[index].time + 0.25)
    data = assemble(parts)
    path = tmp_path / "moved.oomrec"
    path.write_bytes(data)
    result = replay_everywhere(path, written.samples)
    first, second = written.segment_starts()[1:3]
    bad = first + sum(len(part.records) for part in written.parts[starts[1] : index])
    assert first < bad < second
    assert result.samples == written.samples[:bad] + written.samples[second:]
    assert len(result.notices) == 1 and f"frame at byte {offset_of(data, index)} " in result.notices[0]
