"""Theme files: TOML, read with :mod:`tomllib`, turned into Textual themes.

The shipped themes live in the repository's top-level ``themes/`` directory, installed as
``oomtop/ui/theme_files/`` (a symlink to ``themes/`` in the source tree).  User themes are read from
``$OOMTOP_CONFIG_DIR/themes`` (default ``$XDG_CONFIG_HOME/oomtop/themes``, i.e. ``~/.config/oomtop/themes``) and
win over a shipped theme of the same name.  A file that cannot be used costs one line of explanation
(:class:`ThemeError`), never a traceback.

A theme file::

    name = "dark"                 # optional: the file name without .toml
    description = "..."           # optional, shown by --list-themes
    dark = true
    [colors]                      # Textual's theme colours; primary is required
    primary = "#4ea1ff"
    background = "#101418"
    [oomtop]                      # oomtop's own: headroom levels, victim marks, the kill flash
    ok = "#5fd787"
    [variables]                   # optional: any other Textual theme variable
    block-cursor-background = "#264f78"
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textual.theme import Theme

DEFAULT_THEME = "dark"

TEXTUAL_COLORS = ("primary", "secondary", "warning", "error", "success", "accent", "foreground", "background",
                  "surface", "panel", "boost")  # fmt: skip

#: oomtop's own colours and what they paint (their defaults suit a dark background)
OOMTOP_COLORS: Mapping[str, str] = {
    "ok": "#4ebf71",  # headroom bar and percentage below 75 % of the limit
    "warn": "#e0b040",  # 75-90 %
    "crit": "#f0484d",  # 90 % and more, and OOM kill counts
    "free": "#5c6370",  # the unused part of a bar
    "muted": "#8b929e",  # secondary text: units, zero values, infrastructure rows
    "high": "#c678dd",  # the memory.high mark in a bar
    "victim": "#ff6b6b",  # the next victim of a cgroup
    "node-victim": "#ffa94d",  # the node-wide victim
    "match": "#3d5a80",  # background of rows that match the filter
    "flash-foreground": "#ffffff",  # the header line announcing a kill
    "flash-background": "#a4161a",
}


class ThemeError(Exception):
    """A theme that cannot be used; ``str()`` is one line naming the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        shown = str(path) if str(path).isprintable() else repr(str(path))  # a file name may hold a newline
        super().__init__(f"{shown}: {reason}")
        self.path = path


@dataclass(frozen=True, slots=True)
class ThemeSpec:
    name: str
    path: Path | None
    dark: bool
    colors: Mapping[str, str]
    oomtop: Mapping[str, str]
    variables: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    user: bool = False


def builtin_dir() -> Path:
    """The shipped themes: ``oomtop/ui/theme_files`` (a symlink to the repository's ``themes/`` in a source tree,
    the installed copy of it in a wheel)."""
    return Path(__file__).resolve().parent / "theme_files"


def user_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("OOMTOP_CONFIG_DIR"):
        return Path(env["OOMTOP_CONFIG_DIR"]) / "themes"
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "oomtop" / "themes"


MAX_THEME_BYTES = 1 << 20  # a theme is a few hundred bytes; a bigger file is not one
_SHOWN = 60  # characters of a bad value quoted in an error, which stays one short line


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "..."


def _check_colour(path: Path, section: str, key: str, value: Any) -> str:
    from textual.color import Color, ColorParseError

    if not isinstance(value, str):
        raise ThemeError(path, f'[{section}] {key} must be a colour string such as "#ff8800", not {_shown(value)}')
    try:
        Color.parse(value)
    except ColorParseError:
        raise ThemeError(path, f"[{section}] {_shown(key)} = {_shown(value)} is not a colour") from None
    return value


def _table(path: Path, document: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    table = document.get(section, {})
    if not isinstance(table, dict):
        raise ThemeError(path, f"[{section}] must be a table")
    return table


def load_file(path: Path, user: bool = False) -> ThemeSpec:
    """Parse and check one theme file; raises :class:`ThemeError` with a one-line reason."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_THEME_BYTES + 1)
    except OSError as error:
        raise ThemeError(path, f"cannot read it ({error.strerror or error})") from None
    if len(raw) > MAX_THEME_BYTES:
        raise ThemeError(path, f"larger than {MAX_THEME_BYTES} bytes: not a theme")
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ThemeError(path, "not UTF-8 text") from None
    except tomllib.TOMLDecodeError as error:
        raise ThemeError(path, f"not valid TOML ({' '.join(str(error).split())})") from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise ThemeError(path, "not a theme: nested too deep") from None
    unknown = sorted(set(document) - {"name", "description", "dark", "colors", "oomtop", "variables"})
    if unknown:
        raise ThemeError(
            path,
            f"unknown key {_shown(unknown[0])} (expected name, description, dark, [colors], [oomtop], [variables])",
        )
    name = document.get("name", path.stem)
    if not isinstance(name, str) or not name or not name.isprintable() or any(c.isspace() for c in name):
        raise ThemeError(path, f"name must be one word, got {_shown(name)}")
    dark = document.get("dark", True)
    if not isinstance(dark, bool):
        raise ThemeError(path, f"dark must be true or false, got {_shown(dark)}")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise ThemeError(path, "description must be a string")
    colors = _table(path, document, "colors")
    for key in colors:
        if key not in TEXTUAL_COLORS:
            raise ThemeError(path, f"[colors] has unknown colour {_shown(key)} (known: {', '.join(TEXTUAL_COLORS)})")
    if "primary" not in colors:
        raise ThemeError(path, "[colors] primary is required")
    own = _table(path, document, "oomtop")
    for key in own:
        if key not in OOMTOP_COLORS:
            raise ThemeError(path, f"[oomtop] has unknown colour {_shown(key)} (known: {', '.join(OOMTOP_COLORS)})")
    variables = _table(path, document, "variables")
    for key, value in variables.items():
        if not isinstance(value, str):
            raise ThemeError(path, f"[variables] {_shown(key)} must be a string")
    return ThemeSpec(
        name=name.strip(),
        path=path,
        dark=dark,
        description=description,
        user=user,
        colors={k: _check_colour(path, "colors", k, v) for k, v in colors.items()},
        oomtop={k: _check_colour(path, "oomtop", k, v) for k, v in own.items()},
        variables=dict(variables),
    )


@dataclass(slots=True)
class Catalogue:
    """Every usable theme by name, and one line per file that could not be used."""

    themes: dict[str, ThemeSpec] = field(default_factory=dict)
    errors: list[ThemeError] = field(default_factory=list)


def discover(builtin: Path | None = None, user: Path | None = None) -> Catalogue:
    """Shipped themes, then user themes (a user theme replaces a shipped one of the same name)."""
    catalogue = Catalogue()
    for directory, is_user in ((builtin or builtin_dir(), False), (user or user_dir(), True)):
        try:
            paths = sorted(directory.glob("*.toml"))
        except OSError:
            continue
        for path in paths:
            try:
                spec = load_file(path, user=is_user)
            except ThemeError as error:
                catalogue.errors.append(error)
                continue
            catalogue.themes[spec.name] = spec
    return catalogue


def variable_defaults() -> dict[str, str]:
    """oomtop's CSS variables for themes that do not set them (Textual's own themes)."""
    return {f"oomtop-{key}": value for key, value in OOMTOP_COLORS.items()}


def to_textual(spec: ThemeSpec) -> Theme:
    """The Textual ``Theme`` for a spec (imported here so ``--list-themes`` stays light)."""
    from textual.theme import Theme

    variables = {**{f"oomtop-{k}": v for k, v in spec.oomtop.items()}, **spec.variables}
    colors = {key: spec.colors.get(key) for key in TEXTUAL_COLORS}
    return Theme(name=spec.name, dark=spec.dark, variables=variables, **colors)  # type: ignore[arg-type]  # str | None values; load_file requires primary


def resolve(name: str | None, catalogue: Catalogue) -> tuple[str, str | None]:
    """The theme to use for ``--theme name`` and, when it cannot be used, one line saying why.

    A broken file of that name falls back to the default; an unknown name is the caller's usage error.
    """
    if name is None:
        name = DEFAULT_THEME
    if name in catalogue.themes:
        return name, None
    broken = [str(error) for error in catalogue.errors if error.path.stem == name]
    if broken:
        return DEFAULT_THEME, f"theme {name!r} cannot be used, using {DEFAULT_THEME!r}: {broken[0]}"
    raise KeyError(name)


def listing(catalogue: Catalogue) -> str:
    """The ``--list-themes`` text: one theme a line, then the files that could not be used."""
    lines = []
    for name in sorted(catalogue.themes, key=lambda n: (n != DEFAULT_THEME, n)):
        spec = catalogue.themes[name]
        where = "user" if spec.user else "shipped"
        default = " (default)" if name == DEFAULT_THEME else ""
        lines.append(f"{name:<16} {where:<8} {spec.description}{default}".rstrip())
    for error in catalogue.errors:
        lines.append(f"broken: {error}")
    return "\n".join(lines) + "\n"
