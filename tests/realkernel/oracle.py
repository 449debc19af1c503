"""The kernel's own view of a process, read straight from procfs: the harness's independent oracle.

These readings never go through oomtop, so a test can tell a collector or model bug from a badly designed
scenario: when the kernel's kill disagrees with oomtop but agrees with this oracle, oomtop is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cgroups import read_file


@dataclass(frozen=True)
class ProcMemory:
    pid: int
    rss_anon_kb: int
    rss_file_kb: int
    rss_shmem_kb: int
    swap_kb: int
    pte_kb: int
    oom_score: int
    oom_score_adj: int

    def points(self, totalpages: int, page_size: int = 4096) -> int:
        """``oom_badness()`` from the kernel's own figures (same formula as mm/oom_kill.c)."""
        kb_per_page = page_size // 1024
        rss = (self.rss_anon_kb + self.rss_file_kb + self.rss_shmem_kb) // kb_per_page
        swap = self.swap_kb // kb_per_page
        pgtables = self.pte_kb // kb_per_page
        return rss + swap + pgtables + self.oom_score_adj * (totalpages // 1000)


def read_proc_memory(pid: int) -> ProcMemory:
    fields: dict[str, int] = {}
    for line in read_file(f"/proc/{pid}/status").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("RssAnon", "RssFile", "RssShmem", "VmSwap", "VmPTE") and parts:
            fields[key] = int(parts[0])
    return ProcMemory(
        pid=pid,
        rss_anon_kb=fields.get("RssAnon", 0),
        rss_file_kb=fields.get("RssFile", 0),
        rss_shmem_kb=fields.get("RssShmem", 0),
        swap_kb=fields.get("VmSwap", 0),
        pte_kb=fields.get("VmPTE", 0),
        oom_score=int(read_file(f"/proc/{pid}/oom_score")),
        oom_score_adj=int(read_file(f"/proc/{pid}/oom_score_adj")),
    )


def kernel_table_points(row: dict[str, str], totalpages: int, page_size: int = 4096) -> int:
    """Points of one row of the kernel's OOM task table (values in pages, page tables in bytes)."""
    rss = int(row.get("rss", 0))
    swap = int(row.get("swapents", 0))
    pgtables = int(row.get("pgtables_bytes", 0)) // page_size
    return rss + swap + pgtables + int(row.get("oom_score_adj", 0)) * (totalpages // 1000)
