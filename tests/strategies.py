"""Hypothesis strategies shared by the property tests: kernel OOM reports generated with the fields they were made
from, hostile names, and the files oomtop reads from cgroupfs, procfs and the node's metadata.

The OOM report generator follows mm/oom_kill.c and mm/memcontrol.c (and the real captures in
/work/shared/samples/): ``dump_header()`` ("invoked oom-killer", the memcg usage lines or show_mem, the task
table), ``dump_oom_victim()`` (the one-line ``oom-kill:`` summary, 4.19+), ``__oom_kill_process()`` ("Killed
process"), ``mem_cgroup_print_oom_group()`` and the OOM reaper.  It is written apart from :mod:`tests.kernlog` so
that a test built on it checks the parser against a second reading of the kernel source, not against the same
assumptions twice.  /dev/kmsg escaping is modelled as ``msg_add_ext_text()`` does it (``\\xNN`` for bytes below
0x20, from 0x7f, and the backslash).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from hypothesis import strategies as st

from tests import kernlog

TASK_COMM_LEN = 16  # the kernel's comm holds at most 15 bytes and a NUL
UNLIMITED_KB = 9007199254740988  # PAGE_COUNTER_MAX in kB: how the kernel logs "no limit"
FLAVOURS = ("4.x", "5.x", "6.1", "6.x")  # 4.14-style, 5.4-style, 6.1 (v2), 6.8+ (rss_anon/rss_file/rss_shmem)
FORMS = ("kmsg", "dmesg", "journal", "plain")
MEMCG_PREFIX = "Memory cgroup out of memory"
GLOBAL_PREFIX = "Out of memory"

# Text a hostile name may carry because the parser looks for it: the oom-kill: line's keys, the kill lines' words.
_TRAPS = (",task=", ",task_memcg=", ",oom_memcg=", ",global_oom", ",pid=1", ",uid=0", ") ", "(", ")", ":", ": ",
          "kB", "Killed process 1 (", " score 5 or sacrifice child", " killed as a result of limit of ",
          " are going to be killed due to memory.oom.group set", "UID:7", "oom_score_adj:1000", "=", ",", "\\",
          "\\x41", "é", "💥", "\u202e", " ")  # fmt: skip


def kernel_escape(text: str) -> str:
    """How /dev/kmsg shows a record's text: ``msg_add_ext_text()`` escapes control bytes, bytes from 0x7f and
    the backslash as ``\\xNN`` (lower-case hex)."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        out.append(f"\\x{byte:02x}" if byte < 0x20 or byte >= 0x7F or byte == 0x5C else chr(byte))
    return "".join(out)


def _fits_comm(name: str) -> bool:
    return 0 < len(name.encode("utf-8")) < TASK_COMM_LEN


# Printable text without the whitespace at either end that the kernel's "%s" keeps but a pasted log loses.
_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp", "Co", "Cn"), blacklist_characters="\x85\ufeff")


def _name_from(parts: list[str]) -> str:
    return "".join(parts)


comms = (
    st.lists(st.one_of(st.text(_PRINTABLE, min_size=1, max_size=6), st.sampled_from(_TRAPS)), min_size=1, max_size=4)
    .map(_name_from)
    .map(lambda s: s.encode("utf-8")[: TASK_COMM_LEN - 1].decode("utf-8", "ignore").strip())
    .filter(_fits_comm)
)
"""A task's comm as ``prctl(PR_SET_NAME)`` may set it: up to 15 bytes, spaces, unicode, parentheses, colons and
the parser's own keywords; no control characters (see :func:`kernel_escape`) and no leading/trailing blank."""

plain_comms = st.sampled_from(["stress", "python3", "java", "sh -c (x)", "a:b", "café", "kworker/0:1"])


def _cgroup_name(parts: list[str]) -> str:
    name = "".join(parts).replace("/", "_").strip()  # at a line's end (4.x "limit of"), a pasted log loses blanks
    return name if name not in ("", ".", "..") else "x"


cgroup_names = st.lists(
    st.one_of(st.text(_PRINTABLE, min_size=1, max_size=12), st.sampled_from(_TRAPS)), min_size=1, max_size=3
).map(_cgroup_name)
"""One cgroup directory name: any printable text but "/" (the kernel refuses it), with the parser's keywords; no
blank at either end."""

_POD_UID = st.uuids().map(str)
_CID = st.binary(min_size=32, max_size=32).map(bytes.hex)


@st.composite
def kube_paths(draw: st.DrawFn) -> str:
    """A container's cgroup path as kubelet and the runtimes name it (either driver, any runtime)."""
    uid = draw(_POD_UID)
    cid = draw(_CID)
    qos = draw(st.sampled_from(["", "burstable", "besteffort"]))
    if draw(st.booleans()):  # cgroupfs driver
        leaf = draw(st.sampled_from([cid, f"crio-{cid}", f"docker-{cid}"]))
        return f"/kubepods{'/' + qos if qos else ''}/pod{uid}/{leaf}"
    sd_uid = uid.replace("-", "_")
    qos_slice = f"/kubepods-{qos}.slice" if qos else ""
    pod = f"kubepods-{qos + '-' if qos else ''}pod{sd_uid}.slice"
    leaf = draw(st.sampled_from([f"cri-containerd-{cid}.scope", f"crio-{cid}.scope", f"docker-{cid}.scope"]))
    return f"/kubepods.slice{qos_slice}/{pod}/{leaf}"


cgroup_paths = st.one_of(
    kube_paths(),
    st.lists(cgroup_names, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)),
)


# ------------------------------------------------------------------------------------------------ reports


@dataclass(frozen=True)
class GenTask:
    """A process as the OOM killer sees it (memory in pages)."""

    pid: int
    comm: str
    uid: int
    anon: int
    file: int
    shmem: int
    swapents: int
    pgtables_bytes: int
    adj: int
    total_vm: int

    @property
    def rss(self) -> int:
        return self.anon + self.file + self.shmem


@st.composite
def gen_tasks(draw: st.DrawFn, comm: st.SearchStrategy[str] = comms, max_size: int = 5) -> list[GenTask]:
    """Tasks of distinct pids, as a table would list them."""
    pids = draw(st.lists(st.integers(2, 4_194_304), min_size=1, max_size=max_size, unique=True))
    tasks = []
    for pid in pids:
        anon, file, shmem = (draw(st.integers(0, 1 << 24)) for _ in range(3))
        tasks.append(
            GenTask(
                pid=pid, comm=draw(comm), uid=draw(st.integers(0, 2**32 - 2)), anon=anon, file=file, shmem=shmem,
                swapents=draw(st.integers(0, 1 << 20)), pgtables_bytes=draw(st.integers(0, 1 << 16)) * 4096,
                adj=draw(st.integers(-1000, 1000)), total_vm=anon + file + shmem + draw(st.integers(0, 1 << 20)),
            )
        )  # fmt: skip
    return tasks


@dataclass(frozen=True)
class GenReport:
    """One OOM kill decision as the kernel reports it, with every field the parser should give back."""

    flavour: str
    kind: str  # "memcg" or "global"
    oom_cgroup: str | None  # the domain (memcg), None for a global OOM
    task_cgroup: str
    cpuset: str
    constraint: str
    invoker: GenTask
    tasks: tuple[GenTask, ...]  # the task table
    victim: GenTask
    group: tuple[GenTask, ...] = ()  # memory.oom.group: every other task killed with the victim
    group_path: str | None = None
    limit_kb: int = 51200
    usage_kb: int = 51200
    ram_pages: int = 524158
    swap_total_kb: int = 0
    full: bool = True  # False: rate limited, only the kill lines were printed
    reaper: bool = False
    suppressed: int = 0  # "oom_kill_process: N callbacks suppressed" before the header
    logged_score: int | None = field(default=None)

    @property
    def killed(self) -> tuple[GenTask, ...]:
        return (self.victim, *self.group)

    @property
    def prefix(self) -> str:
        return MEMCG_PREFIX if self.kind == "memcg" else GLOBAL_PREFIX


def _table(report: GenReport) -> list[str]:
    flavour, lines = report.flavour, []
    if flavour != "4.x":
        lines.append("Tasks state (memory values in pages):")
    if flavour == "6.x":
        lines.append(
            "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
            "oom_score_adj name"
        )
    elif flavour in ("5.x", "6.1"):
        lines.append("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name")
    else:
        lines.append("[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name")
    for t in report.tasks:
        if flavour == "6.x":  # "[%7d] %5d %5d %8lu %8lu %8lu %8lu %9lu %8ld %8lu         %5hd %s"
            lines.append(
                f"[{t.pid:7d}] {t.uid:5d} {t.pid:5d} {t.total_vm:8d} {t.rss:8d} {t.anon:8d} {t.file:8d} "
                f"{t.shmem:9d} {t.pgtables_bytes:8d} {t.swapents:8d}         {t.adj:5d} {t.comm}"
            )
        elif flavour in ("5.x", "6.1"):  # "[%7d] %5d %5d %8lu %8lu %8ld %8lu         %5hd %s"
            lines.append(
                f"[{t.pid:7d}] {t.uid:5d} {t.pid:5d} {t.total_vm:8d} {t.rss:8d} {t.pgtables_bytes:8d} "
                f"{t.swapents:8d}         {t.adj:5d} {t.comm}"
            )
        else:  # "[%5d] %5d %5d %8lu %8lu %7ld %7ld %8lu         %5hd %s"
            ptes = t.pgtables_bytes // 4096
            lines.append(
                f"[{t.pid:5d}] {t.uid:5d} {t.pid:5d} {t.total_vm:8d} {t.rss:8d} {max(ptes - 1, 0):7d} "
                f"{min(ptes, 1):7d} {t.swapents:8d}         {t.adj:5d} {t.comm}"
            )
    return lines


def _killed_line(report: GenReport, t: GenTask) -> str:
    head = f"{report.prefix}: " if report.flavour != "4.x" else ""
    line = (
        f"{head}Killed process {t.pid} ({t.comm}) total-vm:{t.total_vm * 4}kB, anon-rss:{t.anon * 4}kB, "
        f"file-rss:{t.file * 4}kB, shmem-rss:{t.shmem * 4}kB"
    )
    if report.flavour != "4.x":
        line += f", UID:{t.uid} pgtables:{t.pgtables_bytes // 1024}kB oom_score_adj:{t.adj}"
    return line


def report_lines(report: GenReport) -> list[str]:
    """The messages of one report, in the kernel's order (each one a log record)."""
    r, lines = report, []
    if r.suppressed:
        lines.append(f"oom_kill_process: {r.suppressed} callbacks suppressed")
    if r.full:
        gfp = "0x14000c0(GFP_KERNEL), nodemask=(null)" if r.flavour == "4.x" else "0xcc0(GFP_KERNEL)"
        lines.append(f"{r.invoker.comm} invoked oom-killer: gfp_mask={gfp}, order=0, oom_score_adj={r.invoker.adj}")
        lines += [f"CPU: 1 PID: {r.invoker.pid} Comm: {r.invoker.comm} Not tainted 6.1.0 #1", "Call Trace:",
                  " <TASK>", " dump_stack_lvl+0x44/0x5c", " </TASK>"]  # fmt: skip
        if r.kind == "memcg":
            if r.flavour == "4.x":
                lines.append(f"Task in {r.task_cgroup} killed as a result of limit of {r.oom_cgroup}")
            lines.append(f"memory: usage {r.usage_kb}kB, limit {r.limit_kb}kB, failcnt 75")
            if r.flavour == "6.1":
                lines.append(f"swap: usage 0kB, limit {UNLIMITED_KB}kB, failcnt 0")
            else:
                lines.append(f"memory+swap: usage {r.usage_kb}kB, limit {UNLIMITED_KB}kB, failcnt 0")
            if r.flavour == "4.x":
                lines.append(f"Memory cgroup stats for {r.oom_cgroup}: cache:0KB rss:{r.usage_kb}KB")
            else:
                lines += [f"Memory cgroup stats for {r.oom_cgroup}:", "anon 66740224", "file 0"]
        else:
            lines += ["Mem-Info:", f"Total swap = {r.swap_total_kb}kB", f"{r.ram_pages} pages RAM",
                      "0 pages HighMem/MovableOnly"]  # fmt: skip
        lines += _table(r)
        if r.flavour == "4.x":
            lines.append(
                f"{r.prefix}: Kill process {r.victim.pid} ({r.victim.comm}) score {r.logged_score} or sacrifice child"
            )
        else:
            domain = f"oom_memcg={r.oom_cgroup}" if r.kind == "memcg" else "global_oom"
            lines.append(
                f"oom-kill:constraint={r.constraint},nodemask=(null),cpuset={r.cpuset},mems_allowed=0,{domain},"
                f"task_memcg={r.task_cgroup},task={r.victim.comm},pid={r.victim.pid},uid={r.victim.uid}"
            )
    lines.append(_killed_line(r, r.victim))
    if r.reaper:
        lines.append(
            f"oom_reaper: reaped process {r.victim.pid} ({r.victim.comm}), now anon-rss:0kB, file-rss:0kB, "
            "shmem-rss:0kB"
        )
    if r.group_path is not None:
        lines.append(f"Tasks in {r.group_path} are going to be killed due to memory.oom.group set")
        for t in (r.victim, *r.group):  # the kernel lists the victim again
            lines.append(_killed_line(r, t))
    return lines


@st.composite
def reports(draw: st.DrawFn, comm: st.SearchStrategy[str] = comms) -> GenReport:
    """Any report: 4.x to 6.x layouts, memcg or global, oom.group, rate limited (kill lines only)."""
    flavour = draw(st.sampled_from(FLAVOURS))
    kind = draw(st.sampled_from(["memcg", "global"]))
    full = draw(st.booleans()) if flavour != "4.x" else True  # 4.x: "Killed process" has no prefix to tell kinds
    tasks = draw(gen_tasks(comm))
    victim = draw(st.sampled_from(tasks))
    oom_cgroup = draw(cgroup_paths) if kind == "memcg" else None
    below = draw(st.lists(cgroup_names, max_size=2))
    task_cgroup = "/".join([oom_cgroup, *below]) if oom_cgroup is not None else draw(cgroup_paths)
    group: tuple[GenTask, ...] = ()
    group_path = None
    if flavour in ("5.x", "6.1", "6.x") and kind == "memcg" and draw(st.booleans()):
        group_path = task_cgroup
        group = tuple(t for t in tasks if t.pid != victim.pid and t.adj != -1000)
    limit_kb = draw(st.integers(4, 1 << 32))
    logged = draw(st.integers(0, 1000)) if flavour == "4.x" else None
    return GenReport(
        flavour=flavour, kind=kind, oom_cgroup=oom_cgroup, task_cgroup=task_cgroup,
        cpuset=draw(st.one_of(st.just("/"), cgroup_names)), constraint=draw(
            st.sampled_from(["CONSTRAINT_MEMCG", "CONSTRAINT_NONE"] if kind == "memcg" else ["CONSTRAINT_NONE",
                                                                                            "CONSTRAINT_CPUSET"])),
        invoker=draw(st.sampled_from(tasks)), tasks=tuple(tasks), victim=victim, group=group, group_path=group_path,
        limit_kb=limit_kb, usage_kb=draw(st.integers(0, limit_kb)), ram_pages=draw(st.integers(1, 1 << 28)),
        swap_total_kb=draw(st.integers(0, 1 << 30)), full=full, reaper=draw(st.booleans()),
        suppressed=draw(st.sampled_from([0, 0, 3, 117])), logged_score=logged,
    )  # fmt: skip


def render(messages: list[str], form: str) -> str:
    """The messages as log text in one of :data:`FORMS`, laid out by :func:`tests.kernlog.render`; only the raw
    /dev/kmsg form escapes the text first, as the kernel does (``kernel_escape``)."""
    return kernlog.render([kernel_escape(text) for text in messages] if form == "kmsg" else messages, form)


def safe_in_text_forms(report: GenReport) -> bool:
    """Whether the report's invoker line can be told from a pasted log's own prefixes: a line that *starts* with
    the comm is ambiguous in text (a comm "[1.5] x" reads as a dmesg stamp, "[T12] x" as a caller id, "<6>x" as a
    priority).  /dev/kmsg records carry no such ambiguity."""
    return not re.match(r"[\[<]|[a-z0-9]{2,8} *:", report.invoker.comm)


# ------------------------------------------------------------------------------------------------ files

huge_ints = st.one_of(st.integers(2**63, 2**80), st.integers(-(2**70), -1))
numbers_text = st.one_of(
    st.integers(0, 2**63 - 1).map(str),
    huge_ints.map(str),
    st.sampled_from(["max", "-1", "", " ", "1e9", "0x10", "NaN", "１２３", "12 34", "+5", "1_000", "٣", "9" * 5000]),
)
"""What a one-number cgroup or proc file may hold: numbers, huge and negative ones, words, other digit systems."""


def garbage_bytes(max_size: int = 400) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes, and text-like bytes made of the words the readers look for."""
    words = st.sampled_from([b"total_rss", b"anon", b"file", b"max", b"oom_kill", b"under_oom", b"some", b"full",
                             b"avg10=", b"total=", b"RssAnon:", b"VmSwap:", b"Name:", b"Uid:", b" ", b"\n", b"\t",
                             b"\xff", b"-", b"18446744073709551616", b"1", b"kB", b"\x00", b"="])  # fmt: skip
    return st.one_of(st.binary(max_size=max_size), st.lists(words, max_size=60).map(b"".join))
