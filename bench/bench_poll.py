#!/usr/bin/env python3
"""CPU cost of one oomtop poll on a kubelet-shaped cgroup v1 load, next to its floor, top and atop.

    python bench/bench_poll.py [--pods 50] [--containers-per-pod 4] [--procs 1000] [--rounds 50]

Builds ``/sys/fs/cgroup/memory/oomtop-bench-<rand>/kubepods/burstable/pod<uuid>/<64 hex>`` (limits on
pods and containers) with cheap sleeper processes spread over the containers, each touching 1-4 MiB
*after* it sits in its cgroup (so the container is charged), then measures CPU time per sample of:

* oomtop's ``Collector.sample()``: the cold first sample and the warm steady-state ones;
* the floor: the bare reads a poll needs, as tight as Python gets (open+read+close, and kept-open fds
  with ``os.pread``), plus a "full sweep" floor that reads every per-task and per-cgroup file;
* procps ``top -b`` and ``atop`` per sample, by the difference between two sample counts.

Needs root and the v1 memory controller.  Everything it creates (cgroups, processes, the helper binary in
/tmp) is removed on exit, also on errors, Ctrl-C, SIGTERM and SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import random
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

MEMCG_ROOT = "/sys/fs/cgroup/memory"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COLLECTOR_FILE = os.path.join(REPO, "oomtop", "collect", "collector.py")
BENCH_NAME_RE = re.compile(r"^oomtop-bench-[0-9a-f]{8}$")
MIB = 1 << 20

# The sleeper: dies with us (PDEATHSIG), waits on a pipe until it has been moved into its cgroup, then
# touches its memory (so the charge lands in the container, not in our own cgroup) and sleeps for good.
# With argv[3] == "busy" it then waits for SIGUSR1 and from there on, every CHURN_MS, alternately touches a
# private mapping up to a random 256 KiB-1 MiB and drops it with MADV_DONTNEED down to a random 0-252 KiB,
# each size a new one (never the last), until SIGUSR2 (then it frees the mapping and waits for SIGUSR1 again).
# A 10 Hz poll sees every busy sleeper two steps on, in the same half of the cycle but at another size, so its
# RSS and its cgroup's usage and memory.stat really differ from one tick to the next (a plain touch/free-all
# cycle would show the same RSS at every other tick).  Both signals are blocked from the start (sigwait).
SLEEPER_C = r"""
#define _GNU_SOURCE
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define CHURN_MIN (256u << 10)
#define CHURN_MAX (1u << 20)
#define CHURN_MS 50

int main(int argc, char **argv) {
    if (argc < 3) return 2;
    int busy = argc > 3 && strcmp(argv[3], "busy") == 0;
    sigset_t ctl;
    sigemptyset(&ctl);
    sigaddset(&ctl, SIGUSR1);
    sigaddset(&ctl, SIGUSR2);
    sigprocmask(SIG_BLOCK, &ctl, NULL);                 /* start/stop are taken with sigwait, never fatal */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != (pid_t)atol(argv[2])) return 3;   /* parent already gone */
    char c;
    if (read(0, &c, 1) != 1) return 4;                  /* EOF: the bench gave up before placing us */
    close(0);
    size_t n = (size_t)atol(argv[1]) * 1024;
    volatile char *p = malloc(n);                       /* volatile: the stores must not be elided */
    if (!p) return 5;
    for (size_t i = 0; i < n; i += 4096) p[i] = (char)(i >> 12);
    if (!busy)
        for (;;) pause();
    char *q = mmap(NULL, CHURN_MAX, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q == MAP_FAILED) return 6;
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)n;
    struct timespec tick = {0, CHURN_MS * 1000000L};
    for (;;) {
        int sig = 0;
        while (sig != SIGUSR1)
            if (sigwait(&ctl, &sig) != 0) sig = 0;      /* quiet until told to churn */
        size_t top = 0, keep = 0;                       /* resident bytes of q after the last touch / free */
        int touched = 0;
        for (;;) {
            if (sigtimedwait(&ctl, NULL, &tick) == SIGUSR2) break;
            if (!touched) {
                size_t prev = top;
                do top = (CHURN_MIN + (size_t)rand_r(&seed) % (CHURN_MAX - CHURN_MIN + 1)) & ~(size_t)4095;
                while (top == prev);
                for (size_t i = keep; i < top; i += 4096) ((volatile char *)q)[i] = (char)(i >> 12);
            } else {
                size_t prev = keep;
                do keep = ((size_t)rand_r(&seed) % CHURN_MIN) & ~(size_t)4095;
                while (keep == prev);
                madvise(q + keep, CHURN_MAX - keep, MADV_DONTNEED);
            }
            touched = !touched;
        }
        madvise(q, CHURN_MAX, MADV_DONTNEED);
    }
}
"""


class Interrupted(BaseException):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def write_file(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


def read_file(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------- the load


class Load:
    """The cgroup tree and the sleepers; ``close()`` removes all of it and is safe to call at any point."""

    def __init__(self) -> None:
        self.base = os.path.join(MEMCG_ROOT, f"oomtop-bench-{secrets.token_hex(4)}")
        self.tmpdir: str | None = None
        self.children: list[int] = []
        self.containers: list[str] = []
        self.pods: list[str] = []
        self.release_w = -1
        self.release_r = -1
        self.placed: dict[int, str] = {}
        self.kib: dict[int, int] = {}
        self.busy: list[int] = []  # sleepers started in "busy" mode (they churn between churn(True) and churn(False))
        self.active_containers: list[str] = []
        self.churning = False

    # -- build

    def build(self, pods: int, per_pod: int, procs: int, busy_pct: float, log) -> None:
        if not os.path.isfile(os.path.join(MEMCG_ROOT, "memory.limit_in_bytes")):
            raise SystemExit(f"no cgroup v1 memory controller at {MEMCG_ROOT}")
        if os.geteuid() != 0:
            raise SystemExit("needs root (creates cgroups)")
        t0 = time.monotonic()
        self.tmpdir = tempfile.mkdtemp(prefix="oomtop-bench-")
        src = os.path.join(self.tmpdir, "sleeper.c")
        exe = os.path.join(self.tmpdir, "sleeper")
        with open(src, "w") as f:
            f.write(SLEEPER_C)
        subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)

        os.mkdir(self.base)
        burstable = os.path.join(self.base, "kubepods", "burstable")
        os.makedirs(burstable)
        container_limit = 64 * MIB
        for _ in range(pods):
            pod = os.path.join(burstable, f"pod{uuid.uuid4()}")
            os.mkdir(pod)
            self.pods.append(pod)
            write_file(os.path.join(pod, "memory.limit_in_bytes"), str(per_pod * container_limit + 32 * MIB))
            for _ in range(per_pod):
                ctr = os.path.join(pod, secrets.token_hex(32))
                os.mkdir(ctr)
                self.containers.append(ctr)
                write_file(os.path.join(ctr, "memory.limit_in_bytes"), str(container_limit))
        log(f"created {len(self.pods)} pods / {len(self.containers)} containers under {self.base}")

        self.release_r, self.release_w = os.pipe()  # both O_CLOEXEC; the child gets r as its stdin only
        rng = random.Random(42)
        me = str(os.getpid())
        actions = [
            (os.POSIX_SPAWN_DUP2, self.release_r, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        env: dict[str, str] = {}
        # Busy sleepers: about busy_pct % of the containers, picked at random (seeded) so they spread over the
        # pods, hold round(busy_pct % of procs) busy sleepers, dealt round-robin over those containers.
        n_ctr = len(self.containers)
        n_active = min(n_ctr, max(1, round(n_ctr * busy_pct / 100))) if busy_pct > 0 else 0
        active = set(random.Random(7).sample(range(n_ctr), n_active))
        self.active_containers = [self.containers[k] for k in sorted(active)]
        n_busy = round(procs * busy_pct / 100)
        for i in range(procs):
            kib = rng.randint(1024, 4096)
            busy = len(self.busy) < n_busy and (i % n_ctr) in active
            pid = os.posix_spawn(exe, [exe, str(kib), me, "busy" if busy else "idle"], env, file_actions=actions)
            self.children.append(pid)
            self.kib[pid] = kib
            if busy:
                self.busy.append(pid)
            ctr = self.containers[i % len(self.containers)] if self.containers else None
            if ctr is not None:
                write_file(os.path.join(ctr, "cgroup.procs"), str(pid))
                self.placed[pid] = ctr
        # Wait until every pid is listed by its container, then let them touch their memory.
        want = {c: set() for c in self.containers}
        for pid, ctr in self.placed.items():
            want[ctr].add(pid)
        deadline = time.monotonic() + 30
        while True:
            missing = 0
            for ctr, pids in want.items():
                have = {int(x) for x in read_file(os.path.join(ctr, "cgroup.procs")).split()}
                missing += len(pids - have)
            if not missing:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{missing} sleepers are not in their cgroup after 30 s")
            time.sleep(0.05)
        os.write(self.release_w, b"x" * len(self.children))
        page = os.sysconf("SC_PAGE_SIZE")
        deadline = time.monotonic() + 60
        pending = set(self.children)
        while pending:
            for pid in list(pending):
                try:
                    rss_pages = int(read_file(f"/proc/{pid}/statm").split()[1])
                except (OSError, IndexError, ValueError):
                    raise RuntimeError(f"sleeper {pid} died before touching its memory") from None
                if rss_pages * page >= self.kib[pid] * 1024:
                    pending.discard(pid)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(pending)} sleepers did not touch their memory in 60 s")
            time.sleep(0.05)
        usage = sum(int(read_file(os.path.join(p, "memory.usage_in_bytes"))) for p in self.pods)
        log(
            f"{len(self.children)} sleepers placed and resident ({sum(self.kib.values()) / 1024:.0f} MiB touched, "
            f"pods charged {usage / MIB:.0f} MiB) in {time.monotonic() - t0:.1f} s"
        )
        if self.busy:
            busy_ctrs = {self.placed[pid] for pid in self.busy}
            log(
                f"{len(self.busy)} of them can churn, in {len(busy_ctrs)} of {n_ctr} containers "
                f"({len({os.path.dirname(c) for c in busy_ctrs})} of {len(self.pods)} pods)"
            )

    # -- the busy phase

    def churn(self, on: bool) -> None:
        """Start (SIGUSR1) or stop (SIGUSR2) the busy sleepers' churn; only our own children are signalled."""
        sig = signal.SIGUSR1 if on else signal.SIGUSR2
        for pid in self.busy:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                raise RuntimeError(f"busy sleeper {pid} is gone") from None
        self.churning = on

    def usage_motion(self, ticks: int = 5, period: float = 0.1) -> tuple[int, int, int]:
        """Of our containers: how many changed memory.usage_in_bytes between every pair of ``ticks`` reads
        ``period`` apart, how many changed at least once, and how many there are."""
        paths = [os.path.join(c, "memory.usage_in_bytes") for c in self.containers]
        seen = []
        for k in range(ticks):
            if k:
                time.sleep(period)
            seen.append([read_file(p) for p in paths])
        every = sum(all(seen[k][j] != seen[k - 1][j] for k in range(1, ticks)) for j in range(len(paths)))
        anyc = sum(any(seen[k][j] != seen[k - 1][j] for k in range(1, ticks)) for j in range(len(paths)))
        return every, anyc, len(paths)

    def busy_cpu(self) -> float:
        """CPU seconds the busy sleepers have run so far (schedstat, ns; utime+stime ticks without it)."""
        tck = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.busy:
            try:
                total += int(read_file(f"/proc/{pid}/schedstat").split()[0]) / 1e9
                continue
            except (OSError, ValueError, IndexError):
                pass
            try:
                stat = read_file(f"/proc/{pid}/stat")
                f = stat[stat.rindex(b")") + 2 :].split()
                total += (int(f[11]) + int(f[12])) / tck
            except (OSError, ValueError, IndexError):
                pass
        return total

    # -- tear down

    def close(self) -> list[str]:
        problems: list[str] = []
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for fd in (self.release_w, self.release_r):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.release_w = self.release_r = -1
        for pid in self.children:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.children.clear()
        if os.path.isdir(self.base):
            # Anything still listed in our own tree was put there by us: kill it too.
            for dirpath, _dirs, _files in os.walk(self.base):
                try:
                    for p in read_file(os.path.join(dirpath, "cgroup.procs")).split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
            dirs = [d for d, _s, _f in os.walk(self.base, topdown=False)]
            for d in dirs:
                for attempt in range(100):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:
                        if attempt == 99:
                            problems.append(f"could not remove {d}: {e}")
                        time.sleep(0.05)
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        return problems


# -------------------------------------------------------------------------------------------- measuring


def all_cgroups() -> list[str]:
    """Every memory cgroup directory, parents first (what a full poll walks)."""
    out = [MEMCG_ROOT]
    i = 0
    while i < len(out):
        try:
            with os.scandir(out[i]) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        out.append(e.path)
        except OSError:
            pass
        i += 1
    return out


def paced(fn, rounds: int, hz: float, after=None) -> list[float]:
    """CPU seconds of each of ``rounds`` calls of fn, started at ``hz`` (0: back to back); ``after()`` runs
    after each call, outside the timed part."""
    gc.collect()
    cpu = time.process_time
    out = []
    period = 1.0 / hz if hz > 0 else 0.0
    start = time.monotonic()
    for i in range(rounds):
        if period:
            delay = start + i * period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t = cpu()
        fn()
        out.append(cpu() - t)
        if after is not None:
            after()
    return out


def kernel_threads() -> frozenset[bytes]:
    """Pids of kernel threads (PF_KTHREAD): listed by the root's cgroup.procs, but a poll reads no files of theirs."""
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = read_file(f"/proc/{name}/stat")
                flags = int(stat[stat.rindex(b")") + 2 :].split()[6])
            except (OSError, ValueError, IndexError):
                continue
            if flags & 0x00200000:
                out.add(name.encode())
    return frozenset(out)


class FloorOpenRead:
    """Floor (i): open+read+close of the poll's files every round; tasks are what cgroup.procs lists."""

    def __init__(self, cgdirs: list[str], kthreads: frozenset[bytes]) -> None:
        self.kthreads = kthreads
        self.files = [
            tuple(
                os.fsencode(os.path.join(d, n))
                for n in ("cgroup.procs", "memory.usage_in_bytes", "memory.stat", "memory.oom_control")
            )
            for d in cgdirs
        ]
        self.tasks = 0

    def __call__(self) -> None:
        o, r, c, RD, kt = os.open, os.read, os.close, os.O_RDONLY, self.kthreads
        n = 0
        for procs, usage, stat, oom in self.files:
            try:
                fd = o(procs, RD)
                data = r(fd, 65536)
                c(fd)
                fd = o(usage, RD)
                r(fd, 65536)
                c(fd)
                fd = o(stat, RD)
                r(fd, 65536)
                c(fd)
                fd = o(oom, RD)
                r(fd, 65536)
                c(fd)
            except OSError:
                continue
            for p in data.split():
                if p in kt:
                    continue
                try:
                    fd = o(b"/proc/" + p + b"/statm", RD)
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    r(fd, 65536)
                c(fd)
                n += 1
        self.tasks = n


class FloorPread:
    """Floor (ii): the same reads on descriptors kept open, ``os.pread(fd, 65536, 0)``."""

    def __init__(self, cgdirs: list[str], kthreads: frozenset[bytes]) -> None:
        self.kthreads = kthreads
        self.cg = []
        for d in cgdirs:
            with contextlib.suppress(OSError):
                self.cg.append(
                    tuple(
                        os.open(os.path.join(d, n), os.O_RDONLY | os.O_CLOEXEC)
                        for n in ("cgroup.procs", "memory.usage_in_bytes", "memory.stat", "memory.oom_control")
                    )
                )
        self.task_fds: dict[bytes, int] = {}
        self.tasks = 0

    def __call__(self) -> None:
        pread, o, c, RD, kt = os.pread, os.open, os.close, os.O_RDONLY | os.O_CLOEXEC, self.kthreads
        kept = self.task_fds
        seen = set()
        for procs, usage, stat, oom in self.cg:
            try:
                data = pread(procs, 65536, 0)
                pread(usage, 65536, 0)
                pread(stat, 65536, 0)
                pread(oom, 65536, 0)
            except OSError:
                continue
            for p in data.split():
                if p in kt:
                    continue
                fd = kept.get(p)
                if fd is None:
                    try:
                        fd = kept[p] = o(b"/proc/" + p + b"/statm", RD)
                    except OSError:
                        continue
                try:
                    pread(fd, 65536, 0)
                    seen.add(p)
                except OSError:
                    pass
        if len(seen) != len(kept):
            for p in kept.keys() - seen:
                c(kept.pop(p))
        self.tasks = len(seen)

    def close(self) -> None:
        for fds in self.cg:
            for fd in fds:
                os.close(fd)
        for fd in self.task_fds.values():
            os.close(fd)
        self.cg, self.task_fds = [], {}


class FloorFullSweep:
    """Full-sweep floor, open+read+close: per task status, oom_score, oom_score_adj, statm; per cgroup
    cgroup.procs, memory.usage_in_bytes, memory.stat, memory.oom_control, memory.limit_in_bytes."""

    def __init__(self, cgdirs: list[str], kthreads: frozenset[bytes]) -> None:
        self.kthreads = kthreads
        self.files = [
            tuple(
                os.fsencode(os.path.join(d, n))
                for n in (
                    "cgroup.procs",
                    "memory.usage_in_bytes",
                    "memory.stat",
                    "memory.oom_control",
                    "memory.limit_in_bytes",
                )
            )
            for d in cgdirs
        ]
        self.tasks = 0

    def __call__(self) -> None:
        o, r, c, RD, kt = os.open, os.read, os.close, os.O_RDONLY, self.kthreads
        n = 0
        for procs, *rest in self.files:
            try:
                fd = o(procs, RD)
                data = r(fd, 65536)
                c(fd)
                for path in rest:
                    fd = o(path, RD)
                    r(fd, 65536)
                    c(fd)
            except OSError:
                continue
            for p in data.split():
                if p in kt:
                    continue
                base = b"/proc/" + p
                for path in (base + b"/status", base + b"/oom_score", base + b"/oom_score_adj", base + b"/statm"):
                    try:
                        fd = o(path, RD)
                    except OSError:
                        continue
                    with contextlib.suppress(OSError):
                        r(fd, 65536)
                    c(fd)
                n += 1
        self.tasks = n


class ExternalRunner:
    """Runs a tool with stdio on /dev/null and returns its own CPU seconds (wait4 rusage: user+sys)."""

    def __init__(self) -> None:
        self.running: int | None = None

    def cpu_of(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        pid = os.posix_spawnp(argv[0], argv, dict(os.environ if env is None else env), file_actions=actions)
        self.running = pid
        try:
            _, status, ru = os.wait4(pid, 0)
        finally:
            self.running = None
        return ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status)

    def kill(self) -> None:
        if self.running is not None:
            try:
                os.kill(self.running, signal.SIGKILL)
                os.waitpid(self.running, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.running = None


def per_sample_by_difference(runner: ExternalRunner, make_argv, n_lo: int, n_hi: int, reps: int, env=None):
    """CPU per sample = (cpu(n_hi samples) - cpu(n_lo samples)) / (n_hi - n_lo), median over reps."""
    values, raw = [], []
    for _ in range(reps):
        lo, rc_lo = runner.cpu_of(make_argv(n_lo), env)
        hi, rc_hi = runner.cpu_of(make_argv(n_hi), env)
        if rc_lo != 0 or rc_hi != 0:
            raise RuntimeError(f"exit codes {rc_lo}/{rc_hi} for {' '.join(make_argv(n_hi))}")
        values.append((hi - lo) / (n_hi - n_lo))
        raw.append((lo, hi))
    return statistics.median(values), raw


def remove_stale() -> int:
    """Remove the trees of earlier runs that could not clean up (SIGKILL); nothing but our own names."""
    rc = 0
    for name in sorted(os.listdir(MEMCG_ROOT)):
        if BENCH_NAME_RE.match(name) and os.path.isdir(os.path.join(MEMCG_ROOT, name)):
            stale = Load()
            stale.base = os.path.join(MEMCG_ROOT, name)
            problems = stale.close()
            for p in problems:
                print(p, file=sys.stderr)
            print(f"{'could not remove' if problems else 'removed'} {stale.base}")
            rc = rc or (1 if problems else 0)
    tmp = tempfile.gettempdir()
    for name in sorted(os.listdir(tmp)):
        d = os.path.join(tmp, name)
        if name.startswith("oomtop-bench-") and os.path.isdir(d) and set(os.listdir(d)) <= {"sleeper", "sleeper.c"}:
            shutil.rmtree(d, ignore_errors=True)
            print(f"removed {d}")
    return rc


# ------------------------------------------------------------------------------------------------ oomtop


def wait_for_collector(timeout: float, log):
    """Import the collector, polling for its file (it may be written while we wait)."""
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    deadline = time.monotonic() + timeout
    announced = False
    last_err = ""
    while True:
        if os.path.isfile(COLLECTOR_FILE):
            try:
                for name in [m for m in sys.modules if m == "oomtop" or m.startswith("oomtop.")]:
                    del sys.modules[name]
                from oomtop.collect.collector import Collector, CollectorConfig

                return Collector, CollectorConfig, None
            except Exception as e:  # noqa: BLE001
                last_err = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            return None, None, last_err or f"{COLLECTOR_FILE} does not exist"
        if not announced:
            log(
                f"waiting up to {timeout / 60:.0f} min for {os.path.relpath(COLLECTOR_FILE, REPO)} to be importable ..."
            )
            announced = True
        time.sleep(min(20.0, max(0.0, deadline - time.monotonic())))


def bench_oomtop(Collector, CollectorConfig, rounds: int, hz: float, log):
    gc.collect()
    t = time.process_time()
    c = Collector(CollectorConfig())
    init = time.process_time() - t
    t = time.process_time()
    s = c.sample()
    cold = time.process_time() - t
    polls: list[tuple[int, bool, int]] = []  # (task_reads, slow tick, tasks) of each warm poll

    def record() -> None:
        st = getattr(c, "stats", None)
        if st is not None and hasattr(st, "task_reads"):
            polls.append((st.task_reads, bool(getattr(st, "slow", False)), getattr(st, "tasks", 0)))

    box: list = []
    warm = paced(lambda: box.append(c.sample()), rounds, hz, record)
    last = box[-1] if box else c.sample()
    del box[:-1]
    info = {
        "init": init,
        "cold": cold,
        "warm": warm,
        "cgroups": len(last.cgroups),
        "tasks": len(last.tasks),
        "warnings": list(getattr(last, "warnings", ()))[:5],
        "first_cgroups": len(s.cgroups),
        "polls": polls,
    }
    for attr in ("last_reads", "stats"):  # as the last warm poll left them
        if hasattr(c, attr):
            try:
                v = getattr(c, attr)
                info[attr] = v() if callable(v) else v
            except Exception as e:  # noqa: BLE001
                info[attr] = f"<{type(e).__name__}: {e}>"
    close = getattr(c, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
    return info


# ---------------------------------------------------------------------------------------------- output


def fmt_row(what: str, ms: float | None, note: str = "") -> str:
    if ms is None:
        return f"  {what:<44} {'-':>10} {'-':>12}  {note}"
    return f"  {what:<44} {ms:10.3f} {ms * 10 / 1000 * 100:11.2f}%  {note}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--containers-per-pod", type=int, default=4)
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=50, help="warm oomtop samples and floor rounds (default 50)")
    ap.add_argument("--hz", type=float, default=10.0, help="pacing of in-process rounds; 0 = back to back")
    ap.add_argument("--top-samples", type=int, default=20, help="top: n=1 vs n=1+this (default 20)")
    ap.add_argument("--atop-samples", default="2,6", help="atop: the two sample counts (default 2,6)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the top difference (median)")
    ap.add_argument("--atop-reps", type=int, default=1)
    ap.add_argument(
        "--wait-collector",
        type=float,
        default=45 * 60,
        help="seconds to wait for oomtop/collect/collector.py to become importable (default 2700)",
    )
    ap.add_argument(
        "--busy",
        type=float,
        default=25.0,
        metavar="PCT",
        help="after the idle phase, measure oomtop again while PCT %% of the sleepers (in about PCT %% "
        "of the containers) churn memory every 50 ms; 0 = idle phase only (default 25)",
    )
    ap.add_argument("--no-oomtop", action="store_true", help="skip the collector (test the rest)")
    ap.add_argument("--no-external", action="store_true", help="skip top and atop")
    ap.add_argument(
        "--remove-stale",
        action="store_true",
        help="only remove oomtop-bench-* trees left by a bench that was SIGKILLed, then exit",
    )
    args = ap.parse_args()
    if args.remove_stale:
        return remove_stale()
    if args.pods < 1 or args.containers_per_pod < 1 or args.procs < 0:
        ap.error("need at least one pod and one container per pod")
    if not 0 <= args.busy <= 100:
        ap.error("--busy: a percentage, 0-100")
    atop_lo, atop_hi = (int(x) for x in args.atop_samples.split(","))
    if atop_hi <= atop_lo:
        ap.error("--atop-samples: the second count must be larger")

    def log(msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started with SIGINT ignored
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    load = Load()
    runner = ExternalRunner()
    pread_floor: FloorPread | None = None
    results: dict = {}
    rc = 0
    try:
        load.build(args.pods, args.containers_per_pod, args.procs, args.busy, log)
        cgdirs = all_cgroups()
        kt = kernel_threads()
        results["cgroups_seen"] = len(cgdirs)
        results["kthreads"] = len(kt)
        busy_ctrs = {load.placed[pid] for pid in load.busy}
        results["busy_load"] = {
            "sleepers": len(load.busy),
            "containers": len(busy_ctrs),
            "all_containers": len(load.containers),
            "pods": len({os.path.dirname(c) for c in busy_ctrs}),
        }

        # a. oomtop, once per phase: idle (every sleeper paused), then busy (load.busy churning)
        phases = [("idle", 0.0)] + ([(f"busy {args.busy:g}%", args.busy)] if args.busy > 0 and load.busy else [])
        results["phases"] = []
        Collector = CollectorConfig = None
        if not args.no_oomtop:
            Collector, CollectorConfig, err = wait_for_collector(args.wait_collector, log)
            if Collector is None:
                results["oomtop_error"] = f"collector unavailable: {err}"
                log(results["oomtop_error"])
        for name, pct in phases:
            ph: dict = {"name": name, "pct": pct}
            results["phases"].append(ph)
            if pct:
                load.churn(True)
                time.sleep(0.5)  # every busy sleeper has gone through a few touch/free cycles
            ph["motion"] = load.usage_motion()
            for _ in range(5):  # idle: let the per-cpu charge stocks of the fresh load settle first
                if pct or not ph["motion"][1]:
                    break
                log(f"{name}: {ph['motion'][1]} containers still moving their usage; waiting")
                ph["motion"] = load.usage_motion()
            log(f"{name}: {ph['motion'][0]} of {ph['motion'][2]} containers moved usage on every 100 ms tick")
            cpu0, t0 = load.busy_cpu(), time.monotonic()
            if Collector is not None:
                log(f"oomtop ({name}): cold sample + {args.rounds} warm samples at {args.hz:g} Hz")
                try:
                    ph["oomtop"] = bench_oomtop(Collector, CollectorConfig, args.rounds, args.hz, log)
                except Exception as e:  # a failed phase is reported in the table; the others still run  # noqa: BLE001
                    ph["oomtop_error"] = f"collector failed: {type(e).__name__}: {e}"
                    log(ph["oomtop_error"])
                    traceback.print_exc()
            else:
                ph["oomtop_error"] = results.get("oomtop_error", "skipped (--no-oomtop)")
            if pct:
                # Check that the floors do not move with the churn (they read everything either way).
                log(f"floor (ii) during {name}: {args.rounds} rounds")
                pread_floor = FloorPread(cgdirs, kt)
                pread_floor()
                ph["floor_pread"] = paced(pread_floor, args.rounds, args.hz)
                ph["floor_tasks"] = pread_floor.tasks
                pread_floor.close()
                pread_floor = None
                ph["sleeper_cpu"] = (load.busy_cpu() - cpu0) / max(1e-9, time.monotonic() - t0)
                load.churn(False)
                time.sleep(0.2)

        # b. floors (idle load)
        walk = paced(all_cgroups, args.rounds, args.hz)
        results["walk"] = walk
        log(f"floor: {len(cgdirs)} cgroups on the node, {args.rounds} rounds each")
        f1 = FloorOpenRead(cgdirs, kt)
        results["floor_open"] = paced(f1, args.rounds, args.hz)
        pread_floor = FloorPread(cgdirs, kt)
        pread_floor()  # the first round opens the task descriptors; measure the steady state
        results["floor_pread"] = paced(pread_floor, args.rounds, args.hz)
        f3 = FloorFullSweep(cgdirs, kt)
        results["floor_full"] = paced(f3, args.rounds, args.hz)
        results["floor_tasks"] = (f1.tasks, pread_floor.tasks, f3.tasks)
        pread_floor.close()
        pread_floor = None

        # c. top, d. atop
        if not args.no_external:
            if shutil.which("top"):
                n = args.top_samples
                log(f"top: -n 1 vs -n {1 + n} -d 0.1, {args.reps} reps")
                try:
                    results["top"] = per_sample_by_difference(
                        runner,
                        lambda k: ["top", "-b", "-n", str(k)] + (["-d", "0.1"] if k > 1 else []),
                        1,
                        1 + n,
                        args.reps,
                    )
                except Exception as e:  # a failed comparison is reported in the table; the others still run  # noqa: BLE001
                    results["top_error"] = f"failed: {e}"
            else:
                results["top_error"] = "not installed"
            if shutil.which("atop"):
                log(f"atop: 1 {atop_lo} vs 1 {atop_hi} (interval 1 s), {args.atop_reps} reps")
                env = dict(os.environ, ATOPACCT="")  # no process accounting: atop must not switch acct on
                try:
                    results["atop"] = per_sample_by_difference(
                        runner, lambda k: ["atop", "1", str(k)], atop_lo, atop_hi, args.atop_reps, env
                    )
                except Exception as e:  # a failed comparison is reported in the table; the others still run  # noqa: BLE001
                    results["atop_error"] = f"failed: {e}"
            else:
                results["atop_error"] = "not installed"
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'SIGINT'}); cleaning up")
        rc = 130
    except Exception:  # the load must be cleaned up whatever failed  # noqa: BLE001
        traceback.print_exc()
        rc = 1
    finally:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            runner.kill()
            if pread_floor is not None:
                pread_floor.close()
            problems = load.close()
            for p in problems:
                log(p)
            if problems:
                rc = rc or 1
            else:
                log(f"removed {load.base} and all sleepers")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if rc:
        return rc
    report(args, results, atop_lo, atop_hi)
    return rc


def report(args, r: dict, atop_lo: int, atop_hi: int) -> None:
    def ms(xs):
        return statistics.fmean(xs) * 1000 if xs else None

    def p50(xs):
        return statistics.median(xs) * 1000

    phases = r.get("phases", [])
    W = 10  # width of a phase column
    out = []
    out.append("")
    out.append(
        f"oomtop poll benchmark: {args.pods} pods x {args.containers_per_pod} containers, {args.procs} sleepers; "
        f"{args.rounds} rounds at {'back-to-back' if args.hz <= 0 else f'{args.hz:g} Hz'}; "
        f"Python {sys.version.split()[0]}, Linux {os.uname().release}, {os.cpu_count()} cpus"
    )
    out.append(
        f"node: {r.get('cgroups_seen', '?')} memory cgroups, {r.get('kthreads', '?')} kernel threads "
        "(listed in the root's cgroup.procs; the floors skip them as the collector does)"
    )
    busy = [ph for ph in phases if ph["pct"]]
    if busy:
        b = r.get("busy_load", {})
        out.append(
            f"load: idle = every sleeper paused; busy = {b.get('sleepers', '?')} of {args.procs} sleepers in "
            f"{b.get('containers', '?')} of {b.get('all_containers', '?')} containers ({b.get('pods', '?')} pods) "
            "every 50 ms alternately touch up to a new 256 KiB-1 MiB / MADV_DONTNEED down to a new 0-252 KiB"
        )
    motion = "; ".join(
        f"{ph['name']} {ph['motion'][0]}/{ph['motion'][2]} (any change: {ph['motion'][1]})"
        for ph in phases
        if "motion" in ph
    )
    if motion:
        out.append(f"bench containers whose memory.usage_in_bytes moved in each of 4 intervals of 100 ms: {motion}")
    for ph in busy:
        if "sleeper_cpu" in ph:
            out.append(
                f"the churning sleepers themselves used {ph['sleeper_cpu'] * 100:.0f} % of one core during "
                f"{ph['name']} (of {os.cpu_count()} cpus)"
            )

    def cells(values, fmt="{:.3f}") -> str:
        return " ".join(f"{'-' if v is None else fmt.format(v):>{W}}" for v in values)

    # -- oomtop, one column per phase
    out.append("")
    names = [ph["name"] for ph in phases] or ["idle"]
    out.append(f"  {'oomtop Collector.sample(), CPU ms':<44} " + " ".join(f"{n:>{W}}" for n in names) + "  notes")
    out.append(f"  {'-' * 44} " + " ".join("-" * W for _ in names) + f"  {'-' * 30}")
    os_ = [ph.get("oomtop") for ph in phases]
    if not any(os_):
        err = next((ph.get("oomtop_error") for ph in phases if ph.get("oomtop_error")), None)
        out.append(
            f"  {'oomtop':<44} "
            + cells([None] * len(names))
            + f"  {err or r.get('oomtop_error', 'skipped (--no-oomtop)')}"
        )
    else:

        def get(f):
            return [f(o) if o else None for o in os_]

        warm = get(lambda o: ms(o["warm"]))
        init = ", ".join(f"{o['init'] * 1000:.1f}" for o in os_ if o)
        out.append(
            f"  {'cold (1st sample)':<44} " + cells(get(lambda o: o["cold"] * 1000)) + f"  + Collector() {init} ms"
        )
        out.append(f"  {'warm mean':<44} " + cells(warm) + "  the row the ratios use")
        out.append(f"  {'warm p50':<44} " + cells(get(lambda o: p50(o["warm"]))))
        out.append(
            f"  {'warm max':<44} "
            + cells(get(lambda o: max(o["warm"]) * 1000))
            + "  a slow tick (limits etc., once a second) re-reads all"
        )
        out.append(
            f"  {'warm mean at 10 Hz, % of one core':<44} "
            + cells([w * 10 / 1000 * 100 if w is not None else None for w in warm], "{:.2f}%")
        )

        def reads(o, which):
            ps = [p for p in o.get("polls", ()) if which is None or p[1] == which]
            return statistics.fmean(p[0] for p in ps) if ps else None

        out.append(
            f"  {'collector.stats task_reads per warm poll':<44} "
            + cells(get(lambda o: reads(o, None)), "{:.1f}")
            + "  mean over all warm polls"
        )
        out.append(
            f"  {'  ... on fast ticks only':<44} "
            + cells(get(lambda o: reads(o, False)), "{:.1f}")
            + "  (slow ticks: "
            + ", ".join(f"{sum(p[1] for p in o['polls'])} x {reads(o, True) or 0:.0f}" for o in os_ if o)
            + ")"
        )
        out.append(
            f"  {'cgroups / tasks in the last sample':<44} "
            + " ".join(f"{str(o['cgroups']) + '/' + str(o['tasks']) if o else '-':>{W}}" for o in os_)
        )
        for ph in phases:
            if ph.get("oomtop_error"):
                out.append(f"  {ph['name']}: {ph['oomtop_error']}")

    # -- the rest, measured once (they read every file each round, busy or not)
    out.append("")
    out.append(f"  {'floors and other tools (idle load)':<44} {'CPU ms/smp':>10} {'10 Hz core':>12}  notes")
    out.append(f"  {'-' * 44} {'-' * 10} {'-' * 12}  {'-' * 30}")
    ft = r.get("floor_tasks", ("?", "?", "?"))
    floors = {}
    for key, label, tasks in (
        ("floor_open", "floor (i) open+read+close", ft[0]),
        ("floor_pread", "floor (ii) kept fds + os.pread", ft[1]),
        ("floor_full", "floor full sweep open+read+close", ft[2]),
    ):
        if key in r:
            floors[key] = ms(r[key])
            out.append(fmt_row(label, floors[key], f"p50 {p50(r[key]):.3f}; {tasks} tasks"))
    for ph in busy:
        if "floor_pread" in ph:
            out.append(
                fmt_row(
                    f"(check) floor (ii) during {ph['name']}",
                    ms(ph["floor_pread"]),
                    f"p50 {p50(ph['floor_pread']):.3f}; {ph['floor_tasks']} tasks; not used in ratios",
                )
            )
    if "walk" in r:
        out.append(fmt_row("(info) cgroup tree walk, os.scandir", ms(r["walk"]), "not part of the floors"))
    ext = {}
    if "top" in r:
        ext["top"], raw = r["top"]
        ext["top"] *= 1000
        out.append(
            fmt_row(
                f"top -b -d 0.1 (n={1 + args.top_samples} minus n=1)",
                ext["top"],
                "n=1 costs " + ", ".join(f"{lo * 1000:.0f}" for lo, _ in raw) + " ms",
            )
        )
    elif "top_error" in r:
        out.append(f"  top: {r['top_error']}")
    if "atop" in r:
        ext["atop"], raw = r["atop"]
        ext["atop"] *= 1000
        out.append(
            fmt_row(
                f"atop 1 N (N={atop_hi} minus N={atop_lo})",
                ext["atop"],
                f"N={atop_lo} costs " + ", ".join(f"{lo * 1000:.0f}" for lo, _ in raw) + " ms",
            )
        )
    elif "atop_error" in r:
        out.append(f"  atop: {r['atop_error']}")

    # -- ratios, one column per phase
    out.append("")
    out.append(f"  {'ratio':<44} " + " ".join(f"{n:>{W}}" for n in names) + f" {'target':>8}  verdict")
    out.append(f"  {'-' * 44} " + " ".join("-" * W for _ in names) + f" {'-' * 8}  {'-' * 7}")

    def ratio(label, nums, den, target, ok, fmt="{:.2f}"):
        vals = [n / den if n is not None and den else None for n in nums]
        verdict = (
            "n/a"
            if all(v is None for v in vals)
            else (" / ".join("-" if v is None else ("ok" if ok(v) else "MISS") for v in vals) if ok else "")
        )
        out.append(f"  {label:<44} " + cells(vals, fmt) + f" {target:>8}  {verdict}")

    warm = [ms(o["warm"]) if o else None for o in os_] or [None]
    cold = [o["cold"] * 1000 if o else None for o in os_] or [None]
    ratio("oomtop warm / floor (i) open+read+close", warm, floors.get("floor_open"), "<= 1.5", lambda v: v <= 1.5)
    ratio("oomtop warm / floor (ii) kept fds", warm, floors.get("floor_pread"), "<= 1.5", lambda v: v <= 1.5)
    ratio("oomtop cold / floor full sweep", cold, floors.get("floor_full"), "-", None)
    ratio(
        "oomtop warm at 10 Hz, % of one core",
        [w * 10 / 1000 * 100 if w is not None else None for w in warm],
        1.0,
        "< 20%",
        lambda v: v < 20,
        "{:.2f}%",
    )
    ratio("oomtop warm / top (per sample)", warm, ext.get("top"), "< 1", lambda v: v < 1)
    ratio("oomtop cold / top (per sample)", cold, ext.get("top"), "-", None)
    ratio("oomtop warm / atop (per sample)", warm, ext.get("atop"), "-", None)
    for ph in phases:
        o = ph.get("oomtop")
        if not o:
            continue
        if o.get("warnings"):
            out.append("")
            out.append(f"  sample warnings ({ph['name']}): " + "; ".join(map(str, o["warnings"])))
        for attr in ("last_reads", "stats"):
            if attr in o:
                text = repr(o[attr])
                out.append(
                    f"  collector.{attr} ({ph['name']}, last poll): {text[:600]}{' ...' if len(text) > 600 else ''}"
                )
    print("\n".join(out), flush=True)


if __name__ == "__main__":
    sys.exit(main())
