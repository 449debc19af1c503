"""The ``oomtop`` command line: picks a Source and a consumer, and turns every failure into one clear line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from oomtop import __version__
from oomtop.collect.collector import Collector, CollectorConfig
from oomtop.collect.poller import DEFAULT_INTERVAL_S, MIN_INTERVAL_S

if TYPE_CHECKING:
    from oomtop.lab.runner import LabView
    from oomtop.record.reader import Recording
    from oomtop.source import Notice, Source
    from oomtop.ui.themes import Catalogue


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
    """Where to read the node from: shared by the UI, --once and every subcommand that reads the node.

    A subcommand's copies default to "not given" (argparse.SUPPRESS), so ``oomtop --host-root /host serve`` and
    ``oomtop serve --host-root /host`` mean the same: without it the subcommand's default would silently replace
    the value given before the subcommand's name."""
    subcommand = " " in parser.prog  # "oomtop serve"; the top-level parser is "oomtop"

    def default(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    parser.add_argument(
        "--interval",
        type=interval,
        default=default(DEFAULT_INTERVAL_S),
        metavar="S",
        help=f"seconds between samples (default {DEFAULT_INTERVAL_S}, at least {MIN_INTERVAL_S})",
    )
    parser.add_argument(
        "--host-root",
        metavar="DIR",
        default=default(None),
        help="the host's / mounted here (when oomtop runs in a container)",
    )
    parser.add_argument(
        "--sysfs-root", metavar="DIR", default=default(None), help="cgroup filesystem root (default /sys/fs/cgroup)"
    )
    parser.add_argument("--procfs-root", metavar="DIR", default=default(None), help="procfs root (default /proc)")
    parser.add_argument(
        "--metadata-root",
        metavar="DIR",
        default=default(None),
        help="root of node metadata such as /var/log/pods (default /)",
    )
    parser.add_argument(
        "--kmsg",
        metavar="PATH",
        default=default(None),
        help="kernel log device (default /dev/kmsg; 'none' to not read it)",
    )
    parser.add_argument(
        "--redact-cmdline", action="store_true", default=default(False), help="never read or show command lines"
    )


def duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


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
    parser.add_argument("--theme", metavar="NAME", help="colour theme of the live view (see --list-themes)")
    parser.add_argument("--list-themes", action="store_true", help="list the themes (shipped and user) and exit")
    parser.add_argument("--record", metavar="FILE", help="record the session to FILE while the live view runs")
    add_source_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        help="explain the OOM kills in a saved kernel log",
        description="Read a kernel log (dmesg, dmesg -T, journalctl -k or /dev/kmsg records, mixed with anything "
        "else) and explain every OOM kill in it: when, which pod and container, the domain and its "
        "limit, the victim, and the kernel's candidate ranking with scores.",
    )
    explain.add_argument("file", nargs="?", default="-", metavar="FILE", help="the log file, or - for standard input")
    explain.add_argument("--json", action="store_true", help="one JSON object per kill, one per line")
    explain.add_argument(
        "--metadata-root",
        metavar="DIR",
        default=argparse.SUPPRESS,  # given before "explain", the top-level value stands
        help="node metadata for pod and container names",
    )
    events = commands.add_parser(
        "events",
        help="print past OOM kills from the kernel log, then follow new ones",
        description="Print the OOM kills still in the kernel's ring buffer (marked as history), then every new kill "
        "the moment it happens, one line (or one JSON object) each.",
    )
    events.add_argument("--json", action="store_true", help="one JSON object per kill, one per line")
    events.add_argument("--no-follow", action="store_true", help="stop after the history")
    add_source_flags(events)
    record = commands.add_parser(
        "record",
        help="record the node headless (for a node left running overnight)",
        description="Record every sample and OOM kill to FILE until --duration, Ctrl-C or SIGTERM; a progress line "
        "on a terminal, silent otherwise. The file is created with mode 0600 and never overwritten.",
    )
    record.add_argument("file", metavar="FILE", help="the recording to create")
    record.add_argument("--duration", type=duration, metavar="S", help="stop after this many seconds")
    add_source_flags(record)
    replay = commands.add_parser(
        "replay",
        help="replay a recording in the UI, or export it as JSON lines",
        description="Open the live view over a recording, with a timeline (play/pause, step, jump to a time or to "
        "the next kill, speed). --json writes every sample and kill as JSON lines instead.",
    )
    replay.add_argument("file", metavar="FILE", nargs="?", help="the recording")
    replay.add_argument("--json", action="store_true", help="write every sample and kill as JSON lines and exit")
    replay.add_argument("--speed", type=float, default=1.0, metavar="X", help="play speed (default 1)")
    replay.add_argument("--theme", metavar="NAME", help="colour theme (see oomtop --list-themes)")
    replay.add_argument("--demo", action="store_true", help="open the recording shipped with oomtop (the lab's seed)")
    from oomtop.lab.command import add_parser as add_lab_parser
    from oomtop.serve.command import add_parser as add_serve_parser
    from oomtop.ui.web import add_parser as add_web_parser

    add_serve_parser(commands, add_source_flags)
    add_web_parser(commands, add_source_flags)

    add_lab_parser(commands)
    return parser


def collector_config(args: argparse.Namespace) -> CollectorConfig:
    """Roots from the flags: ``--host-root`` moves every default under it; explicit roots win."""
    host = args.host_root
    for flag, value in (
        ("--host-root", host),
        ("--sysfs-root", args.sysfs_root),
        ("--procfs-root", args.procfs_root),
        ("--metadata-root", args.metadata_root),
    ):
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
    value: str | None = getattr(args, "kmsg", None)
    if value == "none":
        return None
    if value:
        return value
    return "/dev/kmsg"  # the kernel log is not namespaced: the node's, also inside a container


def run_explain(args: argparse.Namespace) -> int:
    from oomtop.collect.identity import NodeNames
    from oomtop.collect.kmsg import parse_log
    from oomtop.explain import Explainer, event_to_json, render_text, with_identity

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
    explainer = Explainer()
    explanations = [explainer.explain(event) for event in events]
    if args.json:
        for event, explanation in zip(events, explanations, strict=False):
            sys.stdout.write(json.dumps(event_to_json(event, explanation), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_text(events, explanations))
    return 0


def run_events(args: argparse.Namespace, config: CollectorConfig) -> int:
    import asyncio

    from oomtop.events_cli import follow_events

    return asyncio.run(follow_events(config, args.interval, kmsg_path(args), args.json, not args.no_follow))


def list_themes() -> int:
    from oomtop.ui.themes import discover, listing, user_dir

    sys.stdout.write(listing(discover()))
    sys.stdout.write(f"user themes are read from {user_dir()}/*.toml\n")
    return 0


def on_a_terminal() -> bool:
    """Whether the app has a screen to draw on: a terminal on stdin and stdout, or a Textual driver of its own
    (``TEXTUAL_DRIVER``: textual-serve sets the web driver for each browser session's process, whose stdin and
    stdout are pipes to the server)."""
    return bool(os.environ.get("TEXTUAL_DRIVER")) or (sys.stdin.isatty() and sys.stdout.isatty())


def app_setup(args: argparse.Namespace, no_terminal: str) -> tuple[str, Catalogue, list[Notice]]:
    """Theme, theme catalogue and start-up notices for the app; a UsageError without a terminal (or web driver)."""
    from oomtop.source import Notice
    from oomtop.ui.themes import discover, resolve

    catalogue = discover()
    try:
        theme, problem = resolve(args.theme, catalogue)
    except KeyError:
        raise UsageError(f"no theme named {args.theme!r} (oomtop --list-themes shows them)") from None
    if not on_a_terminal():
        raise UsageError(no_terminal)
    notices: list[Notice] = []
    if problem is not None:  # a broken theme file: one line, then the default theme
        print(f"oomtop: {problem}", file=sys.stderr)
        notices.append(Notice(problem, "theme"))
    notices += [
        Notice(f"theme file ignored: {error}", "theme")
        for error in catalogue.errors
        if problem is None or str(error) not in problem
    ]
    return theme, catalogue, notices


def run_ui(config: CollectorConfig, args: argparse.Namespace) -> int:
    """The live terminal UI on this node (or on the fixture under --host-root)."""
    theme, catalogue, notices = app_setup(
        args,
        "the live view needs a terminal (or a browser: `oomtop web`); "
        "use `oomtop --once` (or --once --json) for a snapshot",
    )
    from oomtop.live import LiveSource
    from oomtop.ui.app import OomtopApp

    source: Source = LiveSource(config, interval_s=args.interval, kmsg_path=kmsg_path(args))
    if args.record:
        from oomtop.record.recorder import Recorder, RecordingSource
        from oomtop.record.writer import RecordingStopped

        try:
            source = RecordingSource(source, Recorder(args.record, args.interval, args.redact_cmdline))
        except RecordingStopped as error:
            raise UsageError(str(error)) from None
    app = OomtopApp(source, theme=theme, catalogue=catalogue, notices=notices, interval_s=args.interval, tune_gc=True)
    try:
        app.run()
    finally:
        source.close()
    return app.return_code or 0


def run_record(args: argparse.Namespace, config: CollectorConfig) -> int:
    import asyncio

    from oomtop.live import LiveSource
    from oomtop.record.recorder import Recorder, record_headless
    from oomtop.record.writer import RecordingStopped

    try:
        recorder = Recorder(args.file, args.interval, args.redact_cmdline)
    except RecordingStopped as error:
        raise UsageError(str(error)) from None
    # Kills already in the kernel's ring buffer happened before this recording: they are not part of it.
    source = LiveSource(config, interval_s=args.interval, kmsg_path=kmsg_path(args), with_history=False)
    return asyncio.run(record_headless(source, recorder, args.duration, args.file))


def open_recording(path: str) -> Recording:
    from oomtop.record.reader import Recording, RecordingError

    try:
        return Recording(path)
    except RecordingError as error:
        raise UsageError(str(error)) from None


def run_replay(args: argparse.Namespace) -> int:
    if getattr(args, "demo", False):
        if args.file:
            raise UsageError("give a recording or --demo, not both")
        from oomtop.demo import recording_path

        args.file = recording_path()
    if not args.file:
        raise UsageError("replay needs a recording: oomtop replay FILE (or oomtop replay --demo)")
    recording = open_recording(args.file)
    try:
        if args.json:
            from oomtop.record.export import export_json_lines

            try:
                export_json_lines(recording, sys.stdout)
            finally:
                # After the export: bad sample records are only found as their segments are decoded.
                if recording.damage:
                    more = recording.damage_count - 1
                    tail = f" (and {more} more damaged place{'s' if more > 1 else ''} further on)" if more > 0 else ""
                    print(f"oomtop: {recording.damage}{tail}", file=sys.stderr)
            return 0
        return run_replay_ui(recording, args)
    finally:
        recording.close()


def run_replay_ui(recording: Recording, args: argparse.Namespace) -> int:
    """The live view over a recording, with its timeline."""
    from oomtop.record.replay import ReplaySource

    theme, catalogue, notices = app_setup(
        args, "the replay view needs a terminal; use `oomtop replay FILE --json` to export it"
    )
    from oomtop.ui.app import OomtopApp

    source = ReplaySource(recording, speed=args.speed)
    app = OomtopApp(source, theme=theme, catalogue=catalogue, notices=notices, interval_s=recording.interval_s)
    app.run()
    return app.return_code or 0


def open_lab_view(source: Source, theme: str | None, interval_s: float) -> LabView:
    """The lab's live view, imported only when it is shown (``lab --headless`` never loads Textual)."""
    from oomtop.ui.lab_view import open_lab_view as open_view

    return open_view(source, theme, interval_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explain":
            return run_explain(args)
        if args.command == "replay":
            return run_replay(args)
        if args.command == "lab":
            from oomtop.lab.command import run as run_lab

            return run_lab(args, open_lab_view)
        if args.list_themes:
            return list_themes()
        if args.command is None and args.json and not args.once:
            raise UsageError("--json needs --once (the live view is a terminal UI)")
        if args.command is None and args.once and args.theme:
            raise UsageError("--theme is for the live view; --once prints plain text")
        config = collector_config(args)
        if args.command == "events":
            return run_events(args, config)
        if args.command == "record":
            return run_record(args, config)
        if args.command == "serve":
            from oomtop.serve.command import run as run_serve

            return run_serve(args, config, kmsg_path(args))
        if args.command == "web":
            from oomtop.ui.web import run as run_web

            return run_web(args)
        if args.once:
            return run_once(config, args.json)
        return run_ui(config, args)
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
