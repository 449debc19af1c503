"""The collector and the model must work without Textual (headless nodes, `--once`, recording)."""

from __future__ import annotations

import subprocess
import sys

HEADLESS_MODULES = [
    "oomtop.model",
    "oomtop.rank",
    "oomtop.report",
    "oomtop.text",
    "oomtop.cli",
    "oomtop.collect.collector",
    "oomtop.collect.cgroupfs",
    "oomtop.collect.procfs",
    "oomtop.collect.identity",
    "oomtop.collect.node",
    "oomtop.collect.poller",
    "oomtop.collect.files",
    "oomtop.collect.inotify",
]


def test_collector_imports_without_textual() -> None:
    """Import every headless module in a fresh interpreter where importing textual or rich fails."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('textual', 'rich'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {HEADLESS_MODULES!r}:\n"
        "    __import__(name)\n"
        "assert not any(m.split('.')[0] in ('textual', 'rich') for m in sys.modules)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
