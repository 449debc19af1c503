"""Real-kernel test harness for oomtop: cgroup v1 hierarchies, memory hogs and kernel-log OOM kills.

The hog (hog.c, hog.py), the oracle (oracle.py) and the kernel-log parser (kmsg.py) are shared with the cgroup
v2 tier, whose guest imports them as ``tests.realkernel.<module>``: they use the standard library only.  The
names below are loaded on first use, so importing one of those submodules never pulls in the v1-only parts
(cgroups.py, env.py and through it tests/tiers.py and pytest).
"""

from __future__ import annotations

import importlib

# submodule -> the names this package re-exports from it (imported on first use by __getattr__)
_WHERE = {
    "cgroups": (
        "TEST_PREFIX",
        "CgroupError",
        "Pod",
        "TestHierarchy",
        "cleanup_all",
        "created_parents",
        "leftover_test_cgroups",
        "read_file",
        "read_kv",
    ),
    "env": (
        "MEMORY_ROOT",
        "REQUIRE_ENV",
        "kmsg_unavailable_reason",
        "real_kernel_unavailable_reason",
        "require_real_kernel",
    ),
    "hog": (
        "HogError",
        "HogProcess",
        "build_hog",
        "memory_cgroup_of",
        "set_oom_score_adj",
        "start_hog",
        "start_trigger",
    ),
    "kmsg": ("KmsgReader", "OomKill", "collect_kills", "parse_kills"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
