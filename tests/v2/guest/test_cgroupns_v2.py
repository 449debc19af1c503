"""oomtop inside a private cgroup namespace (issue 16), as a DaemonSet pod runs on cgroup v2.

containerd gives a container on cgroup v2 a cgroup namespace of its own, rooted at the container's cgroup.  Then
``/proc/<pid>/cgroup`` shows every other process's cgroup relative to that root (``0::/../kubepods/...``), while
the cgroup filesystem (the host's, mounted for oomtop) and the kernel log keep full paths.  oomtop reads
``/proc/<pid>/cgroup`` in one place, the OOM watcher's placement of a victim no Sample saw
(``Placement._proc_cgroup``); the collector lists members from ``cgroup.procs``.  Here a real process sits in a
kubepods container and oomtop runs under ``unshare --cgroup`` from a cgroup of its own: every path it reports
must be the full one -- the Sample's, ``--once --json``'s, the placement's (with and without a Sample that knew
the process) and a real kill's event from ``oomtop events --json``.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

from v2lib import MIB, KubeTree, fs

IN_NAMESPACE = r"""
import json, sys
from oomtop.collect.cgroupfs import discover_hierarchy
from oomtop.collect.collector import Collector, CollectorConfig
from oomtop.collect.oom_placement import Placement
from oomtop.collect.oom_samples import RecentSamples
from oomtop.model import KilledTask, OomEvent

pid = int(sys.argv[1])
out = {"self": open("/proc/self/cgroup").read().strip(), "raw": open(f"/proc/{pid}/cgroup").read().strip()}
with Collector(CollectorConfig()) as collector:
    sample = collector.sample()
out["sample"] = next((t.cgroup for t in sample.tasks if t.pid == pid), None)
hierarchy = discover_hierarchy("/sys/fs/cgroup", "/proc")
known = RecentSamples()
known.add(sample)
out["placed_known"] = Placement(hierarchy, "/proc", known)._proc_cgroup(pid)
out["placed_unknown"] = Placement(hierarchy, "/proc", RecentSamples())._proc_cgroup(pid)
victim = KilledTask(pid=pid, comm=None)
event = OomEvent(kind="memcg", time=None, kernel_time_s=None, oom_cgroup=None, task_cgroup=None, victim=victim,
                 killed=(victim,))
out["event"] = Placement(hierarchy, "/proc", RecentSamples()).where_it_lived(event).task_cgroup
print(json.dumps(out))
"""


def _in_namespace(agent: str, *argv: str) -> list[str]:
    """A command run from ``agent``'s cgroup under a cgroup namespace rooted there, as a container is."""
    return ["sh", "-c", f'echo $$ > {fs(agent)}/cgroup.procs && exec unshare --cgroup "$@"', "sh", *argv]


def test_paths_stay_full_in_a_private_cgroup_namespace() -> None:
    with KubeTree("cgroupfs", bundles=True) as tree:
        tree.build_kubepods()
        pod = tree.add_pod("burstable", 96 * MIB, name="web")
        tree.add_sandbox(pod)
        leaf = tree.add_container(pod, 900, 64 * MIB, name="app")
        hog = tree.start(leaf, 8, name="hog")
        agent = tree.mkdir("/oomtop-agent")

        done = subprocess.run(
            _in_namespace(agent, sys.executable, "-c", IN_NAMESPACE, str(hog.pid)),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["self"] == "0::/", f"not in a namespace rooted at its own cgroup: {seen}"
        assert seen["raw"] == f"0::/..{leaf.path}", f"/proc shows no namespace-relative path: {seen}"
        for key in ("sample", "placed_known", "placed_unknown", "event"):
            assert seen[key] == leaf.path, f"{key}: {seen[key]!r}, not {leaf.path} ({seen})"

        once = subprocess.run(
            _in_namespace(agent, sys.executable, "-m", "oomtop", "--once", "--json"),
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
        tasks = {t["pid"]: t for t in json.loads(once.stdout)["tasks"]}
        assert tasks[hog.pid]["cgroup"] == leaf.path, tasks.get(hog.pid)

        # A real kill seen by `oomtop events --json` running in the namespace.
        events = subprocess.Popen(
            _in_namespace(agent, sys.executable, "-m", "oomtop", "events", "--json", "--interval", "0.5"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(15)  # its start under emulation; a kill before it reads the log comes as history anyway
            trigger = tree.start_trigger(leaf, 96, name="trigger")
            deadline = time.monotonic() + 120
            found = None
            assert events.stdout is not None
            while found is None and time.monotonic() < deadline:
                ready, _, _ = select.select([events.stdout], [], [], 1.0)
                if not ready:
                    continue
                line = events.stdout.readline()
                if not line:
                    break
                doc = json.loads(line)
                if (doc.get("victim") or {}).get("pid") == trigger.pid:
                    found = doc
            assert found is not None, f"no event for the trigger {trigger.pid} within 120 s"
            assert found["task_cgroup"] == leaf.path, found
            assert found["oom_cgroup"] == leaf.path, found
            assert (found["pod"] or {}).get("uid") == pod.uid, found
        finally:
            events.kill()
            events.wait(timeout=10)
            for stream in (events.stdout, events.stderr):
                if stream is not None:
                    stream.close()
        assert os.path.exists(fs(agent))
