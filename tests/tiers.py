"""What a test needs from the machine, said once: one reason function per tier and one skip-or-fail rule.

A test names its tier with a marker (``@pytest.mark.memcg_v1``, ``kmsg``, ``memcg``, ``runc``, ``tmux``,
``qemu``; registered in pyproject.toml, checked by ``--strict-markers``) and ``tests/conftest.py`` applies the
rule before it runs; code that only knows at run time what it needs (a parametrized runtime, a fixture) calls
:func:`require`.  The rule: a tier this machine lacks skips the test with the reason, unless
``OOMTOP_REQUIRE_REAL_KERNEL=1`` is set (CI, whose machines have every tier): then it fails, so a broken machine
cannot turn the suite green by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

REQUIRE_ENV = "OOMTOP_REQUIRE_REAL_KERNEL"
MEMORY_ROOT = "/sys/fs/cgroup/memory"


def required() -> bool:
    """True when a tier that cannot run is a failure (CI)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def skip_or_fail(message: str) -> None:
    """The one rule: skip with ``message``, or fail with it when :func:`required`."""
    if required():
        pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(message)


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


def _root() -> str | None:
    if not os.path.exists("/proc/self/mountinfo"):
        return "not Linux (no /proc/self/mountinfo)"
    if os.geteuid() != 0:
        return f"needs root (euid is {os.geteuid()})"
    return None


def memcg_v1_reason() -> str | None:
    """Root, a writable cgroup v1 memory hierarchy and gcc (the hog is C): the real-kernel v1 tests."""
    if (reason := _root()) is not None:
        return reason
    if not _is_v1_memory_mount(MEMORY_ROOT):
        return f"no cgroup v1 memory controller mounted at {MEMORY_ROOT}"
    if not os.access(MEMORY_ROOT, os.W_OK) or not os.path.exists(os.path.join(MEMORY_ROOT, "cgroup.procs")):
        return f"{MEMORY_ROOT} is not writable"
    if not os.path.exists(os.path.join(MEMORY_ROOT, "memory.oom_control")):
        return f"{MEMORY_ROOT} has no memory.oom_control"
    if shutil.which("gcc") is None:
        return "gcc is not installed (needed to build the hog program)"
    return None


def memcg_reason() -> str | None:
    """Root and a memory controller of either version (the lab creates its own cgroups under it)."""
    if (reason := _root()) is not None:
        return reason
    from oomtop.collect.cgroupfs import discover_hierarchy

    if discover_hierarchy("/sys/fs/cgroup", "/proc") is None:
        return "no cgroup memory controller under /sys/fs/cgroup"
    return None


def kmsg_reason() -> str | None:
    """A readable /dev/kmsg: victim details come from the kernel log."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        return f"cannot read /dev/kmsg: {error}"
    os.close(fd)
    return None


def runc_reason() -> str | None:
    from oomtop.lab.runtime_runc import runc_path

    return None if runc_path() is not None else "runc is not installed (.ci/run installs it: apt-get install runc)"


def oci_reason() -> str | None:
    """The image's tools: mmdebstrap and umoci build it (deploy/image/build.sh), runc runs it as kubelet would."""
    for name in ("mmdebstrap", "umoci"):
        if shutil.which(name) is None:
            return f"{name} is not installed (.ci/run installs it: apt-get install {name})"
    return runc_reason()


def tmux_reason() -> str | None:
    return None if shutil.which("tmux") else "tmux is not installed (.ci/run installs it: apt-get install tmux)"


def prometheus_reason() -> str | None:
    """Debian's prometheus and promtool: the alert rules' tests, and a real Prometheus scraping oomtop serve."""
    for name in ("prometheus", "promtool"):
        if shutil.which(name) is None:
            return f"{name} is not installed (.ci/run installs it: apt-get install prometheus)"
    return None


def chromium_reason() -> str | None:
    """Debian's chromium, driven headless by Playwright: oomtop web's page in a real browser."""
    return (
        None
        if shutil.which("chromium")
        else "chromium is not installed (.ci/run installs it: apt-get install chromium)"
    )


def qemu_reason() -> str | None:
    """The cgroup v2 kernel tier: boots Debian's kernel under qemu (tests/v2/harness.py says what it needs)."""
    from tests.v2 import harness

    if harness.switched_off():
        return None  # OOMTOP_V2VM=0: the tier's own fixture skips, saying so
    return harness.unavailable_reason()


def root_reason() -> str | None:
    """Root on Linux (mounts in a namespace of the test's own, cgroups)."""
    return _root()


TIERS: dict[str, tuple[str, Callable[[], str | None]]] = {
    # marker: (what it needs, said in the skip message; the check)
    "root": ("root", root_reason),
    "memcg_v1": ("root and a cgroup v1 memory controller", memcg_v1_reason),
    "memcg": ("root and a memory controller", memcg_reason),
    "kmsg": ("a readable /dev/kmsg", kmsg_reason),
    "runc": ("runc", runc_reason),
    "oci": ("the OCI image tools (mmdebstrap, umoci) and runc", oci_reason),
    "tmux": ("tmux", tmux_reason),
    "prometheus": ("prometheus and promtool", prometheus_reason),
    "chromium": ("Debian's chromium", chromium_reason),
    "qemu": ("the cgroup v2 VM (qemu)", qemu_reason),
}


def require(*tiers: str) -> None:
    """Skip (or fail, on CI) unless this machine has every one of ``tiers``."""
    for tier in tiers:
        what, check = TIERS[tier]
        reason = check()
        if reason is not None:
            skip_or_fail(f"needs {what}: {reason}")
