#!/usr/bin/env python3
"""Recording cost: oomtop's recorder next to ``atop -w`` on the same kubelet-shaped load, side by side in one run.

    sudo python bench/bench_record.py [--minutes 10] [--fast-seconds 60] [--busy 10]

Builds the load of bench_poll.py (its ``Load``: 50 pods x 4 containers under a cgroup tree of its own, 1,000 sleeper
processes, ``--busy`` % of them churning their memory every 50 ms), then, at the same time and for the same minutes:

(a) ``python -m oomtop record FILE --interval 1 --duration MIN*60`` (the real headless recorder: LiveSource, the
    collector, the kernel log, the Recorder), and
(b) ``atop -w FILE 1 MIN*60`` (with ``ATOPACCT=`` so atop does not switch on process accounting);

their file sizes and CPU times (wait4 rusage of each process: user + system, all threads and children).  Then
(c) a shorter oomtop recording at 0.1 s (``--fast-seconds``) for bytes per sample at 10 Hz, and the extrapolation of
(a) to one hour at 1 s.  Targets: oomtop's file smaller than atop's, no more CPU than atop, 1 hour at 1 s < 20 MB.

Needs root and the cgroup v1 memory controller (as bench_poll.py).  Everything it creates (cgroups, sleepers, the
recordings in a temporary directory unless ``--keep``) is removed on exit, also on errors, Ctrl-C, SIGTERM, SIGHUP.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

import bench_poll  # the load and its clean-up
from bench_poll import Interrupted, Load, _on_signal

MB = 1_000_000
MIB = 1 << 20


class Proc:
    """A child with stdio on /dev/null (stderr to a file), its CPU taken from wait4's rusage."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], stderr_path: str) -> None:
        self.name = name
        self.argv = argv
        self.stderr_path = stderr_path
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        self.started = time.monotonic()
        self.pid: int | None = os.posix_spawnp(argv[0], argv, env, file_actions=actions)
        self.cpu: float | None = None
        self.user: float | None = None
        self.system: float | None = None
        self.exit_code: int | None = None
        self.wall: float | None = None
        self.max_rss_kib: int | None = None

    def proc_cpu(self) -> float | None:
        """CPU seconds so far from /proc/<pid>/stat (utime + stime of every thread), while it runs."""
        if self.pid is None:
            return None
        try:
            with open(f"/proc/{self.pid}/stat", "rb") as handle:
                stat = handle.read()
            fields = stat[stat.rindex(b")") + 2 :].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def poll(self) -> bool:
        """True once the child has exited (and was reaped)."""
        if self.pid is None:
            return True
        pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self._reaped(status, usage)
        return True

    def wait(self) -> None:
        if self.pid is not None:
            _, status, usage = os.wait4(self.pid, 0)
            self._reaped(status, usage)

    def _reaped(self, status: int, usage) -> None:  # type: ignore[no-untyped-def]
        self.pid = None
        self.wall = time.monotonic() - self.started
        self.user, self.system = usage.ru_utime, usage.ru_stime
        self.cpu = usage.ru_utime + usage.ru_stime
        self.max_rss_kib = usage.ru_maxrss
        self.exit_code = os.waitstatus_to_exitcode(status)

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as handle:
                return handle.read().strip()
        except OSError:
            return ""

    def kill(self) -> None:
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = None


def oomtop_record(path: str, interval: float, seconds: float, stderr_path: str) -> Proc:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", "oomtop", "record", path, "--interval", f"{interval:g}", "--duration", f"{seconds:g}"]
    return Proc("oomtop", argv, env, stderr_path)


def atop_record(path: str, seconds: int, stderr_path: str) -> Proc:
    env = dict(os.environ, ATOPACCT="")  # no process accounting: atop must not switch acct on
    return Proc("atop", ["atop", "-w", path, "1", str(seconds)], env, stderr_path)


def recording_facts(path: str) -> dict:
    """Samples, span and the last sample's size of an oomtop recording (the reader, as a replay would open it)."""
    from oomtop.record.reader import Recording

    recording = Recording(path)
    try:
        count = 0
        first = last = None
        for sample in recording.iter_samples():
            count += 1
            first = first or sample
            last = sample
        return {
            "samples": count,
            "span": (last.time - first.time) if first and last else 0.0,
            "cgroups": len(last.cgroups) if last else 0,
            "tasks": len(last.tasks) if last else 0,
            "segments": len(recording.segments),
            "damage": recording.damage,
            "complete": recording.complete,
            "events": len(recording.events),
        }
    finally:
        recording.close()


def composition(path: str) -> dict:
    """What the deltas of a recording are made of: raw (uncompressed) JSON bytes per part, and how often the member
    order was rewritten; the compressed size is the file's."""
    import json
    import zlib

    from oomtop.record.frames import DATA, MAGIC, SEGMENT_START, Frame, scan

    with open(path, "rb") as handle:
        data = handle.read()
    parts = {
        "keyframes": 0,
        "tasks": 0,
        "task_order": 0,
        "cgroups": 0,
        "cgroup_order": 0,
        "identities": 0,
        "node+warnings+times": 0,
    }
    counts = {
        "deltas": 0,
        "keyframes": 0,
        "task_order_changes": 0,
        "cgroup_order_changes": 0,
        "task_records": 0,
        "cgroup_records": 0,
    }
    decompressor = None
    buffer = b""

    def size(value):
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    for frame in scan(data, len(MAGIC)):
        if not isinstance(frame, Frame) or frame.type != DATA:
            continue
        if frame.flags & SEGMENT_START:
            decompressor, buffer = zlib.decompressobj(), b""
        if decompressor is None:
            continue
        buffer += decompressor.decompress(frame.payload(data))
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            record = json.loads(line)
            if record[0] == "K":
                counts["keyframes"] += 1
                parts["keyframes"] += len(line)
                continue
            counts["deltas"] += 1
            _, t, mono, seq, node, warnings, identities, cgroups, cgroup_order, tasks, task_order = record
            parts["tasks"] += size(tasks)
            parts["cgroups"] += size(cgroups)
            parts["identities"] += size(identities)
            parts["task_order"] += size(task_order)
            parts["cgroup_order"] += size(cgroup_order)
            parts["node+warnings+times"] += size([t, mono, seq, node, warnings])
            counts["task_order_changes"] += task_order is not None
            counts["cgroup_order_changes"] += cgroup_order is not None
            counts["task_records"] += len(tasks)
            counts["cgroup_records"] += len(cgroups)
    return {"raw": parts, "counts": counts, "file": len(data)}


def atop_samples(path: str) -> int | None:
    """Samples in an atop raw file, counted by ``atop -r FILE -P CPU`` (one "CPU" line per sample, after a SEP)."""
    try:
        out = subprocess.run(
            ["atop", "-r", path, "-P", "CPU"],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, ATOPACCT=""),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return sum(1 for line in out.stdout.splitlines() if line.startswith("CPU ")) or None


def ensure_atop(log) -> str | None:  # type: ignore[no-untyped-def]
    if shutil.which("atop"):
        return None
    log("atop is not installed: apt-get install -y atop")
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "atop"],
        capture_output=True,
        text=True,
        env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
        check=False,
    )
    if done.returncode != 0 or not shutil.which("atop"):
        return f"atop could not be installed: {done.stderr.strip()[-200:]}"
    # Debian's package starts an atop daemon and an accounting service of its own: not part of this measurement.
    for unit in ("atop", "atopacct"):
        subprocess.run(["systemctl", "stop", unit], capture_output=True, check=False)
    return None


def run(args: argparse.Namespace, log) -> dict:  # type: ignore[no-untyped-def]
    results: dict = {"args": args}
    workdir = args.keep or tempfile.mkdtemp(prefix="oomtop-benchrec-")
    os.makedirs(workdir, exist_ok=True)
    results["workdir"] = workdir
    load = Load()
    procs: list[Proc] = []
    try:
        problem = ensure_atop(log)
        if problem:
            results["atop_error"] = problem
        load.build(args.pods, args.containers_per_pod, args.procs, args.busy, log)
        results["load"] = {
            "pods": len(load.pods),
            "containers": len(load.containers),
            "procs": len(load.children),
            "busy": len(load.busy),
            "busy_containers": len({load.placed[p] for p in load.busy}),
        }
        if load.busy:
            load.churn(True)
            time.sleep(0.5)
        seconds = round(args.minutes * 60)
        oomtop_file = os.path.join(workdir, "oomtop-1s.oomrec")
        atop_file = os.path.join(workdir, "atop-1s.raw")
        log(f"(a) oomtop record --interval 1 and (b) atop -w 1, side by side for {seconds} s")
        cpu0, wall0 = load.busy_cpu(), time.monotonic()
        a = oomtop_record(oomtop_file, 1.0, seconds, os.path.join(workdir, "oomtop-1s.stderr"))
        procs.append(a)
        b = (
            atop_record(atop_file, seconds, os.path.join(workdir, "atop.stderr"))
            if "atop_error" not in results
            else None
        )
        if b is not None:
            procs.append(b)
        next_progress = time.monotonic() + 60
        # Steady state: CPU between WARM_S after the start (imports, the first full read are behind) and a few
        # seconds before the end, read from /proc/<pid>/stat of both at the same instants.
        marks: dict[str, list[tuple[float, float | None, float | None]]] = {"start": [], "end": []}
        warm_s, end_s = (30.0, seconds - 5.0) if seconds >= 90 else (None, None)
        while not all(p.poll() for p in procs):
            elapsed = time.monotonic() - wall0
            for name, at in (("start", warm_s), ("end", end_s)):
                if at is not None and elapsed >= at and not marks[name]:
                    marks[name].append((time.monotonic(), a.proc_cpu(), b.proc_cpu() if b else None))
            if time.monotonic() >= next_progress:
                next_progress += 60
                size_a = os.path.getsize(oomtop_file) if os.path.exists(oomtop_file) else 0
                size_b = os.path.getsize(atop_file) if os.path.exists(atop_file) else 0
                log(f"  {time.monotonic() - wall0:5.0f} s: oomtop {size_a / MB:.2f} MB, atop {size_b / MB:.2f} MB")
            time.sleep(0.5)
            if time.monotonic() - wall0 > seconds + 120:
                raise RuntimeError("a recorder ran more than 2 minutes past its duration")
        if marks["start"] and marks["end"]:
            (t1, a1, b1), (t2, a2, b2) = marks["start"][0], marks["end"][0]
            results["steady"] = {
                "seconds": t2 - t1,
                "oomtop": (a2 - a1) / (t2 - t1) if a1 is not None and a2 is not None else None,
                "atop": (b2 - b1) / (t2 - t1) if b1 is not None and b2 is not None else None,
            }
        results["sleeper_cpu"] = (load.busy_cpu() - cpu0) / max(1e-9, time.monotonic() - wall0)
        results["a"] = {"proc": a, "size": os.path.getsize(oomtop_file), "seconds": seconds}
        if a.exit_code != 0:
            raise RuntimeError(f"oomtop record exited {a.exit_code}: {a.stderr()[-500:]}")
        results["a"].update(recording_facts(oomtop_file))
        results["a"]["composition"] = composition(oomtop_file)
        if b is not None:
            if b.exit_code != 0 or not os.path.exists(atop_file):
                results["atop_error"] = f"atop exited {b.exit_code}: {b.stderr()[-300:]}"
            else:
                results["b"] = {"proc": b, "size": os.path.getsize(atop_file), "samples": atop_samples(atop_file)}

        fast_file = os.path.join(workdir, "oomtop-100ms.oomrec")
        log(f"(c) oomtop record --interval 0.1 for {args.fast_seconds:g} s")
        c = oomtop_record(fast_file, 0.1, args.fast_seconds, os.path.join(workdir, "oomtop-100ms.stderr"))
        procs.append(c)
        c.wait()
        if c.exit_code != 0:
            raise RuntimeError(f"oomtop record --interval 0.1 exited {c.exit_code}: {c.stderr()[-500:]}")
        results["c"] = {"proc": c, "size": os.path.getsize(fast_file), **recording_facts(fast_file)}
        if load.busy:
            load.churn(False)
    finally:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        try:
            for proc in procs:
                proc.kill()
            problems = load.close()
            for line in problems:
                log(line)
            if not problems:
                log(f"removed {load.base} and all sleepers")
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                log(f"recordings kept in {workdir}")
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return results


def report(r: dict) -> str:
    args = r["args"]
    a, b, c = r.get("a"), r.get("b"), r.get("c")
    load = r.get("load", {})
    out = [""]
    out.append(
        f"oomtop recording benchmark: {load.get('pods', '?')} pods x {args.containers_per_pod} containers, "
        f"{load.get('procs', '?')} sleepers ({load.get('busy', 0)} churning every 50 ms in "
        f"{load.get('busy_containers', 0)} containers), {args.minutes:g} min at 1 s side by side; "
        f"Python {sys.version.split()[0]}, Linux {os.uname().release}, {os.cpu_count()} cpus"
    )
    if a:
        out.append(
            f"oomtop's recording: {a['samples']} samples over {a['span']:.0f} s, {a['segments']} segments, last "
            f"sample {a['cgroups']} cgroups / {a['tasks']} tasks, {a['events']} kills, "
            f"{'complete' if a['complete'] else 'not closed'}, damage: {a['damage'] or 'none'}"
        )
    if "sleeper_cpu" in r:
        out.append(f"the churning sleepers themselves used {r['sleeper_cpu'] * 100:.1f} % of one core meanwhile")
    out.append("")
    out.append(f"  {'':<46} {'oomtop':>12} {'atop -w':>12}")
    out.append(f"  {'-' * 46} {'-' * 12} {'-' * 12}")

    def row(label: str, x: object, y: object) -> None:
        out.append(f"  {label:<46} {x!s:>12} {y!s:>12}")

    pa = a["proc"] if a else None
    pb = b["proc"] if b else None

    def fmt_mb(n):
        return f"{n / MB:.2f} MB"

    row(f"file after {args.minutes:g} min at 1 s", fmt_mb(a["size"]) if a else "-", fmt_mb(b["size"]) if b else "-")
    samples_b = b.get("samples") if b else None
    row("samples in the file", a["samples"] if a else "-", samples_b or (f"~{int(args.minutes * 60)}" if b else "-"))
    per_a = a["size"] / max(1, a["samples"]) if a else None
    per_b = b["size"] / max(1, samples_b or int(args.minutes * 60)) if b else None
    row("bytes per sample at 1 s", f"{per_a:,.0f}" if per_a else "-", f"{per_b:,.0f}" if per_b else "-")
    row("CPU s (user + sys, whole process)", f"{pa.cpu:.2f}" if pa else "-", f"{pb.cpu:.2f}" if pb else "-")
    row(
        "  user / sys",
        f"{pa.user:.1f} / {pa.system:.1f}" if pa else "-",
        f"{pb.user:.1f} / {pb.system:.1f}" if pb else "-",
    )
    row(
        "CPU, % of one core",
        f"{pa.cpu / pa.wall * 100:.2f}%" if pa else "-",
        f"{pb.cpu / pb.wall * 100:.2f}%" if pb else "-",
    )
    row(
        "CPU ms per sample",
        f"{pa.cpu / max(1, a['samples']) * 1000:.1f}" if pa else "-",
        f"{pb.cpu / max(1, samples_b or int(args.minutes * 60)) * 1000:.1f}" if pb else "-",
    )
    row("max RSS", f"{pa.max_rss_kib / 1024:.0f} MiB" if pa else "-", f"{pb.max_rss_kib / 1024:.0f} MiB" if pb else "-")
    hour_a = per_a * 3600 if per_a else None
    hour_b = per_b * 3600 if per_b else None
    row("1 hour at 1 s (extrapolated)", fmt_mb(hour_a) if hour_a else "-", fmt_mb(hour_b) if hour_b else "-")
    if c:
        per_c = c["size"] / max(1, c["samples"])
        row(f"bytes per sample at 0.1 s ({c['samples']} samples)", f"{per_c:,.0f}", "-")
        row("  1 hour at 0.1 s (extrapolated)", fmt_mb(per_c * 36000), "-")
        pc = c["proc"]
        row("  CPU at 0.1 s, % of one core", f"{pc.cpu / pc.wall * 100:.2f}%", "-")
    steady = r.get("steady")
    if steady:
        row(
            f"steady CPU, % of one core ({steady['seconds']:.0f} s window)",
            f"{steady['oomtop'] * 100:.2f}%" if steady["oomtop"] is not None else "-",
            f"{steady['atop'] * 100:.2f}%" if steady["atop"] is not None else "-",
        )
    if "atop_error" in r:
        out.append(f"  atop: {r['atop_error']}")
    comp = a.get("composition") if a else None
    if comp:
        raw, counts = comp["raw"], comp["counts"]
        total = sum(raw.values()) or 1
        out.append("")
        out.append(
            f"  oomtop's 1 s recording, uncompressed JSON by part ({total / MB:.1f} MB raw, "
            f"{comp['file'] / MB:.2f} MB in the file: {total / max(1, comp['file']):.1f}x):"
        )
        out.append("    " + ", ".join(f"{name} {value / total * 100:.0f}%" for name, value in raw.items()))
        out.append(
            f"    {counts['keyframes']} keyframes, {counts['deltas']} deltas; per delta "
            f"{counts['task_records'] / max(1, counts['deltas']):.0f} task and "
            f"{counts['cgroup_records'] / max(1, counts['deltas']):.0f} cgroup records; the task order was "
            f"rewritten in {counts['task_order_changes']} deltas, the cgroup order in "
            f"{counts['cgroup_order_changes']}"
        )

    out.append("")
    out.append(f"  {'target':<46} {'value':>12} {'verdict':>12}")
    out.append(f"  {'-' * 46} {'-' * 12} {'-' * 12}")

    def verdict(label: str, value: float | None, ok: bool | None, fmt: str) -> None:
        shown = "-" if value is None else fmt.format(value)
        out.append(f"  {label:<46} {shown:>12} {'n/a' if ok is None else ('ok' if ok else 'MISS'):>12}")

    size_ratio = a["size"] / b["size"] if a and b else None
    verdict("oomtop file / atop file  (< 1)", size_ratio, None if size_ratio is None else size_ratio < 1, "{:.3f}")
    cpu_ratio = pa.cpu / pb.cpu if pa and pb and pb.cpu else None
    verdict("oomtop CPU / atop CPU  (<= 1)", cpu_ratio, None if cpu_ratio is None else cpu_ratio <= 1, "{:.2f}")
    verdict(
        "1 hour at 1 s, MB  (< 20)",
        hour_a / MB if hour_a else None,
        None if hour_a is None else hour_a < 20 * MB,
        "{:.2f}",
    )
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the side-by-side run at 1 s (default 10)")
    ap.add_argument("--fast-seconds", type=float, default=60.0, help="length of the 0.1 s run (default 60)")
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
    ap.add_argument("--keep", metavar="DIR", help="write the recordings to DIR and keep them")
    args = ap.parse_args()
    if args.minutes <= 0 or args.fast_seconds <= 0:
        ap.error("--minutes and --fast-seconds must be more than 0")
    if not 0 <= args.busy <= 100:
        ap.error("--busy: a percentage, 0-100")
    if args.keep and os.path.exists(args.keep) and os.listdir(args.keep):
        ap.error(f"--keep {args.keep}: not empty (recordings are never overwritten)")

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
    except Exception:  # the load must be cleaned up whatever failed  # noqa: BLE001
        traceback.print_exc()
        return 1
    print(report(results), flush=True)
    return 0


if __name__ == "__main__":
    assert bench_poll.MEMCG_ROOT  # the load lives where bench_poll.py puts it
    sys.exit(main())
