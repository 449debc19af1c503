"""``--runtime plain``: each container's processes are ordinary children of the lab, moved into its cgroup.

The lab makes the container cgroup itself (as a runtime would) and writes containerd's bundle annotations to its
metadata directory, so oomtop names the pods and containers just as it does for runc's.
"""

from __future__ import annotations

import os
import subprocess

from oomtop.lab import bundle
from oomtop.lab.procs import LabProcess, hog_env, start_ticks
from oomtop.lab.runtime import Container, cri_annotations


class PlainRuntime:
    """The :class:`~oomtop.lab.runtime.Runtime` without containers: the node makes the cgroups and moves each
    process in, which needs nothing but the kernel (no runc)."""

    name = "plain"
    creates_cgroups = False

    def __init__(self, lab_dir: str) -> None:
        self.lab_dir = lab_dir
        self.logs = os.path.join(lab_dir, "logs")

    def prepare(self) -> None:
        os.makedirs(self.logs, exist_ok=True)

    def start(self, container: Container, proc: LabProcess, argv: list[str], first: bool) -> None:
        if first:
            notes = cri_annotations(container)
            bundle.write_config(self.lab_dir, container.id, {"ociVersion": "1.0.2", "annotations": notes})
        with open(os.path.join(self.logs, f"{container.id[:12]}.log"), "ab") as log:
            proc.popen = subprocess.Popen(  # shown as "python3 -m oomtop.lab.hog ...", run as sys.executable
                ["python3", *argv[1:]],
                executable=argv[0],
                stdin=proc.pipes.child_stdin,
                stdout=proc.pipes.child_stdout,
                stderr=log,
                env=hog_env(),
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        proc.pid = proc.popen.pid
        proc.ticks = start_ticks(proc.pid)

    def stop_container(self, container: Container) -> list[str]:
        for proc in container.processes:
            proc.kill()
        problems = [f"{proc.name} (pid {proc.pid}) did not die" for proc in container.processes if proc.alive()]
        bundle.remove(self.lab_dir, container.id)
        return problems

    def close(self) -> list[str]:
        return []
