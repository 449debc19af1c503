"""``oomtop lab`` on a real cgroup v2 kernel: the systemd naming, the memory controller enabled down the tree, and
kubelet's real negative oom_score_adj values (the guest is real root: -997 for Guaranteed, -998 for sandboxes).

Each scenario runs headless as a user would; the lab itself checks every kill against oomtop's prediction and
exits non-zero on a wrong prediction or a missed kill, and it must leave no cgroup behind.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

LAB_PARENT = "/sys/fs/cgroup/oomtop-lab"


def run_lab(*args: str, timeout: float = 600.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oomtop", "lab", *args, "--headless"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("scenario", ["seed", "qos"])
def test_lab_scenario_on_v2_with_systemd_naming(scenario: str, record_property) -> None:  # type: ignore[no-untyped-def]
    result = run_lab(scenario, "--driver", "systemd")
    output = result.stdout + result.stderr
    record_property("lab_output", output[-4000:])
    assert result.returncode == 0, output[-4000:]
    assert "wrong" in output and " 0 wrong" in output and " 0 missed" in output, output[-4000:]
    assert "does not let the lab lower oom_score_adj" not in output, "real root must get the real negative adj"
    if scenario == "qos":
        assert "-997" in output or "-998" in output, output[-4000:]
    assert not os.path.exists(LAB_PARENT), f"{LAB_PARENT} left behind"
