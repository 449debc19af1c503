"""Recording from an asyncio program: a tee around any Source, and the headless ``oomtop record``.

Writes go to the page cache as they come (a frame at least once a second, so ``kill -9`` loses at most that);
fsync, which can stall for a long time on a busy disk, runs off the event loop through aiofiles every few
seconds.  A failed write (disk full) ends the recording with one Notice; the Source and the UI go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import aiofiles.os

from oomtop.model import OomEvent, Sample
from oomtop.record.writer import RecordingFile, RecordingStopped
from oomtop.source import Notice, Source, SourceMode, Update, close_updates
from oomtop.text import format_bytes

SYNC_EVERY_S = 5.0
_fsync = aiofiles.os.wrap(os.fsync)


class Recorder:
    """Writes updates to a recording file; after a write error it only reports ``stopped``."""

    def __init__(self, path: str, interval_s: float, redact_cmdline: bool = False) -> None:
        self.file = RecordingFile(path, interval_s, redact_cmdline)  # raises RecordingStopped (exists, no access)
        self.stopped: str | None = None
        self.samples = 0
        self.events = 0
        self._maintainer: asyncio.Task[None] | None = None

    def write(self, update: Update) -> Notice | None:
        """Record one update; a Notice when recording just stopped."""
        if self.stopped is not None:
            return None
        try:
            if isinstance(update, Sample):
                self.file.write_sample(update)
                self.samples += 1
            elif isinstance(update, OomEvent):
                if update.historical:
                    return None  # found in the ring buffer at start: it happened before this recording
                self.file.write_event(update)
                self.events += 1
            elif isinstance(update, Notice):
                self.file.write_notice(update.text, update.key)
        except RecordingStopped as error:
            self.stopped = str(error)
            return Notice(self.stopped, "recording-stopped")
        return None

    def start(self) -> None:
        self._maintainer = asyncio.create_task(self._maintain())

    async def _maintain(self) -> None:
        last_sync = time.monotonic()
        while self.stopped is None:
            await asyncio.sleep(0.25)
            try:
                self.file.tick()
                if time.monotonic() - last_sync >= SYNC_EVERY_S and not self.file.closed:
                    last_sync = time.monotonic()
                    await _fsync(self.file.fd)
            except RecordingStopped as error:
                self.stopped = str(error)
            except OSError as error:
                self.stopped = f"recording to {self.file.path} stopped: {error.strerror or error}"

    def close(self) -> None:
        if self._maintainer is not None:
            self._maintainer.cancel()
        with contextlib.suppress(RecordingStopped, OSError):
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
            done, _ = await asyncio.wait({getter, stopper}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:
                getter.cancel()
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
