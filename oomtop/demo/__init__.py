"""The recording shipped with oomtop: the lab's ``seed`` scenario, so ``oomtop replay --demo`` works anywhere.

Made with ``python -m oomtop.lab.make_demo`` (root and the cgroup memory controller needed to make it; none to
watch it).
"""

from __future__ import annotations

import os
import tempfile
from importlib import resources
from typing import cast

DEMO_FILE = "seed.oomrec"


def recording_path() -> str:
    """A filesystem path to the shipped recording (copied out first where the package is not plain files)."""
    resource = resources.files(__name__) / DEMO_FILE
    if isinstance(resource, os.PathLike) and os.path.isfile(resource):
        return cast(str, os.fspath(resource))  # a PathLike of unknown AnyStr; a package's files are str paths
    with tempfile.NamedTemporaryFile(prefix="oomtop-demo-", suffix=".oomrec", delete=False) as handle:
        handle.write(resource.read_bytes())
    return handle.name
