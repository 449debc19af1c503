"""Writing a recording: Samples as keyframes and deltas in zlib segments, events as frames of their own.

Unchanged values are stored once: the collector hands out the same Cgroup/Task objects while nothing changed, so a
delta holds only the cgroups and tasks that are new objects, plus the member order when it changed.  A segment
(one zlib stream) starts with a keyframe every ``segment_s`` seconds, so a seek decodes at most one segment.
Within a segment the compressor is sync-flushed at least once a second: a ``kill -9`` loses at most the last
second, and the dictionary carries over between flushes, which keeps the ratio of one long stream.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass, replace
from typing import Any

from oomtop import __version__
from oomtop.model import Cgroup, Identity, OomEvent, Sample, Task
from oomtop.record import codec
from oomtop.record.frames import DATA, END, EVENT, HEADER, MAGIC, NOTICE, SEGMENT_START, pack

FORMAT_VERSION = 1


class RecordingStopped(Exception):
    """Writing failed (disk full, I/O error): the recording ends here, the rest of oomtop goes on."""


def _dumps(value: Any) -> bytes:
    # ASCII escapes carry every string through, also names that are not valid UTF-8 (kept as surrogates).
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode("ascii")


@dataclass(slots=True)
class _State:
    cgroups: dict[str, Cgroup]
    identities: dict[str, Identity]
    tasks: dict[tuple[int, int], Task]
    cgroup_order: tuple[str, ...]
    task_order: tuple[tuple[int, int], ...]
    node: Any
    warnings: tuple[str, ...]


class RecordingEncoder:
    """Turns Samples and events into frame bytes; the caller writes them (sync or with aiofiles)."""

    def __init__(
        self,
        interval_s: float,
        redact_cmdline: bool = False,
        segment_s: float = 60.0,
        flush_s: float = 1.0,
        monotonic: Any = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self.redact_cmdline = redact_cmdline
        self.segment_s = segment_s
        self.flush_s = flush_s
        self._monotonic = monotonic
        self._compressor: Any = None
        self._segment_started = 0.0
        self._segment_first = True
        self._chunk_time: float | None = None
        self._pending = b""
        self._last_flush = monotonic()
        self._state: _State | None = None
        self.samples = 0
        self.events = 0
        self.header_written = False

    def header(self, sample: Sample | None) -> bytes:
        """The magic line and the header frame (node facts come from the first sample when there is one)."""
        node = sample.node if sample is not None else None
        created = time.time()
        header = {
            "format": FORMAT_VERSION,
            "oomtop_version": __version__,
            "created": created,
            "interval_s": self.interval_s,
            "redact_cmdline": self.redact_cmdline,
            "node": None if node is None else dict(zip(codec.NODE_FIELDS, codec.encode_node(node), strict=False)),
            "schemas": codec.schemas(),
        }
        self.header_written = True
        return MAGIC + pack(HEADER, _dumps(header), created)

    def sample(self, sample: Sample) -> bytes:
        """The frames this sample completes (often nothing: records wait for the once-a-second flush)."""
        if self.redact_cmdline:
            sample = _redacted(sample)
        out = b""
        new_segment = self._state is None or sample.time - self._segment_started >= self.segment_s
        if new_segment:
            out += self._flush(force=True)
            self._compressor = zlib.compressobj(6)
            self._segment_started = sample.time
            self._segment_first = True
            record = self._keyframe(sample)
        else:
            record = self._delta(sample)
        if self._chunk_time is None:
            self._chunk_time = sample.time
        self._pending += self._compressor.compress(_dumps(record) + b"\n")
        self.samples += 1
        return out + self._flush(force=False)

    def event(self, event: OomEvent) -> bytes:
        """An event frame, after flushing the samples that came before it (the file stays in time order)."""
        self.events += 1
        return self._flush(force=True) + pack(EVENT, _dumps(codec.encode_event(event)), event.time or time.time())

    def notice(self, text: str, key: str = "") -> bytes:
        return self._flush(force=True) + pack(NOTICE, _dumps({"text": text, "key": key}), time.time())

    def close(self) -> bytes:
        return self._flush(force=True) + pack(END, b"", time.time())

    def tick(self) -> bytes:
        """Called now and then: the flush that keeps a crash from losing more than ``flush_s``."""
        return self._flush(force=False)

    def _flush(self, force: bool) -> bytes:
        if self._compressor is None or self._chunk_time is None:
            return b""
        now = self._monotonic()
        if not force and now - self._last_flush < self.flush_s:
            return b""
        self._last_flush = now
        payload = self._pending + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        self._pending = b""
        flags = SEGMENT_START if self._segment_first else 0
        self._segment_first = False
        frame = pack(DATA, payload, self._chunk_time, flags)
        self._chunk_time = None
        return frame

    # ------------------------------------------------------------------------------------------- records

    def _keyframe(self, sample: Sample) -> list[Any]:
        state = self._state = _State(
            cgroups={c.path: c for c in sample.cgroups},
            identities={c.path: c.identity for c in sample.cgroups},
            tasks={t.key: t for t in sample.tasks},
            cgroup_order=tuple(c.path for c in sample.cgroups),
            task_order=tuple(t.key for t in sample.tasks),
            node=sample.node,
            warnings=sample.warnings,
        )
        return [
            "K",
            sample.time,
            sample.monotonic,
            sample.seq,
            codec.encode_node(sample.node),
            list(sample.warnings),
            {path: codec.encode_identity(identity) for path, identity in state.identities.items()},
            [codec.encode_cgroup(c) for c in sample.cgroups],
            [codec.encode_task(t) for t in sample.tasks],
        ]

    def _delta(self, sample: Sample) -> list[Any]:
        """Only what moved: for a known cgroup or task the changed fields as [index, value, ...] pairs (most
        ticks change rss and usage, not names or paths), full records for new ones, and the member order as
        removals and insertions when only membership changed."""
        state = self._state
        assert state is not None
        identities: dict[str, Any] = {}
        cgroups: list[Any] = []
        for cgroup in sample.cgroups:
            before = state.cgroups.get(cgroup.path)
            if before is cgroup:
                continue
            if state.identities.get(cgroup.path) != cgroup.identity:
                identities[cgroup.path] = codec.encode_identity(cgroup.identity)
                state.identities[cgroup.path] = cgroup.identity
            if before is None:
                cgroups.append(codec.encode_cgroup(cgroup))
            elif before != cgroup:
                changed = _changed_fields(codec.encode_cgroup(before), codec.encode_cgroup(cgroup))
                if changed:
                    cgroups.append([cgroup.path, changed])
            state.cgroups[cgroup.path] = cgroup
        tasks: list[Any] = []
        for task in sample.tasks:
            known = state.tasks.get(task.key)
            if known is task:
                continue
            if known is None:
                tasks.append(codec.encode_task(task))
            elif known != task:
                tasks.append(
                    [task.pid, task.start_ticks, _changed_fields(codec.encode_task(known), codec.encode_task(task))]
                )
            state.tasks[task.key] = task
        cgroup_order = tuple(c.path for c in sample.cgroups)
        task_order = tuple(t.key for t in sample.tasks)
        new_cgroup_order = None
        if cgroup_order != state.cgroup_order:
            new_cgroup_order = _order_change(state.cgroup_order, cgroup_order)
            for path in set(state.cgroup_order) - set(cgroup_order):
                state.cgroups.pop(path, None)
                state.identities.pop(path, None)
            state.cgroup_order = cgroup_order
        new_task_order = None
        if task_order != state.task_order:
            new_task_order = _order_change(state.task_order, task_order)
            for key in set(state.task_order) - set(task_order):
                state.tasks.pop(key, None)
            state.task_order = task_order
        node = None
        if sample.node != state.node:
            node = codec.encode_node(sample.node)
            state.node = sample.node
        warnings = None
        if sample.warnings != state.warnings:
            warnings = list(sample.warnings)
            state.warnings = sample.warnings
        return [
            "D",
            sample.time,
            sample.monotonic,
            sample.seq,
            node,
            warnings,
            identities,
            cgroups,
            new_cgroup_order,
            tasks,
            new_task_order,
        ]


def _changed_fields(before: list[Any], after: list[Any]) -> list[Any]:
    """[index, new value, index, new value, ...] of the fields that differ."""
    changed: list[Any] = []
    for index, (old, new) in enumerate(zip(before, after, strict=False)):
        if old != new:
            changed += [index, new]
    return changed


def _key(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _order_change(before: tuple[Any, ...], after: tuple[Any, ...]) -> Any:
    """{"del": [...], "ins": [[position, key], ...]} when the survivors kept their order (the usual case: members
    came and went), else the whole new order as a list."""
    after_set = set(after)
    before_set = set(before)
    kept_before = [key for key in before if key in after_set]
    kept_after = [key for key in after if key in before_set]
    if kept_before != kept_after:
        return [_key(key) for key in after]
    return {
        "del": [_key(key) for key in before if key not in after_set],
        "ins": [[position, _key(key)] for position, key in enumerate(after) if key not in before_set],
    }


def _redacted(sample: Sample) -> Sample:
    if not any(task.cmdline for task in sample.tasks):
        return sample
    return replace(sample, tasks=tuple(replace(t, cmdline="") if t.cmdline else t for t in sample.tasks))


class RecordingFile:
    """A recording being written with plain os.write calls.

    Encoding and writing are separate steps: the ``*_frames`` methods turn updates into bytes (they touch only the
    encoder), :meth:`write` puts bytes into the file (it touches only the descriptor).  The synchronous
    ``write_*`` methods do both at once; the recorder of an asyncio program encodes on its event loop and writes
    from a worker thread, so a slow disk stalls a thread, never the loop (oomtop/record/recorder.py).
    """

    def __init__(self, path: str, interval_s: float, redact_cmdline: bool = False, **encoder_options: Any) -> None:
        self.path = path
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            raise RecordingStopped(
                f"{path} already exists; choose a new file name (recordings are never overwritten)"
            ) from None
        except OSError as error:
            raise RecordingStopped(f"cannot create {path}: {error.strerror}") from None
        os.fchmod(self.fd, 0o600)  # whatever the umask: command lines can hold secrets
        self.encoder = RecordingEncoder(interval_s, redact_cmdline, **encoder_options)
        self.bytes_written = 0
        self.closed = False

    # --------------------------------------------------------------------------- encoding (no file access)

    def sample_frames(self, sample: Sample) -> bytes:
        """What :meth:`write_sample` writes (the header first, the first time)."""
        header = b"" if self.encoder.header_written else self.encoder.header(sample)
        return header + self.encoder.sample(sample)

    def event_frames(self, event: OomEvent) -> bytes:
        header = b"" if self.encoder.header_written else self.encoder.header(None)
        return header + self.encoder.event(event)

    def notice_frames(self, text: str, key: str = "") -> bytes:
        """A notice is only worth keeping in a file that has a header (one that recorded something)."""
        return self.encoder.notice(text, key) if self.encoder.header_written else b""

    def tick_frames(self) -> bytes:
        return self.encoder.tick()

    def end_frames(self) -> bytes:
        """The last bytes of a complete file: the pending data and the end frame (a header first if none was)."""
        header = b"" if self.encoder.header_written else self.encoder.header(None)
        return header + self.encoder.close()

    # ------------------------------------------------------------------------------ writing (no encoding)

    def write(self, data: bytes) -> None:
        """Write all of ``data``; a failure closes the file and raises RecordingStopped (nothing more is written,
        so the file stays a readable prefix)."""
        if not data or self.closed:
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
                self.bytes_written += written
        except OSError as error:
            self.closed = True
            os.close(self.fd)
            reason = "the disk is full" if error.errno == 28 else (error.strerror or str(error))
            raise RecordingStopped(f"recording to {self.path} stopped: {reason}") from None

    def write_sample(self, sample: Sample) -> None:
        self.write(self.sample_frames(sample))

    def write_event(self, event: OomEvent) -> None:
        self.write(self.event_frames(event))

    def write_notice(self, text: str, key: str = "") -> None:
        self.write(self.notice_frames(text, key))

    def tick(self) -> None:
        self.write(self.tick_frames())

    def sync(self) -> None:
        if not self.closed:
            os.fsync(self.fd)

    def abandon(self) -> None:
        """Close without the end frame: for a recording given up with frames still unwritten, where an end frame
        after the gap would continue a compressed stream that misses its middle."""
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def close(self) -> None:
        if self.closed:
            return
        self.write(self.end_frames())
        self.closed = True
        os.close(self.fd)
