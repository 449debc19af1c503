"""Record and replay (issue 5): round trip, crash safety, damage, format versions, disk full, file mode, redaction,
export.

Everything runs on fixture hosts (tests/fakehost.py) through the real collector, the real writer and the real reader;
the CLI is run as a subprocess where the behaviour under test is the process's (kill -9, exit status, stderr).  The
disk-full tests mount a 48 KiB tmpfs of their own (root only: they skip elsewhere, and fail instead when
OOMTOP_REQUIRE_REAL_KERNEL=1) and always unmount it.  Nothing here touches the machine's cgroups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import json
import os
import random
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import tomllib
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from oomtop.collect.collector import Collector
from oomtop.model import (
    ContainerRef,
    KernelCandidate,
    KilledTask,
    OomEvent,
    PodRef,
    QosClass,
    Sample,
)
from oomtop.record import frames
from oomtop.record.frames import DATA, FRAME, HEADER, MAGIC, SEGMENT_START
from oomtop.record.reader import Recording, RecordingError
from oomtop.record.recorder import Recorder, RecordingSource
from oomtop.record.replay import ReplaySource
from oomtop.record.writer import RecordingFile, RecordingStopped
from oomtop.source import Notice, StaticSource
from tests.fakehost import FakeHost, FakeProcess

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "OOMTOP_REQUIRE_REAL_KERNEL"

INTERVAL = 0.5
T0 = 1_700_000_000.125
UID = "8a2f4c1e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
POD = f"/kubepods/burstable/pod{UID}"
CID = "3f" * 32
CID2 = "4e" * 32
CTR = f"{POD}/{CID}"
CTR2 = f"{POD}/{CID2}"
MARKER = "--token=s3cr3t-marker-9f1c2a"  # a command line nobody else has: searched for in the file's bytes


# --------------------------------------------------------------------------------------------------- helpers


class Clock:
    """A hand-moved clock (the collector's wall clock and monotonic clock, the encoder's flush clock)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedHost:
    """A kubelet-shaped fixture host whose files are changed between samples by :meth:`step`."""

    def __init__(self, root: Path, layout: str) -> None:
        self.host = FakeHost(root, layout=layout)
        self.specs: dict[str, dict] = {}
        self.cgroup("/kubepods", usage=400 << 20)
        self.cgroup("/kubepods/burstable", usage=300 << 20)
        self.cgroup(POD, usage=200 << 20, limit=512 << 20)
        self.cgroup(CTR, usage=150 << 20, limit=256 << 20, inactive_file=6 << 20)
        self.procs = {
            101: FakeProcess(
                101,
                comm="web",
                rss_anon_kb=80 * 1024,
                adj=900,
                start_ticks=1100,
                cmdline=f"web\0--serve\0{MARKER}\0".encode(),
            ),
            102: FakeProcess(
                102, comm="helper", rss_anon_kb=10 * 1024, adj=900, start_ticks=1200, cmdline=b"helper\0--loop\0"
            ),
        }
        for process in self.procs.values():
            self.place(process, CTR)
        self.host.add_process(FakeProcess(1, comm="systemd", adj=0, start_ticks=1), "/")

    def cgroup(self, path: str, **spec: object) -> None:
        spec.setdefault("pids", ())
        self.specs[path] = spec
        self.host.add_cgroup(path, **spec)  # type: ignore[arg-type]

    def update(self, path: str, **changes: object) -> None:
        self.specs[path].update(changes)
        self.host.add_cgroup(path, **self.specs[path])  # rewrites every file of the cgroup

    def place(self, process: FakeProcess, path: str) -> None:
        self.host.write_process(process)
        self.host.processes[process.pid] = process
        self.update(path, pids=(*tuple(self.specs[path]["pids"]), process.pid))

    def exit(self, pid: int, path: str) -> None:
        self.update(path, pids=tuple(p for p in self.specs[path]["pids"] if p != pid))
        self.host.remove_process(pid)
        self.procs.pop(pid, None)

    def step(self, i: int) -> None:
        """The changes before sample ``i``."""
        self.update(CTR, usage=(150 << 20) + (i % 7) * (1 << 20) + i * 4096)
        web = self.procs[101]
        if i % 2:
            web.rss_anon_kb += 64
            self.host.write_process(web)
        if i == 5:  # the pod's names appear in node metadata: an identity change on the next names refresh
            pods = self.host.root / "var/log/pods" / f"shop_web-7d9f_{UID}"
            for name in ("web", "helper"):
                (pods / name).mkdir(parents=True, exist_ok=True)
                (pods / name / "0.log").write_text("")
        if i == 10:  # a new container with a process
            self.cgroup(CTR2, usage=30 << 20, limit=64 << 20)
            self.procs[201] = FakeProcess(
                201, comm="sidecar", rss_anon_kb=20 * 1024, start_ticks=2100, cmdline=f"sidecar\0{MARKER}-2\0".encode()
            )
            self.place(self.procs[201], CTR2)
        if i == 20:  # a process exits, another one starts
            self.exit(102, CTR)
            self.procs[103] = FakeProcess(103, comm="worker", rss_anon_kb=30 * 1024, adj=500, start_ticks=3100)
            self.place(self.procs[103], CTR)
        if i == 24:
            self.host.mem_available_kb -= 512 * 1024
            self.host.write_meminfo()
        if i == 28:  # pid 102 is reused by a new process (another start time, so another task)
            self.procs[102] = FakeProcess(
                102, comm="cron", rss_anon_kb=2 * 1024, start_ticks=9000, cmdline=b"cron\0-f\0"
            )
            self.place(self.procs[102], CTR2)
        if i == 30 and self.host.layout == "v2":
            self.update(
                CTR,
                pressure="some avg10=1.25 avg60=0.50 avg300=0.10 total=123456\n"
                "full avg10=0.75 avg60=0.25 avg300=0.05 total=65432\n",
            )
        if i == 33:  # the container goes away: its processes first, then the directory
            self.exit(201, CTR2)
            self.exit(102, CTR2)
            self.host.remove_cgroup(CTR2)
            del self.specs[CTR2]
        if i == 38:
            self.update(POD, limit=768 << 20)  # read on the slow tick
        if i == 42:
            self.update(CTR, oom_kills=1, failcnt=3)


def scripted_samples(root: Path, layout: str = "v2", count: int = 50) -> list[Sample]:
    """``count`` Samples from the real collector, the fixture host changing between them."""
    scripted = ScriptedHost(root, layout)
    wall, mono = Clock(T0), Clock(5000.0)
    samples = []
    with Collector(scripted.host.config(), wall_clock=wall, monotonic=mono) as collector:
        for i in range(count):
            scripted.step(i)
            sample = collector.sample()
            if 15 <= i <= 17:
                sample = dataclasses.replace(
                    sample, warnings=(*sample.warnings, "permission denied reading memory.stat of some cgroups")
                )
            elif i == 40:
                sample = dataclasses.replace(
                    sample, warnings=("inotify is unavailable: new cgroups are found once a second",)
                )
            samples.append(sample)
            wall.now += INTERVAL
            mono.now += INTERVAL
    return samples


def scripted_events(samples: list[Sample]) -> list[OomEvent]:
    """Three kills between samples: a container kill, an oom.group kill of two tasks, a node-wide kill."""
    pod = PodRef(uid=UID, qos=QosClass.BURSTABLE, name="web-7d9f", namespace="shop")
    container = ContainerRef(id=CID, runtime="containerd", name="web")
    web = KilledTask(
        pid=101,
        comm="web",
        anon_rss_bytes=81 << 20,
        file_rss_bytes=1 << 20,
        shmem_rss_bytes=0,
        total_vm_bytes=300 << 20,
        uid=0,
        pgtables_bytes=200 << 10,
        oom_score_adj=900,
    )
    helper = KilledTask(
        pid=102,
        comm="helper",
        anon_rss_bytes=10 << 20,
        file_rss_bytes=256 << 10,
        shmem_rss_bytes=0,
        total_vm_bytes=40 << 20,
        uid=0,
        pgtables_bytes=48 << 10,
        oom_score_adj=900,
    )
    candidates = (
        KernelCandidate(
            pid=101,
            comm="web",
            oom_score_adj=900,
            rss_pages=20992,
            uid=0,
            tgid=101,
            total_vm_pages=76800,
            rss_anon_pages=20736,
            rss_file_pages=256,
            rss_shmem_pages=0,
            pgtables_bytes=204800,
            swapents=0,
        ),
        KernelCandidate(
            pid=102,
            comm="helper",
            oom_score_adj=900,
            rss_pages=2624,
            uid=0,
            tgid=102,
            total_vm_pages=10240,
            rss_anon_pages=2560,
            rss_file_pages=64,
            rss_shmem_pages=0,
            pgtables_bytes=49152,
            swapents=0,
        ),
    )
    return [
        OomEvent(
            kind="memcg",
            time=samples[12].time + 0.2,
            kernel_time_s=8123.456789,
            oom_cgroup=CTR,
            task_cgroup=CTR,
            victim=web,
            killed=(web,),
            candidates=candidates,
            usage_bytes=256 << 20,
            limit_bytes=256 << 20,
            invoker_comm="web",
            invoker_oom_score_adj=900,
            constraint="CONSTRAINT_MEMCG",
            source=("kmsg", "counter"),
            seq=4711,
            pod=pod,
            container=container,
            predicted_victim_pid=101,
        ),
        OomEvent(
            kind="memcg",
            time=samples[27].time + 0.3,
            kernel_time_s=8131.5,
            oom_cgroup=POD,
            task_cgroup=CTR,
            victim=helper,
            killed=(helper, web),
            candidates=candidates[::-1],
            usage_bytes=512 << 20,
            limit_bytes=512 << 20,
            oom_group_path=POD,
            source=("kmsg",),
            seq=4800,
            pod=pod,
            container=container,
            count=2,
        ),
        OomEvent(
            kind="global",
            time=samples[44].time + 0.1,
            kernel_time_s=None,
            oom_cgroup="/",
            task_cgroup=CTR,
            victim=KilledTask(pid=103, comm="worker"),
            killed=(KilledTask(pid=103, comm="worker"),),
            node_ram_pages=4194304,
            node_swap_bytes=0,
            source=("counter",),
            detected_in=CTR,
        ),
    ]


def write_recording(
    path: Path,
    samples: list[Sample],
    events: list[OomEvent] = (),
    *,
    segment_s: float = 5.0,
    mono_step: float = INTERVAL,
    redact: bool = False,
) -> None:
    """Samples and events (in time order) through RecordingFile, with a fake clock so flushes happen."""
    mono = Clock(0.0)
    recording = RecordingFile(str(path), INTERVAL, redact, segment_s=segment_s, monotonic=mono)
    pending = sorted(events, key=lambda event: event.time or 0.0)
    for sample in samples:
        while pending and (pending[0].time or 0.0) <= sample.time:
            recording.write_event(pending.pop(0))
        recording.write_sample(sample)
        mono.now += mono_step
        recording.tick()
    for event in pending:
        recording.write_event(event)
    recording.close()


def valid_frames(data: bytes) -> list[frames.Frame]:
    found = list(frames.scan(data, len(MAGIC)))
    assert all(isinstance(item, frames.Frame) for item in found), found
    return found  # type: ignore[return-value]


def decompressed_contents(data: bytes) -> bytes:
    """Every frame's payload, DATA frames decompressed: what the file says, in plain bytes."""
    out = []
    decompressor = None
    for frame in valid_frames(data):
        payload = frame.payload(data)
        if frame.type == DATA:
            if frame.flags & SEGMENT_START:
                decompressor = zlib.decompressobj()
            assert decompressor is not None
            out.append(decompressor.decompress(payload))
        else:
            out.append(payload)
    return b"".join(out)


def data_records(data: bytes) -> list[bytes]:
    """The sample records of the zlib segments, one JSON line each."""
    stream = []
    decompressor = None
    for frame in valid_frames(data):
        if frame.type == DATA:
            if frame.flags & SEGMENT_START:
                decompressor = zlib.decompressobj()
            assert decompressor is not None
            stream.append(decompressor.decompress(frame.payload(data)))
    return [line for line in b"".join(stream).split(b"\n") if line]


def samples_per_frame(data: bytes) -> list[tuple[frames.Frame, int]]:
    """Every frame of an intact file with the number of sample records it completes."""
    result = []
    decompressor = None
    for frame in valid_frames(data):
        count = 0
        if frame.type == DATA:
            if frame.flags & SEGMENT_START:
                decompressor = zlib.decompressobj()
            assert decompressor is not None
            count = decompressor.decompress(frame.payload(data)).count(b"\n")
        result.append((frame, count))
    return result


def header_end(data: bytes) -> int:
    length = FRAME.unpack_from(data, len(MAGIC))[3]
    return len(MAGIC) + FRAME.size + length


def replay_all(path: Path) -> tuple[Recording, list[Sample]]:
    recording = Recording(str(path))
    return recording, list(recording.iter_samples())


def is_ordered_subsequence(part: list[Sample], whole: list[Sample]) -> bool:
    items = iter(whole)
    return all(any(sample == other for other in items) for sample in part)


def one_line(text: str | None) -> bool:
    return text is None or (bool(text.strip()) and "\n" not in text and "Traceback" not in text)


def oomtop_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "oomtop", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_oomtop(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        oomtop_cmd(*args),
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def small_host(root: Path) -> FakeHost:
    host = FakeHost(root, layout="v1")
    host.add_cgroup("/app", usage=40 << 20, limit=128 << 20)
    host.add_process(FakeProcess(301, comm="app", start_ticks=4000, cmdline=f"app\0{MARKER}\0".encode()), "/app")
    return host


def require_root_for(what: str) -> None:
    """Skip (fail under OOMTOP_REQUIRE_REAL_KERNEL=1) where ``what`` needs root."""
    if os.geteuid() == 0:
        return
    message = f"{what} needs root (euid is {os.geteuid()})"
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this is a failure)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 48 KiB tmpfs of our own, unmounted whatever happens."""
    require_root_for("mounting a tmpfs")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        message = f"cannot mount a tmpfs: {mounted.stderr.strip() or mounted.returncode}"
        if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
            pytest.fail(f"{message} ({REQUIRE_ENV} is set, so this is a failure)", pytrace=False)
        pytest.skip(message)
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, check=False)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Sample], list[OomEvent]]:
    samples = scripted_samples(tmp_path_factory.mktemp("series") / "host", "v2")
    return samples, scripted_events(samples)


@pytest.fixture(scope="module")
def recorded(series, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """The series written with 5-second segments (ten samples each: five segments)."""
    path = tmp_path_factory.mktemp("recorded") / "series.oomrec"
    write_recording(path, *series)
    return path


# ------------------------------------------------------------------------------------------------ round trip


def test_the_scripted_series_has_what_the_round_trip_must_carry(series) -> None:  # type: ignore[no-untyped-def]
    """The fixture really changes what the round trip is about (else the round trip below proves little)."""
    samples, _events = series
    paths = [{c.path for c in s.cgroups} for s in samples]
    keys = [{t.key for t in s.tasks} for s in samples]
    assert CTR2 not in paths[9] and CTR2 in paths[10] and CTR2 not in paths[33]
    assert (102, 1200) in keys[19] and (102, 1200) not in keys[20] and (103, 3100) in keys[20]
    assert (102, 9000) in keys[28]
    pod_names = [next(c for c in s.cgroups if c.path == POD).identity.pod.name for s in samples]  # type: ignore[union-attr]
    assert pod_names[0] is None and pod_names[-1] == "web-7d9f"
    assert samples[15].warnings and not samples[20].warnings and samples[40].warnings
    assert samples[23].node != samples[24].node
    usages = [next(c for c in s.cgroups if c.path == CTR).usage_bytes for s in samples]
    assert len(set(usages)) == len(usages)
    assert next(c for c in samples[-1].cgroups if c.path == POD).limit_bytes == 768 << 20
    assert any(t.cmdline and MARKER in t.cmdline for t in samples[0].tasks)
    # Unchanged values are the same objects from one sample to the next: what the writer's deltas rely on.
    quiet = next(c for c in samples[1].cgroups if c.path == "/kubepods")
    assert quiet is next(c for c in samples[2].cgroups if c.path == "/kubepods")


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_round_trip_replays_exactly_what_was_recorded(tmp_path: Path, layout: str) -> None:
    samples = scripted_samples(tmp_path / "host", layout)
    events = scripted_events(samples)
    path = tmp_path / "r.oomrec"
    write_recording(path, samples, events)
    recording, replayed = replay_all(path)
    try:
        assert len(recording.segments) >= 4
        assert len(replayed) == len(samples)
        for index, (got, want) in enumerate(zip(replayed, samples, strict=False)):
            assert got == want, f"sample {index} differs"
        assert replayed == samples
        assert recording.events == events
        assert recording.damage is None and recording.complete
        assert recording.header["format"] == 1 and recording.header["interval_s"] == INTERVAL
        assert recording.header["node"]["hostname"] == "fixture-node"
        assert recording.start_time == samples[0].time and recording.end_time == samples[-1].time
    finally:
        recording.close()
    # Deltas against the previous tick, a keyframe per segment.
    records = [line[:5] for line in data_records(path.read_bytes())]
    assert len(records) == len(samples)
    assert records.count(b'["K",') == len(recording.segments)
    assert records.count(b'["D",') == len(samples) - len(recording.segments)


def test_seek_to_every_sample_returns_that_sample(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    recording = Recording(str(recorded))
    try:
        source = ReplaySource(recording, playing=False)
        for index in [*range(len(samples)), *reversed(range(len(samples)))]:  # forth and back over the segments
            sample = samples[index]
            assert source.seek(sample.time)
            assert source.current() == sample, index
            assert source.position_time == sample.time
            assert source.seek(sample.time + INTERVAL / 2)  # between two ticks: the one before
            assert source.current() == sample, index
        assert source.seek(samples[0].time - 3600) and source.current() == samples[0]
        assert source.seek(samples[-1].time + 3600) and source.current() == samples[-1]
    finally:
        recording.close()


def test_step_forward_and_back_across_segment_boundaries(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    recording = Recording(str(recorded))
    try:
        assert len(recording.segments) == 5
        source = ReplaySource(recording, playing=False)
        assert source.seek(samples[0].time)
        assert source.step(-1) is False and source.current() == samples[0]
        forward = [source.current()]
        while source.step(1):
            forward.append(source.current())
        assert forward == samples
        assert source.step(1) is False and source.current() == samples[-1]
        backward = [source.current()]
        while source.step(-1):
            backward.append(source.current())
        assert backward == samples[::-1]
        # Bigger strides land where they should, also across two boundaries at once.
        assert source.step(7) and source.current() == samples[7]
        assert source.step(25) and source.current() == samples[32]
        assert source.step(-23) and source.current() == samples[9]
        assert (
            source.step(1) and source.current() == samples[10]
        )  # 9 -> 10: the last of one segment, the first of the next
        assert source.step(-1) and source.current() == samples[9]
        assert source.step(100) is False and source.current() == samples[9]  # past the end: does not move
        assert source.step(-100) is False and source.current() == samples[9]
    finally:
        recording.close()


def _lands_just_before(samples: list[Sample], current: Sample | None, event: OomEvent) -> bool:
    assert current is not None and event.time is not None
    index = samples.index(current)
    return current.time <= event.time and (index + 1 == len(samples) or samples[index + 1].time > event.time)


def test_next_and_previous_kill_land_on_the_sample_before_the_kill(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    samples, events = series
    recording = Recording(str(recorded))
    try:
        source = ReplaySource(recording, playing=False)
        assert source.event_times == [event.time for event in events]
        # Forward, from just after each kill (twice in a row: test_next_kill_twice_reaches_the_second_kill).
        for start, event, landing in ((0, events[0], 12), (13, events[1], 27), (28, events[2], 44)):
            assert source.seek(samples[start].time)
            assert source.next_kill() == event
            assert source.current() == samples[landing]
            assert _lands_just_before(samples, source.current(), event)
        assert source.seek(samples[45].time) and source.next_kill() is None
        assert source.current() == samples[45]  # no kill ahead: it does not move
        # Backward from the end: one kill after the other.
        assert source.seek(samples[-1].time)
        for event, landing in ((events[2], 44), (events[1], 27), (events[0], 12)):
            assert source.previous_kill() == event
            assert source.current() == samples[landing]
        assert source.previous_kill() is None and source.current() == samples[12]
        assert source.events_until(samples[30].time) == events[:2]
    finally:
        recording.close()


def test_next_kill_twice_reaches_the_second_kill(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    samples, events = series
    recording = Recording(str(recorded))
    try:
        source = ReplaySource(recording, playing=False)
        assert source.seek(samples[0].time)
        assert source.next_kill() == events[0]
        assert source.next_kill() == events[1]
        assert source.current() == samples[27]
    finally:
        recording.close()


async def test_playback_yields_every_sample_then_the_kills_it_passes(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    samples, events = series
    expected: list[object] = []
    pending = list(events)
    for sample in samples:
        expected.append(sample)
        while pending and (pending[0].time or 0.0) <= sample.time:
            expected.append(pending.pop(0))
    expected += pending
    recording = Recording(str(recorded))
    source = ReplaySource(recording, speed=1e5)
    got: list[object] = []

    async def consume() -> None:
        async for update in source.updates():
            got.append(update)
            if len(got) == len(expected):
                return

    try:
        await asyncio.wait_for(consume(), 20)
    finally:
        source.close()
        recording.close()
    assert got == expected


# ----------------------------------------------------------------------------------------------- kill -9


def overwrite(path: Path, text: str) -> None:
    """Change a fixture file in place, never empty in between (the kernel's files never are; a reader that caught a
    truncated cgroup file would take the cgroup for gone)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, text.encode(), 0)
        os.ftruncate(fd, len(text.encode()))
    finally:
        os.close(fd)


def test_kill_9_mid_recording_loses_at_most_the_last_second(tmp_path: Path) -> None:
    host = small_host(tmp_path / "host")
    path = tmp_path / "killed.oomrec"
    process = subprocess.Popen(
        oomtop_cmd("record", str(path), "--interval", "0.1", "--host-root", str(host.root), "--kmsg", "none"),
        cwd=REPO,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not (path.exists() and path.stat().st_size > 0):  # started (Python imports take a moment)
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the recorder wrote nothing in 30 s"
            time.sleep(0.02)
        started = time.monotonic()
        tick = 0
        while time.monotonic() - started < 3.0:
            tick += 1
            overwrite(host.cgroup_dir("/app") / "memory.usage_in_bytes", f"{(40 << 20) + tick * 8192}\n")
            if tick == 10:  # a new process: its /proc files first, then listed in its cgroup (appended, not rewritten)
                host.write_process(FakeProcess(302, comm="late", start_ticks=5000))
                with open(host.cgroup_dir("/app") / "cgroup.procs", "a") as procs:
                    procs.write("302\n")
            time.sleep(0.05)
        killed_at = time.time()
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        _out, err = process.communicate()
    assert process.returncode == -signal.SIGKILL
    assert b"Traceback" not in err
    recording, replayed = replay_all(path)
    try:
        assert one_line(recording.damage), recording.damage
        assert not recording.complete
        assert len(replayed) >= 10
        assert replayed[-1].time >= killed_at - 1.0 - 0.1, (
            f"the last replayed sample is {killed_at - replayed[-1].time:.3f} s older than the kill"
        )
        assert any(t.pid == 302 for t in replayed[-1].tasks)
        usages = [next(c for c in s.cgroups if c.path == "/app").usage_bytes for s in replayed]
        assert usages == sorted(usages) and len(set(usages)) > 10
    finally:
        recording.close()


def test_sigterm_and_duration_stop_the_headless_recorder_cleanly(tmp_path: Path) -> None:
    host = small_host(tmp_path / "host")
    timed = tmp_path / "timed.oomrec"
    done = run_oomtop(
        "record", str(timed), "--interval", "0.1", "--duration", "1", "--host-root", str(host.root), "--kmsg", "none"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # silent when not on a terminal
    recording, replayed = replay_all(timed)
    try:
        assert recording.complete and recording.damage is None and len(replayed) >= 5
    finally:
        recording.close()

    termed = tmp_path / "termed.oomrec"
    process = subprocess.Popen(
        oomtop_cmd("record", str(termed), "--interval", "0.1", "--host-root", str(host.root), "--kmsg", "none"),
        cwd=REPO,
        env=cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (termed.exists() and termed.stat().st_size > 0):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, err
    assert out == "" and err == ""
    recording, replayed = replay_all(termed)
    try:
        assert recording.complete and recording.damage is None and replayed
    finally:
        recording.close()


# ----------------------------------------------------------------------------------------- damaged files


@pytest.fixture(scope="module")
def small_recording(series, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Ten samples and one kill, a frame per sample, four segments: a few KB."""
    samples = series[0][:10]
    event = dataclasses.replace(series[1][0], time=samples[5].time + 0.2)
    path = tmp_path_factory.mktemp("small") / "small.oomrec"
    write_recording(path, samples, [event], segment_s=1.5, mono_step=1.0)
    return path, samples, event


def test_the_small_recording_is_small_and_has_a_frame_per_sample(small_recording) -> None:  # type: ignore[no-untyped-def]
    path, samples, event = small_recording
    data = path.read_bytes()
    assert 1000 < len(data) < 8000
    counts = samples_per_frame(data)
    assert [count for frame, count in counts if frame.type == DATA] == [1] * len(samples)
    assert sum(1 for frame, _ in counts if frame.type == DATA and frame.flags & SEGMENT_START) == 4
    recording, replayed = replay_all(path)
    try:
        assert replayed == samples and recording.events == [event]
    finally:
        recording.close()


def test_truncation_at_every_byte_offset(small_recording, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path, samples, event = small_recording
    data = path.read_bytes()
    counts = samples_per_frame(data)
    head_end = header_end(data)
    cut_file = tmp_path / "cut.oomrec"
    mentioned_offset = 0
    for size in range(len(data) + 1):
        cut_file.write_bytes(data[:size])
        try:
            recording = Recording(str(cut_file))
        except RecordingError as error:
            message = str(error)
            assert size < head_end, f"cut at {size} (after the header) refused: {message}"
            assert one_line(message) and cut_file.name in message, message
            assert re.search(r"not an oomtop recording|header", message), message
            continue
        assert size >= head_end, f"cut at {size} inside the header was opened"
        try:
            whole = [frame for frame, _ in counts if frame.offset + FRAME.size + frame.length <= size]
            want = sum(count for frame, count in counts if frame in whole)
            replayed = list(recording.iter_samples())
            assert replayed == samples[:want], f"cut at {size}: {len(replayed)} samples, want the first {want}"
            assert recording.events == ([event] if any(frame.type == frames.EVENT for frame in whole) else [])
            cut_frame = next(
                (frame for frame, _ in counts if frame.offset < size < frame.offset + FRAME.size + frame.length), None
            )
            assert one_line(recording.damage), recording.damage
            if cut_frame is None:
                assert recording.damage is None, f"cut at a frame boundary ({size}) reported as damage"
            else:
                assert recording.damage is not None, f"cut at {size} inside the frame at {cut_frame.offset}: no notice"
                assert f"byte {cut_frame.offset}" in recording.damage, recording.damage
                mentioned_offset += 1
            assert recording.complete == (size == len(data))
            # The replay source works on whatever is left.
            source = ReplaySource(recording, playing=False)
            if replayed:
                assert source.seek(replayed[-1].time) and source.current() == replayed[-1]
                assert source.seek(0.0) and source.current() == replayed[0]
            else:
                assert source.current() is None and not source.seek(T0)
        finally:
            recording.close()
    assert mentioned_offset > len(data) // 2


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, list[int]]:
    damaged = bytearray(data)
    offsets = sorted(rng.sample(range(len(data)), rng.randint(1, 8)))
    for offset in offsets:
        damaged[offset] ^= rng.randint(1, 255)
    return bytes(damaged), offsets


def test_random_corruption_never_a_traceback_never_a_wrong_sample(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    data = recorded.read_bytes()
    counts = samples_per_frame(data)
    head_end = header_end(data)
    damaged_file = tmp_path / "damaged.oomrec"
    rng = random.Random(20261201)
    opened = refused = noticed = 0
    for trial in range(300):
        damaged, offsets = _flip(data, rng)
        first = offsets[0]
        damaged_file.write_bytes(damaged)
        try:
            recording = Recording(str(damaged_file))
        except RecordingError as error:
            assert first < head_end, f"trial {trial}: flips at {offsets} (after the header) refused: {error}"
            assert one_line(str(error)), str(error)
            refused += 1
            continue
        opened += 1
        try:
            replayed = list(recording.iter_samples())
            intact = sum(count for frame, count in counts if frame.offset + FRAME.size + frame.length <= first)
            assert replayed[:intact] == samples[:intact], f"trial {trial}: flips at {offsets}"
            assert is_ordered_subsequence(replayed, samples), f"trial {trial}: a sample that was never recorded"
            assert one_line(recording.damage), recording.damage
            noticed += recording.damage is not None
            source = ReplaySource(recording, playing=False)  # time travel on a damaged file: no exception
            for target in (samples[0].time, samples[len(samples) // 2].time, samples[-1].time + 1):
                source.seek(target)
                source.current()
            while source.step(1):
                pass
            while source.step(-1):
                pass
            source.next_kill()
            source.previous_kill()
        finally:
            recording.close()
    print(f"random corruption: {opened} opened ({noticed} with a notice), {refused} refused (header hit)")
    assert opened > 150 and noticed > opened * 3 // 4


def test_a_flipped_segment_flag_is_noticed(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    data = bytearray(recorded.read_bytes())
    starts = [frame for frame in valid_frames(bytes(data)) if frame.type == DATA and frame.flags & SEGMENT_START]
    data[starts[2].offset + 3] ^= SEGMENT_START  # the third segment no longer says it starts one
    damaged = tmp_path / "flag.oomrec"
    damaged.write_bytes(bytes(data))
    counts = samples_per_frame(recorded.read_bytes())
    before = sum(count for frame, count in counts if frame.offset < starts[2].offset)
    lost = sum(count for frame, count in counts if starts[2].offset <= frame.offset < starts[3].offset)
    assert before > 0 and lost > 0
    recording, replayed = replay_all(damaged)
    try:
        # The checksum covers the flags: that segment's first frame is damage, said once with its offset; the
        # rest of its segment (deltas on a frame now lost) goes with it, and later segments replay again.
        assert recording.damage is not None and f"byte {starts[2].offset}" in recording.damage, recording.damage
        assert replayed == samples[:before] + samples[before + lost :], (
            f"replayed {len(replayed)} samples; want all but the {lost} of the damaged segment"
        )
    finally:
        recording.close()


def test_a_damaged_frame_time_does_not_misplace_seeks(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    data = bytearray(recorded.read_bytes())
    starts = [frame for frame in valid_frames(bytes(data)) if frame.type == DATA and frame.flags & SEGMENT_START]
    struct.pack_into("<d", data, starts[3].offset + 12, 0.0)  # the time field of the fourth segment's first frame
    damaged = tmp_path / "time.oomrec"
    damaged.write_bytes(bytes(data))
    counts = samples_per_frame(recorded.read_bytes())
    before = sum(count for frame, count in counts if frame.offset < starts[3].offset)
    lost = range(before, before + sum(c for f, c in counts if starts[3].offset <= f.offset < starts[4].offset))
    recording = Recording(str(damaged))
    try:
        assert recording.damage is not None and f"byte {starts[3].offset}" in recording.damage, recording.damage
        source = ReplaySource(recording, playing=False)
        for index, sample in enumerate(samples):
            source.seek(sample.time)
            # a seek into the lost segment shows the last sample before it, never one from elsewhere in time
            want = samples[before - 1] if index in lost else sample
            assert source.current() == want, f"a seek to sample {index} shows another sample"
    finally:
        recording.close()


def test_a_cgroup_name_that_is_not_utf8_round_trips(tmp_path: Path) -> None:
    host = FakeHost(tmp_path / "host", layout="v1")
    host.add_cgroup("/caf\udce9", usage=10 << 20)
    host.add_process(FakeProcess(7, comm="x", start_ticks=70), "/caf\udce9")
    with Collector(host.config()) as collector:
        samples = [collector.sample(), collector.sample()]
    assert any(c.path == "/caf\udce9" for c in samples[0].cgroups)
    path = tmp_path / "odd.oomrec"
    write_recording(path, samples)
    recording, replayed = replay_all(path)
    try:
        assert recording.damage is None
        assert replayed == samples
    finally:
        recording.close()


# ----------------------------------------------------------------------------------------- format version


def with_header(data: bytes, **changes: object) -> bytes:
    """The file with its header frame rewritten (a valid CRC, through frames.pack)."""
    _tag, frame_type, flags, length, _crc, time_s = FRAME.unpack_from(data, len(MAGIC))
    assert frame_type == HEADER
    start = len(MAGIC) + FRAME.size
    header = json.loads(data[start : start + length])
    header.update(changes)
    return MAGIC + frames.pack(HEADER, json.dumps(header).encode(), time_s, flags) + data[start + length :]


def test_a_newer_format_is_refused_with_one_clear_line(recorded: Path, tmp_path: Path) -> None:
    newer = tmp_path / "newer.oomrec"
    newer.write_bytes(with_header(recorded.read_bytes(), format=99, oomtop_version="9.0.0"))
    with pytest.raises(RecordingError) as caught:
        Recording(str(newer))
    message = str(caught.value)
    assert one_line(message) and "99" in message and "newer.oomrec" in message
    assert re.search(r"upgrade oomtop|newer (version of )?oomtop", message), message
    done = run_oomtop("replay", str(newer), "--json")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0] == f"oomtop: {message}", done.stderr


def test_the_same_format_with_rewritten_header_still_opens(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The control for the test above: rewriting the header as it does, but keeping the format, changes nothing."""
    same = tmp_path / "same.oomrec"
    same.write_bytes(with_header(recorded.read_bytes(), oomtop_version="0.0.1"))
    recording, replayed = replay_all(same)
    try:
        assert replayed == series[0] and recording.damage is None
    finally:
        recording.close()


def test_files_that_are_not_recordings_get_one_line(tmp_path: Path) -> None:
    cases = {"empty.oomrec": b"", "text.oomrec": b"hello\n", "magic-only.oomrec": MAGIC}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    for name in [*cases, "missing.oomrec"]:
        with pytest.raises(RecordingError) as caught:
            Recording(str(tmp_path / name))
        assert one_line(str(caught.value)) and name in str(caught.value)
        done = run_oomtop("replay", str(tmp_path / name), "--json")
        assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, (
            done.stderr
        )


# ---------------------------------------------------------------------------------------------- disk full


def big_samples(root: Path, count: int) -> list[Sample]:
    """``count`` samples that hardly compress (a fresh random command line each), one second apart."""
    host = small_host(root)
    with Collector(host.config()) as collector:
        base = collector.sample()
    rng = random.Random(48)
    out = []
    for i in range(count):
        tasks = tuple(dataclasses.replace(task, cmdline=f"app {rng.getrandbits(256):064x}") for task in base.tasks)
        out.append(dataclasses.replace(base, time=T0 + i, monotonic=100.0 + i, seq=i + 1, tasks=tasks))
    return out


async def test_disk_full_stops_the_recording_once_and_the_source_goes_on(tiny_tmpfs: Path, tmp_path: Path) -> None:
    samples = big_samples(tmp_path / "host", 1500)
    path = tiny_tmpfs / "full.oomrec"
    recorder = Recorder(str(path), 1.0)
    source = RecordingSource(StaticSource(samples, hold=False, delay_s=0.002), recorder)
    updates: list[object] = []

    async def consume() -> None:
        async for update in source.updates():
            updates.append(update)

    await asyncio.wait_for(consume(), 60)
    source.close()
    stops = [u for u in updates if isinstance(u, Notice)]
    assert len(stops) == 1, stops
    assert "disk is full" in stops[0].text and stops[0].key == "recording-stopped" and one_line(stops[0].text)
    assert str(path) in stops[0].text
    assert recorder.stopped == stops[0].text
    got = [u for u in updates if isinstance(u, Sample)]
    assert got == samples  # the source went on: every sample reached the consumer
    after = updates.index(stops[0])
    assert sum(isinstance(u, Sample) for u in updates[after:]) > 100  # ... also after the stop notice
    assert os.path.getsize(path) <= 48 << 10
    recording, replayed = replay_all(path)
    try:
        assert one_line(recording.damage), recording.damage
        assert len(replayed) > 50, f"only {len(replayed)} samples replay from a {os.path.getsize(path)}-byte file"
        assert replayed == samples[: len(replayed)]  # everything up to the failure, nothing else
        assert not recording.complete
    finally:
        recording.close()


def test_disk_full_in_the_headless_recorder_says_so_once_and_exits(tiny_tmpfs: Path, tmp_path: Path) -> None:
    filler = os.open(tiny_tmpfs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(filler, b"\0" * 4096)
    except OSError as error:
        assert error.errno == 28
    finally:
        os.close(filler)
    host = small_host(tmp_path / "host")
    path = tiny_tmpfs / "headless.oomrec"
    done = run_oomtop(
        "record",
        str(path),
        "--interval",
        "0.05",
        "--duration",
        "20",
        "--host-root",
        str(host.root),
        "--kmsg",
        "none",
        timeout=60,
    )
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "disk is full" in lines[0], done.stderr
    with pytest.raises(RecordingError) as caught:  # nothing could be written: a clear line, no traceback
        Recording(str(path))
    assert one_line(str(caught.value))


# --------------------------------------------------------------------------------------- mode and redaction


def test_file_mode_is_0600_whatever_the_umask(series, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    old = os.umask(0)
    try:
        path = tmp_path / "private.oomrec"
        write_recording(path, series[0][:3])
        assert path.stat().st_mode & 0o777 == 0o600
        recorder = Recorder(str(tmp_path / "recorder.oomrec"), 1.0)
        recorder.close()
        assert (tmp_path / "recorder.oomrec").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
    host = small_host(tmp_path / "host")
    headless = tmp_path / "headless.oomrec"
    done = subprocess.run(
        [
            "sh",
            "-c",
            'umask 000 && exec "$@"',
            "sh",
            *oomtop_cmd("record", str(headless), "--duration", "0.3", "--host-root", str(host.root), "--kmsg", "none"),
        ],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert headless.stat().st_mode & 0o777 == 0o600


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / "precious.oomrec"
    existing.write_bytes(b"last night's recording")
    with pytest.raises(RecordingStopped) as caught:
        RecordingFile(str(existing), 1.0)
    assert "already exists" in str(caught.value) and one_line(str(caught.value))
    with pytest.raises(RecordingStopped):
        Recorder(str(existing), 1.0)
    # A dangling symlink is not followed either: nothing is created where it points.
    target = tmp_path / "elsewhere" / "target"
    target.parent.mkdir()
    link = tmp_path / "link.oomrec"
    link.symlink_to(target)
    with pytest.raises(RecordingStopped):
        RecordingFile(str(link), 1.0)
    assert not target.exists()
    host = small_host(tmp_path / "host")
    done = run_oomtop("record", str(existing), "--duration", "0.3", "--host-root", str(host.root), "--kmsg", "none")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "already exists" in done.stderr
    assert existing.read_bytes() == b"last night's recording"


def test_redact_cmdline_keeps_command_lines_out_of_the_file(series, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    samples, events = series
    plain, redacted = tmp_path / "plain.oomrec", tmp_path / "redacted.oomrec"
    write_recording(plain, samples, events)
    write_recording(redacted, samples, events, redact=True)
    assert MARKER.encode() in decompressed_contents(plain.read_bytes())  # the search below would find it
    data = redacted.read_bytes()
    contents = decompressed_contents(data)
    assert MARKER.encode() not in contents and MARKER.encode() not in data
    assert b"--serve" not in contents and b"--loop" not in contents
    recording, replayed = replay_all(redacted)
    try:
        assert recording.header["redact_cmdline"] is True
        tasks = [task for sample in replayed for task in sample.tasks]
        assert tasks and {task.cmdline for task in tasks} == {""}
        assert replayed == [
            dataclasses.replace(s, tasks=tuple(dataclasses.replace(t, cmdline="") for t in s.tasks)) for s in samples
        ]
        assert recording.events == events
    finally:
        recording.close()


def test_redact_cmdline_flag_of_the_headless_recorder(tmp_path: Path) -> None:
    host = small_host(tmp_path / "host")
    path = tmp_path / "redacted.oomrec"
    done = run_oomtop(
        "record",
        str(path),
        "--interval",
        "0.1",
        "--duration",
        "0.6",
        "--redact-cmdline",
        "--host-root",
        str(host.root),
        "--kmsg",
        "none",
    )
    assert done.returncode == 0, done.stderr
    contents = decompressed_contents(path.read_bytes())
    assert b"s3cr3t" not in contents and b'"app"' in contents  # the comm is there, the command line is not
    recording, replayed = replay_all(path)
    try:
        assert replayed and all(t.cmdline == "" for s in replayed for t in s.tasks)
        assert any(t.comm == "app" for t in replayed[0].tasks)
    finally:
        recording.close()


# ------------------------------------------------------------------------------------------------- export


def test_replay_json_writes_every_sample_and_kill_as_json_lines(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from oomtop.explain import event_to_json
    from oomtop.report import to_json

    samples, events = series
    done = run_oomtop("replay", str(recorded), "--json")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.strip() for line in lines)
    docs = [json.loads(line) for line in lines]
    assert {doc["type"] for doc in docs} == {"sample", "event"}
    sample_docs = [doc for doc in docs if doc["type"] == "sample"]
    event_docs = [doc for doc in docs if doc["type"] == "event"]
    assert len(sample_docs) == len(samples) and len(event_docs) == len(events)
    # The shapes of `--once --json` (run on a fixture host for its keys) and of the events' JSON.
    host = small_host(tmp_path / "host")
    once = run_oomtop("--once", "--json", "--host-root", str(host.root))
    assert once.returncode == 0, once.stderr
    once_keys = set(json.loads(once.stdout))
    assert {"time", "node", "cgroups", "tasks"} <= once_keys
    for doc, sample in zip(sample_docs, samples, strict=False):
        assert set(doc) - {"type"} == once_keys
        assert {k: v for k, v in doc.items() if k != "type"} == json.loads(json.dumps(to_json(sample)))
        assert set(doc["node"]) == set(json.loads(once.stdout)["node"])
    for doc, event in zip(event_docs, events, strict=False):
        assert {k: v for k, v in doc.items() if k != "type"} == json.loads(json.dumps(event_to_json(event)))
    # Time order: a kill comes after the samples before it and before the samples after it.
    times = [doc["time"] if doc["type"] == "sample" else doc["time_epoch"] for doc in docs]
    assert times == sorted(times)


def test_replay_json_of_a_damaged_file_exports_the_rest_with_one_notice(series, recorded: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    samples, _events = series
    data = recorded.read_bytes()
    cut = tmp_path / "cut.oomrec"
    cut.write_bytes(data[: len(data) * 2 // 3])
    done = run_oomtop("replay", str(cut), "--json")
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "damaged at byte" in done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    exported = [doc["time"] for doc in docs if doc["type"] == "sample"]
    assert 0 < len(exported) < len(samples) and exported == [s.time for s in samples[: len(exported)]]


# ------------------------------------------------------------------------------------------------ packaging


def test_the_record_package_is_installed() -> None:
    """`pip install .` must ship oomtop.record (a hand-kept package list once left it out)."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = config.get("tool", {}).get("setuptools", {}).get("packages")
    if isinstance(packages, list):
        assert "oomtop.record" in packages
    else:
        find = (packages or {}).get("find", {})
        includes = find.get("include", ["*"])
        excludes = find.get("exclude", [])
        assert any(fnmatch.fnmatchcase("oomtop.record", pattern) for pattern in includes)
        assert not any(fnmatch.fnmatchcase("oomtop.record", pattern) for pattern in excludes)


# ------------------------------------------------------------------------------------ a slow disk (issue 12)


def in_time_order(samples: list[Sample], events: list[OomEvent]) -> list[Sample | OomEvent]:
    """Samples and kills as a live Source yields them: each kill after the samples before it."""
    ordered: list[Sample | OomEvent] = []
    pending = sorted(events, key=lambda event: event.time or 0.0)
    for sample in samples:
        while pending and (pending[0].time or 0.0) <= sample.time:
            ordered.append(pending.pop(0))
        ordered.append(sample)
    return ordered + pending


async def test_a_slow_disk_never_stalls_the_loop(series, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A write to the file that does not return (a disk busy with something else) must not hold up the event
    loop that runs the Source and the UI: the first write stays stuck until the loop has delivered ten more
    updates.  Were writes made on the loop, those updates could never come (the write would give up after
    10 s, and the check below fails).  No figure of time is asserted: only what happened while the write hung.
    The file still ends up complete and in order."""
    original = RecordingFile.write
    stuck = threading.Event()  # set by the test once the loop went on without the write
    blocked: list[int] = []  # how many updates the consumer had seen when each stuck write began

    def stuck_write(self: RecordingFile, data: bytes) -> None:
        if data and not stuck.is_set():
            blocked.append(len(got))
            stuck.wait(10.0)
        original(self, data)

    monkeypatch.setattr(RecordingFile, "write", stuck_write)
    samples, events = series
    updates = in_time_order(samples, events)
    path = tmp_path / "slow.oomrec"
    recorder = Recorder(str(path), INTERVAL)
    source = RecordingSource(StaticSource(updates, hold=True, delay_s=0.005), recorder)
    stream = source.updates()
    got: list[object] = []
    delivered_while_stuck = 0
    async for update in stream:
        got.append(update)
        if blocked and not stuck.is_set():
            delivered_while_stuck = len(got) - blocked[0]
            if delivered_while_stuck >= 10:
                stuck.set()  # the loop went on: let the disk catch up
        if len(got) == len(updates):
            break
    stuck.set()
    await stream.aclose()  # closes the recorder: the last writes land
    source.close()

    assert got == updates  # the Source went on: nothing lost, nothing reordered, nothing extra
    assert blocked, "no write was ever made while updates flowed"
    assert delivered_while_stuck >= 10, f"only {delivered_while_stuck} updates came while a write was stuck"
    recording, replayed = replay_all(path)
    try:
        assert recording.complete and recording.damage is None
        assert replayed == samples and recording.events == events
    finally:
        recording.close()


async def test_the_recorder_writes_the_bytes_the_synchronous_writer_writes(
    series,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Writing off the loop changes when bytes reach the file, never which or in what order: with the same clocks,
    the Recorder's file (writes in a worker thread, each delayed by a random few ms, the loop going on meanwhile)
    is byte for byte the file of the plain synchronous RecordingFile."""
    import types

    from oomtop.record import writer

    monkeypatch.setattr(writer, "time", types.SimpleNamespace(time=lambda: T0, monotonic=time.monotonic))
    samples, events = series
    updates: list[Sample | OomEvent | Notice] = list(in_time_order(samples, events))
    updates.insert(30, Notice("permission denied reading /proc/1/status", "no-root"))

    reference_clock = Clock(0.0)
    reference = RecordingFile(str(tmp_path / "sync.oomrec"), INTERVAL, segment_s=5.0, monotonic=reference_clock)
    for update in updates:
        if isinstance(update, Sample):
            reference_clock.now += 1.0  # a flush at every sample, whichever path ticks in between
            reference.write_sample(update)
        elif isinstance(update, OomEvent):
            reference.write_event(update)
        else:
            reference.write_notice(update.text, update.key)
    reference.close()

    rng = random.Random(12)
    original = RecordingFile.write

    def jittery_write(self: RecordingFile, data: bytes) -> None:
        time.sleep(rng.random() * 0.004)
        original(self, data)

    monkeypatch.setattr(RecordingFile, "write", jittery_write)
    clock = Clock(0.0)
    recorder = Recorder(str(tmp_path / "async.oomrec"), INTERVAL, segment_s=5.0, monotonic=clock)
    recorder.start()
    for update in updates:
        if isinstance(update, Sample):
            clock.now += 1.0
        assert recorder.write(update) is None
        await asyncio.sleep(rng.random() * 0.003)
    recorder.close()
    assert recorder.stopped is None
    assert (tmp_path / "async.oomrec").read_bytes() == (tmp_path / "sync.oomrec").read_bytes()


async def test_a_disk_that_cannot_keep_up_ends_the_recording_once(
    series,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bytes waiting for a stuck disk are bounded: past the bound the recording stops with one Notice (the
    Source goes on), and the file keeps a readable prefix of what was recorded."""
    from oomtop.record import recorder as recorder_module

    monkeypatch.setattr(recorder_module, "MAX_BACKLOG_BYTES", 8 << 10)
    original = RecordingFile.write

    def stuck_write(self: RecordingFile, data: bytes) -> None:
        if self.bytes_written > 0:
            time.sleep(0.3)
        original(self, data)

    monkeypatch.setattr(RecordingFile, "write", stuck_write)
    samples = big_samples(tmp_path / "host", 200)
    path = tmp_path / "stuck.oomrec"
    recorder = Recorder(str(path), 1.0, segment_s=3600.0, flush_s=0.0)  # a frame per sample: the backlog grows
    source = RecordingSource(StaticSource(samples, hold=False, delay_s=0.002), recorder)
    updates: list[object] = []

    async def consume() -> None:
        async for update in source.updates():
            updates.append(update)

    await asyncio.wait_for(consume(), 60)
    source.close()
    stops = [u for u in updates if isinstance(u, Notice)]
    assert len(stops) == 1, stops
    assert "too slow" in stops[0].text and stops[0].key == "recording-stopped" and one_line(stops[0].text)
    assert [u for u in updates if isinstance(u, Sample)] == samples
    recording, replayed = replay_all(path)
    try:
        assert one_line(recording.damage) and not recording.complete
        assert 0 < len(replayed) < len(samples) and replayed == samples[: len(replayed)]
    finally:
        recording.close()


def test_speed_stops_at_both_ends(series, recorded: Path) -> None:  # type: ignore[no-untyped-def]
    """``+`` and ``-`` walk the speeds and stay at the fastest and the slowest (a survivor of the mutation run:
    pressing ``-`` at the slowest speed was never tried)."""
    from oomtop.record.replay import SPEEDS

    recording = Recording(str(recorded))
    try:
        source = ReplaySource(recording, playing=False)
        for _ in range(len(SPEEDS) + 2):
            source.slower()
        assert source.speed == SPEEDS[0]
        for _ in range(len(SPEEDS) + 2):
            source.faster()
        assert source.speed == SPEEDS[-1]
    finally:
        recording.close()


def test_the_shipped_demo_recording_replays_whole() -> None:
    """A recording made by an earlier oomtop (the demo ships in the package) still replays with no damage: the
    frame format, its checksum and the record codec stay readable (the mutation run changed the checksum's seed,
    and every test that writes and reads its own file passed)."""
    from oomtop.demo import recording_path

    recording = Recording(recording_path())
    try:
        samples = list(recording.iter_samples())
        assert recording.damage is None and recording.complete
        assert len(samples) == 70 and len(recording.events) == 1  # the seed scenario's one kill
        assert all(sample.cgroups for sample in samples) and sum(bool(sample.tasks) for sample in samples) == 68
    finally:
        recording.close()
