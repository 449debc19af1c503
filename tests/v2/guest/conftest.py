"""Guest side of the cgroup v2 tier: runs inside the VM that tests/test_v2_kernel.py boots.

Writes a JSON report (``$OOMTOP_V2_REPORT``) that the host turns into one pytest result per guest test; it is
rewritten after every test, so a guest that dies half-way still reports what it finished.  Outside the VM
(``OOMTOP_V2_GUEST`` unset) every test here skips: they change the cgroup root and need a v2 kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from v2lib import CGROUP_ROOT, HOG

IN_GUEST = os.environ.get("OOMTOP_V2_GUEST") == "1"
REPORT = os.environ.get("OOMTOP_V2_REPORT")
SEED = int(os.environ.get("OOMTOP_V2_SEED") or 1)
REQUIRE = os.environ.get("OOMTOP_REQUIRE_REAL_KERNEL", "") not in ("", "0")

_results: dict[str, dict] = {}
_session: dict = {"collected": [], "started_uptime_s": None, "seed": SEED}


def _uptime() -> float | None:
    try:
        with open("/proc/uptime", encoding="ascii") as handle:
            return float(handle.read().split()[0])
    except OSError:
        return None


def _write_report(final: bool = False, exitstatus: int | None = None) -> None:
    if not REPORT:
        return
    doc = dict(
        _session,
        tests=list(_results.values()),
        final=final,
        exitstatus=exitstatus,
        finished_uptime_s=_uptime(),
        kernel=os.uname().release,
    )
    tmp = REPORT + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, indent=1, default=str)
    os.replace(tmp, REPORT)


def pytest_sessionstart(session: pytest.Session) -> None:
    _session["started_uptime_s"] = _uptime()


def pytest_collection_finish(session: pytest.Session) -> None:
    _session["collected"] = [item.nodeid for item in session.items]
    _write_report()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _results.setdefault(
        report.nodeid,
        {
            "nodeid": report.nodeid,
            "outcome": "passed",
            "message": "",
            "duration_s": 0.0,
            "properties": {},
            "stdout": "",
        },
    )
    entry["duration_s"] += report.duration
    wasxfail = getattr(report, "wasxfail", None)
    if report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["message"] += f"[guest {report.when}] {report.longreprtext}\n"
    elif report.skipped and entry["outcome"] == "passed":
        if wasxfail is not None:
            entry["outcome"], entry["message"] = "xfailed", wasxfail
        else:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
            entry["outcome"], entry["message"] = "skipped", reason
    elif report.passed and wasxfail is not None and report.when == "call":
        entry["outcome"], entry["message"] = "xpassed", wasxfail
    for key, value in report.user_properties:
        entry["properties"][key] = value
    if report.capstdout and report.when == "call":
        entry["stdout"] = report.capstdout[-4000:]
    if report.when == "teardown":
        _write_report()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write_report(final=True, exitstatus=int(exitstatus))


def pytest_report_header(config: pytest.Config) -> str:
    return f"oomtop v2 tier: seed {SEED} (replay with OOMTOP_V2_SEED={SEED}), kernel {os.uname().release}"


# ------------------------------------------------------------------------------------------------ fixtures


def _v2_unavailable_reason() -> str | None:
    if not IN_GUEST:
        return "runs inside the VM booted by tests/test_v2_kernel.py (OOMTOP_V2_GUEST is not set)"
    try:
        with open(os.path.join(CGROUP_ROOT, "cgroup.subtree_control"), encoding="ascii") as handle:
            if "memory" not in handle.read().split():
                return f"memory is not enabled in {CGROUP_ROOT}/cgroup.subtree_control"
    except OSError as error:
        return f"no cgroup2 root at {CGROUP_ROOT}: {error}"
    if not HOG or not os.access(HOG, os.X_OK):
        return f"no hog binary (OOMTOP_V2_HOG={HOG!r})"
    if os.geteuid() != 0:
        return "needs root"
    return None


@pytest.fixture(autouse=True)
def _in_guest() -> None:
    reason = _v2_unavailable_reason()
    if reason is None:
        return
    if IN_GUEST and REQUIRE:
        pytest.fail(f"cgroup v2 tier cannot run in the guest: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def new_collector():  # type: ignore[no-untyped-def]
    """A factory of Collectors on the guest's real roots, closed at the end of the test."""
    from oomtop.collect.collector import Collector, CollectorConfig

    made = []

    def make():  # type: ignore[no-untyped-def]
        collector = Collector(CollectorConfig())
        made.append(collector)
        return collector

    yield make
    for collector in made:
        collector.close()


def pytest_configure(config: pytest.Config) -> None:
    if IN_GUEST and HOG and os.path.exists(HOG) and not HOG.startswith("/run/"):
        # Run the hog from tmpfs, not the 9p share: its text pages then stay put (charged to the root cgroup,
        # never reclaimed by a test cgroup's OOM), so its rss is steady.
        os.makedirs("/run/oomtop-v2", exist_ok=True)
        target = "/run/oomtop-v2/hog"
        shutil.copy2(HOG, target)
        os.environ["OOMTOP_V2_HOG"] = target
        import v2lib

        v2lib.HOG = target
