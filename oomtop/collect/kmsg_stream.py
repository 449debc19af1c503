"""/dev/kmsg read live: the descriptor, and the OOM parser fed from it at the watcher's pace.

:mod:`oomtop.collect.kmsg` beside this module is the pure parser; this is the part of the events path that reads
the kernel log.  It models what /dev/kmsg does to a reader: one record per ``read()``, EAGAIN when nothing is new,
EPIPE once when the ring buffer overwrote records not read yet (the next sequence number then jumps), and the
whole ring buffer as a backlog right after ``open()``.

Beyond the kills it parses, the watcher needs one more thing from the log: whether it is *settled* -- nothing
lost, no report half read, nothing unread, and quiet for a while.  Only then can a counter increment be said to
have no report still on its way (see :meth:`KernelLog.settled`).
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable

from oomtop.collect.kmsg import LogRecord, OomParser, parse_kmsg_record
from oomtop.model import OomEvent

KMSG_BATCH = 64  # records parsed per call: in a burst the kernel writes as fast as we read, and a finished kill
#                  must not wait for the reader to catch up (the descriptor stays readable; the loop calls again)
QUIET_FLUSH_S = 0.01  # a complete log block with nothing after it for this long is emitted (a group kill's
#                       lines come microseconds apart)


class KmsgStream:
    """/dev/kmsg, non-blocking.  A reader that falls behind gets EPIPE once and carries on (records are lost)."""

    def __init__(self, path: str, fd: int | None = None) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC) if fd is None else fd
        self.last_seq: int | None = None
        self.lost = 0

    @classmethod
    def from_fd(cls, fd: int, name: str = "kmsg") -> KmsgStream:
        """A stream over any descriptor that returns one record per read (tests use a SOCK_SEQPACKET pair)."""
        os.set_blocking(fd, False)
        return cls(name, fd)

    def fileno(self) -> int:
        return self.fd

    def read(self, limit: int = 100_000) -> list[LogRecord]:
        records: list[LogRecord] = []
        while len(records) < limit:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.lost += 1  # overwritten before we read them; the seq gap below counts how many
                continue
            except InterruptedError:
                continue
            if not raw:
                break
            record = parse_kmsg_record(raw)
            if record is None:
                continue
            if record.seq is not None:
                if self.last_seq is not None and record.seq > self.last_seq + 1:
                    self.lost += record.seq - self.last_seq - 1
                self.last_seq = record.seq
            records.append(record)
        return records

    def readable(self) -> bool:
        """Records wait to be read (a descriptor that cannot be polled counts as readable: assume the worst)."""
        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class KernelLog:
    """The kernel log as the watcher follows it: the stream, the parser fed from it, and when a record last came.

    A kill's report is complete only when a record that cannot belong to it arrives, or when the log has been
    quiet for :data:`QUIET_FLUSH_S` (an oom.group kill logs its tasks microseconds apart, so a shorter wait could
    split one kill in two)."""

    def __init__(self, stream: KmsgStream, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.parser = OomParser()
        self._monotonic = monotonic
        self.last_record_at = 0.0

    @classmethod
    def open(
        cls, source: str | KmsgStream, monotonic: Callable[[], float] = time.monotonic
    ) -> tuple[KernelLog, list[OomEvent]]:
        """Open the log and parse the ring buffer's backlog: the kills logged before the watcher started.

        Raises OSError when the log cannot be read (no such device; EACCES/EPERM without root or CAP_SYSLOG when
        ``kernel.dmesg_restrict = 1``)."""
        stream = source if isinstance(source, KmsgStream) else KmsgStream(source)
        records = stream.read()
        log = cls(stream, monotonic)
        return log, log._parse(records) + log.parser.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def read(self) -> list[OomEvent]:
        """The kills completed by the records readable now (at most :data:`KMSG_BATCH` records a call)."""
        records = self.stream.read(KMSG_BATCH)
        if records:
            self.last_record_at = self._monotonic()
        return self._parse(records)

    def flush_if_quiet(self, now: float) -> list[OomEvent]:
        """The kill whose report is complete, once nothing has come for :data:`QUIET_FLUSH_S`."""
        if now - self.last_record_at >= QUIET_FLUSH_S:
            return self.parser.flush()
        return []

    def settled(self, now: float, quiet_s: float) -> bool:
        """Whether every kill counted so far has had its report read: the kernel counts a kill after printing its
        report header and microseconds before "Killed process", so once no record was lost, no report is half
        read, nothing is unread and the log has been quiet for ``quiet_s``, no report is still on its way."""
        if self.stream.lost or self.parser.in_block:
            return False
        return now - self.last_record_at >= quiet_s and not self.stream.readable()

    def _parse(self, records: list[LogRecord]) -> list[OomEvent]:
        events: list[OomEvent] = []
        for record in records:
            events.extend(self.parser.feed(record))
        return events

    def close(self) -> None:
        self.stream.close()
