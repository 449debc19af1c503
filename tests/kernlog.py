"""Builds kernel-log text of OOM kills for tests: the messages of one block per kernel flavour, then rendered in
one of the forms people paste (raw /dev/kmsg, dmesg, dmesg -T, dmesg -r, journalctl -k, syslog, plain).

Blocks follow mm/oom_kill.c and mm/memcontrol.c of each flavour:

- ``"6.x-v1"``: 6.x, cgroup v1 (rss rss_anon rss_file rss_shmem pgtables_bytes swapents columns, memory+swap)
- ``"6.1-v2"``: 6.1, cgroup v2 (rss pgtables_bytes swapents columns, "swap: usage" line)
- ``"5.x"``: 5.4-style: oom-kill: line, rss pgtables_bytes swapents columns, memory+swap
- ``"4.x"``: 4.14-style: "Task in ... killed as a result of limit of ...", nr_ptes/nr_pmds columns,
  "Kill process ... score N or sacrifice child" then a short "Killed process" line

The victim defaults to the kernel's own choice, computed here independently of oomtop (:func:`kernel_choice`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

UNLIMITED_KB = 9007199254740988  # PAGE_COUNTER_MAX pages in kB: how the kernel logs "no limit"
FLAVOURS = ("6.x-v1", "6.1-v2", "5.x", "4.x")
FORMS = ("kmsg", "dmesg", "dmesg-T", "dmesg-r", "journal", "journal-precise", "journal-iso", "syslog", "plain")

POD_UID = "bc001ffa-68fc-11e9-92d7-5ef9efd9374c"
CID = "2a4a743741f705fb70f97b340b5f356dee114a1b32b92b018dc30a478c151181"
CGROUPFS_PATH = f"/kubepods/burstable/pod{POD_UID}/{CID}"
GUARANTEED_PATH = f"/kubepods/pod{POD_UID}/{CID}"
_SD_POD = f"kubepods-burstable-pod{POD_UID.replace('-', '_')}.slice"
SYSTEMD_PATH = f"/kubepods.slice/kubepods-burstable.slice/{_SD_POD}/cri-containerd-{CID}.scope"
_BE_POD = f"kubepods-besteffort-pod{POD_UID.replace('-', '_')}.slice"
CRIO_PATH = f"/kubepods.slice/kubepods-besteffort.slice/{_BE_POD}/crio-{CID}.scope"


@dataclass(frozen=True)
class Task:
    """A process as the OOM killer sees it (memory in pages)."""

    pid: int
    comm: str = "stress"
    anon: int = 0
    file: int = 0
    shmem: int = 0
    swap: int = 0
    pgtables_bytes: int = 8192
    adj: int = 0
    uid: int = 0
    total_vm: int | None = None

    @property
    def rss(self) -> int:
        return self.anon + self.file + self.shmem

    @property
    def vm(self) -> int:
        return self.total_vm if self.total_vm is not None else self.rss * 2 + 100


def points(task: Task, totalpages: int) -> int | None:
    if task.adj == -1000:
        return None
    return task.rss + task.swap + task.pgtables_bytes // 4096 + task.adj * (totalpages // 1000)


def kernel_choice(tasks: Sequence[Task], totalpages: int) -> Task:
    """The kernel's victim: most points, the later task on a tie (written independently of oomtop.rank)."""
    chosen, best = None, None
    for task in tasks:
        p = points(task, totalpages)
        if p is not None and (best is None or p >= best):
            chosen, best = task, p
    assert chosen is not None
    return chosen


def memcg_totalpages(limit_kb: int, swap_allowance_kb: int | None = None) -> int:
    return limit_kb // 4 + (swap_allowance_kb // 4 if swap_allowance_kb is not None else 0)


# ------------------------------------------------------------------------------------------------ lines


def invoked(comm: str = "stress", adj: int = 0, flavour: str = "6.x-v1") -> str:
    if flavour == "4.x":
        return (
            f"{comm} invoked oom-killer: gfp_mask=0x14000c0(GFP_KERNEL), nodemask=(null), order=0, oom_score_adj={adj}"
        )
    return f"{comm} invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj={adj}"


def call_trace(pid: int = 7978, comm: str = "stress") -> list[str]:
    return [
        f"CPU: 0 PID: {pid} Comm: {comm} Not tainted 6.1.0-56-amd64 #1",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x44/0x5c",
        " dump_header+0x4c/0x22b",
        " oom_kill_process.cold+0xb/0x10",
        " out_of_memory+0x1fd/0x4c0",
        " mem_cgroup_out_of_memory+0x134/0x150",
        " </TASK>",
    ]


def table(tasks: Sequence[Task], flavour: str = "6.x-v1") -> list[str]:
    lines = [] if flavour == "4.x" else ["Tasks state (memory values in pages):"]
    if flavour == "6.x-v1":
        lines.append(
            "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents "
            "oom_score_adj name"
        )
        for t in tasks:
            lines.append(
                f"[{t.pid:>7}] {t.uid:>5} {t.pid:>5} {t.vm:>8} {t.rss:>8} {t.anon:>8} {t.file:>8} {t.shmem:>9} "
                f"{t.pgtables_bytes:>14} {t.swap:>8} {t.adj:>13} {t.comm}"
            )
    elif flavour in ("6.1-v2", "5.x"):
        lines.append("[  pid  ]   uid  tgid total_vm      rss pgtables_bytes swapents oom_score_adj name")
        for t in tasks:
            lines.append(
                f"[{t.pid:>7}] {t.uid:>5} {t.pid:>5} {t.vm:>8} {t.rss:>8} {t.pgtables_bytes:>14} {t.swap:>8} "
                f"{t.adj:>13} {t.comm}"
            )
    elif flavour == "4.x":
        lines.append("[ pid ]   uid  tgid total_vm      rss nr_ptes nr_pmds swapents oom_score_adj name")
        for t in tasks:
            ptes = t.pgtables_bytes // 4096
            lines.append(
                f"[{t.pid:>5}] {t.uid:>5} {t.pid:>5} {t.vm:>8} {t.rss:>8} {max(ptes - 1, 0):>7} "
                f"{min(ptes, 1):>7} {t.swap:>8} {t.adj:>13} {t.comm}"
            )
    else:
        raise ValueError(flavour)
    return lines


def killed(task: Task, prefix: str | None = "Memory cgroup out of memory", flavour: str = "6.x-v1") -> str:
    head = f"{prefix}: " if prefix else ""
    line = (
        f"{head}Killed process {task.pid} ({task.comm}) total-vm:{task.vm * 4}kB, anon-rss:{task.anon * 4}kB, "
        f"file-rss:{task.file * 4}kB, shmem-rss:{task.shmem * 4}kB"
    )
    if flavour != "4.x":
        line += f", UID:{task.uid} pgtables:{task.pgtables_bytes // 1024}kB oom_score_adj:{task.adj}"
    return line


def oom_kill_line(victim: Task, oom_cgroup: str | None, task_cgroup: str, constraint: str = "CONSTRAINT_MEMCG") -> str:
    domain = f"oom_memcg={oom_cgroup}" if oom_cgroup is not None else "global_oom"
    return (
        f"oom-kill:constraint={constraint},nodemask=(null),cpuset=/,mems_allowed=0,{domain},"
        f"task_memcg={task_cgroup},task={victim.comm},pid={victim.pid},uid={victim.uid}"
    )


# ------------------------------------------------------------------------------------------------ blocks


def memcg_block(
    tasks: Sequence[Task],
    *,
    oom_cgroup: str = CGROUPFS_PATH,
    task_cgroup: str | None = None,
    victim: Task | None = None,
    flavour: str = "6.x-v1",
    limit_kb: int = 51200,
    usage_kb: int | None = None,
    swap_limit_kb: int | None = None,  # the swap allowance (None: unlimited)
    invoker: Task | None = None,
    reaper: bool = False,
) -> list[str]:
    """The messages of one memcg OOM kill."""
    task_cgroup = task_cgroup or oom_cgroup
    totalpages = memcg_totalpages(limit_kb, swap_limit_kb)
    victim = victim or kernel_choice(tasks, totalpages)
    invoker = invoker or victim
    usage_kb = limit_kb if usage_kb is None else usage_kb
    lines = [invoked(invoker.comm, invoker.adj, flavour), *call_trace(invoker.pid, invoker.comm)]
    if flavour == "4.x":
        lines.append(f"Task in {task_cgroup} killed as a result of limit of {oom_cgroup}")
    lines.append(f"memory: usage {usage_kb}kB, limit {limit_kb}kB, failcnt 75")
    if flavour == "6.1-v2":
        lines.append(f"swap: usage 0kB, limit {UNLIMITED_KB if swap_limit_kb is None else swap_limit_kb}kB, failcnt 0")
    else:
        memsw = UNLIMITED_KB if swap_limit_kb is None else limit_kb + swap_limit_kb
        lines.append(f"memory+swap: usage {usage_kb}kB, limit {memsw}kB, failcnt 0")
        lines.append(f"kmem: usage 428kB, limit {UNLIMITED_KB}kB, failcnt 0")
    if flavour == "4.x":
        lines.append(f"Memory cgroup stats for {oom_cgroup}: cache:0KB rss:{usage_kb}KB rss_huge:0KB shmem:0KB")
    else:
        lines += [f"Memory cgroup stats for {oom_cgroup}:", "anon 66740224", "file 0"]
    lines += table(tasks, flavour)
    if flavour == "4.x":
        score = points(victim, totalpages) * 1000 // totalpages  # type: ignore[operator]
        lines.append(
            f"Memory cgroup out of memory: Kill process {victim.pid} ({victim.comm}) score {score} or sacrifice child"
        )
        lines.append(killed(victim, None, flavour))
    else:
        lines.append(oom_kill_line(victim, oom_cgroup, task_cgroup))
        lines.append(killed(victim, "Memory cgroup out of memory", flavour))
    if reaper:
        lines.append(
            f"oom_reaper: reaped process {victim.pid} ({victim.comm}), now anon-rss:0kB, file-rss:0kB, shmem-rss:0kB"
        )
    return lines


def global_block(
    tasks: Sequence[Task],
    *,
    victim: Task | None = None,
    ram_pages: int = 524158,
    swap_kb: int = 0,
    task_cgroup: str = "/user.slice/user-0.slice/session-1.scope",
    flavour: str = "6.x-v1",
    constraint: str = "CONSTRAINT_NONE",
) -> list[str]:
    """The messages of one node-wide OOM kill (show_mem's RAM and swap, the table, the kill)."""
    totalpages = ram_pages + swap_kb // 4
    victim = victim or kernel_choice(tasks, totalpages)
    lines = [invoked(victim.comm, victim.adj, flavour), *call_trace(victim.pid, victim.comm)]
    lines += [
        "Mem-Info:",
        "active_anon:480000 inactive_anon:1000 isolated_anon:0",
        "0 pages in swap cache",
        f"Free swap  = {swap_kb}kB",
        f"Total swap = {swap_kb}kB",
        f"{ram_pages} pages RAM",
        "0 pages HighMem/MovableOnly",
        "12345 pages reserved",
    ]
    lines += table(tasks, flavour)
    if flavour == "4.x":
        score = points(victim, totalpages) * 1000 // totalpages  # type: ignore[operator]
        lines.append(f"Out of memory: Kill process {victim.pid} ({victim.comm}) score {score} or sacrifice child")
        lines.append(killed(victim, None, flavour))
    else:
        lines.append(oom_kill_line(victim, None, task_cgroup, constraint))
        lines.append(killed(victim, "Out of memory", flavour))
    return lines


def group_block(
    tasks: Sequence[Task],
    *,
    group_path: str = SYSTEMD_PATH,
    oom_cgroup: str | None = None,
    victim: Task | None = None,
    limit_kb: int = 65536,
    reaper_between: bool = False,
) -> list[str]:
    """A cgroup v2 memory.oom.group kill: the victim, the group line, then every task (the victim again)."""
    oom_cgroup = oom_cgroup or group_path
    victim = victim or kernel_choice(tasks, memcg_totalpages(limit_kb))
    lines = memcg_block(
        tasks, oom_cgroup=oom_cgroup, task_cgroup=group_path, victim=victim, flavour="6.1-v2", limit_kb=limit_kb
    )
    lines.append(f"Tasks in {group_path} are going to be killed due to memory.oom.group set")
    for task in tasks:
        if task.adj != -1000:
            lines.append(killed(task, "Memory cgroup out of memory", "6.1-v2"))
            if reaper_between:
                lines.append(
                    f"oom_reaper: reaped process {task.pid} ({task.comm}), now anon-rss:0kB, file-rss:0kB, "
                    "shmem-rss:0kB"
                )
    return lines


# ------------------------------------------------------------------------------------------------ forms

WALL0 = 1556398569.0  # Sat Apr 27 2019, 20:56:09 UTC


def render(
    messages: Sequence[str],
    form: str = "dmesg",
    *,
    start_us: int = 441_532_542,
    step_us: int = 4,
    seq: int = 490,
    wall: float = WALL0,
    host: str = "node1",
) -> str:
    """The messages as log text in one form; each message gets its own timestamp ``step_us`` after the last."""
    out = []
    for i, text in enumerate(messages):
        us = start_us + i * step_us
        t = wall + i * step_us / 1e6
        local = time.localtime(t)
        stamp = f"[{us // 1_000_000:>5}.{us % 1_000_000:06d}]"
        if form == "kmsg":
            out.append(f"6,{seq + i},{us},-;{text}")
        elif form == "dmesg":
            out.append(f"{stamp} {text}")
        elif form == "dmesg-r":
            out.append(f"<6>{stamp} {text}")
        elif form == "dmesg-T":
            out.append(f"[{time.strftime('%a %b %d %H:%M:%S %Y', local)}] {text}")
        elif form == "journal":
            out.append(f"{time.strftime('%b %d %H:%M:%S', local)} {host} kernel: {text}")
        elif form == "journal-precise":
            out.append(f"{time.strftime('%b %d %H:%M:%S', local)}.{int(t % 1 * 1e6):06d} {host} kernel: {text}")
        elif form == "journal-iso":
            out.append(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z', local)} {host} kernel: {text}")
        elif form == "syslog":
            out.append(f"{time.strftime('%b %d %H:%M:%S', local)} {host} kernel: {stamp} {text}")
        elif form == "plain":
            out.append(text)
        else:
            raise ValueError(form)
    return "\n".join(out) + "\n"


STRESS = (Task(7973, anon=0, file=459, pgtables_bytes=45056), Task(7978, anon=12640, file=67, pgtables_bytes=151552))
