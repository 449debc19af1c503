#!/usr/bin/env python3
"""CPU cost of one oomtop poll on cgroup v2, as a ratio to the bare reads it needs, inside the v2 VM.

    sudo python bench/bench_poll_v2.py [--pods 50] [--containers-per-pod 4] [--procs 1000] [--rounds 40]
                                       [--hz 10] [--busy 25] [--mem 3072]

The host is cgroup v1, so this boots the v2 tier's VM (tests/v2/vm.sh: Debian's stock kernel under qemu, about 20
times slower than the host) and runs itself inside with ``--inner``; both measurements are made there, on the same
load, in the same VM run, so only their ratio means something (absolute figures are the emulator's).

**Load.** bench_poll.py's, on cgroup2: ``/sys/fs/cgroup/oomtop-bench-<rand>/kubepods/burstable/pod<uuid>/<64 hex>``
with ``memory.max`` on every pod and container, and ``--procs`` sleepers (bench_poll.py's sleeper program, built
on the host before the boot) spread round-robin over the containers, each touching 256 KiB-1 MiB once it sits in
its cgroup (smaller than on the host: the VM has ``--mem`` MiB).  *idle*: every sleeper paused; *busy*: ``--busy``
% of the containers hold churning sleepers (SIGUSR1: every 50 ms a new RSS between 0 and 1 MiB, so their
containers' usage and memory.stat move on every tick).

**oomtop.** ``Collector(CollectorConfig()).sample()`` on the whole VM: ``--rounds`` warm samples paced at ``--hz``
(CPU time, ``time.process_time()``), per phase.

**Floors.** The least CPU Python spends on the same v2 files per poll, in tight loops over pre-built paths: per
cgroup ``cgroup.procs``, ``memory.current``, ``memory.stat``, ``memory.events``, ``memory.max`` and
``memory.pressure``, and per listed task (kernel threads skipped) ``/proc/<pid>/statm``.  (i) open+read+close every
file each round; (ii) descriptors kept open and re-read with ``os.pread(fd, 65536, 0)``, opening new pids and
closing gone ones as a poll must.  Floor (ii) is measured in each phase right after oomtop, on the same load.

Prints a table to stdout: mean and p50 per poll in ms for each, and the ratio oomtop warm / floor (ii) per phase
(issue 16's target: at most 1.5x under churn, as on v1).  Everything it creates is removed at the end (the VM's
writes vanish with it anyway).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import os
import random
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
ROOT = "/sys/fs/cgroup"
MIB = 1 << 20
CGROUP_FILES = ("cgroup.procs", "memory.current", "memory.stat", "memory.events", "memory.max", "memory.pressure")


def _bench_poll():  # type: ignore[no-untyped-def]
    """bench_poll.py by path (bench/ is no package): its sleeper program, pacing and file helpers."""
    spec = importlib.util.spec_from_file_location("oomtop_bench_poll", os.path.join(REPO, "bench", "bench_poll.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["oomtop_bench_poll"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_BENCH_POLL = _bench_poll()
# the same small helpers as the v1 bench, not copies of them
read_file = _BENCH_POLL.read_file
write_file = _BENCH_POLL.write_file
kernel_threads = _BENCH_POLL.kernel_threads


# ------------------------------------------------------------------------------------------------ the load


class Load:
    """The cgroup2 tree and the sleepers; ``close()`` removes all of it."""

    def __init__(self, sleeper: str) -> None:
        self.sleeper = sleeper
        self.base = f"{ROOT}/oomtop-bench-{secrets.token_hex(4)}"
        self.dirs: list[str] = []
        self.containers: list[str] = []
        self.children: list[int] = []
        self.busy: list[int] = []

    def mkdir(self, path: str) -> None:
        os.mkdir(path)
        self.dirs.append(path)
        parent = os.path.dirname(path)
        if "memory" not in read_file(f"{parent}/cgroup.subtree_control").decode().split():
            write_file(f"{parent}/cgroup.subtree_control", "+memory")

    def build(self, pods: int, per_pod: int, procs: int, busy_pct: float, log) -> None:  # type: ignore[no-untyped-def]
        self.mkdir(self.base)
        self.mkdir(f"{self.base}/kubepods")
        self.mkdir(f"{self.base}/kubepods/burstable")
        for _ in range(pods):
            pod = f"{self.base}/kubepods/burstable/pod{uuid.uuid4()}"
            self.mkdir(pod)
            write_file(f"{pod}/memory.max", str(per_pod * 64 * MIB + 32 * MIB))
            for _ in range(per_pod):
                ctr = f"{pod}/{secrets.token_hex(32)}"
                self.mkdir(ctr)
                write_file(f"{ctr}/memory.max", str(64 * MIB))
                self.containers.append(ctr)
        release_r, release_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, release_r, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        rng = random.Random(42)
        active = set(random.Random(7).sample(range(len(self.containers)), round(len(self.containers) * busy_pct / 100)))
        n_busy = round(procs * busy_pct / 100)
        me = str(os.getpid())
        for i in range(procs):
            slot = i % len(self.containers)
            busy = len(self.busy) < n_busy and slot in active
            kib = rng.randint(256, 1024)
            pid = os.posix_spawn(self.sleeper, [self.sleeper, str(kib), me, "busy" if busy else "idle"], {},
                                 file_actions=actions)  # fmt: skip
            self.children.append(pid)
            if busy:
                self.busy.append(pid)
            write_file(f"{self.containers[slot]}/cgroup.procs", str(pid))
        os.write(release_w, b"x" * len(self.children))
        os.close(release_r)
        os.close(release_w)
        time.sleep(2.0)
        log(f"{len(self.children)} sleepers in {len(self.containers)} containers ({len(self.busy)} can churn)")

    def churn(self, on: bool) -> None:
        for pid in self.busy:
            os.kill(pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    def close(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for path in reversed(self.dirs):
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


# ---------------------------------------------------------------------------------------------- the floors


def all_cgroups() -> list[str]:
    out = [ROOT]
    i = 0
    while i < len(out):
        with contextlib.suppress(OSError), os.scandir(out[i]) as entries:
            out.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        i += 1
    return out


class FloorOpenRead:
    """Floor (i): open+read+close of every file of a poll, each round."""

    def __init__(self, cgdirs: list[str], kthreads: frozenset[bytes]) -> None:
        self.kthreads = kthreads
        self.files = [[os.fsencode(f"{d}/{n}") for n in CGROUP_FILES if os.path.exists(f"{d}/{n}")] for d in cgdirs]

    def __call__(self) -> None:
        o, r, c, rd, kt = os.open, os.read, os.close, os.O_RDONLY, self.kthreads
        for files in self.files:
            data = b""
            for k, path in enumerate(files):
                try:
                    fd = o(path, rd)
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    got = r(fd, 65536)
                    if k == 0:
                        data = got
                c(fd)
            for p in data.split():
                if p in kt:
                    continue
                try:
                    fd = o(b"/proc/" + p + b"/statm", rd)
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    r(fd, 65536)
                c(fd)


class FloorPread:
    """Floor (ii): the same reads on descriptors kept open (``os.pread``), tasks' opened and closed as they come."""

    def __init__(self, cgdirs: list[str], kthreads: frozenset[bytes]) -> None:
        self.kthreads = kthreads
        self.cg: list[list[int]] = []
        for d in cgdirs:
            fds = []
            for n in CGROUP_FILES:
                with contextlib.suppress(OSError):
                    fds.append(os.open(f"{d}/{n}", os.O_RDONLY | os.O_CLOEXEC))
            if fds:
                self.cg.append(fds)
        self.task_fds: dict[bytes, int] = {}
        self.tasks = 0

    def __call__(self) -> None:
        pread, o, c, rd, kt = os.pread, os.open, os.close, os.O_RDONLY | os.O_CLOEXEC, self.kthreads
        kept, seen = self.task_fds, set()
        for fds in self.cg:
            data = b""
            for k, fd in enumerate(fds):
                try:
                    got = pread(fd, 65536, 0)
                except OSError:
                    continue
                if k == 0:
                    data = got
            for p in data.split():
                if p in kt:
                    continue
                fd = kept.get(p)
                if fd is None:
                    try:
                        fd = kept[p] = o(b"/proc/" + p + b"/statm", rd)
                    except OSError:
                        continue
                with contextlib.suppress(OSError):
                    pread(fd, 65536, 0)
                    seen.add(p)
        for p in kept.keys() - seen:
            c(kept.pop(p))
        self.tasks = len(seen)

    def close(self) -> None:
        for fds in self.cg:
            for fd in fds:
                os.close(fd)
        for fd in self.task_fds.values():
            os.close(fd)


# ------------------------------------------------------------------------------------------------ measuring


def inner(args: argparse.Namespace) -> int:
    from oomtop.collect.collector import Collector, CollectorConfig

    paced = _BENCH_POLL.paced

    def log(text: str) -> None:
        print(f"[guest {time.monotonic():7.1f}] {text}", file=sys.stderr, flush=True)

    # the collector keeps a descriptor per task file and per cgroup file, the floor (ii) as many again: past the
    # guest's default limit, opens fail (EMFILE) and a floor would read nothing
    resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 18, 1 << 18))  # root may; the guest's default hard is 4096
    load = Load(args.sleeper)
    rows: dict[str, list[float]] = {}
    task_reads: dict[str, list[int]] = {}
    try:
        load.build(args.pods, args.containers_per_pod, args.procs, args.busy, log)
        collector = Collector(CollectorConfig(slow_interval_s=args.slow_interval))
        collector.sample()  # cold
        for phase in ("idle", "busy"):
            load.churn(phase == "busy")
            time.sleep(1.0)
            cgdirs = all_cgroups()
            kthreads = kernel_threads()
            reads: list[int] = []
            task_reads[phase] = reads
            rows[f"oomtop warm ({phase})"] = paced(
                collector.sample, args.rounds, args.hz, lambda into=reads: into.append(collector.stats.task_reads)
            )
            floor = FloorPread(cgdirs, kthreads)
            floor()  # opens the tasks' descriptors, as a warm poll has them
            rows[f"floor (ii) kept fd, pread ({phase})"] = paced(floor, args.rounds, args.hz)
            floor.close()
            rows[f"floor (i) open+read+close ({phase})"] = paced(FloorOpenRead(cgdirs, kthreads), args.rounds, args.hz)
            log(f"{phase}: {len(cgdirs)} cgroups, {floor.tasks} tasks")
        if args.profile:  # where a busy poll's CPU goes (after the timed rounds, so they are not disturbed)
            import cProfile
            import pstats

            load.churn(True)
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.rounds):
                collector.sample()
                time.sleep(1 / args.hz)
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(18)
        load.churn(False)
        sample = collector.sample()
        collector.close()
    finally:
        load.close()
    print(f"kernel {os.uname().release} (cgroup v2) under qemu; {len(sample.cgroups)} cgroups, {len(sample.tasks)} "
          f"tasks; {args.rounds} rounds at {args.hz} Hz; slow tick {args.slow_interval} s; CPU ms a poll")  # fmt: skip
    for name, values in rows.items():
        print(f"  {name:<40} mean {statistics.mean(values) * 1000:8.2f}  p50 {statistics.median(values) * 1000:8.2f}")
    for phase, reads in task_reads.items():
        print(f"  processes re-read per oomtop poll ({phase}): mean {statistics.mean(reads):.0f}, max {max(reads)}")
    for phase in ("idle", "busy"):
        ratio = statistics.mean(rows[f"oomtop warm ({phase})"]) / statistics.mean(
            rows[f"floor (ii) kept fd, pread ({phase})"]
        )
        print(
            f"  ratio oomtop warm / floor (ii), {phase}: {ratio:.2f}x"
            + ("  (target <= 1.5x)" if phase == "busy" else "")
        )
    return 0


def outer(args: argparse.Namespace) -> int:
    """Build the sleeper on the host, boot the VM in a scratch directory and run ``--inner`` there."""
    if os.geteuid() != 0:
        raise SystemExit("needs root (the VM shares / and makes cgroups)")
    sleeper_c = _BENCH_POLL.SLEEPER_C
    work = tempfile.mkdtemp(prefix="oomtop-bench-v2-")
    try:
        with open(f"{work}/sleeper.c", "w", encoding="utf-8") as handle:
            handle.write(sleeper_c)
        subprocess.run(["gcc", "-O2", "-o", f"{work}/sleeper", f"{work}/sleeper.c"], check=True)
        argv = [
            os.path.join(REPO, "tests", "v2", "vm.sh"),
            "--mem",
            str(args.mem),
            "--",
            sys.executable,
            os.path.abspath(__file__),
            "--inner",
            "--sleeper",
            f"{work}/sleeper",
            "--pods",
            str(args.pods),
            "--containers-per-pod",
            str(args.containers_per_pod),
            "--procs",
            str(args.procs),
            "--rounds",
            str(args.rounds),
            "--hz",
            str(args.hz),
            "--busy",
            str(args.busy),
            "--slow-interval",
            str(args.slow_interval),
            *(["--profile"] if args.profile else []),
        ]
        env = dict(os.environ, PYTHONPATH=REPO, V2VM_TIMEOUT=str(args.timeout))
        return subprocess.run(argv, cwd=work, env=env, check=False).returncode
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--containers-per-pod", type=int, default=4)
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--hz", type=float, default=10.0)
    parser.add_argument("--busy", type=float, default=25.0)
    parser.add_argument("--mem", type=int, default=3072, help="guest MiB")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds the VM may run")
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of busy polls (stderr)")
    parser.add_argument(
        "--slow-interval",
        type=float,
        default=1.0,
        help="the collector's slow tick in s (default oomtop's 1 s; under emulation a poll takes ~20x longer, so "
        "1 s is every 2nd-4th poll instead of every 10th: 10 s restores a real node's proportion)",
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sleeper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    gc.collect()
    return inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    sys.exit(main())
