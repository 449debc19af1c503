"""Readings of cgroup kill counters turned into increments: pure arithmetic, one counter at a time.

A counter's reading is not simply "new value minus old": the first reading of a cgroup that existed before is
history, not kills; a Sample read before a wake-up's fresher read can show a lower value; a cgroup can leave a
Sample (removed after its container's kill, or a read of it failed) and come back; and on cgroup v2 a parent's
hierarchical ``memory.events`` shows kills in children made and removed between two polls.  These functions say
what each of those means; :class:`oomtop.collect.oom_ledger.CounterLedger` keeps the dictionaries they update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class CgroupCounters(Protocol):
    """The kill counters of one cgroup as a Sample read them (:class:`oomtop.model.Cgroup` has them)."""

    @property
    def path(self) -> str: ...
    @property
    def parent_path(self) -> str | None: ...
    @property
    def oom_kills(self) -> int: ...  # v1: this cgroup only; v2: memory.events, with descendants
    @property
    def oom_kills_local(self) -> int | None: ...  # v2 memory.events.local
    @property
    def oom_group_kills(self) -> int: ...
    @property
    def oom_group_kills_local(self) -> int | None: ...


def advance(counts: dict[str, int], path: str, value: int, new: bool) -> int:
    """Store a counter's new value; return how far it moved since the last read (0 for a first read of a cgroup
    that existed before, since its old kills are history; ``new`` cgroups count from zero)."""
    known = counts.get(path)
    counts[path] = value
    if known is None:
        if not new or value <= 0:
            return 0
        known = 0
    if value < known:
        # A Sample read before a wake-up's fresher read: keep the higher count.  (A cgroup removed and made
        # again between two polls would also read lower; it counts again once it passes the old value.)
        counts[path] = known
        return 0
    return value - known


def vanished_counts(
    counts: dict[str, int],
    sample_counts: dict[str, int],
    paths: set[str],
    gone: dict[str, tuple[int, float]],
    now: float,
) -> dict[str, int]:
    """Counts read (at wake-ups) beyond the last sample in cgroups now gone, by the nearest ancestor still there.

    The gone cgroups' counts move to ``gone`` (with ``now``): a Sample also leaves out a cgroup that is still
    there when a read of it failed (the collector finds it again at its next scan), and when it is read again its
    count must go on from where it was, not from zero."""
    out: dict[str, int] = {}
    for path in [p for p in counts if p not in paths]:
        value = counts.pop(path)
        gone[path] = (value, now)
        counted = value - sample_counts.get(path, 0)
        if counted > 0:
            ancestor = path.rsplit("/", 1)[0] or "/"
            while ancestor not in paths and ancestor != "/":
                ancestor = ancestor.rsplit("/", 1)[0] or "/"
            out[ancestor] = out.get(ancestor, 0) + counted
    return out


def restore(counts: dict[str, int], gone: dict[str, tuple[int, float]], path: str) -> None:
    """A cgroup read again after a Sample left it out goes on from the count it had (see vanished_counts)."""
    if path not in counts and path in gone:
        counts[path] = gone.pop(path)[0]


def beyond_children(
    cgroups: Sequence[CgroupCounters],
    current: dict[str, int],
    previous: dict[str, int],
    local: Callable[[CgroupCounters], int | None],
    local_before: dict[str, int],
    vanished: dict[str, int],
    ahead: dict[str, int] | None = None,
) -> dict[str, int]:
    """v2, per cgroup: how far a hierarchical counter moved beyond what its living children, its own local count
    and the wake-ups' counts in children now gone explain -- events in children made and removed between polls.

    A poll reads a parent's file and its children's at different moments, so a kill between the two reads shows in
    a child first and in the parent only at the next poll.  ``ahead`` (kept by the caller across polls) holds what
    the children showed that their parent did not yet: the parent's later move is theirs, not a kill of its own."""
    ahead = {} if ahead is None else ahead
    children: dict[str, list[str]] = {}
    for cgroup in cgroups:
        if cgroup.parent_path is not None:
            children.setdefault(cgroup.parent_path, []).append(cgroup.path)
    out: dict[str, int] = {}
    for cgroup in cgroups:
        own = local(cgroup)
        if cgroup.path not in previous or own is None:
            continue
        delta = current[cgroup.path] - previous[cgroup.path]
        if delta < 0:  # a counter never goes back: a recreated cgroup, nothing to compare
            ahead.pop(cgroup.path, None)
            continue
        explained = sum(current[child] - previous.get(child, 0) for child in children.get(cgroup.path, ()))
        explained += max(0, own - local_before.get(cgroup.path, 0)) + vanished.get(cgroup.path, 0)
        unexplained = delta - explained - ahead.pop(cgroup.path, 0)
        if unexplained > 0:
            out[cgroup.path] = unexplained
        elif unexplained < 0:  # the children (or its own count) are ahead of this read of the parent
            ahead[cgroup.path] = -unexplained
    return out
