"""A Sample's victim prediction is computed off the kill path (issue 16).

The first kill after a new Sample used to compute that Sample's whole prediction (about 16 ms on a 1,000-process
node) before its event could go out.  Now the live Source has the poller's worker thread compute it right after
the poll and hands the pending result to the watcher with the Sample; these tests make computing it on the kill
path fail, and check that the kill still gets its prediction -- and that a failed or missing one is still computed
rather than lost.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

from oomtop.collect import oom_samples
from oomtop.collect import poller as poller_module
from oomtop.collect.oom_samples import KEPT, RecentSamples
from oomtop.collect.poller import LivePoller
from oomtop.live import LiveSource
from oomtop.model import KilledTask, OomEvent, Sample
from oomtop.rank import Prediction, predict
from tests.fakehost import FakeHost, FakeProcess
from tests.test_rank import cgroup, sample, task

DOMAIN = "/kubepods/burstable/podx/c1"


def _sample(victim_rss: int = 500):
    groups = [cgroup("/"), cgroup("/kubepods"), cgroup("/kubepods/burstable"), cgroup("/kubepods/burstable/podx")]
    groups.append(cgroup(DOMAIN, 64 << 20))
    return sample(groups, [task(10, DOMAIN, victim_rss), task(11, DOMAIN, 100)])


def _kill(pid: int = 10) -> OomEvent:
    victim = KilledTask(pid=pid, comm="app")
    return OomEvent(
        kind="memcg",
        time=0.0,
        kernel_time_s=None,
        oom_cgroup=DOMAIN,
        task_cgroup=DOMAIN,
        victim=victim,
        killed=(victim,),
    )


def _done(value: Prediction) -> Future[Prediction]:
    future: Future[Prediction] = Future()
    future.set_result(value)
    return future


@pytest.fixture
def no_predict_on_kill_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> Prediction:
        raise AssertionError("the prediction was computed on the kill path")

    monkeypatch.setattr(oom_samples, "predict", refuse)


def test_a_kill_uses_the_prediction_computed_ahead(no_predict_on_kill_path: None) -> None:
    recent = RecentSamples()
    snap = _sample()
    recent.add(snap, _done(predict(snap)))
    assert recent.computed_ahead(snap)
    assert recent.predicted_victim(_kill()) == 10
    assert recent.predicted_victim(_kill()) == 10  # cached: asked twice, computed never


def test_a_kill_waits_for_a_prediction_still_running_instead_of_starting_over(no_predict_on_kill_path: None) -> None:
    recent = RecentSamples()
    snap = _sample()
    pending: Future[Prediction] = Future()
    recent.add(snap, pending)
    assert not recent.computed_ahead(snap)
    threading.Timer(0.05, lambda: pending.set_result(predict(snap))).start()
    assert recent.predicted_victim(_kill()) == 10


def test_a_failed_prediction_is_computed_on_the_kill_path_instead() -> None:
    recent = RecentSamples()
    snap = _sample()
    failed: Future[Prediction] = Future()
    failed.set_exception(RuntimeError("worker died"))
    recent.add(snap, failed)
    assert recent.predicted_victim(_kill()) == 10


def test_without_one_it_is_computed_when_asked() -> None:
    recent = RecentSamples()
    snap = _sample()
    recent.add(snap)
    assert recent.predicted_victim(_kill()) == 10


def test_pending_predictions_of_dropped_samples_are_let_go() -> None:
    recent = RecentSamples()
    first = _sample()
    recent.add(first, _done(predict(first)))
    for _ in range(KEPT):
        other = _sample(victim_rss=50)
        recent.add(other, _done(predict(other)))
    assert not recent.computed_ahead(first)
    assert len(recent._ahead) == KEPT  # one per kept Sample, no more


def test_the_poller_computes_it_on_its_own_thread(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2")
    host.add_cgroup("/kubepods", usage=300 << 20)
    host.add_cgroup(DOMAIN.rsplit("/", 2)[0], usage=200 << 20)
    host.add_cgroup(DOMAIN.rsplit("/", 1)[0], usage=120 << 20, limit=256 << 20)
    host.add_cgroup(DOMAIN, usage=100 << 20, limit=128 << 20)
    host.add_process(FakeProcess(101, comm="web", rss_anon_kb=80 * 1024, adj=900), DOMAIN)
    host.add_process(FakeProcess(102, comm="side", rss_anon_kb=10 * 1024, adj=900), DOMAIN)
    threads: list[str] = []

    def recording_predict(snap):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return predict(snap)

    async def run() -> tuple[Prediction, Prediction]:
        poller = LivePoller(host.config(), 0.05)
        try:
            snap = await poller.sample()
            original = poller_module.predict
            poller_module.predict = recording_predict
            try:
                ahead = await asyncio.wrap_future(poller.predict_ahead(snap))
            finally:
                poller_module.predict = original
            return ahead, predict(snap)
        finally:
            poller.close()

    ahead, direct = asyncio.run(run())
    assert threads and all(name.startswith("oomtop-poll") for name in threads)
    assert ahead.by_domain[DOMAIN].victim.pid == direct.by_domain[DOMAIN].victim.pid == 101
    assert ahead.memcg_score == direct.memcg_score


def test_the_live_source_hands_each_sample_in_with_its_prediction_under_way(tmp_path: Path) -> None:
    host = FakeHost(tmp_path, layout="v2")
    host.add_cgroup("/kubepods", usage=300 << 20)
    host.add_cgroup(DOMAIN.rsplit("/", 2)[0], usage=200 << 20)
    host.add_cgroup(DOMAIN.rsplit("/", 1)[0], usage=120 << 20, limit=256 << 20)
    host.add_cgroup(DOMAIN, usage=100 << 20, limit=128 << 20)
    host.add_process(FakeProcess(101, comm="web", rss_anon_kb=80 * 1024, adj=900), DOMAIN)

    async def run() -> None:
        source = LiveSource(host.config(), 0.05, kmsg_path=None, with_history=False)
        seen = 0
        async for update in source.updates():
            if isinstance(update, Sample):
                watcher = source._watcher
                assert watcher is not None
                pending = watcher._samples._ahead.get(id(update))
                assert pending is not None, "a Sample reached the watcher without its prediction under way"
                ready = await asyncio.wrap_future(pending)
                assert ready.by_domain[DOMAIN].victim.pid == 101
                seen += 1
                if seen == 3:
                    break

    asyncio.run(run())
