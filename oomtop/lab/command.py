"""``oomtop lab``: its command-line flags and what it runs (kept apart so cli.py only adds the subcommand)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from oomtop.lab.runner import ViewFactory

SCENARIO_NAMES = ("seed", "qos", "multi", "random")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    lab = commands.add_parser(
        "lab",
        help="reproduce Kubernetes OOM kills on this kernel and check oomtop's predictions",
        description="Build kubelet-shaped pods under a cgroup of the lab's own (/oomtop-lab), fill them with memory "
        "hogs and let the kernel's OOM killer act, in the live view or, with --headless, printing for "
        "every kill the predicted victim, the actual one and the detection latency (exit status 1 if "
        "any prediction was wrong or any kill was missed). Needs root and the memory controller; "
        "removes everything it made on exit.",
        epilog="Scenarios: seed (a Burstable pod of 123Mi, a 100 MiB hog, then a 50 MiB one), qos (BestEffort, "
        "Burstable and Guaranteed pods under a full kubepods), multi (several processes in one container), "
        "random (--count N --seed S).",
    )
    lab.add_argument(
        "scenario", nargs="?", choices=SCENARIO_NAMES, metavar="SCENARIO", help="seed, qos, multi or random"
    )
    lab.add_argument(
        "--runtime",
        choices=("plain", "runc"),
        default="plain",
        help="plain processes moved into the cgroups (default), or real OCI containers run by runc",
    )
    lab.add_argument(
        "--driver",
        choices=("cgroupfs", "systemd"),
        default="cgroupfs",
        help="kubelet's cgroup naming (default cgroupfs)",
    )
    lab.add_argument("--headless", action="store_true", help="no live view: print each kill and a summary")
    lab.add_argument("--record", metavar="FILE", help="record the run (replay it with `oomtop replay FILE`)")
    lab.add_argument("--count", type=_positive, default=10, metavar="N", help="random: how many OOM rounds (10)")
    lab.add_argument("--seed", type=int, default=1, metavar="S", help="random: the seed (1)")
    lab.add_argument(
        "--capacity",
        metavar="SIZE",
        help="the lab node's memory, e.g. 512Mi: the lab cgroup's limit (kubepods gets it minus 32Mi "
        "reserved) and kubelet's capacity in the oom_score_adj formula; default per scenario",
    )
    lab.add_argument("--interval", type=_interval, default=0.2, metavar="S", help="seconds between samples (0.2)")
    lab.add_argument("--theme", metavar="NAME", help="colour theme of the live view")
    lab.add_argument("--clean", action="store_true", help="remove what an earlier lab left behind, then exit")
    return lab


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.05 <= value <= 5:
        raise argparse.ArgumentTypeError(f"must be between 0.05 and 5 seconds, got {text}")
    return value


def run(args: argparse.Namespace, open_view: ViewFactory | None = None) -> int:
    """The ``lab`` subcommand; problems that stop it before it starts are one line on stderr and status 2.
    ``open_view`` makes the live view (the CLI passes the UI's; the lab itself never imports it)."""
    from oomtop.lab import LabError

    try:
        if args.clean:
            if args.scenario:
                raise LabError("--clean takes no scenario")
            return clean()
        if not args.scenario:
            raise LabError("which scenario? oomtop lab seed|qos|multi|random (or oomtop lab --clean)")
        return _run_scenario(args, open_view)
    except LabError as error:
        print(f"oomtop lab: {error}", file=sys.stderr)
        return 2


def _run_scenario(args: argparse.Namespace, open_view: ViewFactory | None) -> int:
    from oomtop.lab import LabError
    from oomtop.lab.kubelet import format_quantity, parse_quantity
    from oomtop.lab.layout import Driver
    from oomtop.lab.runner import LabOptions, run
    from oomtop.lab.scenarios import DEFAULT_CAPACITY, MIN_CAPACITY, SCENARIOS

    capacity = DEFAULT_CAPACITY[args.scenario]
    if args.capacity:
        try:
            capacity = parse_quantity(args.capacity)
        except ValueError as error:
            raise LabError(f"--capacity: {error}") from None
        if capacity < MIN_CAPACITY[args.scenario]:
            raise LabError(
                f"--capacity {args.capacity} is too small for {args.scenario} "
                f"(at least {format_quantity(MIN_CAPACITY[args.scenario])})"
            )
    options = LabOptions(
        scenario=args.scenario,
        runtime=args.runtime,
        driver=Driver(args.driver),
        headless=args.headless,
        record=args.record,
        count=args.count,
        seed=args.seed,
        capacity_bytes=capacity,
        interval_s=args.interval,
        theme=args.theme,
    )
    return run(options, SCENARIOS[args.scenario], capacity, open_view=open_view)


def clean() -> int:
    import os

    from oomtop.lab import LabError
    from oomtop.lab.cleanup import clean as clean_leftovers

    if os.geteuid() != 0:
        raise LabError("oomtop lab --clean needs root (the lab's leftovers are cgroups and root's processes)")
    removed, problems = clean_leftovers()
    if not removed and not problems:
        print("oomtop lab: nothing to clean")
        return 0
    for item in removed:
        print(f"removed {item}")
    for problem in problems:
        print(f"oomtop lab: {problem}", file=sys.stderr)
    return 1 if problems else 0
