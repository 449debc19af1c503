"""Kernel log records: /dev/kmsg's binary-ish records, and the text forms people paste (dmesg, dmesg -T,
journalctl -k, syslog lines, ISO-stamped logs), all turned into one :class:`LogRecord` shape.

Pure apart from :func:`iter_kmsg`, which reads a file object it is given.  Nothing raises on hostile input: log
text is written by the kernel on behalf of anyone who can name a process, and a strange line must never hide a
kill.  The OOM report parser over these records is :mod:`oomtop.collect.kmsg`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

_MONTHS = {
    m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)
}


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One kernel log message; times are whatever the input form carried."""

    seq: int | None
    kernel_time_us: int | None  # since boot
    wall_time: float | None  # seconds since the epoch
    text: str


# ------------------------------------------------------------------------------------------------- records


_KMSG_B = re.compile(rb"\s*(\d{1,10}),(\d{1,20}),(\d{1,20})(?:,[^;\n]*)?;")


def parse_kmsg_record(raw: bytes) -> LogRecord | None:
    """A /dev/kmsg record ``<prio>,<seq>,<usec>,<flags>[,...];<text>\\n[ KEY=value\\n...]``; None if malformed."""
    try:
        m = _KMSG_B.match(raw)
        if m is None:
            return None
        text = bytes(raw[m.end() :]).split(b"\n", 1)[0]
        return LogRecord(
            int(m[2]), int(m[3]), None, _unescape_kmsg(text).decode("utf-8", "backslashreplace").rstrip("\r")
        )
    except Exception:  # untrusted log text: a record that cannot be read is skipped  # noqa: BLE001
        return None


_KMSG_ESCAPE = re.compile(rb"\\x(5c|[89a-f][0-9a-f])")


def _unescape_kmsg(text: bytes) -> bytes:
    """Undo /dev/kmsg's ``\\xNN`` escapes of the backslash and of bytes from 0x80 (``msg_add_ext_text()``
    escapes them all), so a comm or cgroup name in UTF-8 reads as /proc and cgroupfs show it ("café", not
    ``caf\\xc3\\xa9``).  Control characters (below 0x20, and 0x7f) stay escaped: a record is one line of text."""
    if b"\\x" not in text:
        return text
    return _KMSG_ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), text)


def iter_kmsg(f: BinaryIO, bufsize: int = 16384) -> Iterator[LogRecord]:
    """Records read from ``f`` (/dev/kmsg, or a saved raw capture) until EOF or EAGAIN.

    /dev/kmsg returns one record per read; a reader that fell behind gets EPIPE once (records were lost, the
    next ``seq`` jumps) and carries on.  Regular files return many lines per read; both are handled.
    """
    carry, lost = b"", 0
    while True:
        try:
            chunk = f.read(bufsize) or b""
        except BrokenPipeError:
            lost += 1
            if lost <= 1000:  # more is not /dev/kmsg's single EPIPE: give up rather than spin
                continue
            chunk = b""
        except (OSError, ValueError):  # EAGAIN (nothing new), EINTR, closed
            chunk = b""
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop() if chunk else b""
        for line in lines:
            if line[:1] not in (b" ", b""):  # continuation lines (" KEY=value") carry no message text
                record = parse_kmsg_record(line)
                if record is not None:
                    yield record
        if not chunk:
            return


_KMSG = re.compile(r"(\d{1,10}),(\d{1,20}),(\d{1,20})(?:,[^;]*)?;(.*)")
_PREFIX = re.compile(r"(?:<\d{1,4}>)?(?:[a-z0-9]{2,8} *: *(?:emerg|alert|crit|err|warn|notice|info|debug) *: )?")
_DMESG = re.compile(r"\[\s*(\d{1,15})\.(\d{1,9})\] ?(.*)")
_DMESG_T = re.compile(r"\[[A-Z][a-z]{2} ([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\] ?(.*)")
_SYSLOG = re.compile(  # "Apr 27 22:56:09[.123456] <host> <ident>[<pid>]: text"
    r"([A-Z][a-z]{2}) +(\d{1,2}) (\d\d):(\d\d):(\d\d)(\.\d{1,9})? (\S+) ([^\s:\[]+)(?:\[\d{1,10}\])?: ?(.*)"
)
_ISO = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:[.,](\d{1,9}))?(Z|[+-]\d\d:?\d\d)? (.*)")
_JOURNAL_KERNEL = re.compile(r"\S+ kernel(?:\[\d{1,10}\])?: ?(.*)")  # after a timestamp: "<host> kernel: text"
_OTHER_BRACKET = re.compile(r"\[(?!\s*pid\s*\])(?=[^\]]*[^\d\s\]])[^\]\[]{1,40}\] ?(.*)")  # [+0.000012], [Apr27 22:56]
_CALLER = re.compile(r"\[\s*[TC]\d{1,10}\] ?")  # CONFIG_PRINTK_CALLER
_TIMED_FORMS = ("kmsg", "dmesg", "wall")


def records_from_text(lines: Iterable[str | bytes], *, now: float | None = None) -> Iterator[LogRecord]:
    """Records from log text, each line in whichever form it is (any mix): raw kmsg, dmesg, dmesg -r/-x/-T,
    journalctl -k (short, short-precise, short-iso, short-monotonic), syslog files; other lines are plain
    text records.  ``now`` (default: the clock) decides the year of syslog-style stamps, which have none.
    """
    now = time.time() if now is None else now
    prev: LogRecord | None = None
    prev_form = ""
    for item in lines:
        try:
            chunk = item.decode("utf-8", "backslashreplace") if isinstance(item, (bytes, bytearray)) else str(item)
            for line in chunk.split("\n"):
                line = line.rstrip("\r")
                if not line.strip():
                    continue
                parsed = _parse_line(line.lstrip(), now)
                if parsed is None:
                    if line[0] in " \t" and prev_form == "kmsg":
                        continue  # a /dev/kmsg dictionary line (" SUBSYSTEM=acpi")
                    if line[0] in " \t" and prev is not None and prev_form in _TIMED_FORMS:
                        parsed = (LogRecord(prev.seq, prev.kernel_time_us, prev.wall_time, line.strip()), prev_form)
                    else:
                        parsed = (LogRecord(None, None, None, line), "plain")
                prev, prev_form = parsed
                yield prev
        except Exception:  # untrusted log text: a line that cannot be read is skipped  # noqa: BLE001
            continue


def _parse_line(line: str, now: float) -> tuple[LogRecord, str] | None:
    m = _KMSG.fullmatch(line)
    if m:
        text = m[4]
        if "\\x" in text:  # a raw /dev/kmsg record pasted as text: its escapes are undone as when read live
            text = _unescape_kmsg(text.encode("utf-8", "surrogateescape")).decode("utf-8", "backslashreplace")
        return LogRecord(int(m[2]), int(m[3]), None, text), "kmsg"
    prefix = _PREFIX.match(line)  # dmesg -r "<6>", dmesg -x "kern  :info  : "
    assert prefix is not None  # every part of _PREFIX is optional: it matches at the start of any line
    line = line[prefix.end() :]
    m = _DMESG.fullmatch(line)
    if m:
        text = m[3]
        inner = _JOURNAL_KERNEL.fullmatch(text)  # journalctl -o short-monotonic: "[  441.5] host kernel: text"
        return LogRecord(None, _usec(m[1], m[2]), None, _uncaller(inner[1] if inner else text)), "dmesg"
    m = _DMESG_T.fullmatch(line)
    if m and m[1] in _MONTHS:
        wall = _mktime(int(m[6]), _MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]))
        return LogRecord(None, None, wall, _uncaller(m[7])), "wall"
    m = _ISO.fullmatch(line)
    if m:
        wall = _iso_time(m[1], m[2], m[3], m[4])
        inner = _JOURNAL_KERNEL.fullmatch(m[5])
        return _with_inner_stamp(inner[1] if inner else m[5], wall), "wall"  # else dmesg --time-format=iso
    m = _SYSLOG.fullmatch(line)
    if m and m[1] in _MONTHS:
        if m[8] != "kernel":
            return LogRecord(None, None, None, line), "other"  # another program's line: matches nothing
        wall = _syslog_time(_MONTHS[m[1]], int(m[2]), int(m[3]), int(m[4]), int(m[5]), m[6], now)
        return _with_inner_stamp(m[9], wall), "wall"
    m = _OTHER_BRACKET.fullmatch(line)
    if m:
        return LogRecord(None, None, None, _uncaller(m[1])), "plain"
    return None


def _with_inner_stamp(text: str, wall: float | None) -> LogRecord:
    m = _DMESG.fullmatch(text)  # syslog-style lines may still carry "[  441.532690] " from the kernel
    if m:
        return LogRecord(None, _usec(m[1], m[2]), wall, _uncaller(m[3]))
    return LogRecord(None, None, wall, _uncaller(text))


def _uncaller(text: str) -> str:
    m = _CALLER.match(text)
    return text[m.end() :] if m else text


def _usec(seconds: str, fraction: str) -> int:
    return int(seconds) * 1_000_000 + int(fraction.ljust(6, "0")[:6])


def _mktime(year: int, month: int, day: int, hh: int, mm: int, ss: int) -> float | None:
    try:
        return time.mktime((year, month, day, hh, mm, ss, 0, 0, -1))  # local time, as dmesg -T prints it
    except (OverflowError, ValueError):
        return None


def _syslog_time(month: int, day: int, hh: int, mm: int, ss: int, frac: str | None, now: float) -> float | None:
    """Syslog stamps have no year: this year, or last year when that would lie in the future."""
    year = time.localtime(now).tm_year
    wall = _mktime(year, month, day, hh, mm, ss)
    if wall is not None and wall > now + 86400:
        wall = _mktime(year - 1, month, day, hh, mm, ss)
    return None if wall is None else wall + (float(frac) if frac else 0.0)


def _iso_time(date: str, clock: str, frac: str | None, tz: str | None) -> float | None:
    try:
        stamp = f"{date}T{clock}.{(frac or '0').ljust(6, '0')[:6]}"
        if tz:
            stamp += "+00:00" if tz == "Z" else (tz if ":" in tz else f"{tz[:3]}:{tz[3:]}")
        return datetime.fromisoformat(stamp).timestamp()  # naive: local time
    except (ValueError, OverflowError, OSError):
        return None
