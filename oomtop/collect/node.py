"""Node-wide facts: RAM and swap (the global OOM domain), page size, kernel, boot time."""

from __future__ import annotations

import os

from oomtop.collect.cgroupfs import MemoryHierarchy
from oomtop.collect.files import KeptFile, read_text
from oomtop.model import NodeInfo


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes (its kB are KiB)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * (1024 if len(parts) > 1 else 1)
    return values


class NodeReader:
    """Reads the static facts once and /proc/meminfo on every tick."""

    def __init__(self, procfs_root: str, hierarchy: MemoryHierarchy | None) -> None:
        self.hostname = (read_text(f"{procfs_root}/sys/kernel/hostname") or os.uname().nodename).strip()
        self.kernel_release = (read_text(f"{procfs_root}/sys/kernel/osrelease") or os.uname().release).strip()
        stat = read_text(f"{procfs_root}/stat") or ""
        self.boot_time = next((float(line.split()[1]) for line in stat.splitlines() if line.startswith("btime ")), 0.0)
        self.hierarchy = hierarchy
        self._meminfo_path = f"{procfs_root}/meminfo"
        try:
            self._meminfo: KeptFile | None = KeptFile(self._meminfo_path, None)
        except OSError:
            self._meminfo = None
        self.last: NodeInfo | None = None

    def read(self) -> NodeInfo:
        text = ""
        if self._meminfo is not None:
            try:
                text = self._meminfo.read().decode("ascii", "replace")
            except OSError:
                text = ""
        meminfo = parse_meminfo(text)
        hierarchy = self.hierarchy
        info = NodeInfo(
            hostname=self.hostname,
            kernel_release=self.kernel_release,
            cgroup_version=hierarchy.version if hierarchy else 0,
            cgroup_layout=hierarchy.layout if hierarchy else "none",
            mem_total_bytes=meminfo.get("MemTotal", 0),
            mem_available_bytes=meminfo.get("MemAvailable", meminfo.get("MemFree", 0)),
            swap_total_bytes=meminfo.get("SwapTotal", 0),
            swap_free_bytes=meminfo.get("SwapFree", 0),
            page_size=os.sysconf("SC_PAGE_SIZE"),
            clock_ticks=os.sysconf("SC_CLK_TCK"),
            boot_time=self.boot_time,
        )
        if info == self.last:
            return self.last
        self.last = info
        return info
