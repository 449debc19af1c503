"""Shared fixtures and the tier markers (see :mod:`tests.tiers`).

Every marker named in ``tests.tiers.TIERS`` is applied here before its test runs: a tier this machine lacks
skips the test with the reason, or fails it under ``OOMTOP_REQUIRE_REAL_KERNEL=1`` (CI).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.tiers import TIERS, require
from tests.ui_fixtures import SNAPSHOT_DIR

pytest_plugins = ["pytester"]

# Property tests: "ci" (the default) keeps every test's generated cases few enough for CI's 20 minutes;
# "nightly" (HYPOTHESIS_PROFILE=nightly) runs twenty times as many.  No deadline: a loaded 2-core CI machine
# must not turn a slow example into a failure (tests never assert on wall time).
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("nightly", max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_runtest_setup(item: pytest.Item) -> None:
    wanted = [marker.name for marker in item.iter_markers() if marker.name in TIERS]
    if wanted:
        require(*dict.fromkeys(wanted))


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Event times in UTC whatever the machine's zone, so snapshots match everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def snapshot(snapshot: Any) -> Any:
    """pytest-textual-snapshot's ``snap_compare`` stores SVGs beside the test file (syrupy's ``__snapshots__``
    dir); this override makes them live in the repository's top-level ``snapshots/`` instead."""
    from pytest_textual_snapshot import SVGImageExtension

    class TopLevelSVG(SVGImageExtension):  # type: ignore[misc]
        @classmethod
        def dirname(cls, *, test_location: Any) -> str:
            # snapshots/<test module>/<test>.svg: syrupy relates a file to its test by that directory name
            return str(SNAPSHOT_DIR / test_location.basename)

    class Redirect:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def use_extension(self, extension_class: Any = None) -> Any:
            return self._inner.use_extension(TopLevelSVG)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    return Redirect(snapshot)
