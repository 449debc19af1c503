"""``oomtop serve``: its flags, its checks before anything starts, and the collection loop feeding the exporter.

Headless: nothing here (or below) imports Textual.  One asyncio loop runs oomtop's live Source (the collector
and the OOM watcher, as ``oomtop events`` uses them) and publishes every Sample's metric families; the HTTP
server answers scrapes on threads of its own from what was published last.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from oomtop.collect.collector import CollectorConfig
from oomtop.listen import parse_listen

DEFAULT_LISTEN = "127.0.0.1:9842"
SLOW_INTERVALS = 5
TICK_S = 0.1


class ServeError(Exception):
    """Something that stops serve before it starts: one line on stderr, exit status 2."""


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9842`` for IPv6)."""
    try:
        return parse_listen(text, DEFAULT_LISTEN)
    except ValueError as error:
        raise ServeError(f"--listen: {error}") from None


def add_parser(commands: Any, add_source_flags: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The subcommand (``commands`` is the CLI's subparsers; the source flags are the CLI's, passed in)."""
    serve: argparse.ArgumentParser = commands.add_parser(
        "serve",
        help="export metrics for Prometheus (OpenMetrics) over HTTP",
        description="Serve /metrics (OpenMetrics, or the Prometheus text format, by the scraper's Accept header) "
        "and /healthz from the latest sample: memory, limits and headroom per pod and container, kubelet's "
        "oom_score_adj against the kernel's, the process the OOM killer would pick next in every domain, and "
        "every OOM kill, counted by oomtop itself (a recreated container's count goes on). A scrape never "
        "triggers a poll.",
        epilog="A DaemonSet passes --listen 0.0.0.0:9842; the default listens on loopback only.",
    )
    serve.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"where to listen (default {DEFAULT_LISTEN})",
    )
    add_source_flags(serve)
    return serve


def preflight(kmsg_path: str | None) -> None:
    """Refuse early, in one line, what would only fail later: the kernel log needs root (or CAP_SYSLOG)."""
    if kmsg_path is None:
        return
    try:
        os.close(os.open(kmsg_path, os.O_RDONLY | os.O_NONBLOCK))
    except PermissionError:
        raise ServeError(
            f"cannot read the kernel log {kmsg_path} (permission denied): run as root (or with CAP_SYSLOG), "
            "or pass --kmsg none to export kills from cgroup counters only, without victim details"
        ) from None
    except OSError as error:
        raise ServeError(f"cannot read the kernel log {kmsg_path}: {error.strerror}; or pass --kmsg none") from None


def run(args: argparse.Namespace, config: CollectorConfig, kmsg_path: str | None) -> int:
    from oomtop.serve.exporter import Exporter
    from oomtop.serve.http import MetricsServer

    try:
        host, port = listen_address(args.listen)
        preflight(kmsg_path)
        exporter = Exporter(args.interval)
        try:
            server = MetricsServer(host, port, exporter)
        except OSError as error:
            raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    except ServeError as error:
        print(f"oomtop serve: {error}", file=sys.stderr)
        return 2
    server.start()
    bound_host, bound_port = server.address
    print(f"oomtop serve: metrics on http://{_url_host(bound_host)}:{bound_port}/metrics", file=sys.stderr, flush=True)
    try:
        return asyncio.run(_collect(config, args.interval, kmsg_path, exporter))
    finally:
        server.close()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _collect(config: CollectorConfig, interval_s: float, kmsg_path: str | None, exporter: Any) -> int:
    """Feed the exporter until SIGINT or SIGTERM."""
    from oomtop.live import LiveSource
    from oomtop.model import OomEvent, Sample
    from oomtop.report import View
    from oomtop.serve.metrics import KillLedger, sample_families
    from oomtop.source import Notice, close_updates

    # Metrics are scraped every few seconds at best: limits, adj and quiet cgroups' processes are re-read every
    # SLOW_INTERVALS intervals (the live view re-reads them every second), and waiting kills are looked at every
    # TICK_S (events are counted, not shown: 100 ms later costs nothing, 50 wake-ups a second cost ~1% of a core).
    slow = max(config.slow_interval_s, SLOW_INTERVALS * interval_s)
    source = LiveSource(replace(config, slow_interval_s=slow), interval_s, kmsg_path=kmsg_path, tick_s=TICK_S)
    ledger = KillLedger()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    latest: list[Any] = []  # the families of the last Sample: a kill republishes them with the new counts

    def publish(sample_time: float | None) -> None:
        exporter.kmsg_readable = source.kmsg_readable
        exporter.publish([*latest, *ledger.families()], sample_time)

    updates = source.updates()
    last_time: float | None = None
    try:
        while not stop.is_set():
            getter = asyncio.ensure_future(anext(updates))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if getter not in done:  # stopped: the pending read ends before the stream is closed
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await getter
                break
            try:
                update = getter.result()
            except StopAsyncIteration:
                break
            if isinstance(update, Sample):
                latest[:] = sample_families(View.of(update), ledger.plain, ledger.comms)
                last_time = update.time
                publish(last_time)
            elif isinstance(update, OomEvent):
                if ledger.add(update):
                    publish(last_time)
            elif isinstance(update, Notice) and update.key == "poll-error":
                exporter.error(update.text)
    finally:
        source.close()
        await close_updates(updates)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
