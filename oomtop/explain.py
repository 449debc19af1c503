"""Why the kernel killed the task it killed: the logged task table re-scored with the kernel's arithmetic.

``oomtop explain`` reads a kernel log (see :mod:`oomtop.collect.kmsg`), and for each kill ranks the task table
the kernel printed exactly as ``oom_badness()`` did (:mod:`oomtop.rank`), then says whether the victim was the
top candidate and why.  Pure functions; the text view passes every piece of system text through
:func:`oomtop.text.printable`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from oomtop.collect.identity import NodeNames, identify
from oomtop.model import KernelCandidate, KilledTask, OomEvent
from oomtop.rank import OOM_SCORE_ADJ_MIN, normalised_score
from oomtop.text import cell_width, format_bytes, pad, printable, truncate

TOP_ROWS = 10
COMM_CELLS = 24  # the kernel's comm is 15 bytes; made printable (\xNN escapes) it can grow past this
EXIT_RACE_WINDOW_S = 1.0  # a kill this soon after the last one in its domain may be the exit race (see below)


@dataclass(frozen=True, slots=True)
class RankedCandidate:
    """One logged task with the kernel's verdict on it; ``score`` is None when the domain size is unknown."""

    pid: int
    comm: str
    points: int
    score: int | None
    oom_score_adj: int
    rss_pages: int
    swapents: int
    pgtables_bytes: int
    eligible: bool  # False for oom_score_adj -1000 and init: the kernel never picks them


@dataclass(frozen=True, slots=True)
class Explanation:
    ranking: tuple[RankedCandidate, ...]  # eligible first, highest points first; among ties the later row first
    totalpages: int | None  # the OOM domain in pages, None when the log did not give its size
    victim_is_top: bool | None  # None when there is no table (or no eligible row) to compare with
    top: RankedCandidate | None
    victim_rank: int | None  # 1-based place of the victim in the ranking, None when it is not in the table
    why: str
    notes: tuple[str, ...] = ()


def domain_pages(event: OomEvent, page_size: int = 4096) -> int | None:
    """``totalpages`` of the kill: memcg limit + min(swap allowance, node swap); global RAM + swap."""
    if event.kind == "global":
        if event.node_ram_pages is None:
            return None
        return event.node_ram_pages + (event.node_swap_bytes or 0) // page_size
    if event.limit_bytes is None:
        return None
    allowance, node_swap = event.swap_limit_bytes, event.node_swap_bytes
    # unlimited (or not logged): capped by the node's swap, when the log says it
    swap = (node_swap or 0) if allowance is None else allowance if node_swap is None else min(allowance, node_swap)
    return event.limit_bytes // page_size + swap // page_size


def rank_candidates(event: OomEvent, page_size: int = 4096) -> list[RankedCandidate]:
    """The logged task table scored as ``oom_badness()`` does, best candidate first (the kernel's ``>=``: among
    equal points the later-listed task wins, so it comes first)."""
    totalpages = domain_pages(event, page_size)
    per_adj = totalpages // 1000 if totalpages else 0
    scored: list[tuple[bool, int, int, RankedCandidate]] = []
    for index, row in enumerate(event.candidates):
        rss = _rss(row)
        swap = row.swapents or 0
        pgtables = row.pgtables_bytes or 0
        points = rss + swap + pgtables // page_size + row.oom_score_adj * per_adj
        eligible = row.oom_score_adj != OOM_SCORE_ADJ_MIN and row.pid != 1
        score = normalised_score(points, totalpages) if totalpages else None
        ranked = RankedCandidate(row.pid, row.comm, points, score, row.oom_score_adj, rss, swap, pgtables, eligible)
        scored.append((eligible, points, index, ranked))
    scored.sort(key=lambda item: (item[0], item[1], item[2]), reverse=True)
    return [item[3] for item in scored]


def _rss(row: KernelCandidate) -> int:
    if row.rss_pages or all(v is None for v in (row.rss_anon_pages, row.rss_file_pages, row.rss_shmem_pages)):
        return row.rss_pages
    return (row.rss_anon_pages or 0) + (row.rss_file_pages or 0) + (row.rss_shmem_pages or 0)


def exit_race_gap_s(event: OomEvent, previous: OomEvent | None) -> float | None:
    """Seconds since the last kill in this domain when this kill is the kernel's exit race, else None.

    The kernel waits for a victim it already chose until it is marked done (MMF_OOM_SKIP), but exit_mmap() sets
    that mark before tlb_finish_mmu() frees and uncharges the last gathered pages (and the OOM reaper sets it when
    it gives up): an allocation still retrying in the domain can then hit the limit again, and the kernel picks
    the next task.  Seen on this project's test machine about once in ten pod-level kills, ~10 ms apart.  The
    proof in the log: the earlier victim is no longer in this kill's task table, yet the domain is at its limit.
    """
    if previous is None or event.kind != "memcg" or previous.kind != "memcg" or not event.candidates:
        return None
    if event.oom_cgroup is None or event.oom_cgroup != previous.oom_cgroup:
        return None
    if event.kernel_time_s is None or previous.kernel_time_s is None:
        return None
    gap_s = event.kernel_time_s - previous.kernel_time_s
    earlier = {task.pid for task in previous.killed}
    if not 0 <= gap_s <= EXIT_RACE_WINDOW_S or any(c.pid in earlier for c in event.candidates):
        return None
    return gap_s


def exit_race_note(event: OomEvent, previous: OomEvent | None) -> str | None:
    """The explanation's note on an exit-race kill (see :func:`exit_race_gap_s`), else None."""
    gap_s = exit_race_gap_s(event, previous)
    if gap_s is None or previous is None:
        return None
    first = previous.victim
    return (
        f"{gap_s * 1000:.0f} ms after this domain's kill of pid {first.pid} {first.comm or '?'}, whose memory "
        "was still being freed: the kernel had already stopped waiting for that victim (MMF_OOM_SKIP) while "
        "the domain was still at its limit, so it chose again among the tasks left; this kill follows from "
        "that timing, not from a new excess"
    )


def previous_in_domain(earlier: Iterable[OomEvent], event: OomEvent) -> OomEvent | None:
    """The newest kill of ``earlier`` (newest first) in ``event``'s domain: what :func:`exit_race_note` compares."""
    if event.oom_cgroup is None:
        return None
    return next((e for e in earlier if e is not event and e.oom_cgroup == event.oom_cgroup), None)


class Explainer:
    """Explains kills in the order they happened, remembering the last kill of each domain (for the exit race)."""

    def __init__(self, page_size: int = 4096) -> None:
        self.page_size = page_size
        self._last: dict[str, OomEvent] = {}

    def previous(self, event: OomEvent) -> OomEvent | None:
        """The last kill remembered in ``event``'s domain."""
        return self._last.get(event.oom_cgroup) if event.oom_cgroup is not None else None

    def remember(self, event: OomEvent) -> None:
        if event.oom_cgroup is not None and event.victim.pid is not None:
            self._last[event.oom_cgroup] = event

    def explain(self, event: OomEvent) -> Explanation:
        """:func:`explain` with the previous kill of the domain; then this kill is the one remembered."""
        previous = self.previous(event)
        self.remember(event)
        return explain(event, self.page_size, previous)


def explain(event: OomEvent, page_size: int = 4096, previous: OomEvent | None = None) -> Explanation:
    """The ranking and a plain sentence on why this victim (or why not the one oomtop would have expected).

    ``previous``: the kill before this one in the same domain, if any (see :func:`exit_race_note`)."""
    ranking = tuple(rank_candidates(event, page_size))
    totalpages = domain_pages(event, page_size)
    per_adj = totalpages // 1000 if totalpages else 0
    victim = event.victim
    notes: list[str] = []
    if totalpages is None and ranking:
        notes.append("the log did not give the OOM domain's size: oom_score_adj is left out and no score is shown")
    rank = next((i for i, c in enumerate(ranking, 1) if c.pid == victim.pid), None)
    if rank is None:
        rank = next((i for i, c in enumerate(ranking, 1) if _tgid(event, c.pid) == victim.pid), None)
    eligible = [c for c in ranking if c.eligible]
    top = eligible[0] if eligible else None
    who = f"pid {victim.pid} {victim.comm or '?'}"
    if top is None:
        why = (
            f"the kernel killed {who}; the log has no task table to rank"
            if not ranking
            else (f"the kernel killed {who}, but no task in the logged table was eligible (all oom_score_adj -1000)")
        )
        return Explanation(ranking, totalpages, None, None, rank, why, tuple(notes))
    victim_row = ranking[rank - 1] if rank is not None else None
    is_top = victim_row is not None and victim_row.pid == top.pid
    if victim_row is not None and is_top:
        why = f"{who} had the most points: {_sum(victim_row, per_adj, totalpages, page_size)}"
        ties = [c for c in eligible if c.points == victim_row.points and c.pid != victim_row.pid]
        if ties:
            why += f"; tied with {', '.join(f'pid {c.pid}' for c in ties)}: the kernel keeps the later-listed task"
    else:
        why = f"{who} was not the top candidate: pid {top.pid} {top.comm} had {top.points} points"
        if victim_row is None:
            why += ", and the victim is not in the table"
        elif victim_row.points == top.points:
            why += ", as many as the victim, and comes later in the table (the kernel keeps the later task on a tie)"
        else:
            why += f" against {victim_row.points}"
        why += ". " + _not_top_reason(event, top, victim_row)
    if event.oom_group_path is not None:
        notes.append(
            f"memory.oom.group is set on {event.oom_group_path}: the kernel killed all {len(event.killed)} "
            "of its tasks (oom_score_adj -1000 spared) with the victim"
        )
    logged, tabled = event.logged_score, victim_row.score if victim_row is not None else None
    if logged is not None and tabled is not None and logged != tabled:
        notes.append(f"the kernel logged score {logged}; the table gives {tabled}")
    race = exit_race_note(event, previous)
    if race is not None:
        notes.append(race)
    return Explanation(ranking, totalpages, is_top, top, rank, why, tuple(notes))


def _tgid(event: OomEvent, pid: int) -> int | None:
    return next((row.tgid for row in event.candidates if row.pid == pid), None)


def _sum(c: RankedCandidate, per_adj: int, totalpages: int | None, page_size: int) -> str:
    adj = f"+ {c.oom_score_adj} × {per_adj} adj" if c.oom_score_adj >= 0 else f"- {-c.oom_score_adj} × {per_adj} adj"
    text = f"{c.rss_pages} rss + {c.swapents} swap + {c.pgtables_bytes // page_size} page-table pages {adj}"
    text += f" = {c.points}"
    if totalpages:
        text += f" of {totalpages} pages (score {c.score})"
    return text


def _not_top_reason(event: OomEvent, top: RankedCandidate, victim: RankedCandidate | None) -> str:
    killed = {k.pid for k in event.killed}
    if event.oom_group_path is not None and top.pid in killed:
        return (
            f"It died in the memory.oom.group kill of {event.oom_group_path}, which killed every task there, "
            f"pid {top.pid} included; the log listed it first"
        )
    if victim is None:
        return "The task table is incomplete (cut, or taken in another cgroup), so the victim could not be ranked"
    if event.logged_score is not None:
        return (
            "This kernel is older than 5.1: it may have sacrificed a child of the task it chose, or taken 3% off "
            "a root-owned task's points"
        )
    return (
        "Likely memory moved between the kernel's choice and the task table it printed right after (other "
        "tasks kept allocating, or the victim was already exiting and freeing memory)"
    )


# ------------------------------------------------------------------------------------------------ views


def with_identity(event: OomEvent, names: NodeNames | None = None) -> OomEvent:
    """The event with ``pod`` and ``container`` filled from its cgroup path (and node-local names, if given)."""
    path = event.task_cgroup or event.oom_cgroup
    if not path:
        return event
    ident = identify(path, names)
    return replace(event, pod=ident.pod or event.pod, container=ident.container or event.container)


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")
    except (OverflowError, OSError, ValueError):
        return None


def _task_json(task: KilledTask) -> dict[str, Any]:
    parts = (task.anon_rss_bytes, task.file_rss_bytes, task.shmem_rss_bytes)
    return {
        "pid": task.pid, "comm": task.comm, "anon_rss_bytes": task.anon_rss_bytes,
        "file_rss_bytes": task.file_rss_bytes, "shmem_rss_bytes": task.shmem_rss_bytes,
        "rss_bytes": None if all(p is None for p in parts) else sum(p or 0 for p in parts),
        "oom_score_adj": task.oom_score_adj, "total_vm_bytes": task.total_vm_bytes, "uid": task.uid,
        "pgtables_bytes": task.pgtables_bytes,
    }  # fmt: skip


def event_to_json(event: OomEvent, explanation: Explanation | None = None) -> dict[str, Any]:
    """One kill as a JSON-ready dict (the ``oomtop explain --json`` contract); system text is kept as-is."""
    exp = explanation if explanation is not None else explain(event)
    pod, ctr = event.pod, event.container
    return {
        "time": _iso(event.time),
        "time_epoch": event.time,
        "kernel_time_s": event.kernel_time_s,
        "seq": event.seq,
        "kind": event.kind,
        "oom_cgroup": event.oom_cgroup,
        "task_cgroup": event.task_cgroup,
        "victim": _task_json(event.victim),
        "killed": [_task_json(k) for k in event.killed],
        "pod": None if pod is None else {"uid": pod.uid, "name": pod.name, "namespace": pod.namespace,
                                          "qos": pod.qos.value},
        "container": None if ctr is None else {"id": ctr.id, "name": ctr.name, "runtime": ctr.runtime,
                                                "sandbox": ctr.is_sandbox},
        "candidates": [
            {"pid": c.pid, "comm": c.comm, "score": c.score, "points": c.points, "oom_score_adj": c.oom_score_adj,
             "rss_pages": c.rss_pages, "swapents": c.swapents, "pgtables_bytes": c.pgtables_bytes,
             "eligible": c.eligible}
            for c in exp.ranking
        ],
        "totalpages": exp.totalpages,
        "usage_bytes": event.usage_bytes,
        "limit_bytes": event.limit_bytes,
        "swap_limit_bytes": event.swap_limit_bytes,
        "node_ram_pages": event.node_ram_pages,
        "node_swap_bytes": event.node_swap_bytes,
        "invoker_comm": event.invoker_comm,
        "invoker_oom_score_adj": event.invoker_oom_score_adj,
        "constraint": event.constraint,
        "oom_group_path": event.oom_group_path,
        "logged_score": event.logged_score,
        "victim_is_top": exp.victim_is_top,
        "why": exp.why,
        "notes": list(exp.notes),
        "source": list(event.source),
        "historical": event.historical,
        "predicted_victim_pid": event.predicted_victim_pid,
        "count": event.count,
        "detected_in": getattr(event, "detected_in", None),
    }  # fmt: skip


def _when(event: OomEvent) -> str:
    boot = f"[{event.kernel_time_s:>8.2f}] since boot" if event.kernel_time_s is not None else None
    if event.time is not None:
        try:
            wall = datetime.fromtimestamp(event.time).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            return f"{wall} ({boot})" if boot else wall
        except (OverflowError, OSError, ValueError):
            pass
    return boot or "time unknown"


def _killed_text(task: KilledTask) -> str:
    text = f"pid {task.pid} {printable(task.comm or '?')}"
    sizes = [
        (name, value)
        for name, value in (
            ("anon", task.anon_rss_bytes),
            ("file", task.file_rss_bytes),
            ("shmem", task.shmem_rss_bytes),
        )
        if value is not None
    ]
    if sizes:
        text += "  rss " + ", ".join(f"{name} {format_bytes(value)}" for name, value in sizes)
    if task.oom_score_adj is not None:
        text += f"  adj {task.oom_score_adj}"
    return text


def _table(exp: Explanation, victims: set[int | None]) -> list[str]:
    head = ("", "pid", "comm", "points", "score", "adj", "rss", "swap", "pgtbl")
    rows = [head]
    for c in exp.ranking[:TOP_ROWS]:
        mark = "*" if c.pid in victims else ("-" if not c.eligible else "")
        rows.append(
            (
                mark,
                str(c.pid),
                truncate(printable(c.comm), COMM_CELLS),
                str(c.points),
                "-" if c.score is None else str(c.score),
                str(c.oom_score_adj),
                str(c.rss_pages),
                str(c.swapents),
                str(c.pgtables_bytes // 4096),
            )
        )
    # measured and padded in terminal cells: a CJK or emoji comm is wider than it is long
    widths = [max(cell_width(r[i]) for r in rows) for i in range(len(head))]
    lines = []
    for r in rows:
        cells = [pad(r[0], widths[0]), pad(r[1], widths[1], "right"), pad(r[2], widths[2])]
        cells += [pad(v, w, "right") for v, w in zip(r[3:], widths[3:], strict=False)]
        lines.append("    " + "  ".join(cells).rstrip())
    if len(exp.ranking) > TOP_ROWS:
        lines.append(f"    ... {len(exp.ranking) - TOP_ROWS} more")
    return lines


def render_text(events: Sequence[OomEvent], explanations: Sequence[Explanation | None] | None = None) -> str:
    """The human view of ``oomtop explain``: one paragraph per kill, then a summary line."""
    out: list[str] = []
    for i, event in enumerate(events):
        exp = explanations[i] if explanations is not None and i < len(explanations) else None
        exp = exp if exp is not None else explain(event)
        kind = "memory cgroup limit" if event.kind == "memcg" else "node out of memory (global)"
        out.append(f"OOM kill {i + 1}: {_when(event)}  —  {kind}")
        if event.pod is not None:
            pod = event.pod
            out.append(f"  pod        {printable(pod.label)} ({pod.qos.value})")
        if event.container is not None:
            ctr = event.container
            label = f"{ctr.name} (id {ctr.id[:12]})" if ctr.name else f"id {ctr.id[:12]}"
            out.append(f"  container  {printable(label)}")
        domain = printable(event.oom_cgroup or "?")
        if event.kind == "memcg":
            domain += f"  usage {format_bytes(event.usage_bytes, '?')} / limit {format_bytes(event.limit_bytes, '?')}"
        elif event.node_ram_pages is not None:
            domain += f"  RAM {format_bytes(event.node_ram_pages * 4096)}"
            domain += f" + swap {format_bytes(event.node_swap_bytes, '?')}"
        out.append(f"  domain     {domain}")
        if event.task_cgroup and event.task_cgroup != event.oom_cgroup:
            out.append(f"  cgroup     {printable(event.task_cgroup)}")
        out.append(f"  killed     {_killed_text(event.victim)}")
        if event.oom_group_path is not None:
            where = "the domain itself" if event.oom_group_path == event.oom_cgroup else printable(event.oom_group_path)
            out.append(f"  oom.group  set on {where}: {len(event.killed)} tasks killed")
            out.extend(f"             {_killed_text(k)}" for k in event.killed[1:])
        if exp.ranking:
            size = f"domain {exp.totalpages} pages; " if exp.totalpages else ""
            out.append(f"  ranking ({size}* killed, - never picked):")
            out.extend(_table(exp, {k.pid for k in event.killed}))
        out.append(f"  why        {printable(exp.why)}")
        out.extend(f"  note       {printable(note)}" for note in exp.notes)
        out.append("")
    n = len(events)
    out.append("no OOM kills found in the input" if n == 0 else f"{n} OOM kill{'s' if n != 1 else ''} found")
    return "\n".join(out) + "\n"
