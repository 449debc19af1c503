"""Guest-side helpers for the events tests of the cgroup v2 tier (test_events_v2.py): the real command line
``python -m oomtop events --json`` as a subprocess, our own reading of /dev/kmsg with the kernel's timestamps,
the kernel log clock against CLOCK_MONOTONIC, and (DrivenWatcher) oomtop's Collector and OomWatcher driven step
by step in the test process.

Like v2lib, the kernel's view comes from /dev/kmsg, cgroupfs and procfs directly, never through oomtop's
readers, so a test can tell an oomtop bug from a badly designed scenario.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from v2lib import HarnessError, fs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
IN_MODIFY = 0x2
_FDINFO_WATCH = re.compile(r"inotify wd:\s*[0-9a-f]+ ino:([0-9a-f]+) sdev:[0-9a-f]+ mask:([0-9a-f]+)")
_KILLED = re.compile(r"Killed process (\d+) \(")


# ------------------------------------------------------------------------------------------- the command


def events_argv(*flags: str) -> list[str]:
    """argv of ``python -m oomtop events --json <flags>``, the command line a user runs."""
    return [sys.executable, "-m", "oomtop", "events", "--json", *flags]


@dataclass(frozen=True)
class Seen:
    """One stdout line of ``oomtop events --json`` and the CLOCK_MONOTONIC time this process read it."""

    t: float
    event: dict

    def paths(self) -> list[str]:
        e = self.event
        return [
            p
            for p in (e.get(k) for k in ("oom_cgroup", "task_cgroup", "detected_in", "oom_group_path"))
            if isinstance(p, str)
        ]

    @property
    def victim_pid(self) -> int | None:
        return (self.event.get("victim") or {}).get("pid")

    @property
    def killed_pids(self) -> list[int | None]:
        return [k.get("pid") for k in self.event.get("killed") or ()]

    def about(self, under: str, pids: set[int] = frozenset()) -> bool:  # type: ignore[assignment]
        """Concerns the cgroup ``under`` (a path at or below it) or one of ``pids``; never history."""
        if self.event.get("historical"):
            return False
        return (
            self.victim_pid in pids
            or any(k in pids for k in self.killed_pids)
            or any(p == under or p.startswith(under + "/") for p in self.paths())
        )

    def brief(self) -> str:
        e = self.event
        pod, ctr = e.get("pod") or {}, e.get("container") or {}
        return (
            f"[read {self.t:.3f}] victim={self.victim_pid} killed={self.killed_pids} kind={e.get('kind')} "
            f"oom_cgroup={e.get('oom_cgroup')} task_cgroup={e.get('task_cgroup')} "
            f"detected_in={e.get('detected_in')} group={e.get('oom_group_path')} count={e.get('count')} "
            f"pod={pod.get('uid')}/{pod.get('name')}/{pod.get('qos')} container={(ctr.get('id') or '')[:12]}/"
            f"{ctr.get('name')} source={e.get('source')} kernel_time_s={e.get('kernel_time_s')}"
        )


class EventsProcess:
    """``oomtop events --json <flags>`` running; stdout and stderr read by threads, each line stamped."""

    def __init__(self, *flags: str) -> None:
        self.flags = flags
        self.argv = events_argv(*flags)
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._threads = [
            threading.Thread(target=self._read, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr))
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, stream, sink: list[tuple[float, str]]) -> None:  # type: ignore[no-untyped-def]
        for raw in iter(stream.readline, b""):
            now = time.monotonic()
            with self._cond:
                sink.append((now, raw.decode("utf-8", "backslashreplace").rstrip("\n")))
                self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def seen(self) -> tuple[list[Seen], list[str]]:
        """Every event so far, and the stdout lines that were not one JSON object each."""
        with self._cond:
            lines = list(self.stdout)
        events, bad = [], []
        for t, line in lines:
            try:
                value = json.loads(line)
            except ValueError:
                bad.append(line)
                continue
            if isinstance(value, dict):
                events.append(Seen(t, value))
            else:
                bad.append(line)
        return events, bad

    def about(self, under: str, pids: set[int] = frozenset()) -> list[Seen]:  # type: ignore[assignment]
        return [s for s in self.seen()[0] if s.about(under, pids)]

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(line for _t, line in self.stderr)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return predicate()
                self._cond.wait(min(left, 0.05))
        return True

    # -- what it watches -------------------------------------------------------------------------------
    def _fds(self) -> dict[str, str]:
        base = f"/proc/{self.pid}/fd"
        found = {}
        try:
            names = os.listdir(base)
        except OSError:
            return found
        for name in names:
            with contextlib.suppress(OSError):
                found[name] = os.readlink(os.path.join(base, name))
        return found

    def modify_watches(self) -> set[int]:
        """Inode numbers this process watches for IN_MODIFY with inotify (the v2 wake-ups on memory.events;
        its directory watches for new cgroups have other masks), from /proc/<pid>/fdinfo."""
        inodes = set()
        for fd, target in self._fds().items():
            if "inotify" not in target:
                continue
            try:
                with open(f"/proc/{self.pid}/fdinfo/{fd}", encoding="ascii") as handle:
                    text = handle.read()
            except OSError:
                continue
            for m in _FDINFO_WATCH.finditer(text):
                if int(m[2], 16) & IN_MODIFY:
                    inodes.add(int(m[1], 16))
        return inodes

    def wait_sampled(self, cgroups: list[str], timeout: float = 30.0, margin_s: float = 0.3) -> float:
        """Until oomtop has taken each of ``cgroups`` into a Sample and has a wake-up registration on its
        memory.events (and holds /dev/kmsg unless ``--kmsg none``); returns the seconds waited.

        A wake-up registration alone is not enough: OomWakeups registers a new cgroup from its directory event,
        before any poll has read its counters.  The collector keeps each cgroup's memory.events.local open once a
        poll has read it, so that descriptor shows the poll happened; ``margin_s`` more lets the watcher take
        that Sample in (on_sample runs on the event loop right after the poll)."""
        want_kmsg = "none" not in self.flags
        t0 = time.monotonic()
        deadline = t0 + timeout
        missing: list[str] = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"{' '.join(self.argv)} exited with {self.proc.returncode}:\n{self.stderr_text()}")
            watched = self.modify_watches()
            files = set(self._fds().values())
            missing = [
                f"{rel} (wake-up)" for rel in cgroups if os.stat(fs(rel) + "/memory.events").st_ino not in watched
            ]
            missing += [f"{rel} (sampled)" for rel in cgroups if fs(rel) + "/memory.events.local" not in files]
            if want_kmsg and "/dev/kmsg" not in files:
                missing.append("/dev/kmsg")
            if not missing:
                time.sleep(margin_s)
                return time.monotonic() - t0
            time.sleep(0.02)
        raise HarnessError(
            f"{' '.join(self.argv)}: not ready within {timeout}s: {missing}\nstderr:\n{self.stderr_text()}"
        )

    # -- control ---------------------------------------------------------------------------------------
    def _states(self) -> list[str]:
        states = []
        try:
            tids = os.listdir(f"/proc/{self.pid}/task")
        except OSError:
            return states
        for tid in tids:
            try:
                with open(f"/proc/{self.pid}/task/{tid}/stat", encoding="ascii") as handle:
                    states.append(handle.read().rsplit(")", 1)[1].split()[0])
            except OSError:
                pass
        return states

    def freeze(self, timeout: float = 10.0) -> None:
        """SIGSTOP, until every thread is stopped: whatever happens now, oomtop sees it only after thaw()."""
        os.kill(self.pid, signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while not all(s in ("T", "t") for s in self._states() or ["?"]):
            if time.monotonic() > deadline:
                raise HarnessError(f"oomtop events {self.pid} did not stop: thread states {self._states()}")
            time.sleep(0.005)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGKILL (after SIGCONT, in case it is frozen): nothing of it needs to be flushed any more."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode

    def describe(self, under: str, pids: set[int] = frozenset()) -> str:  # type: ignore[assignment]
        events, bad = self.seen()
        ours = [s.brief() for s in events if s.about(under, pids)]
        others = [s.brief() for s in events if not s.about(under, pids) and not s.event.get("historical")]
        return (
            f"{' '.join(self.flags) or '(default flags)'}: {len(ours)} event(s) about {under}:\n    "
            + "\n    ".join(ours or ["(none)"])
            + (f"\n  non-JSON stdout: {bad}" if bad else "")
            + ("\n  its other events so far:\n    " + "\n    ".join(others[-6:]) if others else "")
            + f"\n  stderr: {self.stderr_text()[-1500:]!r}"
        )


# ------------------------------------------------------------------------------------------ the kernel log


@dataclass(frozen=True)
class Record:
    seq: int
    usec: int  # the kernel's stamp: local_clock(), microseconds since boot
    text: str


class KmsgTail:
    """/dev/kmsg from the moment it is opened, keeping each record's sequence number and kernel timestamp."""

    def __init__(self) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        os.lseek(self.fd, 0, os.SEEK_END)
        self.records: list[Record] = []

    def poll(self) -> list[Record]:
        while self.fd >= 0:
            try:
                raw = os.read(self.fd, 16384)
            except BlockingIOError:
                break
            except BrokenPipeError:
                continue
            if not raw:
                break
            head, _, text = raw.partition(b";")
            parts = head.split(b",")
            if len(parts) >= 3:
                self.records.append(
                    Record(int(parts[1]), int(parts[2]), text.split(b"\n", 1)[0].decode("utf-8", "replace"))
                )
        return self.records

    def lines(self) -> list[str]:
        return [r.text for r in self.poll()]

    def killed(self) -> dict[int, list[Record]]:
        """pid -> every "Killed process <pid>" record (an oom.group kill names its first victim twice)."""
        found: dict[int, list[Record]] = {}
        for record in self.poll():
            m = _KILLED.search(record.text)
            if m:
                found.setdefault(int(m[1]), []).append(record)
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> KmsgTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class KmsgClock:
    """CLOCK_MONOTONIC minus the kernel log's stamp, measured by writing records to /dev/kmsg."""

    offset_s: float
    uncertainty_s: float  # half the widest write window, plus half the spread of the probes

    def monotonic(self, usec: int) -> float:
        return usec / 1e6 + self.offset_s


def measure_kmsg_clock(probes: int = 5) -> KmsgClock:
    offsets, widths = [], []
    with KmsgTail() as tail:
        fd = os.open("/dev/kmsg", os.O_WRONLY | os.O_CLOEXEC)
        try:
            for i in range(probes):
                tag = f"oomtop-v2-events: clock probe {os.getpid()}-{i}-{time.monotonic_ns()}"
                before = time.clock_gettime(time.CLOCK_MONOTONIC)
                os.write(fd, f"<6>{tag}\n".encode())
                after = time.clock_gettime(time.CLOCK_MONOTONIC)
                record = next((r for r in tail.poll() if r.text.endswith(tag)), None)
                if record is None:
                    raise HarnessError("cannot read back our own /dev/kmsg record: no clock check")
                offsets.append((before + after) / 2 - record.usec / 1e6)
                widths.append((after - before) / 2)
        finally:
            os.close(fd)
    return KmsgClock(statistics.median(offsets), max(widths) + (max(offsets) - min(offsets)) / 2)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest rank."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def rmdir_when_empty(path: str, timeout: float = 10.0) -> float:
    """Remove a cgroup directory the moment the kernel lets us (its last task fully gone); returns when."""
    import errno

    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return time.monotonic()
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise HarnessError(f"rmdir {path}: {error}") from error
            time.sleep(0.002)


def pod_born_with_memory(tree, qos: str, name: str, limit: int | None = None):  # type: ignore[no-untyped-def]
    """kubepods, the QoS directory and a pod, made the way runc and systemd make them: +memory is written into
    each directory's cgroup.subtree_control before its children are created, so every cgroup has its memory
    files from the moment it exists.  (KubeTree.mkdir enables the controller in the parent right after the
    child's mkdir; a collector polling in that window sees a cgroup without memory.current, and oomtop then
    never collects it: see test_cgroup_gaining_memory_later_is_collected.)"""
    tree.build_kubepods()
    tree.set(tree.kubepods, "cgroup.subtree_control", "+memory")
    qos_dir = tree.qos_dir(qos)
    if qos_dir != tree.kubepods:
        tree.set(qos_dir, "cgroup.subtree_control", "+memory")
    pod = tree.add_pod(qos, limit, name=name)
    tree.set(pod.path, "cgroup.subtree_control", "+memory")
    return pod


class DrivenWatcher:
    """oomtop's own Collector and OomWatcher in this process, driven step by step (a poll, or the wake-ups of a
    given stretch of time), so that the order of polls, wake-ups and kills is the test's choice and not a race.
    Does what LiveSource does with them: on_sample after each poll, on_wakeup when the wake-up descriptor is
    readable, recheck and tick every few tens of ms."""

    def __init__(self, kmsg: bool = False) -> None:
        from oomtop.collect.cgroupfs import discover_hierarchy
        from oomtop.collect.collector import Collector, CollectorConfig
        from oomtop.collect.identity import NodeNames
        from oomtop.collect.oomwatch import OomWatcher

        config = CollectorConfig()
        self.collector = Collector(config)
        self.watcher = OomWatcher(
            discover_hierarchy(config.cgroup_root, config.procfs_root),
            "/dev/kmsg" if kmsg else None,
            NodeNames.load(config.host_root),
            procfs_root=config.procfs_root,
        )
        self.events: list = []  # every OomEvent, in order

    def poll(self) -> list:
        new = self.watcher.on_sample(self.collector.sample())
        self.events += new
        return new

    def run(self, seconds: float) -> list:
        """Serve wake-ups (and the kernel log) for ``seconds``, no polls."""
        import select as select_

        poller = select_.poll()
        for fd in (self.watcher.wakeup_fileno(), self.watcher.kmsg_fileno()):
            if fd is not None:
                poller.register(fd, select_.POLLIN)
        new: list = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready = {fd for fd, _ in poller.poll(max(1, int(min(left, 0.02) * 1000)))}
            if self.watcher.wakeup_fileno() in ready:
                new += self.watcher.on_wakeup()
            if self.watcher.kmsg_fileno() in ready:
                new += self.watcher.on_kmsg()
            new += self.watcher.recheck() + self.watcher.tick()
        self.events += new
        return new

    def close(self) -> None:
        self.watcher.close()
        self.collector.close()

    def __enter__(self) -> DrivenWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def event_brief(event) -> str:  # type: ignore[no-untyped-def]
    pod, ctr = event.pod, event.container
    return (
        f"victim={event.victim.pid} killed={[k.pid for k in event.killed]} task_cgroup={event.task_cgroup} "
        f"detected_in={event.detected_in} count={event.count} source={event.source} "
        f"pod={pod and pod.uid} container={ctr and ctr.id[:12]}"
    )
