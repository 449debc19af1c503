"""Recording from an asyncio program: a tee around any Source, and the headless ``oomtop record``.

The event loop only encodes (CPU work, microseconds per update); every write and every fsync runs in a worker
thread through aiofiles, so a slow or stuck disk stalls that thread, never the loop that feeds the UI, the
collector and the kill watcher.  One writer task hands the thread whatever is pending, one hop at a time, so the
bytes reach the file in the order they were encoded and the file is byte for byte what the synchronous
:class:`RecordingFile` writes.  A frame is written at least once a second (the encoder's flush, and a tick every
quarter second), so ``kill -9`` loses at most that; fsync runs every few seconds.  A failed write (disk full) ends
the recording with one Notice; the Source and the UI go on.  A disk that cannot keep up at all ends it the same way
once ``MAX_BACKLOG_BYTES`` wait in memory, rather than letting the backlog grow without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiofiles.os

from oomtop.model import OomEvent, Sample
from oomtop.record.writer import RecordingFile, RecordingStopped
from oomtop.source import Notice, Source, SourceMode, Update, close_updates
from oomtop.text import format_bytes

SYNC_EVERY_S = 5.0
TICK_EVERY_S = 0.25  # the writer task wakes at least this often: the once-a-second flush is never late by more
MAX_BACKLOG_BYTES = 64 << 20  # hours of a busy node's recording: past it the disk is not slow, it is stuck


class Recorder:
    """Writes updates to a recording file; after a write error it only reports ``stopped``.

    ``write`` encodes on the caller's (the event loop's) thread and queues the bytes; the task that ``start``
    creates writes them off the loop.  ``close`` waits for what is queued: the file is complete when it returns.
    """

    def __init__(self, path: str, interval_s: float, redact_cmdline: bool = False, **encoder_options: Any) -> None:
        self.file = RecordingFile(path, interval_s, redact_cmdline, **encoder_options)  # raises RecordingStopped
        self.stopped: str | None = None
        self.samples = 0
        self.events = 0
        #: set when the recording stops (headless ``oomtop record`` wakes on it: no update needs to come first)
        self.stopped_event = asyncio.Event()
        self._reported = False
        self._closed = False
        self._writer: asyncio.Task[None] | None = None
        # Bytes encoded on the loop, not yet in the file.  The loop appends, the worker thread pops from the left
        # (deque appends and pops are atomic); _lock makes the thread's writes and close() one at a time.
        self._pending: collections.deque[bytes] = collections.deque()
        self._lock = threading.Lock()
        self._queued_bytes = 0  # only the loop adds to it
        self._wake = asyncio.Event()
        self._write_off_loop: Callable[..., Awaitable[None]] = aiofiles.os.wrap(self._write_pending)

    def write(self, update: Update) -> Notice | None:
        """Record one update; a Notice (once) when the recording has stopped since the last call."""
        if self.stopped is None and not self._closed:
            try:
                data = self._encode(update)
            except RecordingStopped as error:  # defensive: encoding itself never touches the file
                self._stop(str(error))
            else:
                self._queue(data)
        return self.take_notice()

    def take_notice(self) -> Notice | None:
        """The Notice that says the recording stopped, the first time it is asked for after the stop."""
        if self.stopped is None or self._reported:
            return None
        self._reported = True
        return Notice(self.stopped, "recording-stopped")

    def _encode(self, update: Update) -> bytes:
        if isinstance(update, Sample):
            self.samples += 1
            return self.file.sample_frames(update)
        if isinstance(update, OomEvent):
            if update.historical:
                return b""  # found in the ring buffer at start: it happened before this recording
            self.events += 1
            return self.file.event_frames(update)
        if isinstance(update, Notice):
            return self.file.notice_frames(update.text, update.key)
        return b""

    def _queue(self, data: bytes) -> None:
        if not data:
            return
        self._pending.append(data)
        self._queued_bytes += len(data)
        backlog = self._queued_bytes - self.file.bytes_written
        if backlog > MAX_BACKLOG_BYTES:
            self._stop(
                f"recording to {self.file.path} stopped: the disk is too slow "
                f"({format_bytes(backlog)} waiting to be written)"
            )
            self._pending.clear()  # the file keeps every whole frame written so far, a readable prefix
            return
        self._wake.set()

    def _stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
            self.stopped_event.set()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())

    async def _write_loop(self) -> None:
        """The one task that writes: wakes on new bytes or every TICK_EVERY_S, and awaits each hop to the worker
        thread before the next, so the thread never has two writes of ours at once."""
        last_sync = time.monotonic()
        while self.stopped is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_EVERY_S)
            self._wake.clear()
            self._queue(self.file.tick_frames())  # the encoder stays on the loop; only bytes cross
            if self.stopped is not None:
                break
            sync = time.monotonic() - last_sync >= SYNC_EVERY_S
            if sync:
                last_sync = time.monotonic()
            elif not self._pending:
                continue  # nothing to write: no hop to the thread
            try:
                await self._write_off_loop(sync)
            except RecordingStopped as error:
                self._stop(str(error))
            except OSError as error:
                self._stop(f"recording to {self.file.path} stopped: {error.strerror or error}")
        if self.stopped is not None:
            self._pending.clear()

    def _write_pending(self, sync: bool = False) -> None:
        """In a worker thread: write what is pending, oldest first, then fsync if asked.  Under the lock, so it
        never overlaps ``close()``; a job that runs after the file was closed finds it closed and writes nothing
        (its descriptor number may belong to another file by then)."""
        with self._lock:
            while True:
                try:
                    data = self._pending.popleft()
                except IndexError:
                    break
                self.file.write(data)
            if sync:
                self.file.sync()

    def close(self) -> None:
        """Write what is pending and the end frame, then close; blocks until then (waiting for a write in flight in
        the worker thread), so the file is complete when it returns, also when the process exits right after."""
        self._closed = True
        if self._writer is not None and not self._writer.done():
            with contextlib.suppress(RuntimeError):  # its loop already closed (the app ended): nothing to stop
                self._writer.cancel()
        with self._lock, contextlib.suppress(RecordingStopped, OSError):
            if self.stopped is not None:
                self._pending.clear()
                if self.file.bytes_written < self._queued_bytes:
                    self.file.abandon()  # frames were dropped: an end frame after the gap would not decode
                    return
            while self._pending:
                self.file.write(self._pending.popleft())
            self.file.close()

    @property
    def bytes_written(self) -> int:
        return self.file.bytes_written


class RecordingSource:
    """A Source that records everything another Source yields (``oomtop --record FILE``)."""

    def __init__(self, inner: Source, recorder: Recorder) -> None:
        self.inner = inner
        self.recorder = recorder
        self.mode: SourceMode = inner.mode

    async def updates(self) -> AsyncIterator[Update]:
        self.recorder.start()
        try:
            async for update in self.inner.updates():
                stopped = self.recorder.write(update)
                yield update
                if stopped is not None:
                    yield stopped
        finally:
            self.recorder.close()

    def close(self) -> None:
        self.inner.close()
        self.recorder.close()


async def record_headless(source: Source, recorder: Recorder, duration_s: float | None, path: str) -> int:
    """``oomtop record``: until the duration, SIGINT or SIGTERM; a progress line on a terminal, else silent."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tty = sys.stderr.isatty()
    started = time.monotonic()
    recorder.start()
    updates = source.updates()
    last_progress = 0.0
    status = 0
    try:
        while not stop.is_set():
            remaining = None if duration_s is None else duration_s - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                break
            getter = asyncio.ensure_future(anext(updates))
            stopper = asyncio.ensure_future(stop.wait())
            failed = asyncio.ensure_future(recorder.stopped_event.wait())  # the writer failed between two updates
            done, _ = await asyncio.wait(
                {getter, stopper, failed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            stopper.cancel()
            failed.cancel()
            if getter not in done:
                getter.cancel()
                notice = recorder.take_notice()
                if notice is not None:
                    print(f"\n{notice.text}" if tty else notice.text, file=sys.stderr)
                    status = 1
                    break
                continue
            try:
                update = getter.result()
            except StopAsyncIteration:
                break
            notice = recorder.write(update)
            if isinstance(update, Notice) and tty:
                print(f"\roomtop record: {update.text}", file=sys.stderr)
            if notice is not None:
                print(f"\n{notice.text}" if tty else notice.text, file=sys.stderr)
                status = 1
                break
            if tty and time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                elapsed = int(last_progress - started)
                print(
                    f"\rrecording {path}: {elapsed // 3600:02d}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}, "
                    f"{recorder.samples} samples, {recorder.events} kills, {format_bytes(recorder.bytes_written)}   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        source.close()
        with contextlib.suppress(Exception):
            await close_updates(updates)
        recorder.close()
        if tty:
            print(
                f"\rrecorded {recorder.samples} samples and {recorder.events} kills to {path} "
                f"({format_bytes(recorder.bytes_written)})" + " " * 10,
                file=sys.stderr,
            )
    return status
