"""Node-wide facts: RAM and swap (the global OOM domain), page size, kernel, boot time."""

from __future__ import annotations

import os

from oomtop.collect.cgroupfs import MemoryHierarchy
from oomtop.collect.files import KeptFile, read_text
from oomtop.model import NodeInfo

_MAX_FIGURE = 1 << 64  # the kernel's counters are 64-bit: a larger figure is not one it wrote


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes (its kB are KiB).  A line whose figure is not plain ASCII digits that fit 64 bits
    is left out (``str.isdigit`` also takes "²" and "٣", which ``int`` refuses or reads as another number)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isascii() and parts[0].isdigit() and len(parts[0]) <= 20:
            value = int(parts[0]) * (1024 if len(parts) > 1 else 1)
            if value < _MAX_FIGURE * 1024:
                values[key] = value
    return values


def parse_boot_time(text: str) -> float:
    """``btime <seconds>`` of /proc/stat; 0.0 when it is missing or not a plain number."""
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "btime" and parts[1].isascii() and parts[1].isdigit() and len(parts[1]) < 20:
            return float(parts[1])
    return 0.0


def node_hostname(procfs_root: str, host_root: str = "/") -> str:
    """The node's hostname.  procfs's kernel/hostname shows the reader's UTS namespace: oomtop in a container of
    its own (a DaemonSet without hostNetwork, ``kubectl debug``'s private UTS namespace) would name the node after
    its pod.  When PID 1 of that procfs (the host's init, with the host's pid namespace) lives in another UTS
    namespace than oomtop, the node's /etc/hostname names it: seen through the init's root, or the host's / at
    ``host_root`` (``--host-root``)."""
    name = (read_text(f"{procfs_root}/sys/kernel/hostname") or os.uname().nodename).strip()
    try:
        private = os.readlink(f"{procfs_root}/1/ns/uts") != os.readlink("/proc/self/ns/uts")
    except OSError:  # PID 1's namespace links need ptrace access: with a host root given, its file decides
        private = host_root not in ("", "/")
    if private:
        for path in (f"{procfs_root}/1/root/etc/hostname", os.path.join(host_root, "etc/hostname")):
            host = (read_text(path) or "").strip()
            if host and host != "localhost" and len(host) <= 253 and host.isprintable():
                return host
    return name


class NodeReader:
    """Reads the static facts once and /proc/meminfo on every tick."""

    def __init__(self, procfs_root: str, hierarchy: MemoryHierarchy | None, host_root: str = "/") -> None:
        self.hostname = node_hostname(procfs_root, host_root)
        self.kernel_release = (read_text(f"{procfs_root}/sys/kernel/osrelease") or os.uname().release).strip()
        stat = read_text(f"{procfs_root}/stat") or ""
        self.boot_time = parse_boot_time(stat)
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
