"""Property tests for the kernel-log path (issue 15, untrusted input): /dev/kmsg records, pasted log text and the
OOM report parser never raise on anything, and GENERATED reports (tests/strategies.py: 4.x to 6.x layouts, memcg
and global, oom.group, rate limited) parse back to exactly the fields they were made from.

Log text is written by the kernel on behalf of anyone who can name a process or a cgroup, so names are drawn
with the parser's own keywords in them (",task=", ") ", "Killed process 1 (", ...).
"""

from __future__ import annotations

import io
import re

from hypothesis import given
from hypothesis import strategies as st

from oomtop.collect.kmsg import LogRecord, OomParser, iter_kmsg, parse_kmsg_record, parse_log, records_from_text
from oomtop.explain import event_to_json, explain, render_text, with_identity
from oomtop.model import OomEvent
from tests.strategies import (
    FORMS,
    GenReport,
    garbage_bytes,
    kernel_escape,
    render,
    report_lines,
    reports,
    safe_in_text_forms,
)

NOW = 1556398569.0 + 30 * 86400  # journal stamps have no year: read them a month after they were written


def feed_all(records: list[LogRecord]) -> list[OomEvent]:
    parser = OomParser()
    events = [e for record in records for e in parser.feed(record)]
    return events + parser.flush()


def well_formed(events: list[OomEvent]) -> None:
    for event in events:
        assert event.killed and event.victim == event.killed[0]
        assert event.kind in ("memcg", "global")
        assert len({k.pid for k in event.killed}) == len(event.killed)


# --------------------------------------------------------------------------------------- never raises


@given(garbage_bytes(2000))
def test_arbitrary_bytes_never_raise(blob: bytes) -> None:
    """Any bytes, pasted or read from a raw capture: no exception, and nothing but well-formed events."""
    events = parse_log(blob)
    well_formed(events)
    assert feed_all(list(iter_kmsg(io.BytesIO(blob), bufsize=97))) is not None
    assert parse_kmsg_record(blob) is None or isinstance(parse_kmsg_record(blob), LogRecord)


_FIELD = st.one_of(st.integers(-5, 2**70).map(str), st.text(max_size=8), st.sampled_from(["", "-", "c", "9" * 30]))


@given(_FIELD, _FIELD, _FIELD, st.lists(_FIELD, max_size=3), st.binary(max_size=200))
def test_kmsg_record_syntax_with_garbage(prio: str, seq: str, usec: str, flags: list[str], text: bytes) -> None:
    """``<prio>,<seq>,<usec>,<flags>;<text>`` with garbage in every field: a record or None, and a record's
    numbers are the ones written (never a part of a longer number)."""
    head = ",".join([prio, seq, usec, *flags]).encode("utf-8", "surrogateescape")
    raw = head + b";" + text + b"\n SUBSYSTEM=x\n"
    record = parse_kmsg_record(raw)
    if record is not None:
        assert isinstance(record.text, str) and "\n" not in record.text
        assert record.seq == int(seq) and record.kernel_time_us == int(usec)
    for line in records_from_text([raw]):
        assert isinstance(line.text, str)
    well_formed(parse_log(raw))


_REPORT_WORDS = st.sampled_from(
    ["invoked oom-killer: gfp_mask=0xcc0, order=0, oom_score_adj=", "Killed process ", "Memory cgroup out of memory: ",
     "oom-kill:constraint=CONSTRAINT_MEMCG,", "oom_memcg=/a", ",task_memcg=/a", ",task=x,pid=1,uid=0", "[  pid  ] ",
     "uid tgid total_vm rss pgtables_bytes swapents oom_score_adj name", "[   12] ", "Tasks in /a are going to be "
     "killed due to memory.oom.group set", "memory: usage 5kB, limit 9kB", "(", ")", " ", "kB", "-1", "99999999999",
     "\\x0a", "\x00", "\xff", "Task in /a killed as a result of limit of /b", "Kill process 3 (x) score 9 or sacrifice "
     "child", "oom_reaper: reaped process 1 (x)", "total-vm:1kB, anon-rss:", "UID:", "[    5.000000] ", "6,1,2,-;"]
)  # fmt: skip


@given(st.lists(st.lists(st.one_of(_REPORT_WORDS, st.text(max_size=5)), max_size=8).map("".join), max_size=40))
def test_arbitrary_lines_never_raise(lines: list[str]) -> None:
    """Lines made of the report's own words in any order: fed record by record or parsed whole, the same
    well-formed events, and no event without a "Killed process" line behind it."""
    events = parse_log("\n".join(lines))
    well_formed(events)
    assert feed_all(list(records_from_text(lines))) == events
    text = "\n".join(lines)
    for event in events:
        assert f"Killed process {event.victim.pid} (" in text or f"Kill process {event.victim.pid} (" in text


# ---------------------------------------------------------------------------------------- round trip


def expect(event: OomEvent, r: GenReport) -> None:
    """Every field of the event is the one the report was made from."""
    v = r.victim
    assert event.kind == r.kind
    assert [(k.pid, k.comm) for k in event.killed] == [(t.pid, t.comm) for t in r.killed]
    assert event.victim.anon_rss_bytes == v.anon * 4096 and event.victim.file_rss_bytes == v.file * 4096
    assert event.victim.shmem_rss_bytes == v.shmem * 4096 and event.victim.total_vm_bytes == v.total_vm * 4096
    if r.flavour != "4.x":
        assert (event.victim.uid, event.victim.oom_score_adj) == (v.uid, v.adj)
        assert event.victim.pgtables_bytes == v.pgtables_bytes // 1024 * 1024
        for k, t in zip(event.killed, r.killed, strict=True):
            assert (k.uid, k.oom_score_adj, k.anon_rss_bytes) == (t.uid, t.adj, t.anon * 4096)
    assert event.oom_group_path == r.group_path
    if not r.full:  # rate limited: the kill lines say only which kind of OOM it was
        assert event.oom_cgroup == (None if r.kind == "memcg" else "/")
        assert event.task_cgroup is None and event.candidates == () and event.invoker_comm is None
        return
    assert (event.invoker_comm, event.invoker_oom_score_adj) == (r.invoker.comm, r.invoker.adj)
    assert [(c.pid, c.comm, c.rss_pages, c.oom_score_adj, c.uid, c.tgid, c.swapents, c.pgtables_bytes)
            for c in event.candidates] == [
        (t.pid, t.comm, t.rss, t.adj, t.uid, t.pid, t.swapents, t.pgtables_bytes) for t in r.tasks
    ]  # fmt: skip
    if r.flavour == "6.x":
        assert [(c.rss_anon_pages, c.rss_file_pages, c.rss_shmem_pages) for c in event.candidates] == [
            (t.anon, t.file, t.shmem) for t in r.tasks
        ]
    assert event.constraint == (None if r.flavour == "4.x" else r.constraint)
    assert event.logged_score == r.logged_score
    if r.kind == "memcg":
        assert (event.oom_cgroup, event.task_cgroup) == (r.oom_cgroup, r.task_cgroup)
        assert (event.limit_bytes, event.usage_bytes) == (r.limit_kb * 1024, r.usage_kb * 1024)
    else:
        assert event.oom_cgroup == "/"
        assert event.task_cgroup == (None if r.flavour == "4.x" else r.task_cgroup)
        assert (event.node_ram_pages, event.node_swap_bytes) == (r.ram_pages, r.swap_total_kb * 1024)


@st.composite
def report_runs(draw: st.DrawFn) -> list[GenReport]:
    """One to three reports logged one after another, with pids unique across them (a killed pid is not killed
    again).  A rate-limited oom.group kill is never followed by another rate-limited kill: with neither header nor
    table, "Killed process" lines of the two are the same text, and only their timing could tell them apart."""
    runs: list[GenReport] = []
    seen: set[int] = set()
    for _ in range(draw(st.integers(1, 3))):
        r = draw(reports())
        pids = {t.pid for t in (*r.tasks, r.invoker)}
        if pids & seen or (runs and runs[-1].group_path is not None and not runs[-1].full and not r.full):
            continue
        seen |= pids
        runs.append(r)
    return runs or [draw(reports())]


@given(report_runs(), st.sampled_from(FORMS))
def test_generated_reports_parse_back_exactly(runs: list[GenReport], form: str) -> None:
    """Reports in any layout and any pasted form give one event each, with exactly the fields they were made
    from; record by record (the live path) gives the same; explain never fails on them."""
    if form != "kmsg" and not all(safe_in_text_forms(r) for r in runs):
        form = "kmsg"
    lines = [line for r in runs for line in report_lines(r)]
    text = render(lines, form)
    events = parse_log(text, now=NOW)
    assert len(events) == len(runs), [e.killed for e in events]
    for event, r in zip(events, runs, strict=True):
        expect(event, r)
    assert feed_all(list(records_from_text(text.splitlines(keepends=True), now=NOW))) == events
    if form == "kmsg":
        assert feed_all(list(iter_kmsg(io.BytesIO(text.encode()), bufsize=251))) == events
    for event in events:
        explanation = explain(event)
        if event.candidates and event.victim.pid in {c.pid for c in event.candidates}:
            assert explanation.victim_rank is not None
        event_to_json(with_identity(event), explanation)
    render_text(events)


@given(reports(), st.data())
def test_cut_and_shuffled_reports_never_invent_a_kill(r: GenReport, data: st.DataObject) -> None:
    """A report with lines dropped, cut short or duplicated: no exception, and every event's victim is a pid
    some "Kill(ed) process" line of the input named."""
    lines = report_lines(r)
    mutated = []
    for line in lines:
        action = data.draw(st.sampled_from(["keep", "keep", "keep", "drop", "cut", "twice"]))
        if action == "cut":
            line = line[: data.draw(st.integers(0, len(line)))]
        if action != "drop":
            mutated.append(line)
        if action == "twice":
            mutated.append(line)
    text = render(mutated, data.draw(st.sampled_from(FORMS)))
    events = parse_log(text, now=NOW)
    well_formed(events)
    for event in events:
        assert re.search(rf"Kill(?:ed)? process {event.victim.pid} \(", text)


# ---------------------------------------------------------------------------------- pinned examples


def test_kmsg_escapes_of_unicode_and_backslash_are_undone() -> None:
    """/dev/kmsg escapes every byte from 0x7f and the backslash: a comm "café\\1" arrives as
    ``caf\\xc3\\xa9\\x5c1``.  Left escaped, the kill's comm never matched the process's /proc name (placement by
    pid and comm) and read as garbage; control characters stay escaped (a record is one line)."""
    line = "Memory cgroup out of memory: Killed process 7 (café\\1) total-vm:4kB, anon-rss:4kB"
    record = parse_kmsg_record(f"6,1,2,-;{kernel_escape(line)}\n".encode())
    assert record is not None and record.text == line
    (event,) = parse_log(f"6,1,2,-;{kernel_escape(line)}\n")
    assert event.victim.comm == "café\\1"
    assert parse_kmsg_record(b"6,1,2,-;a\\x0ab\\x1b[2J\\xff\n").text == "a\\x0ab\\x1b[2J\\xff"  # type: ignore[union-attr]


def _kill_lines(cpuset: str, oom: str | None, task: str, comm: str, pid: int = 42) -> list[str]:
    domain = f"oom_memcg={oom}" if oom is not None else "global_oom"
    prefix = "Memory cgroup out of memory" if oom is not None else "Out of memory"
    return [
        f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset={cpuset},mems_allowed=0,{domain},"
        f"task_memcg={task},task={comm},pid={pid},uid=0",
        f"{prefix}: Killed process {pid} ({comm}) total-vm:8kB, anon-rss:4kB, file-rss:0kB, shmem-rss:0kB, UID:0 "
        "pgtables:4kB oom_score_adj:0",
    ]


def test_oom_kill_line_keys_inside_names_do_not_fool_it() -> None:
    """Found by the generator: the oom-kill: line was split at the first ",global_oom" / ",oom_memcg=" and the
    last ",task_memcg=" / ",task=", so a cpuset named "x,global_oom" turned a memcg kill into a global one, and a
    comm or cgroup holding ",task=" or ",task_memcg=" moved the split (a wrong victim cgroup, a wrong pod)."""
    (event,) = parse_log("\n".join(_kill_lines("x,global_oom", "/pod/a", "/pod/a", "stress")))
    assert (event.kind, event.oom_cgroup, event.task_cgroup) == ("memcg", "/pod/a", "/pod/a")
    (event,) = parse_log("\n".join(_kill_lines("/", "/pod/a", "/pod/a/b", "a,task=/x")))
    assert (event.oom_cgroup, event.task_cgroup, event.victim.comm) == ("/pod/a", "/pod/a/b", "a,task=/x")
    odd = "/p,task_memcg=/q"
    (event,) = parse_log("\n".join(_kill_lines("y,oom_memcg=", odd, odd + "/c", "sh")))
    assert (event.oom_cgroup, event.task_cgroup) == (odd, odd + "/c")
    (event,) = parse_log("\n".join(_kill_lines("z", None, "/u,oom_memcg=/v,task_memcg=/v", "sh")))
    assert (event.kind, event.oom_cgroup, event.task_cgroup) == ("global", "/", "/u,oom_memcg=/v,task_memcg=/v")


def test_task_in_line_split_where_the_paths_check_out() -> None:
    """Found by the generator: 4.x's "Task in <task> killed as a result of limit of <domain>" was split at the
    last occurrence of the words, so a cgroup holding them gave two wrong paths."""
    path = "/a killed as a result of limit of b"
    lines = [f"Task in {path}/c killed as a result of limit of {path}", "Killed process 5 (x) total-vm:4kB"]
    (event,) = parse_log("\n".join(lines))
    assert (event.oom_cgroup, event.task_cgroup) == (path, path + "/c")


def test_rate_limited_kill_after_a_group_kill_is_its_own_event() -> None:
    """After an oom.group kill, a header-less (rate-limited) kill of a pid its task table does not list is the
    next kill, not one more task of the group (every member of the group is in the domain's table)."""
    group = [
        "[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name",
        "[     10]     0    10     1000      900     8192        0           968 app",
        "[     11]     0    11     1000      100     8192        0           968 helper",
        *_kill_lines("/", "/pod/a", "/pod/a", "app", 10),
        "Tasks in /pod/a are going to be killed due to memory.oom.group set",
        _kill_lines("/", "/pod/a", "/pod/a", "app", 10)[1],
        _kill_lines("/", "/pod/a", "/pod/a", "helper", 11)[1],
        _kill_lines("/", "/pod/b", "/pod/b", "other", 77)[1],
    ]
    events = parse_log("\n".join(group))
    assert [[k.pid for k in e.killed] for e in events] == [[10, 11], [77]]
