"""Read the kernel log's new records from /dev/kmsg and pick out OOM kills.

Records are ``<prio>,<seq>,<usec>,<flags>;<text>`` with continuation lines starting with a space; a reader
that falls behind gets EPIPE once and carries on.  A memcg OOM kill on 6.x is the block
``... Tasks state (memory values in pages): / <header> / [ pid ] rows / oom-kill:...oom_memcg=..,pid=.. /
Memory cgroup out of memory: Killed process <pid> (<comm>) ...``.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

KILLED_RE = re.compile(r"Killed process (\d+) \(([^)]*)\)")


@dataclass
class OomKill:
    pid: int
    comm: str
    memcg_oom: bool
    oom_memcg: str | None = None
    task_memcg: str | None = None
    invoker: str | None = None
    usage_kb: int | None = None
    limit_kb: int | None = None
    task_table: dict[int, dict[str, str]] = field(default_factory=dict)  # pid -> column -> value (pages)
    text: str = ""


class KmsgReader:
    """Follows /dev/kmsg from the moment it is opened (older records are skipped)."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.overruns = 0
        self.lines: list[str] = []  # every record read so far (first line of each)

    def read_new(self) -> list[str]:
        lines = []
        while True:
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


def parse_kills(lines: list[str]) -> list[OomKill]:
    kills: list[OomKill] = []
    header: list[str] | None = None
    table: dict[int, dict[str, str]] = {}
    invoker = None
    info: dict[str, str] = {}
    usage_kb = limit_kb = None
    block: list[str] = []
    for line in lines:
        block.append(line)
        if " invoked oom-killer:" in line:
            invoker = line.split(" invoked oom-killer:", 1)[0]
            header, table, info, usage_kb, limit_kb, block = None, {}, {}, None, None, [line]
            continue
        match = re.match(r"memory: usage (\d+)kB, limit (\d+)kB", line)
        if match:
            usage_kb, limit_kb = int(match.group(1)), int(match.group(2))
            continue
        if re.match(r"\[\s*pid\s*\]", line):
            header = line.replace("[", " ").replace("]", " ").split()
            continue
        if header and re.match(r"\[\s*\d+\]", line):
            values = line.replace("[", " ").replace("]", " ").split()
            if len(values) >= len(header):
                row = dict(zip(header[:-1], values[: len(header) - 1], strict=False))
                row[header[-1]] = " ".join(values[len(header) - 1 :])
                table[int(row["pid"])] = row
            continue
        if line.startswith("oom-kill:"):
            info = dict(part.split("=", 1) for part in line[len("oom-kill:") :].split(",") if "=" in part)
            continue
        match = KILLED_RE.search(line)
        if match:
            kills.append(
                OomKill(
                    pid=int(match.group(1)),
                    comm=match.group(2),
                    memcg_oom="Memory cgroup out of memory" in line or "oom_memcg" in info,
                    oom_memcg=info.get("oom_memcg"),
                    task_memcg=info.get("task_memcg"),
                    invoker=invoker,
                    usage_kb=usage_kb,
                    limit_kb=limit_kb,
                    task_table=table,
                    text="\n".join(block),
                )
            )
            header, table, info, invoker, block = None, {}, {}, None, []
    return kills


def collect_kills(reader: KmsgReader, want: int, timeout: float, settle: float = 0.2) -> list[OomKill]:
    """Every kill logged since the reader opened, once ``want`` were seen (plus a short settle for
    stragglers) or at the timeout."""
    lines = reader.lines
    deadline = time.monotonic() + timeout
    seen_at = None
    while time.monotonic() < deadline:
        reader.read_new()
        kills = parse_kills(lines)
        if len(kills) >= want:
            if seen_at is None:
                seen_at = time.monotonic()
            elif time.monotonic() - seen_at >= settle:
                return kills
        time.sleep(0.02)
    reader.read_new()
    return parse_kills(lines)
