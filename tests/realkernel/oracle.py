"""The kernel's own view of a process, read straight from procfs: the real-kernel tiers' independent oracle.

These readings never go through oomtop, so a test can tell a collector or model bug from a badly designed
scenario: when the kernel's kill disagrees with oomtop but agrees with this oracle, oomtop is wrong.  Shared by
the cgroup v1 tests on the host (tests/test_realkernel_v1.py) and the cgroup v2 tier's guest
(tests/v2/guest/), so it only uses the standard library and never touches a cgroup file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
STATUS_FIELDS = ("RssAnon", "RssFile", "RssShmem", "VmSwap", "VmPTE")


def oom_badness(rss_pages: int, swap_pages: int, pgtables_pages: int, oom_score_adj: int, totalpages: int) -> int:
    """``oom_badness()`` of mm/oom_kill.c for an eligible task: rss + swap entries + page-table pages, plus the adj
    in thousandths of ``totalpages`` (the OOM domain's size in pages).  Tasks at adj -1000 are never chosen."""
    return rss_pages + swap_pages + pgtables_pages + oom_score_adj * (totalpages // 1000)


@dataclass(frozen=True)
class ProcMemory:
    """One process's figures from /proc/<pid>/status (kB), oom_score and oom_score_adj."""

    pid: int
    rss_anon_kb: int
    rss_file_kb: int
    rss_shmem_kb: int
    swap_kb: int
    pte_kb: int
    oom_score: int
    oom_score_adj: int

    @property
    def rss_kb(self) -> int:
        return self.rss_anon_kb + self.rss_file_kb + self.rss_shmem_kb

    def points(self, totalpages: int, page_size: int = PAGE_SIZE) -> int:
        """``oom_badness()`` from the kernel's own figures, in pages (each counter converted on its own, as the
        kernel keeps them: get_mm_rss() sums the anon, file and shmem page counters)."""
        kb = page_size // 1024
        rss = self.rss_anon_kb // kb + self.rss_file_kb // kb + self.rss_shmem_kb // kb
        return oom_badness(rss, self.swap_kb // kb, self.pte_kb // kb, self.oom_score_adj, totalpages)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def read_proc_memory(pid: int) -> ProcMemory:
    fields: dict[str, int] = {}
    for line in _read(f"/proc/{pid}/status").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in STATUS_FIELDS and parts:
            fields[key] = int(parts[0])
    return ProcMemory(
        pid=pid,
        rss_anon_kb=fields.get("RssAnon", 0),
        rss_file_kb=fields.get("RssFile", 0),
        rss_shmem_kb=fields.get("RssShmem", 0),
        swap_kb=fields.get("VmSwap", 0),
        pte_kb=fields.get("VmPTE", 0),
        oom_score=int(_read(f"/proc/{pid}/oom_score")),
        oom_score_adj=int(_read(f"/proc/{pid}/oom_score_adj")),
    )


def kernel_table_points(row: dict[str, str], totalpages: int, page_size: int = PAGE_SIZE) -> int:
    """Points of one row of the kernel's OOM task table (see :func:`tests.realkernel.kmsg.parse_kills`): rss and
    swapents in pages, page tables in bytes."""
    return oom_badness(
        int(row.get("rss", 0)),
        int(row.get("swapents", 0)),
        int(row.get("pgtables_bytes", 0)) // page_size,
        int(row.get("oom_score_adj", 0)),
        totalpages,
    )
