"""What an event carries beyond its detector (oomtop.collect.oom_enrich) and the Samples it is judged against
(oomtop.collect.oom_samples), on a fixture host."""

from __future__ import annotations

from pathlib import Path

from oomtop.collect.collector import Collector
from oomtop.collect.identity import NodeNames
from oomtop.collect.oom_enrich import NAMES_RETRY_S, EventEnricher
from oomtop.collect.oom_ledger import Increment
from oomtop.collect.oom_samples import RecentSamples
from oomtop.model import KilledTask, OomEvent, Sample
from tests.fakehost import FakeHost, FakeProcess
from tests.test_identity import containerd

UID = "8a2f4c1e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"
CID = "3f" * 32
POD = f"/kubepods/burstable/pod{UID}"
CTR = f"{POD}/{CID}"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def host(tmp_path: Path) -> FakeHost:
    fake = FakeHost(tmp_path, layout="v1")
    fake.add_cgroup("/kubepods")
    fake.add_cgroup("/kubepods/burstable")
    fake.add_cgroup(POD, limit=256 << 20)
    fake.add_cgroup(CTR, limit=50 << 20)
    fake.add_process(FakeProcess(4241, comm="sh", rss_anon_kb=1000), CTR)
    fake.add_process(FakeProcess(4242, comm="web", rss_anon_kb=40000), CTR)
    return fake


def sample_of(fake: FakeHost, clock: Clock) -> Sample:
    with Collector(fake.config(slow_interval_s=0.0), monotonic=clock) as collector:
        return collector.sample()


def logged(pid: int = 4242, kernel_time_s: float | None = None, task_cgroup: str | None = CTR) -> OomEvent:
    victim = KilledTask(pid, "web")
    return OomEvent(kind="memcg", time=None, kernel_time_s=kernel_time_s, oom_cgroup=task_cgroup,
                    task_cgroup=task_cgroup, victim=victim, killed=(victim,))  # fmt: skip


# ------------------------------------------------------------------------------------------ recent samples


def test_the_sample_before_a_kill_by_the_kernels_clock(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    first = sample_of(fake, clock)
    samples.add(first)
    clock.now += 1
    samples.add(sample_of(fake, clock))
    assert samples.before(kernel_time_s=1000.5, victim_pid=None) is first


def test_the_sample_before_a_kill_when_the_clocks_do_not_line_up(tmp_path: Path) -> None:
    """Another clock, or a suspend: the last Sample in which the victim still lived."""
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    alive = sample_of(fake, clock)
    samples.add(alive)
    fake.remove_process(4242)
    clock.now += 1
    samples.add(sample_of(fake, clock))
    assert samples.before(kernel_time_s=5.0, victim_pid=4242) is alive


def test_a_prediction_is_computed_once_per_sample(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    sample = sample_of(fake, clock)
    samples.add(sample)
    assert samples.prediction(sample) is samples.prediction(sample)
    clock.now += 1
    assert samples.predicted_victim(logged(kernel_time_s=clock.now)) == 4242


# ------------------------------------------------------------------------------------------ logged events


def test_finish_adds_wall_time_names_and_the_prediction(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    containerd(fake.root, CID, name="web", uid=UID, pod="web-0", ns="shop")
    samples = RecentSamples(clock)
    samples.add(sample_of(fake, clock))
    enricher = EventEnricher(samples, NodeNames.load(str(fake.root)), clock, Clock(1_700_000_000.0))
    event = enricher.finish(logged(kernel_time_s=1000.5), historical=False, clock_offset=1_699_999_000.0)
    assert event.time == 1_700_000_000.5
    assert event.pod is not None and (event.pod.name, event.pod.namespace) == ("web-0", "shop")
    assert event.container is not None and event.container.name == "web"
    assert event.predicted_victim_pid == 4242 and event.source == ("kmsg",) and not event.historical


def test_history_is_not_predicted(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    samples.add(sample_of(fake, clock))
    enricher = EventEnricher(samples, NodeNames.empty(), clock)
    event = enricher.finish(logged(kernel_time_s=999.0), historical=True, clock_offset=0.0)
    assert event.historical and event.predicted_victim_pid is None


def test_an_unnamed_pod_re_reads_the_node_metadata_once_per_cgroup_and_period(tmp_path: Path) -> None:
    """A container that OOMs right at its start: its bundle appeared after the names were read."""
    fake, clock = host(tmp_path), Clock()
    enricher = EventEnricher(RecentSamples(clock), NodeNames.load(str(fake.root)), clock)
    containerd(fake.root, CID, name="early", uid=UID, pod="early", ns="v2-tier")
    pod, container = enricher.identity(CTR)
    assert pod is not None and pod.name == "early" and container is not None and container.name == "early"

    def container_name(path: str) -> str | None:
        container = enricher.identity(path)[1]
        return container.name if container is not None else None

    other = "4e" * 32
    containerd(fake.root, other, name="late", uid=UID, pod="early", ns="v2-tier")
    assert container_name(f"{POD}/{other}") == "late"  # another cgroup: re-read at once, not once per period
    third = "5d" * 32
    assert container_name(f"{POD}/{third}") is None  # unnamed: the metadata is re-read now ...
    containerd(fake.root, third, name="third", uid=UID, pod="early", ns="v2-tier")
    clock.now += NAMES_RETRY_S / 2
    assert container_name(f"{POD}/{third}") is None  # ... and not again so soon for this cgroup
    clock.now += NAMES_RETRY_S
    assert container_name(f"{POD}/{third}") == "third"


# ------------------------------------------------------------------------------------------ counter events


def test_a_counter_event_has_the_pod_and_the_prediction_of_the_sample_before(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    samples.add(sample_of(fake, clock))
    fake.remove_process(4242)  # the kill's own Sample no longer has the victim
    clock.now += 1
    samples.add(sample_of(fake, clock))
    enricher = EventEnricher(samples, NodeNames.empty(), clock, Clock(1_700_000_000.0))
    event = enricher.counter_event(Increment(CTR, 2, clock.now, {"counter", "eventfd"}))
    assert (event.task_cgroup, event.oom_cgroup, event.detected_in) == (CTR, CTR, CTR)
    assert event.count == 2 and event.source == ("counter", "eventfd") and event.victim.pid is None
    assert event.pod is not None and event.pod.uid == UID and event.predicted_victim_pid == 4242
    assert event.time == 1_700_000_000.0


def test_a_counter_event_for_a_removed_child_names_only_where_it_was_seen(tmp_path: Path) -> None:
    fake, clock = host(tmp_path), Clock()
    samples = RecentSamples(clock)
    samples.add(sample_of(fake, clock))
    enricher = EventEnricher(samples, NodeNames.empty(), clock)
    event = enricher.counter_event(Increment(POD, 1, clock.now, {"counter"}, vanished_child=True))
    assert (event.task_cgroup, event.oom_cgroup, event.pod, event.container) == (None, None, None, None)
    assert event.detected_in == POD and event.predicted_victim_pid is None
