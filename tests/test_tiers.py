"""The one skip-or-fail rule of tests/tiers.py, and that every tier marker is registered and applied."""

from __future__ import annotations

import pytest

from tests import tiers


def _missing() -> str:
    return "not on this machine"


def test_a_missing_tier_skips_with_its_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tiers.TIERS, "tmux", ("tmux", _missing))
    monkeypatch.delenv(tiers.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs tmux: not on this machine"):
        tiers.require("tmux")


@pytest.mark.parametrize("value", ["1", "yes"])
def test_a_missing_tier_fails_where_it_is_required(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setitem(tiers.TIERS, "runc", ("runc", _missing))
    monkeypatch.setenv(tiers.REQUIRE_ENV, value)
    with pytest.raises(pytest.fail.Exception, match=r"needs runc: not on this machine .*is set, so this is a failure"):
        tiers.require("runc")


def test_a_present_tier_lets_the_test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tiers.TIERS, "kmsg", ("a readable /dev/kmsg", lambda: None))
    monkeypatch.setenv(tiers.REQUIRE_ENV, "1")
    tiers.require("kmsg")  # neither skips nor fails


def test_every_tier_is_a_registered_marker(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":", 1)[0] for line in pytestconfig.getini("markers")}
    assert set(tiers.TIERS) <= registered, set(tiers.TIERS) - registered
    assert "--strict-markers" in pytestconfig.getini("addopts")


@pytest.mark.parametrize(("required", "outcome"), [("", "skipped"), ("1", "errors")])
def test_the_conftest_hook_applies_a_marker(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: str, outcome: str
) -> None:
    """A marked test on a machine without its tier: skipped, or an error (its setup failed) on CI."""
    monkeypatch.setitem(tiers.TIERS, "tmux", ("tmux", _missing))
    monkeypatch.setenv(tiers.REQUIRE_ENV, required)
    pytester.makeconftest("from tests.conftest import pytest_runtest_setup  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    tmux: needs tmux\n")
    pytester.makepyfile("import pytest\n\n@pytest.mark.tmux\ndef test_marked():\n    pass\n")
    result = pytester.runpytest_inprocess("-rs", "-p", "no:textual-snapshot", "-p", "no:syrupy")
    result.assert_outcomes(**{outcome: 1})
    result.stdout.fnmatch_lines(["*needs tmux: not on this machine*"])
