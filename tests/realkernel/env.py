"""When the real-kernel tests can run, and what to do when they cannot.

They need root and a writable cgroup v1 memory hierarchy at /sys/fs/cgroup/memory.  Anywhere else they skip
with the reason, unless ``OOMTOP_REQUIRE_REAL_KERNEL=1`` is set (CI on the test VMs): then the skip becomes a
failure, so a broken machine cannot silently turn the whole suite green.
"""

from __future__ import annotations

import os
import shutil

import pytest

MEMORY_ROOT = "/sys/fs/cgroup/memory"
REQUIRE_ENV = "OOMTOP_REQUIRE_REAL_KERNEL"


def _is_v1_memory_mount(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 10 or fields[4] != path:
            continue
        sep = fields.index("-")
        fstype, super_opts = fields[sep + 1], fields[sep + 3] if len(fields) > sep + 3 else ""
        if fstype == "cgroup" and "memory" in super_opts.split(","):
            return True
    return False


def real_kernel_unavailable_reason() -> str | None:
    """None when the tests can run here, else why not."""
    if not os.path.exists("/proc/self/mountinfo"):
        return "not Linux (no /proc/self/mountinfo)"
    if os.geteuid() != 0:
        return f"needs root (euid is {os.geteuid()})"
    if not _is_v1_memory_mount(MEMORY_ROOT):
        return f"no cgroup v1 memory controller mounted at {MEMORY_ROOT}"
    if not os.access(MEMORY_ROOT, os.W_OK) or not os.path.exists(os.path.join(MEMORY_ROOT, "cgroup.procs")):
        return f"{MEMORY_ROOT} is not writable"
    if not os.path.exists(os.path.join(MEMORY_ROOT, "memory.oom_control")):
        return f"{MEMORY_ROOT} has no memory.oom_control"
    if shutil.which("gcc") is None:
        return "gcc is not installed (needed to build the hog program)"
    return None


def kmsg_unavailable_reason() -> str | None:
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        return f"cannot read /dev/kmsg: {error}"
    os.close(fd)
    return None


def require_real_kernel(extra_reason: str | None = None) -> None:
    """Skip (or, with OOMTOP_REQUIRE_REAL_KERNEL=1, fail) unless this machine can run the real-kernel tests."""
    reason = real_kernel_unavailable_reason() or extra_reason
    if reason is None:
        return
    message = f"real-kernel cgroup v1 test cannot run: {reason}"
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(message)
