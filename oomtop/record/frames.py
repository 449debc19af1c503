"""The file's framing: a magic line, then self-checking frames.

    magic   b"OOMTOP-REC\\n"
    frame   b"OT" | type:u8 | flags:u8 | length:u32 | crc32:u32 | time:f64 | payload[length]

The CRC covers the header's other fields as well as the payload, so a flipped flag or time is caught too.

A reader checks every frame's CRC, so a truncated or damaged file replays up to the damage, and frames written
after it (a new segment starts a new zlib stream) can be found again by scanning for the next valid header.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

MAGIC = b"OOMTOP-REC\n"
FRAME = struct.Struct("<2sBBIId")
FRAME_TAG = b"OT"
MAX_FRAME = 64 << 20

HEADER = ord("H")  # JSON: format version, oomtop version, node, interval, schemas
DATA = ord("Z")  # a piece of the current segment's zlib stream (records: keyframes and deltas)
EVENT = ord("E")  # JSON: one OomEvent (kept outside the stream so a file's kills are indexed without decoding)
NOTICE = ord("N")  # JSON: a notice
END = ord("X")  # a clean close
FRAME_TYPES = {HEADER, DATA, EVENT, NOTICE, END}

SEGMENT_START = 0x01  # this DATA frame starts a new zlib stream whose first record is a keyframe


def _checksum(frame_type: int, flags: int, length: int, time_s: float, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(FRAME.pack(FRAME_TAG, frame_type, flags, length, 0, time_s)))


def pack(frame_type: int, payload: bytes, time_s: float, flags: int = 0) -> bytes:
    crc = _checksum(frame_type, flags, len(payload), time_s, payload)
    return FRAME.pack(FRAME_TAG, frame_type, flags, len(payload), crc, time_s) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """A valid frame; its payload is ``data[payload_offset : payload_offset + length]`` (no view is kept, so the
    file's mmap can always be closed)."""

    offset: int
    type: int
    flags: int
    time: float
    payload_offset: int
    length: int

    def payload(self, data: bytes | memoryview) -> bytes:
        return bytes(data[self.payload_offset : self.payload_offset + self.length])


@dataclass(frozen=True, slots=True)
class Damage:
    """Where the file stopped making sense, and whether frames were found again after it."""

    offset: int
    reason: str
    resumed_at: int | None


def scan(data: bytes | memoryview, start: int) -> Iterator[Frame | Damage]:
    """Every valid frame from ``start`` on; a Damage marks each stretch that had to be skipped."""
    with memoryview(data) as view:
        size = len(view)
        offset = start
        while offset < size:
            frame, reason = _frame_at(view, offset)
            if frame is not None:
                yield frame
                offset += FRAME.size + frame.length
                continue
            resumed = _resync(view, offset + 1)
            yield Damage(offset, reason, resumed)
            if resumed is None:
                return
            offset = resumed


def _frame_at(view: memoryview, offset: int) -> tuple[Frame | None, str]:
    if offset + FRAME.size > len(view):
        return None, "cut short (the recorder stopped mid-frame)"
    tag, frame_type, flags, length, crc, time_s = FRAME.unpack_from(view, offset)
    if tag != FRAME_TAG or frame_type not in FRAME_TYPES or length > MAX_FRAME:
        return None, "not a frame header"
    end = offset + FRAME.size + length
    if end > len(view):
        return None, "cut short (the recorder stopped mid-frame)"
    with view[offset + FRAME.size : end] as payload:
        if _checksum(frame_type, flags, length, time_s, payload) != crc:
            return None, "checksum mismatch"
    return Frame(offset, frame_type, flags, time_s, offset + FRAME.size, length), ""


def _resync(view: memoryview, offset: int) -> int | None:
    """The next offset holding a valid frame, or None."""
    raw = view.obj if hasattr(view.obj, "find") else bytes(view)  # bytes or an mmap
    while True:
        found: int = raw.find(FRAME_TAG, offset)
        if found < 0:
            return None
        frame, _reason = _frame_at(view, found)
        if frame is not None:
            return found
        offset = found + 1
