"""When the real-kernel tests can run: the names this harness has always exported, over :mod:`tests.tiers`
(where the checks and the one skip-or-fail rule live)."""

from __future__ import annotations

from tests.tiers import MEMORY_ROOT, REQUIRE_ENV, kmsg_reason, memcg_v1_reason, skip_or_fail

__all__ = [
    "MEMORY_ROOT",
    "REQUIRE_ENV",
    "kmsg_unavailable_reason",
    "real_kernel_unavailable_reason",
    "require_real_kernel",
]

real_kernel_unavailable_reason = memcg_v1_reason
kmsg_unavailable_reason = kmsg_reason


def require_real_kernel(extra_reason: str | None = None) -> None:
    """Skip (or, on CI, fail) unless this machine can run the real-kernel v1 tests (and ``extra_reason`` is None)."""
    reason = real_kernel_unavailable_reason() or extra_reason
    if reason is not None:
        skip_or_fail(f"real-kernel cgroup v1 test cannot run: {reason}")
