"""Reading a recording: an index of segments and events built from the frame headers, samples decoded on demand.

Opening maps the file and walks the frame headers (payloads are only checksummed), so a 24-hour recording opens
without decoding a single sample; a seek decodes one segment (at most ``segment_s`` of samples), and the last few
decoded segments are cached for stepping back and forth.

A recording is untrusted (it comes attached to bug reports), and a frame's checksum only proves the bytes are the
ones written.  So the first decoding of a segment checks every record (:mod:`oomtop.record.codec` checks the values,
:class:`_DecodeState` the shape: keyframe first, deltas after it, member orders that name exactly the members that
have records) before anything is made from it.  What "skipping" a bad record means follows from the deltas: a delta
holds only what changed since the record before it, so every later delta of the segment builds on the bad one.
Dropping only the bad record and applying the rest would show samples that were never recorded (a cgroup keeping a
value it no longer had, a member missing or doubled) without a word; so a bad record ends its segment, and replay
goes on at the next keyframe (at most ``segment_s``, a minute, later).  The samples before it replay exactly as
written, and one notice says where (the byte offset of the frame that holds it, and the sample time).
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from oomtop.collect.identity import identify
from oomtop.model import Cgroup, Identity, OomEvent, Sample, Task
from oomtop.record import codec
from oomtop.record.frames import DATA, END, EVENT, HEADER, MAGIC, NOTICE, SEGMENT_START, Damage, Frame, scan
from oomtop.record.writer import FORMAT_VERSION

CACHED_SEGMENTS = 4
MAX_DAMAGE_NOTICES = 10  # distinct damaged places told one by one; past that, one line says there are more
MAX_SEGMENT_BYTES = 256 << 20  # decompressed; a minute of records of a 10,000-process node is a few MB

# What decoding untrusted bytes may raise (codec.BadRecord is a ValueError); RecursionError: JSON nested too deep.
DECODE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError, zlib.error)


class RecordingError(Exception):
    """The file cannot be replayed at all (not a recording, newer format, unreadable header)."""


@dataclass(slots=True)
class Segment:
    start_time: float
    frames: list[Frame] = field(default_factory=list)


class Recording:
    """A recording opened for replay.

    ``damage_notices`` says, one line per damaged place, what could not be read: frames found damaged when the file
    is opened, bad kills, and bad sample records as their segments are first decoded (a replay meets them as it
    goes; an export has met them all when it ends).  ``damage`` is the first of them, or None.
    """

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
        self.damage_notices: list[str] = []
        self.damage_count = 0  # damaged places found so far, also those past MAX_DAMAGE_NOTICES
        self._damaged_frames: set[int] = set()  # a segment decoded again (the cache is small) is not told twice
        self.complete = False
        self._index()
        if not self.header:
            self.close()
            raise RecordingError(f"{path}: the recording's header is missing or damaged")
        version = self.header.get("format")
        if type(version) is not int or version < 1:
            self.close()
            raise RecordingError(f"{path}: the recording's header is damaged (format {_shown(version)})")
        if version > FORMAT_VERSION:
            self.close()
            raise RecordingError(
                f"{path} was written in recording format {version} by oomtop "
                f"{_shown(self.header.get('oomtop_version', '?'))}; "
                f"this oomtop reads format {FORMAT_VERSION} and older: upgrade oomtop to replay it"
            )
        try:
            self._decoder = codec.Decoder(self.header.get("schemas") or {})
        except codec.BadRecord as error:
            self.close()
            raise RecordingError(f"{path}: the recording's header is damaged ({error})") from None
        self._starts = [segment.start_time for segment in self.segments]
        self._cache: OrderedDict[int, SegmentSamples] = OrderedDict()

    @property
    def damage(self) -> str | None:
        """The first damaged place, in one line (None: nothing found damaged so far)."""
        return self.damage_notices[0] if self.damage_notices else None

    def _note_damage(self, text: str) -> None:
        self.damage_count += 1
        if len(self.damage_notices) < MAX_DAMAGE_NOTICES:
            self.damage_notices.append(text)
        elif len(self.damage_notices) == MAX_DAMAGE_NOTICES:
            self.damage_notices.append(
                f"{os.path.basename(self.path)}: more damaged places further on (not told one by one)"
            )

    def _index(self) -> None:
        current: Segment | None = None
        lost: list[Damage] = []
        bad_frames: list[str] = []
        name = os.path.basename(self.path)
        for item in scan(self._data, len(MAGIC)):
            if isinstance(item, Damage):
                lost.append(item)
                current = None  # the stream cannot be resumed mid-segment
                continue
            if item.type == HEADER and not self.header:
                try:
                    header = json.loads(item.payload(self._data))
                except DECODE_ERRORS:
                    return
                if type(header) is not dict:
                    return
                self.header = header
            elif item.type == DATA:
                if not 0.0 <= item.time <= codec.MAX_TIME_S:  # NaN too: the time bisects seeks, the timeline shows it
                    bad_frames.append(
                        f"{name}: the frame at byte {item.offset} has an impossible time; the samples from it to "
                        f"the next keyframe are skipped, the rest replays"
                    )
                    current = None
                    continue
                if item.flags & SEGMENT_START:
                    current = Segment(item.time)
                    self.segments.append(current)
                if current is not None:
                    current.frames.append(item)
            elif item.type == EVENT:
                try:
                    self.events.append(codec.decode_event(json.loads(item.payload(self._data))))
                except DECODE_ERRORS as error:
                    bad_frames.append(
                        f"{name}: the kill recorded at byte {item.offset} is not valid ({_reason(error)}); it is "
                        f"left out, the rest replays"
                    )
            elif item.type == NOTICE:
                try:
                    self.notices.append(str(json.loads(item.payload(self._data)).get("text", "")))
                except DECODE_ERRORS:
                    continue
            elif item.type == END:
                self.complete = True
        if lost:
            first = lost[0]
            resumed = [d for d in lost if d.resumed_at is not None]
            tail = " (later frames were found again and replay too)" if resumed else ""
            self._note_damage(
                f"{name}: damaged at byte {first.offset} of {len(self._data)} ({first.reason}): "
                f"everything recorded before it replays{tail}"
            )
        for text in bad_frames:
            self._note_damage(text)

    # ----------------------------------------------------------------------------------------------- access

    @property
    def interval_s(self) -> float:
        """The recording's sampling interval (1 s where the header's is not a sane one)."""
        value = self.header.get("interval_s")
        if (type(value) is int or type(value) is float) and 0.0 < value <= 86400.0:
            return float(value)
        return 1.0

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
        """The segment's records, each checked and applied to a running picture; Samples are made on demand.

        A record that fails a check ends the segment there (see the module's docstring for why).  Two properties of
        the writer are checked too, because a frame dropped, repeated or moved by damage shows in them: every DATA
        frame holds whole records (the compressor is flushed at a record's end), and the first of them has the
        frame's time (a frame takes the time of the first record it holds)."""
        decompressor = zlib.decompressobj()
        records: list[list[Any]] = []
        state: _DecodeState | None = _DecodeState()
        budget = MAX_SEGMENT_BYTES
        for frame in segment.frames:
            record: Any = None
            try:
                chunk = decompressor.decompress(frame.payload(self._data), budget + 1)
                if len(chunk) > budget or decompressor.unconsumed_tail:
                    raise codec.BadRecord(f"its segment decompresses to more than {MAX_SEGMENT_BYTES >> 20} MiB")
                budget -= len(chunk)
                *lines, rest = chunk.split(b"\n")
                if rest or not lines:
                    raise codec.BadRecord("the frame does not hold whole records")
                for position, line in enumerate(lines):
                    record = json.loads(line)
                    assert state is not None
                    state.check_and_advance(record, self._decoder, keyframe=not records)
                    if position == 0 and state.stamp[0] != frame.time:
                        raise codec.BadRecord("its first record is not from the frame's time")
                    records.append(record)
            except DECODE_ERRORS as error:
                self._segment_damaged(frame, record, error)
                state = None  # a record that failed half-way may have changed the picture: made again below
                break
        return self._checked(records, state)

    def _checked(self, records: list[list[Any]], state: _DecodeState | None) -> SegmentSamples:
        """Make the segment's last picture once (every record that changed in it, decoded once): the records were
        checked, so this is not expected to fail; if it does anyway, the tail goes, and it is said."""
        while records:
            try:
                if state is None:
                    state = _DecodeState()
                    for record in records:
                        state.advance(record, self._decoder)
                last = state.sample(self._decoder)
                return SegmentSamples(records, self._decoder, {len(records) - 1: last})
            except DECODE_ERRORS:
                records, state = records[:-1], None
                self._note_damage(f"{os.path.basename(self.path)}: a sample record could not be replayed; skipped")
        return SegmentSamples([], self._decoder, {})

    def _segment_damaged(self, frame: Frame, record: Any, error: BaseException) -> None:
        """A segment whose checksums held but whose contents do not decode: say so once, where and when."""
        if frame.offset in self._damaged_frames:
            return
        self._damaged_frames.add(frame.offset)
        when = frame.time
        if type(record) is list and len(record) > 1 and codec.check_time(record[1]):
            when = record[1]
        self._note_damage(
            f"{os.path.basename(self.path)}: a sample record in the frame at byte {frame.offset} "
            f"(recorded {_clock(when)}) is not valid ({_reason(error)}); the samples from it to the next keyframe "
            f"are skipped, the rest replays"
        )

    def segment_of(self, time_s: float) -> int:
        """The segment holding the sample at or before ``time_s`` (the first one for earlier times)."""
        return max(0, bisect.bisect_right(self._starts, time_s) - 1)

    def sample_at(self, time_s: float) -> tuple[int, int, Sample] | None:
        """(segment, position, sample) of the last sample at or before ``time_s``; the first sample for earlier
        times (also when the segments before ``time_s`` were all lost to damage)."""
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
        for index in range(self.segment_of(time_s) + 1, len(self.segments)):
            if self.segment_samples(index):
                return index, 0, self.segment_samples(index)[0]
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
    """The running picture a segment's deltas apply to: raw records, and objects made only for what changed.

    :meth:`check_and_advance` is the first pass over a segment, on untrusted records; :meth:`advance` applies
    records that passed it (a seek replays a segment's records again, and need not check them twice)."""

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

    def check_and_advance(self, record: Any, decoder: codec.Decoder, keyframe: bool) -> None:
        """Check an untrusted record (``keyframe``: the segment's first, which must be one, and the only one), then
        apply it; raises codec.BadRecord (or another of DECODE_ERRORS) and may leave the picture half-changed."""
        if type(record) is not list or not record:
            raise codec.BadRecord(f"a sample record: {codec.kind_of(record)}, not a list")
        if keyframe != (record[0] == "K"):
            raise codec.BadRecord("a segment holds one keyframe, first" if keyframe else "a second keyframe")
        if keyframe:
            self._check_keyframe(record, decoder)
        else:
            self._check_delta(record, decoder)
        self.advance(record, decoder, check=True)
        if len(self.cgroup_order) != len(self.raw_cgroups) or len(self.task_order) != len(self.raw_tasks):
            raise codec.BadRecord("the member order does not name exactly the members that have records")
        if keyframe or record[8] is not None or record[10] is not None:
            if len(set(self.cgroup_order)) != len(self.cgroup_order) or not all(
                path in self.raw_cgroups for path in self.cgroup_order
            ):
                raise codec.BadRecord("the cgroup order does not name exactly the cgroups that have records")
            if len(set(self.task_order)) != len(self.task_order) or not all(
                key in self.raw_tasks for key in self.task_order
            ):
                raise codec.BadRecord("the task order does not name exactly the tasks that have records")

    @staticmethod
    def _check_keyframe(record: list[Any], decoder: codec.Decoder) -> None:
        if len(record) != 9:
            raise codec.BadRecord("a keyframe of the wrong length")
        _, time_s, mono, seq, _node, warnings, identities, cgroups, tasks = record
        codec.check_stamp(time_s, mono, seq)
        codec.check_warnings(warnings)
        _check_identity_paths(identities)
        if type(cgroups) is not list or type(tasks) is not list:
            raise codec.BadRecord("a keyframe whose cgroups or tasks are not lists")
        for values in cgroups:
            decoder.check_cgroup(values)
        for values in tasks:
            decoder.check_task(values)

    @staticmethod
    def _check_delta(record: list[Any], decoder: codec.Decoder) -> None:
        if len(record) != 11:
            raise codec.BadRecord("a delta of the wrong length")
        _, time_s, mono, seq, _node, warnings, identities, cgroups, cgroup_order, tasks, task_order = record
        codec.check_stamp(time_s, mono, seq)
        if warnings is not None:
            codec.check_warnings(warnings)
        _check_identity_paths(identities)
        if type(cgroups) is not list or type(tasks) is not list:
            raise codec.BadRecord("a delta whose cgroups or tasks are not lists")
        # The cgroup and task entries are checked as they are applied (advance with check=True): one pass.
        _check_order(cgroup_order, _is_path_key)
        _check_order(task_order, _is_task_key)

    def _apply_checked(self, cgroups: list[Any], tasks: list[Any], decoder: codec.Decoder) -> None:
        """A delta's cgroup and task entries, each checked as it is applied: the same choices as the trusted loop
        in :meth:`advance` (a change for a known member, else a whole record) for every entry that passes."""
        raw_cgroups, raw_tasks = self.raw_cgroups, self.raw_tasks
        dirty_cgroups, dirty_tasks = self.dirty_cgroups, self.dirty_tasks
        merge_cgroup, merge_task = decoder.merge_cgroup_changes, decoder.merge_task_changes
        for values in cgroups:
            if (
                type(values) is list
                and len(values) == 2
                and type(values[0]) is str
                and type(values[1]) is list
                and values[0] in raw_cgroups
            ):
                path = values[0]
                raw_cgroups[path] = merge_cgroup(raw_cgroups[path], values[1])
            else:
                decoder.check_cgroup(values)
                path = values[0]
                raw_cgroups[path] = values
            dirty_cgroups.add(path)
        for values in tasks:
            if type(values) is list and len(values) == 3 and type(values[0]) is int and type(values[1]) is int:
                key = (values[0], values[1])
                if type(values[2]) is list and key in raw_tasks:
                    raw_tasks[key] = merge_task(raw_tasks[key], values[2])
                    dirty_tasks.add(key)
                    continue
            decoder.check_task(values)
            key = (values[0], values[1])
            raw_tasks[key] = values
            dirty_tasks.add(key)

    def advance(self, record: list[Any], decoder: codec.Decoder, check: bool = False) -> None:
        """Apply one record to the raw picture (cheap: no Task or Cgroup objects are made); ``check``: its cgroup
        and task entries have not been checked yet (the first pass, from check_and_advance)."""
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
            self.task_order = [(values[0], values[1]) for values in tasks]
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
            if check:
                self._apply_checked(cgroups, tasks, decoder)
            else:
                for values in cgroups:
                    if len(values) == 2 and isinstance(values[1], list) and values[0] in self.raw_cgroups:
                        path, changed = values
                        merged = _merge(self.raw_cgroups[path], changed)
                    else:
                        path, merged = values[0], values
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


def _is_path_key(key: Any) -> bool:
    return codec.is_cgroup_path(key)


_PID_RULE, _START_RULE = codec.field_rules(Task)[:2]


def _is_task_key(key: Any) -> bool:
    """A task's key as written: [pid, start_ticks]."""
    return type(key) is list and len(key) == 2 and _PID_RULE.check(key[0]) is None and _START_RULE.check(key[1]) is None


def _check_identity_paths(identities: Any) -> None:
    if type(identities) is not dict:
        raise codec.BadRecord("the identities are not an object")
    for path in identities:
        codec.check_cgroup_path(path, "an identity's cgroup path")


def _check_order(change: Any, is_key: Any) -> None:
    """None (unchanged), the whole order as a list of keys, or {"del": [key, ...], "ins": [[position, key], ...]}."""
    if change is None:
        return
    if type(change) is list:
        if not all(is_key(key) for key in change):
            raise codec.BadRecord("a member order holds something that is not a member's key")
        return
    if type(change) is not dict or not set(change) <= {"del", "ins"}:
        raise codec.BadRecord("a member order change of the wrong shape")
    removed = change.get("del", [])
    inserted = change.get("ins", [])
    if type(removed) is not list or not all(is_key(key) for key in removed):
        raise codec.BadRecord("a member order change removes something that is not a member's key")
    if type(inserted) is not list or not all(
        type(pair) is list and len(pair) == 2 and type(pair[0]) is int and pair[0] >= 0 and is_key(pair[1])
        for pair in inserted
    ):
        raise codec.BadRecord("a member order change inserts something that is not [position, key]")


def _reason(error: BaseException) -> str:
    """Why a record was refused, in words that quote nothing from the file."""
    if isinstance(error, codec.BadRecord):
        return str(error)
    if isinstance(error, json.JSONDecodeError):
        return "not JSON"
    if isinstance(error, zlib.error):
        return "the compressed stream is broken"
    if isinstance(error, RecursionError):
        return "nested too deep"
    return f"unexpected {type(error).__name__}"


def _clock(time_s: float) -> str:
    """A checked time as the replay view shows it (local time)."""
    return datetime.fromtimestamp(time_s).strftime("%Y-%m-%d %H:%M:%S") if math.isfinite(time_s) else "?"


def _shown(value: Any) -> str:
    """A header value in a message: as JSON (no newline, no escape sequence gets through), cut short."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except ValueError:
        text = "?"
    return text if len(text) <= 40 else text[:37] + "..."


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
