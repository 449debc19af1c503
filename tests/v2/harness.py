"""Host side of oomtop's cgroup v2 kernel tier (stdlib only; tests/test_v2_kernel.py drives it).

Most Kubernetes nodes run cgroup v2, while the machines oomtop is developed on may bind memory to v1.  This
harness boots Debian's stock kernel (package linux-image-amd64, 6.1) under qemu once per pytest session with
tests/v2/vm.sh, runs the guest-side tests of tests/v2/guest inside it with the guest's own pytest, and reads
back the JSON report the guest writes into the shared directory, so that each guest test becomes one ordinary
pytest result on the host.

Environment:
  OOMTOP_V2VM=0                  skip the tier (quick local runs)
  OOMTOP_REQUIRE_REAL_KERNEL=1   a tier that cannot run (no qemu, no root, ...) fails instead of skipping (CI)
  OOMTOP_V2_SEED, OOMTOP_V2_ROUNDS   replay a run / change the number of victim rounds
  OOMTOP_V2_EVENT_KILLS          kills the events latency test measures (default 10)
  OOMTOP_V2VM_CACHE              where the kernel and initrd are cached (default ~/.cache/oomtop-v2vm)
  OOMTOP_V2VM_TIMEOUT            seconds the whole VM run may take (default 900: the swap rounds add minutes)
  OOMTOP_V2VM_MEM, OOMTOP_V2VM_CPUS  guest size (default 2048 MiB, 2 CPUs)
  OOMTOP_V2VM_SWAP               MiB of the scratch disk attached as the guest's /dev/vda, for the swap rounds
                                 (guest/test_swap_v2.py turns it on, and off after; default 384; 0: none)
  OOMTOP_V2_SWAP_ROUNDS          how many swap rounds run (default 9)
  OOMTOP_V2VM_KEEP=1             keep the shared work directory (console log, report) even when all passed
  OOMTOP_V2_SUMMARY=<file>       also write the tier's figures there as JSON
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.realkernel.hog import build_hog  # the one hog.c of both tiers: tests/realkernel/hog.c

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VM_SH = HERE / "vm.sh"
GUEST_DIR = HERE / "guest"
REQUIRE_ENV = "OOMTOP_REQUIRE_REAL_KERNEL"
SWITCH_ENV = "OOMTOP_V2VM"
DEFAULT_ROUNDS = 20


def required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def switched_off() -> str | None:
    if os.environ.get(SWITCH_ENV, "") == "0":
        return (
            f"{SWITCH_ENV}=0: the cgroup v2 kernel tier is turned off for this run "
            f"(unset {SWITCH_ENV} to boot the VM and run it)"
        )
    return None


def unavailable_reason() -> str | None:
    """Why this machine cannot run the tier at all (before anything is installed), or None."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform}): the tier boots a Linux kernel under qemu on the host's own files"
    if os.uname().machine != "x86_64":
        return f"the guest runs the host's own x86_64 binaries; this machine is {os.uname().machine}"
    if os.geteuid() != 0:
        return f"needs root (vm.sh installs qemu and shares / with the guest); euid is {os.geteuid()}"
    if shutil.which("gcc") is None:
        return "gcc is not installed (needed to build the hog program before boot)"
    if shutil.which("bash") is None:
        return "bash is not installed"
    return None


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The host's environment minus pytest's own variables (the guest runs its own, isolated session)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def guest_pytest_argv(args: list[str]) -> list[str]:
    """The guest's pytest: its own ini and rootdir, so the host's tests/ conftest and pyproject stay out."""
    rel = os.path.relpath(GUEST_DIR, ROOT)
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        f"{rel}/pytest.ini",
        "--rootdir",
        rel,
        "--confcutdir",
        rel,
        "-p",
        "no:cacheprovider",
        "--color=no",
        *args,
    ]


def collect_guest_ids(seed: int, rounds: int) -> tuple[list[str], str | None]:
    """The guest tests' node ids (relative to tests/v2/guest), collected on the host: (ids, error text)."""
    argv = guest_pytest_argv(["--collect-only", "-q", os.path.relpath(GUEST_DIR, ROOT)])
    env = _clean_env({"OOMTOP_V2_SEED": str(seed), "OOMTOP_V2_ROUNDS": str(rounds)})
    env.pop("OOMTOP_V2_GUEST", None)
    env.pop("OOMTOP_V2_REPORT", None)
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [], f"collecting the guest tests failed: {error}"
    ids = [line.strip() for line in done.stdout.splitlines() if "::" in line and not line.startswith(" ")]
    if done.returncode != 0 or not ids:
        return ids, (
            f"collecting the guest tests ({' '.join(argv)}) exited {done.returncode}:\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return ids, None


def prepare(timeout: float = 1200) -> tuple[bool, str]:
    """Install qemu and friends, fetch the kernel, build the initrd: (ready, message).  Not ready with a message
    starting "cannot run:" means the machine cannot have them (a skip); anything else is a failure."""
    try:
        done = subprocess.run(
            [str(VM_SH), "--prepare"], capture_output=True, text=True, timeout=timeout, check=False, env=_clean_env({})
        )
    except subprocess.TimeoutExpired:
        return False, f"vm.sh --prepare did not finish within {timeout:.0f} s"
    except OSError as error:
        return False, f"vm.sh --prepare: {error}"
    text = (done.stderr or "").strip()
    if done.returncode == 0:
        return True, text.splitlines()[-1] if text else "ready"
    last = text.splitlines()[-1] if text else f"exit status {done.returncode}"
    if done.returncode == 2 and "cannot run:" in last:
        return False, "cannot run: " + last.split("cannot run:", 1)[1].strip()
    return False, f"vm.sh --prepare failed (exit {done.returncode}): {text[-3000:]}"


@dataclass
class GuestRun:
    """One VM boot and the guest session's report."""

    seed: int
    rounds: int
    workdir: Path
    wall_s: float = 0.0  # qemu start to exit
    boot_s: float | None = None  # qemu start until the guest's command started (seen on the shared directory)
    guest_uptime_at_start_s: float | None = None
    vm_status: int | None = None
    report: dict | None = None
    error: str | None = None
    results: dict[str, dict] = field(default_factory=dict)

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for entry in self.results.values():
            out[entry["outcome"]] = out.get(entry["outcome"], 0) + 1
        return out

    def rounds_summary(self) -> dict[str, int]:
        rounds = [e["properties"]["round"] for e in self.results.values() if "round" in e.get("properties", {})]
        ran = [r for r in rounds if r.get("ran")]
        return {
            "planned": len(rounds),
            "ran": len(ran),
            "right": sum(1 for r in ran if r.get("victim_right") and r.get("group_right")),
            "victim_right": sum(1 for r in ran if r.get("victim_right")),
            "oom_group_kills": sum(1 for r in ran if r.get("kernel_group_path")),
            "group_right": sum(1 for r in ran if r.get("kernel_group_path") and r.get("group_right")),
            "multi_task_group_kills": sum(1 for r in ran if len(r.get("kernel_killed") or ()) > 1),
            "adj_decided": sum(1 for r in ran if r.get("adj_decided")),
            "later_kills": sum(1 for r in ran if r.get("later_kills")),
            "protected_in_group": sum(1 for r in ran if r.get("protected_in_group")),
            "proc_oom_score_wrong": sum(1 for r in ran if r.get("proc_oom_score_wrong")),
            "container": sum(1 for r in ran if r.get("kind") == "container"),
            "pod": sum(1 for r in ran if r.get("kind") == "pod"),
            "kubepods": sum(1 for r in ran if r.get("kind") == "kubepods"),
        }

    def swap_summary(self) -> dict[str, int]:
        """The swap rounds' figures (guest/test_swap_v2.py): rounds, kills, right, and those swap decided."""
        entries = self.results.values()
        rounds = [e["properties"]["swap_round"] for e in entries if "swap_round" in e.get("properties", {})]
        ran = [r for r in rounds if r.get("ran")]
        return {
            "planned": len(rounds),
            "ran": len(ran),
            "kills": sum(len(r.get("kernel_victims") or ()) for r in ran),
            "right": sum(1 for r in ran if r.get("victim_right")),
            "decided_by_swap": sum(1 for r in ran if r.get("decided_by_swap")),
            "by_totalpages": sum(1 for r in ran if r.get("flip_totalpages")),
            "by_swapents": sum(1 for r in ran if r.get("flip_swapents")),
            "container": sum(1 for r in ran if r.get("kind") == "container"),
            "pod": sum(1 for r in ran if r.get("kind") == "pod"),
            "kubepods": sum(1 for r in ran if r.get("kind") == "kubepods"),
            "node": sum(1 for r in ran if r.get("kind") == "node"),
        }

    def events_summary(self) -> dict:
        """The events tests' figures (guest/test_events_v2.py): latency inside the VM, the inotify wake-up."""
        out: dict = {}
        for entry in self.results.values():
            properties = entry.get("properties", {})
            for key, name in (("event_latency", "latency"), ("wakeup", "wakeup")):
                if key in properties:
                    out[name] = properties[key]
        return out

    def figures(self) -> dict:
        report = self.report or {}
        started, finished = report.get("started_uptime_s"), report.get("finished_uptime_s")
        return {
            "seed": self.seed,
            "kernel": report.get("kernel"),
            "wall_s": round(self.wall_s, 1),
            "boot_s": None if self.boot_s is None else round(self.boot_s, 1),
            "guest_uptime_at_start_s": self.guest_uptime_at_start_s,
            "guest_pytest_s": None if started is None or finished is None else round(finished - started, 1),
            "tests": self.counts(),
            "rounds": self.rounds_summary(),
            "swap_rounds": self.swap_summary(),
            "events": self.events_summary(),
            "workdir": str(self.workdir),
        }


def run_guest(seed: int, rounds: int, selected: list[str] | None = None, log=print) -> GuestRun:  # type: ignore[no-untyped-def]
    """Boot the VM once and run the guest tests (all, or the ``selected`` node ids) inside it."""
    workdir = Path(tempfile.mkdtemp(prefix="oomtop-v2vm-")).resolve()
    run = GuestRun(seed, rounds, workdir)
    hog = build_hog(str(workdir))  # before the boot: the guest runs the host's gcc output from the share
    report = workdir / "report.json"
    started = workdir / "started"
    rel = os.path.relpath(GUEST_DIR, ROOT)
    targets = [f"{rel}/{nodeid}" for nodeid in selected] if selected else [rel]
    script = "\n".join(
        [
            "cat /proc/uptime > " + shlex.quote(str(started)),
            "cd " + shlex.quote(str(ROOT)),
            "exec " + shlex.join(guest_pytest_argv(["-q", *targets])),
            "",
        ]
    )
    (workdir / "guest.sh").write_text(script)
    timeout = float(os.environ.get("OOMTOP_V2VM_TIMEOUT") or 900)
    swap_mib = int(os.environ.get("OOMTOP_V2VM_SWAP") or 384)
    env = _clean_env(
        {
            "OOMTOP_V2_GUEST": "1",
            "OOMTOP_V2_HOG": str(hog),
            "OOMTOP_V2_REPORT": str(report),
            "OOMTOP_V2_SEED": str(seed),
            "OOMTOP_V2_ROUNDS": str(rounds),
            "OOMTOP_V2_SWAP_DEV": "/dev/vda" if swap_mib > 0 else "",
            "V2VM_TIMEOUT": str(int(timeout)),
        }
    )
    argv = [
        str(VM_SH),
        "--mem",
        os.environ.get("OOMTOP_V2VM_MEM") or "2048",
        "--cpus",
        os.environ.get("OOMTOP_V2VM_CPUS") or "2",
        "--swap",
        str(swap_mib),
        "--",
        "bash",
        str(workdir / "guest.sh"),
    ]
    log(
        f"v2 tier: booting Debian's kernel under qemu (seed {seed}, {len(selected) if selected else 'all'} guest "
        f"tests; console: {run.console})"
    )
    t0 = time.monotonic()
    with open(run.console, "wb") as console:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT
        )
        try:
            while True:
                try:
                    run.vm_status = proc.wait(timeout=0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if run.boot_s is None and started.exists():
                    run.boot_s = time.monotonic() - t0
                if time.monotonic() - t0 > timeout + 60:
                    proc.kill()
                    proc.wait()
                    run.error = f"the VM ran for more than {timeout + 60:.0f} s and was killed"
                    break
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    run.wall_s = time.monotonic() - t0
    with contextlib.suppress(OSError, ValueError, IndexError):
        run.guest_uptime_at_start_s = float(started.read_text().split()[0])
    try:
        run.report = json.loads(report.read_text())
    except FileNotFoundError:
        run.error = run.error or f"the guest wrote no report (vm.sh exit status {run.vm_status})"
    except ValueError as error:
        run.error = run.error or f"the guest's report is not JSON: {error}"
    if run.report is not None:
        run.results = {entry["nodeid"]: entry for entry in run.report.get("tests", [])}
        if not run.report.get("final") and run.error is None:
            run.error = f"the guest session did not finish (vm.sh exit status {run.vm_status})"
    summary = os.environ.get("OOMTOP_V2_SUMMARY")
    if summary:
        Path(summary).write_text(json.dumps(run.figures(), indent=1))
    return run
