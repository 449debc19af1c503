"""kubelet's oom_score_adj for sidecar containers (restartable init containers), kubernetes PR 128029.

The expected values are transcribed from kubelet's own unit test as PR 128029 left it:
kubernetes/kubernetes ``pkg/kubelet/qos/policy_test.go`` ``TestGetContainerOOMScoreAdjust`` (the map-keyed
version with the ``burstable-mixed-multi-container-*`` cases; ``standardMemoryAmount = 8000000000``,
``sampleDefaultMemRequest = standardMemoryAmount/8``, the small sidecar ``standardMemoryAmount/20`` and the big one
``standardMemoryAmount/2``).  The formula they check is ``containerOOMScoreAdjust`` in
``pkg/kubelet/qos/policy.go`` with ``minRegularContainerMemory`` from ``pkg/kubelet/qos/helpers.go``: for a
sidecar, ``if oomScoreAdjust > 1000 - (1000*minRegularRequest)/capacity`` it takes that value, then the usual
clamp to [3, 999].  The kubelet test checks a range per container (``lowOOMScoreAdj``..``highOOMScoreAdj``); where
its range is wider than one value the exact value is worked out by hand in the comment and asserted, and the
kubelet range is asserted too.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from oomtop.model import CgroupKind, ContainerRef, Identity, PodRef, QosClass
from oomtop.rank import (
    KUBELET_ADJ_POLICY,
    KUBELET_BURSTABLE_MAX_ADJ,
    KUBELET_BURSTABLE_MIN_ADJ,
    expected_kubelet_adj,
    implied_request_range,
)
from oomtop.report import View, qos_adj
from tests.test_rank import cgroup, node, sample, task

STANDARD = 8_000_000_000  # policy_test.go standardMemoryAmount
DEFAULT_REQUEST = STANDARD // 8  # sampleDefaultMemRequest
SMALL_SIDECAR = STANDARD // 20  # sampleSmallSidecarContainer
BIG_SIDECAR = STANDARD // 2  # sampleBigSidecarContainer


def burstable(request: int | None, *, sidecar_of: list[int | None] | None = None, capacity: int = STANDARD) -> int:
    return expected_kubelet_adj(QosClass.BURSTABLE, request, capacity, regular_requests_if_sidecar=sidecar_of)


# (test case, container, its request, the pod's regular requests if it is a sidecar, kubelet's low, high, exact)
PR_EXAMPLES = [
    # burstable-unique-container-pod: 1000 - 1000*1e9/8e9 = 875
    ("burstable-unique-container-pod", "burstable-unique-container", DEFAULT_REQUEST, None, 875, 880, 875),
    # burstable-mixed-unique-main-container-pod: a plain (non-restartable) init container keeps its own request
    ("burstable-mixed-unique-main-container-pod", "init-container", DEFAULT_REQUEST, None, 875, 880, 875),
    ("burstable-mixed-unique-main-container-pod", "main-1", DEFAULT_REQUEST, None, 875, 880, 875),
    # small sidecar: own 1000 - 50 = 950, but main-1's 875 is lower, so 875 ("never ranks above the main")
    ("burstable-mixed-multi-container-small-sidecar-pod", "init-container", DEFAULT_REQUEST, None, 875, 880, 875),
    (
        "burstable-mixed-multi-container-small-sidecar-pod",
        "sidecar-small-container",
        SMALL_SIDECAR,
        [DEFAULT_REQUEST],
        875,
        875,
        875,
    ),
    ("burstable-mixed-multi-container-small-sidecar-pod", "main-1", DEFAULT_REQUEST, None, 875, 875, 875),
    # same request: 875 either way
    ("burstable-mixed-multi-container-sample-request-pod", "init-container", DEFAULT_REQUEST, None, 875, 880, 875),
    (
        "burstable-mixed-multi-container-sample-request-pod",
        "sidecar-container",
        DEFAULT_REQUEST,
        [DEFAULT_REQUEST],
        875,
        875,
        875,
    ),
    ("burstable-mixed-multi-container-sample-request-pod", "main-1", DEFAULT_REQUEST, None, 875, 875, 875),
    # big sidecar: own 1000 - 500 = 500 is already below main-1's 875, so it keeps 500
    (
        "burstable-mixed-multi-container-big-sidecar-container-pod",
        "init-container",
        DEFAULT_REQUEST,
        None,
        875,
        880,
        875,
    ),
    (
        "burstable-mixed-multi-container-big-sidecar-container-pod",
        "sidecar-big-container",
        BIG_SIDECAR,
        [DEFAULT_REQUEST],
        500,
        500,
        500,
    ),
    ("burstable-mixed-multi-container-big-sidecar-container-pod", "main-1", DEFAULT_REQUEST, None, 875, 875, 875),
]


@pytest.mark.parametrize(("case", "container", "request_bytes", "sidecar_of", "low", "high", "exact"), PR_EXAMPLES)
def test_kubelet_pr_128029_examples(case, container, request_bytes, sidecar_of, low, high, exact):
    adj = burstable(request_bytes, sidecar_of=sidecar_of)
    assert low <= adj <= high, (case, container, adj)
    assert adj == exact, (case, container, adj)


@pytest.mark.parametrize(
    ("qos", "request_bytes", "capacity", "low", "high"),
    [
        # the older cases of the same test table, single containers, as GetPodQOS classifies those pods
        (QosClass.BURSTABLE, None, 4_000_000_000, 999, 999),  # cpu-limit: no memory request
        (QosClass.BURSTABLE, None, 8_000_000_000, 999, 999),  # memory-limit-cpu-request: no request given
        (QosClass.BEST_EFFORT, None, 7_230_457_451, 1000, 1000),  # zero-memory-limit
        (QosClass.BEST_EFFORT, None, 4_000_000_000, 1000, 1000),  # no-request-limit
        (QosClass.GUARANTEED, 10_000_000_000, 123_456_789, -997, -997),  # equal-request-limit-cpu-memory
        (QosClass.BURSTABLE, STANDARD // 2, STANDARD, 495, 505),  # cpu-unlimited-memory-limited-with-requests
        (QosClass.BURSTABLE, STANDARD - 1, STANDARD, 3, 3),  # request-no-limit: 1000 - 999 = 1 -> 3
        (QosClass.BEST_EFFORT, None, 4_000_000_000, 1000, 1000),  # cluster-critical: BestEffort all the same
        (QosClass.GUARANTEED, None, 4_000_000_000, -997, -997),  # node-critical: pass GUARANTEED for it
    ],
)
def test_kubelet_table_single_containers(qos, request_bytes, capacity, low, high):
    assert low <= expected_kubelet_adj(qos, request_bytes, capacity) <= high


def test_sidecar_rule_never_ranks_a_sidecar_above_its_pods_regular_containers():
    """Property, against kubelet's formula written out separately: adj = clamp(1000 - 1000*max(own, min
    regular)/capacity), and never above the highest adj of the pod's regular containers."""
    rng = random.Random(128029)
    for _ in range(3000):
        capacity = rng.randint(1000, 1 << 42)
        regular = [rng.choice([None, rng.randint(0, capacity * 2)]) for _ in range(rng.randint(1, 4))]
        own = rng.choice([None, rng.randint(0, capacity * 2)])
        adj = burstable(own, sidecar_of=regular, capacity=capacity)
        effective = max(own or 0, min(r or 0 for r in regular))
        raw = 1000 - (1000 * effective) // capacity
        assert adj == min(max(raw, 3), 999), (own, regular, capacity)
        highest_regular = max(burstable(r, capacity=capacity) for r in regular)
        assert adj <= highest_regular
        assert adj <= burstable(own, capacity=capacity)  # a sidecar's adj is only ever lowered


def test_without_the_sidecar_rule_the_small_sidecar_would_rank_first():
    """The case PR 128029 fixed: before it, the small sidecar (own request only) got 950 > main-1's 875."""
    assert burstable(SMALL_SIDECAR) == 950
    assert burstable(SMALL_SIDECAR, sidecar_of=[DEFAULT_REQUEST]) == 875


def test_the_sidecar_rule_is_burstable_only():
    assert expected_kubelet_adj(QosClass.GUARANTEED, 1, STANDARD, regular_requests_if_sidecar=[5]) == -997
    assert expected_kubelet_adj(QosClass.BEST_EFFORT, None, STANDARD, regular_requests_if_sidecar=[None]) == 1000


def test_implied_range_of_a_capped_sidecar_starts_at_zero():
    low, high = implied_request_range(875, STANDARD)
    assert low <= DEFAULT_REQUEST <= high and low > SMALL_SIDECAR
    capped = implied_request_range(875, STANDARD, capped_sidecar=True)
    assert capped == (0, high)
    assert capped[0] <= SMALL_SIDECAR  # the small sidecar's own request is inside only the capped reading


# ---------------------------------------------------------------------------------- qos_adj (JSON and details)

POD = "/kubepods/burstable/podabc"


def _container(name: str, cid: str, *, sandbox: bool = False):
    pod = PodRef(uid="abc", qos=QosClass.BURSTABLE, name="web", namespace="default")
    identity = Identity(
        kind=CgroupKind.CONTAINER,
        qos=QosClass.BURSTABLE,
        pod=pod,
        container=ContainerRef(id=cid, runtime="containerd", name=name, is_sandbox=sandbox),
        label=name,
    )
    return replace(cgroup(f"{POD}/{cid}", 256 << 20), identity=identity)


def _view(adjs: dict[str, int]) -> tuple[View, dict[str, object]]:
    groups = [cgroup("/"), cgroup("/kubepods"), cgroup("/kubepods/burstable"), cgroup(POD)]
    groups.append(_container("pause", "sandbox0", sandbox=True))
    tasks = [task(99, f"{POD}/sandbox0", 10, adj=-998)]
    by_name = {}
    for number, (name, adj) in enumerate(adjs.items(), start=1):
        member = _container(name, f"c{number}")
        groups.append(member)
        tasks.append(task(100 + number, member.path, 100, adj=adj))
        by_name[name] = member
    return View.of(sample(groups, tasks, node(mem_total=STANDARD))), by_name


def test_qos_adj_says_which_kubelet_and_reads_a_capped_sidecar():
    view, members = _view({"main-1": 875, "sidecar-small": 875, "big": 500})
    main = qos_adj(view, members["main-1"], QosClass.BURSTABLE)
    assert main["kubelet"] == KUBELET_ADJ_POLICY == "kubelet 1.33+"
    low, high = main["implied_request_bytes"]
    assert low <= DEFAULT_REQUEST <= high
    # equal to the highest of the others (the sandbox's -998 is not a container's): maybe capped, from 0
    assert main["implied_request_bytes_if_sidecar"] == [0, high]
    big = qos_adj(view, members["big"], QosClass.BURSTABLE)
    assert big["implied_request_bytes_if_sidecar"] == big["implied_request_bytes"]  # below: not capped
    assert big["implied_request_bytes"][0] <= BIG_SIDECAR <= big["implied_request_bytes"][1]


def test_qos_adj_a_container_above_all_others_cannot_be_a_sidecar():
    view, members = _view({"main-1": 875, "sidecar-old-kubelet": 950})
    reading = qos_adj(view, members["sidecar-old-kubelet"], QosClass.BURSTABLE)
    assert reading["implied_request_bytes"] is not None
    assert reading["implied_request_bytes_if_sidecar"] is None


def test_qos_adj_a_lone_container_cannot_be_a_sidecar():
    view, members = _view({"only": 900})
    assert qos_adj(view, members["only"], QosClass.BURSTABLE)["implied_request_bytes_if_sidecar"] is None


def test_clamp_bounds_unchanged():
    assert (KUBELET_BURSTABLE_MIN_ADJ, KUBELET_BURSTABLE_MAX_ADJ) == (3, 999)


def test_qos_adj_the_sandbox_is_not_one_of_the_pods_containers():
    """A sandbox whose pause process kept a high adj (a runtime that could not lower it) is no regular container:
    a lone container stays "cannot be a sidecar"."""
    view, members = _view({"only": 900})
    sandbox_task = next(t for t in view.sample.tasks if t.pid == 99)
    tasks = tuple(replace(t, oom_score_adj=999) if t is sandbox_task else t for t in view.sample.tasks)
    view = View.of(replace(view.sample, tasks=tasks))
    assert qos_adj(view, members["only"], QosClass.BURSTABLE)["implied_request_bytes_if_sidecar"] is None
