"""Reading a recording: an index of segments and events built from the frame headers, samples decoded on demand.

Opening maps the file and walks the frame headers (payloads are only checksummed), so a 24-hour recording opens
without decoding a single sample; a seek decodes one segment (at most ``segment_s`` of samples), and the last few
decoded segments are cached for stepping back and forth.
"""

from __future__ import annotations

import bisect
import json
import mmap
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from oomtop.collect.identity import identify
from oomtop.model import Cgroup, Identity, OomEvent, Sample, Task
from oomtop.record import codec
from oomtop.record.frames import DATA, END, EVENT, HEADER, MAGIC, NOTICE, SEGMENT_START, Damage, Frame, scan
from oomtop.record.writer import FORMAT_VERSION

CACHED_SEGMENTS = 4


class RecordingError(Exception):
    """The file cannot be replayed at all (not a recording, newer format, unreadable header)."""


@dataclass(slots=True)
class Segment:
    start_time: float
    frames: list[Frame] = field(default_factory=list)


class Recording:
    """A recording opened for replay.  ``damage`` says, in one line, what could not be read, if anything."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file = open(path, "rb")  # held open while the Recording is: closed by close()  # noqa: SIM115
        except FileNotFoundError:
            raise RecordingError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise RecordingError(f"{path} is a directory, not a recording") from None
        except OSError as error:
            raise RecordingError(f"cannot open {path}: {error.strerror}") from None
        size = os.fstat(self._file.fileno()).st_size
        self._data: Any = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        if self._data[: len(MAGIC)] != MAGIC:
            self.close()
            raise RecordingError(f"{path} is not an oomtop recording")
        self.header: dict[str, Any] = {}
        self.segments: list[Segment] = []
        self.events: list[OomEvent] = []
        self.notices: list[str] = []
        self.damage: str | None = None
        self.complete = False
        self._index()
        if not self.header:
            self.close()
            raise RecordingError(f"{path}: the recording's header is missing or damaged")
        version = self.header.get("format")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            self.close()
            raise RecordingError(
                f"{path} was written in recording format {version} by oomtop {self.header.get('oomtop_version', '?')}; "
                f"this oomtop reads format {FORMAT_VERSION} and older: upgrade oomtop to replay it"
            )
        self._decoder = codec.Decoder(self.header.get("schemas") or {})
        self._starts = [segment.start_time for segment in self.segments]
        self._cache: OrderedDict[int, SegmentSamples] = OrderedDict()

    def _index(self) -> None:
        current: Segment | None = None
        lost: list[Damage] = []
        for item in scan(self._data, len(MAGIC)):
            if isinstance(item, Damage):
                lost.append(item)
                current = None  # the stream cannot be resumed mid-segment
                continue
            if item.type == HEADER and not self.header:
                try:
                    self.header = json.loads(item.payload(self._data))
                except ValueError:
                    return
            elif item.type == DATA:
                if item.flags & SEGMENT_START:
                    current = Segment(item.time)
                    self.segments.append(current)
                if current is not None:
                    current.frames.append(item)
            elif item.type == EVENT:
                try:
                    self.events.append(codec.decode_event(json.loads(item.payload(self._data))))
                except (ValueError, TypeError, KeyError):
                    continue
            elif item.type == NOTICE:
                try:
                    self.notices.append(str(json.loads(item.payload(self._data)).get("text", "")))
                except (ValueError, AttributeError):
                    continue
            elif item.type == END:
                self.complete = True
        if lost:
            first = lost[0]
            resumed = [d for d in lost if d.resumed_at is not None]
            tail = " (later frames were found again and replay too)" if resumed else ""
            self.damage = (
                f"{os.path.basename(self.path)}: damaged at byte {first.offset} of {len(self._data)} ({first.reason}): "
                f"everything recorded before it replays{tail}"
            )
        elif not self.complete and self.header:
            self.damage = None  # a recording still being written, or one whose recorder was killed: nothing lost

    # ----------------------------------------------------------------------------------------------- access

    @property
    def interval_s(self) -> float:
        return float(self.header.get("interval_s") or 1.0)

    def segment_samples(self, index: int) -> SegmentSamples:
        """Every sample of one segment, decoded (and cached)."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        samples = self._decode(self.segments[index])
        self._cache[index] = samples
        while len(self._cache) > CACHED_SEGMENTS:
            self._cache.popitem(last=False)
        return samples

    def _decode(self, segment: Segment) -> SegmentSamples:
        """The segment's records, checked by applying them to a running picture; Samples are made on demand."""
        decompressor = zlib.decompressobj()
        records: list[list[Any]] = []
        state = _DecodeState()
        buffer = b""
        for frame in segment.frames:
            try:
                buffer += decompressor.decompress(frame.payload(self._data))
            except zlib.error:
                self._segment_damaged(segment, frame.offset, len(records))
                break
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    record = json.loads(line)
                    state.advance(record, self._decoder)
                    records.append(record)
                except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                    self._segment_damaged(segment, frame.offset, len(records))
                    return self._checked(records, state)
        return self._checked(records, state)

    def _checked(self, records: list[list[Any]], state: _DecodeState) -> SegmentSamples:
        """Make the segment's last picture once (every record that changed in it, decoded once) so that a bad value
        shows here, where it can be reported, and not later in the middle of a replay."""
        while records:
            try:
                last = state.sample(self._decoder)
                return SegmentSamples(records, self._decoder, {len(records) - 1: last})
            except (ValueError, TypeError, KeyError, IndexError, AttributeError):
                records = records[:-1]  # rare (the frames' checksums held): drop the tail and check again
                state = _DecodeState()
                for record in records:
                    state.advance(record, self._decoder)
        return SegmentSamples([], self._decoder, {})

    def _segment_damaged(self, segment: Segment, offset: int, decoded: int) -> None:
        """A segment whose checksums held but whose contents do not decode: say so (once) instead of hiding it."""
        if self.damage is None:
            self.damage = (
                f"{os.path.basename(self.path)}: the samples recorded after {decoded} of the segment starting "
                f"at byte {segment.frames[0].offset} could not be decoded (near byte {offset}); the rest replays"
            )

    def segment_of(self, time_s: float) -> int:
        """The segment holding the sample at or before ``time_s`` (the first one for earlier times)."""
        return max(0, bisect.bisect_right(self._starts, time_s) - 1)

    def sample_at(self, time_s: float) -> tuple[int, int, Sample] | None:
        """(segment, position, sample) of the last sample at or before ``time_s``."""
        if not self.segments:
            return None
        index = self.segment_of(time_s)
        while index >= 0:
            samples = self.segment_samples(index)
            if samples:
                times = samples.times
                position = max(0, bisect.bisect_right(times, time_s) - 1)
                return index, position, samples[position]
            index -= 1
        return None

    def iter_samples(self) -> Iterator[Sample]:
        """Every sample in order (export, round-trip checks)."""
        for index in range(len(self.segments)):
            yield from self._decode(self.segments[index])

    @property
    def start_time(self) -> float | None:
        return self.segments[0].start_time if self.segments else None

    @property
    def end_time(self) -> float | None:
        for index in range(len(self.segments) - 1, -1, -1):
            samples = self.segment_samples(index)
            if samples:
                return samples[-1].time
        return None

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()
        self._file.close()


class SegmentSamples(Sequence[Sample]):
    """The Samples of one segment, made when asked for.

    A seek needs one Sample of a segment (a keyframe and up to a minute of deltas): the deltas before it are applied
    to the raw records only, and Task and Cgroup objects are built once, for what changed, instead of for every
    sample on the way (building 60 x 1,250 frozen dataclasses took a second)."""

    def __init__(self, records: list[list[Any]], decoder: codec.Decoder, made: dict[int, Sample]) -> None:
        self._records = records
        self._decoder = decoder
        self._made = made
        self.times: list[float] = [record[1] for record in records]
        self._state: _DecodeState | None = None
        self._at = -1  # the last record applied to _state

    def __len__(self) -> int:
        return len(self._records)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        made = self._made.get(index)
        if made is not None:
            return made
        if self._state is None or index < self._at:
            self._state, self._at = _DecodeState(), -1
        while self._at < index:
            self._at += 1
            self._state.advance(self._records[self._at], self._decoder)
        made = self._made[index] = self._state.sample(self._decoder)
        return made


class _DecodeState:
    """The running picture a segment's deltas apply to: raw records, and objects made only for what changed."""

    def __init__(self) -> None:
        self.identities: dict[str, Identity] = {}
        self.cgroups: dict[str, Cgroup] = {}
        self.tasks: dict[tuple[int, int], Task] = {}
        self.raw_cgroups: dict[str, list[Any]] = {}  # records as written, for applying field changes
        self.raw_tasks: dict[tuple[int, int], list[Any]] = {}
        self.dirty_cgroups: set[str] = set()  # raw records changed since their objects were made
        self.dirty_tasks: set[tuple[int, int]] = set()
        self.cgroup_order: list[str] = []
        self.task_order: list[tuple[int, int]] = []
        self.node: Any = None
        self.warnings: tuple[str, ...] = ()
        self.stamp: tuple[float, float, int] = (0.0, 0.0, 0)

    def apply(self, record: list[Any], decoder: codec.Decoder) -> Sample:
        self.advance(record, decoder)
        return self.sample(decoder)

    def advance(self, record: list[Any], decoder: codec.Decoder) -> None:
        """Apply one record to the raw picture (cheap: no Task or Cgroup objects are made)."""
        kind = record[0]
        if kind == "K":
            _, time_s, mono, seq, node, warnings, identities, cgroups, tasks = record
            self.identities = {path: decoder.identity(value) for path, value in identities.items()}
            self.node = decoder.node(node)
            self.warnings = tuple(warnings)
            self.cgroups, self.tasks = {}, {}
            self.raw_cgroups = {values[0]: values for values in cgroups}
            self.cgroup_order = [values[0] for values in cgroups]
            self.raw_tasks = {(values[0], values[1]): values for values in tasks}
            self.task_order = list(self.raw_tasks)
            self.dirty_cgroups, self.dirty_tasks = set(self.raw_cgroups), set(self.raw_tasks)
        elif kind == "D":
            _, time_s, mono, seq, node, warnings, identities, cgroups, cgroup_order, tasks, task_order = record
            if node is not None:
                self.node = decoder.node(node)
            if warnings is not None:
                self.warnings = tuple(warnings)
            for path, value in identities.items():
                self.identities[path] = decoder.identity(value)
                self.dirty_cgroups.add(path)
            for values in cgroups:
                if len(values) == 2 and isinstance(values[1], list) and values[0] in self.raw_cgroups:
                    path, changed = values
                    merged = _merge(self.raw_cgroups[path], changed)
                else:
                    path, merged = values[0], values
                if not isinstance(path, str):
                    raise TypeError("cgroup path")
                self.raw_cgroups[path] = merged
                self.dirty_cgroups.add(path)
            for values in tasks:
                key = (values[0], values[1])
                if len(values) == 3 and isinstance(values[2], list) and key in self.raw_tasks:
                    merged = _merge(self.raw_tasks[key], values[2])
                else:
                    merged = values
                self.raw_tasks[key] = merged
                self.dirty_tasks.add(key)
            if cgroup_order is not None:
                self.cgroup_order = _apply_order(self.cgroup_order, cgroup_order, str)
                keep = set(self.cgroup_order)
                self.cgroups = {p: c for p, c in self.cgroups.items() if p in keep}
                self.raw_cgroups = {p: c for p, c in self.raw_cgroups.items() if p in keep}
                self.dirty_cgroups &= keep
            if task_order is not None:
                self.task_order = _apply_order(self.task_order, task_order, tuple)
                keep_tasks = set(self.task_order)
                self.tasks = {k: t for k, t in self.tasks.items() if k in keep_tasks}
                self.raw_tasks = {k: t for k, t in self.raw_tasks.items() if k in keep_tasks}
                self.dirty_tasks &= keep_tasks
        else:
            raise ValueError(f"unknown record {kind!r}")
        self.stamp = (time_s, mono, seq)

    def sample(self, decoder: codec.Decoder) -> Sample:
        """The Sample of the picture as it stands: objects made for what changed since the last one."""
        for path in self.dirty_cgroups:
            raw = self.raw_cgroups.get(path)
            if raw is not None:
                self.cgroups[path] = decoder.cgroup(raw, self.identities.get(path) or identify(path))
        for key in self.dirty_tasks:
            raw = self.raw_tasks.get(key)
            if raw is not None:
                self.tasks[key] = decoder.task(raw)
        self.dirty_cgroups, self.dirty_tasks = set(), set()
        time_s, mono, seq = self.stamp
        return Sample(
            time=time_s,
            monotonic=mono,
            node=self.node,
            cgroups=tuple(self.cgroups[p] for p in self.cgroup_order if p in self.cgroups),
            tasks=tuple(self.tasks[k] for k in self.task_order if k in self.tasks),
            warnings=self.warnings,
            seq=seq,
        )


def _merge(record: list[Any], changed: list[Any]) -> list[Any]:
    merged = list(record)
    for position in range(0, len(changed) - 1, 2):
        index = changed[position]
        if 0 <= index < len(merged):
            merged[index] = changed[position + 1]
    return merged


def _apply_order(before: list[Any], change: Any, kind: type) -> list[Any]:
    """A new member order from a whole list, or from {"del", "ins"} applied to the previous one."""
    if isinstance(change, list):
        return [kind(key) if kind is tuple else key for key in change]
    removed = {kind(key) if kind is tuple else key for key in change.get("del", ())}
    order = [key for key in before if key not in removed]
    for position, key in change.get("ins", ()):
        order.insert(position, kind(key) if kind is tuple else key)
    return order
