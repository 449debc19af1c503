"""Real-kernel test harness for oomtop: cgroup v1 hierarchies, memory hogs and kernel-log OOM kills."""

from .cgroups import (
    TEST_PREFIX,
    CgroupError,
    Pod,
    TestHierarchy,
    cleanup_all,
    created_parents,
    leftover_test_cgroups,
    read_file,
    read_kv,
)
from .env import MEMORY_ROOT, REQUIRE_ENV, kmsg_unavailable_reason, real_kernel_unavailable_reason, require_real_kernel
from .hog import HogError, HogProcess, build_hog, memory_cgroup_of, set_oom_score_adj, start_hog, start_trigger
from .kmsg import KmsgReader, OomKill, collect_kills, parse_kills

__all__ = [
    "MEMORY_ROOT",
    "REQUIRE_ENV",
    "TEST_PREFIX",
    "CgroupError",
    "HogError",
    "HogProcess",
    "KmsgReader",
    "OomKill",
    "Pod",
    "TestHierarchy",
    "build_hog",
    "cleanup_all",
    "collect_kills",
    "created_parents",
    "kmsg_unavailable_reason",
    "leftover_test_cgroups",
    "memory_cgroup_of",
    "parse_kills",
    "read_file",
    "read_kv",
    "real_kernel_unavailable_reason",
    "require_real_kernel",
    "set_oom_score_adj",
    "start_hog",
    "start_trigger",
]
