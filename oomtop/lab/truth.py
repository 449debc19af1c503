"""What the kernel really did, read independently of oomtop's own detectors.

The lab checks oomtop against the kernel, so it reads the kernel log itself (a second /dev/kmsg reader from the
moment the lab starts) and keeps only what it needs, whatever else the log holds:

- ``Killed process <pid> (<comm>)``: the kernel writes it for every task it kills, never rate-limited;
- ``oom-kill:...oom_memcg=<domain>,task_memcg=<cgroup>,...,pid=<pid>``: part of the report header, which the kernel
  writes at most 10 times per 5 s for the whole machine (other people's kills use that budget too), so it may be
  missing; the lab then finds the domain from the cgroup counters instead;
- ``Tasks in <path> are going to be killed due to memory.oom.group set`` (v2).

Records carry the kernel's timestamp (CLOCK_MONOTONIC), from which detection latency is measured.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

_KILLED = re.compile(r"Killed process (\d+) \((.*?)\) total-vm")
_SUMMARY = re.compile(r"^oom-kill:(.*)$")
_GROUP = re.compile(r"Tasks in (\S+) are going to be killed due to memory\.oom\.group set")


@dataclass(frozen=True, slots=True)
class Killed:
    pid: int
    comm: str
    time_s: float  # kernel timestamp (seconds, CLOCK_MONOTONIC)
    seq: int


@dataclass(frozen=True, slots=True)
class Summary:
    pid: int
    oom_memcg: str | None  # None for a global OOM
    task_memcg: str | None
    time_s: float


@dataclass(frozen=True, slots=True)
class GroupKill:
    path: str
    time_s: float


Record = Killed | Summary | GroupKill


class KernelLog:
    """/dev/kmsg from now on, non-blocking; :meth:`poll` returns the new OOM records."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.lost = 0

    def poll(self) -> list[Record]:
        found: list[Record] = []
        while self.fd >= 0:
            try:
                raw = os.read(self.fd, 8192)
            except BlockingIOError:
                break
            except BrokenPipeError:  # overwritten before we read them
                self.lost += 1
                continue
            except InterruptedError:
                continue
            if not raw:
                break
            record = parse_record(raw)
            if record is not None:
                found.append(record)
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def parse_record(raw: bytes) -> Record | None:
    """One /dev/kmsg record (``<prio>,<seq>,<usec>,<flags>;<text>``) as an OOM record, or None."""
    head, sep, body = raw.partition(b";")
    if not sep:
        return None
    parts = head.split(b",")
    try:
        seq, time_s = int(parts[1]), int(parts[2]) / 1e6
    except (IndexError, ValueError):
        return None
    text = body.split(b"\n", 1)[0].decode("utf-8", "replace")
    match = _KILLED.search(text)
    if match:
        return Killed(int(match.group(1)), match.group(2), time_s, seq)
    match = _SUMMARY.match(text)
    if match:
        fields = dict(part.split("=", 1) for part in match.group(1).split(",") if "=" in part)
        try:
            pid = int(fields.get("pid", ""))
        except ValueError:
            return None
        return Summary(pid, fields.get("oom_memcg"), fields.get("task_memcg"), time_s)
    match = _GROUP.search(text)
    if match:
        return GroupKill(match.group(1), time_s)
    return None
