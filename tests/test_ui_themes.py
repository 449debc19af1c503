"""Themes: the shipped files, user themes, broken files (one line, default theme), the CLI flags, packaging."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from oomtop import cli
from oomtop.ui.themes import (
    DEFAULT_THEME,
    OOMTOP_COLORS,
    ThemeError,
    builtin_dir,
    discover,
    listing,
    load_file,
    resolve,
    to_textual,
    user_dir,
)
from tests.ui_fixtures import REPO, kube_host

GOOD = """
description = "mine"
dark = false
[colors]
primary = "#336699"
background = "#ffffff"
[oomtop]
crit = "#aa0000"
"""


def test_the_shipped_themes() -> None:
    assert builtin_dir().resolve() == (REPO / "themes").resolve()  # from a source tree, through the symlink
    catalogue = discover(user=Path("/nonexistent"))
    assert catalogue.errors == []
    assert {"dark", "light", "high-contrast", "colour-blind"} <= set(catalogue.themes)
    for spec in catalogue.themes.values():
        assert set(spec.oomtop) == set(OOMTOP_COLORS), spec.name  # every oomtop colour chosen, none defaulted
        theme = to_textual(spec)
        assert theme.name == spec.name and theme.primary
    assert catalogue.themes["light"].dark is False and catalogue.themes[DEFAULT_THEME].dark is True


def test_user_themes_come_from_the_config_dir_and_win(tmp_path: Path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "mine.toml").write_text(GOOD)
    (themes / "light.toml").write_text(GOOD.replace('"mine"', '"my light"'))
    assert user_dir({"OOMTOP_CONFIG_DIR": str(tmp_path)}) == themes
    assert user_dir({"HOME": "/home/x"}) == Path("/home/x/.config/oomtop/themes")
    assert user_dir({"XDG_CONFIG_HOME": "/cfg", "HOME": "/home/x"}) == Path("/cfg/oomtop/themes")
    catalogue = discover(user=themes)
    assert catalogue.themes["mine"].user and catalogue.themes["light"].description == "my light"
    assert resolve("mine", catalogue) == ("mine", None)
    text = listing(catalogue)
    assert text.splitlines()[0].startswith("dark") and "mine" in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("[colors\nprimary = 1", "not valid TOML"),
        ("[colors]\nbackground = '#000000'\n", "primary is required"),
        ("[colors]\nprimary = 'not-a-colour'\n", "is not a colour"),
        ("[colors]\nprimary = 12\n", "must be a colour string"),
        ("[colors]\nprimry = '#ffffff'\nprimary = '#ffffff'\n", "unknown colour 'primry'"),
        ("[oomtop]\nvictm = '#ffffff'\n[colors]\nprimary = '#ffffff'\n", "unknown colour 'victm'"),
        ("dark = 'yes'\n[colors]\nprimary = '#ffffff'\n", "dark must be true or false"),
        ("colours = 1\n", "unknown key 'colours'"),
    ],
)
def test_a_broken_theme_is_one_clear_line(tmp_path: Path, body: str, reason: str) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(body)
    with pytest.raises(ThemeError) as caught:
        load_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_a_broken_theme_file_falls_back_to_the_default(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_bytes(b"\xff\xfe not utf-8")
    catalogue = discover(user=tmp_path)
    name, problem = resolve("broken", catalogue)
    assert name == DEFAULT_THEME and problem is not None
    assert "theme 'broken' cannot be used, using 'dark'" in problem and "not UTF-8" in problem
    with pytest.raises(KeyError):
        resolve("no-such-theme", catalogue)


def _run_ui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str]) -> dict[str, object]:
    """cli.main as from a terminal, with the app's run() replaced: what theme and notices would it start with?"""
    from oomtop.ui import app as app_module

    started: dict[str, object] = {}

    def fake_run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        started["theme"] = self.theme
        started["notices"] = [n.text for n in self._startup_notices]
        started["source"] = type(self.source).__name__
        started["kmsg"] = self.source._kmsg_path
        self.source.close()

    monkeypatch.setattr(app_module.OomtopApp, "run", fake_run)
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setenv("OOMTOP_CONFIG_DIR", str(tmp_path / "config"))
    host = kube_host(tmp_path / "root", "v1")
    started["rc"] = cli.main(["--host-root", str(host.root), "--kmsg", "none", *argv])
    return started


def test_cli_starts_the_app_with_the_chosen_theme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    started = _run_ui(monkeypatch, tmp_path, ["--theme", "high-contrast"])
    assert started == {"theme": "high-contrast", "notices": [], "source": "LiveSource", "kmsg": None, "rc": 0}


def test_cli_broken_theme_one_line_on_stderr_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    themes = tmp_path / "config" / "themes"
    themes.mkdir(parents=True)
    (themes / "mine.toml").write_text("[colors]\nprimary = 'nope'\n")
    started = _run_ui(monkeypatch, tmp_path, ["--theme", "mine"])
    err = capsys.readouterr().err
    assert started["rc"] == 0 and started["theme"] == "dark"
    assert err.count("\n") == 1 and err.startswith("oomtop: theme 'mine' cannot be used, using 'dark': ")
    assert "Traceback" not in err
    assert started["notices"] and "is not a colour" in started["notices"][0]  # type: ignore[index]


def test_cli_unknown_theme_and_no_terminal_are_usage_errors(tmp_path: Path) -> None:
    env = {**os.environ, "OOMTOP_CONFIG_DIR": str(tmp_path)}
    unknown = subprocess.run(
        [sys.executable, "-m", "oomtop", "--theme", "nosuch"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "oomtop: no theme named 'nosuch' (oomtop --list-themes shows them)"
    )
    once = subprocess.run(
        [sys.executable, "-m", "oomtop", "--once", "--theme", "light"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert (
        once.returncode == 2 and once.stderr.strip() == "oomtop: --theme is for the live view; --once prints plain text"
    )
    host = kube_host(tmp_path / "root", "v1")
    piped = subprocess.run(
        [sys.executable, "-m", "oomtop", "--host-root", str(host.root), "--kmsg", "none"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert piped.returncode == 2 and "needs a terminal" in piped.stderr and "Traceback" not in piped.stderr


def test_list_themes(tmp_path: Path) -> None:
    themes = tmp_path / "themes"
    themes.mkdir()
    (themes / "mine.toml").write_text(GOOD)
    (themes / "bad.toml").write_text("nope = [")
    result = subprocess.run(
        [sys.executable, "-m", "oomtop", "--list-themes"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OOMTOP_CONFIG_DIR": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("dark") and "(default)" in lines[0]
    assert any(line.startswith("mine") and "user" in line for line in lines)
    assert any(line.startswith("broken: ") and "bad.toml" in line for line in lines)
    assert lines[-1] == f"user themes are read from {themes}/*.toml"


def test_themes_are_packaged_with_the_ui() -> None:
    """themes/ stays the one copy: oomtop/ui/theme_files links to it and is package data of oomtop.ui."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["include"] == ["oomtop*"]  # every package is still found
    assert "theme_files/*.toml" in config["package-data"]["oomtop.ui"]
    link = REPO / "oomtop" / "ui" / "theme_files"
    assert link.is_symlink() and link.resolve() == (REPO / "themes").resolve()
    assert len(list((REPO / "themes").glob("*.toml"))) >= 4
