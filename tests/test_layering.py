"""The layering, as the import contracts in pyproject.toml state it: the collector, model, recording and headless
commands never import Textual, Rich or the UI; the UI never imports the collector.

Two checks of one list (the contract's own ``source_modules``, so nothing here is kept by hand): import-linter
reads every import statement, lazy ones inside functions included; and every module under those packages is
imported in a fresh interpreter in which importing textual or rich fails, which also catches an import that
import-linter cannot see (``importlib``, ``__import__``).
"""

from __future__ import annotations

import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import oomtop

REPO = Path(__file__).resolve().parent.parent


def _contracts() -> list[dict[str, object]]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        contracts: list[dict[str, object]] = tomllib.load(handle)["tool"]["importlinter"]["contracts"]
    return contracts


def headless_modules() -> list[str]:
    """Every module of the packages the Textual-free contract names (submodules found on disk)."""
    contract = next(c for c in _contracts() if "textual" in c["forbidden_modules"])  # type: ignore[operator]
    names: list[str] = []
    for source in contract["source_modules"]:  # type: ignore[attr-defined]
        names.append(source)
        module = __import__(source, fromlist=["_"])
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.walk_packages(module.__path__, source + ".")]
    return names


def test_the_contract_covers_the_headless_code() -> None:
    names = headless_modules()
    for expected in ("oomtop.collect.kmsg", "oomtop.collect.oomwatch", "oomtop.collect.wakeups", "oomtop.live",
                     "oomtop.source", "oomtop.explain", "oomtop.events_cli", "oomtop.record.reader",
                     "oomtop.record.writer", "oomtop.lab.runner", "oomtop.model", "oomtop.rank"):  # fmt: skip
        assert expected in names
    every = {info.name for info in pkgutil.walk_packages(oomtop.__path__, "oomtop.")}
    unruled = sorted(n for n in every if not n.startswith(("oomtop.ui", "oomtop.demo")) and n not in names)
    # what may import the UI: the CLI (it starts it) and the package entry points
    assert unruled == ["oomtop.__main__", "oomtop.cli"], unruled


def test_import_contracts_hold() -> None:
    """import-linter over the whole package (the same run .ci/run makes)."""
    linter = shutil.which("lint-imports")
    assert linter is not None, "lint-imports is not installed (it is in the test extra: pip install '.[test]')"
    result = subprocess.run([linter, "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("KEPT") == len(_contracts()), result.stdout


def test_headless_modules_import_without_textual() -> None:
    """Import every headless module in a fresh interpreter where importing textual or rich fails."""
    names = headless_modules()
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('textual', 'rich'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {names!r}:\n"
        "    __import__(name)\n"
        "assert not any(m.split('.')[0] in ('textual', 'rich') for m in sys.modules)\n"
        "print(len(sys.modules) > 0 and 'ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
