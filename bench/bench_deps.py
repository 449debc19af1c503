#!/usr/bin/env python3
"""What one small kernel file costs read directly, through psutil and through aiofiles; and a recording write.

    python bench/bench_deps.py [--rounds 30] [--procs 200] [--max-cgroups 200]

The poller reads thousands of tiny /proc and cgroupfs files per second, so how it reads them decides its CPU
cost.  Measured side by side in one run, per file, as wall time and as this process's CPU time (all threads):

* ``/proc/<pid>/statm`` of ``--procs`` processes the bench starts (``cat`` on a pipe: they end with the bench,
  also when it is killed, and none ends during the run), read to integers:
  - direct, open+read+close (``oomtop.collect.files.read_once``, then split) and with the descriptor kept open
    (``KeptFile``: one ``pread``, what the collector does for the files it re-reads every tick);
  - psutil ``Process.memory_info()`` on a handle made once per pid (its cheapest use), and on a handle made per
    read (``psutil.Process(pid)`` reads /proc/<pid>/stat for the creation time first);
  - aiofiles, awaited one file after the other as an async poller would: ``aiofiles.open`` + ``read`` (three
    thread hops: open, read, close) and one hop per file (``aiofiles.os.wrap(read_once)``);
* a cgroupfs file (``memory.usage_in_bytes`` of v1, ``memory.current`` of v2) of every memory cgroup found
  (up to ``--max-cgroups``; one that goes away during the run counts as a failed read, in every row alike):
  direct, kept open and aiofiles (psutil has no cgroup reader);
* the recorder's write: one ~2 KiB frame appended to a file in a temporary directory, with ``os.write`` on the
  loop and through one aiofiles hop (what the recorder pays to keep a slow disk off the event loop, once per
  batch of frames, not per file).

The figure is the median over ``--rounds`` rounds of each round's mean per file; ratios are to the direct
open+read+close of the same files.  Needs no root (it reads what the running user may read); a run takes a few
seconds.  Figures move by some percent from run to run with the machine's load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import aiofiles
import aiofiles.os
import psutil

from oomtop.collect.files import FdBudget, KeptFile, read_once

Timing = tuple[float, float]  # (wall, cpu) seconds per file


def start_processes(count: int) -> list[subprocess.Popen[bytes]]:
    """``count`` idle ``cat`` processes on pipes: stable pids for the run, gone with the bench (end of file)."""
    return [
        subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


def stop_processes(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.stdin is not None:
            process.stdin.close()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cgroup_files(limit: int) -> list[str]:
    """A usage file of every memory cgroup (v1 hierarchy first, else v2), as many as ``limit``."""
    for root, name in (("/sys/fs/cgroup/memory", "memory.usage_in_bytes"), ("/sys/fs/cgroup", "memory.current")):
        found = []
        for directory, _dirs, files in os.walk(root):
            if name in files:
                found.append(os.path.join(directory, name))
                if len(found) >= limit:
                    return found
        if found:
            return found
    return []


def time_sync(read_all: Callable[[], object], count: int, rounds: int) -> Timing:
    """Median over rounds of (wall, cpu) per file of a function that reads ``count`` files."""
    read_all()  # warm: page tables, dentries, psutil's caches
    walls, cpus = [], []
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        read_all()
        walls.append((time.perf_counter() - wall) / count)
        cpus.append((time.process_time() - cpu) / count)
    return statistics.median(walls), statistics.median(cpus)


def time_async(read_all: Callable[[], Awaitable[object]], count: int, rounds: int) -> Timing:
    async def run() -> Timing:
        await read_all()
        walls, cpus = [], []
        for _ in range(rounds):
            wall, cpu = time.perf_counter(), time.process_time()
            await read_all()
            walls.append((time.perf_counter() - wall) / count)
            cpus.append((time.process_time() - cpu) / count)
        return statistics.median(walls), statistics.median(cpus)

    return asyncio.run(run())


def statm_ints(data: bytes) -> list[int]:
    return [int(field) for field in data.split()]


async def aiofiles_open_read(path: str) -> bytes:
    async with aiofiles.open(path, "rb", buffering=0) as handle:
        return await handle.read()


hop_read_once = aiofiles.os.wrap(read_once)


def measure_statm(pids: list[int], rounds: int) -> list[tuple[str, Timing]]:
    paths = [f"/proc/{pid}/statm" for pid in pids]
    budget = FdBudget()  # with a budget, KeptFile keeps its descriptor open, as the collector's do
    kept = [KeptFile(path, budget) for path in paths]
    handles = [psutil.Process(pid) for pid in pids]
    count = len(paths)

    async def aio_open() -> None:
        for path in paths:
            statm_ints(await aiofiles_open_read(path))

    async def aio_hop() -> None:
        for path in paths:
            statm_ints(await hop_read_once(path))

    rows = [
        ("direct: open+read+close", time_sync(lambda: [statm_ints(read_once(p)) for p in paths], count, rounds)),
        ("direct: kept fd, pread", time_sync(lambda: [statm_ints(k.read()) for k in kept], count, rounds)),
        ("psutil: memory_info, handle kept", time_sync(lambda: [h.memory_info() for h in handles], count, rounds)),
        (
            "psutil: Process(pid).memory_info",
            time_sync(lambda: [psutil.Process(pid).memory_info() for pid in pids], count, rounds),
        ),
        ("aiofiles: open+read (3 hops)", time_async(aio_open, count, rounds)),
        ("aiofiles: wrap(read_once), 1 hop", time_async(aio_hop, count, rounds)),
    ]
    for file in kept:
        file.close()
    return rows


def measure_cgroup(paths: list[str], rounds: int) -> tuple[list[tuple[str, Timing]], int]:
    """Cgroups of other people's containers come and go: a read of one removed meanwhile fails and is counted,
    in every row alike (the try costs the same everywhere)."""
    fds = [os.open(path, os.O_RDONLY | os.O_CLOEXEC) for path in paths]
    count = len(paths)
    failed = 0

    def read_all_once() -> None:
        nonlocal failed
        for path in paths:
            try:
                int(read_once(path))
            except OSError:
                failed += 1

    def read_all_kept() -> None:
        nonlocal failed
        for fd in fds:
            try:
                int(os.pread(fd, 4096, 0))
            except OSError:
                failed += 1

    async def aio_open() -> None:
        nonlocal failed
        for path in paths:
            try:
                int(await aiofiles_open_read(path))
            except OSError:
                failed += 1

    async def aio_hop() -> None:
        nonlocal failed
        for path in paths:
            try:
                int(await hop_read_once(path))
            except OSError:
                failed += 1

    rows = [
        ("direct: open+read+close", time_sync(read_all_once, count, rounds)),
        ("direct: kept fd, pread", time_sync(read_all_kept, count, rounds)),
        ("aiofiles: open+read (3 hops)", time_async(aio_open, count, rounds)),
        ("aiofiles: wrap(read_once), 1 hop", time_async(aio_hop, count, rounds)),
    ]
    for fd in fds:
        os.close(fd)
    return rows, failed


def measure_write(rounds: int) -> list[tuple[str, Timing]]:
    frame = os.urandom(2048)
    writes = 200
    with tempfile.TemporaryDirectory(prefix="oomtop-bench-deps-") as directory:
        fd = os.open(os.path.join(directory, "frames"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        hop_write = aiofiles.os.wrap(os.write)
        try:

            def on_loop() -> None:
                for _ in range(writes):
                    os.write(fd, frame)

            async def off_loop() -> None:
                for _ in range(writes):
                    await hop_write(fd, frame)

            return [
                ("os.write on the loop", time_sync(on_loop, writes, rounds)),
                ("aiofiles: wrap(os.write), 1 hop", time_async(off_loop, writes, rounds)),
            ]
        finally:
            os.close(fd)


def print_table(title: str, rows: list[tuple[str, Timing]]) -> None:
    base_wall, base_cpu = rows[0][1]
    print(f"\n{title}")
    print(f"  {'how':<36} {'wall us':>9} {'cpu us':>9} {'x wall':>8} {'x cpu':>8}")
    for name, (wall, cpu) in rows:
        print(f"  {name:<36} {wall * 1e6:9.2f} {cpu * 1e6:9.2f} {wall / base_wall:8.1f} {cpu / base_cpu:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="rounds per way of reading (median taken)")
    parser.add_argument("--procs", type=int, default=200, help="processes whose statm is read (started here)")
    parser.add_argument("--max-cgroups", type=int, default=200, help="cgroup files per round (at most)")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, psutil {psutil.__version__}, aiofiles {aiofiles_version()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; median of {args.rounds} rounds, per file"
    )
    processes = start_processes(args.procs)
    try:
        pids = [process.pid for process in processes]
        print_table(f"/proc/<pid>/statm of {len(pids)} processes, to integers", measure_statm(pids, args.rounds))
    finally:
        stop_processes(processes)
    cgroups = cgroup_files(args.max_cgroups)
    if cgroups:
        name = os.path.basename(cgroups[0])
        rows, failed = measure_cgroup(cgroups, args.rounds)
        print_table(f"{name} of {len(cgroups)} memory cgroups, to an integer", rows)
        if failed:
            print(f"  ({failed} reads failed: cgroups removed during the run; the figures are less sure)")
    else:
        print("\ncgroupfs: no memory cgroup found (not measured)")
    print_table("a 2 KiB recording frame appended to a file (per write)", measure_write(args.rounds))
    return 0


def aiofiles_version() -> str:
    from importlib.metadata import version

    return version("aiofiles")


if __name__ == "__main__":
    sys.exit(main())
