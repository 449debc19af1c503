"""OOM kills from the kernel log: :class:`OomParser` is a state machine over :class:`LogRecord`s (from
/dev/kmsg, or text pasted from dmesg, dmesg -T, journalctl -k: see :mod:`oomtop.collect.logrecords`) that yields
one :class:`~oomtop.model.OomEvent` per kernel kill decision, across the 4.x to 6.x report layouts, memcg and
global, oom.group and rate-limited reports.

Everything here is pure.  Nothing raises on hostile input: log text is written by the kernel on behalf of anyone
who can name a process, and a strange line must never hide a kill.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from oomtop.collect.logrecords import LogRecord, iter_kmsg, parse_kmsg_record, records_from_text
from oomtop.model import EventKind, KernelCandidate, KilledTask, OomEvent

__all__ = [  # the records' names stay importable from here, where the events path always found them
    "LogRecord",
    "OomParser",
    "iter_kmsg",
    "parse_kmsg_record",
    "parse_log",
    "records_from_text",
]

PAGE_SIZE = 4096  # the log's tables are in pages; nr_ptes of older kernels are converted with this
UNLIMITED_KB = 1 << 40  # 1 PiB: any logged limit this large is the kernel's "no limit" (9007199254740988kB)
MAX_ROWS = 100_000  # task-table rows kept per block
MAX_GROUP_IDLE = 64  # unrelated records tolerated between the kill lines of one oom.group kill
MAX_IDLE = 5_000  # unrelated records after which an unfinished block is given up

_N = r"(\d{1,20})"  # at most 20 digits: int() stays cheap and every value fits the kernel's 64 bits


# ------------------------------------------------------------------------------------------------- blocks

_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (tag, re.compile(pattern))
    for tag, pattern in (
        ("invoked", r"(.*) invoked oom-killer:(.*)"),
        ("killed", r"(?:([^:]{1,80}): )?Killed process (\d{1,10}) \((.*)"),
        ("reaper", r"oom_reaper: .*"),
        ("row", r"\[\s*(\d{1,10})\]\s+(.*)"),
        ("header", r"\[\s*pid\s*\]\s+(.*)"),
        ("oomkill", r"oom-kill:(.*)"),
        ("usage", rf"memory: usage {_N}kB, limit {_N}kB.*"),
        ("memsw", rf"memory\+swap: usage {_N}kB, limit {_N}kB.*"),
        ("swap", rf"swap: usage {_N}kB, limit {_N}kB.*"),
        ("stats", r"Memory cgroup stats for (.*?):(?:(?:\\x0a| ).*)?"),
        ("state", r"Tasks state \(memory values in pages\):?"),
        ("taskin", r"Task in (.* killed as a result of limit of .*)"),
        ("score", r"(?:([^:]{1,80}): )?Kill process (\d{1,10}) \((.*)\) score (-?\d{1,20}) or sacrifice child"),
        ("sharing", r"Kill process (\d{1,10}) \((.*)\) sharing same memory"),
        ("group", r"Tasks in (.*) are going to be killed due to memory\.oom\.group set"),
        ("ram", rf"{_N} pages RAM"),
        ("totalswap", rf"Total swap = {_N}kB"),
    )
)
_STARTERS = {"oomkill", "usage", "memsw", "swap", "stats", "state", "header", "taskin", "score", "killed", "group"}
_NUMBERS = {
    "memsw": ("memsw_kb", 2),
    "swap": ("swap_kb", 2),
    "ram": ("ram_pages", 1),
    "totalswap": ("swap_total_kb", 1),
}  # tag -> (_Block field, match group) for plain numbers
_AFTER_KILL = {"killed", "reaper", "sharing", "group"}  # what may still follow a kill and belong to it
_KILLED_KB = {k: re.compile(rf"{k}:{_N}kB") for k in ("total-vm", "anon-rss", "file-rss", "shmem-rss", "pgtables")}
_UID = re.compile(rf"UID:{_N}")
_ADJ = re.compile(r"oom_score_adj[:=](-?\d{1,5})")


def _classify(text: str) -> tuple[str, re.Match[str] | None]:
    for tag, pattern in _RULES:
        m = pattern.fullmatch(text)
        if m:
            return tag, m
    return "other", None


@dataclass(slots=True)
class _Block:
    """What one OOM block has said so far."""

    first: LogRecord
    last_us: int | None = None
    kind: EventKind | None = None  # from the oom-kill: line
    memcg_hint: bool | None = None  # weaker evidence: "Task in", "memory: usage", the kill line's prefix
    constraint: str | None = None
    oom_cgroup: str | None = None
    task_cgroup: str | None = None
    stats_cgroup: str | None = None
    usage_kb: int | None = None
    limit_kb: int | None = None
    memsw_kb: int | None = None
    swap_kb: int | None = None
    ram_pages: int | None = None
    swap_total_kb: int | None = None
    invoker: str | None = None
    invoker_adj: int | None = None
    columns: list[str] | None = None
    rows: list[KernelCandidate] = field(default_factory=list)
    group_path: str | None = None
    oomkill: str | None = None  # the oom-kill: line's text after "oom-kill:", read once the victim is known
    logged_score: int | None = None
    killed: list[KilledTask] = field(default_factory=list)
    idle: int = 0


class OomParser:
    """Feeds on records; returns each OOM kill once it is complete (see :meth:`feed`).

    ``source`` and ``historical`` are copied into every event (e.g. ``"kmsg"`` and True for the ring buffer's
    backlog read at start).
    """

    def __init__(self, source: str = "log", historical: bool = False) -> None:
        self.source = source
        self.historical = historical
        self._block: _Block | None = None
        self._last_killed: frozenset[int] = frozenset()  # pids of the event emitted last

    def feed(self, record: LogRecord) -> list[OomEvent]:
        """Take one record; return the events it completed.  A kill's event is complete when a record that cannot
        belong to it arrives (anything but further "Killed process" / oom_reaper / oom.group lines)."""
        out: list[OomEvent] = []
        try:
            self._feed(record, out)
        except Exception:  # untrusted log text: a report that breaks the parser ends there  # noqa: BLE001
            out.extend(self.flush())
        return out

    def flush(self) -> list[OomEvent]:
        """End of input (or a quiet period): the pending kill, if complete; an unfinished block is dropped."""
        out: list[OomEvent] = []
        block, self._block = self._block, None
        if block is not None and block.killed:
            self._emit(block, out)
        return out

    def pending_since(self) -> int | None:
        """kernel_time_us of the last record of a complete event still waiting for more group kills, else None."""
        block = self._block
        return block.last_us if block is not None and block.killed else None

    @property
    def has_pending(self) -> bool:
        """True when a complete event waits (also for inputs without kernel timestamps)."""
        return self._block is not None and bool(self._block.killed)

    @property
    def in_block(self) -> bool:
        """True while a report has begun and is not yet emitted (its kill may not be logged yet)."""
        return self._block is not None

    def _feed(self, record: LogRecord, out: list[OomEvent]) -> None:
        text = record.text.strip()
        tag, m = _classify(text)
        block = self._block
        if block is not None and block.killed and not _belongs(block, tag, m):
            if block.group_path is not None and m is None and block.idle < MAX_GROUP_IDLE:
                block.idle += 1  # another CPU's message between two kills of one oom.group: not the end
                return
            self._block = None
            self._emit(block, out)
            block = None
        if tag == "invoked" or (block is None and tag in _STARTERS):
            if tag == "killed" and m is not None and int(m[2]) in self._last_killed:
                return  # the last kill's victim listed again after an unrelated line
            block = self._block = _Block(record)
            self._last_killed = frozenset()
        elif block is None:
            return
        if record.kernel_time_us is not None:
            block.last_us = record.kernel_time_us
        if m is None:
            block.idle += 1
            if block.idle > MAX_IDLE and not block.killed:
                self._block = None
            return
        block.idle = 0
        self._absorb(block, tag, m)

    def _absorb(self, b: _Block, tag: str, m: re.Match[str]) -> None:
        if tag == "invoked":
            b.invoker = m[1]
            adj = _ADJ.search(m[2])
            b.invoker_adj = int(adj[1]) if adj else None
        elif tag == "killed":
            if b.memcg_hint is None and m[1]:
                b.memcg_hint = m[1] == "Memory cgroup out of memory"
            self._add_killed(b, _killed_task(int(m[2]), m[3]))
        elif tag == "row":
            if b.columns is not None and not b.killed and len(b.rows) < MAX_ROWS:
                row = _row(b.columns, int(m[1]), m[2])
                if row is not None:
                    b.rows.append(row)
        elif tag == "header":
            columns = m[1].split()
            b.columns = columns if columns and columns[-1] == "name" else None
        elif tag == "oomkill":
            _absorb_oomkill(b, m[1])
        elif tag == "usage":
            b.usage_kb, b.limit_kb, b.memcg_hint = int(m[1]), int(m[2]), True
        elif tag in _NUMBERS:
            attr, group = _NUMBERS[tag]
            setattr(b, attr, int(m[group]))
        elif tag == "stats":
            b.stats_cgroup = b.stats_cgroup or m[1]
        elif tag == "taskin":
            paths = _split_task_in(m[1])
            if paths is not None:
                b.task_cgroup, b.oom_cgroup = b.task_cgroup or paths[0], b.oom_cgroup or paths[1]
            b.memcg_hint = True
        elif tag == "score":
            if b.memcg_hint is None and m[1]:
                b.memcg_hint = m[1] == "Memory cgroup out of memory"
            if b.logged_score is None:
                b.logged_score = int(m[4])
        elif tag == "sharing":
            if b.killed:
                self._add_killed(b, KilledTask(int(m[1]), m[2]))
        elif tag == "group":
            b.group_path = m[1]

    @staticmethod
    def _add_killed(b: _Block, task: KilledTask) -> None:
        if all(k.pid != task.pid for k in b.killed):  # oom.group lists the victim a second time
            b.killed.append(task)

    def _emit(self, b: _Block, out: list[OomEvent]) -> None:
        try:
            out.append(self._build(b))
            self._last_killed = frozenset(k.pid for k in b.killed if k.pid is not None)
        except Exception:  # untrusted log text: a report that cannot be built is dropped  # noqa: BLE001
            pass

    def _build(self, b: _Block) -> OomEvent:
        fields = _oomkill_fields(b.oomkill, b.killed[0]) if b.oomkill is not None else None
        if fields is not None:
            b.kind = fields[0]
            b.oom_cgroup = None if fields[0] == "global" else (fields[1] or b.oom_cgroup)
            b.task_cgroup = fields[2] or b.task_cgroup
        memcg = b.memcg_hint if b.memcg_hint is not None else b.constraint == "CONSTRAINT_MEMCG"
        kind = b.kind or ("memcg" if memcg else "global")  # the oom-kill: line, else weaker evidence
        limit = b.limit_kb * 1024 if b.limit_kb is not None and b.limit_kb < UNLIMITED_KB else None
        swap_limit = None
        if b.swap_kb is not None:  # v2 "swap: usage, limit": memory.swap.max itself
            swap_limit = b.swap_kb * 1024 if b.swap_kb < UNLIMITED_KB else None
        elif b.memsw_kb is not None and limit is not None and b.memsw_kb < UNLIMITED_KB:
            swap_limit = max(0, b.memsw_kb * 1024 - limit)  # v1: memsw limit minus memory limit
        first = b.first
        return OomEvent(
            kind=kind, time=first.wall_time,
            kernel_time_s=first.kernel_time_us / 1e6 if first.kernel_time_us is not None else None,
            oom_cgroup="/" if kind == "global" else (b.oom_cgroup or b.stats_cgroup), task_cgroup=b.task_cgroup,
            victim=b.killed[0], killed=tuple(b.killed), candidates=tuple(b.rows), usage_bytes=_kib(b.usage_kb),
            limit_bytes=limit, swap_limit_bytes=swap_limit, node_ram_pages=b.ram_pages,
            node_swap_bytes=_kib(b.swap_total_kb), invoker_comm=b.invoker, invoker_oom_score_adj=b.invoker_adj,
            constraint=b.constraint, oom_group_path=b.group_path, logged_score=b.logged_score,
            source=(self.source,), historical=self.historical, seq=first.seq,
        )  # fmt: skip


def _belongs(b: _Block, tag: str, m: re.Match[str] | None) -> bool:
    """Whether a record after the kill line is still part of that kill: oom_reaper news, the oom.group line, and
    "Killed process" lines of the group (without a group line another task's kill is a new event)."""
    if tag != "killed" or m is None:
        return tag in _AFTER_KILL
    pid = int(m[2])
    if any(k.pid == pid for k in b.killed):
        return True
    # Every task of an oom.group lives in the OOM domain, so the table lists it: a pid the table does not have is
    # the next (rate-limited, header-less) kill, not one more of the group.
    return b.group_path is not None and (not b.rows or any(row.pid == pid for row in b.rows))


def _kib(value: int | None) -> int | None:
    return value * 1024 if value is not None else None


def _absorb_oomkill(b: _Block, body: str) -> None:
    """``constraint=..,nodemask=..,cpuset=..,mems_allowed=..,oom_memcg=<path>|global_oom,task_memcg=<path>,task=
    <comm>,pid=N,uid=N``.  The constraint is taken now; the rest waits for the victim's "Killed process" line (see
    :func:`_oomkill_fields`), since the cpuset name, both paths and the comm may all hold the line's own keys."""
    constraint = re.match(r"constraint=([A-Z_]+)", body)
    b.constraint = constraint[1] if constraint else b.constraint
    b.oomkill = body


_OOMKILL_TAIL = re.compile(r",pid=(\d{1,10}),uid=(\d{1,10})\Z")
_MAX_MARKERS = 16  # occurrences of a key tried per line: a real line has one, a hostile one cannot make us loop


def _find_all(text: str, needle: str) -> list[int]:
    found: list[int] = []
    at = text.find(needle)
    while at >= 0 and len(found) < _MAX_MARKERS:
        found.append(at)
        at = text.find(needle, at + 1)
    return found


def _oomkill_fields(body: str, victim: KilledTask) -> tuple[EventKind, str | None, str | None] | None:
    """(kind, oom_memcg, task_memcg) of an oom-kill: line; None when it names neither oom_memcg nor global_oom.

    Names are untrusted: a cpuset, cgroup or comm may be called ",oom_memcg=/x" or ",task=y".  So the comm is
    the victim's own (the "Killed process" line gives it in parentheses), and of the places where a domain key
    occurs the first whose paths are real wins: both paths begin with "/" (a cpuset name has no "/") and a memcg
    victim's cgroup is the domain or below it (the kernel scans only the domain's subtree).  A cut line gives
    what it has."""
    head = body
    tail = _OOMKILL_TAIL.search(body)
    if tail is not None:
        head = body[: tail.start()]
        task_key = f",task={victim.comm}"
        if victim.comm is not None and int(tail[1]) == victim.pid and head.endswith(task_key):
            head = head[: -len(task_key)]
        else:
            cut = head.rfind(",task=")
            head = head[:cut] if cut >= 0 else head
    elif (cut := head.rfind(",task=")) >= 0:
        head = head[:cut]
    markers = sorted([(at, False) for at in _find_all(head, ",oom_memcg=")]
                     + [(at, True) for at in _find_all(head, ",global_oom")])  # fmt: skip
    for at, is_global in markers:
        if is_global:
            if head.startswith(",task_memcg=/", at + 11):
                return "global", None, head[at + 23 :]
            continue
        rest = head[at + 11 :]
        if not rest.startswith("/"):
            continue
        for split in _find_all(rest, ",task_memcg="):
            oom, task = rest[:split], rest[split + 12 :]
            if task == oom or task.startswith(oom.rstrip("/") + "/"):
                return "memcg", oom, task
    if not markers:
        return None
    at, is_global = markers[0]  # no line that checks out (cut short): the first key, as far as it goes
    rest = head[at + 11 :]
    split = rest.rfind(",task_memcg=")
    oom, task = (rest[:split], rest[split + 12 :]) if split >= 0 else (rest.split(",", 1)[0], "")
    if is_global:
        return "global", None, task if task.startswith("/") else None
    return "memcg", oom or None, task or None


def _split_task_in(text: str) -> tuple[str, str] | None:
    """``<task memcg> killed as a result of limit of <oom memcg>`` (4.x): the split where both are paths and the
    task's cgroup is the domain or below it (either name may hold the words); else the last one."""
    key = " killed as a result of limit of "
    places = _find_all(text, key)
    for at in places:
        task, oom = text[:at], text[at + len(key) :]
        if oom.startswith("/") and (task == oom or task.startswith(oom.rstrip("/") + "/")):
            return task, oom
    at = text.rfind(key)
    return (text[:at], text[at + len(key) :]) if at >= 0 else None


def _killed_task(pid: int, rest: str) -> KilledTask:
    """``<comm>) total-vm:NkB, anon-rss:NkB, file-rss:NkB, shmem-rss:NkB, UID:N pgtables:NkB oom_score_adj:N``
    (after "Killed process <pid> ("); every field is optional, comm may hold spaces and parentheses."""
    cut = rest.rfind(")")
    comm, tail = (rest[:cut], rest[cut + 1 :]) if cut >= 0 else (rest, "")
    kb = {key: int(m[1]) * 1024 if (m := pattern.search(tail)) else None for key, pattern in _KILLED_KB.items()}
    uid, adj = _UID.search(tail), _ADJ.search(tail)
    return KilledTask(
        pid, comm, anon_rss_bytes=kb["anon-rss"], file_rss_bytes=kb["file-rss"], shmem_rss_bytes=kb["shmem-rss"],
        total_vm_bytes=kb["total-vm"], uid=int(uid[1]) if uid else None, pgtables_bytes=kb["pgtables"],
        oom_score_adj=int(adj[1]) if adj else None,
    )  # fmt: skip


def _row(columns: list[str], pid: int, rest: str) -> KernelCandidate | None:
    """One task-table row, read by the header's column names (the last column, name, may hold spaces)."""
    numeric = columns[:-1]
    parts = rest.split(None, len(numeric))
    if len(parts) < len(numeric):
        return None
    if any(len(token) > 21 for token in parts[: len(numeric)]):
        return None
    try:
        values = dict(zip(numeric, map(int, parts), strict=False))
    except ValueError:
        return None
    comm = parts[len(numeric)] if len(parts) > len(numeric) else ""
    anon, file_, shmem = values.get("rss_anon"), values.get("rss_file"), values.get("rss_shmem")
    rss = values.get("rss")
    if rss is None:
        rss = sum(v for v in (anon, file_, shmem) if v is not None)
    pgtables = values.get("pgtables_bytes")
    if pgtables is None and "nr_ptes" in values:  # before 4.15: page-table pages (PTE and PMD levels)
        pgtables = (values["nr_ptes"] + values.get("nr_pmds", 0)) * PAGE_SIZE
    return KernelCandidate(
        pid=pid, comm=comm, oom_score_adj=values.get("oom_score_adj", 0), rss_pages=rss, uid=values.get("uid"),
        tgid=values.get("tgid"), total_vm_pages=values.get("total_vm"), rss_anon_pages=anon, rss_file_pages=file_,
        rss_shmem_pages=shmem, pgtables_bytes=pgtables, swapents=values.get("swapents"),
    )  # fmt: skip


def parse_log(text: str | bytes, *, source: str = "log", now: float | None = None) -> list[OomEvent]:
    """Every complete OOM kill in a log text (any of the forms :func:`records_from_text` reads)."""
    events: list[OomEvent] = []
    parser = OomParser(source=source)
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8", "backslashreplace")
        for record in records_from_text(str(text).split("\n"), now=now):
            events.extend(parser.feed(record))
    except Exception:  # untrusted log text: what parsed before the failure is kept  # noqa: BLE001
        pass
    return events + parser.flush()
