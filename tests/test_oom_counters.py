"""The arithmetic of single kill counters (oomtop.collect.oom_counters): plain dictionaries, no files."""

from __future__ import annotations

from dataclasses import dataclass

from oomtop.collect.oom_counters import advance, beyond_children, restore, vanished_counts


@dataclass(frozen=True)
class Counters:
    path: str
    oom_kills: int = 0
    oom_kills_local: int | None = None
    oom_group_kills: int = 0
    oom_group_kills_local: int | None = None

    @property
    def parent_path(self) -> str | None:
        return None if self.path == "/" else (self.path.rsplit("/", 1)[0] or "/")


def test_advance_first_reading_of_an_old_cgroup_is_history() -> None:
    counts: dict[str, int] = {}
    assert advance(counts, "/a", 5, new=False) == 0
    assert counts == {"/a": 5}
    assert advance(counts, "/a", 7, new=False) == 2


def test_advance_a_new_cgroup_counts_from_zero() -> None:
    counts: dict[str, int] = {}
    assert advance(counts, "/a", 2, new=True) == 2
    assert advance(counts, "/b", 0, new=True) == 0


def test_advance_a_lower_reading_keeps_the_higher_count() -> None:
    counts = {"/a": 3}
    assert advance(counts, "/a", 1, new=True) == 0
    assert counts == {"/a": 3}
    assert advance(counts, "/a", 4, new=True) == 1


def test_vanished_counts_go_to_the_nearest_living_ancestor_and_are_kept() -> None:
    counts = {"/p": 0, "/p/a/b": 3}
    gone: dict[str, tuple[int, float]] = {}
    # the last Sample read /p/a/b at 1: two kills were counted since (at wake-ups); /p/a is gone too
    out = vanished_counts(counts, {"/p/a/b": 1}, {"/", "/p"}, gone, 7.0)
    assert out == {"/p": 2}
    assert counts == {"/p": 0} and gone == {"/p/a/b": (3, 7.0)}


def test_restore_goes_on_from_the_kept_count() -> None:
    counts: dict[str, int] = {}
    gone = {"/a": (3, 7.0)}
    restore(counts, gone, "/a")
    assert counts == {"/a": 3} and gone == {}
    restore(counts, {"/a": (9, 8.0)}, "/a")  # a count read since wins
    assert counts == {"/a": 3}


def test_beyond_children_is_what_living_children_and_the_own_count_do_not_explain() -> None:
    cgroups = [Counters("/p", 5, 1), Counters("/p/a", 2, 2)]
    current = {"/p": 5, "/p/a": 2}
    previous = {"/p": 1, "/p/a": 1}
    # /p moved by 4: one in /p/a, one in /p itself, one a wake-up counted in a child now gone, one unexplained
    out = beyond_children(cgroups, current, previous, lambda c: c.oom_kills_local, {"/p": 0}, {"/p": 1})
    assert out == {"/p": 1}


def test_beyond_children_skips_cgroups_without_a_previous_reading() -> None:
    cgroups = [Counters("/p", 5, 0)]
    assert beyond_children(cgroups, {"/p": 5}, {}, lambda c: c.oom_kills_local, {}, {}) == {}


def test_beyond_children_a_parent_read_before_its_childs_kill_catches_up_without_a_second_kill() -> None:
    """A poll read /p, then a kill in /p/a, then /p/a: the child moved and the parent not yet; at the next poll
    the parent catches up.  That move is the child's kill, not one of the parent's (the v2 VM's one kill, two
    events under load)."""
    ahead: dict[str, int] = {}

    def poll(cgroups: list[Counters], previous: dict[str, int], local_before: dict[str, int]) -> dict[str, int]:
        current = {c.path: c.oom_kills for c in cgroups}
        return beyond_children(cgroups, current, previous, lambda c: c.oom_kills_local, local_before, {}, ahead)

    assert poll([Counters("/p", 0, 0), Counters("/p/a", 1, 1)], {"/p": 0, "/p/a": 0}, {"/p": 0, "/p/a": 0}) == {}
    assert ahead == {"/p": 1}
    assert poll([Counters("/p", 1, 0), Counters("/p/a", 1, 1)], {"/p": 0, "/p/a": 1}, {"/p": 0, "/p/a": 1}) == {}
    assert ahead == {}
    # a real kill in a child made and removed between the polls is still one
    assert poll([Counters("/p", 2, 0)], {"/p": 1}, {"/p": 0}) == {"/p": 1}
