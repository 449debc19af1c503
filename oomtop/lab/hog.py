"""The lab's memory hog: ``python -m oomtop.lab.hog [--name COMM] [--mib N] [--step-mib S] [--delay-ms D] [--pause]``.

It is driven over its standard streams, one line each way, so it works the same as a plain child process and
inside a runc container (runc passes its stdio through):

- it first waits for ``go`` on stdin: the lab moves it into its cgroup and sets its ``oom_score_adj`` before
  that, so every page it touches is charged where it belongs and scored as kubelet would have it;
- ``go`` allocates and touches ``--mib`` MiB of private anonymous memory in steps of ``--step-mib`` (sleeping
  ``--delay-ms`` after each step, so a watcher sees it grow), then it answers ``R`` on stdout;
- ``grow M [STEP [DELAY]]`` allocates M MiB more the same way, then answers ``R``;
- end of stdin (the lab closed the pipe, exited or died) ends the hog: no hog outlives its lab.

``--pause`` is the sandbox: it allocates nothing, answers ``R`` to ``go`` and reaps children (it is the pod's
pid 1 under runc, like the pause container).  Failures answer ``E <reason>`` and exit 5.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import os
import signal
import sys
import time

MIB = 1 << 20
_held: list[mmap.mmap] = []


def _say(text: str) -> None:
    data = (text + "\n").encode()
    while data:
        try:
            data = data[os.write(1, data) :]
        except InterruptedError:
            continue


def _grow(mib: float, step_mib: float, delay_ms: float) -> None:
    """Map and touch ``mib`` MiB in steps; a new mapping per step, so rss climbs visibly and page by page."""
    page = mmap.PAGESIZE
    remaining = int(mib * MIB)
    step = max(page, int(step_mib * MIB) // page * page)
    while remaining > 0:
        size = min(step, remaining)
        size = (size + page - 1) // page * page
        region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        with contextlib.suppress(AttributeError, OSError):  # 4 KiB pages: charged and counted one page at a time
            region.madvise(mmap.MADV_NOHUGEPAGE)
        for offset in range(0, size, page):
            region[offset] = 1
        _held.append(region)
        remaining -= size
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)


def _reap(_signum: int, _frame: object) -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _set_name(name: str) -> None:
    try:
        with open("/proc/self/comm", "w", encoding="utf-8") as handle:
            handle.write(name[:15])
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--name" in argv[:-1]:  # before anything else, so oomtop never shows this hog under another name
        _set_name(argv[argv.index("--name") + 1])
    parser = argparse.ArgumentParser(prog="python -m oomtop.lab.hog", description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", help="process name (comm, at most 15 characters)")
    parser.add_argument("--mib", type=float, default=0.0, help="MiB to allocate on 'go'")
    parser.add_argument("--step-mib", type=float, default=4.0, help="MiB per step")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep after each step")
    parser.add_argument("--pause", action="store_true", help="sandbox: allocate nothing, reap children")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the lab decides when a hog dies, not a terminal's Ctrl-C
    if args.pause:
        signal.signal(signal.SIGCHLD, _reap)
    stdin = sys.stdin.buffer
    started = False
    while True:
        try:
            line = stdin.readline()
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if not line:
            return 0  # the lab is gone
        words = line.decode("ascii", "replace").split()
        if not words:
            continue
        try:
            if words[0] == "go" and not started:
                started = True
                if not args.pause:
                    _grow(args.mib, args.step_mib, args.delay_ms)
                _say("R")
            elif words[0] == "grow" and len(words) >= 2:
                step = float(words[2]) if len(words) > 2 else args.step_mib
                delay = float(words[3]) if len(words) > 3 else args.delay_ms
                _grow(float(words[1]), step, delay)
                _say("R")
            else:
                _say(f"E unknown command {words[0]!r}")
        except (OSError, ValueError, MemoryError) as error:
            _say(f"E {error}")
            print(f"oomtop lab hog {os.getpid()}: {error}", file=sys.stderr)
            return 5


if __name__ == "__main__":
    raise SystemExit(main())
