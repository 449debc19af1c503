"""``oomtop events``: past kills from the kernel log, then each new kill the moment it is seen.

One line (or one JSON object) per kill, flushed at once, so ``oomtop events --json | jq`` or a log shipper sees
kills as they happen.  Notices (no kernel log, no wake-ups) go to stderr, once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from datetime import datetime

from oomtop.collect.collector import CollectorConfig
from oomtop.explain import Explainer, event_to_json, exit_race_gap_s
from oomtop.live import LiveSource
from oomtop.model import OomEvent, Sample
from oomtop.source import Notice, close_updates
from oomtop.text import format_bytes, printable


def event_line(event: OomEvent) -> str:
    """A one-line summary: when, which pod/container, who was killed, the domain, whether oomtop predicted it."""
    when = "time unknown"
    if event.time is not None:
        when = datetime.fromtimestamp(event.time).astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    parts = [("history " if event.historical else "") + when, event.kind]
    pod, container = event.pod, event.container
    if pod is not None:
        parts.append(f"{printable(pod.label)} [{pod.qos.value}]")
    if container is not None:
        parts.append("container " + printable(container.label))
    victim = event.victim
    if victim.pid is not None:
        killed = f"killed {victim.pid} {printable(victim.comm or '?')}"
        if victim.anon_rss_bytes is not None:
            killed += f" (anon-rss {format_bytes(victim.anon_rss_bytes)})"
        if len(event.killed) > 1:
            killed += f" and {len(event.killed) - 1} more (oom.group)"
        parts.append(killed)
    else:
        where = printable(event.task_cgroup or event.detected_in or "?")
        parts.append(f"{event.count} kill{'s' if event.count != 1 else ''} counted in {where} (victim unknown)")
    if event.oom_cgroup:
        domain = f"domain {printable(event.oom_cgroup)}"
        if event.limit_bytes is not None:
            domain += f" limit {format_bytes(event.limit_bytes)}"
        parts.append(domain)
    if event.predicted_victim_pid is not None and victim.pid is not None:
        parts.append(
            "predicted"
            if event.predicted_victim_pid == victim.pid
            else f"predicted {event.predicted_victim_pid} instead"
        )
    parts.append("[" + ",".join(event.source) + "]")
    return "  ".join(parts)


def _emit(event: OomEvent, as_json: bool, explainer: Explainer) -> None:
    if as_json:
        line = json.dumps(event_to_json(event, explainer.explain(event)), ensure_ascii=False)
    else:
        previous = explainer.previous(event)
        explainer.remember(event)
        line = event_line(event)
        gap_s = exit_race_gap_s(event, previous)
        if gap_s is not None and previous is not None:
            line += f"  (exit race: {gap_s * 1000:.0f} ms after the kill of {previous.victim.pid} in this domain)"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def follow_events(
    config: CollectorConfig, interval_s: float, kmsg_path: str | None, as_json: bool, follow: bool
) -> int:
    """Print history, then (with ``follow``) live kills until SIGINT/SIGTERM."""
    source = LiveSource(config, interval_s, kmsg_path=kmsg_path, samples=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    told: set[str] = set()
    explainer = Explainer()
    saw_sample = False
    updates = source.updates()
    try:
        while not stop.is_set():
            next_update = asyncio.ensure_future(anext(updates))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({next_update, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if next_update not in done:
                next_update.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await next_update  # let the generator unwind before it is closed
                break
            try:
                update = next_update.result()
            except StopAsyncIteration:
                break
            if isinstance(update, Notice):
                if update.text not in told:
                    told.add(update.text)
                    print(f"oomtop events: {update.text}", file=sys.stderr, flush=True)
            elif isinstance(update, OomEvent):
                _emit(update, as_json, explainer)
            elif isinstance(update, Sample) and not saw_sample:
                saw_sample = True
                if not follow:  # history was queued before the first sample
                    break
    finally:
        source.close()
        with contextlib.suppress(RuntimeError, asyncio.CancelledError):
            await close_updates(updates)
    return 0
