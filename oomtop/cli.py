"""The ``oomtop`` command line: picks a Source and a consumer, and turns every failure into one clear line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from oomtop import __version__
from oomtop.collect.collector import Collector, CollectorConfig
from oomtop.collect.poller import DEFAULT_INTERVAL_S, MIN_INTERVAL_S


class UsageError(Exception):
    """A bad argument: printed as one line, exit status 2."""


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not MIN_INTERVAL_S <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between {MIN_INTERVAL_S} and 3600 seconds, got {text}")
    return value


def add_source_flags(parser: argparse.ArgumentParser) -> None:
    """Where to read the node from: shared by the UI, --once and events."""
    parser.add_argument(
        "--interval", type=interval, default=DEFAULT_INTERVAL_S, metavar="S",
        help=f"seconds between samples (default {DEFAULT_INTERVAL_S}, at least {MIN_INTERVAL_S})",
    )
    parser.add_argument("--host-root", metavar="DIR", help="the host's / mounted here (when oomtop runs in a container)")
    parser.add_argument("--sysfs-root", metavar="DIR", help="cgroup filesystem root (default /sys/fs/cgroup)")
    parser.add_argument("--procfs-root", metavar="DIR", help="procfs root (default /proc)")
    parser.add_argument("--metadata-root", metavar="DIR", help="root of node metadata such as /var/log/pods (default /)")
    parser.add_argument(
        "--kmsg", metavar="PATH", default=None,
        help="kernel log device (default /dev/kmsg; 'none' to not read it)",
    )
    parser.add_argument("--redact-cmdline", action="store_true", help="never read or show command lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oomtop",
        description=(
            "top for memory cgroups: every pod, container and process, how close each is to its memory limit, "
            "and which process the kernel's OOM killer would pick next."
        ),
        epilog=(
            "Examples: oomtop --once (one snapshot as a tree) | oomtop --once --json | "
            "oomtop explain dmesg.txt | dmesg | oomtop explain - | oomtop events --json"
        ),
    )
    parser.add_argument("--version", action="version", version=f"oomtop {__version__}")
    parser.add_argument("--once", action="store_true", help="print one sample and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print the sample as one JSON document")
    add_source_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain", help="explain the OOM kills in a saved kernel log",
        description="Read a kernel log (dmesg, dmesg -T, journalctl -k or /dev/kmsg records, mixed with anything "
                    "else) and explain every OOM kill in it: when, which pod and container, the domain and its "
                    "limit, the victim, and the kernel's candidate ranking with scores.",
    )
    explain.add_argument("file", nargs="?", default="-", metavar="FILE", help="the log file, or - for standard input")
    explain.add_argument("--json", action="store_true", help="one JSON object per kill, one per line")
    explain.add_argument("--metadata-root", metavar="DIR", help="node metadata for pod and container names")
    events = commands.add_parser(
        "events", help="print past OOM kills from the kernel log, then follow new ones",
        description="Print the OOM kills still in the kernel's ring buffer (marked as history), then every new kill "
                    "the moment it happens, one line (or one JSON object) each.",
    )
    events.add_argument("--json", action="store_true", help="one JSON object per kill, one per line")
    events.add_argument("--no-follow", action="store_true", help="stop after the history")
    add_source_flags(events)
    return parser


def collector_config(args: argparse.Namespace) -> CollectorConfig:
    """Roots from the flags: ``--host-root`` moves every default under it; explicit roots win."""
    host = args.host_root
    for flag, value in (("--host-root", host), ("--sysfs-root", args.sysfs_root), ("--procfs-root", args.procfs_root),
                        ("--metadata-root", args.metadata_root)):
        if value is not None and not os.path.isdir(value):
            raise UsageError(f"{flag} {value}: no such directory")
    base = host.rstrip("/") if host else ""
    return CollectorConfig(
        cgroup_root=args.sysfs_root or f"{base}/sys/fs/cgroup",
        procfs_root=args.procfs_root or f"{base}/proc",
        host_root=args.metadata_root or host or "/",
        redact_cmdline=args.redact_cmdline,
    )


def run_once(config: CollectorConfig, as_json: bool) -> int:
    from oomtop.report import render_tree, to_json

    with Collector(config) as collector:
        sample = collector.sample()
    if as_json:
        json.dump(to_json(sample), sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        width = os.get_terminal_size().columns if sys.stdout.isatty() else 140
        sys.stdout.write(render_tree(sample, max(100, width)))
    return 0


def kmsg_path(args: argparse.Namespace) -> str | None:
    value = getattr(args, "kmsg", None)
    if value == "none":
        return None
    if value:
        return value
    return "/dev/kmsg"  # the kernel log is not namespaced: the node's, also inside a container


def run_explain(args: argparse.Namespace) -> int:
    from oomtop.collect.identity import NodeNames
    from oomtop.collect.kmsg import parse_log
    from oomtop.explain import event_to_json, explain, render_text, with_identity

    if args.file == "-":
        if sys.stdin.isatty():
            print("oomtop explain: reading a kernel log from standard input (paste it, then Ctrl-D)", file=sys.stderr)
        data = sys.stdin.buffer.read()
    else:
        try:
            with open(args.file, "rb") as handle:
                data = handle.read()
        except IsADirectoryError:
            raise UsageError(f"{args.file} is a directory, not a log file") from None
        except FileNotFoundError:
            raise UsageError(f"{args.file}: no such file") from None
    names = NodeNames.load(args.metadata_root) if args.metadata_root else None
    events = [with_identity(event, names) for event in parse_log(data)]
    explanations = [explain(event) for event in events]
    if args.json:
        for event, explanation in zip(events, explanations):
            sys.stdout.write(json.dumps(event_to_json(event, explanation), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(events, explanations))
    return 0


def run_events(args: argparse.Namespace, config: CollectorConfig) -> int:
    import asyncio

    from oomtop.events_cli import follow_events

    return asyncio.run(follow_events(config, args.interval, kmsg_path(args), args.json, not args.no_follow))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explain":
            return run_explain(args)
        if args.json and not args.once:
            raise UsageError("--json needs --once (the live view is a terminal UI)")
        config = collector_config(args)
        if args.command == "events":
            return run_events(args, config)
        if args.once:
            return run_once(config, args.json)
        print(
            "oomtop: the live terminal UI is not part of this build yet; use `oomtop --once` "
            "(or `oomtop --once --json`) for a snapshot",
            file=sys.stderr,
        )
        return 2
    except UsageError as error:
        print(f"oomtop: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except OSError as error:
        print(f"oomtop: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
