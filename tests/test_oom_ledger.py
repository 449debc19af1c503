"""The counter ledger alone: counter values and logged reports in, unexplained kills out -- plain numbers, no files.

Each test is one way the kernel's counting could make oomtop report a kill twice (or not at all), as the ledger
sees it: values the watcher read, at the times it read them.
"""

from __future__ import annotations

from dataclasses import dataclass

from oomtop.collect.oom_ledger import LOG_MATCH_WINDOW_S, CounterLedger, Increment, LoggedKill
from oomtop.model import KilledTask, OomEvent

POD = "/kubepods/burstable/podA"
CTR = f"{POD}/c1"
OTHER = f"{POD}/c2"


@dataclass(frozen=True)
class Counters:
    """One cgroup's counters as a Sample holds them (v1: ``oom_kills`` is the cgroup's own)."""

    path: str
    oom_kills: int = 0
    oom_kills_local: int | None = None
    oom_group_kills: int = 0
    oom_group_kills_local: int | None = None

    @property
    def parent_path(self) -> str | None:
        return None if self.path == "/" else (self.path.rsplit("/", 1)[0] or "/")


def v1_tree(ctr_kills: int = 0, other_kills: int | None = None) -> list[Counters]:
    tree = [Counters("/"), Counters("/kubepods"), Counters("/kubepods/burstable"), Counters(POD)]
    tree.append(Counters(CTR, oom_kills=ctr_kills))
    if other_kills is not None:
        tree.append(Counters(OTHER, oom_kills=other_kills))
    return tree


def v2_tree(ctr: tuple[int, int] | None = (0, 0), pod_hier: tuple[int, int] = (0, 0)) -> list[Counters]:
    """A v2 tree; ``ctr`` is the container's (oom_kill, oom_group_kill), None when it is gone.  Its ancestors'
    hierarchical counters hold ``pod_hier`` (kills there or in children)."""
    kills, groups = pod_hier
    tree = [Counters(p, kills, 0, groups, 0) for p in ("/kubepods", "/kubepods/burstable", POD)]
    if ctr is not None:
        tree.append(Counters(CTR, ctr[0], ctr[0], ctr[1], ctr[1]))
    return tree


def report(task_cgroup: str | None = CTR, pids: tuple[int, ...] = (42,), group: str | None = None) -> OomEvent:
    killed = tuple(KilledTask(pid, "hog") for pid in pids)
    return OomEvent(
        kind="memcg",
        time=None,
        kernel_time_s=None,
        oom_cgroup=task_cgroup,
        task_cgroup=task_cgroup,
        victim=killed[0],
        killed=killed,
        oom_group_path=group,
    )


def started(with_log: bool = True, tree: list[Counters] | None = None, v2: bool = False) -> CounterLedger:
    """A ledger that has taken its first Sample at t=0 (the baseline: every count so far is history)."""
    ledger = CounterLedger(with_log=with_log, grace_s=0.5 if with_log else 0.0)
    ledger.on_sample(tree if tree is not None else (v2_tree() if v2 else v1_tree()), v2, 0.0)
    return ledger


def kills(increments: list[Increment]) -> list[tuple[str, int, bool]]:
    return [(i.path, i.count, i.vanished_child) for i in increments]


# ------------------------------------------------------------------------------------------ single counters


def test_counts_before_the_first_sample_are_history() -> None:
    ledger = started(tree=v1_tree(ctr_kills=7))
    assert kills(ledger.unexplained(10.0)) == []


def test_an_increment_nothing_explains_is_a_kill_after_the_grace_period() -> None:
    ledger = started()
    ledger.on_sample(v1_tree(ctr_kills=2), False, 1.0)
    assert ledger.unexplained(1.4) == []  # the log may still come
    assert kills(ledger.unexplained(1.5)) == [(CTR, 2, False)]
    assert ledger.unexplained(5.0) == []  # reported once


def test_a_cgroup_made_after_the_baseline_counts_from_zero() -> None:
    ledger = started()
    ledger.count(OTHER, 1, 1.0, "eventfd", new=ledger.has_baseline)
    unexplained = ledger.unexplained(2.0)
    assert kills(unexplained) == [(OTHER, 1, False)] and unexplained[0].sources == {"eventfd"}


def test_a_stale_lower_reading_neither_lowers_nor_recounts() -> None:
    """A Sample read before a wake-up's fresher read arrives after it."""
    ledger = started()
    ledger.count_reads([(CTR, 1, 0)], 1.0, "eventfd")
    ledger.on_sample(v1_tree(ctr_kills=0), False, 1.1)  # read before the kill
    ledger.on_sample(v1_tree(ctr_kills=1), False, 2.0)
    assert kills(ledger.unexplained(3.0)) == [(CTR, 1, False)]


def test_a_wake_up_and_the_next_sample_see_the_same_kill_once() -> None:
    ledger = started()
    ledger.count_reads([(CTR, 1, 0)], 1.0, "eventfd")
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.2)
    unexplained = ledger.unexplained(2.0)
    assert kills(unexplained) == [(CTR, 1, False)] and unexplained[0].sources == {"eventfd"}


# -------------------------------------------------------------------------------------------- with reports


def test_a_report_explains_the_increment_already_waiting() -> None:
    ledger = started()
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.0)
    assert ledger.add_report(LoggedKill.of(report(), 1.1)) == {"counter"}
    assert ledger.unexplained(5.0) == []


def test_a_report_explains_the_increment_that_comes_after_it() -> None:
    ledger = started()
    ledger.add_report(LoggedKill.of(report(), 1.0))
    ledger.on_sample(v1_tree(ctr_kills=1), False, 2.0)
    assert ledger.unexplained(5.0) == []


def test_a_report_explains_one_increment_per_task_it_killed() -> None:
    ledger = started()
    ledger.add_report(LoggedKill.of(report(), 1.0))
    ledger.on_sample(v1_tree(ctr_kills=2), False, 2.0)
    assert kills(ledger.unexplained(5.0)) == [(CTR, 1, False)]  # the second kill had no report


def test_a_group_report_explains_the_double_count_of_its_first_victim() -> None:
    ledger = started(v2=True)
    ledger.add_report(LoggedKill.of(report(pids=(42, 43), group=CTR), 1.0))
    ledger.on_sample(v2_tree(ctr=(3, 1), pod_hier=(3, 1)), True, 2.0)  # two tasks, the first counted twice
    assert ledger.unexplained(5.0) == []


def test_a_report_explains_nothing_in_another_cgroup() -> None:
    ledger = started(tree=v1_tree(other_kills=0))
    ledger.add_report(LoggedKill.of(report(), 1.0))
    ledger.on_sample(v1_tree(ctr_kills=1, other_kills=1), False, 2.0)
    assert kills(ledger.unexplained(5.0)) == [(OTHER, 1, False)]


def test_a_report_older_than_the_match_window_explains_nothing() -> None:
    ledger = started()
    ledger.add_report(LoggedKill.of(report(), 1.0))
    ledger.forget_old_reports(1.0 + LOG_MATCH_WINDOW_S + 0.1)
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.0 + LOG_MATCH_WINDOW_S + 0.2)
    assert kills(ledger.unexplained(20.0)) == [(CTR, 1, False)]


def test_the_victims_counter_read_at_its_report_is_not_counted_again() -> None:
    ledger = started()
    kill = LoggedKill.of(report(), 1.0)
    ledger.add_report(kill)
    assert ledger.explain_read(kill, 1)  # the counter showed this kill
    assert kill.absorb == 0
    ledger.on_sample(v1_tree(ctr_kills=2), False, 2.0)  # a later, unrelated kill
    assert kills(ledger.unexplained(5.0)) == [(CTR, 1, False)]


def test_a_read_that_shows_nothing_new_explains_nothing() -> None:
    ledger = started()
    kill = LoggedKill.of(report(), 1.0)
    ledger.add_report(kill)
    assert not ledger.explain_read(kill, 0)
    assert not ledger.explain_read(kill, None)  # the cgroup was gone
    assert kill.absorb == 1


def test_an_unplaced_report_stands_for_an_increment_it_could_not_claim() -> None:
    """A rate-limited report without cgroups: which increment is its kill is unknown, but it is one of them."""
    ledger = started()
    ledger.add_report(LoggedKill.of(report(task_cgroup=None), 1.0))
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.1)
    assert ledger.unexplained(5.0) == []


# ------------------------------------------------------------------------------------ memory.oom.group, no log


def test_a_group_kill_without_the_log_counts_each_task_once() -> None:
    ledger = started(with_log=False, v2=True)
    ledger.on_sample(v2_tree(ctr=(3, 1), pod_hier=(3, 1)), True, 1.0)  # two tasks, the first counted twice
    assert kills(ledger.unexplained(1.0)) == [(CTR, 2, False)]


def test_a_group_kill_never_takes_a_whole_kill() -> None:
    """The victim's mm was gone already: counted once, one kill."""
    ledger = started(with_log=False, v2=True)
    ledger.on_sample(v2_tree(ctr=(1, 1), pod_hier=(1, 1)), True, 1.0)
    assert kills(ledger.unexplained(1.0)) == [(CTR, 1, False)]


def test_a_group_kill_read_at_a_wake_up_before_its_kills() -> None:
    ledger = started(with_log=False, v2=True)
    ledger.count_reads([(CTR, 0, 1)], 1.0, "inotify")  # the group kill counted, its kills not yet
    ledger.count_reads([(CTR, 3, 1)], 1.01, "inotify")
    assert kills(ledger.unexplained(1.01)) == [(CTR, 2, False)]


def test_a_group_kill_read_after_its_kills_takes_off_the_double_count_only() -> None:
    """Kills read at one wake-up, their group kill at the next: the double count comes off the waiting
    increment, but a group kill never takes a whole kill (its victim may have been counted once)."""
    ledger = started(with_log=False, v2=True)
    ledger.count_reads([(CTR, 3, 0)], 1.0, "inotify")
    ledger.count_reads([(CTR, 3, 1)], 1.01, "inotify")
    assert kills(ledger.unexplained(1.01)) == [(CTR, 2, False)]
    ledger = started(with_log=False, v2=True)
    ledger.count_reads([(CTR, 1, 0)], 1.0, "inotify")
    ledger.count_reads([(CTR, 1, 1)], 1.01, "inotify")
    assert kills(ledger.unexplained(1.01)) == [(CTR, 1, False)]


def test_with_the_log_group_kills_are_left_to_its_report() -> None:
    ledger = started(with_log=True, v2=True)
    ledger.on_sample(v2_tree(ctr=(3, 1), pod_hier=(3, 1)), True, 1.0)
    assert kills(ledger.unexplained(2.0)) == [(CTR, 3, False)]  # no report came: every count stands


# ------------------------------------------------------------------------------------------ vanished cgroups


def test_v2_a_parents_count_for_a_removed_child_is_a_kill_there() -> None:
    ledger = started(with_log=False, v2=True)
    ledger.on_sample(v2_tree(ctr=None, pod_hier=(1, 0)), True, 1.0)
    assert kills(ledger.unexplained(1.0)) == [(POD, 1, True)]


def test_v2_a_removed_childs_kill_counted_at_its_wake_up_is_not_counted_again_at_the_parent() -> None:
    ledger = started(with_log=False, v2=True)
    ledger.count_reads([(CTR, 1, 0)], 1.0, "inotify")
    assert kills(ledger.unexplained(1.0)) == [(CTR, 1, False)]
    ledger.on_sample(v2_tree(ctr=None, pod_hier=(1, 0)), True, 1.5)
    assert ledger.unexplained(2.0) == []


def test_v2_a_parents_count_for_a_removed_child_is_explained_by_the_report_in_that_child() -> None:
    ledger = started(v2=True)
    ledger.on_sample(v2_tree(ctr=None, pod_hier=(1, 0)), True, 1.0)  # the poll came before the log
    assert ledger.add_report(LoggedKill.of(report(), 1.1)) == {"counter"}
    assert ledger.unexplained(5.0) == []


def test_a_cgroup_left_out_of_one_sample_goes_on_from_its_count() -> None:
    """A read of the container failed mid-kill, so one Sample left it out; read again, its kill is not new."""
    ledger = started()
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.0)
    assert kills(ledger.unexplained(2.0)) == [(CTR, 1, False)]
    ledger.on_sample([c for c in v1_tree(ctr_kills=1) if c.path != CTR], False, 2.5)
    ledger.on_sample(v1_tree(ctr_kills=1), False, 3.0)
    assert ledger.unexplained(5.0) == []


def test_a_kill_placed_by_the_log_while_its_cgroup_was_left_out_is_credited_to_it() -> None:
    """The pod's counter showed the kill while the Sample left the container out; the log placed it in the
    container; when the container is read again its own count of that kill is not a second kill."""
    ledger = started(v2=True)
    ledger.on_sample(v2_tree(ctr=None, pod_hier=(1, 0)), True, 1.0)
    ledger.add_report(LoggedKill.of(report(), 1.05))
    ledger.on_sample(v2_tree(ctr=(1, 0), pod_hier=(1, 0)), True, 1.6)
    assert ledger.unexplained(5.0) == []


# ------------------------------------------------------------------------------------------ lone increment


def test_the_lone_increment_is_named_when_it_is_certain() -> None:
    ledger = started()
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.0)
    assert ledger.lone_increment(1.004, 0.005) is None  # too young: its report may be on its way
    assert ledger.lone_increment(1.01, 0.005) == CTR


def test_no_lone_increment_when_two_wait_or_one_counts_two_kills() -> None:
    ledger = started(tree=v1_tree(other_kills=0))
    ledger.on_sample(v1_tree(ctr_kills=1, other_kills=1), False, 1.0)
    assert ledger.lone_increment(2.0, 0.005) is None
    ledger = started()
    ledger.on_sample(v1_tree(ctr_kills=2), False, 1.0)
    assert ledger.lone_increment(2.0, 0.005) is None


def test_no_lone_increment_while_an_unplaced_report_may_own_it() -> None:
    ledger = started()
    ledger.add_report(LoggedKill.of(report(task_cgroup=None), 0.5))
    ledger.on_sample(v1_tree(ctr_kills=1), False, 1.0)
    assert ledger.lone_increment(2.0, 0.005) is None


def test_no_lone_increment_for_a_removed_child() -> None:
    ledger = started(v2=True)
    ledger.on_sample(v2_tree(ctr=None, pod_hier=(1, 0)), True, 1.0)
    assert ledger.lone_increment(1.1, 0.005) is None  # which child is not known
