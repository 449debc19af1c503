#!/usr/bin/env python3
"""How long a seek takes in a 24-hour recording: open the file, then jump to random times.

    python bench/bench_seek.py [--hours 24] [--interval 1] [--pods 50] [--containers 4] [--procs 1000] [--seeks 50]

Writes a recording of ``--hours`` at ``--interval`` (86,400 samples by default) with oomtop's own writer, from
hand-built Samples of a Kubernetes-shaped node (``tests/ui_fixtures.synthetic_sample``: by default 254 cgroups
and 1,000 processes; each tick moves the RSS of ``--churn`` of the processes, 10 % by default as on
bench_record's churning node, and ``--churn 1`` moves every value every tick, the worst case; 240 distinct ticks
are built and repeated with new times).  Then, in a fresh
:class:`~oomtop.record.reader.Recording`, it times the open (index of every frame) and ``--seeks`` seeks to
random times with :meth:`~oomtop.record.replay.ReplaySource.seek` (each decodes one segment: a keyframe and up
to a minute of deltas), wall and CPU time.  Target: every seek under 0.2 s.  The file is removed at the end.
Needs no root.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from oomtop.record.reader import Recording
from oomtop.record.replay import ReplaySource
from oomtop.record.writer import RecordingFile
from tests.ui_fixtures import synthetic_sample

DISTINCT_TICKS = 240
TARGET_S = 0.2


def ticks(pods: int, containers: int, procs: int, churn: float, seed: int) -> list:  # type: ignore[type-arg]
    """DISTINCT_TICKS Samples: with ``churn`` 1, every value moves every tick (``synthetic_sample``'s worst case);
    below 1, each tick moves the RSS of that share of the processes and the usage of their cgroups."""
    if churn >= 1:
        return [synthetic_sample(tick, pods=pods, containers=containers, procs=procs) for tick in range(DISTINCT_TICKS)]
    rng = random.Random(seed)
    current = synthetic_sample(0, pods=pods, containers=containers, procs=procs)
    out = [current]
    for _ in range(DISTINCT_TICKS - 1):
        tasks = list(current.tasks)
        moved = rng.sample(range(len(tasks)), max(1, int(len(tasks) * churn)))
        touched = set()
        for index in moved:
            task = tasks[index]
            tasks[index] = dataclasses.replace(
                task, rss_anon_bytes=max(0, task.rss_anon_bytes + rng.randrange(-4096, 4096) * 64)
            )
            touched.add(task.cgroup)
        cgroups = tuple(
            dataclasses.replace(c, usage_bytes=c.usage_bytes + rng.randrange(0, 4096) * 4096)
            if c.path in touched
            else c
            for c in current.cgroups
        )
        current = dataclasses.replace(current, tasks=tuple(tasks), cgroups=cgroups)
        out.append(current)
    return out


def write(path: str, hours: float, interval: float, base: list) -> tuple[int, float]:  # type: ignore[type-arg]
    count = int(hours * 3600 / interval)
    start = 1_800_000_000.0
    recording = RecordingFile(path, interval)
    t0 = time.monotonic()
    try:
        for index in range(count):
            sample = base[index % DISTINCT_TICKS]
            sample = dataclasses.replace(sample, time=start + index * interval, monotonic=1000.0 + index * interval)
            recording.write_sample(sample)
            if index % 3600 == 0:
                print(f"[bench] written {index}/{count} samples", file=sys.stderr)
    finally:
        recording.close()
    return count, time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--containers", type=int, default=4)
    parser.add_argument("--procs", type=int, default=1000)
    parser.add_argument("--seeks", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--churn",
        type=float,
        default=0.1,
        help="share of processes whose RSS moves each tick (default 0.1, as bench_record measured "
        "on a churning node; 1 = every value of every process and cgroup, the worst case)",
    )
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="oomtop-bench-seek-")
    path = os.path.join(workdir, "day.oomrec")
    try:
        base = ticks(args.pods, args.containers, args.procs, args.churn, args.seed)
        count, took = write(path, args.hours, args.interval, base)
        size = os.path.getsize(path)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        recording = Recording(path)
        open_wall, open_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        source = ReplaySource(recording, playing=False)
        start, end = recording.start_time, recording.end_time
        assert start is not None and end is not None
        rng = random.Random(args.seed)
        walls: list[float] = []
        cpus: list[float] = []
        for _ in range(args.seeks):
            target = rng.uniform(start, end)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            assert source.seek(target)
            sample = source.current()
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0)
            assert sample is not None and sample.time <= target + args.interval
        recording.close()
        first = base[0]
        print(
            f"oomtop seek benchmark: {count} samples ({args.hours:g} h at {args.interval:g} s) of "
            f"{len(first.cgroups)} cgroups / {len(first.tasks)} processes, churn {args.churn:g}; "
            f"file {size / 1e6:.1f} MB, written in "
            f"{took:.0f} s; Python {sys.version.split()[0]}"
        )
        print(f"  open (index every frame)        wall {open_wall * 1e3:8.1f} ms   CPU {open_cpu * 1e3:8.1f} ms")
        print(
            f"  seek, {args.seeks} random times       wall median {statistics.median(walls) * 1e3:6.1f} ms, "
            f"max {max(walls) * 1e3:6.1f} ms;  CPU median {statistics.median(cpus) * 1e3:6.1f} ms, "
            f"max {max(cpus) * 1e3:6.1f} ms"
        )
        verdict = "ok" if max(walls) < TARGET_S else "MISSED"
        print(f"  target: every seek under {TARGET_S * 1e3:.0f} ms: {verdict}")
        return 0
    finally:
        for name in os.listdir(workdir):
            os.unlink(os.path.join(workdir, name))
        os.rmdir(workdir)


if __name__ == "__main__":
    raise SystemExit(main())
