"""Fixture hosts: cgroupfs and procfs trees written by helpers, in the kernel's own file formats.

Tests build exactly the host they need (v1, v2 or hybrid; any cgroups and processes) under a temporary
directory and point the real collector at it, so the same readers run on fixtures and on the live kernel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

V1_UNLIMITED = 9223372036854771712
PAGE = 4096


@dataclass
class FakeProcess:
    pid: int
    comm: str = "app"
    rss_anon_kb: int = 1024
    rss_file_kb: int = 256
    rss_shmem_kb: int = 0
    swap_kb: int = 0
    pte_kb: int = 48
    adj: int = 0
    oom_score: int = 667
    start_ticks: int = 1000
    cmdline: bytes = b"app\0--serve\0"
    uid: int = 0
    kernel_thread: bool = False
    zombie: bool = False


@dataclass
class FakeHost:
    """A node under ``root``: ``root/sys/fs/cgroup`` and ``root/proc`` (and metadata under ``root``)."""

    root: Path
    layout: str = "v1"  # "v1", "v2" or "hybrid"
    mem_total_kb: int = 16 * 1024 * 1024
    mem_available_kb: int = 12 * 1024 * 1024
    swap_total_kb: int = 0
    processes: dict[int, FakeProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cgroup_root.mkdir(parents=True, exist_ok=True)
        self.proc.mkdir(parents=True, exist_ok=True)
        (self.proc / "sys/kernel").mkdir(parents=True, exist_ok=True)
        (self.proc / "sys/kernel/hostname").write_text("fixture-node\n")
        (self.proc / "sys/kernel/osrelease").write_text("6.1.0-fixture\n")
        (self.proc / "stat").write_text("cpu  1 2 3 4\nbtime 1700000000\n")
        self.write_meminfo()
        if self.layout in ("v1", "hybrid"):
            self.memory_root.mkdir(parents=True, exist_ok=True)
        if self.layout == "hybrid":
            (self.cgroup_root / "unified").mkdir(exist_ok=True)
            (self.cgroup_root / "unified/cgroup.controllers").write_text("\n")
        if self.layout == "v2":
            (self.cgroup_root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids rdma misc\n")
        self.add_cgroup("/", usage=2 << 30)

    # ---------------------------------------------------------------------------------------------- paths

    @property
    def cgroup_root(self) -> Path:
        return self.root / "sys/fs/cgroup"

    @property
    def memory_root(self) -> Path:
        return self.cgroup_root / "memory" if self.layout in ("v1", "hybrid") else self.cgroup_root

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    def cgroup_dir(self, path: str) -> Path:
        return self.memory_root / path.lstrip("/") if path != "/" else self.memory_root

    # -------------------------------------------------------------------------------------------- writers

    def write_meminfo(self) -> None:
        (self.proc / "meminfo").write_text(
            f"MemTotal:       {self.mem_total_kb} kB\nMemFree:        {self.mem_available_kb // 2} kB\n"
            f"MemAvailable:   {self.mem_available_kb} kB\nSwapTotal:      {self.swap_total_kb} kB\n"
            f"SwapFree:       {self.swap_total_kb} kB\n"
        )

    def add_cgroup(
        self,
        path: str,
        *,
        usage: int = 64 << 20,
        limit: int | None = None,
        high: int | None = None,
        peak: int | None = None,
        failcnt: int = 0,
        anon: int | None = None,
        file: int = 8 << 20,
        inactive_file: int = 4 << 20,
        shmem: int = 0,
        oom_kills: int = 0,
        oom_kills_local: int | None = None,
        oom_group: bool = False,
        pids: tuple[int, ...] = (),
        pressure: str | None = None,
        swap_max: int | None = None,
    ) -> Path:
        """A memory cgroup with every file the kernel would have for this layout."""
        directory = self.cgroup_dir(path)
        directory.mkdir(parents=True, exist_ok=True)
        anon = usage - file if anon is None else anon
        peak = usage if peak is None else peak

        def write(name, text):
            return (directory / name).write_text(text)

        write("cgroup.procs", "".join(f"{pid}\n" for pid in pids))
        if self.layout in ("v1", "hybrid"):
            write("memory.usage_in_bytes", f"{usage}\n")
            write("memory.limit_in_bytes", f"{V1_UNLIMITED if limit is None else limit}\n")
            write("memory.memsw.limit_in_bytes", f"{V1_UNLIMITED}\n")
            write("memory.max_usage_in_bytes", f"{peak}\n")
            write("memory.failcnt", f"{failcnt}\n")
            write("memory.oom_control", f"oom_kill_disable 0\nunder_oom 0\noom_kill {oom_kills}\n")
            stats = {
                "cache": file,
                "rss": anon,
                "rss_huge": 0,
                "shmem": shmem,
                "mapped_file": 0,
                "swap": 0,
                "inactive_anon": anon,
                "active_anon": 0,
                "inactive_file": inactive_file,
                "active_file": file - inactive_file,
                "unevictable": 0,
            }
            body = "".join(f"{k} {v}\n" for k, v in stats.items())
            body += f"hierarchical_memory_limit {V1_UNLIMITED if limit is None else limit}\n"
            body += "".join(f"total_{k} {v}\n" for k, v in stats.items())
            write("memory.stat", body)
        else:
            stats = {
                "anon": anon,
                "file": file,
                "kernel": 0,
                "shmem": shmem,
                "inactive_anon": anon,
                "active_anon": 0,
                "inactive_file": inactive_file,
                "active_file": file - inactive_file,
            }
            write("memory.stat", "".join(f"{k} {v}\n" for k, v in stats.items()))
            write(
                "memory.pressure",
                pressure
                or "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            )
            if path != "/":
                write("memory.current", f"{usage}\n")
                write("memory.max", "max\n" if limit is None else f"{limit}\n")
                write("memory.high", "max\n" if high is None else f"{high}\n")
                write("memory.peak", f"{peak}\n")
                if swap_max != -1:
                    write("memory.swap.current", "0\n")
                if swap_max != -1:  # -1: a kernel without swap accounting (no memory.swap.* files)
                    write("memory.swap.max", "max\n" if swap_max is None else f"{swap_max}\n")
                write("memory.oom.group", f"{int(oom_group)}\n")
                write(
                    "memory.events",
                    f"low 0\nhigh 0\nmax {failcnt}\noom {oom_kills}\noom_kill {oom_kills}\noom_group_kill 0\n",
                )
                local = oom_kills if oom_kills_local is None else oom_kills_local
                write("memory.events.local", f"low 0\nhigh 0\nmax 0\noom {local}\noom_kill {local}\noom_group_kill 0\n")
        return directory

    def set_file(self, cgroup_path: str, name: str, text: str) -> None:
        (self.cgroup_dir(cgroup_path) / name).write_text(text)

    def remove_cgroup(self, path: str) -> None:
        directory = self.cgroup_dir(path)
        for dirpath, _dirnames, filenames in os.walk(directory, topdown=False):
            for name in filenames:
                os.unlink(os.path.join(dirpath, name))
            os.rmdir(dirpath)

    def add_process(self, process: FakeProcess, cgroup: str | None = "/") -> FakeProcess:
        """A /proc/<pid> directory with stat, statm, status, cmdline, oom_score(_adj); listed in ``cgroup``."""
        self.processes[process.pid] = process
        self.write_process(process)
        if cgroup is not None:
            procs = self.cgroup_dir(cgroup) / "cgroup.procs"
            procs.write_text(procs.read_text() + f"{process.pid}\n")
        return process

    def write_process(self, p: FakeProcess) -> None:
        directory = self.proc / str(p.pid)
        directory.mkdir(parents=True, exist_ok=True)
        flags = 0x00208040 if p.kernel_thread else 0x00400100
        state = "Z" if p.zombie else ("I" if p.kernel_thread else "S")
        fields = [state, "1", str(p.pid), str(p.pid), "0", "-1", str(flags)] + ["0"] * 12 + [str(p.start_ticks)]
        (directory / "stat").write_bytes(
            f"{p.pid} (".encode()
            + p.comm.encode("utf-8", "surrogateescape")
            + b") "
            + " ".join(fields).encode()
            + b" 0 0\n"
        )
        rss_pages = (p.rss_anon_kb + p.rss_file_kb + p.rss_shmem_kb) // 4
        if p.kernel_thread or p.zombie:
            (directory / "statm").write_text("0 0 0 0 0 0 0\n")
        else:
            (directory / "statm").write_text(
                f"{rss_pages * 3} {rss_pages} {(p.rss_file_kb + p.rss_shmem_kb) // 4} 1 0 {rss_pages} 0\n"
            )
        name = p.comm.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        status = (
            b"Name:\t"
            + name
            + b"\nUmask:\t0022\nState:\tS (sleeping)\n"
            + (f"Tgid:\t{p.pid}\nPid:\t{p.pid}\nPPid:\t1\nUid:\t{p.uid}\t{p.uid}\t{p.uid}\t{p.uid}\n").encode()
        )
        if not (p.kernel_thread or p.zombie):
            total = p.rss_anon_kb + p.rss_file_kb + p.rss_shmem_kb
            status += (
                f"VmPeak:\t{total * 3} kB\nVmSize:\t{total * 3} kB\nVmRSS:\t{total} kB\nRssAnon:\t{p.rss_anon_kb} kB\n"
                f"RssFile:\t{p.rss_file_kb} kB\nRssShmem:\t{p.rss_shmem_kb} kB\nVmPTE:\t{p.pte_kb} kB\n"
                f"VmSwap:\t{p.swap_kb} kB\n"
            ).encode()
        status += b"Threads:\t1\n"
        (directory / "status").write_bytes(status)
        (directory / "cmdline").write_bytes(b"" if p.kernel_thread else p.cmdline)
        (directory / "oom_score_adj").write_text(f"{p.adj}\n")
        (directory / "oom_score").write_text(f"{0 if p.kernel_thread else p.oom_score}\n")

    def remove_process(self, pid: int) -> None:
        directory = self.proc / str(pid)
        for name in os.listdir(directory):
            os.unlink(directory / name)
        os.rmdir(directory)
        self.processes.pop(pid, None)

    def config(self, **overrides: object):  # type: ignore[no-untyped-def]
        from oomtop.collect.collector import CollectorConfig

        values = dict(cgroup_root=str(self.cgroup_root), procfs_root=str(self.proc), host_root=str(self.root))
        values.update(overrides)
        return CollectorConfig(**values)  # type: ignore[arg-type]
