"""End to end, as a person would: tmux runs ``python -m oomtop --host-root <fixture>`` in a 160x50 terminal,
keys are typed, and what ``tmux capture-pane`` shows is checked.

Needs tmux (marker ``tmux``; .ci/run installs it): without it the test skips with the reason, except under
``OOMTOP_REQUIRE_REAL_KERNEL=1`` (CI), where a skip would hide a broken UI and is a failure.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import tiers
from tests.ui_fixtures import REPO, kube_host

pytestmark = pytest.mark.tmux


class Terminal:
    """One tmux server of our own (its own socket), one 160x50 window."""

    def __init__(self, tmux: str, socket: str) -> None:
        self.tmux = tmux
        self.socket = socket

    def run(self, *args: str) -> str:
        result = subprocess.run([self.tmux, "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return result.stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Type, then pause as a person would: an Escape followed at once by another key reads as Alt+key."""
        self.run("send-keys", "-t", "ui", *(["-l"] if literal else []), *keys)
        time.sleep(0.3)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "ui")

    def wait_for(self, text: str, timeout_s: float = 20.0) -> str:
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; the screen was:\n{screen}")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    tiers.require("tmux")
    tmux = shutil.which("tmux")
    assert tmux is not None
    term = Terminal(tmux, f"oomtop-test-{uuid.uuid4().hex[:8]}")
    try:
        yield term
    finally:
        term.run("kill-server")


def test_oomtop_in_a_real_terminal(terminal: Terminal, tmp_path: Path) -> None:
    host = kube_host(tmp_path / "root", "v1")
    config = tmp_path / "config"  # no user themes of the machine's own
    # COLUMNS/LINES from the test runner would override the window's real size: a person's shell has none
    command = (
        f"cd {REPO} && unset COLUMNS LINES && OOMTOP_CONFIG_DIR={config} TERM=xterm-256color "
        f"{sys.executable} -m oomtop "
        f"--host-root {host.root} --kmsg none --interval 0.2; echo OOMTOP-EXIT $?; sleep 30"
    )
    terminal.run("new-session", "-d", "-s", "ui", "-x", "160", "-y", "50", command)
    screen = terminal.wait_for("2201 java")
    assert "fixture-node" in screen and "cgroup v1" in screen
    assert "2201 java" in screen and "← next victim of pod, container" in screen
    assert "92%" in screen and "no limit" in screen
    first_rows = [line for line in screen.splitlines() if "kube-system/cache-0" in line or "shop/web-0" in line]
    assert "cache-0" in first_rows[0]  # ranked: the Guaranteed pod at 78 % of its limit comes first

    terminal.keys("/")
    terminal.keys("postgres", literal=True)
    terminal.keys("Enter")
    screen = terminal.wait_for("filter: postgres")
    tree = [line[:105] for line in screen.splitlines()]
    assert any("3101 postgres" in line for line in tree) and not any("2201 java" in line for line in tree)

    terminal.keys("?")
    screen = terminal.wait_for("Ranking (kill likelihood")
    assert "nearest the limit that applies to it comes first" in screen
    terminal.keys("Escape")
    terminal.keys("/")
    terminal.keys("Escape")  # clears the filter
    screen = terminal.wait_for("2201 java")

    terminal.keys("q")
    screen = terminal.wait_for("OOMTOP-EXIT")
    assert "OOMTOP-EXIT 0" in screen
    assert "Traceback" not in screen
