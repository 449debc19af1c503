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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oomtop",
        description=(
            "top for memory cgroups: every pod, container and process, how close each is to its memory limit, "
            "and which process the kernel's OOM killer would pick next."
        ),
        epilog="Example: oomtop --once    (one snapshot as a tree)    oomtop --once --json | jq .",
    )
    parser.add_argument("--version", action="version", version=f"oomtop {__version__}")
    parser.add_argument("--once", action="store_true", help="print one sample and exit")
    parser.add_argument("--json", action="store_true", help="with --once: print the sample as one JSON document")
    parser.add_argument(
        "--interval", type=interval, default=DEFAULT_INTERVAL_S, metavar="S",
        help=f"seconds between samples (default {DEFAULT_INTERVAL_S}, at least {MIN_INTERVAL_S})",
    )
    parser.add_argument("--host-root", metavar="DIR", help="the host's / mounted here (when oomtop runs in a container)")
    parser.add_argument("--sysfs-root", metavar="DIR", help="cgroup filesystem root (default /sys/fs/cgroup)")
    parser.add_argument("--procfs-root", metavar="DIR", help="procfs root (default /proc)")
    parser.add_argument("--metadata-root", metavar="DIR", help="root of node metadata such as /var/log/pods (default /)")
    parser.add_argument("--redact-cmdline", action="store_true", help="never read or show command lines")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.json and not args.once:
            raise UsageError("--json needs --once (the live view is a terminal UI)")
        config = collector_config(args)
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
