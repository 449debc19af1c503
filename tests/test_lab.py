"""`oomtop lab` on the real kernel: every kill of every scenario predicted right, and nothing left behind.

Each run is the real command, ``python -m oomtop lab SCENARIO --headless``, under both runtimes (plain processes,
and real OCI containers run by runc).  After every run: no cgroup named oomtop-lab in any hierarchy, no lab
directory, no hog process, no runc container (in the lab's runc root, or runc's default one).  Also: an
interrupted lab (SIGINT, SIGTERM) cleans up; a SIGKILLed lab's leftovers make the next lab refuse until
``oomtop lab --clean``; a scenario that crashes still cleans up.

Needs root, a cgroup memory controller and a readable /dev/kmsg (and runc for the runc runs); skips elsewhere with
the reason, fails instead when OOMTOP_REQUIRE_REAL_KERNEL=1.  Labs never run concurrently (one /oomtop-lab).
Other people's tests kill processes on this machine at the same time: the lab only looks at its own cgroups and
processes, and does not need the kernel's (rate-limited) report headers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from tests import tiers

pytestmark = [pytest.mark.memcg, pytest.mark.kmsg]

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KILL_LINE = re.compile(r"^kill (\d+): predicted (\S+) .*?, killed (\d+) .*; latency (\S+)(?: ms)?; (right|WRONG)")
SUMMARY = re.compile(r"^summary: (\d+) kills? in (\d+) OOMs?, (\d+) predicted right, (\d+) wrong, (\d+) missed")


def require(runtime: str = "plain") -> None:
    """The lab needs root, a memory controller and the kernel log; ``--runtime runc`` needs runc too."""
    tiers.require("memcg", "kmsg", *(["runc"] if runtime == "runc" else []))


def leftovers() -> list[str]:
    """Everything a lab could leave behind, from the machine's point of view."""
    from oomtop.lab import LAB_DIR
    from oomtop.lab.cleanup import find_leftovers
    from oomtop.lab.runtime_runc import list_containers, runc_path

    found = find_leftovers()
    runc = runc_path()
    if runc is not None:
        found += [f"runc container {cid} (lab root)" for cid in list_containers(runc, os.path.join(LAB_DIR, "runc"))]
        default = (
            subprocess.run([runc, "list", "--format", "json"], capture_output=True, text=True, timeout=30, check=False)
            if os.path.isdir("/run/runc")
            else None
        )  # (listing would create it)
        for container in (json.loads(default.stdout or "null") or []) if default else []:  # never the lab's root
            if str(container.get("bundle", "")).startswith(LAB_DIR):
                found.append(f"runc container {container.get('id')} (default root)")
    return found


def lab_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "oomtop", "lab", *args]


def run_lab(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(lab_command(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def clean_machine() -> Iterator[None]:
    """No lab leftovers before (another run's would make the lab refuse) and, checked by the test, after."""
    before = leftovers()
    if before:
        pytest.fail(f"lab leftovers before the test (run `oomtop lab --clean`): {before}", pytrace=False)
    yield
    after = leftovers()
    if after:
        subprocess.run(lab_command("--clean"), cwd=REPO, capture_output=True, timeout=60, check=False)
        pytest.fail(f"left behind: {after}", pytrace=False)


def check_run(done: subprocess.CompletedProcess[str], kills: int | None) -> list[re.Match[str]]:
    context = f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"exit status {done.returncode}\n{context}"
    lines = [KILL_LINE.match(line) for line in done.stdout.splitlines() if line.startswith("kill ")]
    assert lines and all(lines), f"unparsable kill lines\n{context}"
    assert all(m.group(5) == "right" for m in lines), context  # type: ignore[union-attr]
    assert all(m.group(2) == m.group(3) for m in lines), context  # type: ignore[union-attr]
    assert all(m.group(4) != "MISSED" for m in lines), context  # type: ignore[union-attr]
    summary = next((SUMMARY.match(line) for line in done.stdout.splitlines() if line.startswith("summary:")), None)
    assert summary, context
    _kills, ooms, right, wrong, missed = (int(g) for g in summary.groups())
    assert wrong == 0 and missed == 0 and right == ooms, context
    if kills is not None:
        # the kernel's exit race: a second OOM in a round while its first victim still exits, which the lab
        # checks (and must find right) and names on that kill's line
        follow_ups = sum("a follow-up OOM while the first victim was still exiting" in line
                         for line in done.stdout.splitlines() if line.startswith("kill "))  # fmt: skip
        assert ooms - follow_ups == kills, f"{ooms} OOMs ({follow_ups} follow-ups), expected {kills}\n{context}"
    assert "Traceback" not in done.stderr, context
    return lines  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- the runs


RUNS = [
    pytest.param(("seed",), 1, id="seed"),
    pytest.param(("seed", "--driver", "systemd"), 1, id="seed-systemd"),
    pytest.param(("qos",), 2, id="qos"),
    pytest.param(("random", "--count", "20", "--seed", "1"), 20, id="random-20"),
]


@pytest.mark.parametrize("runtime", ["plain", "runc"])
@pytest.mark.parametrize("args, kills", RUNS)
def test_scenario(runtime: str, args: tuple[str, ...], kills: int, clean_machine: None) -> None:
    require(runtime)
    done = run_lab(*args, "--headless", "--runtime", runtime)
    lines = check_run(done, kills)
    if args[0] == "qos":  # BestEffort first (adj 1000), then Burstable; the Guaranteed pod survives
        assert "lab/qos-besteffort/batch" in done.stdout.split("kill 1:")[1].split("\n")[0]
        assert "lab/qos-burstable/web" in done.stdout.split("kill 2:")[1].split("\n")[0]
        assert "why:" in done.stdout
    if args[0] == "seed":
        assert "killed" in done.stdout and "app-main (lab/seed/app)" in done.stdout.split("kill 1:")[1]
    assert len(lines) == kills


def test_multi(clean_machine: None) -> None:
    require()
    done = run_lab("multi", "--headless")
    check_run(done, 1)
    assert "worker-b (lab/multi/workers)" in done.stdout.split("kill 1:")[1]


def test_record(tmp_path, clean_machine: None) -> None:  # type: ignore[no-untyped-def]
    require()
    path = str(tmp_path / "seed.oomrec")
    check_run(run_lab("seed", "--headless", "--record", path), 1)
    export = subprocess.run(
        [sys.executable, "-m", "oomtop", "replay", path, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert export.returncode == 0, export.stderr
    assert '"type": "event"' in export.stdout and '"lab/seed"' in export.stdout


# -------------------------------------------------------------------------------------- stopping, leftovers


class LabProcess:
    """``oomtop lab ... --headless`` in the background, its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            lab_command(*args), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, prefix: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(line.startswith(prefix) for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"no line starting {prefix!r}; output so far:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.1))

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        self.proc.wait(timeout)
        self._reader.join(5)
        assert self.proc.stderr is not None
        return self.proc.returncode, "\n".join(self.lines), self.proc.stderr.read()


@pytest.mark.parametrize("runtime", ["plain", "runc"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_lab_cleans_up(runtime: str, signum: int, clean_machine: None) -> None:
    """Ctrl-C or SIGTERM in the middle of a run: every process, container and cgroup goes."""
    require(runtime)
    lab = LabProcess("random", "--count", "50", "--headless", "--runtime", runtime)
    try:
        lab.wait_for("kill 1:")
        lab.wait_for("round 2/")  # pods of round 2 are being built: processes, containers and cgroups exist
        assert leftovers(), "a running lab should show up as leftovers to others"
        lab.proc.send_signal(signum)
        status, out, err = lab.finish()
    finally:
        if lab.proc.poll() is None:
            lab.proc.kill()
            lab.proc.wait()
    assert status == 128 + signum, f"status {status}\n{out}\n{err}"
    assert f"stopped by {signal.Signals(signum).name}" in out
    assert "Traceback" not in err, err


def test_leftovers_refuse_then_clean(clean_machine: None) -> None:
    """A lab killed with SIGKILL cannot clean up: its hogs still go (their stdin closes), but cgroups, runc
    containers and the lab directory stay; the next lab refuses until `oomtop lab --clean` removed them."""
    runtime = "runc" if tiers.runc_reason() is None else "plain"
    require(runtime)
    lab = LabProcess("random", "--count", "50", "--headless", "--runtime", runtime)
    try:
        lab.wait_for("kill 1:")
        lab.wait_for("round 2/")
        time.sleep(0.3)
        lab.proc.kill()
        lab.finish()
    finally:
        if lab.proc.poll() is None:
            lab.proc.kill()
    time.sleep(0.5)
    found = leftovers()
    assert any(item.startswith("cgroup ") for item in found), found
    assert any(item.startswith("directory ") for item in found), found
    deadline = time.monotonic() + 10
    from oomtop.lab.cleanup import hog_processes

    while hog_processes() and time.monotonic() < deadline:  # they read end-of-file and exit
        time.sleep(0.1)
    assert not hog_processes(), "hogs outlived their SIGKILLed lab"

    refused = run_lab("seed", "--headless", "--runtime", runtime, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "oomtop lab --clean" in refused.stderr and refused.stderr.count("\n") == 1, refused.stderr

    cleaned = subprocess.run(lab_command("--clean"), cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert "removed cgroup" in cleaned.stdout
    assert leftovers() == []
    again = subprocess.run(lab_command("--clean"), cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0 and "nothing to clean" in again.stdout


def test_crashing_scenario_cleans_up(clean_machine: None, capsys: pytest.CaptureFixture[str]) -> None:
    """A scenario that raises half-way: everything it built is removed, and the run fails (status 1)."""
    require()
    from oomtop.lab.kubelet import MIB, Resources
    from oomtop.lab.runner import LabOptions, run

    seen: dict[str, object] = {}

    def boom(lab) -> None:  # type: ignore[no-untyped-def]
        pod = lab.node.add_pod("crash", [("app", Resources(32 * MIB, 64 * MIB))])
        seen["hog"] = lab.node.start(pod.containers["app"], "crash-hog", 16)
        seen["leftovers"] = leftovers()
        raise RuntimeError("the scenario broke")

    import io

    out = io.StringIO()
    status = run(LabOptions(scenario="crash", headless=True), boom, 256 * MIB, out=out)
    assert status == 1
    assert "the scenario failed: RuntimeError: the scenario broke" in out.getvalue()
    assert seen["leftovers"], "the crash happened before anything was built"
    assert not seen["hog"].alive()  # type: ignore[attr-defined]
    capsys.readouterr()


# ------------------------------------------------------------------------- what the lab needs from oomtop


def test_v1_collector_sees_a_process_join_a_cgroup_it_already_read() -> None:
    """cgroup v1 serves cgroup.procs from a pid list cached per open file while it is read at least once a second:
    a collector that keeps the file open would never see a process join (the lab's second hog, a trigger)."""
    require()
    from oomtop.collect.cgroupfs import discover_hierarchy
    from oomtop.collect.collector import Collector, CollectorConfig

    hierarchy = discover_hierarchy("/sys/fs/cgroup", "/proc")
    if hierarchy is None or hierarchy.version != 1:
        pytest.skip("the memory controller is not on cgroup v1 here")
    directory = f"{hierarchy.path}/oomtop-lab-procs-{os.getpid()}"
    os.mkdir(directory)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with Collector(CollectorConfig(slow_interval_s=0.2)) as collector:
            path = directory[len(hierarchy.path) :]
            for _ in range(3):
                collector.sample()
                time.sleep(0.2)
            with open(f"{directory}/cgroup.procs", "w", encoding="ascii") as handle:
                handle.write(str(sleeper.pid))
            time.sleep(0.2)
            # The write above does not refresh the cached list; only a fresh open does (so: do not open it here).
            pids = next(c.pids for c in collector.sample().cgroups if c.path == path)
        assert sleeper.pid in pids
    finally:
        sleeper.kill()
        sleeper.wait()
        deadline = time.monotonic() + 5
        while True:
            try:
                os.rmdir(directory)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


# ----------------------------------------------------------------------------------------------- the live view


def test_live_view_shows_the_kill(clean_machine: None) -> None:
    """Without --headless: the live UI over the lab, in a terminal (tmux), with the kill landing in its event
    list as predicted; q ends it, and the lab cleans up."""
    require()
    tiers.require("tmux")
    tmux = shutil.which("tmux")
    assert tmux is not None
    socket = f"oomtop-lab-{uuid.uuid4().hex[:8]}"

    def tmux_run(*args: str) -> str:
        return subprocess.run(
            [tmux, "-L", socket, *args], capture_output=True, text=True, timeout=10, check=False
        ).stdout

    def wait_for(text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = tmux_run("capture-pane", "-p", "-t", "ui")
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")

    command = f"cd {REPO} && {sys.executable} -m oomtop lab seed; echo LAB-EXIT=$?; sleep 60"
    tmux_run("new-session", "-d", "-s", "ui", "-x", "200", "-y", "50", command)
    try:
        screen = wait_for("summary: 1 kill in 1 OOM, 1 predicted right, 0 wrong")  # the lab's notice
        assert "lab/seed" in screen and "app-main" in screen, screen
        assert "OOM kills (1)" in screen and "predicted" in screen, screen  # the event list: predicted, as it was
        tmux_run("send-keys", "-t", "ui", "q")
        wait_for("LAB-EXIT=0", timeout=30)
    finally:
        tmux_run("kill-server")
        deadline = time.monotonic() + 15  # a lab still running gets SIGHUP and cleans up
        while leftovers() and time.monotonic() < deadline:
            time.sleep(0.2)
