#!/usr/bin/env python3
"""Hours without growth: ``oomtop record`` and the live view on a churning node, RSS, CPU and fds every minute.

    sudo python3 bench/bench_soak.py [--minutes 30] [--procs 1000] [--busy 10] [--churn-every 3] [--kill-every 60]

The load is bench_poll's kubelet-shaped v1 tree (50 pods x 4 containers, ``--procs`` sleepers, ``--busy`` % of
them churning their memory every 50 ms), and on top of it, for the whole run:

* **cgroup churn**: every ``--churn-every`` seconds a new pod cgroup with one container and 5 sleepers appears,
  and the oldest such pod beyond 5 is removed (its sleepers killed, the cgroups removed), so pids, cgroups and
  pod names keep turning over as on a busy node;
* **an OOM kill** every ``--kill-every`` seconds: a pod with one container limited to 32 MiB gets a hog that
  touches memory until the kernel kills it (confirmed: it dies of SIGKILL), then the pod is removed.

Two oomtop processes watch it, as users run them: ``oomtop record A`` (headless) and the live view ``oomtop
--record B`` in a real terminal (tmux, 160x50).  Every minute the table gets, per process, RSS (``VmRSS``), CPU
over that minute (% of one core, utime+stime), open descriptors and threads.  At the end both are stopped
(SIGTERM; ``q`` in the terminal) and both recordings are read back: every kill the bench made must be there
exactly once, in each.  The verdict lines compare against the targets: RSS growth after the first 5 minutes
under 5 MiB, descriptor count flat, every kill reported once.

Needs root, the cgroup v1 memory controller, gcc and tmux.  Everything it creates is removed on exit (also on
errors, Ctrl-C, SIGTERM); ``--remove-stale`` cleans what a SIGKILLed run left (bench_poll's names).
Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "bench"))

import bench_poll
from bench_poll import Load, read_file, write_file

from oomtop.record.reader import Recording

MIB = 1 << 20
KILL_LIMIT = 32 * MIB

# The hog: waits on stdin until it sits in its cgroup, then touches memory 1 MiB at a time past any container
# limit the bench sets; the kernel's OOM killer ends it (it never exits by itself before 1 GiB).
HOG_C = r"""
#include <stdlib.h>
#include <sys/prctl.h>
#include <signal.h>
#include <unistd.h>
int main(void) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    char c;
    if (read(0, &c, 1) != 1) return 4;
    for (int i = 0; i < 1024; i++) {
        volatile char *p = malloc(1 << 20);
        if (!p) return 5;
        for (int j = 0; j < (1 << 20); j += 4096) p[j] = (char)j;
    }
    for (;;) pause();
}
"""


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Usage:
    """One process's figures at one moment."""

    rss_kib: int
    cpu_s: float
    fds: int
    threads: int


def usage_of(pid: int) -> Usage | None:
    """VmRSS, utime+stime (all threads), open descriptors and threads of ``pid``; None once it is gone."""
    try:
        status = read_file(f"/proc/{pid}/status").decode()
        stat = read_file(f"/proc/{pid}/stat")
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in status.splitlines() if ":" in line}
    if "VmRSS" not in fields:  # a zombie: the process has exited
        return None
    after = stat[stat.rindex(b")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return Usage(
        rss_kib=int(fields["VmRSS"].split()[0]),
        cpu_s=(int(after[11]) + int(after[12])) / ticks,
        fds=fds,
        threads=int(fields["Threads"]),
    )


@dataclass
class Watched:
    """An oomtop process under watch and its per-minute figures."""

    name: str
    pid: int
    recording: str | None = None  # where it records (its kills are checked there)
    rows: list[tuple[float, Usage]] = field(default_factory=list)


class Node:
    """bench_poll's load plus the churning pods and the OOM kills; ``close()`` removes all of it."""

    def __init__(self, load: Load, tmpdir: str) -> None:
        self.load = load
        self.burstable = os.path.join(load.base, "kubepods", "burstable")
        self.sleeper = os.path.join(load.tmpdir or "", "sleeper")
        self.hog = os.path.join(tmpdir, "hog")
        src = os.path.join(tmpdir, "hog.c")
        with open(src, "w") as f:
            f.write(HOG_C)
        subprocess.run(["gcc", "-O1", "-o", self.hog, src], check=True)
        self.churn_pods: list[tuple[str, list[int]]] = []
        self.kills: list[tuple[float, int]] = []  # (time, pid) of every hog the kernel killed
        self.kill_failures: list[str] = []
        self.pods_made = 0

    def _pod(self, limit: int | None) -> tuple[str, str]:
        pod = os.path.join(self.burstable, f"pod{uuid.uuid4()}")
        os.mkdir(pod)
        container = os.path.join(pod, secrets.token_hex(32))
        os.mkdir(container)
        if limit is not None:
            write_file(os.path.join(pod, "memory.limit_in_bytes"), str(limit + 8 * MIB))
            write_file(os.path.join(container, "memory.limit_in_bytes"), str(limit))
        self.pods_made += 1
        return pod, container

    def _spawn_in(self, container: str, argv: list[str]) -> int:
        """Start ``argv`` gated on its stdin, move it into ``container``, then let it go."""
        gate_r, gate_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, gate_r, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
        ]
        try:
            pid = os.posix_spawn(argv[0], argv, {}, file_actions=actions)
            write_file(os.path.join(container, "cgroup.procs"), str(pid))
            os.write(gate_w, b"x")
        finally:
            os.close(gate_r)
            os.close(gate_w)
        return pid

    def churn(self) -> None:
        """One new pod of 5 sleepers; the oldest beyond 5 removed."""
        pod, container = self._pod(64 * MIB)
        me = str(os.getpid())
        pids = [self._spawn_in(container, [self.sleeper, "1024", me, "idle"]) for _ in range(5)]
        self.churn_pods.append((pod, pids))
        while len(self.churn_pods) > 5:
            self._remove(*self.churn_pods.pop(0))

    def kill_one(self) -> None:
        """A hog in a 32 MiB container; wait until the kernel kills it (SIGKILL), then remove its pod."""
        pod, container = self._pod(KILL_LIMIT)
        pid = self._spawn_in(container, [self.hog])
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:  # never killed by the kernel: end it ourselves and say so
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
                self.kill_failures.append(f"hog {pid} was not killed by the kernel within 30 s")
                self._remove(pod, [])
                return
            time.sleep(0.02)
        if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
            self.kills.append((time.time(), pid))
        else:
            self.kill_failures.append(f"hog {pid} ended with status {status:#x}, not SIGKILL")
        self._remove(pod, [])

    def _remove(self, pod: str, pids: list[int]) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for directory in sorted((d for d, _s, _f in os.walk(pod)), key=len, reverse=True):
            for _attempt in range(100):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)

    def close(self) -> None:
        for pod, pids in self.churn_pods:
            self._remove(pod, pids)
        self.churn_pods.clear()


class Terminal:
    """One tmux server of the bench's own running the live view."""

    def __init__(self) -> None:
        self.tmux = shutil.which("tmux") or ""
        if not self.tmux:
            raise SystemExit("needs tmux (apt-get install tmux)")
        self.socket = f"oomtop-soak-{secrets.token_hex(4)}"

    def run(self, *args: str) -> str:
        result = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return result.stdout

    def start(self, command: str, session: str = "soak") -> int:
        self.run("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command)
        return int(self.run("display-message", "-p", "-t", session, "#{pane_pid}").strip())

    def screen(self, session: str = "soak") -> str:
        return self.run("capture-pane", "-p", "-t", session)

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.run("kill-server")


def wait_until(predicate, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(0.2)


def kills_in(path: str, pids: set[int]) -> tuple[dict[int, int], int, int, str | None]:
    """How many times each of our kills is in the recording, the other kills, its samples, and its damage."""
    recording = Recording(path)
    try:
        seen = dict.fromkeys(pids, 0)
        others = 0
        for event in recording.events:
            if event.victim.pid in seen:
                seen[event.victim.pid] += 1
            else:
                others += 1
        samples = sum(1 for _ in recording.iter_samples())
        return seen, others, samples, recording.damage
    finally:
        recording.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30, help="length of the soak (default 30)")
    parser.add_argument("--procs", type=int, default=1000, help="sleepers in the base load (default 1000)")
    parser.add_argument("--busy", type=float, default=10, help="%% of sleepers churning memory (default 10)")
    parser.add_argument("--churn-every", type=float, default=3, help="seconds between new pods (default 3)")
    parser.add_argument("--kill-every", type=float, default=60, help="seconds between OOM kills (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="oomtop's --interval (default 0.5, its own)")
    parser.add_argument("--keep", metavar="DIR", help="keep the two recordings in DIR")
    parser.add_argument(
        "--also-live-env",
        metavar="VAR=VALUE",
        help="a second live view (no recording) with this environment variable, side by side (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--remove-stale", action="store_true", help="remove what a killed run left, then exit")
    args = parser.parse_args()
    if args.remove_stale:
        return bench_poll.remove_stale()
    if os.geteuid() != 0:
        raise SystemExit("needs root (creates cgroups)")

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    tmpdir = tempfile.mkdtemp(prefix="oomtop-soak-")
    load = Load()
    terminal = Terminal()
    node: Node | None = None
    recorder: subprocess.Popen[bytes] | None = None
    try:
        load.build(50, 4, args.procs, args.busy, log)
        load.churn(True)
        node = Node(load, tmpdir)
        a = os.path.join(tmpdir, "record.oomrec")
        b = os.path.join(tmpdir, "live.oomrec")
        oomtop = [sys.executable, "-m", "oomtop"]
        recorder = subprocess.Popen(
            [*oomtop, "record", a, "--interval", str(args.interval)],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(tmpdir, "record.err"), "wb"),  # noqa: SIM115 (lives as long as the child)
        )
        live_pid = terminal.start(
            f"cd {REPO} && unset COLUMNS LINES && TERM=xterm-256color OOMTOP_CONFIG_DIR={tmpdir}/config "
            f"exec {sys.executable} -m oomtop --record {b} --interval {args.interval}"
        )
        watched = [Watched("record", recorder.pid, a), Watched("live view", live_pid, b)]
        if args.also_live_env:
            other = terminal.start(
                f"cd {REPO} && unset COLUMNS LINES && TERM=xterm-256color OOMTOP_CONFIG_DIR={tmpdir}/config "
                f"{args.also_live_env} exec {sys.executable} -m oomtop --interval {args.interval}",
                "other",
            )
            watched.append(Watched(f"live {args.also_live_env.split('=')[0][:6]}", other))
        try:
            wait_until(lambda: "burstable" in terminal.screen(), 60, "the live view's tree")
        except RuntimeError:
            log(f"the live view shows:\n{terminal.screen()}")
            raise
        log(f"soak for {args.minutes:g} min: record pid {recorder.pid}, live view pid {live_pid}")

        start = time.monotonic()
        end = start + args.minutes * 60
        next_churn = start + args.churn_every
        next_kill = start + args.kill_every / 2
        next_row = start
        print(f"{'min':>4}  {'process':<10} {'RSS MiB':>8} {'CPU %':>6} {'fds':>4} {'thr':>4}  node")
        last: dict[str, Usage] = {}
        while True:
            now = time.monotonic()
            if now >= next_row:
                minute = (now - start) / 60
                for w in watched:
                    u = usage_of(w.pid)
                    if u is None:
                        raise RuntimeError(f"{w.name} (pid {w.pid}) is gone; the terminal shows:\n{terminal.screen()}")
                    before = last.get(w.name)
                    cpu = 100 * (u.cpu_s - before.cpu_s) / 60 if before else float("nan")
                    last[w.name] = u
                    w.rows.append((minute, u))
                    print(
                        f"{minute:4.0f}  {w.name:<10} {u.rss_kib / 1024:8.1f} {cpu:6.1f} {u.fds:4d} {u.threads:4d}  "
                        f"pods made {node.pods_made}, kills {len(node.kills)}",
                        flush=True,
                    )
                next_row += 60
                if now >= end:
                    break
            if now >= next_kill:
                node.kill_one()
                next_kill += args.kill_every
            elif now >= next_churn:
                node.churn()
                next_churn += args.churn_every
            else:
                time.sleep(min(0.2, max(0.0, min(next_row, next_kill, next_churn) - now)))

        log("stopping both and reading their recordings back")
        time.sleep(3)  # the last kill's event reaches both before they stop
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=30)
        terminal.run("send-keys", "-t", "soak", "q")
        wait_until(lambda: usage_of(live_pid) is None, 30, "the live view to quit")
        if args.also_live_env:
            terminal.run("send-keys", "-t", "other", "q")
        ours = {pid for _t, pid in node.kills}
        report = []
        ok = True
        for w in watched:
            if w.recording is not None:
                seen, others, samples, damage = kills_in(w.recording, ours)
            else:  # a live view without a recording: its memory, CPU and descriptors only
                seen, others, samples, damage = dict.fromkeys(ours, 1), 0, 0, None
            missing = sorted(pid for pid, n in seen.items() if n == 0)
            twice = sorted(pid for pid, n in seen.items() if n > 1)
            after5 = [u for minute, u in w.rows if minute >= 5 - 1e-6]
            growth = (after5[-1].rss_kib - after5[0].rss_kib) / 1024 if len(after5) > 1 else float("nan")
            peak = (max(u.rss_kib for u in after5) - after5[0].rss_kib) / 1024 if after5 else float("nan")
            # The live fds follow the cgroups and processes alive (kept open per file), which the churn moves up
            # and down by a pod or two; a leak grows with the pods made (hundreds).  No leak: the last 5 minutes
            # never exceed the first 5 by more than 1 %.
            first = [u.fds for minute, u in w.rows if 1 - 1e-6 <= minute <= 5 + 1e-6] or [w.rows[0][1].fds]
            last = [u.fds for minute, u in w.rows if minute >= w.rows[-1][0] - 5 - 1e-6]
            fds_flat = max(last) <= max(first) * 1.01
            cpus = [
                100 * (w.rows[i][1].cpu_s - w.rows[i - 1][1].cpu_s) / 60 / max(1e-9, w.rows[i][0] - w.rows[i - 1][0])
                for i in range(1, len(w.rows))
            ]
            good = growth < 5 and not missing and not twice and fds_flat and damage is None
            ok = ok and good
            report.append(
                f"{w.name:<10} RSS {w.rows[0][1].rss_kib / 1024:.1f} MiB at start, "
                f"{after5[0].rss_kib / 1024 if after5 else float('nan'):.1f} at 5 min, "
                f"{w.rows[-1][1].rss_kib / 1024:.1f} at the end: growth after 5 min {growth:+.1f} MiB "
                f"(peak {peak:+.1f}; target < 5); fds {min(first)}-{max(first)} in minutes 1-5, "
                f"{min(last)}-{max(last)} in the last 5 ({'flat' if fds_flat else 'GROWING'}); "
                f"CPU mean {statistics.fmean(cpus) if cpus else float('nan'):.1f} % of a core; "
                f"{samples} samples; kills: {len(ours) - len(missing)} of {len(ours)} reported, "
                f"missing {missing or 'none'}, twice {twice or 'none'}, {others} others; "
                f"damage {damage or 'none'} -> {'OK' if good else 'NOT MET'}"
            )
        print()
        print(
            f"soak {args.minutes:g} min, {args.procs} sleepers ({args.busy:g} % churning), a new pod every "
            f"{args.churn_every:g} s ({node.pods_made} pods made), {len(node.kills)} OOM kills "
            f"({len(node.kill_failures)} hogs not killed by the kernel), oomtop --interval {args.interval:g}"
        )
        for line in report:
            print(line)
        for failure in node.kill_failures:
            print(f"  {failure}")
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for path in (a, b):
                shutil.copy(path, args.keep)
        return 0 if ok else 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if recorder is not None and recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        terminal.close()
        if node is not None:
            node.close()
        if load.churning:
            load.churn(False)
        for problem in load.close():
            log(problem)
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
