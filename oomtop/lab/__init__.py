"""``oomtop lab``: Kubernetes-shaped pods on the local kernel, filled with memory hogs, to watch real OOM kills.

The lab lays out cgroups the way kubelet does (under a parent cgroup of its own, never the node's kubepods),
sets limits and ``oom_score_adj`` the way kubelet and the runtimes do, runs each container's processes plainly or
as real runc containers, provokes OOM kills, and checks every kill against what oomtop predicted.

Keep this module import-light: ``python -m oomtop.lab.hog`` imports it in every hog process.
"""

from __future__ import annotations

LAB_NAME = "oomtop-lab"
LAB_DIR = "/run/" + LAB_NAME  # the lab's node metadata (bundles), runc state and logs; its Collector's host_root


class LabError(Exception):
    """A reason the lab cannot run, told as one sentence (exit status 2)."""
