#!/usr/bin/env python3
"""What the first kill after a new Sample spends on its prediction, before and after issue 16's change.

    python bench/bench_kill_path.py [--rounds 30] [--procs 1000]

The watcher judges every kill against the last Sample before it (``RecentSamples.predicted_victim``).  Before,
that Sample's whole prediction (``rank.predict``: every limited cgroup's verdict and every task's memcg score) was
computed by the first kill that asked; now the live Source has the poller's worker thread compute it right after
the poll (``LivePoller.predict_ahead``) and the kill only picks it up.  Both are timed side by side, on the same
1,000-process Kubernetes-shaped Sample (``tests.ui_fixtures.synthetic_sample``: 50 pods x 4 containers), each
round on a new Sample (a new ``tick``), so nothing is cached between rounds:

- *on the kill path*: ``add(sample)`` then the first ``predicted_victim`` (the old behaviour, still the fallback);
- *computed ahead*: ``add(sample, poller.predict_ahead(sample))``, the future awaited as the live Source's loop
  would have moved on meanwhile, then the first ``predicted_victim``.

Prints p50 / max in ms of the kill's share, and the prediction's own cost on the worker thread for reference.
CPU-bound, no root needed; figures move with the machine's load (compare the two rows of one run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from oomtop.collect.oom_samples import RecentSamples
from oomtop.collect.poller import LivePoller
from oomtop.model import KilledTask, OomEvent, Sample
from tests.ui_fixtures import synthetic_sample


def a_kill_in(sample: Sample) -> OomEvent:
    """A logged memcg kill in the first limited container of the Sample, stamped after it was taken."""
    domain = next(c.path for c in sample.cgroups if c.limit_bytes is not None and c.identity.container is not None)
    pid = next(t.pid for t in sample.tasks if t.cgroup == domain)
    victim = KilledTask(pid=pid, comm="app")
    return OomEvent(
        kind="memcg",
        time=None,
        kernel_time_s=None,
        oom_cgroup=domain,
        task_cgroup=domain,
        victim=victim,
        killed=(victim,),
    )


def ms(values: list[float]) -> str:
    return f"p50 {statistics.median(values) * 1000:6.2f} ms   max {max(values) * 1000:6.2f} ms"


async def measure(rounds: int, procs: int) -> None:
    poller = LivePoller()  # only its worker thread is used here: no poll is made
    on_path: list[float] = []
    ahead: list[float] = []
    worker: list[float] = []
    try:
        for tick in range(rounds):
            old = synthetic_sample(tick=2 * tick, procs=procs)
            recent = RecentSamples()
            recent.add(old)
            kill = a_kill_in(old)
            start = time.perf_counter()
            recent.predicted_victim(kill)
            on_path.append(time.perf_counter() - start)

            new = synthetic_sample(tick=2 * tick + 1, procs=procs)
            recent = RecentSamples()
            start = time.perf_counter()
            pending = poller.predict_ahead(new)
            recent.add(new, pending)
            await asyncio.wrap_future(pending)  # the loop serves other work while the worker thread computes
            worker.append(time.perf_counter() - start)
            kill = a_kill_in(new)
            start = time.perf_counter()
            recent.predicted_victim(kill)
            ahead.append(time.perf_counter() - start)
    finally:
        poller.close()
    tasks = len(synthetic_sample(procs=procs).tasks)
    print(f"first kill after a new Sample, {tasks} tasks, {rounds} rounds (wall time of the kill's share)")
    print(f"  prediction on the kill path (before)      {ms(on_path)}")
    print(f"  prediction computed ahead (after)         {ms(ahead)}")
    print(f"  (the prediction itself, on the worker)    {ms(worker)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--procs", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(measure(args.rounds, args.procs))


if __name__ == "__main__":
    main()
