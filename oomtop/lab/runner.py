"""Running a lab scenario, live or headless: the entry point (:func:`run`) and the threads it runs.

Before anything is made, :func:`preflight` checks what the lab needs from the machine and says what is missing in
one sentence (exit status 2).  Then a :class:`~oomtop.lab.session.Session` builds the lab, its scenario runs on a
thread of its own, and the main thread runs the live view (from ``open_view``, which the CLI passes: the lab never
imports the UI) or, with ``--headless``, just consumes the Source.  Every kill is checked against oomtop's
prediction (:mod:`oomtop.lab.killcheck`) and reported (:mod:`oomtop.lab.report`).

A run fails (exit status 1) when any prediction was wrong, any kill went unreported, or the scenario could not do
what it meant to; the lab cleans up on every path out (see :mod:`oomtop.lab.cleanup`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Protocol, TextIO

from oomtop.collect.cgroupfs import MemoryHierarchy, discover_hierarchy
from oomtop.lab import LabError
from oomtop.lab.built import BuiltLab, Scenario
from oomtop.lab.kubelet import MIB, format_quantity
from oomtop.lab.observe import StrippedSource
from oomtop.lab.options import LabOptions
from oomtop.lab.report import summary
from oomtop.lab.session import Session
from oomtop.source import Source
from oomtop.text import format_bytes

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
RESERVE = 256 * MIB  # what the lab leaves the rest of the machine when it checks the capacity fits


class LabView(Protocol):
    """The live view a lab run shows (the UI's :class:`oomtop.ui.lab_view.LabAppView`; the lab never imports it)."""

    def run(self) -> None:
        """Show the view on the main thread until it exits."""

    def exit_soon(self) -> None:
        """Ask the view to exit; called from a signal handler."""


ViewFactory = Callable[[Source, "str | None", float], LabView]  # (source, theme, interval_s) -> the view


# ------------------------------------------------------------------------------------------------ preflight


def preflight(options: LabOptions, capacity_bytes: int) -> MemoryHierarchy:
    """The memory hierarchy the lab will use, once root, the memory controller, the kernel log, runc (when asked
    for) and the memory for ``capacity_bytes`` are there; LabError, before anything is made, when one is not."""
    if os.geteuid() != 0:
        raise LabError(
            "oomtop lab needs root: it creates cgroups, moves processes into them and sets their "
            "oom_score_adj (run it with sudo)"
        )
    hierarchy = discover_hierarchy("/sys/fs/cgroup", "/proc")
    if hierarchy is None:
        raise LabError("oomtop lab needs the cgroup memory controller, and none is mounted under /sys/fs/cgroup")
    try:
        os.close(os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK))
    except OSError as error:
        raise LabError(
            f"oomtop lab needs to read the kernel log /dev/kmsg to see what the kernel kills ({error.strerror})"
        ) from None
    if options.runtime == "runc":
        from oomtop.lab.runtime_runc import runc_path

        if runc_path() is None:
            raise LabError("--runtime runc needs runc, which is not installed (Debian: apt-get install runc)")
    available = _mem_available()
    if available is not None and capacity_bytes > available - RESERVE:
        raise LabError(
            f"a lab capacity of {format_quantity(capacity_bytes)} needs more memory than this "
            f"machine has available ({format_bytes(available)}); choose a smaller --capacity"
        )
    return hierarchy


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _view_factory(options: LabOptions, open_view: ViewFactory | None) -> ViewFactory | None:
    """The live view's factory (None headless); LabError, before anything is made, where there can be no view."""
    if options.headless:
        return None
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise LabError("the live view needs a terminal; add --headless to print each kill instead")
    if open_view is None:
        raise LabError("this oomtop has no live view to show the lab in; add --headless")
    return open_view


# --------------------------------------------------------------------------------------------- the threads


async def _consume(source: Source) -> None:
    async for _update in source.updates():
        pass


async def _headless(session: Session, lab: BuiltLab, source: Source) -> None:
    """The main thread without a view: consume the Source while the scenario thread runs, and stop the run when
    the Source ends (nothing more can be observed) or a signal comes."""
    loop = asyncio.get_running_loop()
    for signum in HANDLED:
        loop.add_signal_handler(signum, session.interrupt, signum)
    consumer = asyncio.create_task(_consume(source))
    thread = threading.Thread(target=session.run_scenario, args=(lab,), name="oomtop-lab-scenario", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            if consumer.done() and not session.stop_flag.is_set():
                session.stop()  # the Source ended: nothing more can be observed
            await asyncio.sleep(0.05)
    finally:
        source.close()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await consumer
        for signum in HANDLED:
            loop.remove_signal_handler(signum)


def _wrap_recording(options: LabOptions, lab: BuiltLab) -> Source:
    """The lab's Source, recorded to ``--record`` (with the lab's parent taken off every path for the demo)."""
    source: Source = lab.source
    if not options.record:
        return source
    if options.strip_parent:
        source = StrippedSource(source, lab.tree.layout.parent)
    from oomtop.record.recorder import Recorder, RecordingSource
    from oomtop.record.writer import RecordingStopped

    try:
        recorder = Recorder(options.record, options.interval_s, options.redact_cmdline)
    except RecordingStopped as error:
        raise LabError(str(error)) from None
    return RecordingSource(source, recorder)


def _run_ui(session: Session, lab: BuiltLab, source: Source, open_view: ViewFactory) -> None:
    """The main thread with the live view: a signal stops the run and closes the view; the view closing (q)
    stops the run."""
    view = open_view(source, session.options.theme, session.options.interval_s)

    def on_signal(signum: int, _frame: object) -> None:
        session.interrupt(signum)
        view.exit_soon()

    previous = {signum: signal.signal(signum, on_signal) for signum in HANDLED}
    thread = threading.Thread(target=session.run_scenario, args=(lab,), name="oomtop-lab-scenario", daemon=True)
    thread.start()
    try:
        view.run()
    finally:
        session.stop()
        source.close()
        thread.join(60)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------------------------- entry point


def run(
    options: LabOptions,
    scenario: Scenario,
    capacity_bytes: int,
    out: TextIO = sys.stdout,
    open_view: ViewFactory | None = None,
) -> int:
    """One lab run; returns the exit status.  LabError (before anything was made) is the caller's to print.
    Without ``--headless`` the live view comes from ``open_view`` (the CLI passes the UI's)."""
    session = Session(options, scenario, capacity_bytes, out)
    hierarchy = preflight(options, capacity_bytes)
    view = _view_factory(options, open_view)
    previous = {signum: signal.getsignal(signum) for signum in HANDLED}
    try:
        # Until the event loop (or the UI) takes the signals over, they must still lead to a clean-up.
        for signum in HANDLED:
            signal.signal(signum, lambda number, _frame: session.interrupt(number))
        lab = session.build(hierarchy)
        source = _wrap_recording(options, lab)
        if view is None:
            asyncio.run(_headless(session, lab, source))
        else:
            _run_ui(session, lab, source, view)
    except LabError:
        session.teardown()
        raise
    except KeyboardInterrupt:
        session.interrupt(signal.SIGINT)
    finally:
        session.teardown()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    _print_summary(session, out)
    return session.exit_status()


def _print_summary(session: Session, out: TextIO) -> None:
    """Headless (or after a live run with kills): the summary, and which signal stopped the run."""
    outcome = session.outcome
    if not (session.headless or outcome.checks):
        return
    print(summary(outcome.checks), file=out, flush=True)
    if outcome.interrupted is not None:
        print(
            f"oomtop lab: stopped by {signal.Signals(outcome.interrupted).name}; everything the lab made is removed",
            file=out,
            flush=True,
        )


__all__ = ["LabOptions", "LabView", "ViewFactory", "preflight", "run"]
