"""Make the recording shipped as ``oomtop replay --demo``: ``python -m oomtop.lab.make_demo [--output FILE]``.

Runs the lab's ``seed`` scenario headless, paced for watching (the first hog takes a few seconds to fill, with
pauses before and after the kill) and sampled every 0.2 s, records it with the node's hostname replaced and the
lab's parent cgroup taken off every path (so the view opens on its kubepods, as on a node), checks
that the recording holds the kill and that oomtop predicted it, and moves it into place (by default
``oomtop/demo/seed.oomrec`` next to this package).  Needs what ``oomtop lab`` needs: root and the memory controller.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from oomtop.demo import DEMO_FILE
from oomtop.lab import LabError

MAX_BYTES = 400 * 1024


def default_output() -> str:
    import oomtop.demo

    return os.path.join(os.path.dirname(os.path.abspath(oomtop.demo.__file__)), DEMO_FILE)


def check(path: str) -> str:
    """Why the recording is not a good demo, or "" when it is."""
    from oomtop.record.reader import Recording

    recording = Recording(path)
    try:
        samples = sum(1 for _ in recording.iter_samples())
        kills = [event for event in recording.events if event.victim.pid is not None]
        if recording.damage:
            return f"the recording is damaged: {recording.damage}"
        if samples < 20:
            return f"only {samples} samples"
        if not kills:
            return "no kill in the recording"
        if kills[0].predicted_victim_pid != kills[0].victim.pid:
            return f"the kill of {kills[0].victim.pid} was recorded as predicted {kills[0].predicted_victim_pid}"
    finally:
        recording.close()
    size = os.path.getsize(path)
    return f"{size} bytes, more than {MAX_BYTES}" if size > MAX_BYTES else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oomtop.lab.make_demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=default_output(), help="where to put it (default: the package's)")
    parser.add_argument("--runtime", choices=("plain", "runc"), default="plain")
    args = parser.parse_args(argv)
    from oomtop.lab.runner import LabOptions, run
    from oomtop.lab.scenarios import DEFAULT_CAPACITY, SCENARIOS

    directory = tempfile.mkdtemp(prefix="oomtop-demo-")
    recording = os.path.join(directory, DEMO_FILE)
    options = LabOptions(
        scenario="seed",
        runtime=args.runtime,
        headless=True,
        record=recording,
        interval_s=0.2,
        pace_s=6.0,
        pauses=True,
        hostname="oomtop-lab",
        strip_parent=True,
    )
    try:
        status = run(options, SCENARIOS["seed"], DEFAULT_CAPACITY["seed"])
    except LabError as error:
        print(f"make_demo: {error}", file=sys.stderr)
        return 2
    if status != 0:
        print(f"make_demo: the seed scenario failed (status {status}); {args.output} left as it was", file=sys.stderr)
        return 1
    problem = check(recording)
    if problem:
        print(f"make_demo: not a good demo: {problem}; {args.output} left as it was", file=sys.stderr)
        return 1
    _move(recording, args.output)
    os.rmdir(directory)
    print(f"make_demo: wrote {args.output} ({os.path.getsize(args.output)} bytes)")
    return 0


def _move(source: str, target: str) -> None:
    """Copy next to the target, then rename over it: a reader never sees half a recording."""
    import shutil

    temporary = target + ".tmp"
    shutil.copyfile(source, temporary)
    os.chmod(temporary, 0o644)
    os.replace(temporary, target)
    os.unlink(source)


if __name__ == "__main__":
    raise SystemExit(main())
