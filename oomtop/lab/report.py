"""What a lab run tells its user and its caller: one line per kill, the summary, and the exit status.

The wording is what tests and users parse (``kill N: predicted ... killed ...; latency ...; right``, ``summary: N
kills in M OOMs, R predicted right, W wrong, X missed``), so it lives here, in one place, where it can be tested
with hand-made :class:`~oomtop.lab.killcheck.KillCheck` data.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from oomtop.lab.describe import label, where
from oomtop.lab.killcheck import KillCheck
from oomtop.lab.node import LabNode
from oomtop.text import printable


def kill_line(check: KillCheck, node: LabNode) -> str:
    """``kill N: predicted <pid comm (container)>, killed <...>; domain ...; latency ...; right|WRONG (notes)``."""
    victim = node.process_of(check.victim_pid) if check.victim_pid is not None else None
    predicted = node.process_of(check.predicted_pid) if check.predicted_pid is not None else None
    killed = f"{check.victim_pid} {printable(check.victim_name)} ({label(victim)})"
    if len(check.killed) > 1:
        killed += f" and {len(check.killed) - 1} more (memory.oom.group)"
    guess = (
        f"{check.predicted_pid} {printable(check.predicted_name)} ({label(predicted)})"
        if check.predicted_pid is not None
        else "nothing"
    )
    latency = f"{check.latency_ms:.0f} ms" if check.latency_ms is not None else "-"
    if not check.detected:
        latency = "MISSED" + (f" ({len(check.undetected)} not reported)" if len(check.killed) > 1 else "")
    verdict = "right" if check.right else "WRONG"
    extra = _notes(check, node)
    tail = f" ({'; '.join(extra)})" if extra else ""
    return (
        f"kill {check.index}: predicted {guess}, killed {killed}; domain {where(check.domain, node)}; "
        f"latency {latency}; {verdict}{tail}"
    )


def _notes(check: KillCheck, node: LabNode) -> list[str]:
    """What else the kill line must say: a follow-up OOM, a victim the scenario did not mean, a watcher event
    that named another victim, a domain found without the kernel log."""
    extra = []
    if check.follow_up:
        extra.append("a follow-up OOM while the first victim was still exiting")
    if not check.as_expected:
        expected = node.process_of(check.expected_pid) if check.expected_pid is not None else None
        extra.append(f"the scenario meant {expected.name if expected else check.expected_pid} to die")
    if check.event_predicted_pid not in (None, check.predicted_pid):
        extra.append(f"oomtop's kill event said {check.event_predicted_pid}")
    if check.domain_source != "kernel log":
        extra.append(f"domain from the {check.domain_source}")
    return extra


def _plural(count: int, word: str) -> str:
    return f"{word}{'s' if count != 1 else ''}"


def summary(checks: Sequence[KillCheck]) -> str:
    """``summary: N kills in M OOMs, R predicted right, W wrong, X missed`` and, where there are any, the
    detection latencies, follow-up OOMs, unexpected victims and watcher events that disagreed."""
    kills = sum(len(check.killed) for check in checks)
    right = sum(check.right for check in checks)
    missed = sum(len(check.undetected) for check in checks)
    latencies = [check.latency_ms for check in checks if check.latency_ms is not None]
    text = (
        f"summary: {kills} {_plural(kills, 'kill')} in {len(checks)} {_plural(len(checks), 'OOM')}, "
        f"{right} predicted right, {len(checks) - right} wrong, {missed} missed"
    )
    if latencies:
        text += f"; detection latency median {statistics.median(latencies):.0f} ms, max {max(latencies):.0f} ms"
    follow = sum(check.follow_up for check in checks)
    if follow:
        text += f"; {follow} follow-up {_plural(follow, 'OOM')}"
    unexpected = sum(not check.as_expected for check in checks)
    if unexpected:
        text += f"; {unexpected} not the victim the scenario meant"
    disagree = sum(check.event_predicted_pid not in (None, check.predicted_pid) for check in checks)
    if disagree:
        text += f"; {disagree} kill {_plural(disagree, 'event')} from oomtop's watcher named another predicted victim"
    return text


@dataclass
class Outcome:
    """How the run went, filled in by the scenario thread (checks, problems, a crash) and the main thread
    (a signal): shared by both, read at the end for the summary and the exit status."""

    checks: list[KillCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the scenario could not do what it meant to (exit 1)
    crash: BaseException | None = None
    finished: bool = False  # the scenario returned (headless: not finishing is a failure)
    interrupted: int | None = None  # the first signal that stopped the run

    def exit_status(self, headless: bool) -> int:
        """128 + the signal when stopped by one; 1 when a prediction was wrong, a kill missed or unexpected, the
        scenario crashed, could not do what it meant to or (headless) did not finish; else 0."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        failed = (
            self.crash is not None
            or bool(self.problems)
            or any(not c.right or c.undetected or not c.as_expected for c in self.checks)
        )
        if headless and not self.finished and self.crash is None:
            failed = True
        return 1 if failed else 0
