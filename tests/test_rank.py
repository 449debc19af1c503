"""Tests for oomtop.rank: the kernel's OOM victim choice and kubelet's oom_score_adj policy, as pure functions.

Every expected value below is worked out by hand from the kernel and kubelet sources, not from rank.py:

- mm/oom_kill.c ``oom_badness()``: ``points = get_mm_rss(mm) + MM_SWAPENTS + mm_pgtables_bytes(mm) / PAGE_SIZE``;
  ``adj *= totalpages / 1000; points += adj`` (C ``long`` arithmetic, so ``totalpages / 1000`` truncates);
  ``LONG_MIN`` (never picked) for ``oom_score_adj == -1000``, global init, kernel threads and tasks without an mm.
- mm/oom_kill.c ``select_bad_process()`` starts at ``chosen_points = LONG_MIN`` and ``oom_evaluate_task()`` skips a
  task only when ``points < oc->chosen_points``: negative points can still be chosen, and on a tie the task
  scanned later wins.  A memcg OOM scans with ``mem_cgroup_scan_tasks()`` (``for_each_mem_cgroup_tree``: the
  domain, then its descendants in pre-order); a global OOM with ``for_each_process`` (fork order).
- mm/oom_kill.c ``constrained_alloc()``: memcg OOM ``totalpages = mem_cgroup_get_max(memcg) ?: 1``; global OOM
  ``totalram_pages() + total_swap_pages``.
- mm/memcontrol.c ``mem_cgroup_get_max()``: ``memory.max + min(swap allowance, total_swap_pages)``.
- mm/memcontrol.c ``mem_cgroup_get_oom_group()``: v2 only; walks from the victim's memcg up to and including the
  OOM domain (root for a global OOM) and keeps the highest memcg with ``oom_group`` set; a victim in the root
  memcg has no group.  ``oom_kill_memcg_member()`` spares ``oom_score_adj == -1000`` and global init.
- fs/proc/base.c ``proc_oom_score()`` (5.9+): ``(1000 + badness * 1000 / (long)totalpages) * 2 / 3``.
- pkg/kubelet/qos/policy.go ``GetContainerOOMScoreAdjust()``: Guaranteed -997, BestEffort 1000, Burstable
  ``1000 - (1000*request)/capacity``, then ``< 1000 + guaranteedOOMScoreAdj`` -> 3 and ``== 1000`` -> 999.
"""

from __future__ import annotations

import random
import signal

import pytest

from oomtop.model import Cgroup, CgroupKind, Identity, NodeInfo, QosClass, Sample, Task
from oomtop.rank import (
    KUBELET_BESTEFFORT_ADJ,
    KUBELET_BURSTABLE_MAX_ADJ,
    KUBELET_BURSTABLE_MIN_ADJ,
    KUBELET_GUARANTEED_ADJ,
    Candidate,
    SampleIndex,
    badness_points,
    base_points,
    c_div,
    choose,
    choose_eligible,
    eligible,
    expected_kubelet_adj,
    global_totalpages,
    global_verdict,
    implied_request_range,
    is_under,
    memcg_totalpages,
    normalised_score,
    oom_group_root,
    predict,
    proc_oom_score,
    score_tasks,
    scores_of,
    verdict,
)

PAGE = 4096
KiB = 1 << 10
MiB = 1 << 20
GiB = 1 << 30

# ------------------------------------------------------------------------------------------------ builders


def node(
    version: int = 1,
    *,
    mem_total: int = 16 * GiB,
    swap_total: int = 0,
    page_size: int = PAGE,
) -> NodeInfo:
    return NodeInfo(
        hostname="node-1",
        kernel_release="6.18.44",
        cgroup_version=version,
        cgroup_layout={1: "v1", 2: "v2"}.get(version, "none"),
        mem_total_bytes=mem_total,
        mem_available_bytes=mem_total // 2,
        swap_total_bytes=swap_total,
        swap_free_bytes=swap_total,
        page_size=page_size,
        clock_ticks=100,
        boot_time=1_700_000_000.0,
    )


def cgroup(
    path: str,
    limit: int | None = None,
    *,
    swap_limit: int | None = None,
    oom_group: bool | None = None,
    kind: CgroupKind = CgroupKind.PLAIN,
    usage: int = 0,
    pids: tuple[int, ...] = (),
) -> Cgroup:
    name = "/" if path == "/" else path.rsplit("/", 1)[1]
    return Cgroup(
        path=path,
        usage_bytes=usage,
        limit_bytes=limit,
        high_bytes=None,
        peak_bytes=None,
        failcnt=0,
        anon_bytes=usage,
        file_bytes=0,
        inactive_file_bytes=0,
        shmem_bytes=0,
        swap_bytes=0,
        swap_limit_bytes=swap_limit,
        oom_events=0,
        oom_kills=0,
        oom_kills_local=None,
        oom_group=oom_group,
        under_oom=False,
        pressure=None,
        pids=pids,
        identity=Identity(kind=kind, label=name),
    )


def task(
    pid: int,
    cgroup: str = "/",
    rss_pages: int = 0,
    adj: int = 0,
    *,
    file_pages: int = 0,
    shmem_pages: int = 0,
    swap_pages: int = 0,
    pgtables_bytes: int = 0,
    start_ticks: int | None = None,
    has_memory: bool = True,
    comm: str = "app",
    page_size: int = PAGE,
) -> Task:
    """``rss_pages`` is the kernel's ``rss`` column (anon + file + shmem); file and shmem are carved out of it."""
    anon_pages = rss_pages - file_pages - shmem_pages
    assert anon_pages >= 0
    return Task(
        pid=pid,
        start_ticks=pid if start_ticks is None else start_ticks,
        comm=comm,
        cmdline=comm,
        uid=0,
        cgroup=cgroup,
        rss_anon_bytes=anon_pages * page_size,
        rss_file_bytes=file_pages * page_size,
        rss_shmem_bytes=shmem_pages * page_size,
        swap_bytes=swap_pages * page_size,
        pgtables_bytes=pgtables_bytes,
        oom_score=None,
        oom_score_adj=adj,
        has_memory=has_memory,
    )


def sample(cgroups: list[Cgroup], tasks: list[Task], node_info: NodeInfo | None = None) -> Sample:
    return Sample(
        time=1_700_000_100.0,
        monotonic=100.0,
        node=node_info or node(),
        cgroups=tuple(cgroups),
        tasks=tuple(tasks),
    )


def pids(tasks) -> list[int]:
    return [t.pid for t in tasks]


# ----------------------------------------------------------------------------------------- badness_points


class TestBadnessPoints:
    def test_sums_rss_swap_and_pagetable_pages_plus_adj_bias(self):
        t = task(10, rss_pages=17, file_pages=5, shmem_pages=2, swap_pages=3, pgtables_bytes=2 * PAGE, adj=100)
        # rss 17 (anon 10 + file 5 + shmem 2) + swap 3 + pgtables 2 = 22; adj 100 * (12345 / 1000 = 12) = 1200
        assert badness_points(t, 12345, PAGE) == 22 + 1200

    def test_pagetables_bytes_truncate_to_whole_pages(self):
        assert badness_points(task(10, rss_pages=1, pgtables_bytes=PAGE + 1), 1000, PAGE) == 2
        assert badness_points(task(10, rss_pages=1, pgtables_bytes=PAGE - 1), 1000, PAGE) == 1

    def test_adj_unit_is_totalpages_div_1000_truncated(self):
        t = task(10, rss_pages=50, adj=1)
        assert badness_points(t, 1999, PAGE) == 51  # 1999 / 1000 = 1
        assert badness_points(t, 2000, PAGE) == 52
        assert badness_points(task(10, rss_pages=50, adj=1000), 999, PAGE) == 50  # 999 / 1000 = 0: adj is void

    def test_adj_zero_is_just_memory(self):
        assert badness_points(task(10, rss_pages=12707, pgtables_bytes=151552), 12800, PAGE) == 12707 + 37

    def test_negative_adj_can_make_points_negative(self):
        t = task(10, rss_pages=100, adj=-500)
        assert badness_points(t, 1_000_000, PAGE) == 100 - 500 * 1000
        t = task(10, rss_pages=262144, adj=-997)
        assert badness_points(t, 4194304, PAGE) == 262144 - 997 * 4194 == -3919274

    def test_adj_minus_1000_is_never_picked(self):
        assert badness_points(task(10, rss_pages=10**6, adj=-1000), 4194304, PAGE) is None

    def test_adj_minus_999_is_still_a_candidate(self):
        assert badness_points(task(10, rss_pages=5, adj=-999), 4194304, PAGE) == 5 - 999 * 4194

    def test_global_init_is_never_picked(self):
        assert badness_points(task(1, rss_pages=10**6, adj=1000), 4194304, PAGE) is None

    def test_task_without_mm_is_never_picked(self):
        assert badness_points(task(10, rss_pages=10**6, has_memory=False), 4194304, PAGE) is None

    def test_other_page_sizes(self):
        page = 64 * KiB
        t = task(10, rss_pages=3, swap_pages=1, pgtables_bytes=page, adj=2, page_size=page)
        assert badness_points(t, 5000, page) == 3 + 1 + 1 + 2 * 5


# ------------------------------------------------------------------------------ C division and the scores


class TestFastPathsMatchTheReference:
    """The per-Sample loops (eligible, scores_of, choose_eligible) inline badness_points and normalised_score
    for speed: on many random tasks and domain sizes they give exactly what the reference functions give."""

    def test_over_random_tasks_and_domains(self):
        rng = random.Random(4)
        for _ in range(40):
            tasks = [
                task(
                    pid,
                    rss_pages=rng.randrange(0, 300_000),
                    adj=rng.choice([-1000, -999, -997, -500, 0, 3, 999, 1000]),
                    file_pages=0,
                    swap_pages=rng.randrange(0, 5_000),
                    pgtables_bytes=rng.randrange(0, 10 * PAGE),
                    has_memory=rng.random() > 0.05,
                    page_size=PAGE,
                )
                for pid in rng.sample(range(1, 60), rng.randrange(0, 12))
            ]
            totalpages = rng.choice([1, 999, 1000, 4097, 262144, 4194304])
            entries = eligible(tasks, PAGE)
            assert [e.task for e in entries] == [t for t in tasks if badness_points(t, totalpages, PAGE) is not None]
            assert [e.base for e in entries] == [base_points(e.task, PAGE) for e in entries]
            reference = score_tasks(tasks, totalpages, PAGE)
            assert reference == [
                Candidate(t, p, normalised_score(p, totalpages))
                for t in tasks
                if (p := badness_points(t, totalpages, PAGE)) is not None
            ]
            assert dict(scores_of(entries, totalpages)) == {c.task.key: c.score for c in reference}
            chosen = choose(reference)
            fast = choose_eligible(entries, totalpages)
            assert (fast.task if fast else None) == (chosen.task if chosen else None)


class TestCDivision:
    @pytest.mark.parametrize(
        ("num", "den", "expected"),
        [
            (7, 2, 3),
            (-7, 2, -3),  # Python's // gives -4
            (7, -2, -3),
            (-7, -2, 3),
            (0, 5, 0),
            (-1, 1000, 0),  # Python's // gives -1
            (-1000, 1000, -1),
            (-1001, 1000, -1),
            (-1999, 1000, -1),
            (6, 3, 2),
            (-6, 3, -2),
        ],
    )
    def test_truncates_toward_zero(self, num, den, expected):
        assert c_div(num, den) == expected
        assert c_div(num, den) == int(num / den)  # exact here: small operands

    def test_differs_from_floor_division_for_negative_inexact_quotients(self):
        assert c_div(-7, 2) != -7 // 2

    def test_large_operands_exactly(self):
        num = -(10**30) - 7
        assert c_div(num, 10**15) == -(10**15)  # float division would lose the digits


class TestNormalisedScore:
    def test_points_per_mille_of_domain(self):
        assert normalised_score(12744, 12800) == 995  # 995.6 truncated
        assert normalised_score(470, 12800) == 36

    def test_negative_points_truncate_toward_zero(self):
        assert normalised_score(-1, 3000) == 0  # -0.33 -> 0 (floor would say -1)
        assert normalised_score(-3919274, 4194304) == -934  # -934.43 -> -934 (floor: -935)

    def test_empty_domain_scores_zero(self):
        assert normalised_score(100, 0) == 0


class TestProcOomScore:
    """fs/proc/base.c proc_oom_score(), kernels 5.9+: (1000 + badness * 1000 / totalpages) * 2 / 3."""

    T = 16 * GiB // PAGE  # 4194304 pages, no swap

    def test_plain_task(self):
        # 1 GiB rss: 262144 * 1000 / 4194304 = 62.5 -> 62; (1000 + 62) * 2 / 3 = 708
        assert proc_oom_score(262144, self.T) == 708

    def test_guaranteed_task_negative_points_truncate_toward_zero(self):
        # points -3919274 -> * 1000 / T = -934.43 -> -934 (C); (1000 - 934) * 2 / 3 = 44.  Floor division: 43.
        assert proc_oom_score(-3919274, self.T) == 44

    def test_besteffort_task(self):
        # 262144 + 1000 * 4194 = 4456144 -> 1062; (2062) * 2 / 3 = 1374
        assert proc_oom_score(4456144, self.T) == 1374

    def test_zero_points_read_666(self):
        assert proc_oom_score(0, self.T) == 666

    def test_unkillable_reads_zero(self):
        assert proc_oom_score(None, self.T) == 0

    def test_matches_the_kernel_formula_from_a_task(self):
        t = task(10, rss_pages=262144, adj=-997)
        points = badness_points(t, self.T, PAGE)
        assert proc_oom_score(points, self.T) == 44


# ---------------------------------------------------------------------------------------- memcg_totalpages


class TestMemcgTotalpages:
    LIMIT = 1 * GiB  # 262144 pages

    def test_limit_only_without_node_swap(self):
        assert memcg_totalpages(cgroup("/a", self.LIMIT), 0, PAGE) == 262144

    def test_limit_rounds_down_to_whole_pages(self):
        assert memcg_totalpages(cgroup("/a", self.LIMIT + 100), 0, PAGE) == 262144

    def test_swap_limit_smaller_than_node_swap(self):
        c = cgroup("/a", self.LIMIT, swap_limit=256 * MiB)
        assert memcg_totalpages(c, 1 * GiB, PAGE) == 262144 + 65536

    def test_swap_limit_larger_than_node_swap_is_capped(self):
        c = cgroup("/a", self.LIMIT, swap_limit=4 * GiB)
        assert memcg_totalpages(c, 1 * GiB, PAGE) == 262144 + 262144

    def test_unlimited_swap_allowance_takes_the_node_swap(self):
        c = cgroup("/a", self.LIMIT, swap_limit=None)
        assert memcg_totalpages(c, 1 * GiB, PAGE) == 262144 + 262144

    def test_unlimited_swap_allowance_without_node_swap(self):
        assert memcg_totalpages(cgroup("/a", self.LIMIT, swap_limit=None), 0, PAGE) == 262144

    def test_zero_swap_allowance(self):
        assert memcg_totalpages(cgroup("/a", self.LIMIT, swap_limit=0), 1 * GiB, PAGE) == 262144

    def test_any_swap_allowance_is_void_without_node_swap(self):
        assert memcg_totalpages(cgroup("/a", self.LIMIT, swap_limit=512 * MiB), 0, PAGE) == 262144

    def test_unlimited_cgroup_has_no_domain(self):
        assert memcg_totalpages(cgroup("/a", None), 1 * GiB, PAGE) is None
        assert memcg_totalpages(cgroup("/a", None, swap_limit=1 * GiB), 1 * GiB, PAGE) is None

    def test_swap_enlarges_the_adj_unit(self):
        c = cgroup("/a", self.LIMIT, swap_limit=None)
        total = memcg_totalpages(c, 1 * GiB, PAGE)
        assert badness_points(task(10, rss_pages=0, adj=100), total, PAGE) == 100 * (524288 // 1000)


class TestGlobalTotalpages:
    def test_ram_plus_swap(self):
        s = sample([cgroup("/")], [], node(mem_total=8 * GiB, swap_total=2 * GiB))
        assert global_totalpages(s) == 2097152 + 524288

    def test_page_size_is_respected(self):
        s = sample([cgroup("/")], [], node(mem_total=8 * GiB, swap_total=0, page_size=16 * KiB))
        assert global_totalpages(s) == 8 * GiB // (16 * KiB)


# ----------------------------------------------------------------------------------------- victim choice


def _tree_sample(extra_tasks: list[Task] = (), version: int = 1, children_order=("a", "b")) -> Sample:
    """/pod (limit 1 GiB) with /pod/a, /pod/a/x, /pod/b below it, plus a sibling /other."""
    by_name = {
        "a": [cgroup("/pod/a"), cgroup("/pod/a/x")],
        "b": [cgroup("/pod/b")],
    }
    cgroups = [cgroup("/"), cgroup("/pod", 1 * GiB)]
    for name in children_order:
        cgroups.extend(by_name[name])
    cgroups.append(cgroup("/other", 1 * GiB))
    return sample(cgroups, list(extra_tasks), node(version))


class TestChoose:
    def test_highest_points_wins(self):
        cands = score_tasks([task(10, rss_pages=5), task(11, rss_pages=9), task(12, rss_pages=7)], 1000, PAGE)
        assert choose(cands).task.pid == 11

    def test_tie_goes_to_the_later_scanned(self):
        cands = score_tasks([task(10, rss_pages=9), task(11, rss_pages=9), task(12, rss_pages=3)], 1000, PAGE)
        assert choose(cands).task.pid == 11

    def test_negative_points_can_be_chosen(self):
        cands = score_tasks([task(10, rss_pages=9, adj=-999)], 1_000_000, PAGE)
        assert cands[0].points < 0
        assert choose(cands).task.pid == 10

    def test_nothing_to_choose(self):
        assert choose([]) is None

    def test_score_tasks_drops_unkillable_and_keeps_scan_order(self):
        tasks = [task(12, rss_pages=3), task(1, rss_pages=99), task(10, rss_pages=5, adj=-1000), task(11, rss_pages=4)]
        cands = score_tasks(tasks, 1000, PAGE)
        assert pids(c.task for c in cands) == [12, 11]
        assert [c.points for c in cands] == [3, 4]
        assert [c.score for c in cands] == [3, 4]  # * 1000 / 1000


class TestMemcgVerdict:
    def test_highest_points_wins(self):
        s = _tree_sample([task(10, "/pod/a", 100), task(11, "/pod/b", 300), task(12, "/pod/a/x", 200)])
        v = verdict(SampleIndex(s), "/pod")
        assert v.victim.pid == 11
        assert v.domain == "/pod"
        assert v.totalpages == 262144
        assert [c.points for c in v.candidates] == [300, 200, 100]  # highest first
        assert v.group_path is None
        assert pids(v.group_victims) == [11]

    def test_scan_order_is_pre_order_of_the_domain_subtree(self):
        tasks = [
            task(20, "/pod/b", 10),
            task(21, "/pod/a/x", 10),
            task(22, "/pod", 10),
            task(23, "/pod/a", 10),
            task(24, "/pod/a", 10),
            task(25, "/other", 10),
        ]
        index = SampleIndex(_tree_sample(tasks))
        # the domain's own tasks, then the first child's subtree (a, then a/x), then the next child (b)
        assert pids(index.subtree_tasks("/pod")) == [22, 23, 24, 21, 20]
        assert pids(index.subtree_tasks("/pod/a")) == [23, 24, 21]

    def test_tie_goes_to_the_last_task_of_the_pre_order_walk(self):
        # all equal: pre-order ends in /pod/b (a breadth-first walk would end in /pod/a/x)
        tasks = [task(20, "/pod/b", 10), task(21, "/pod/a/x", 10), task(22, "/pod", 10), task(23, "/pod/a", 10)]
        assert verdict(SampleIndex(_tree_sample(tasks)), "/pod").victim.pid == 20

    def test_tie_within_one_cgroup_follows_the_task_order(self):
        tasks = [task(31, "/pod/a", 10), task(30, "/pod/a", 10)]
        assert verdict(SampleIndex(_tree_sample(tasks)), "/pod").victim.pid == 30

    def test_children_are_walked_in_the_order_the_sample_lists_them(self):
        tasks = [task(20, "/pod/b", 10), task(21, "/pod/a/x", 10), task(23, "/pod/a", 10)]
        index = SampleIndex(_tree_sample(tasks, children_order=("b", "a")))
        assert pids(index.subtree_tasks("/pod")) == [20, 23, 21]
        assert verdict(index, "/pod").victim.pid == 21

    def test_pod_level_domain_scans_every_container(self):
        cgroups = [
            cgroup("/"),
            cgroup("/kubepods", None, kind=CgroupKind.KUBEPODS),
            cgroup("/kubepods/burstable", None, kind=CgroupKind.QOS),
            cgroup("/kubepods/burstable/podA", 1 * GiB, kind=CgroupKind.POD),
            cgroup("/kubepods/burstable/podA/sandbox", None, kind=CgroupKind.SANDBOX),
            cgroup("/kubepods/burstable/podA/app", 768 * MiB, kind=CgroupKind.CONTAINER),
            cgroup("/kubepods/burstable/podA/sidecar", 256 * MiB, kind=CgroupKind.CONTAINER),
        ]
        tasks = [
            task(100, "/kubepods/burstable/podA/sandbox", 100, adj=-998, comm="pause"),
            task(101, "/kubepods/burstable/podA/app", 150_000, adj=900),
            task(102, "/kubepods/burstable/podA/sidecar", 60_000, adj=900),
        ]
        index = SampleIndex(sample(cgroups, tasks))
        pod = verdict(index, "/kubepods/burstable/podA")
        assert pids(c.task for c in pod.candidates) == [101, 102, 100]
        assert pod.victim.pid == 101
        # the sidecar's own limit is a smaller domain that sees only the sidecar
        side = verdict(index, "/kubepods/burstable/podA/sidecar")
        assert pids(c.task for c in side.candidates) == [102]
        assert side.totalpages == 65536
        assert side.candidates[0].points == 60_000 + 900 * 65

    def test_tasks_outside_the_domain_are_ignored(self):
        tasks = [task(10, "/pod/a", 100), task(11, "/other", 250_000, adj=1000), task(12, "/", 250_000, adj=1000)]
        v = verdict(SampleIndex(_tree_sample(tasks)), "/pod")
        assert pids(c.task for c in v.candidates) == [10]
        assert v.victim.pid == 10

    def test_a_path_prefix_is_not_a_descendant(self):
        cgroups = [cgroup("/"), cgroup("/pod", 1 * GiB), cgroup("/pod2", 1 * GiB)]
        v = verdict(SampleIndex(sample(cgroups, [task(10, "/pod", 5), task(11, "/pod2", 50)])), "/pod")
        assert pids(c.task for c in v.candidates) == [10]

    def test_all_tasks_oom_disabled_means_no_victim(self):
        tasks = [task(10, "/pod/a", 100, adj=-1000), task(11, "/pod/b", 100, adj=-1000)]
        v = verdict(SampleIndex(_tree_sample(tasks)), "/pod")
        assert v.victim is None
        assert v.candidates == ()
        assert v.group_path is None
        assert v.group_victims == ()

    def test_empty_domain_means_no_victim(self):
        v = verdict(SampleIndex(_tree_sample([])), "/pod")
        assert v.victim is None and v.candidates == ()

    def test_unlimited_or_unknown_cgroup_has_no_verdict(self):
        index = SampleIndex(_tree_sample([task(10, "/pod/a", 100)]))
        assert verdict(index, "/pod/a") is None
        assert verdict(index, "/nope") is None

    def test_adj_outweighs_memory_against_a_small_limit(self):
        # 64 MiB limit: one adj point is 16 pages.  A 10 MiB task at adj 900 beats a 60 MiB one at adj 0.
        cgroups = [cgroup("/"), cgroup("/c", 64 * MiB)]
        tasks = [task(10, "/c", 15_360), task(11, "/c", 2_560, adj=900)]
        v = verdict(SampleIndex(sample(cgroups, tasks)), "/c")
        assert v.victim.pid == 11
        assert [c.points for c in v.candidates] == [2_560 + 900 * 16, 15_360]
        assert [c.score for c in v.candidates] == [(2_560 + 14_400) * 1000 // 16_384, 15_360 * 1000 // 16_384]

    def test_domain_size_includes_allowed_swap(self):
        cgroups = [cgroup("/"), cgroup("/c", 1 * GiB, swap_limit=512 * MiB)]
        s = sample(cgroups, [task(10, "/c", 1000, adj=10)], node(mem_total=8 * GiB, swap_total=2 * GiB))
        v = verdict(SampleIndex(s), "/c")
        assert v.totalpages == 262144 + 131072
        assert v.candidates[0].points == 1000 + 10 * 393

    def test_the_kernels_dmesg_sample_v1(self):
        """samples/dmesg-6.18-memcg-v1.txt: limit 51200 kB, memsw unlimited, two `stress` tasks; 7978 was killed."""
        domain = "/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c/runcctr1"
        cgroups = [
            cgroup("/"),
            cgroup("/kubepods"),
            cgroup("/kubepods/burstable"),
            cgroup("/kubepods/burstable/podbc001ffa-68fc-11e9-92d7-5ef9efd9374c"),
            cgroup(domain, 51200 * KiB, swap_limit=None, usage=51200 * KiB),
        ]
        tasks = [
            task(7973, domain, 459, file_pages=459, pgtables_bytes=45056, comm="stress"),
            task(7978, domain, 12707, file_pages=67, pgtables_bytes=151552, comm="stress"),
        ]
        s = sample(cgroups, tasks, node(1, mem_total=2 * GiB, swap_total=0))
        v = verdict(SampleIndex(s), domain)
        assert v.totalpages == 12800
        assert [(c.task.pid, c.points, c.score) for c in v.candidates] == [(7978, 12744, 995), (7973, 470, 36)]
        assert v.victim.pid == 7978
        assert v.group_path is None
        assert pids(v.group_victims) == [7978]

    def test_the_kernels_dmesg_sample_v2_oom_group(self):
        """samples/dmesg-6.1-v2-oomgroup.txt: limit 65536 kB, both python3 at adj 968, oom.group on the scope."""
        pod = (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod5f0c2a43_8f4e_4d59_9a7e_1b2c3d4e5f60.slice"
        )
        ctr = pod + "/cri-containerd-2a4a743741f705fb70f97b340b5f356dee114a1b32b92b018dc30a478c151181.scope"
        sandbox = pod + "/cri-containerd-" + "0" * 64 + ".scope"
        cgroups = [
            cgroup("/"),
            cgroup("/kubepods.slice", oom_group=False),
            cgroup("/kubepods.slice/kubepods-burstable.slice", oom_group=False),
            cgroup(pod, oom_group=False),
            cgroup(sandbox, oom_group=False),
            cgroup(ctr, 65536 * KiB, swap_limit=None, oom_group=True),
        ]
        tasks = [
            task(200, sandbox, 200, adj=-998, comm="pause"),
            task(215, ctr, 10979, pgtables_bytes=135168, adj=968, comm="python3"),
            task(216, ctr, 8455, pgtables_bytes=122880, adj=968, comm="python3"),
        ]
        s = sample(cgroups, tasks, node(2, mem_total=2 * GiB, swap_total=0))
        v = verdict(SampleIndex(s), ctr)
        assert v.totalpages == 16384
        assert [(c.task.pid, c.points) for c in v.candidates] == [(215, 10979 + 33 + 15488), (216, 8455 + 30 + 15488)]
        assert v.victim.pid == 215
        assert v.group_path == ctr
        assert pids(v.group_victims) == [215, 216]  # "Tasks in <scope> are going to be killed", not the pause


# ----------------------------------------------------------------------------------------------- oom.group


class TestOomGroupRoot:
    def test_highest_flagged_cgroup_between_victim_and_domain(self):
        flags = {"/k/pod": True, "/k/pod/ctr": True, "/k": True}
        assert oom_group_root("/k/pod/ctr", "/k/pod", flags) == "/k/pod"  # inclusive of the domain
        assert oom_group_root("/k/pod/ctr", "/k/pod/ctr", flags) == "/k/pod/ctr"  # not above the domain

    def test_flag_only_on_the_victims_cgroup(self):
        assert oom_group_root("/k/pod/ctr", "/k", {"/k/pod/ctr": True}) == "/k/pod/ctr"

    def test_unflagged_gaps_do_not_stop_the_walk(self):
        assert oom_group_root("/k/pod/ctr/sub", "/k", {"/k/pod": True, "/k/pod/ctr": False}) == "/k/pod"

    def test_no_flag_means_no_group(self):
        assert oom_group_root("/k/pod/ctr", "/k", {}) is None
        assert oom_group_root("/k/pod/ctr", "/k", {"/k/pod/ctr": False, "/k/pod": False}) is None

    def test_flags_outside_the_walk_are_ignored(self):
        assert oom_group_root("/k/pod/ctr", "/k/pod", {"/k/pod/other": True, "/k": True}) is None

    def test_global_oom_walks_up_to_the_root(self):
        assert oom_group_root("/k/pod/ctr", "/", {"/k": True, "/k/pod/ctr": True}) == "/k"

    def test_victim_in_the_root_cgroup_has_no_group(self):
        assert oom_group_root("/", "/", {"/": True}) is None


class TestOomGroupVerdict:
    def _pod_sample(self, version: int, *, pod_group: bool, ctr_group: bool, qos_group: bool = False) -> Sample:
        # On v1 the collector reports oom_group None; the flags are set anyway to show v1 ignores them.
        cgroups = [
            cgroup("/"),
            cgroup("/k", oom_group=False),
            cgroup("/k/qos", oom_group=qos_group),
            cgroup("/k/qos/pod", 1 * GiB, oom_group=pod_group),
            cgroup("/k/qos/pod/pause", oom_group=False),
            cgroup("/k/qos/pod/app", 512 * MiB, oom_group=ctr_group),
            cgroup("/k/qos/pod/app/worker", oom_group=False),
            cgroup("/k/qos/pod/side", 256 * MiB, oom_group=ctr_group),
            cgroup("/k/qos/other", 1 * GiB, oom_group=ctr_group),
        ]
        tasks = [
            task(100, "/k/qos/pod/pause", 50, adj=-998, comm="pause"),
            task(101, "/k/qos/pod/app", 90_000, adj=500),
            task(102, "/k/qos/pod/app", 10, adj=-1000, comm="guard"),  # spared by the group kill
            task(103, "/k/qos/pod/app/worker", 20_000, adj=500),
            task(104, "/k/qos/pod/app", 0, adj=500, has_memory=False, comm="zombie"),
            task(105, "/k/qos/pod/side", 30_000, adj=500),
            task(106, "/k/qos/other", 1_000, adj=500),
        ]
        return sample(cgroups, tasks, node(version, mem_total=8 * GiB))

    def test_container_group_kills_the_container_subtree_but_spares_oom_disabled(self):
        index = SampleIndex(self._pod_sample(2, pod_group=False, ctr_group=True))
        v = verdict(index, "/k/qos/pod")
        assert v.victim.pid == 101
        assert v.group_path == "/k/qos/pod/app"
        assert pids(v.group_victims) == [101, 103]  # not 102 (adj -1000), not 104 (no mm), not the sidecar

    def test_highest_flagged_ancestor_up_to_the_domain_wins(self):
        index = SampleIndex(self._pod_sample(2, pod_group=True, ctr_group=True, qos_group=True))
        v = verdict(index, "/k/qos/pod")
        assert v.group_path == "/k/qos/pod"  # /k/qos is flagged too but lies above the domain
        assert pids(v.group_victims) == [100, 101, 103, 105]

    def test_domain_below_the_flagged_pod(self):
        index = SampleIndex(self._pod_sample(2, pod_group=True, ctr_group=False))
        v = verdict(index, "/k/qos/pod/app")
        assert v.victim.pid == 101
        assert v.group_path is None  # the pod's flag lies above this domain
        assert pids(v.group_victims) == [101]

    def test_no_group_on_cgroup_v1_even_if_flagged(self):
        index = SampleIndex(self._pod_sample(1, pod_group=True, ctr_group=True))
        v = verdict(index, "/k/qos/pod")
        assert v.victim.pid == 101
        assert v.group_path is None
        assert pids(v.group_victims) == [101]
        assert global_verdict(index).group_path is None

    def test_global_oom_with_oom_group(self):
        index = SampleIndex(self._pod_sample(2, pod_group=False, ctr_group=True, qos_group=True))
        g = global_verdict(index)
        assert g.victim.pid == 101
        assert g.group_path == "/k/qos"  # the walk goes up to the root and keeps the highest flag
        assert pids(g.group_victims) == [100, 101, 103, 105, 106]

    def test_global_oom_victim_in_the_root_cgroup_has_no_group(self):
        cgroups = [cgroup("/", oom_group=True), cgroup("/a", oom_group=True)]
        tasks = [task(10, "/", 5000), task(11, "/a", 10)]
        g = global_verdict(SampleIndex(sample(cgroups, tasks, node(2))))
        assert g.victim.pid == 10
        assert g.group_path is None
        assert pids(g.group_victims) == [10]


# ------------------------------------------------------------------------------------------ global verdict


class TestGlobalVerdict:
    def _sample(self, tasks, **kw) -> Sample:
        cgroups = [cgroup("/"), cgroup("/a", 1 * GiB), cgroup("/b")]
        return sample(cgroups, tasks, node(1, mem_total=8 * GiB, swap_total=2 * GiB, **kw))

    def test_scores_every_task_against_ram_plus_swap(self):
        tasks = [task(10, "/a", 100_000), task(11, "/b", 1_000, adj=500), task(12, "/", 50_000)]
        g = global_verdict(SampleIndex(self._sample(tasks)))
        assert g.domain == ""
        assert g.totalpages == 2621440
        assert {c.task.pid: c.points for c in g.candidates} == {10: 100_000, 11: 1_000 + 500 * 2621, 12: 50_000}
        assert g.victim.pid == 11
        assert [c.score for c in g.candidates] == [c_div(c.points * 1000, 2621440) for c in g.candidates]

    def test_skips_init_oom_disabled_and_tasks_without_mm(self):
        tasks = [
            task(1, "/", 900_000),
            task(10, "/a", 900_000, adj=-1000),
            task(11, "/b", 5),
            task(12, "/b", 9_999, has_memory=False),
        ]
        g = global_verdict(SampleIndex(self._sample(tasks)))
        assert pids(c.task for c in g.candidates) == [11]
        assert g.victim.pid == 11

    def test_tie_goes_to_the_task_started_last(self):
        # for_each_process walks the task list in fork order; the Sample's task order does not matter
        tasks = [
            task(200, "/b", 1_000, start_ticks=20),
            task(300, "/a", 1_000, start_ticks=10),
            task(400, "/b", 10, start_ticks=30),
        ]
        g = global_verdict(SampleIndex(self._sample(tasks)))
        assert g.victim.pid == 200

    def test_same_start_tick_falls_back_to_pid(self):
        tasks = [task(301, "/b", 1_000, start_ticks=10), task(300, "/a", 1_000, start_ticks=10)]
        assert global_verdict(SampleIndex(self._sample(tasks))).victim.pid == 301

    def test_nothing_killable(self):
        g = global_verdict(SampleIndex(self._sample([task(1, "/", 10), task(10, "/a", 10, adj=-1000)])))
        assert g.victim is None and g.candidates == () and g.group_victims == ()

    def test_same_tasks_rank_differently_in_a_memcg_and_globally(self):
        # Against 8 GiB + 2 GiB, adj 100 is worth 262100 pages; against a 1 GiB limit only 26200.
        cgroups = [cgroup("/"), cgroup("/a", 1 * GiB)]
        tasks = [task(10, "/a", 200_000), task(11, "/a", 1_000, adj=100)]
        index = SampleIndex(sample(cgroups, tasks, node(1, mem_total=8 * GiB, swap_total=2 * GiB)))
        assert global_verdict(index).victim.pid == 11
        assert verdict(index, "/a").victim.pid == 10


# ------------------------------------------------------------------------------------------------- predict


class TestPredict:
    def _sample(self) -> Sample:
        cgroups = [
            cgroup("/"),
            cgroup("/kubepods"),
            cgroup("/kubepods/pod", 1 * GiB),
            cgroup("/kubepods/pod/ctr"),
            cgroup("/kubepods/pod/ctr/deep"),
            cgroup("/kubepods/pod/ctr2", 256 * MiB),
            cgroup("/system.slice"),
            cgroup("/system.slice/kubelet.service"),
        ]
        tasks = [
            task(10, "/kubepods/pod/ctr", 10_000, adj=900),
            task(11, "/kubepods/pod/ctr/deep", 20_000, adj=900),
            task(12, "/kubepods/pod/ctr2", 30_000, adj=900),
            task(13, "/system.slice/kubelet.service", 40_000, adj=-999),
            task(14, "/kubepods/pod/ctr", 1_000, adj=-1000),
            task(15, "/", 500),
        ]
        return sample(cgroups, tasks, node(1, mem_total=16 * GiB))

    def test_by_domain_only_for_limited_cgroups(self):
        p = predict(self._sample())
        assert set(p.by_domain) == {"/kubepods/pod", "/kubepods/pod/ctr2"}
        assert p.by_domain["/kubepods/pod"].victim.pid == 12
        assert p.by_domain["/kubepods/pod/ctr2"].victim.pid == 12
        assert p.by_domain["/kubepods/pod/ctr2"].totalpages == 65536

    def test_nearest_limit_for_unlimited_children(self):
        p = predict(self._sample())
        assert p.nearest_limit == {
            "/kubepods/pod": "/kubepods/pod",
            "/kubepods/pod/ctr": "/kubepods/pod",
            "/kubepods/pod/ctr/deep": "/kubepods/pod",
            "/kubepods/pod/ctr2": "/kubepods/pod/ctr2",
        }

    def test_memcg_score_uses_the_nearest_limited_ancestor(self):
        s = self._sample()
        p = predict(s)
        keys = {t.pid: t.key for t in s.tasks}
        pod_pages, ctr2_pages = 262144, 65536
        assert p.memcg_score[keys[10]] == (10_000 + 900 * 262) * 1000 // pod_pages
        assert p.memcg_score[keys[11]] == (20_000 + 900 * 262) * 1000 // pod_pages
        assert p.memcg_score[keys[12]] == (30_000 + 900 * 65) * 1000 // ctr2_pages

    def test_tasks_without_a_limited_ancestor_or_unkillable_have_no_memcg_score(self):
        s = self._sample()
        p = predict(s)
        keys = {t.pid: t.key for t in s.tasks}
        assert keys[13] not in p.memcg_score  # only unlimited ancestors
        assert keys[15] not in p.memcg_score  # root cgroup
        assert keys[14] not in p.memcg_score  # adj -1000
        assert set(p.memcg_score) == {keys[10], keys[11], keys[12]}

    def test_node_verdict_is_the_global_verdict(self):
        s = self._sample()
        p = predict(s)
        g = global_verdict(SampleIndex(s))
        assert p.node == g
        assert p.node.victim.pid == 12

    def test_memcg_score_can_be_negative(self):
        cgroups = [cgroup("/"), cgroup("/g", 1 * GiB)]
        s = sample(cgroups, [task(10, "/g", 1_000, adj=-997)])
        p = predict(s)
        # (1000 - 997 * 262) * 1000 / 262144 = -992.6: C truncates to -992 (floor would say -993)
        assert p.memcg_score[s.tasks[0].key] == c_div((1_000 - 997 * 262) * 1000, 262144) == -992


# -------------------------------------------------------------------------------------------------- kubelet


class TestExpectedKubeletAdj:
    CAP = 16 * GiB

    def test_constants(self):
        assert KUBELET_GUARANTEED_ADJ == -997
        assert KUBELET_BESTEFFORT_ADJ == 1000
        assert KUBELET_BURSTABLE_MIN_ADJ == 1000 + KUBELET_GUARANTEED_ADJ == 3
        assert KUBELET_BURSTABLE_MAX_ADJ == 999

    @pytest.mark.parametrize("request_bytes", [None, 0, 1 * GiB, 16 * GiB])
    def test_guaranteed(self, request_bytes):
        assert expected_kubelet_adj(QosClass.GUARANTEED, request_bytes, self.CAP) == -997

    @pytest.mark.parametrize("request_bytes", [None, 0, 1 * GiB])
    def test_besteffort(self, request_bytes):
        assert expected_kubelet_adj(QosClass.BEST_EFFORT, request_bytes, self.CAP) == 1000

    @pytest.mark.parametrize(
        ("request_bytes", "expected"),
        [
            (1 * GiB, 938),  # 1000 * 1 / 16 = 62.5 -> 62
            (CAP // 10, 901),  # 1000 * (CAP // 10) / CAP = 99.99... -> 99
            (CAP // 2, 500),
            (8 * MiB, 1000 - 0 - 1),  # rounds to 1000, which kubelet lowers to 999
            (0, 999),
            (None, 999),  # no request at all
            (CAP * 996 // 1000 + 1, 4),  # quotient 996 -> 4, still above the clamp
            (CAP * 997 // 1000 + 1, 3),  # quotient 997 -> 3 exactly
            (CAP, 3),  # 1000 - 1000 = 0 -> clamped to 3
            (2 * CAP, 3),  # more than the node -> negative -> 3
        ],
    )
    def test_burstable(self, request_bytes, expected):
        assert expected_kubelet_adj(QosClass.BURSTABLE, request_bytes, self.CAP) == expected

    def test_burstable_uses_integer_division(self):
        # 1000 * 1 / 3 = 333.33 -> 333 -> 667
        assert expected_kubelet_adj(QosClass.BURSTABLE, 1, 3) == 667


class TestImpliedRequestRange:
    @staticmethod
    def adj_of(request: int, capacity: int) -> int:
        return expected_kubelet_adj(QosClass.BURSTABLE, request, capacity)

    def test_examples(self):
        cap = 16 * GiB
        low, high = implied_request_range(938, cap)
        assert low <= 1 * GiB <= high
        assert implied_request_range(500, cap) == (cap // 2, -(-(501 * cap) // 1000) - 1)
        assert implied_request_range(999, cap)[0] == 0
        assert implied_request_range(3, cap)[1] == cap

    @pytest.mark.parametrize("adj", [-997, 2, 1000, 1001, -1000])
    def test_outside_the_burstable_range(self, adj):
        assert implied_request_range(adj, 16 * GiB) is None

    def test_no_capacity(self):
        assert implied_request_range(500, 0) is None

    def test_property_round_trip(self):
        rng = random.Random(20240601)
        capacities = [
            1000,
            1001,
            4095 * 1000 + 7,
            2 * GiB,
            2_052_775_936,  # a 2 GiB VM's MemTotal
            16 * GiB - 123_456_789,
            64 * GiB,
            3 * 1024 * GiB + 17,
        ]
        seen: set[int] = set()
        for case in range(2000):
            capacity = rng.choice(capacities) if case % 4 == 0 else rng.randint(1000, 4 * 1024 * GiB)
            pick = case % 5
            if pick == 0:
                request = rng.randint(0, capacity)
            elif pick == 1:  # near a quotient boundary
                q = rng.randint(0, 999)
                request = max(0, min(capacity, -(-q * capacity // 1000) + rng.randint(-2, 2)))
            elif pick == 2:  # small requests (adj 999)
                request = rng.randint(0, max(1, capacity // 500))
            elif pick == 3:  # large requests (adj 3)
                request = rng.randint(capacity * 996 // 1000, capacity)
            else:
                request = int(capacity * rng.random())
            adj = self.adj_of(request, capacity)
            seen.add(adj)
            assert KUBELET_BURSTABLE_MIN_ADJ <= adj <= KUBELET_BURSTABLE_MAX_ADJ
            rng_ = implied_request_range(adj, capacity)
            assert rng_ is not None, (request, capacity, adj)
            low, high = rng_
            assert low <= request <= high, (request, capacity, adj, rng_)
            assert self.adj_of(low, capacity) == adj, (request, capacity, adj, rng_)
            assert self.adj_of(high, capacity) == adj, (request, capacity, adj, rng_)
            # one byte outside maps elsewhere, except where a clamp makes the range open-ended
            if adj != KUBELET_BURSTABLE_MAX_ADJ:  # 999 stands for every request down to 0
                assert self.adj_of(low - 1, capacity) != adj, (request, capacity, adj, rng_)
            else:
                assert low == 0
            if adj != KUBELET_BURSTABLE_MIN_ADJ:  # 3 stands for every request up to (and past) capacity
                assert self.adj_of(high + 1, capacity) != adj, (request, capacity, adj, rng_)
            else:
                assert high == capacity
        assert {3, 4, 998, 999} <= seen and len(seen) > 500  # both clamps and most of the range were exercised

    def test_requests_beyond_capacity_map_to_the_clamped_end(self):
        cap = 8 * GiB
        adj = self.adj_of(3 * cap, cap)
        assert adj == 3
        low, high = implied_request_range(adj, cap)
        assert low <= 3 * cap and high == cap  # the clamped end stands for "this much or more"

    def test_every_adj_is_reachable_on_real_capacities(self):
        cap = 2_052_775_936
        for adj in range(KUBELET_BURSTABLE_MIN_ADJ, KUBELET_BURSTABLE_MAX_ADJ + 1):
            low, high = implied_request_range(adj, cap)
            assert low <= high
            assert self.adj_of(low, cap) == adj == self.adj_of(high, cap)


# ------------------------------------------------------------------------------------------------ is_under


def test_is_under():
    assert is_under("/a/b", "/a")
    assert is_under("/a", "/a")
    assert is_under("/a", "/")
    assert is_under("/", "/")
    assert not is_under("/ab", "/a")
    assert not is_under("/a", "/a/b")


# ------------------------------------------------------------- edge cases once wrong (now fixed) in rank.py


def test_zero_page_domain_counts_as_one_page():
    cgroups = [cgroup("/"), cgroup("/frozen", 0)]
    s = sample(cgroups, [task(10, "/frozen", 5)], node(2, swap_total=0))
    v = verdict(SampleIndex(s), "/frozen")
    assert v.victim.pid == 10
    assert v.totalpages == 1
    assert v.candidates[0].score == 5000  # 5 * 1000 / 1
    assert predict(s).memcg_score[s.tasks[0].key] == 5000


def test_task_under_two_missing_levels_still_belongs_to_the_limited_ancestor():
    cgroups = [cgroup("/"), cgroup("/kubepods", 4 * GiB)]
    s = sample(cgroups, [task(10, "/kubepods/podNew/ctr", 1_000)])
    v = verdict(SampleIndex(s), "/kubepods")
    assert v.victim is not None and v.victim.pid == 10


def test_task_in_a_missing_cgroup_gets_the_memcg_score_of_its_limited_ancestor():
    cgroups = [cgroup("/"), cgroup("/lim", 1 * GiB)]
    s = sample(cgroups, [task(10, "/lim/gone", 1_000)])
    p = predict(s)
    assert p.by_domain["/lim"].victim.pid == 10  # the verdict does see it
    assert p.memcg_score.get(s.tasks[0].key) == 1_000 * 1000 // 262144


class _Hang(Exception):
    pass


def test_subtree_of_a_missing_root_terminates():
    s = sample([], [task(10, "/", 5)], node(0))

    def alarm(signum, frame):
        raise _Hang("subtree_tasks('/') did not return")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.2)
    try:
        assert pids(SampleIndex(s).subtree_tasks("/")) == [10]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
