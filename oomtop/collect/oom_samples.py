"""The last few Samples the watcher saw, and what each predicted: the state of the node just before a kill.

A kill is judged against the last Sample taken *before* it (what oomtop predicted, where the victim lived), not
the one that showed it.  The kernel stamps its log records with CLOCK_MONOTONIC, the clock Samples carry, so the
two can be lined up; predictions are computed once per Sample, however many kills refer to it.

A prediction of a 1,000-process node takes about 16 ms: computed when the first kill after a new Sample asks for
it, that is 16 ms on the kill path.  So the live Source has the poller's worker thread compute it right after the
Sample (:meth:`~oomtop.collect.poller.LivePoller.predict_ahead`) and hands the pending result in with the Sample;
a kill then only picks it up (or, in the few ms before it is ready, waits for the rest of it, never starting
over).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from oomtop.model import OomEvent, Sample
from oomtop.rank import Prediction, predict

KEPT = 4  # Samples kept: a kill's report can arrive a poll or two after the Sample before it


class RecentSamples:
    """The newest :data:`KEPT` Samples, with their victim predictions computed on demand and cached."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._samples: deque[Sample] = deque(maxlen=KEPT)
        self._predictions: dict[int, Prediction] = {}  # id(sample) -> its Prediction (one per sample, not per event)
        self._ahead: dict[int, Future[Prediction]] = {}  # id(sample) -> its prediction, being computed elsewhere

    def add(self, sample: Sample, prediction: Future[Prediction] | None = None) -> None:
        """Keep a Sample; ``prediction`` is its prediction being computed off the kill path (see the module)."""
        self._samples.append(sample)
        live = {id(kept) for kept in self._samples}
        self._ahead = {key: value for key, value in self._ahead.items() if key in live}
        if prediction is not None:
            self._ahead[id(sample)] = prediction

    def __len__(self) -> int:
        return len(self._samples)

    def newest_first(self) -> Iterator[Sample]:
        return reversed(self._samples)

    def prediction(self, sample: Sample) -> Prediction:
        """The prediction of a kept Sample, computed once (those of Samples no longer kept are dropped)."""
        prediction = self._predictions.get(id(sample))
        if prediction is None:
            live = {id(kept) for kept in self._samples}
            self._predictions = {key: value for key, value in self._predictions.items() if key in live}
            prediction = self._predictions[id(sample)] = self._ready(sample) or predict(sample)
        return prediction

    def _ready(self, sample: Sample) -> Prediction | None:
        """The prediction computed ahead for this Sample (waiting for the rest of it if it is still running), or
        None when there is none or it failed (the caller computes it then)."""
        pending = self._ahead.pop(id(sample), None)
        if pending is None or pending.cancelled():
            return None
        try:
            return pending.result()
        except Exception:  # noqa: BLE001 -- the kill path must not fail: compute it here instead
            return None

    def computed_ahead(self, sample: Sample) -> bool:
        """Whether this Sample's prediction was handed in ready-made (for tests and the benchmark)."""
        pending = self._ahead.get(id(sample))
        return pending is not None and pending.done()

    def before(self, kernel_time_s: float | None, victim_pid: int | None) -> Sample | None:
        """The last sample taken before the kill.  The kernel stamps records with its monotonic clock; where that
        does not line up with ours (another clock, a suspend), the last sample in which the victim still lived."""
        samples = list(self._samples)
        if kernel_time_s is not None and abs(kernel_time_s - self._monotonic()) < 60:
            samples = [s for s in samples if s.monotonic <= kernel_time_s]
        elif victim_pid is not None:
            alive = [s for s in samples if any(task.pid == victim_pid for task in s.tasks)]
            samples = alive or samples
        return samples[-1] if samples else None

    def before_increment(self) -> Sample | None:
        """For a kill only a counter saw: the Sample before the newest (the newest is usually the one whose poll
        showed the increment, taken after the kill), or the newest when there is only one."""
        if len(self._samples) >= 2:
            return self._samples[-2]
        return self._samples[-1] if self._samples else None

    def predicted_victim(self, event: OomEvent) -> int | None:
        """The pid the last Sample before a logged kill predicted the kernel would choose in its OOM domain."""
        sample = self.before(event.kernel_time_s, event.victim.pid)
        if sample is None:
            return None
        prediction = self.prediction(sample)
        if event.kind == "global":
            return prediction.node.victim.pid if prediction.node.victim else None
        verdict = prediction.by_domain.get(event.oom_cgroup or "")
        return verdict.victim.pid if verdict and verdict.victim else None
