"""``oomtop web`` as a person would use it: the server runs, Debian's chromium (headless, driven by Playwright
with ``executable_path``: no browser download) opens the page, the live view appears and answers keys.

The page draws with xterm.js on a canvas, so there is no text in its DOM to read: a script run before the page's
own catches the xterm ``Terminal`` that textual-serve's page makes (the first object given a ``terminal``
property) and the test reads its screen buffer, row by row, as ``tmux capture-pane`` does in test_ui_e2e.py.

Everything is on loopback: the server listens on 127.0.0.1 (port 0: the kernel picks a free one, the start line
says which), and any request of the page for another address (textual-serve's template asks Google Fonts for
Roboto Mono) is aborted before it leaves. Screenshots are kept in ``$OOMTOP_ARTEFACTS`` (default: the test's
tmp dir); the path is printed (``pytest -s``) and recorded as the test's ``screenshot`` property.

The browser tests need Debian's chromium (marker ``chromium``; .ci/run installs it): without it they skip with
the reason, except under ``OOMTOP_REQUIRE_REAL_KERNEL=1`` (CI), where the skip is a failure.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.ui_fixtures import REPO, kube_host

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_LINE = re.compile(r"^oomtop web: the live view on (http://127\.0\.0\.1:(\d+)/) ")

# Before textual.js runs: the first object to get a `terminal` property (textual-serve's page object, set to
# its xterm Terminal in its constructor) hands it to window.__oomtopTerminal and keeps it as its own property.
CATCH_TERMINAL = """
Object.defineProperty(Object.prototype, "terminal", {
  configurable: true,
  set(value) {
    delete Object.prototype.terminal;
    window.__oomtopTerminal = value;
    Object.defineProperty(this, "terminal", {value, writable: true, configurable: true, enumerable: true});
  },
});
"""
READ_SCREEN = """() => {
  const terminal = window.__oomtopTerminal;
  if (!terminal) return null;
  const buffer = terminal.buffer.active, rows = [];
  for (let y = 0; y < terminal.rows; y++) {
    const line = buffer.getLine(buffer.viewportY + y);
    rows.push(line ? line.translateToString(true) : "");
  }
  return rows.join("\\n");
}"""


def artefact_dir(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("OOMTOP_ARTEFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@dataclass
class WebServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    stderr: Path

    def sessions(self) -> list[psutil.Process]:
        """The oomtop processes serving browser tabs (children of the server; `sh -c` may stand between)."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        return [child for child in children if _is_oomtop(child)]


def _is_oomtop(process: psutil.Process) -> bool:
    try:
        cmdline = process.cmdline()
    except psutil.Error:
        return False
    return "-m" in cmdline and "oomtop" in cmdline and "web" not in cmdline


def _env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("TEXTUAL_DRIVER", "COLUMNS", "LINES")}
    env["OOMTOP_CONFIG_DIR"] = str(tmp_path / "config")  # no user themes of the machine's own
    return env


@contextmanager
def oomtop_web(tmp_path: Path, *flags: str) -> Iterator[WebServer]:
    """``oomtop web --listen 127.0.0.1:0 --kmsg none FLAGS`` until the block ends; then it and every session
    process it started are gone (SIGTERM, then SIGKILL for anything left)."""
    stderr = tmp_path / "web.stderr"
    with open(stderr, "wb") as err, open(tmp_path / "web.stdout", "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "oomtop", "web", "--listen", "127.0.0.1:0", "--kmsg", "none", *flags],
            cwd=REPO,
            env=_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    seen: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 30
        match = None
        while match is None:
            text = stderr.read_text(errors="replace")
            match = START_LINE.match(text)
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"oomtop web did not start (exit {process.returncode}): {text}")
            time.sleep(0.05)
        server = WebServer(process, match.group(1), int(match.group(2)), stderr)
        yield server
    finally:
        with suppress(psutil.NoSuchProcess):
            seen = psutil.Process(process.pid).children(recursive=True)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for child in seen:
            with suppress(psutil.NoSuchProcess):
                child.kill()


class Browser:
    """One headless chromium with one page; every request the page makes for another host is aborted."""

    def __init__(self, playwright: Any, origin: str) -> None:
        self.origin = origin
        self.blocked: list[str] = []
        self.browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1600, "height": 1000})
        self.page.route("**/*", self._only_loopback)
        self.page.add_init_script(CATCH_TERMINAL)

    def _only_loopback(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(self.origin):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self) -> None:
        self.page.goto(self.origin, wait_until="domcontentloaded")

    def screen(self) -> str:
        return self.page.evaluate(READ_SCREEN) or ""

    def wait_for(self, *texts: str, timeout_s: float = 30.0, match: Any = all) -> str:
        """The screen once it shows every one of ``texts`` (``match=any``: one of them)."""
        deadline = time.monotonic() + timeout_s
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if match(text in screen for text in texts):
                return screen
            time.sleep(0.1)
        found = "the page's terminal was never found" if self.page.evaluate("!window.__oomtopTerminal") else screen
        raise AssertionError(f"{texts!r} never appeared; the page showed:\n{found}")

    def wait_for_any(self, *texts: str) -> str:
        return self.wait_for(*texts, match=any)

    def press(self, key: str) -> None:
        self.page.focus(".xterm-helper-textarea")  # where xterm.js takes its keys; a click would reach the app
        self.page.keyboard.type(key)

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.browser.close()


@contextmanager
def browser(origin: str) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = Browser(playwright, origin)
        try:
            yield chromium
        finally:
            chromium.close()


def wait_until(condition: Any, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout_s} s")
        time.sleep(0.1)


@pytest.mark.chromium
def test_the_live_view_in_a_browser(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A fixture node's tree in the page, `?` opens the help, a screenshot is kept; closing the tab ends its
    oomtop."""
    host = kube_host(tmp_path / "root", "v2")
    with oomtop_web(tmp_path, "--host-root", str(host.root), "--interval", "0.2") as server:
        with browser(server.url) as chromium:
            chromium.open()
            # a frame may arrive in more than one write: wait for all of it, the header to the footer
            chromium.wait_for(
                "oomtop fixture-node",
                "cgroup v2",
                "shop/web-0",
                "2201 java",
                "← next victim of pod, container",
                "user.slice",
                "no OOM kills seen",
                "? Help",
            )
            assert len(server.sessions()) == 1  # this tab's own oomtop
            shot = chromium.screenshot(artefact_dir(tmp_path) / "oomtop-web.png")
            request.node.user_properties.append(("screenshot", str(shot)))
            print(f"\nscreenshot of oomtop web: {shot}")

            chromium.press("?")
            chromium.wait_for("Ranking (kill likelihood", "nearest the limit that applies to it comes first")
            help_shot = chromium.screenshot(artefact_dir(tmp_path) / "oomtop-web-help.png")
            print(f"screenshot of its help: {help_shot}")
            assert chromium.blocked and all(url.startswith("https://fonts.googleapis.com/") for url in chromium.blocked)
            chromium.page.close()  # the tab: its oomtop quits
            wait_until(lambda: not server.sessions(), "the tab's oomtop did not end when the tab closed")
        assert server.process.poll() is None  # the server outlives its sessions
    assert "Traceback" not in server.stderr.read_text()


@pytest.mark.chromium
def test_this_hosts_cgroups_in_a_browser(tmp_path: Path) -> None:
    """No --host-root: the page shows this machine (its name, its kernel, the cgroup this test runs in); SIGTERM
    with the tab still open ends the server and the tab's oomtop."""
    kernel = Path("/proc/sys/kernel/osrelease").read_text().strip()
    own = Path("/proc/self/cgroup").read_text().splitlines()
    top = next((part for line in own for part in line.split(":", 2)[2].split("/") if part), None)
    with oomtop_web(tmp_path) as server, browser(server.url) as chromium:
        chromium.open()
        screen = chromium.wait_for(f"oomtop {socket.gethostname()}", f"kernel {kernel}", "CGROUP / PROCESS")
        chromium.screenshot(artefact_dir(tmp_path) / "oomtop-web-this-host.png")
        if top is not None:  # in the root cgroup, there is no cgroup of our own to look for
            for key in ("/", top, "\r"):  # the filter: the row is shown wherever the tree would put it
                chromium.press(key)
            chromium.wait_for_any(f"▾ {top}", f"▸ {top}")  # a cgroup row (a process row has a pid)
        sessions = server.sessions()
        assert len(sessions) == 1, screen
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=15) == 0
        wait_until(lambda: not any(session.is_running() for session in sessions), "the session outlived it")


def test_the_start_line_and_what_it_refuses(tmp_path: Path) -> None:
    """One line with the URL and the warning; a bad --listen or a port in use is one line and exit 2."""
    from oomtop.ui.web import start_line

    assert "anyone who can reach this port sees this node" in start_line(("127.0.0.1", 9843), loopback=True)
    wide = start_line(("0.0.0.0", 9843), loopback=False)
    assert "http://0.0.0.0:9843/" in wide and "WARNING: 0.0.0.0 is not loopback" in wide and "no TLS" in wide
    assert "http://[::1]:9843/" in start_line(("::1", 9843), loopback=True)

    def web(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "oomtop", "web", "--kmsg", "none", *flags],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=_env(tmp_path),
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        cases = {
            "--listen 127.0.0.1": "oomtop web: --listen: expected HOST:PORT (for example 127.0.0.1:9843), "
            "got '127.0.0.1'",
            "--listen 127.0.0.1:http": "oomtop web: --listen: not a port number: 'http'",
            "--listen 127.0.0.1:70000": "oomtop web: --listen: port out of range (0-65535): 70000",
            f"--listen 127.0.0.1:{port}": f"oomtop web: cannot listen on 127.0.0.1:{port}: Address already in use",
            "--theme nosuch": "oomtop web: no theme named 'nosuch' (oomtop --list-themes shows them)",
            f"--host-root {tmp_path}/nowhere": f"oomtop: --host-root {tmp_path}/nowhere: no such directory",
        }
        for flags, line in cases.items():
            result = web(*flags.split())
            assert (result.returncode, result.stderr, result.stdout) == (2, line + "\n", ""), flags


def test_the_server_answers_its_own_pages_on_loopback_names_only(tmp_path: Path) -> None:
    """No browser: the page names the websocket at the address it was asked by; another Host (DNS rebinding)
    or another site's Origin on the websocket (a page open in the same browser) gets 403."""
    host = kube_host(tmp_path / "root", "v2")
    with oomtop_web(tmp_path, "--host-root", str(host.root)) as server:

        def get(path: str, **headers: str) -> tuple[int, str]:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
            try:
                connection.request("GET", path, headers=headers)
                response = connection.getresponse()
                return response.status, response.read().decode()
            finally:
                connection.close()

        status, page = get("/")
        assert status == 200 and f'data-session-websocket-url="ws://127.0.0.1:{server.port}/ws"' in page
        status, page = get("/", Host=f"localhost:{server.port}")
        assert status == 200 and f'data-session-websocket-url="ws://localhost:{server.port}/ws"' in page
        assert get("/", Host=f"attacker.example:{server.port}")[0] == 403
        assert get("/static/js/textual.js", Host="attacker.example")[0] == 403
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13"}
        upgrade["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
        assert get("/ws", Origin="http://attacker.example", **upgrade)[0] == 403
        assert not server.sessions()  # refused before any oomtop was started


def test_each_tab_runs_oomtop_with_the_flags_given(tmp_path: Path) -> None:
    """The session command: this Python, the source flags (before or after "web") and the theme, quoted."""
    from oomtop.cli import build_parser
    from oomtop.ui.web import session_command

    root = tmp_path / "a host root"
    argv = ["--theme", "light", "web", "--host-root", str(root), "--interval", "1", "--kmsg", "none"]
    args = build_parser().parse_args([*argv, "--redact-cmdline"])
    assert shlex.split(session_command(args)) == [
        sys.executable,
        *("-m", "oomtop", "--interval", "1.0", "--host-root", str(root), "--kmsg", "none", "--redact-cmdline"),
        *("--theme", "light"),
    ]


def test_loopback_names() -> None:
    from oomtop.ui.web import loopback_name

    for host in ("127.0.0.1:9843", "127.0.0.2", "localhost", "LOCALHOST.:80", "ui.localhost:1", "[::1]", "[::1]:9843"):
        assert loopback_name(host), host
    for host in ("attacker.example:9843", "localhost.attacker.example", "10.0.0.1:9843", "[::2]:9843", "0.0.0.0"):
        assert not loopback_name(host), host


def test_the_app_starts_under_a_web_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """textual-serve's child has pipes, not a terminal, and TEXTUAL_DRIVER set: that is a screen to draw on."""
    from oomtop import cli

    monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)
    monkeypatch.delenv("TEXTUAL_DRIVER", raising=False)
    assert not cli.on_a_terminal()
    monkeypatch.setenv("TEXTUAL_DRIVER", "textual.drivers.web_driver:WebDriver")
    assert cli.on_a_terminal()
