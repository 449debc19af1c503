"""Compare one oomtop Sample with the kernel's own cgroup v2 files, read just before and just after it.

A counter the kernel only ever increases (memory.events, memory.peak, PSI totals) must lie between the two
readings; a setting (memory.max, memory.high, memory.oom.group) must equal them; usage may drift by the
kernel's per-cpu charge batch.  Files the collector only re-reads on its slow tick (limits, oom.group, PSI,
memory.events.local) are checked on samples where ``stats.slow`` is set, as documented in oomtop's README.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2lib import fs, read, read_kv

USAGE_DRIFT = 256 * 1024  # MEMCG_CHARGE_BATCH (64 pages) of per-cpu stock
STAT_DRIFT = 512 * 1024


def _limit(raw: str) -> int | None:
    raw = raw.strip()
    return None if raw == "max" else int(raw)


def _pressure(raw: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for line in raw.splitlines():
        kind, _, rest = line.partition(" ")
        out[kind] = {k: float(v) for k, v in (item.split("=") for item in rest.split())}
    return out


@dataclass
class Snap:
    current: int
    max: int | None
    high: int | None
    peak: int | None
    events: dict[str, int]
    events_local: dict[str, int]
    pressure: dict[str, dict[str, float]]
    oom_group: int
    stat: dict[str, int]
    swap_current: int | None
    swap_max: int | None
    procs: list[int]


def snap(rel: str) -> Snap:
    d = fs(rel)

    def opt(name: str) -> str | None:
        try:
            return read(f"{d}/{name}")
        except FileNotFoundError:
            return None

    peak, swap_current, swap_max = opt("memory.peak"), opt("memory.swap.current"), opt("memory.swap.max")
    return Snap(
        current=int(read(f"{d}/memory.current")),
        max=_limit(read(f"{d}/memory.max")),
        high=_limit(read(f"{d}/memory.high")),
        peak=None if peak is None else int(peak),
        events=read_kv(f"{d}/memory.events"),
        events_local=read_kv(f"{d}/memory.events.local"),
        pressure=_pressure(read(f"{d}/memory.pressure")),
        oom_group=int(read(f"{d}/memory.oom.group")),
        stat=read_kv(f"{d}/memory.stat"),
        swap_current=None if swap_current is None else int(swap_current),
        swap_max=None if swap_max is None else _limit(swap_max),
        procs=sorted(int(x) for x in read(f"{d}/cgroup.procs").split()),
    )


def snaps(paths: list[str]) -> dict[str, Snap]:
    return {p: snap(p) for p in paths}


def _between(name: str, got: object, low: int | None, high: int | None, slack: int = 0) -> str | None:
    if low is None or high is None:
        return None if got is None else f"{name} {got}, the kernel has no such file"
    lo, hi = min(low, high) - slack, max(low, high) + slack
    if not isinstance(got, int) or not lo <= got <= hi:
        return f"{name} {got}, the kernel read {low} before and {high} after the sample (slack {slack})"
    return None


def sample_problems(sample, before: dict[str, Snap], after: dict[str, Snap], slow: bool) -> list[str]:  # type: ignore[no-untyped-def]
    """Every way the Sample's cgroups differ from the kernel's files (empty when they agree)."""
    problems: list[str] = []
    by_path = {c.path: c for c in sample.cgroups}
    order = [c.path for c in sample.cgroups]
    for rel, b in before.items():
        a = after[rel]
        cg = by_path.get(rel)
        if cg is None:
            problems.append(f"{rel}: missing from sample.cgroups")
            continue
        out: list[str | None] = []
        out.append(_between("usage_bytes (memory.current)", cg.usage_bytes, b.current, a.current, USAGE_DRIFT))
        if slow:
            out.append(_between("peak_bytes (memory.peak)", cg.peak_bytes, b.peak, a.peak))
        elif cg.peak_bytes is None or a.peak is None or not cg.usage_bytes - USAGE_DRIFT <= cg.peak_bytes <= a.peak:
            out.append(
                f"peak_bytes {cg.peak_bytes} outside [usage {cg.usage_bytes}, memory.peak {a.peak}] on a fast tick"
            )
        out.append(_between("failcnt (memory.events max)", cg.failcnt, b.events.get("max"), a.events.get("max")))
        out.append(_between("oom_events (memory.events oom)", cg.oom_events, b.events.get("oom"), a.events.get("oom")))
        out.append(
            _between(
                "oom_kills (memory.events oom_kill)", cg.oom_kills, b.events.get("oom_kill"), a.events.get("oom_kill")
            )
        )
        if sorted(cg.pids) != a.procs or a.procs != b.procs:
            out.append(f"pids {sorted(cg.pids)}, cgroup.procs {b.procs} before / {a.procs} after")
        for field_, key in (
            ("anon_bytes", "anon"),
            ("file_bytes", "file"),
            ("inactive_file_bytes", "inactive_file"),
            ("shmem_bytes", "shmem"),
        ):
            out.append(
                _between(
                    f"{field_} (memory.stat {key})", getattr(cg, field_), b.stat.get(key), a.stat.get(key), STAT_DRIFT
                )
            )
        if slow:
            if cg.limit_bytes != a.max or b.max != a.max:
                out.append(f"limit_bytes {cg.limit_bytes}, memory.max reads {a.max}")
            if cg.high_bytes != a.high or b.high != a.high:
                out.append(f"high_bytes {cg.high_bytes}, memory.high reads {a.high}")
            if cg.oom_group is not bool(a.oom_group) or b.oom_group != a.oom_group:
                out.append(f"oom_group {cg.oom_group}, memory.oom.group reads {a.oom_group}")
            out.append(
                _between(
                    "oom_kills_local (memory.events.local oom_kill)",
                    cg.oom_kills_local,
                    b.events_local.get("oom_kill"),
                    a.events_local.get("oom_kill"),
                )
            )
            out.append(_between("swap_bytes (memory.swap.current)", cg.swap_bytes, b.swap_current, a.swap_current))
            if cg.swap_limit_bytes != a.swap_max:
                out.append(f"swap_limit_bytes {cg.swap_limit_bytes}, memory.swap.max reads {a.swap_max}")
            out.extend(_pressure_problems(cg.pressure, b.pressure, a.pressure))
        for problem in out:
            if problem:
                problems.append(f"{rel}: {problem}")
        parent = cg.parent_path
        if parent in by_path and order.index(parent) > order.index(rel):
            problems.append(f"{rel}: listed before its parent {parent}")
    return problems


def _pressure_problems(got, before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> list[str]:  # type: ignore[no-untyped-def]
    if got is None:
        return ["pressure is None, memory.pressure is there"]
    problems = []
    for kind in ("some", "full"):
        total = getattr(got, f"{kind}_total_us")
        low, high = int(before[kind]["total"]), int(after[kind]["total"])
        if not low <= total <= high:
            problems.append(f"pressure.{kind}_total_us {total}, memory.pressure total {low} before / {high} after")
        for window in ("avg10", "avg60", "avg300"):
            value = getattr(got, f"{kind}_{window}")
            if value not in (before[kind][window], after[kind][window]):
                problems.append(
                    f"pressure.{kind}_{window} {value}, memory.pressure {before[kind][window]} "
                    f"before / {after[kind][window]} after"
                )
    return problems


def sample_against_kernel(collector, paths: list[str]):  # type: ignore[no-untyped-def]
    """Read the files, take one sample, read them again: (sample, problems)."""
    before = snaps(paths)
    sample = collector.sample()
    after = snaps(paths)
    return sample, sample_problems(sample, before, after, collector.stats.slow)
