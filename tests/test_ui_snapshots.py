"""Snapshot tests of the whole screen (SVGs in the top-level snapshots/ directory).

Deterministic: Samples from fixture hosts read by the real Collector with a fixed clock, event times in UTC,
a fixed "now" for the sample age, no cursor blink.  ``pytest --snapshot-update`` rewrites them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from oomtop.model import Sample
from tests.ui_fixtures import (
    CID_WEB,
    FIXED_TIME,
    collect,
    global_event,
    growing,
    hostile_host,
    kill_event,
    kube_host,
    make_app,
    notice_no_root,
    plain_host,
    settle,
)

APP_CONTAINER = ("container", "container", CID_WEB)


def cursor_on(key: Any, count: int | None = None):  # type: ignore[no-untyped-def]
    async def run_before(pilot: Any) -> None:
        await settle(pilot, count)
        if key is not None:
            assert pilot.app.process_tree.move_to(key), f"no visible row {key} to put the cursor on"
        await pilot.pause()

    return run_before


def java_key(sample: Sample) -> tuple[object, ...]:
    return ("task", 2201, next(t.start_ticks for t in sample.tasks if t.pid == 2201))


@pytest.fixture
def v1(tmp_path: Path) -> Sample:
    return collect(kube_host(tmp_path, "v1"))


@pytest.fixture
def v2(tmp_path: Path) -> Sample:
    return collect(kube_host(tmp_path, "v2"))


@pytest.mark.usefixtures("utc")
def test_kubernetes_v1_node_160x50(snap_compare: Any, v1: Sample) -> None:
    """Pods of every QoS class on cgroup v1, the app container selected: growth, time to limit, implied request."""
    app = make_app([*growing(v1), kill_event(v1, historical=True)])
    assert snap_compare(app, terminal_size=(160, 50), run_before=cursor_on(APP_CONTAINER))


@pytest.mark.usefixtures("utc")
def test_kubernetes_v2_node_160x50(snap_compare: Any, v2: Sample) -> None:
    """cgroup v2: memory.high in the bars, PSI; the java process selected (memcg vs kernel score, QoS)."""
    app = make_app([*growing(v2), kill_event(v2, historical=True), global_event()])
    assert snap_compare(app, terminal_size=(160, 50), run_before=cursor_on(java_key(v2)))


@pytest.mark.usefixtures("utc")
def test_plain_host_without_kubernetes_160x50(snap_compare: Any, tmp_path: Path) -> None:
    app = make_app([collect(plain_host(tmp_path))])
    assert snap_compare(app, terminal_size=(160, 50), run_before=cursor_on(("cgroup", "/system.slice/nginx.service")))


@pytest.mark.usefixtures("utc")
def test_kubernetes_node_80x24(snap_compare: Any, v1: Sample) -> None:
    app = make_app([*growing(v1), kill_event(v1, historical=True)])
    assert snap_compare(app, terminal_size=(80, 24), run_before=cursor_on(APP_CONTAINER))


@pytest.mark.usefixtures("utc")
def test_light_theme(snap_compare: Any, v2: Sample) -> None:
    app = make_app([*growing(v2), kill_event(v2, historical=True)], theme="light")
    assert snap_compare(app, terminal_size=(160, 50), run_before=cursor_on(APP_CONTAINER))


@pytest.mark.usefixtures("utc")
def test_high_contrast_theme(snap_compare: Any, v2: Sample) -> None:
    app = make_app([*growing(v2), kill_event(v2, historical=True)], theme="high-contrast")
    assert snap_compare(app, terminal_size=(160, 50), run_before=cursor_on(APP_CONTAINER))


@pytest.mark.usefixtures("utc")
def test_colour_blind_theme(snap_compare: Any, v2: Sample) -> None:
    app = make_app([*growing(v2), kill_event(v2, historical=True)], theme="colour-blind")
    assert snap_compare(app, terminal_size=(120, 40), run_before=cursor_on(APP_CONTAINER))


@pytest.mark.usefixtures("utc")
def test_event_selected_with_its_explanation(snap_compare: Any, v1: Sample) -> None:
    """e focuses the kill list, enter opens the newest kill: candidates with scores, predicted or not."""
    app = make_app([v1, kill_event(v1, historical=True), kill_event(v1, predicted=2202, at=FIXED_TIME - 5)])
    assert snap_compare(app, press=["e", "enter"], terminal_size=(160, 50), run_before=cursor_on(None))


@pytest.mark.usefixtures("utc")
def test_kill_flashed_in_the_header(snap_compare: Any, v1: Sample) -> None:
    app = make_app([v1, kill_event(v1, at=FIXED_TIME - 1)])
    assert snap_compare(app, terminal_size=(120, 30), run_before=cursor_on(None))


@pytest.mark.usefixtures("utc")
def test_active_filter(snap_compare: Any, v1: Sample) -> None:
    app = make_app([v1])
    assert snap_compare(app, press=["slash", *"postgres", "enter"], terminal_size=(160, 50), run_before=cursor_on(None))


@pytest.mark.usefixtures("utc")
def test_no_root_notice(snap_compare: Any, v1: Sample) -> None:
    warned = Sample(
        **{
            **{f: getattr(v1, f) for f in v1.__dataclass_fields__},
            "warnings": ("12 processes could not be read from /proc (permission denied; run as root to see them)",),
        }
    )
    app = make_app([notice_no_root(), warned])
    assert snap_compare(app, terminal_size=(120, 30), run_before=cursor_on(None))


@pytest.mark.usefixtures("utc")
def test_hostile_process_names(snap_compare: Any, tmp_path: Path) -> None:
    """Markup, a screen-clearing escape and invalid UTF-8 in process, pod and container names: shown literally."""
    sample = collect(hostile_host(tmp_path))
    key = ("task", 6102, 1002)
    app = make_app([sample])
    assert snap_compare(app, terminal_size=(160, 40), run_before=cursor_on(key))


@pytest.mark.usefixtures("utc")
def test_help_screen(snap_compare: Any, v1: Sample) -> None:
    app = make_app([v1])
    assert snap_compare(app, press=["question_mark"], terminal_size=(120, 40), run_before=cursor_on(None))


@pytest.mark.usefixtures("utc")
def test_paused_with_samples_pending(snap_compare: Any, v1: Sample) -> None:
    later = growing(v1, steps=3)

    async def run_before(pilot: Any) -> None:
        await settle(pilot, 1)
        await pilot.press("space")
        for sample in later[1:]:
            pilot.app.source.push(sample)
        await settle(pilot, 4)

    app = make_app([later[0]])
    assert snap_compare(app, terminal_size=(120, 30), run_before=run_before)
