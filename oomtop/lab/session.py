"""One lab run's lifetime: the lock, building the lab, the scenario thread's body, and leaving nothing behind.

A :class:`Session` takes the lab's lock, builds the node (runtime, cgroups), opens its own kernel-log reader and
starts oomtop's own live Source (collector plus OOM watcher, narrowed to the lab by
:class:`~oomtop.lab.observe.LabSource`), all handed to the scenario as one :class:`~oomtop.lab.built.BuiltLab`.
The scenario runs on a thread of its own (see :mod:`oomtop.lab.runner`) while the main thread runs the live view
or consumes the Source; whichever way the run ends (the scenario done, crashed or stopped, a signal, the process
exiting) :meth:`Session.teardown` removes everything the lab made (see :mod:`oomtop.lab.cleanup`).
"""

from __future__ import annotations

import atexit
import sys
import threading
import traceback
from typing import TextIO

from oomtop.collect.cgroupfs import MemoryHierarchy
from oomtop.collect.collector import CollectorConfig
from oomtop.lab import LAB_DIR, LabError, cleanup
from oomtop.lab.built import BuiltLab, Scenario
from oomtop.lab.kubelet import AdjPolicy, format_quantity, probe_lowest_adj
from oomtop.lab.layout import CgroupLayout, CgroupTree
from oomtop.lab.node import LabNode, LabRuntimeError
from oomtop.lab.observe import LabSource, Tracker
from oomtop.lab.options import LabOptions
from oomtop.lab.report import Outcome, summary
from oomtop.lab.runtime import Runtime
from oomtop.lab.runtime_plain import PlainRuntime
from oomtop.lab.runtime_runc import RuncRuntime
from oomtop.lab.stopping import Aborted, StopFlag
from oomtop.lab.truth import KernelLog

FIRST_SAMPLE_S = 15.0  # the collector's first Sample takes a full scan: this long before the run gives up


class Session:
    """One lab run, from :meth:`build` to :meth:`teardown`; its outcome in :attr:`outcome`."""

    def __init__(self, options: LabOptions, scenario: Scenario, capacity_bytes: int, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.scenario = scenario
        self.capacity_bytes = capacity_bytes
        self.out = out
        self.headless = options.headless
        self.stop_flag = StopFlag()
        self.outcome = Outcome()
        self.tracker = Tracker()
        # What teardown must undo, as far as build got (build can fail half-way; teardown runs on every path).
        self._acquired = False
        self._node: LabNode | None = None
        self._klog: KernelLog | None = None
        self._torn_down = False
        self._teardown_lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ set-up

    def build(self, hierarchy: MemoryHierarchy) -> BuiltLab:
        """Lock, runtime, cgroups, the kernel log, the live Source; everything from here on is undone by
        :meth:`teardown`."""
        cleanup.acquire(LAB_DIR)
        self._acquired = True
        atexit.register(self.teardown)
        policy = AdjPolicy(probe_lowest_adj())
        runtime = self._runtime(hierarchy.version)
        runtime.prepare()  # runc: a private mount namespace, before any thread exists
        layout = CgroupLayout(self.options.driver)
        node = self._node = LabNode(CgroupTree(hierarchy, layout), runtime, policy, self.capacity_bytes)
        node.check_stop = self.stop_flag.check
        node.setup()
        klog = self._klog = KernelLog()
        lab = BuiltLab(
            options=self.options,
            capacity_bytes=self.capacity_bytes,
            runtime=runtime,
            node=node,
            klog=klog,
            source=self._live_source(layout, node),
            tracker=self.tracker,
            stop=self.stop_flag,
            outcome=self.outcome,
            out=self.out,
        )
        lab.emit(
            f"oomtop lab {self.options.scenario}: runtime {runtime.name}, {layout.driver.value} driver, cgroup "
            f"v{hierarchy.version} ({hierarchy.layout}); node capacity {format_quantity(self.capacity_bytes)}; "
            f"a sample every {self.options.interval_s:g} s",
            key="lab-title",
        )
        note = policy.note()
        if note:
            lab.emit(f"note: {note}", key="lab-adj")
        return lab

    def _runtime(self, cgroup_version: int) -> Runtime:
        if self.options.runtime == "runc":
            return RuncRuntime(LAB_DIR, cgroup_version)
        return PlainRuntime(LAB_DIR)

    def _live_source(self, layout: CgroupLayout, node: LabNode) -> LabSource:
        """oomtop's own live Source, as ``oomtop`` runs it, reading node metadata from the lab directory and
        narrowed to the lab's cgroups and processes."""
        from oomtop.live import LiveSource

        interval = self.options.interval_s
        config = CollectorConfig(
            host_root=LAB_DIR,
            slow_interval_s=interval,
            names_refresh_s=interval,
            redact_cmdline=self.options.redact_cmdline,
        )
        live = LiveSource(config, interval_s=interval, with_history=False)
        return LabSource(live, self.tracker, layout.parent, node.lab_pids, self.options.hostname)

    def teardown(self) -> list[str]:
        """Everything the lab made, gone; idempotent, from any thread, also at exit."""
        with self._teardown_lock:
            if self._torn_down:
                return []
            self._torn_down = True
            problems: list[str] = []
            if self._node is not None:
                problems += self._node.close()
            if self._klog is not None:
                self._klog.close()
            if self._acquired:
                problems += cleanup.sweep_cgroups()
                problems += cleanup.release(LAB_DIR)
            for problem in problems:
                print(f"oomtop lab: cleanup: {problem}", file=sys.stderr, flush=True)
            self.outcome.problems += [f"cleanup: {p}" for p in problems]
            return problems

    # ---------------------------------------------------------------------------------------- stopping

    def interrupt(self, signum: int) -> None:
        """A signal: remember the first (it makes the exit status) and stop the run."""
        if self.outcome.interrupted is None:
            self.outcome.interrupted = signum
        self.stop_flag.set()

    def stop(self) -> None:
        self.stop_flag.set()

    # ------------------------------------------------------------------------------------ scenario thread

    def run_scenario(self, lab: BuiltLab) -> None:
        """The scenario thread: wait for oomtop's first Sample, run the scenario, and (live view) keep the lab
        standing until the user quits; a crash is reported, and the lab is torn down on every way out."""
        try:
            first = self.tracker.wait_sample(lambda _s: True, 0.0, FIRST_SAMPLE_S, self.stop_flag.check)
            if first is None:
                raise LabRuntimeError(f"oomtop's collector delivered no sample within {FIRST_SAMPLE_S:.0f} s")
            self.scenario(lab)
            self.outcome.finished = True
            if not self.headless:
                lab.emit(
                    summary(self.outcome.checks) + "; press q to quit (the lab's pods stay until then)",
                    key="lab-summary",
                )
                self.stop_flag.wait()
        except Aborted:
            pass
        except BaseException as error:  # the scenario thread's crash is reported; the lab still cleans up  # noqa: BLE001
            self.outcome.crash = error
            detail = "".join(traceback.format_exception_only(type(error), error)).strip()
            if not isinstance(error, (LabRuntimeError, LabError)):
                traceback.print_exc(file=sys.stderr)
            lab.emit(f"the scenario failed: {detail}", key="lab-crash")
        finally:
            self.teardown()

    def exit_status(self) -> int:
        return self.outcome.exit_status(self.headless)
