"""Read the kernel log's new records from /dev/kmsg and pick out the OOM killer's decisions.

Shared by the cgroup v1 tests on the host and the cgroup v2 tier's guest (tests/v2/guest/); standard library
only.  Records are ``<prio>,<seq>,<usec>,<flags>;<text>`` with continuation lines starting with a space (only
the first line of each record is kept; the kernel escapes a newline inside one record as ``\\x0a``); a reader
that falls behind gets EPIPE once and carries on.  A memcg OOM kill on 6.x is the block
``<comm> invoked oom-killer: ... / memory: usage <kB>, limit <kB> / Memory cgroup stats for <path>: /
Tasks state (memory values in pages): / [  pid  ] header / [ pid ] rows / oom-kill:...,oom_memcg=..,pid=.. /
Memory cgroup out of memory: Killed process <pid> (<comm>) ...``.  On cgroup v2 a memory.oom.group kill then
logs ``Tasks in <path> are going to be killed due to memory.oom.group set`` and a "Killed process" line for
every member of that group (the victim once more).  The kernel rate-limits the report (10 per 5 s, shared by the
whole machine): beyond that only the "Killed process" lines are logged.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

KILLED_RE = re.compile(r"Killed process (\d+) \(([^)]*)\)")
GROUP_RE = re.compile(r"Tasks in (\S+) are going to be killed due to memory\.oom\.group set")
USAGE_RE = re.compile(r"memory: usage (\d+)kB, limit (\d+)kB")
STAT_ANON_RE = re.compile(r"anon (\d+)")
TABLE_HEADER_RE = re.compile(r"\[\s*pid\s*\]")
TABLE_ROW_RE = re.compile(r"\[\s*\d+\]")
REPORT_PACE_S = 0.55  # the OOM report rate limit is DEFAULT_RATELIMIT_BURST (10) per 5 s


@dataclass
class OomKill:
    """One decision of the OOM killer as the log shows it: its victim first, then the rest of an oom.group."""

    pid: int  # the victim: the task the kernel chose
    comm: str
    memcg_oom: bool
    oom_memcg: str | None = None  # from the oom-kill: summary (absent when the report was rate-limited)
    task_memcg: str | None = None
    invoker: str | None = None
    usage_kb: int | None = None
    limit_kb: int | None = None
    stat_anon_bytes: int | None = None  # "anon" of the report's memory.stat dump (cgroup v2)
    task_table: dict[int, dict[str, str]] = field(default_factory=dict)  # pid -> column -> value (pages)
    group_path: str | None = None  # the memory.oom.group cgroup whose tasks were killed with the victim
    killed: list[int] = field(default_factory=list)  # every pid this decision killed, once each, victim first
    comms: dict[int, str] = field(default_factory=dict)
    text: list[str] = field(default_factory=list)  # the summary, the Killed, Tasks in and oom_reaper lines

    def figures(self) -> dict[str, int | None]:
        """The report's usage and limit (kB), its memory.stat anon (bytes) and the rss (pages) of every task its
        table lists -- to tell memory held by live tasks from memory still charged for a task already gone."""
        return {
            "usage_kb": self.usage_kb,
            "limit_kb": self.limit_kb,
            "anon_bytes": self.stat_anon_bytes,
            "listed_rss_pages": sum(int(row.get("rss", 0)) for row in self.task_table.values()),
        }


class KmsgReader:
    """Follows /dev/kmsg from the moment it is opened (older records are skipped)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.overruns = 0
        self.lines: list[str] = []  # every record read so far (first line of each)

    def read_new(self) -> list[str]:
        """The records logged since the last call (also appended to :attr:`lines`)."""
        lines = []
        while self.fd >= 0:
            try:
                record = os.read(self.fd, 16384)
            except BlockingIOError:
                break
            except BrokenPipeError:
                self.overruns += 1
                continue
            if not record:
                break
            _head, _, text = record.decode("utf-8", "replace").partition(";")
            lines.append(text.split("\n", 1)[0])
        self.lines.extend(lines)
        return lines

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> KmsgReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class _Report:
    """What the lines of one "invoked oom-killer" report said before its Killed line."""

    invoker: str | None = None
    usage_kb: int | None = None
    limit_kb: int | None = None
    stat_anon_bytes: int | None = None
    in_stats: bool = False
    header: list[str] | None = None
    table: dict[int, dict[str, str]] = field(default_factory=dict)
    info: dict[str, str] = field(default_factory=dict)
    summary: str | None = None


def _table_row(header: list[str], line: str) -> dict[str, str] | None:
    values = line.replace("[", " ").replace("]", " ").split()
    if len(values) < len(header):
        return None
    row = dict(zip(header[:-1], values[: len(header) - 1], strict=False))
    row[header[-1]] = " ".join(values[len(header) - 1 :])  # the name may contain spaces
    return row


def parse_kills(lines: list[str]) -> list[OomKill]:
    """Group the log's lines into the OOM killer's decisions, oldest first.

    A decision starts with a "Killed process" line after a report (or, when the kernel rate-limited the report,
    with one outside an oom.group kill); an oom.group kill's "Tasks in <path> ..." line and the members' Killed
    lines that follow it belong to the same decision.  A rate-limited decision right after an oom.group kill
    whose report had no task table either cannot be told from a member of that group.
    """
    kills: list[OomKill] = []
    report = _Report()
    current: OomKill | None = None
    in_group = False
    for line in lines:
        if " invoked oom-killer:" in line:
            report = _Report(invoker=line.split(" invoked oom-killer:", 1)[0])
            current, in_group = None, False
            continue
        match = USAGE_RE.match(line)
        if match:
            report.usage_kb, report.limit_kb = int(match.group(1)), int(match.group(2))
            continue
        if line.startswith("Memory cgroup stats for"):
            report.in_stats = True
            continue
        if report.in_stats and (match := STAT_ANON_RE.match(line)):  # the stat block is one record
            report.stat_anon_bytes = int(match.group(1))
            report.in_stats = False
            continue
        if TABLE_HEADER_RE.match(line):
            report.header = line.replace("[", " ").replace("]", " ").split()
            continue
        if report.header and TABLE_ROW_RE.match(line):
            row = _table_row(report.header, line)
            if row is not None:
                report.table[int(row["pid"])] = row
            continue
        if line.startswith("oom-kill:"):
            report.info = dict(part.split("=", 1) for part in line[len("oom-kill:") :].split(",") if "=" in part)
            report.summary = line
            current, in_group = None, False
            continue
        match = GROUP_RE.search(line)
        if match and current is not None:
            current.group_path = match.group(1)
            current.text.append(line)
            in_group = True
            continue
        match = KILLED_RE.search(line)
        if match:
            pid, comm = int(match.group(1)), match.group(2)
            # A group member is a task of the OOM domain, so its report's table lists it; a pid the table lacks
            # is the victim of a next decision whose report was rate-limited.
            if current is None or not in_group or (current.task_table and pid not in current.task_table):
                current = OomKill(
                    pid=pid,
                    comm=comm,
                    memcg_oom="Memory cgroup out of memory" in line or "oom_memcg" in report.info,
                    oom_memcg=report.info.get("oom_memcg"),
                    task_memcg=report.info.get("task_memcg"),
                    invoker=report.invoker,
                    usage_kb=report.usage_kb,
                    limit_kb=report.limit_kb,
                    stat_anon_bytes=report.stat_anon_bytes,
                    task_table=report.table,
                    killed=[pid],
                    comms={pid: comm},
                    text=[report.summary, line] if report.summary else [line],
                )
                kills.append(current)
                report = _Report()  # a later Killed line outside a group is a new (rate-limited) decision
            else:
                if pid not in current.killed:
                    current.killed.append(pid)
                    current.comms[pid] = comm
                current.text.append(line)
            continue
        if current is not None and line.startswith("oom_reaper:"):
            current.text.append(line)
    return kills


def _fingerprint(kills: list[OomKill]) -> list[tuple[int, tuple[int, ...], str | None]]:
    return [(k.pid, tuple(k.killed), k.group_path) for k in kills]


def collect_kills(reader: KmsgReader, want: int, timeout: float, settle: float = 0.3) -> list[OomKill]:
    """Every decision logged since the reader opened, once ``want`` were seen and the decisions have not changed
    for ``settle`` seconds (an oom.group kill logs its members after the victim), or at the timeout."""
    deadline = time.monotonic() + timeout
    last: list[tuple[int, tuple[int, ...], str | None]] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        reader.read_new()
        kills = parse_kills(reader.lines)
        fingerprint = _fingerprint(kills)
        if fingerprint != last:
            last, since = fingerprint, time.monotonic()
        elif len(kills) >= want and time.monotonic() - since >= settle:
            return kills
        time.sleep(0.02)
    reader.read_new()
    return parse_kills(reader.lines)


_last_oom = [0.0]


def pace_oom() -> None:
    """Stay under the OOM report rate limit (10 per 5 s) so each kill's report (oom-kill: oom_memcg=, the task
    table) is logged: call it before pushing a cgroup over its limit."""
    wait = _last_oom[0] + REPORT_PACE_S - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _last_oom[0] = time.monotonic()
