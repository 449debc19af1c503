"""Tests for oomtop.collect.kmsg: kernel log records and the OOM block parser, on real samples and built logs."""

from __future__ import annotations

import io
import random
import time
from dataclasses import replace
from pathlib import Path

import pytest

from oomtop.collect.kmsg import (
    LogRecord,
    OomParser,
    iter_kmsg,
    parse_kmsg_record,
    parse_log,
    records_from_text,
)
from oomtop.model import KernelCandidate, OomEvent
from tests import kernlog
from tests.kernlog import (
    CGROUPFS_PATH,
    CRIO_PATH,
    FLAVOURS,
    FORMS,
    STRESS,
    SYSTEMD_PATH,
    Task,
    global_block,
    group_block,
    memcg_block,
    render,
)

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
if not SAMPLES.is_dir():
    SAMPLES = Path("/work/shared/samples")
V1_PATH = "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/runcctr1"
V2_PATH = (
    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5f0c2a43_8f4e_4d59_9a7e_1b2c3d4e5f60.slice/"
    "cri-containerd-2a4a743741f705fb70f97b340b5f356dee114a1b32b92b018dc30a478c151181.scope"
)


def sample(name: str) -> bytes:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"sample {path} not present")
    return path.read_bytes()


def feed_all(records: list[LogRecord], parser: OomParser | None = None) -> list[OomEvent]:
    parser = parser or OomParser()
    events = []
    for record in records:
        events.extend(parser.feed(record))
    return events + parser.flush()


def one(text: str | bytes) -> OomEvent:
    events = parse_log(text)
    assert len(events) == 1, events
    return events[0]


# ------------------------------------------------------------------------------------------- real samples


@pytest.mark.parametrize("name", ["kmsg-6.18-memcg-v1.raw", "dmesg-6.18-memcg-v1.txt"])
def test_sample_6_18_memcg_v1(name: str) -> None:
    event = one(sample(name))
    assert event.kind == "memcg"
    assert event.victim.pid == 7978 and event.victim.comm == "stress"
    assert event.killed == (event.victim,)
    assert event.limit_bytes == 51200 * 1024 and event.usage_bytes == 51200 * 1024
    assert event.swap_limit_bytes is None  # memory+swap limit 9007199254740988kB: unlimited
    assert event.oom_cgroup == V1_PATH and event.task_cgroup == V1_PATH
    assert event.constraint == "CONSTRAINT_MEMCG"
    assert (event.invoker_comm, event.invoker_oom_score_adj) == ("stress", 0)
    assert event.kernel_time_s == pytest.approx(441.532542)
    assert event.seq == (490 if name.startswith("kmsg") else None)
    assert event.oom_group_path is None and event.logged_score is None
    v = event.victim
    assert (v.anon_rss_bytes, v.file_rss_bytes, v.shmem_rss_bytes) == (50560 * 1024, 268 * 1024, 0)
    assert (v.total_vm_bytes, v.uid, v.pgtables_bytes, v.oom_score_adj) == (105788 * 1024, 0, 148 * 1024, 0)
    assert event.candidates == (
        KernelCandidate(pid=7973, comm="stress", oom_score_adj=0, rss_pages=459, uid=0, tgid=7973, total_vm_pages=846,
                        rss_anon_pages=0, rss_file_pages=459, rss_shmem_pages=0, pgtables_bytes=45056, swapents=0),
        KernelCandidate(pid=7978, comm="stress", oom_score_adj=0, rss_pages=12707, uid=0, tgid=7978,
                        total_vm_pages=26447, rss_anon_pages=12640, rss_file_pages=67, rss_shmem_pages=0,
                        pgtables_bytes=151552, swapents=0),
    )  # fmt: skip


@pytest.mark.parametrize("name", ["kmsg-6.1-v2-oomgroup.raw", "dmesg-6.1-v2-oomgroup.txt"])
def test_sample_6_1_v2_oom_group(name: str) -> None:
    events = parse_log(sample(name))
    assert len(events) == 1  # one kernel decision; the whole oom.group died with it
    event = events[0]
    assert event.kind == "memcg" and event.oom_cgroup == V2_PATH and event.task_cgroup == V2_PATH
    assert event.oom_group_path == V2_PATH
    assert event.victim.pid == 215
    assert [k.pid for k in event.killed] == [215, 216]  # the victim is listed twice by the kernel, once here
    assert event.killed[1].anon_rss_bytes == 27420 * 1024 and event.killed[1].oom_score_adj == 968
    assert event.limit_bytes == 65536 * 1024 and event.swap_limit_bytes is None
    assert event.invoker_oom_score_adj == 968
    assert [(c.pid, c.rss_pages, c.pgtables_bytes, c.swapents, c.oom_score_adj) for c in event.candidates] == [
        (215, 10979, 135168, 0, 968),
        (216, 8455, 122880, 0, 968),
    ]
    assert all(c.rss_anon_pages is None for c in event.candidates)  # 6.1 has no rss_anon column


@pytest.mark.parametrize("stem", ["6.18-memcg-v1", "6.1-v2-oomgroup"])
def test_raw_and_dmesg_samples_agree(stem: str) -> None:
    raw = one(sample(f"kmsg-{stem}.raw"))
    text = one(sample(f"dmesg-{stem}.txt"))
    assert replace(raw, seq=None) == text


@pytest.mark.parametrize("name", ["kmsg-6.18-memcg-v1.raw", "kmsg-6.1-v2-oomgroup.raw"])
def test_iter_kmsg_reads_a_raw_capture(name: str) -> None:
    records = list(iter_kmsg(io.BytesIO(sample(name)), bufsize=1000))  # records split across reads
    assert not any(r.text.startswith(("SUBSYSTEM=", "DEVICE=")) for r in records)
    assert [r.seq for r in records] == sorted(r.seq for r in records)
    assert feed_all(records, OomParser(source="kmsg")) == [
        replace(e, source=("kmsg",)) for e in parse_log(sample(name))
    ]


def test_iter_kmsg_carries_on_after_epipe_and_stops_on_eagain() -> None:
    class Kmsg:
        def __init__(self) -> None:
            self.reads = [b"6,1,100,-;one\n SUBSYSTEM=x\n", BrokenPipeError(), b"6,9,900,-;two\n", BlockingIOError()]

        def read(self, n: int) -> bytes:
            item = self.reads.pop(0)
            if isinstance(item, Exception):
                raise item
            return item

    assert [(r.seq, r.text) for r in iter_kmsg(Kmsg())] == [(1, "one"), (9, "two")]  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ incremental parsing


@pytest.mark.parametrize(
    "name",
    [
        p
        for p in (
            "kmsg-6.18-memcg-v1.raw",
            "dmesg-6.18-memcg-v1.txt",
            "kmsg-6.1-v2-oomgroup.raw",
            "dmesg-6.1-v2-oomgroup.txt",
        )
    ],
)
def test_record_by_record_equals_parse_log(name: str) -> None:
    text = sample(name).decode("utf-8", "backslashreplace")
    records = list(records_from_text(text.splitlines(keepends=True)))
    assert feed_all(records) == parse_log(text)


def test_live_stream_emits_on_next_unrelated_record_and_on_flush() -> None:
    records = list(iter_kmsg(io.BytesIO(sample("kmsg-6.18-memcg-v1.raw"))))
    parser = OomParser(source="kmsg")
    for record in records:
        assert parser.feed(record) == []
    assert parser.pending_since() == 441532794 and parser.has_pending  # complete, may still grow (oom.group)
    later = parser.feed(LogRecord(570, 441600000, None, "eth0: link up"))
    assert [e.victim.pid for e in later] == [7978] and later[0].source == ("kmsg",)
    assert parser.pending_since() is None and parser.flush() == []

    parser = OomParser()
    for record in records:
        parser.feed(record)
    assert [e.victim.pid for e in parser.flush()] == [7978]
    assert parser.flush() == []


def test_group_kill_stays_pending_until_its_last_killed_line() -> None:
    records = list(iter_kmsg(io.BytesIO(sample("kmsg-6.1-v2-oomgroup.raw"))))
    parser = OomParser()
    first_kill = next(i for i, r in enumerate(records) if "Killed process" in r.text)
    for record in records[: first_kill + 1]:
        assert parser.feed(record) == []
    assert parser.pending_since() == records[first_kill].kernel_time_us
    for record in records[first_kill + 1 :]:
        assert parser.feed(record) == []
    # Another CPU's message may land between two kills of one group, so an unrelated line does not end it;
    # the next OOM block or a quiet period (flush) does.
    assert parser.feed(LogRecord(None, None, None, "unrelated")) == []
    (event,) = parser.flush()
    assert [k.pid for k in event.killed] == [215, 216]


def test_reaper_line_keeps_the_event_pending() -> None:
    lines = memcg_block(STRESS, reaper=True)
    parser = OomParser()
    events = [e for line in lines for e in parser.feed(LogRecord(None, 1, None, line))]
    assert events == [] and parser.has_pending
    assert [e.victim.pid for e in parser.feed(LogRecord(None, 2, None, "next"))] == [7978]


def test_new_oom_block_ends_the_pending_one() -> None:
    text = render(memcg_block(STRESS) + memcg_block([Task(42, anon=9000)], oom_cgroup=SYSTEMD_PATH))
    events = parse_log(text)
    assert [e.victim.pid for e in events] == [7978, 42]
    assert [e.oom_cgroup for e in events] == [CGROUPFS_PATH, SYSTEMD_PATH]
    assert len(events[1].candidates) == 1


# ---------------------------------------------------------------------------------------------- records


def test_parse_kmsg_record() -> None:
    r = parse_kmsg_record(b"6,518,441532690,-;memory: usage 51200kB\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A03:00\n")
    assert r == LogRecord(518, 441532690, None, "memory: usage 51200kB")
    assert parse_kmsg_record(b"4,7,12,c,caller=T12;x\\x0ay\n") == LogRecord(7, 12, None, "x\\x0ay")  # escapes kept
    assert parse_kmsg_record(b"3,1,2,-;bad \xff\xfe utf8\n").text == "bad \\xff\\xfe utf8"
    assert parse_kmsg_record(b"6,1,2,-;\n").text == ""
    for junk in (b"", b"hello", b"6,x,2,-;t", b";text", b"6,1;x", b"6,1,2,-;str"[:3], None, 12):
        assert parse_kmsg_record(junk) is None  # type: ignore[arg-type]


def one_record(line: str, now: float | None = None) -> LogRecord:
    (record,) = records_from_text([line], now=now)
    return record


def test_line_forms() -> None:
    assert one_record("6,518,441532690,-;text here") == LogRecord(518, 441532690, None, "text here")
    assert one_record("[  441.532690] text here") == LogRecord(None, 441532690, None, "text here")
    assert one_record("[  441.532690]  dump_stack+0x1/0x2").text == " dump_stack+0x1/0x2"
    assert one_record("<6>[  441.5] text") == LogRecord(None, 441500000, None, "text")
    assert one_record("kern  :info  : [  441.532690] text") == LogRecord(None, 441532690, None, "text")
    assert one_record("[    2.000000] [    T1] text").text == "text"  # CONFIG_PRINTK_CALLER
    assert one_record("[  +0.000012] text").text == "text"  # dmesg -d / reltime: no time kept
    assert one_record("plain words").text == "plain words"
    assert one_record("[   7978]     0  7978 x").text == "[   7978]     0  7978 x"  # table rows are not prefixes
    assert one_record("[  pid  ]   uid name").text == "[  pid  ]   uid name"
    assert one_record("[  441.532690] text\r").text == "text"


def test_wall_clock_forms() -> None:
    local = time.mktime((2019, 4, 27, 22, 56, 9, 0, 0, -1))
    assert one_record("[Sat Apr 27 22:56:09 2019] text") == LogRecord(None, None, local, "text")
    now = time.mktime((2019, 6, 1, 0, 0, 0, 0, 0, -1))
    assert one_record("Apr 27 22:56:09 node1 kernel: text", now) == LogRecord(None, None, local, "text")
    r = one_record("Apr 27 22:56:09.250000 node1 kernel: [  441.532690] text", now)
    assert r == LogRecord(None, 441532690, local + 0.25, "text")
    early = time.mktime((2019, 1, 2, 0, 0, 0, 0, 0, -1))  # a December line read in January: last year
    assert one_record("Dec 31 23:00:00 node1 kernel: text", early).wall_time == time.mktime(
        (2018, 12, 31, 23, 0, 0, 0, 0, -1)
    )
    assert one_record("2019-04-27T22:56:09+0200 node1 kernel: text").wall_time == 1556398569.0
    assert one_record("2019-04-27T20:56:09.500000Z node1 kernel: text").wall_time == 1556398569.5
    assert one_record("2019-04-27T22:56:09,000000+02:00 text").wall_time == 1556398569.0  # dmesg --time-format=iso
    assert one_record("[  441.532690] node1 kernel: text") == LogRecord(
        None, 441532690, None, "text"
    )  # short-monotonic
    other = one_record("Apr 27 22:56:09 node1 kubelet[812]: Killed process 1 (x)", now)
    assert other.text.startswith("Apr 27")  # another program's line never looks like a kernel message


def test_continuation_lines() -> None:
    text = (
        "6,1,10,-;first\n SUBSYSTEM=acpi\n DEVICE=+acpi:x\n[   1.000000] second\n               more of it\n"
        "  [   2.000000] indented paste\nplain\n  still plain\n"
    )
    records = list(records_from_text(text.split("\n")))
    assert [(r.seq, r.kernel_time_us, r.text) for r in records] == [
        (1, 10, "first"),
        (None, 1000000, "second"),
        (None, 1000000, "more of it"),
        (None, 2000000, "indented paste"),
        (None, None, "plain"),
        (None, None, "  still plain"),
    ]


def test_records_from_bytes_and_embedded_newlines() -> None:
    records = list(records_from_text([b"[ 1.0] a\xff\n[ 2.0] b", "c\r\n"]))
    assert [r.text for r in records] == ["a\\xff", "b", "c"]


# ------------------------------------------------------------------------------------------ built inputs


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("form", FORMS)
def test_memcg_kill_every_flavour_and_form(flavour: str, form: str) -> None:
    tasks = [*STRESS, Task(8001, "worker two", anon=1000, adj=1000)]
    events = parse_log(render(memcg_block(tasks, flavour=flavour), form), now=kernlog.WALL0 + 30 * 86400)
    assert len(events) == 1
    event = events[0]
    victim = kernlog.kernel_choice(tasks, kernlog.memcg_totalpages(51200))
    assert event.kind == "memcg" and event.victim.pid == victim.pid == 8001  # 1002 + 1000 × 12 beats 12744
    assert event.oom_cgroup == CGROUPFS_PATH and event.task_cgroup == CGROUPFS_PATH
    assert event.limit_bytes == 51200 * 1024
    assert [c.pid for c in event.candidates] == [7973, 7978, 8001]
    assert event.candidates[2].comm == "worker two" and event.candidates[2].oom_score_adj == 1000
    assert [c.pgtables_bytes for c in event.candidates] == [t.pgtables_bytes for t in tasks]
    assert [c.rss_pages for c in event.candidates] == [t.rss for t in tasks]
    assert event.victim.anon_rss_bytes == 1000 * 4096
    if flavour == "4.x":
        assert event.logged_score == (1000 + 2 + 1000 * 12) * 1000 // 12800
        assert event.constraint is None
    else:
        assert event.logged_score is None and event.constraint == "CONSTRAINT_MEMCG"
    if flavour == "6.x-v1":
        assert event.candidates[1].rss_anon_pages == 12640
    else:
        assert event.candidates[1].rss_anon_pages is None
    if form in ("kmsg", "dmesg", "dmesg-r", "syslog"):
        assert event.kernel_time_s == pytest.approx(441.532542)
    if form in ("dmesg-T", "journal", "journal-precise", "journal-iso", "syslog"):
        assert event.time is not None and abs(event.time - kernlog.WALL0) < 1.0
    if form == "kmsg":
        assert event.seq == 490


def test_4x_older_format_details() -> None:
    task_cg = CGROUPFS_PATH + "/sub"
    event = one(render(memcg_block(STRESS, flavour="4.x", task_cgroup=task_cg)))
    assert (event.oom_cgroup, event.task_cgroup) == (CGROUPFS_PATH, task_cg)  # "Task in X ... limit of Y"
    assert event.victim.pid == 7978 and event.victim.uid is None and event.victim.pgtables_bytes is None
    assert event.logged_score == 995
    assert event.candidates[1].pgtables_bytes == 151552  # (nr_ptes + nr_pmds) pages × 4096


def test_swap_limits() -> None:
    v1 = one(render(memcg_block(STRESS, swap_limit_kb=102400)))
    assert v1.swap_limit_bytes == 102400 * 1024  # memsw limit minus memory limit
    v2 = one(render(memcg_block(STRESS, flavour="6.1-v2", swap_limit_kb=2048)))
    assert v2.swap_limit_bytes == 2048 * 1024  # v2 logs memory.swap.max itself
    none = one(render(memcg_block(STRESS, swap_limit_kb=0)))
    assert none.swap_limit_bytes == 0


@pytest.mark.parametrize("flavour", ["6.x-v1", "6.1-v2", "5.x", "4.x"])
def test_global_oom(flavour: str) -> None:
    tasks = [
        Task(1, "systemd", anon=2000),
        Task(500, "java", anon=400000, adj=0),
        Task(501, "sshd", anon=900, adj=-1000),
    ]
    event = one(render(global_block(tasks, flavour=flavour, swap_kb=1048576)))
    assert event.kind == "global" and event.oom_cgroup == "/"
    assert event.victim.pid == 500
    assert event.node_ram_pages == 524158 and event.node_swap_bytes == 1048576 * 1024
    assert event.limit_bytes is None and len(event.candidates) == 3
    if flavour != "4.x":
        assert event.constraint == "CONSTRAINT_NONE"
        assert event.task_cgroup == "/user.slice/user-0.slice/session-1.scope"


def test_kind_comes_from_oom_memcg_or_global_oom_not_constraint() -> None:
    tasks = [Task(500, anon=4000)]
    assert one(render(global_block(tasks, constraint="CONSTRAINT_MEMCG"))).kind == "global"
    lines = [line.replace("CONSTRAINT_MEMCG", "CONSTRAINT_NONE") for line in memcg_block(tasks)]
    event = one(render(lines))
    assert event.kind == "memcg" and event.constraint == "CONSTRAINT_NONE" and event.oom_cgroup == CGROUPFS_PATH


def test_oom_group_kill_built() -> None:
    tasks = [
        Task(10, "app", anon=5000, adj=968),
        Task(11, "helper", anon=1000, adj=968),
        Task(12, "pause", anon=100, adj=-1000),
        Task(13, "sh -c (x)", anon=50, adj=968),
    ]
    event = one(render(group_block(tasks, reaper_between=True), "kmsg"))
    assert event.oom_group_path == SYSTEMD_PATH
    assert [k.pid for k in event.killed] == [10, 11, 13]
    assert event.killed[2].comm == "sh -c (x)"
    assert event.victim == event.killed[0]


def test_group_at_the_pod_level_kills_every_container() -> None:
    pod = SYSTEMD_PATH.rsplit("/", 1)[0]
    tasks = [Task(10, "a", anon=5000), Task(20, "b", anon=6000)]
    event = one(render(group_block(tasks, group_path=pod, oom_cgroup=pod)))
    assert event.victim.pid == 20 and [k.pid for k in event.killed] == [20, 10]


@pytest.mark.parametrize("path", [CRIO_PATH, SYSTEMD_PATH, kernlog.GUARANTEED_PATH])
def test_runtime_paths_are_kept_verbatim(path: str) -> None:
    event = one(render(memcg_block(STRESS, oom_cgroup=path), "journal"))
    assert event.oom_cgroup == path and event.task_cgroup == path


def test_comm_with_spaces_parens_and_invalid_utf8() -> None:
    weird = Task(900, "a (b) c) d", anon=20000)
    text = render(memcg_block([STRESS[0], weird])).encode()
    event = one(text)
    assert event.victim.comm == "a (b) c) d" and event.candidates[1].comm == "a (b) c) d"
    raw = render(memcg_block([Task(901, "x", anon=20000)]), "kmsg").encode().replace(b"(x)", b"(\xffx\xfe)")
    raw = raw.replace(b"uid=0 ", b"uid=0\xff ")
    event = one(raw)
    assert event.victim.comm == "\\xffx\\xfe"


def test_interleaved_unrelated_lines() -> None:
    lines = memcg_block([*STRESS, Task(8001, anon=100), Task(8002, anon=200)])
    noisy: list[str] = []
    for line in lines:
        noisy.append(line)
        noisy.append("eth0: renamed from veth1234")
        noisy.append("[  123.456] not a row")
    event = one(render(noisy))
    assert [c.pid for c in event.candidates] == [7973, 7978, 8001, 8002]
    assert event.victim.pid == 7978 and event.limit_bytes == 51200 * 1024


def test_truncated_start() -> None:
    lines = render(memcg_block(STRESS)).splitlines()
    oom_kill = next(i for i, line in enumerate(lines) if "] oom-kill:" in line)
    event = one("\n".join(lines[oom_kill:]))
    assert event.victim.pid == 7978 and event.oom_cgroup == CGROUPFS_PATH and event.candidates == ()
    assert event.kernel_time_s is not None and event.kernel_time_s > 441.532542  # the block's first record seen
    rows = next(i for i, line in enumerate(lines) if "] [   7978]" in line)
    assert one("\n".join(lines[rows:])).candidates == ()  # rows without their header are not read
    only_kill = one(lines[-1])
    assert only_kill.kind == "memcg" and only_kill.victim.pid == 7978 and only_kill.oom_cgroup is None


def test_truncated_end_is_not_a_kill() -> None:
    lines = memcg_block(STRESS)
    assert parse_log(render(lines[:-1])) == []
    assert parse_log(render(lines[:-2])) == []
    second = memcg_block([Task(42, anon=9000)], oom_cgroup=SYSTEMD_PATH)
    assert [e.victim.pid for e in parse_log(render(lines[:-1] + second))] == [42]


def test_truncated_table() -> None:
    tasks = [Task(100 + i, anon=1000 + i) for i in range(5)]
    lines = memcg_block(tasks, victim=tasks[-1])
    header = next(i for i, line in enumerate(lines) if line.startswith("[  pid"))
    cut = [*lines[: header + 3], lines[header + 3][:12], *lines[header + 6 :]]  # two rows, a half row, none more
    event = one(render(cut))
    assert [c.pid for c in event.candidates] == [100, 101]
    assert event.victim.pid == 104


def test_cut_lines_do_not_break() -> None:
    lines = memcg_block(STRESS)
    cut = [line[: len(line) // 2] if line.startswith(("oom-kill", "memory")) else line for line in lines]
    event = one(render(cut))
    assert event.victim.pid == 7978 and event.oom_cgroup is not None  # the path from the half oom-kill line


def test_mixed_forms_and_windows_line_endings() -> None:
    a = render(memcg_block(STRESS), "kmsg")
    b = render(memcg_block([Task(42, anon=9000)], oom_cgroup=SYSTEMD_PATH), "dmesg-T")
    c = render(global_block([Task(500, anon=400000)]), "journal")
    d = render(memcg_block([Task(43, anon=9000)], flavour="4.x"), "plain")
    text = (a + "junk line\n" + b + c + d).replace("\n", "\r\n")
    assert [(e.kind, e.victim.pid) for e in parse_log(text)] == [
        ("memcg", 7978),
        ("memcg", 42),
        ("global", 500),
        ("memcg", 43),
    ]


def test_kill_lines_of_two_cut_blocks_are_two_events() -> None:
    a = memcg_block(STRESS)[-1]
    b = memcg_block([Task(42, anon=9000)])[-1]
    assert [[k.pid for k in e.killed] for e in parse_log(render([a, b]))] == [[7978], [42]]
    group = group_block([Task(10, anon=5000), Task(11, anon=100)])
    cut = group[group.index(next(line for line in group if line.startswith("Tasks in"))) :]
    assert [[k.pid for k in e.killed] for e in parse_log(render(cut))] == [[10, 11]]  # start cut inside the group


def test_orphan_duplicate_victim_line_is_ignored() -> None:
    lines = memcg_block(STRESS)
    assert len(parse_log(render([*lines, "unrelated", lines[-1]]))) == 1


def test_garbage_never_raises() -> None:
    rng = random.Random(1234)
    blob = bytes(rng.randrange(256) for _ in range(20000))
    assert parse_log(blob) == []
    huge = "9" * 5000  # past Python's int-from-str digit limit
    lines = memcg_block(STRESS)
    lines = [line.replace("51200kB", f"{huge}kB").replace("12707", huge) for line in lines]
    lines.insert(3, f"[{huge}.{huge}] x")
    lines.insert(4, f"6,{huge},{huge},-;x")
    lines.insert(5, "\x00\x1b[2J" * 100)
    events = parse_log("\n".join(lines))
    assert [e.victim.pid for e in events] == [7978]
    assert events[0].limit_bytes is None  # a limit that does not parse is not invented
    big = one(render([line.replace("51200kB", "99999999999999999999kB") for line in memcg_block(STRESS)]))
    assert big.limit_bytes is None  # absurd: treated as no limit


def test_fuzzed_sample_lines_never_raise() -> None:
    rng = random.Random(7)
    lines = (
        sample("dmesg-6.1-v2-oomgroup.txt").decode().splitlines()
        + render(memcg_block(STRESS, flavour="4.x")).splitlines()
    )
    for _ in range(200):
        picked = [line for line in lines if rng.random() < 0.7]
        if rng.random() < 0.5:
            rng.shuffle(picked)
        mutated = []
        for line in picked:
            k = rng.randrange(10)
            if k == 0:
                line = line[: rng.randrange(len(line) + 1)]
            elif k == 1:
                i = rng.randrange(len(line) + 1)
                line = line[:i] + rng.choice(["(", ")", ",", "\xff", "\x00", "kB", " ", "]", "["]) + line[i:]
            mutated.append(line)
        events = parse_log("\n".join(mutated))
        assert all(e.killed and e.victim == e.killed[0] for e in events)
        assert feed_all(list(records_from_text(mutated))) == events


def test_feed_never_raises_on_odd_records() -> None:
    parser = OomParser()
    for record in (LogRecord(None, None, None, None), LogRecord(1, -5, 1e300, "x" * 100000)):  # type: ignore[arg-type]
        assert parser.feed(record) == []
    assert parser.flush() == []


def test_group_kill_interrupted_by_another_cpus_message_is_one_event() -> None:
    from tests.kernlog import Task as LogTask
    from tests.kernlog import group_block, render

    tasks = (
        LogTask(215, comm="python3", anon=9000, file=1600),
        LogTask(216, comm="python3", anon=6800, file=1600),
        LogTask(217, comm="sh", anon=100, file=300),
    )
    lines = group_block(tasks)
    at = lines.index(next(line for line in lines if "are going to be killed" in line)) + 2
    lines[at:at] = ["e1000: eth0 NIC Link is Up 1000 Mbps Full Duplex"]
    events = parse_log(render(lines))
    assert len(events) == 1
    assert [task.pid for task in events[0].killed] == [215, 216, 217]
