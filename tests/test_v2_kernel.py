"""oomtop on a real cgroup v2 kernel: the host's entry point to the tier in tests/v2.

Boots Debian's stock kernel (6.1, cgroup v2 with the memory controller) under qemu ONCE per pytest session
(tests/v2/vm.sh; about 10 s), runs the guest-side tests of tests/v2/guest inside it, and turns each guest
result into one ordinary pytest result here: ``test_guest[<guest module>::<guest test>]`` passes, fails (with
the guest's message), skips or xfails as the guest test did.  ``test_v2_session`` checks that the guest session
ran to its end and prints the tier's figures (boot time, wall time, victim rounds run and right).

Skips with the reason where the tier cannot run (not Linux/x86_64, not root, no apt to install qemu or fetch
the kernel, no gcc); with OOMTOP_REQUIRE_REAL_KERNEL=1 (CI) that skip is a failure.  OOMTOP_V2VM=0 turns the
tier off explicitly for quick local runs.  See tests/v2/harness.py for the other knobs (seed, rounds, cache).
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
from pathlib import Path

import pytest

from tests import tiers

pytestmark = pytest.mark.qemu


def _load_harness():  # type: ignore[no-untyped-def]
    """tests/v2/harness.py by path: tests/ is not a package, and this must work however pytest is started."""
    name = "oomtop_tests_v2_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "v2" / "harness.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


harness = _load_harness()

SEED = int(os.environ.get("OOMTOP_V2_SEED") or random.SystemRandom().randrange(1, 1 << 31))
ROUNDS = int(os.environ.get("OOMTOP_V2_ROUNDS") or harness.DEFAULT_ROUNDS)
if harness.switched_off():
    GUEST_IDS, COLLECT_ERROR = [], None
else:
    GUEST_IDS, COLLECT_ERROR = harness.collect_guest_ids(SEED, ROUNDS)
PARAMS = GUEST_IDS or ["(guest tests)"]


def _param_id(nodeid: str) -> str:
    module, _, name = nodeid.partition("::")
    return module.removesuffix(".py").removeprefix("test_") + ("::" + name if name else "")


def _skip_or_fail(reason: str) -> None:
    tiers.skip_or_fail(f"cgroup v2 kernel tier cannot run: {reason}")


class _Summary:
    """Prints the tier's figures at the end of the terminal report."""

    def __init__(self, run) -> None:  # type: ignore[no-untyped-def]
        self.run = run

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        figures = self.run.figures()
        rounds = figures["rounds"]
        tests = ", ".join(f"{n} {outcome}" for outcome, n in sorted(figures["tests"].items()))
        terminalreporter.section("cgroup v2 kernel tier")
        write = terminalreporter.write_line
        write(
            f"kernel {figures['kernel']} under qemu; seed {figures['seed']} (replay: OOMTOP_V2_SEED={figures['seed']})"
        )
        write(f"guest tests: {tests or 'none reported'}")
        write(
            f"VM: boot {figures['boot_s']} s (qemu start to the guest's command; guest uptime then "
            f"{figures['guest_uptime_at_start_s']} s), guest pytest {figures['guest_pytest_s']} s, "
            f"tier wall time {figures['wall_s']} s"
        )
        write(
            f"victim rounds: {rounds['ran']} of {rounds['planned']} ran, {rounds['right']} right "
            f"(victim {rounds['victim_right']}, oom.group kills {rounds['group_right']} of "
            f"{rounds['oom_group_kills']}, {rounds['multi_task_group_kills']} killing several tasks, "
            f"{rounds['protected_in_group']} sparing an adj -1000 member; {rounds['later_kills']} with a later second "
            f"kill); "
            f"{rounds['container']} container / {rounds['pod']} pod / {rounds['kubepods']} kubepods level; "
            f"adj decided {rounds['adj_decided']}, /proc oom_score would have missed {rounds['proc_oom_score_wrong']}"
        )
        swap = figures.get("swap_rounds") or {}
        if swap.get("planned"):
            write(
                f"swap rounds: {swap['ran']} of {swap['planned']} ran ({swap['container']} container / {swap['pod']} "
                f"pod / {swap['kubepods']} kubepods / {swap['node']} node level), {swap['kills']} kills, "
                f"{swap['right']} predicted right; decided by swap {swap['decided_by_swap']} (without swap in "
                f"totalpages {swap['by_totalpages']} would differ, without swap entries in points "
                f"{swap['by_swapents']})"
            )
        events = figures.get("events") or {}
        latency, wakeup = events.get("latency"), events.get("wakeup")
        if latency:

            def spread(mode: str) -> str:
                got = latency.get(mode) or {}
                return (
                    f"p50 {got.get('p50_ms')} / p95 {got.get('p95_ms')} / max {got.get('max_ms')} ms "
                    f"({got.get('n')} of {latency.get('kills')})"
                )

            write(
                f"event latency in the VM (kernel's 'Killed process' stamp to the `events --json` line read): "
                f"kernel log {spread('kmsg')}, --kmsg none {spread('none')}; clock offset known to "
                f"{latency.get('clock_uncertainty_ms')} ms"
            )
        if wakeup:
            write(f"inotify wake-up on memory.events: {wakeup.get('latency_ms')} ms after the kill (OomWakeups.drain)")
        if self.run.workdir.exists():
            write(f"console log and report kept in {self.run.workdir}")


@pytest.fixture(scope="session")
def v2_run(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """Boot the VM once, run the selected guest tests in it, hand out their results."""
    off = harness.switched_off()
    if off:
        pytest.skip(off)
    reason = harness.unavailable_reason()
    if reason:
        _skip_or_fail(reason)
    ready, message = harness.prepare()
    if not ready:
        if message.startswith("cannot run:"):
            _skip_or_fail(message.removeprefix("cannot run:").strip())
        pytest.fail(message, pytrace=False)
    if COLLECT_ERROR:
        pytest.fail(COLLECT_ERROR, pytrace=False)
    wanted = [
        item.callspec.params["guest_id"]
        for item in request.session.items
        if item.module is sys.modules[__name__] and hasattr(item, "callspec") and "guest_id" in item.callspec.params
    ]
    selected = None if set(wanted) >= set(GUEST_IDS) else wanted
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def log(text: str) -> None:
        if reporter is not None:
            reporter.write_line(text)

    run = harness.run_guest(SEED, ROUNDS, selected, log)
    request.config.pluginmanager.register(_Summary(run), "oomtop-v2-tier-summary")
    yield run
    failed = run.error or any(e["outcome"] in ("failed", "error", "xpassed") for e in run.results.values())
    if not failed and os.environ.get("OOMTOP_V2VM_KEEP", "") in ("", "0"):
        shutil.rmtree(run.workdir, ignore_errors=True)


@pytest.mark.parametrize("guest_id", PARAMS, ids=[_param_id(p) for p in PARAMS])
def test_guest(guest_id: str, v2_run) -> None:  # type: ignore[no-untyped-def]
    if COLLECT_ERROR and guest_id not in GUEST_IDS:
        pytest.fail(COLLECT_ERROR, pytrace=False)
    entry = v2_run.results.get(guest_id)
    where = f"(seed {v2_run.seed}; console log {v2_run.console})"
    if entry is None:
        why = v2_run.error or "the guest session did not report this test"
        pytest.fail(f"{why} {where}\n--- end of the guest console ---\n{v2_run.console_tail()}", pytrace=False)
    outcome, message = entry["outcome"], entry.get("message", "")
    if outcome == "passed":
        return
    if outcome == "skipped":
        pytest.skip(f"in the guest: {message}")
    if outcome == "xfailed":
        pytest.xfail(f"in the guest: {message}")
    if outcome == "xpassed":
        pytest.fail(
            f"passed in the guest but is marked xfail(strict): {message} -- the bug is fixed, drop the marker {where}",
            pytrace=False,
        )
    stdout = entry.get("stdout", "")
    pytest.fail(
        f"{outcome} in the guest {where}:\n{message}" + (f"\n--- guest stdout ---\n{stdout}" if stdout else ""),
        pytrace=False,
    )


def test_v2_session(v2_run) -> None:  # type: ignore[no-untyped-def]
    """The guest session itself: it ran to its end and reported every test it collected."""
    report = v2_run.report or {}
    problems = []
    if v2_run.error:
        problems.append(v2_run.error)
    collected = report.get("collected", [])
    missing = [nodeid for nodeid in collected if nodeid not in v2_run.results]
    if missing:
        problems.append(f"collected in the guest but not reported: {missing}")
    unknown = [nodeid for nodeid in v2_run.results if nodeid not in GUEST_IDS]
    if unknown:
        problems.append(f"the guest ran tests the host did not collect (collection differs): {unknown}")
    if report.get("final") and report.get("exitstatus") not in (0, 1):
        problems.append(f"guest pytest exit status {report.get('exitstatus')} (internal error or usage error)")
    if problems:
        pytest.fail("\n".join(problems) + f"\n--- end of the guest console ---\n{v2_run.console_tail()}", pytrace=False)
