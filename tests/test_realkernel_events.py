"""``oomtop events`` against real OOM kills on a cgroup v1 kernel.

Each test runs the real command line, ``python -m oomtop events --json ...``, as a subprocess, reads its stdout
line by line on a thread (each line stamped with ``time.monotonic()`` when read), builds kubepods-shaped cgroups
(``<test parent>/kubepods/<qos>/pod<uuid>/<64 hex>``, limits on pods and containers) under a TestHierarchy,
provokes real kills and checks that exactly one event per kill comes out, soon, with the right victim and
identity:

a. container-level OOM (``--interval 0.5`` and ``--interval 2``: the kill must not wait for the poll);
b. pod-level OOM: the limit on the pod, the victim a resident process of one container, the allocation that
   hits the limit in the other;
c. a burst of 20 kills within about a second;
d. a container cgroup removed as soon as its hog is dead (one it watched, and one created after the last poll);
e. ``events --no-follow`` after kills: they are listed as history and the command exits promptly;
f. ``--kmsg none``: the counters and eventfd wake-ups alone still give one event per kill, and a notice says
   what is missing; also when the container's cgroup is removed right after its kill.

Other people provoke real OOM kills on this machine at the same time: every check looks only at events whose
cgroup paths lie under this test's own parent, or whose victim is one of this test's own processes.  The kernel
writes a kill's full report (the header with the cgroup paths and the task table) at most 10 times per 5 s,
for all cgroups of the machine together; :func:`wait_for_report_budget` waits, before a test that needs full
reports, until the last 5 s of the log leave room for its kills.

Known oomtop bugs are pinned by ``xfail(strict=True)`` tests below (each says why); where a bug would stop every
test from running at all (``events --json`` rejected by the argument check), the helpers work around it in one
place, :func:`events_command`, and the pinned test shows the bug.  One race of the live loop (a poll in flight
while a kill's wake-up is handled) is replayed step by step on oomtop's own OomWatcher and Collector, so that it
shows every time rather than once in a few dozen kills.

Needs root, the v1 memory controller and (for all but f) a readable /dev/kmsg; skips elsewhere, fails instead
when OOMTOP_REQUIRE_REAL_KERNEL=1.  The harness in tests/realkernel/ is used as-is.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

import pytest

from tests.realkernel import (
    HogProcess,
    Pod,
    TestHierarchy,
    build_hog,
    kmsg_unavailable_reason,
    require_real_kernel,
    start_hog,
    start_trigger,
)

pytestmark = pytest.mark.memcg_v1

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20
QOS_JSON = {"guaranteed": "Guaranteed", "burstable": "Burstable", "besteffort": "BestEffort"}
REPORT_BURST = 10  # the kernel's OOM report rate limit: DEFAULT_RATELIMIT_BURST reports ...
REPORT_INTERVAL_S = 5.0  # ... per DEFAULT_RATELIMIT_INTERVAL, shared by every cgroup on the machine
GRACE_S = 0.5  # the watcher's wait for a log event before an unexplained counter increment becomes an event
EVENT_DEADLINE_S = 3.0  # "within a few seconds"
FAST_DEADLINE_S = 1.0  # with --interval 2 the kill must come before the next poll could have carried it
_KILLED = re.compile(r"Killed process (\d+) \((.*)\) total-vm")
_REPORT_PID = re.compile(r"oom-kill:.*,pid=(\d+),uid=")


# ------------------------------------------------------------------------------------------- the command


@functools.cache
def _json_needs_once() -> bool:
    """Whether ``oomtop events --json`` is refused by the top-level "--json needs --once" check (the events
    sub-command's --json lands in the same argparse dest).  Probed with a --sysfs-root that does not exist: the
    fixed CLI stops at that (after the --json check), the broken one at the --json check; both at once."""
    probe = subprocess.run(
        [sys.executable, "-m", "oomtop", "events", "--json", "--sysfs-root", "/nonexistent-oomtop-probe"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return "--json needs --once" in probe.stderr


def events_command(*flags: str) -> list[str]:
    """argv of ``python -m oomtop events --json <flags>``.  While the CLI refuses ``events --json`` (see
    test_events_json_is_accepted), ``--once`` goes before ``events``: main() checks it and then dispatches to
    ``events`` before ``--once`` is looked at, so the command run is the same."""
    prefix = ["--once"] if _json_needs_once() else []
    return [sys.executable, "-m", "oomtop", *prefix, "events", "--json", *flags]


@dataclass(frozen=True)
class Seen:
    """One stdout line of ``oomtop events --json``, with the monotonic time it was read."""

    t: float
    event: dict

    def paths(self) -> list[str]:
        return [
            p
            for p in (self.event.get(k) for k in ("oom_cgroup", "task_cgroup", "detected_in", "oom_group_path"))
            if isinstance(p, str)
        ]

    @property
    def victim_pid(self) -> int | None:
        victim = self.event.get("victim") or {}
        return victim.get("pid")

    def brief(self) -> str:
        e = self.event
        victim = e.get("victim") or {}
        pod, ctr = e.get("pod") or {}, e.get("container") or {}
        return (
            f"[read at {self.t:.3f}] pid={victim.get('pid')} comm={victim.get('comm')!r} kind={e.get('kind')} "
            f"oom_cgroup={e.get('oom_cgroup')} task_cgroup={e.get('task_cgroup')} "
            f"detected_in={e.get('detected_in')} pod={pod.get('uid')}/{pod.get('qos')} "
            f"container={(ctr.get('id') or '')[:12]} count={e.get('count')} source={e.get('source')} "
            f"historical={e.get('historical')} kernel_time_s={e.get('kernel_time_s')}"
        )


def open_files(pid: int) -> set[str]:
    """What the process has open (readlink of /proc/<pid>/fd/*)."""
    found: set[str] = set()
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError:
        return found
    for name in names:
        with contextlib.suppress(OSError):
            found.add(os.readlink(os.path.join(base, name)))
    return found


class EventsProcess:
    """``oomtop events --json <flags>`` running, its stdout and stderr read by threads as lines arrive."""

    def __init__(self, *flags: str) -> None:
        self.argv = events_command(*flags)
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
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

    def stderr_text(self) -> str:
        with self._cond:
            return "\n".join(line for _t, line in self.stderr)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not predicate()):
                    return predicate()
                self._cond.wait(min(left, 0.05))
        return True

    def open_files(self) -> set[str]:
        return open_files(self.pid)

    def wait_watching(self, tree: TestHierarchy, cgroups: list[str], kmsg: bool, timeout: float = 15.0) -> None:
        """Until oomtop holds /dev/kmsg (with ``kmsg``) and a wake-up registration (memory.oom_control open) on
        each of ``cgroups``: from then on it has sampled them (counters known) and is woken by their OOMs."""
        wanted = {tree.file(rel, "memory.oom_control") for rel in cgroups} | ({"/dev/kmsg"} if kmsg else set())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{' '.join(self.argv)} exited with {self.proc.returncode} while starting:\n{self.stderr_text()}"
                )
            missing = wanted - self.open_files()
            if not missing:
                return
            time.sleep(0.01)
        raise AssertionError(
            f"oomtop events did not start watching within {timeout}s; not open: {sorted(missing)}"
            f"\nstderr:\n{self.stderr_text()}"
        )

    def cpu_ticks(self) -> int:
        with open(f"/proc/{self.pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime, all threads

    def wait_idle(self, quiet_s: float = 0.4, timeout: float = 15.0) -> None:
        """Until the process has used no CPU for ``quiet_s`` (done starting up, waiting for the next update)."""
        deadline = time.monotonic() + timeout
        last, since = self.cpu_ticks(), time.monotonic()
        while time.monotonic() - since < quiet_s:
            assert time.monotonic() < deadline, f"oomtop events never went idle within {timeout}s"
            time.sleep(0.05)
            now = self.cpu_ticks()
            if now != last:
                last, since = now, time.monotonic()

    def stop(self, signum: int = signal.SIGINT, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for thread in self._threads:
            thread.join(5)
        return self.proc.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.stop()


# ------------------------------------------------------------------------------------- our own kernel log


@dataclass(frozen=True)
class KmsgRecord:
    seq: int
    usec: int
    text: str


class KmsgTail:
    """Our own reading of /dev/kmsg (independent of oomtop): from now, or the whole ring buffer.  With ``follow``
    a thread keeps reading as records come, so none is overwritten before we see it (other people's OOM reports
    and task tables can fill the ring buffer in seconds)."""

    def __init__(self, from_start: bool = False, follow: bool = True) -> None:
        self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        if not from_start:
            os.lseek(self.fd, 0, os.SEEK_END)
        self.records: list[KmsgRecord] = []
        self.lost = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True) if follow else None
        if self._thread is not None:
            self._thread.start()

    def _follow(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while not self._stop.is_set():
            if poller.poll(50):
                self.poll()

    def poll(self) -> list[KmsgRecord]:
        new = []
        with self._lock:
            while self.fd >= 0:
                try:
                    raw = os.read(self.fd, 16384)
                except BlockingIOError:
                    break
                except BrokenPipeError:  # overwritten before we read them: carry on with the next
                    self.lost += 1
                    continue
                if not raw:
                    break
                head, _, text = raw.partition(b";")
                parts = head.split(b",")
                if len(parts) < 3:
                    continue
                try:
                    new.append(
                        KmsgRecord(
                            int(parts[1]), int(parts[2]), text.split(b"\n", 1)[0].decode("utf-8", "backslashreplace")
                        )
                    )
                except ValueError:
                    continue
            self.records.extend(new)
        return new

    def snapshot(self) -> list[KmsgRecord]:
        with self._lock:
            return list(self.records)

    def kills(self) -> dict[int, KmsgRecord]:
        """pid -> its "Killed process" record (the kernel writes that line for every kill, rate limit or not)."""
        found = {}
        for record in self.snapshot():
            m = _KILLED.search(record.text)
            if m:
                found.setdefault(int(m[1]), record)
        return found

    def exit_race(self, first: int, second: int) -> str | None:
        """Why the kernel killed ``second`` right after ``first`` when the log shows the exit race, else None.

        exit_mmap() sets MMF_OOM_SKIP on the dying first victim before tlb_finish_mmu() frees (and uncharges) its
        last gathered pages, so a charge retrying in the same domain can OOM again, and the kernel then passes the
        first victim over and picks the next task.  The proof: the second kill comes after the first, and the
        second report's task table (when its header was not rate-limited) no longer lists the first victim."""
        records = self.snapshot()
        kills = self.kills()
        if first not in kills or second not in kills or kills[second].seq < kills[first].seq:
            return None
        start = next(i for i, r in enumerate(records) if r.seq == kills[first].seq)
        end = next(i for i, r in enumerate(records) if r.seq == kills[second].seq)
        block = records[start + 1 : end]
        header = [i for i, r in enumerate(block) if "invoked oom-killer" in r.text]
        if not header:
            return (
                f"the kernel killed {second} {(kills[second].usec - kills[first].usec) / 1000:.1f} ms after "
                f"{first}; the second report's header was rate-limited (no task table to check)"
            )
        rows = {int(m[1]) for r in block[header[-1] :] if (m := re.match(r"\[\s*(\d+)\]", r.text))}
        if not rows or first in rows:
            return None
        return (
            f"the kernel killed {second} {(kills[second].usec - kills[first].usec) / 1000:.1f} ms after "
            f"{first}, whose memory was still being freed (its task table lists {sorted(rows)}, not {first})"
        )

    def reported(self) -> set[int]:
        """Victims whose full report (header with cgroup paths, task table) the kernel wrote."""
        return {int(m[1]) for r in self.snapshot() if (m := _REPORT_PID.search(r.text))}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_for_report_budget(kills: int, margin: int = 2, timeout: float = 6.0) -> None:
    """Wait until ``kills`` more OOM reports surely get their header: the kernel's limit is 10 per window of
    5 s for the whole machine, and other people's tests kill too.  If fewer than 10 - kills headers were
    written in the last 5 s, the current window (if not already over) holds at most those.  Gives up after
    ``timeout`` (others may keep the budget used up; a kill logged without its header then says so)."""
    deadline = time.monotonic() + timeout
    while True:
        with KmsgTail(from_start=True, follow=False) as tail:
            tail.poll()
        now_us = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        recent = sorted(
            r.usec
            for r in tail.records
            if r.text.startswith("oom-kill:") and r.usec >= now_us - (REPORT_INTERVAL_S + 0.3) * 1e6
        )
        if len(recent) + kills + margin <= REPORT_BURST or time.monotonic() > deadline:
            return
        time.sleep(max(0.05, (recent[0] - now_us) / 1e6 + REPORT_INTERVAL_S + 0.35))


# --------------------------------------------------------------------------------------------- the kills


@dataclass
class Kill:
    """A process we had the kernel kill, and what its event must say."""

    pid: int
    comm: str
    cgroup: str  # the victim's cgroup, hierarchy-relative
    domain: str  # the cgroup whose limit was hit
    pod: Pod
    container_id: str
    released_at: float = 0.0  # monotonic: when the process was let allocate (or the trigger started)
    died_at: float = 0.0  # monotonic: when waitpid returned


def named_binary(binary: str, comm: str) -> str:
    """The hog under another name: the kernel takes a process's comm from the file name it was started by
    (another process cannot rename it: /proc/<pid>/comm is writable only from inside its thread group)."""
    assert "/" not in comm and len(comm) <= 15, comm
    path = os.path.join(os.path.dirname(binary), comm)
    if not os.path.lexists(path):
        os.symlink(os.path.basename(binary), path)
    return path


def read_comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm", encoding="utf-8") as handle:
        return handle.read().rstrip("\n")


def new_hog(tree: TestHierarchy, binary: str, cgroup: str, mib: int, comm: str, adj: int = 0) -> HogProcess:
    """A hog named ``comm``, waiting for its go byte."""
    hog = HogProcess(tree, named_binary(binary, comm), "hog", mib, cgroup, adj)
    deadline = time.monotonic() + 5
    while read_comm(hog.pid) != comm:  # between fork and exec it is still called python
        assert time.monotonic() < deadline, f"hog {hog.pid} is called {read_comm(hog.pid)!r}, not {comm!r}"
        time.sleep(0.001)
    return hog


def kill_for(hog: HogProcess, comm: str, domain: str, pod: Pod) -> Kill:
    return Kill(hog.pid, comm, hog.cgroup, domain, pod, hog.cgroup.rsplit("/", 1)[-1])


def wait_killed(hog: HogProcess, kill: Kill, timeout: float = 15.0) -> None:
    try:
        hog.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{hog!r} was not killed within {timeout}s") from None
    kill.died_at = time.monotonic()
    assert hog.popen.returncode == -signal.SIGKILL, f"{hog!r} exited with {hog.popen.returncode}, not SIGKILL"


def overshoot(tree: TestHierarchy, binary: str, cgroup: str, pod: Pod, comm: str, mib: int = 40) -> Kill:
    """One hog that allocates past its container's limit: the kernel kills it (the cgroup's only task)."""
    hog = new_hog(tree, binary, cgroup, mib, comm)
    kill = kill_for(hog, comm, cgroup, pod)
    kill.released_at = time.monotonic()
    hog.join_and_go()
    wait_killed(hog, kill)
    return kill


def rmdir_now(tree: TestHierarchy, rel: str, timeout: float = 5.0) -> float:
    """Remove a cgroup as soon as the kernel lets us (its dead task may take a moment to leave)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(tree.fs(rel))
            return time.monotonic()
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.EAGAIN) or time.monotonic() > deadline:
                raise
            time.sleep(0.002)


# ------------------------------------------------------------------------------------------------ checks


def is_ours(seen: Seen, tree: TestHierarchy, kills: list[Kill]) -> bool:
    prefix = tree.parent + "/"
    pids = {k.pid for k in kills}
    return any(p == tree.parent or p.startswith(prefix) for p in seen.paths()) or seen.victim_pid in pids


def assign(events: list[Seen], kills: list[Kill]) -> tuple[dict[int, list[Seen]], list[Seen]]:
    """Each event to the kill it reports: by victim pid, or (victim unknown) by the cgroup it was counted in."""
    by_kill: dict[int, list[Seen]] = {k.pid: [] for k in kills}
    stray = []
    for seen in events:
        pid = seen.victim_pid
        if pid is not None:
            target = next((k for k in kills if k.pid == pid), None)
        else:
            where = seen.event.get("detected_in") or seen.event.get("task_cgroup")
            candidates = [k for k in kills if k.cgroup == where]
            target = min(candidates, key=lambda k: len(by_kill[k.pid]), default=None)
        if target is None:
            stray.append(seen)
        else:
            by_kill[target.pid].append(seen)
    return by_kill, stray


def event_problems(seen: Seen, kill: Kill, historical: bool, victim_known: bool) -> list[str]:
    e = seen.event
    problems = []

    def expect(what: str, got: object, want: object) -> None:
        if got != want:
            problems.append(f"{what}: expected {want!r}, got {got!r}")

    victim = e.get("victim") or {}
    if victim_known:
        expect("victim.pid", victim.get("pid"), kill.pid)
        expect("victim.comm", victim.get("comm"), kill.comm)
        if "kmsg" not in (e.get("source") or []):
            problems.append(f"source: expected 'kmsg' among {e.get('source')}")
    else:
        expect("victim.pid", victim.get("pid"), None)
        expect("count", e.get("count"), 1)
    expect("kind", e.get("kind"), "memcg")
    expect("oom_cgroup", e.get("oom_cgroup"), kill.domain)
    expect("task_cgroup", e.get("task_cgroup"), kill.cgroup)
    pod = e.get("pod") or {}
    expect("pod.uid", pod.get("uid"), kill.pod.uid)
    expect("pod.qos", pod.get("qos"), QOS_JSON[kill.pod.qos])
    expect("container.id", (e.get("container") or {}).get("id"), kill.container_id)
    expect("historical", e.get("historical"), historical)
    if not e.get("source"):
        problems.append("source: empty")
    return problems


def check_events(
    events: list[Seen],
    kills: list[Kill],
    tree: TestHierarchy,
    *,
    historical: bool = False,
    victim_known: bool = True,
    deadline_s: float | None = EVENT_DEADLINE_S,
    reported: set[int] | None = None,
) -> list[str]:
    """Everything wrong with the events of our kills: missing, duplicated, stray, late or wrong in a field.
    ``reported``: the victims whose full report our own reading of the log saw (to say which were cut short)."""
    ours = [s for s in events if is_ours(s, tree, kills)]
    by_kill, stray = assign(ours, kills)
    problems = []
    for kill in kills:
        got = by_kill[kill.pid]
        label = f"kill of {kill.pid} ({kill.comm}) in {kill.cgroup}"
        if reported is not None and kill.pid not in reported:
            label += " [the kernel suppressed this kill's report header: rate limit]"
        if not got:
            problems.append(f"{label}: no event")
            continue
        if len(got) > 1:
            problems.append(
                f"{label}: {len(got)} events instead of one:\n      " + "\n      ".join(s.brief() for s in got)
            )
        wrong = event_problems(got[0], kill, historical, victim_known)
        if reported is not None and kill.pid not in reported and got[0].event.get("task_cgroup") is None:
            # The kernel printed only "Killed process N (comm)" (its report is rate-limited to 10 in 5 s) and the
            # victim was gone before oomtop could see where it lived: the victim must be right, the place may be
            # unknown, but never wrong.
            placement = ("oom_cgroup:", "task_cgroup:", "pod.", "container.")
            wrong = [w for w in wrong if not (w.startswith(placement) and w.endswith("got None"))]
        if wrong:
            problems.append(f"{label}: " + "; ".join(wrong) + f"\n      <- {got[0].brief()}")
        if deadline_s is not None and got[0].t - kill.died_at > deadline_s:
            problems.append(
                f"{label}: event read {got[0].t - kill.died_at:.2f}s after the victim died (limit {deadline_s}s)"
            )
    for seen in stray:
        problems.append(f"event for none of our kills: {seen.brief()}")
    return problems


def fail_if(problems: list[str], context: str) -> None:
    if problems:
        pytest.fail(f"{context}\n  " + "\n  ".join(problems), pytrace=False)


def settle_s(interval: float) -> float:
    """How long after the last kill a duplicate could still come: the next poll, the grace, a tick, slack."""
    return interval + GRACE_S + 0.6


def wait_reported(ev: EventsProcess, kills: list[Kill], tree: TestHierarchy, timeout: float) -> None:
    """Until every kill has an event (or the timeout); then the caller waits for late duplicates."""

    def done() -> bool:
        events, _ = ev.seen()
        by_kill, _ = assign([s for s in events if is_ours(s, tree, kills)], kills)
        return all(by_kill.values())

    ev.wait_until(done, timeout)


def gather(ev: EventsProcess, kills: list[Kill], tree: TestHierarchy, interval: float) -> tuple[list[Seen], list[str]]:
    wait_reported(ev, kills, tree, EVENT_DEADLINE_S + 1.0)
    time.sleep(settle_s(interval))
    events, bad = ev.seen()
    return events, [f"stdout line that is not a JSON object: {line[:200]!r}" for line in bad]


def describe(ev: EventsProcess, events: list[Seen], tree: TestHierarchy, kills: list[Kill]) -> str:
    ours = [s.brief() for s in events if is_ours(s, tree, kills)]
    return (
        f"{' '.join(ev.argv[1:])}: our events ({len(ours)} for {len(kills)} kills):\n    "
        + "\n    ".join(ours)
        + f"\n  stderr: {ev.stderr_text()[-1500:]!r}"
    )


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def real_kernel() -> None:
    require_real_kernel()


@pytest.fixture(scope="module")
def with_kmsg(real_kernel: None) -> None:
    require_real_kernel(kmsg_unavailable_reason())


@pytest.fixture(scope="module")
def hog_binary(real_kernel: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_hog(str(tmp_path_factory.mktemp("oomtop-events-hog")))


@pytest.fixture
def tree(real_kernel: None) -> Iterator[TestHierarchy]:
    with TestHierarchy() as hierarchy:
        yield hierarchy


# ---------------------------------------------------------------------------------- a. container-level OOM


@pytest.mark.parametrize("interval", [0.5, 2.0], ids=["interval-0.5", "interval-2"])
def test_container_oom(with_kmsg: None, hog_binary: str, tree: TestHierarchy, interval: float) -> None:
    pod = tree.add_pod("burstable", 256 * MIB)
    container = tree.add_container(pod, 16 * MIB)
    sibling = tree.add_container(pod, 64 * MIB)
    bystander = start_hog(tree, hog_binary, sibling, 8, 0)  # same pod, own domain: must not be touched
    with EventsProcess("--interval", str(interval)) as ev, KmsgTail() as kmsg:
        ev.wait_watching(tree, [pod.path, container, sibling], kmsg=True)
        wait_for_report_budget(1)
        kill = overshoot(tree, hog_binary, container, pod, "oomev worker a")
        events, bad = gather(ev, [kill], tree, interval)
        kmsg.poll()
        problems = bad + check_events(events, [kill], tree, reported=kmsg.reported())
        if interval >= 2 and not problems:
            first = next(s for s in events if s.victim_pid == kill.pid)
            if first.t - kill.died_at > FAST_DEADLINE_S:
                problems.append(
                    f"with --interval {interval} the kill came {first.t - kill.died_at:.2f}s after the "
                    f"victim died: the poll carried it, not the log or the wake-ups"
                )
        assert bystander.alive(), "the hog in the sibling container was killed too"
        fail_if(problems, describe(ev, events, tree, [kill]))


# ---------------------------------------------------------------------------------------- b. pod-level OOM


def test_pod_oom(with_kmsg: None, hog_binary: str, tree: TestHierarchy) -> None:
    """Limit 64 MiB on the pod (its containers' own 128 MiB limits are never reached); the victim, 24 MiB with
    oom_score_adj 1000, rests in container A; a trigger in container B grows to 40 MiB: the pod hits its limit and
    the kernel kills A's process, not the allocating one (and, in the kernel's exit race only, the trigger next)."""
    pod = tree.add_pod("burstable", 64 * MIB)
    a = tree.add_container(pod, 128 * MIB)
    b = tree.add_container(pod, 128 * MIB)
    victim = start_hog(tree, named_binary(hog_binary, "oomev pod-a"), a, 24, 1000)
    kill = kill_for(victim, "oomev pod-a", pod.path, pod)
    with EventsProcess("--interval", "0.5") as ev, KmsgTail() as kmsg:
        ev.wait_watching(tree, [pod.path, a, b], kmsg=True)
        wait_for_report_budget(2)  # a second kill may come (below): room for its header too
        kill.released_at = time.monotonic()
        trigger = start_trigger(tree, hog_binary, b, 40)
        wait_killed(victim, kill)
        status = trigger.wait_for(b"D", 15.0)
        kills = [kill]
        if status != b"D":
            # The kernel may kill a second time while the victim's memory is still being freed (about one run
            # in eight here): the trigger, then the pod's only task, is its next pick.  Allowed only when the
            # log proves that race, and then oomtop must report both kills.
            second = kill_for(trigger, "oomtop-trigger", pod.path, pod)
            second.released_at = kill.released_at
            wait_killed(trigger, second)
            deadline = time.monotonic() + 2
            while trigger.pid not in kmsg.kills() and time.monotonic() < deadline:
                time.sleep(0.02)
                kmsg.poll()
            race = kmsg.exit_race(victim.pid, trigger.pid)
            assert race, (
                f"the trigger in container B died ({trigger.popen.returncode}) and the kernel log does not "
                f"show the exit race:\n" + "\n".join(r.text for r in kmsg.snapshot()[-80:])
            )
            print(race)
            kills.append(second)
        events, bad = gather(ev, kills, tree, 0.5)
        kmsg.poll()
        problems = bad + check_events(events, kills, tree, reported=kmsg.reported())
        if len(kills) == 2 and {victim.pid, trigger.pid} <= kmsg.reported():  # both tables logged: oomtop tells
            notes = [n for s in events if s.victim_pid == trigger.pid for n in s.event.get("notes", [])]
            if not any("MMF_OOM_SKIP" in note for note in notes):
                problems.append(f"the second kill's event does not name the exit race: notes {notes}")
        fail_if(problems, describe(ev, events, tree, kills))


# -------------------------------------------------------------------------- d. cgroup removed after the kill


@pytest.mark.parametrize("when", ["watched", "unseen"])
def test_cgroup_removed_right_after_kill(with_kmsg: None, hog_binary: str, tree: TestHierarchy, when: str) -> None:
    """The container's cgroup is removed the moment its hog is reaped (as a runtime does), before oomtop's next
    poll.  ``watched``: oomtop had sampled it and registered its wake-up; ``unseen``: created after oomtop started
    watching the pod and killed before a poll could see it (a container that OOMs at start-up)."""
    pod = tree.add_pod("burstable", 256 * MIB)
    container = tree.add_container(pod, 16 * MIB) if when == "watched" else None
    with EventsProcess("--interval", "0.5") as ev, KmsgTail() as kmsg:
        ev.wait_watching(tree, [pod.path] + ([container] if container else []), kmsg=True)
        wait_for_report_budget(1)
        if container is None:
            container = tree.add_container(pod, 16 * MIB)
        kill = overshoot(tree, hog_binary, container, pod, "oomev gone d")
        removed_at = rmdir_now(tree, container)
        assert not os.path.exists(tree.fs(container))
        events, bad = gather(ev, [kill], tree, 0.5)
        kmsg.poll()
        problems = bad + check_events(events, [kill], tree, reported=kmsg.reported())
        fail_if(
            problems,
            describe(ev, events, tree, [kill]) + f"\n  cgroup removed {removed_at - kill.died_at:.3f}s "
            f"after the victim was reaped",
        )


# ------------------------------------------------------------------------------------- e. history at start


def test_no_follow_lists_history(with_kmsg: None, hog_binary: str, tree: TestHierarchy) -> None:
    """Kills made while no oomtop runs; ``events --no-follow`` then lists them (historical) and exits 0 at once."""
    guaranteed = tree.add_pod("guaranteed", 64 * MIB)
    besteffort = tree.add_pod("besteffort")
    g = tree.add_container(guaranteed, 16 * MIB)
    e = tree.add_container(besteffort, 16 * MIB)
    with KmsgTail() as kmsg:
        wait_for_report_budget(2)
        kills = [
            overshoot(tree, hog_binary, g, guaranteed, "oomev hist g"),
            overshoot(tree, hog_binary, e, besteffort, "oomev hist e"),
        ]
        deadline = time.monotonic() + 5
        while not {k.pid for k in kills} <= set(kmsg.kills()) and time.monotonic() < deadline:
            time.sleep(0.02)
            kmsg.poll()
        assert {k.pid for k in kills} <= set(kmsg.kills()), "the kills are not in the kernel log"
    started = time.monotonic()
    try:
        done = subprocess.run(events_command("--no-follow"), cwd=REPO, capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("events --no-follow still running after 20 s", pytrace=False)
    took = time.monotonic() - started
    events, problems = [], []
    for line in done.stdout.decode("utf-8", "backslashreplace").splitlines():
        try:
            events.append(Seen(started + took, json.loads(line)))
        except ValueError:
            problems.append(f"stdout line that is not JSON: {line[:200]!r}")
    if done.returncode != 0:
        problems.append(f"exit status {done.returncode}, expected 0")
    if took > 5.0:
        problems.append(f"took {took:.1f}s to list the history (expected to exit promptly)")
    problems += check_events(events, kills, tree, historical=True, deadline_s=None, reported=kmsg.reported())
    ours = [s.brief() for s in events if is_ours(s, tree, kills)]
    fail_if(
        problems,
        f"events --no-follow ({took:.2f}s, {len(events)} events in all): ours:\n    "
        + "\n    ".join(ours)
        + f"\n  stderr: {done.stderr.decode(errors='replace')[-1500:]!r}",
    )


# --------------------------------------------------------------------------------------------- c. a burst


BURST = 20


@dataclass
class BurstRun:
    kills: list[Kill]
    events: list[Seen]
    bad: list[str]
    spread_s: float
    reported: set[int]
    context: str
    tree_parent: str
    tree: TestHierarchy = field(repr=False)


@pytest.fixture(scope="module")
def burst(with_kmsg: None, hog_binary: str) -> BurstRun:
    """20 containers in 4 pods, each with a 40 MiB hog over its 16 MiB limit, all released together."""
    with TestHierarchy() as tree:
        pods = [tree.add_pod("burstable", 256 * MIB) for _ in range(4)]
        containers = [(pod, tree.add_container(pod, 16 * MIB)) for pod in pods for _ in range(BURST // 4)]
        with EventsProcess("--interval", "0.5") as ev, KmsgTail() as kmsg:
            ev.wait_watching(tree, [p.path for p in pods] + [c for _p, c in containers], kmsg=True)
            hogs = [new_hog(tree, hog_binary, c, 40, f"oomev burst{i:02d}") for i, (_p, c) in enumerate(containers)]
            kills = [
                kill_for(h, f"oomev burst{i:02d}", h.cgroup, pod)
                for i, (h, (pod, _c)) in enumerate(zip(hogs, containers, strict=False))
            ]
            for hog, kill in zip(hogs, kills, strict=False):
                kill.released_at = time.monotonic()
                hog.join_and_go()
            for hog, kill in zip(hogs, kills, strict=False):
                wait_killed(hog, kill)
            spread = max(k.died_at for k in kills) - min(k.released_at for k in kills)
            events, bad = gather(ev, kills, tree, 0.5)
            kmsg.poll()
            reported = kmsg.reported() & {k.pid for k in kills}
            context = (
                describe(ev, events, tree, kills) + f"\n  {len(kills)} kills within {spread:.2f}s; the kernel "
                f"wrote the full report (with cgroup paths) for {len(reported)} of them"
            )
    return BurstRun(kills, events, bad, spread, reported, context, tree.parent, tree)  # all removed by now


def test_burst_no_kill_missed(burst: BurstRun) -> None:
    """Every one of the 20 kills is reported within a few seconds, and no victim is reported twice."""
    assert burst.spread_s < 2.0, f"the burst took {burst.spread_s:.2f}s: not a burst"
    ours = [s for s in burst.events if is_ours(s, burst.tree, burst.kills)]
    problems = list(burst.bad)
    for kill in burst.kills:
        about = [
            s
            for s in ours
            if s.victim_pid == kill.pid
            or (s.victim_pid is None and kill.cgroup in (s.event.get("detected_in"), s.event.get("task_cgroup")))
        ]
        if not about:
            problems.append(f"kill of {kill.pid} in {kill.cgroup}: no event")
        elif about[0].t - kill.died_at > EVENT_DEADLINE_S:
            problems.append(f"kill of {kill.pid}: first event {about[0].t - kill.died_at:.2f}s after its death")
        named = [s for s in about if s.victim_pid == kill.pid]
        if len(named) > 1:
            problems.append(f"kill of {kill.pid}: victim reported {len(named)} times")
    fail_if(problems, burst.context)


def test_burst_exactly_one_event_per_kill(burst: BurstRun) -> None:
    problems = burst.bad + check_events(burst.events, burst.kills, burst.tree, reported=burst.reported)
    if problems:
        raise AssertionError(burst.context + "\n  " + "\n  ".join(problems))


# -------------------------------------------------------------------------------- f. without the kernel log


@dataclass
class NoKmsgRun:
    kills: list[Kill]
    events: list[Seen]
    bad: list[str]
    stderr: str
    opened_kmsg: bool
    context: str
    tree: TestHierarchy = field(repr=False)


@pytest.fixture(scope="module")
def no_kmsg(real_kernel: None, hog_binary: str) -> NoKmsgRun:
    """``--kmsg none``: a container-level kill in each of two pods, one after the other."""
    with TestHierarchy() as tree:
        pods = [tree.add_pod("burstable", 256 * MIB), tree.add_pod("besteffort")]
        containers = [tree.add_container(pod, 16 * MIB) for pod in pods]
        with EventsProcess("--kmsg", "none", "--interval", "0.5") as ev:
            ev.wait_watching(tree, [p.path for p in pods] + containers, kmsg=False)
            opened = "/dev/kmsg" in ev.open_files()
            kills = []
            for i, (pod, container) in enumerate(zip(pods, containers, strict=False)):
                wait_for_report_budget(1, timeout=2.0)  # not for us: other tests here want full reports
                kills.append(overshoot(tree, hog_binary, container, pod, f"oomev nolog{i}"))
                time.sleep(0.3)
            events, bad = gather(ev, kills, tree, 0.5)
            ev.stop()
            run = NoKmsgRun(kills, events, bad, ev.stderr_text(), opened, describe(ev, events, tree, kills), tree)
    return run  # all removed by now


def test_no_kmsg_one_event_per_kill(no_kmsg: NoKmsgRun) -> None:
    """From the counters (read at the eventfd wake-up or the next poll): pod, container, domain and count."""
    assert not no_kmsg.opened_kmsg, "--kmsg none, but oomtop opened /dev/kmsg"
    problems = no_kmsg.bad + check_events(no_kmsg.events, no_kmsg.kills, no_kmsg.tree, victim_known=False)
    fail_if(problems, no_kmsg.context)


def test_no_kmsg_tells_what_is_missing(no_kmsg: NoKmsgRun) -> None:
    lines = [line for line in no_kmsg.stderr.splitlines() if line.startswith("oomtop events:")]
    told = [line for line in lines if ("kernel log" in line or "kmsg" in line) and "victim" in line]
    assert told, f"no notice on stderr about the kernel log and the missing victim details; stderr: {no_kmsg.stderr!r}"
    assert len(told) == 1, f"told more than once: {told}"


def test_no_kmsg_cgroup_removed_right_after_kill(real_kernel: None, hog_binary: str, tree: TestHierarchy) -> None:
    pod = tree.add_pod("burstable", 256 * MIB)
    containers = [tree.add_container(pod, 16 * MIB) for _ in range(4)]
    with EventsProcess("--kmsg", "none", "--interval", "0.5") as ev:
        ev.wait_watching(tree, [pod.path, *containers], kmsg=False)
        kills = []
        for i, container in enumerate(containers):
            wait_for_report_budget(1, timeout=2.0)  # not for us: other tests here want full reports
            kills.append(overshoot(tree, hog_binary, container, pod, f"oomev gone{i}"))
            rmdir_now(tree, container)
        events, bad = gather(ev, kills, tree, 0.5)
        problems = bad + check_events(events, kills, tree, victim_known=False)
        if problems:
            raise AssertionError(describe(ev, events, tree, kills) + "\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("log", ["kmsg", "none"])
def test_kill_during_a_poll_counted_once(real_kernel: None, hog_binary: str, tree: TestHierarchy, log: str) -> None:
    """The race of ``events``' live loop replayed in order on oomtop's own OomWatcher and Collector (the loop's
    timing made deterministic): sample, poll reads the counters, kill, wake-up handled, that poll's sample arrives,
    next poll."""
    if log == "kmsg":
        require_real_kernel(kmsg_unavailable_reason())
    from oomtop.collect.cgroupfs import discover_hierarchy
    from oomtop.collect.collector import Collector, CollectorConfig
    from oomtop.collect.oomwatch import OomWatcher

    config = CollectorConfig()
    pod = tree.add_pod("burstable", 256 * MIB)
    container = tree.add_container(pod, 16 * MIB)
    watcher = OomWatcher(
        discover_hierarchy(config.cgroup_root, config.procfs_root), "/dev/kmsg" if log == "kmsg" else None
    )
    events = []
    try:
        with Collector(config) as collector, KmsgTail() as tail:
            events += watcher.on_sample(collector.sample())  # counters known, wake-up registered
            stale = collector.sample()  # a poll that has read the counters ...
            wait_for_report_budget(1)
            kill = overshoot(tree, hog_binary, container, pod, "oomev race")  # ... when the kill happens
            deadline = time.monotonic() + 5
            while log == "kmsg" and kill.pid not in tail.kills() and time.monotonic() < deadline:
                time.sleep(0.01)
            events += watcher.on_wakeup()  # the wake-up, handled on the loop while that poll is still running
            time.sleep(0.1)
            events += watcher.tick()  # the log block, flushed once quiet
            events += watcher.on_sample(stale)  # the poll's sample arrives
            events += watcher.on_sample(collector.sample())  # the next poll
            time.sleep(0.6)
            events += watcher.tick() + watcher.on_sample(collector.sample())
            events += watcher.tick()
    finally:
        watcher.close()
    ours = [
        e
        for e in events
        if any(p and p.startswith(tree.parent + "/") for p in (e.task_cgroup, e.detected_in))
        or e.victim.pid == kill.pid
    ]
    summary = [f"victim={e.victim.pid} source={e.source} count={e.count} task_cgroup={e.task_cgroup}" for e in ours]
    assert len(ours) == 1, f"{len(ours)} events for one kill: {summary}"


def test_registering_new_cgroups_does_not_stall_the_loop(real_kernel: None, tree: TestHierarchy) -> None:
    """OomWakeups.sync() on 200 new cgroups, as on_sample() does on the loop after a poll that found them."""
    from oomtop.collect.wakeups import OomWakeups

    pod = tree.add_pod("burstable", 256 * MIB)
    paths = {tree.add_container(pod) for _ in range(200)}
    wakeups = OomWakeups(tree.memory_root, 1)
    try:
        started = time.perf_counter()
        wakeups.sync(paths)
        took = time.perf_counter() - started
        registered = len({tree.file(rel, "memory.oom_control") for rel in paths} & open_files(os.getpid()))
    finally:
        wakeups.close()
    assert registered >= len(paths), f"only {registered} of {len(paths)} registered"
    assert took < 0.05, f"registering {len(paths)} new cgroups blocked the loop for {took * 1e3:.0f} ms"


# ------------------------------------------------------------------------------------------ the CLI itself


def test_kmsg_backlog_every_kill_found_once(with_kmsg: None, hog_binary: str, tree: TestHierarchy) -> None:
    """Every "Killed process" record of the kernel's ring buffer is in exactly one event of oomtop's parser, one
    kill of this test's own among them (so the backlog is never empty)."""
    from oomtop.collect.kmsg import OomParser, iter_kmsg

    pod = tree.add_pod("burstable")
    container = tree.add_container(pod, 20 * MIB)
    kill = overshoot(tree, hog_binary, container, pod, "backlog-hog")
    fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb", buffering=0) as kmsg:
        records = list(iter_kmsg(kmsg))  # type: ignore[arg-type]
    # Counted, not as sets: after a few thousand test processes the kernel reuses pids (pid_max 32768), and two
    # kills of one pid at different times are two records and must be two events.
    logged = Counter(
        int(r.text.split("Killed process ", 1)[1].split()[0]) for r in records if "Killed process " in r.text
    )
    assert logged[kill.pid] >= 1, f"the kill of {kill.pid} is not in the ring buffer"
    parser = OomParser(source="kmsg", historical=True)
    events = [event for record in records for event in parser.feed(record)] + parser.flush()
    assert Counter(k.pid for e in events for k in e.killed) == logged
    assert events and all(e.historical and e.seq is not None and e.kernel_time_s is not None for e in events)


def test_events_json_is_accepted(real_kernel: None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oomtop", "events", "--json", "--no-follow", "--kmsg", "none"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"exit status {done.returncode}; stderr: {done.stderr.strip()!r}"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_events_stops_cleanly_on_signal(real_kernel: None, tree: TestHierarchy, signum: int) -> None:
    pod = tree.add_pod("burstable", 64 * MIB)
    with EventsProcess("--kmsg", "none", "--interval", "60") as ev:
        ev.wait_watching(tree, [pod.path], kmsg=False)
        ev.wait_idle()  # first sample taken and printed: nothing more to do until a kill or the next poll
        rc = ev.stop(signum)
        stderr = ev.stderr_text()
    assert rc == 0 and "Traceback" not in stderr, f"exit status {rc} after {signum.name}; stderr: {stderr[-800:]!r}"
