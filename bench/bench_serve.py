#!/usr/bin/env python3
"""Scrape cost: ``oomtop serve`` next to ``prometheus-node-exporter`` on the same kubelet-shaped load.

    sudo python bench/bench_serve.py [--phase-seconds 30] [--idle-seconds 20] [--scrapers 1,10] [--busy 10]

Builds the load of bench_poll.py (its ``Load``: 50 pods x 4 containers under a cgroup tree of its own, 1,000 sleeper
processes, ``--busy`` % of them churning their memory every 50 ms), then measures one exporter at a time on loopback:

(a) ``python -m oomtop serve --listen 127.0.0.1:PORT --interval 1`` (the real command: LiveSource, the collector,
    the kernel log, the HTTP server), after checking that its scrape holds a memory series for every pod and
    container of the load (fails otherwise: a benchmark that measures nothing is a defect);
(b) ``prometheus-node-exporter --web.listen-address=127.0.0.1:PORT`` (its default collectors).

Each is first left alone (``--idle-seconds``: oomtop's collection at 1 s without a scrape), then scraped by 1 and by
10 scrapers (``--scrapers``), threads that GET /metrics with ``Accept: application/openmetrics-text; version=1.0.0``
once a second each, for ``--phase-seconds``.  Per phase: the client-side wall time per scrape (p50, p95, max),
the body's size, and the exporter's CPU (utime + stime of all its threads from /proc/<pid>/stat over the phase,
as % of one core).  Targets: a scrape under 20 ms p95, serve at 1 s under 3 % of one core.

Needs root and the cgroup v1 memory controller (as bench_poll.py).  Everything it creates (cgroups, sleepers, the
exporters, a temporary directory for their stderr) is removed on exit, also on errors, Ctrl-C, SIGTERM, SIGHUP;
the exporters die with the script (PDEATHSIG) even on SIGKILL.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gzip
import http.client
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import bench_poll  # the load and its clean-up
from bench_poll import Interrupted, Load, _on_signal

ACCEPT = "application/openmetrics-text; version=1.0.0"
HOST = "127.0.0.1"
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
USAGE_SERIES = "oomtop_memory_usage_bytes{"
TARGET_P95_MS = 20.0
TARGET_CPU_PCT = 3.0
PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """The benchmark cannot measure what it should: a message, exit status 1."""


class NotReady(BenchError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Exporter:
    """An exporter child (stdin/stdout on /dev/null, stderr to a file) and its CPU from /proc/<pid>/stat."""

    def __init__(self, name: str, argv: list[str], port: int, workdir: str, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.stderr_path = os.path.join(workdir, f"{name.split()[0]}.stderr")
        with open(self.stderr_path, "wb") as stderr:
            self.popen: subprocess.Popen[bytes] | None = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                cwd=REPO,
                preexec_fn=_die_with_parent,  # started from the main thread, before any scraper thread
            )
        self.pid = self.popen.pid
        self.exit_code: int | None = None

    def cpu(self) -> float:
        """CPU seconds so far: utime + stime of the whole process (its threads, live and ended)."""
        with open(f"/proc/{self.pid}/stat", "rb") as handle:
            stat = handle.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float | None:
        try:
            with open(f"/proc/{self.pid}/status", "rb") as handle:
                for line in handle:
                    if line.startswith(b"VmRSS:"):
                        return int(line.split()[1]) / 1024
        except (OSError, ValueError, IndexError):
            pass
        return None

    def alive(self) -> bool:
        if self.popen is None:
            return False
        self.exit_code = self.popen.poll()
        return self.exit_code is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(f"{self.name} exited ({self.exit_code}): {self.stderr()[-800:]}")

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` s; the exit status (None if it had to be killed)."""
        if self.popen is None:
            return self.exit_code
        popen, self.popen = self.popen, None
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(grace)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
                self.exit_code = None
                return None
        self.exit_code = popen.returncode
        return self.exit_code


@dataclass
class Scrape:
    seconds: float
    size: int
    status: int
    content_type: str
    body: bytes = b""


def scrape(port: int, timeout: float = 10.0) -> Scrape:
    """One GET /metrics on a new connection (as Prometheus after an idle period): wall time from connect to the
    body's last byte.  No Accept-Encoding: both exporters answer uncompressed."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers={"Accept": ACCEPT})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return Scrape(time.perf_counter() - t0, len(body), response.status, response.getheader("Content-Type") or "", body)


def load_series(body: bytes, pod_uids: set[str]) -> tuple[int, int]:
    """oomtop_memory_usage_bytes series with a pod_uid label: all of them, and those of the load's own pods."""
    total = ours = 0
    for line in body.decode("utf-8", "replace").splitlines():
        if not line.startswith(USAGE_SERIES):
            continue
        start = line.find('pod_uid="')
        if start < 0:
            continue
        total += 1
        start += len('pod_uid="')
        ours += line[start : line.index('"', start)] in pod_uids
    return total, ours


@dataclass
class Phase:
    exporter: str
    scrapers: int
    wall: float = 0.0
    cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    missed: int = 0  # slots skipped because the scraper's previous request was still running
    content_type: str = ""
    last_body: bytes = b""
    rss_mib: float | None = None

    @property
    def cpu_pct(self) -> float:
        return self.cpu / self.wall * 100 if self.wall else math.nan


def percentile(values: list[float], pct: float) -> float:
    """Nearest rank (no interpolation: a p95 is a latency that was measured)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def run_phase(exporter: Exporter, scrapers: int, seconds: float, together: bool, log) -> Phase:  # type: ignore[no-untyped-def]
    """``scrapers`` threads, each scraping once a second for ``seconds`` (spread over the second unless
    ``together``), while the exporter's CPU is taken at the start and after the last scrape has ended."""
    phase = Phase(exporter.name, scrapers)
    lock = threading.Lock()
    stop = threading.Event()
    start = time.monotonic() + 0.2
    end = start + seconds

    def scraper(offset: float) -> None:
        slot = start + offset
        while slot < end and not stop.is_set():
            delay = slot - time.monotonic()
            if delay > 0 and stop.wait(delay):
                return
            try:
                result = scrape(exporter.port)
            except (OSError, http.client.HTTPException) as error:
                with lock:
                    phase.errors.append(f"{type(error).__name__}: {error}")
            else:
                with lock:
                    if result.status != 200:
                        phase.errors.append(f"HTTP {result.status}")
                    else:
                        phase.latencies.append(result.seconds)
                        phase.sizes.append(result.size)
                        phase.content_type = result.content_type
                        phase.last_body = result.body
            slot += 1.0
            now = time.monotonic()
            while slot < now:  # the scrape took longer than its second: skip the slots it overran
                slot += 1.0
                with lock:
                    phase.missed += 1

    threads = [
        threading.Thread(target=scraper, args=(0.0 if together else k / scrapers,), name=f"scraper-{k}", daemon=True)
        for k in range(scrapers)
    ]
    time.sleep(max(0.0, start - time.monotonic()))
    t0, cpu0 = time.monotonic(), exporter.cpu()
    for thread in threads:
        thread.start()
    try:
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            exporter.check_alive()
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(15)
    phase.wall, phase.cpu = time.monotonic() - t0, exporter.cpu() - cpu0
    phase.rss_mib = exporter.rss_mib()
    exporter.check_alive()
    if scrapers:
        log(
            f"  {exporter.name}, {scrapers} scraper{'s' if scrapers != 1 else ''}: {len(phase.latencies)} scrapes, "
            f"p95 {percentile(phase.latencies, 95) * 1000:.1f} ms, CPU {phase.cpu_pct:.2f} % of a core, "
            f"{len(phase.errors)} errors, {phase.missed} slots skipped"
        )
    else:
        log(f"  {exporter.name}, idle: CPU {phase.cpu_pct:.2f} % of a core")
    return phase


def wait_ready(exporter: Exporter, timeout: float, ready, log) -> Scrape:  # type: ignore[no-untyped-def]
    """Scrape every 0.25 s until ``ready(scrape)`` holds; the last scrape."""
    deadline = time.monotonic() + timeout
    last: Scrape | None = None
    why = "no answer"
    while time.monotonic() < deadline:
        exporter.check_alive()
        try:
            last = scrape(exporter.port, timeout=5.0)
            if last.status == 200 and ready(last):
                return last
            why = f"HTTP {last.status}" if last.status != 200 else "not ready"
        except (OSError, http.client.HTTPException) as error:
            why = f"{type(error).__name__}: {error}"
        time.sleep(0.25)
    raise NotReady(f"{exporter.name} not ready after {timeout:g} s ({why}); stderr: {exporter.stderr()[-800:]}")


def phases(exporter: Exporter, args: argparse.Namespace, log, check=None) -> list[Phase]:  # type: ignore[no-untyped-def]
    out = []
    if args.idle_seconds > 0:
        out.append(run_phase(exporter, 0, args.idle_seconds, args.together, log))
    for count in args.scrapers:
        phase = run_phase(exporter, count, args.phase_seconds, args.together, log)
        if check is not None:
            check(phase)
        out.append(phase)
    return out


def loadavg() -> str:
    with open("/proc/loadavg") as handle:
        return " ".join(handle.read().split()[:3])


def run(args: argparse.Namespace, log) -> dict:  # type: ignore[no-untyped-def]
    results: dict = {"args": args, "loadavg_before": loadavg()}
    workdir = tempfile.mkdtemp(prefix="oomtop-benchserve-")
    load = Load()
    exporters: list[Exporter] = []
    try:
        if not args.no_node_exporter and not os.access(args.node_exporter, os.X_OK):
            raise BenchError(f"{args.node_exporter} is not installed (apt-get install prometheus-node-exporter)")
        load.build(args.pods, args.containers_per_pod, args.procs, args.busy, log)
        pod_uids = {os.path.basename(pod)[len("pod") :] for pod in load.pods}
        expected = len(load.pods) + len(load.containers)
        results["load"] = {
            "pods": len(load.pods),
            "containers": len(load.containers),
            "procs": len(load.children),
            "busy": len(load.busy),
            "busy_containers": len({load.placed[p] for p in load.busy}),
        }
        if load.busy:
            load.churn(True)
        cpu0, wall0 = load.busy_cpu(), time.monotonic()

        # (a) oomtop serve
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
        port = free_port()
        argv = [sys.executable, "-m", "oomtop", "serve", "--listen", f"{HOST}:{port}", "--interval", "1"]
        if args.kmsg:
            argv += ["--kmsg", args.kmsg]
        log(f"(a) {' '.join(argv[1:])}")
        oomtop = Exporter("oomtop serve", argv, port, workdir, env)
        exporters.append(oomtop)

        def sees_the_load(result: Scrape) -> bool:
            results["series"] = load_series(result.body, pod_uids)
            return results["series"][1] >= expected

        started = time.monotonic()
        try:
            wait_ready(oomtop, args.ready_timeout, sees_the_load, log)
        except NotReady:
            total, ours = results.get("series", (0, 0))
            raise BenchError(
                f"oomtop serve does not see the load: {ours} oomtop_memory_usage_bytes series of the load's pods and "
                f"containers (want {expected}), {total} with a pod_uid label in all, after {args.ready_timeout:g} s; "
                f"stderr: {oomtop.stderr()[-800:]}"
            ) from None
        total, ours = results["series"]
        log(
            f"oomtop serve sees the load after {time.monotonic() - started:.1f} s: "
            f"{ours} of its series ({total} in all)"
        )
        time.sleep(args.warmup)

        def check(phase: Phase) -> None:  # every phase's last scrape still holds the load
            total, ours = load_series(phase.last_body, pod_uids)
            if ours < expected:
                raise BenchError(f"a scrape during the phase held {ours} series of the load's pods, not {expected}")
            results["series"] = (total, ours)

        results["oomtop"] = phases(oomtop, args, log, check)
        results["oomtop_exit"] = oomtop.stop()
        results["oomtop_gzip"] = len(gzip.compress(results["oomtop"][-1].last_body, 6))

        # (b) node exporter
        if not args.no_node_exporter:
            port = free_port()
            argv = [args.node_exporter, f"--web.listen-address={HOST}:{port}"]
            log(f"(b) {' '.join(argv)}")
            node = Exporter("node-exporter", argv, port, workdir)
            exporters.append(node)
            wait_ready(node, args.ready_timeout, lambda result: b"node_memory_MemTotal_bytes" in result.body, log)
            time.sleep(args.warmup)
            results["node"] = phases(node, args, log)
            node.stop()
            results["node_gzip"] = len(gzip.compress(results["node"][-1].last_body, 6))
        results["sleeper_cpu"] = (load.busy_cpu() - cpu0) / max(1e-9, time.monotonic() - wall0)
        if load.busy:
            load.churn(False)
    finally:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            for exporter in exporters:
                exporter.stop(grace=2.0)
            problems = load.close()
            for line in problems:
                log(line)
            if not problems:
                log(f"removed {load.base}, all sleepers and the exporters")
            shutil.rmtree(workdir, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    results["loadavg_after"] = loadavg()
    return results


def _ms(phase: Phase, pct: float) -> str:
    return f"{percentile(phase.latencies, pct) * 1000:.1f}" if phase.latencies else "-"


def report(r: dict) -> tuple[str, bool]:
    args = r["args"]
    load = r.get("load", {})
    out = [""]
    out.append(
        f"oomtop serve benchmark: {load.get('pods', '?')} pods x {args.containers_per_pod} containers, "
        f"{load.get('procs', '?')} sleepers ({load.get('busy', 0)} churning every 50 ms in "
        f"{load.get('busy_containers', 0)} containers), interval 1 s, scrapers once a second each "
        f"({'all at the same instant' if args.together else 'spread over the second'}), "
        f"{args.phase_seconds:g} s per phase; Python {sys.version.split()[0]}, Linux {os.uname().release}, "
        f"{os.cpu_count()} cpus"
    )
    out.append(f"load average (1/5/15 min): {r['loadavg_before']} before, {r['loadavg_after']} after")
    total, ours = r.get("series", (0, 0))
    out.append(
        f"oomtop's scrape: {ours} oomtop_memory_usage_bytes series of the load's pods and containers, "
        f"{total} with a pod_uid label in all"
    )
    if r.get("sleeper_cpu"):
        out.append(f"the churning sleepers themselves used {r['sleeper_cpu'] * 100:.1f} % of one core meanwhile")
    out.append("")
    head = (
        f"  {'exporter':<14} {'scrapers':>8} {'scrapes':>7} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} "
        f"{'bytes':>9} {'CPU %':>7} {'ms/scrape':>9} {'errors':>6}"
    )
    out.append(head)
    out.append("  " + "-" * (len(head) - 2))
    rows: dict[tuple[str, int], Phase] = {}
    for phases in (r.get("oomtop", []), r.get("node", [])):
        idle = next((p for p in phases if p.scrapers == 0), None)
        for p in phases:
            rows[(p.exporter, p.scrapers)] = p
            size = f"{max(p.sizes):,}" if p.sizes else "-"
            per_scrape = "-"
            if p.latencies and idle is not None:  # CPU above the idle rate, per scrape
                per_scrape = f"{(p.cpu - idle.cpu_pct / 100 * p.wall) / len(p.latencies) * 1000:.2f}"
            out.append(
                f"  {p.exporter:<14} {p.scrapers if p.scrapers else 'idle':>8} {len(p.latencies):>7} {_ms(p, 50):>7} "
                f"{_ms(p, 95):>7} {_ms(p, 100):>7} {size:>9} {p.cpu_pct:>7.2f} {per_scrape:>9} "
                f"{len(p.errors) + p.missed:>6}"
            )
    out.append("")
    out.append(
        "  CPU %: utime + stime of the exporter over the phase, % of one core (1 % = 10 ms of CPU a second); "
        "ms/scrape: CPU above the idle phase's rate, per scrape; errors: failed requests and skipped slots"
    )
    notes = []
    for key, name in (("oomtop", "oomtop serve"), ("node", "node-exporter")):
        phases = r.get(key)
        if not phases:
            continue
        p = phases[-1]
        notes.append(
            f"  {name}: Content-Type {p.content_type or '?'}; the last body gzipped (level 6) would be "
            f"{r.get(key + '_gzip', 0):,} bytes; RSS at the end {p.rss_mib or 0:.0f} MiB"
        )
    out.extend(notes)
    if "oomtop_exit" in r:
        out.append(f"  oomtop serve exit status on SIGTERM: {r['oomtop_exit']}")
    for p in rows.values():
        for error in sorted(set(p.errors))[:3]:
            out.append(f"  {p.exporter} x {p.scrapers}: {error}")

    out.append("")
    out.append("  ratios oomtop serve / node-exporter:")
    for count in [0, *args.scrapers]:
        a, b = rows.get(("oomtop serve", count)), rows.get(("node-exporter", count))
        if a is None or b is None:
            continue
        parts = []
        if a.latencies and b.latencies:
            parts.append(f"p95 {percentile(a.latencies, 95) / percentile(b.latencies, 95):.2f}x")
            parts.append(f"bytes {max(a.sizes) / max(b.sizes):.2f}x")
        parts.append(f"CPU {a.cpu_pct / b.cpu_pct:.2f}x" if b.cpu_pct > 0 else f"CPU {a.cpu_pct:.2f} % vs 0")
        label = "idle" if count == 0 else f"{count} scraper{'s' if count != 1 else ''}"
        out.append(f"    {label:<12} " + ", ".join(parts))

    out.append("")
    all_met = True
    scraped = [p for (name, n), p in rows.items() if name == "oomtop serve" and n > 0]
    if scraped:
        worst = max(percentile(p.latencies, 95) * 1000 if p.latencies else math.inf for p in scraped)
        met = worst < TARGET_P95_MS and not any(p.errors for p in scraped)
        all_met &= met
        detail = ", ".join(
            f"{p.scrapers} scraper{'s' if p.scrapers != 1 else ''} {percentile(p.latencies, 95) * 1000:.1f} ms"
            for p in scraped
            if p.latencies
        )
        out.append(f"verdict: oomtop serve scrape p95 < {TARGET_P95_MS:g} ms: {detail}: {'met' if met else 'NOT MET'}")
    one = rows.get(("oomtop serve", 1))
    idle = rows.get(("oomtop serve", 0))
    if one is not None:
        met = one.cpu_pct < TARGET_CPU_PCT
        all_met &= met
        rest = ", ".join(
            f"{'idle' if p.scrapers == 0 else str(p.scrapers) + ' scrapers'} {p.cpu_pct:.2f} %"
            for (name, n), p in rows.items()
            if name == "oomtop serve" and n != 1
        )
        out.append(
            f"verdict: oomtop serve at 1 s with 1 scraper < {TARGET_CPU_PCT:g} % of one core: {one.cpu_pct:.2f} % "
            f"({rest}): {'met' if met else 'NOT MET'}"
        )
    elif idle is not None:
        out.append(f"verdict: oomtop serve at 1 s idle {idle.cpu_pct:.2f} % of one core (no 1-scraper phase)")
    return "\n".join(out), all_met


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase-seconds", type=float, default=30.0, help="length of each scraped phase (default 30)")
    ap.add_argument(
        "--idle-seconds", type=float, default=20.0, help="length of the unscraped phase (default 20; 0 skips it)"
    )
    ap.add_argument(
        "--scrapers",
        type=lambda text: [int(x) for x in text.split(",") if x],
        default=[1, 10],
        metavar="N,N",
        help="scraper counts, one phase each (default 1,10)",
    )
    ap.add_argument(
        "--together",
        action="store_true",
        help="all scrapers fire at the same instant each second (default: spread evenly over the second)",
    )
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds between an exporter's readiness and its phases")
    ap.add_argument("--ready-timeout", type=float, default=60.0, help="seconds to wait for an exporter's first scrape")
    ap.add_argument("--kmsg", metavar="PATH|none", help="passed to oomtop serve (default: its own, /dev/kmsg)")
    ap.add_argument("--node-exporter", default=NODE_EXPORTER, metavar="PATH", help=f"default {NODE_EXPORTER}")
    ap.add_argument("--no-node-exporter", action="store_true", help="measure oomtop serve alone")
    ap.add_argument("--pods", type=int, default=50)
    ap.add_argument("--containers-per-pod", type=int, default=4)
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument(
        "--busy",
        type=float,
        default=10.0,
        metavar="PCT",
        help="PCT %% of the sleepers (in about PCT %% of the containers) churn memory every 50 ms "
        "throughout (bench_poll.py's busy mode; default 10, 0 = an idle load)",
    )
    args = ap.parse_args()
    if args.phase_seconds <= 0 or args.idle_seconds < 0 or args.warmup < 0:
        ap.error("--phase-seconds must be more than 0, --idle-seconds and --warmup at least 0")
    if not args.scrapers or any(n < 1 for n in args.scrapers):
        ap.error("--scrapers: counts of 1 or more, comma-separated")
    if not 0 <= args.busy <= 100:
        ap.error("--busy: a percentage, 0-100")
    if args.pods < 1 or args.containers_per_pod < 1:
        ap.error("--pods and --containers-per-pod: at least 1")

    def log(message: str) -> None:
        print(f"[bench] {message}", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        results = run(args, log)
    except (KeyboardInterrupt, Interrupted) as error:
        log(f"interrupted ({str(error) or 'SIGINT'}); cleaned up")
        return 130
    except BenchError as error:
        log(f"FAILED: {error}")
        return 1
    except Exception:  # the load and the exporters must be cleaned up whatever failed  # noqa: BLE001
        traceback.print_exc()
        return 1
    text, _met = report(results)
    print(text, flush=True)
    return 0


if __name__ == "__main__":
    assert bench_poll.MEMCG_ROOT  # the load lives where bench_poll.py puts it
    sys.exit(main())
