"""The UI's pure parts: the rows rank exactly as ``--once`` does, history and growth, bars, hostile text."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

from oomtop import report
from oomtop.model import Cgroup, Sample, Task
from oomtop.report import View
from oomtop.text import printable
from oomtop.ui.cells import BAR_CELLS, ColumnLayout, Line, Palette, headroom_bar, render_row
from oomtop.ui.details import details_text
from oomtop.ui.events import kill_list_row
from oomtop.ui.history import History, time_to_limit
from oomtop.ui.rows import (
    OTHER_KEY,
    Ranking,
    RowKind,
    SortKey,
    TreeState,
    build_rows,
    cgroup_key,
    task_key,
    visible_rows,
)
from tests.ui_fixtures import (
    CID_WEB,
    MiB,
    collect,
    hostile_host,
    kill_event,
    kube_host,
    plain_host,
    synthetic_sample,
)


def once_order(sample: Sample) -> list[str]:
    """What ``oomtop --once`` prints, as cgroup paths and pids, in its order."""
    view = View.of(sample)
    order: list[str] = []
    for _depth, item in report._walk(view, view.by_path["/"], 0):
        order.append(item.path if isinstance(item, Cgroup) else f"pid {item.pid}")
    return order


def ui_order(sample: Sample, sort: SortKey = SortKey.KILL) -> list[str]:
    rows = build_rows(Ranking(View.of(sample)), TreeState(sort=sort), expand_all=True)
    return [
        row.cgroup.path if row.cgroup is not None else f"pid {row.task.pid}"  # type: ignore[union-attr]
        for row in rows
        if row.kind is not RowKind.GROUP
    ]


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_rows_rank_exactly_as_once_on_a_kubernetes_node(tmp_path: Path, layout: str) -> None:
    sample = collect(kube_host(tmp_path, layout))
    assert ui_order(sample) == once_order(sample)


def test_rows_rank_exactly_as_once_on_a_plain_host_and_a_big_node(tmp_path: Path) -> None:
    sample = collect(plain_host(tmp_path))
    assert ui_order(sample) == once_order(sample)
    for tick in range(3):
        big = synthetic_sample(tick)
        assert ui_order(big) == once_order(big)


def test_the_nodes_other_cgroups_sit_in_their_own_branch(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v1"))
    rows = build_rows(Ranking(View.of(sample)), TreeState())
    group = next(row for row in rows if row.key == OTHER_KEY)
    members = [row for row in rows if row.parent == OTHER_KEY]
    assert [row.cgroup.path for row in members] == ["/system.slice", "/user.slice"]  # type: ignore[union-attr]
    assert group.group_size == 2 and group.group_usage_bytes == 450 * MiB
    system = next(row for row in members if row.cgroup.path == "/system.slice")  # type: ignore[union-attr]
    assert system.expandable and not system.expanded  # the node's own services start closed
    assert not any(row.task is not None and row.task.comm == "kubelet" for row in rows)
    plain = build_rows(Ranking(View.of(collect(plain_host(tmp_path / "plain")))), TreeState())
    assert not any(row.kind is RowKind.GROUP for row in plain)  # no Kubernetes: no grouping


def test_a_kubepods_below_the_root_stays_out_of_the_other_cgroups(tmp_path: Path) -> None:
    """kubelet in a container (a kind node): its kubepods lives under that container's cgroup, and its pods
    are still shown in place, not folded into "other cgroups"."""
    host = plain_host(tmp_path)
    node = "/system.slice/docker-" + "5e" * 32 + ".scope"
    pod = f"{node}/kubepods/burstable/pod{'1b2c3d4e-0000-4000-8000-00000000abcd'}"
    host.add_cgroup(node, usage=300 * MiB)
    host.add_cgroup(f"{node}/kubepods", usage=250 * MiB)
    host.add_cgroup(f"{node}/kubepods/burstable", usage=250 * MiB)
    host.add_cgroup(pod, usage=200 * MiB, limit=256 * MiB)
    host.add_cgroup(f"{pod}/{'7a' * 32}", usage=190 * MiB, limit=256 * MiB)
    rows = build_rows(Ranking(View.of(collect(host))), TreeState(), expand_all=True)
    by_path = {row.cgroup.path: row for row in rows if row.cgroup is not None}
    assert by_path["/system.slice"].parent == cgroup_key(by_path["/"].cgroup)  # type: ignore[arg-type]
    assert by_path["/user.slice"].parent == OTHER_KEY
    assert by_path[pod].cgroup.identity.kind.name == "POD"  # type: ignore[union-attr]
    assert not any(
        row.parent == OTHER_KEY and row.cgroup is not None and row.cgroup.path == "/system.slice" for row in rows
    )


def test_other_sort_keys_reorder_siblings_only(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v1"))
    kill = ui_order(sample)
    for sort in SortKey:
        assert sorted(ui_order(sample, sort)) == sorted(kill)
    by_usage = build_rows(Ranking(View.of(sample)), TreeState(sort=SortKey.USAGE), expand_all=True)
    pods = [
        row.cgroup.identity.label
        for row in by_usage  # type: ignore[union-attr]
        if row.cgroup is not None and row.cgroup.path.startswith("/kubepods/burstable/pod") and row.depth == 3
    ]
    assert pods == ["shop/web-0", "data/postgres-0"]
    by_name = build_rows(Ranking(View.of(sample)), TreeState(sort=SortKey.NAME), expand_all=True)
    qos = [row.label for row in by_name if row.depth == 2 and row.cgroup is not None]
    assert qos == sorted(qos, key=str.casefold)
    assert [s.value for s in SortKey] == ["kill likelihood", "usage", "limit", "name", "growth"]
    assert SortKey.GROWTH.next() is SortKey.KILL


def test_filter_keeps_matches_with_their_ancestors(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v1"))
    ranking = Ranking(View.of(sample))
    rows = build_rows(ranking, TreeState(filter_text="JAVA"))
    labels = [row.label for row in rows]
    assert labels == ["node", "kubepods", "burstable", "shop/web-0", f"app ({CID_WEB[:12]})", "2201 java"]
    assert [row.matched for row in rows] == [False] * 5 + [True]
    pod = build_rows(ranking, TreeState(filter_text="postgres-0"))
    assert [row.label for row in pod][-3:] == [f"postgres ({'5d' * 6})", "3101 postgres", "3102 postgres"]
    kubelet = build_rows(ranking, TreeState(filter_text="kubelet"))  # inside the collapsed system.slice
    assert [row.label for row in kubelet][-2:] == ["kubelet.service", "801 kubelet"]
    assert build_rows(ranking, TreeState(filter_text="no such thing")) == []


def test_lazy_rows_are_the_rows_built_in_full(tmp_path: Path) -> None:
    """The tree gets process rows built on demand: the same rows, in any access order, and the same keys."""
    sample = collect(kube_host(tmp_path, "v1"))
    ranking = Ranking(View.of(sample))
    for state in (
        TreeState(),
        TreeState(filter_text="java"),
        TreeState(filter_text="kube"),
        TreeState(expanded={OTHER_KEY: False}),
        TreeState(sort=SortKey.NAME),
    ):
        full = build_rows(ranking, state)
        lazy = visible_rows(ranking, state)
        assert lazy.keys() == [row.key for row in full]
        assert [lazy[i] for i in reversed(range(len(lazy)))] == full[::-1]
        assert lazy[2:5] == full[2:5] and list(lazy) == full
    assert list(visible_rows(ranking, TreeState(), expand_all=True)) == build_rows(ranking, TreeState(), True)
    assert any(row.kind is RowKind.TASK for row in full)


def test_keys_are_identities_not_positions(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v1"))
    by_path = {c.path: c for c in sample.cgroups}
    pod = next(c for c in sample.cgroups if c.identity.kind.value == "pod" and c.identity.pod.name == "web-0")
    assert cgroup_key(pod) == ("pod", pod.identity.pod.uid)  # type: ignore[union-attr]
    container = next(c for p, c in by_path.items() if p.endswith(CID_WEB))
    assert cgroup_key(container) == ("container", "container", CID_WEB)
    assert cgroup_key(by_path["/system.slice"]) == ("cgroup", "/system.slice")
    task = next(t for t in sample.tasks if t.pid == 2201)
    assert task_key(task) == ("task", 2201, task.start_ticks)


def test_victim_marks_match_the_prediction(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v1"))
    rows = {row.key: row for row in build_rows(Ranking(View.of(sample)), TreeState(), expand_all=True)}
    java = next(row for row in rows.values() if row.task is not None and row.task.pid == 2201)
    assert java.victim_of == ("pod", "container") and not java.node_victim and java.score == 1716
    python = next(row for row in rows.values() if row.task is not None and row.task.pid == 4101)
    assert python.node_victim and python.victim_of == () and python.score is None


def _task(rss: int) -> Task:
    return Task(
        pid=9,
        start_ticks=1,
        comm="x",
        cmdline="",
        uid=0,
        cgroup="/",
        rss_anon_bytes=rss,
        rss_file_bytes=0,
        rss_shmem_bytes=0,
        swap_bytes=0,
        pgtables_bytes=0,
        oom_score=0,
        oom_score_adj=0,
    )


def test_history_growth_and_time_to_limit() -> None:
    base = synthetic_sample(0, pods=1, containers=1, procs=1)
    history = History(span_s=60, resolution_s=1.0)
    for second in range(0, 31):
        task = _task((100 + 2 * second) * MiB)
        history.record(replace(base, tasks=(task,), monotonic=1000.0 + second, time=second))
    key = task_key(_task(0))
    assert history.growth(key) == pytest.approx(2 * MiB)
    values = history.values(key)
    assert values[0] == 100 * MiB and values[-1] == 160 * MiB and len(values) == 31
    assert time_to_limit(160 * MiB, 200 * MiB, 2 * MiB) == pytest.approx(20.0)
    assert time_to_limit(160 * MiB, None, 2 * MiB) is None
    assert time_to_limit(160 * MiB, 200 * MiB, -1.0) is None
    history.record(replace(base, tasks=(), monotonic=1040.0))  # the process exited: forgotten
    assert history.values(key) == [] and history.growth(key) is None


def test_history_keeps_one_point_per_second_at_ten_hertz() -> None:
    base = synthetic_sample(0, pods=1, containers=1, procs=1)
    history = History(span_s=10, resolution_s=1.0)
    for tenth in range(0, 300):
        history.record(replace(base, tasks=(_task(tenth * MiB),), monotonic=1000.0 + tenth / 10))
    assert len(history.values(task_key(_task(0)))) <= 11
    assert history.values(task_key(_task(0)))[-1] == 299 * MiB


def _bar(usage: int, working_set: int, limit: int | None, high: int | None) -> str:
    line = Line()
    headroom_bar(line, usage, working_set, limit, high, Palette({}))
    return line.plain


def test_headroom_bar_shows_working_set_cache_high_and_no_limit() -> None:
    bar = _bar(usage=90 * MiB, working_set=50 * MiB, limit=100 * MiB, high=80 * MiB)
    assert bar == "█████▒▒▒│·  90%"  # the high mark sits in the cell where 80 % begins
    assert _bar(usage=90, working_set=90, limit=None, high=None).strip() == "no limit"
    full = _bar(usage=300, working_set=300, limit=100, high=None)
    assert full.startswith("█" * BAR_CELLS) and full.endswith("300%")


def test_rows_render_to_exactly_the_width(tmp_path: Path) -> None:
    sample = collect(kube_host(tmp_path, "v2"))
    rows = build_rows(Ranking(View.of(sample)), TreeState(), expand_all=True)
    for width in (60, 80, 106, 160):
        layout = ColumnLayout.for_width(width)
        for row in rows:
            line = render_row(row, layout, Palette({}))
            assert line.cells == width == sum(segment.cell_length for segment in line.segments(None))


def test_lines_split_and_cut_as_rich_text_does() -> None:
    """A Line gives the segments Rich's Text would: the screen (and every snapshot) stays the same to the byte."""
    red, bold, base = Style(color="red"), Style(bold=True), Style(bgcolor="blue")
    pieces: list[tuple[str, Style | None]] = [
        ("ab", None),
        ("cd", None),
        ("ef", red),
        ("gh", red),
        ("ij", None),
        ("宽字", bold),
        ("kl", None),
    ]
    for width, ellipsis in ((40, False), (11, False), (11, True), (9, True), (8, True), (13, True), (12, False)):
        line, text = Line(), Text(no_wrap=True, end="")
        for piece, style in pieces:
            line.add(piece, None if style is None else base + style)
            text.append(piece, style)
        line.fit(width, ellipsis)
        text.truncate(width, overflow="ellipsis" if ellipsis else None, pad=True)
        expected = Strip(list(text.render(Console())), width).apply_style(base)
        assert line.cells == width
        assert list(Strip(line.segments(base), width)) == list(expected), (width, ellipsis)


# --------------------------------------------------------------------------------------------- hostile text


def _spans(line: Line) -> list[tuple[int, int, Style]]:
    """(start, end, style) in characters of each styled piece."""
    spans, at = [], 0
    for text, style in zip(line.texts, line.styles, strict=True):
        if style is not None:
            spans.append((at, at + len(text), style))
        at += len(text)
    return spans


def _benign(sample: Sample) -> Sample:
    """The same node with every process name replaced by as many plain letters as its printable form has."""
    tasks = tuple(replace(t, comm="A" * len(printable(t.comm)), cmdline="c") for t in sample.tasks)
    return replace(sample, tasks=tasks)


def test_hostile_names_change_nothing_but_their_own_cell(tmp_path: Path) -> None:
    sample = collect(hostile_host(tmp_path))
    comms = {t.comm for t in sample.tasks}
    assert "\x1b[2Jwipe" in comms and "bad\\xff\\xfeutf8" in comms  # the reader turned bytes into \xNN
    palette = Palette({"victim": Style(color="red", bold=True), "dim": Style(dim=True), "pod": Style(bold=True)})
    layout = ColumnLayout.for_width(140)
    hostile = build_rows(Ranking(View.of(sample)), TreeState(), expand_all=True)
    benign = build_rows(Ranking(View.of(_benign(sample))), TreeState(), expand_all=True)
    assert len(hostile) == len(benign)
    seen = set()
    for evil_row, good_row in zip(hostile, benign, strict=True):
        evil, good = render_row(evil_row, layout, palette), render_row(good_row, layout, palette)
        assert "\x1b" not in evil.plain and "\x07" not in evil.plain
        assert not any(style is not None and style.link for style in evil.styles)
        if evil_row.task is None:
            continue
        seen.add(evil_row.task.comm)
        label = printable(evil_row.task.comm)
        assert label in evil.plain  # shown literally: "[red]evil[/red]", "\\x1b[2Jwipe", ...
        start = evil.plain.index(label)
        # outside the label's own cells, the hostile row is the benign row, character for character and style
        # for style
        assert evil.plain[:start] == good.plain[:start]
        assert evil.plain[start + len(label) :] == good.plain[start + len(label) :]
        assert [span for span in _spans(evil) if span[1] <= start or span[0] >= start + len(label)] == [
            span for span in _spans(good) if span[1] <= start or span[0] >= start + len(label)
        ]
    assert seen == set(comms)


def test_hostile_pod_names_are_plain_in_labels_details_and_events(tmp_path: Path) -> None:
    sample = collect(hostile_host(tmp_path))
    ranking = Ranking(View.of(sample))
    rows = build_rows(ranking, TreeState(), expand_all=True)
    pod = next(row for row in rows if row.cgroup is not None and row.cgroup.identity.kind.value == "pod")
    assert pod.label == "[bold]ns/[red]pod\\x1b]8;;x\\x07"
    history = History()
    history.record(sample)
    for row in rows:
        text = details_text(row, ranking, history)
        assert "\x1b" not in text.plain and "\x07" not in text.plain
        assert not any("link" in str(span.style) for span in text.spans)
    victim = next(t for t in sample.tasks if t.comm.startswith("\x1b"))
    container = next(c for c in sample.cgroups if c.identity.kind.value == "container")
    event = replace(
        kill_event(collect(kube_host(tmp_path / "k", "v1"))),
        victim=replace(kill_event(collect(kube_host(tmp_path / "k2", "v1"))).victim, comm=victim.comm),
        pod=container.identity.pod,
        container=container.identity.container,
    )
    line = kill_list_row(event)
    assert "\\x1b[2Jwipe" in line.plain and "\x1b" not in line.plain
    assert "[red]pod\\x1b]8;;x\\x07" in line.plain


def test_a_kill_is_named_by_pod_and_container_even_without_names(tmp_path: Path) -> None:
    """Without node metadata a kill still names its pod (uid) and container (short id), as the tree does,
    not its 150-character cgroup path; a named pod keeps ns/name, and a kill outside pods its path."""
    from oomtop.model import ContainerRef, PodRef, QosClass
    from oomtop.ui.header import event_where

    event = kill_event(collect(kube_host(tmp_path, "v1")))
    uid, cid = "11111111-2222-4333-8444-555555555555", "ab" * 32
    bare = replace(event, pod=PodRef(uid, QosClass.BURSTABLE), container=ContainerRef(cid, None))
    assert event_where(bare) == f"pod {uid} {'ab' * 6}"
    assert event_where(replace(bare, container=None)) == f"pod {uid}"
    named = replace(bare, pod=PodRef(uid, QosClass.BURSTABLE, "web-0", "shop"))
    assert event_where(named) == "shop/web-0 abababababab"
    assert event_where(replace(named, container=ContainerRef(cid, "containerd", "nginx"))) == "shop/web-0 nginx"
    plain = replace(event, pod=None, container=None, task_cgroup="/system.slice/x.service")
    assert event_where(plain) == "/system.slice/x.service"
    assert kill_list_row(bare).plain.split("  ")[1] == f"pod {uid} {'ab' * 6}"


def test_fast_sparkline_draws_what_textuals_draws() -> None:
    """The details sparkline computes each bar once; its segments are Textual's own, bar for bar."""
    import random

    from rich.color import Color
    from textual.renderables.sparkline import Sparkline as TextualSparkline

    from oomtop.ui.sparkline import FastSparklineRenderable

    rng = random.Random(7)
    console = Console(width=120)
    low, high = Color.from_rgb(10, 200, 30), Color.from_rgb(220, 20, 20)
    for _ in range(60):
        data = [rng.choice([rng.random() * 2**30, 5.0]) for _ in range(rng.choice([0, 1, 2, 3, 7, 50, 300, 301]))]
        width, height = rng.choice([1, 5, 37, 56, 80]), rng.choice([1, 2, 3])
        options = console.options.update(width=width)
        ours = FastSparklineRenderable(data, width=width, height=height, min_color=low, max_color=high)
        theirs = TextualSparkline(data, width=width, height=height, min_color=low, max_color=high)
        assert list(ours.__rich_console__(console, options)) == list(theirs.__rich_console__(console, options))


def test_history_holds_its_span_and_a_tenth_at_most() -> None:
    """Memory flat once the span has passed (bench_soak: the live view's RSS must not grow after 5 minutes): a
    series never holds more than its span plus the trim slack, for cgroups and processes alike."""
    base = synthetic_sample(0, pods=1, containers=1, procs=1)
    history = History(span_s=100, resolution_s=1.0)
    task = _task(0)
    longest = 0
    for second in range(0, 400):
        history.record(replace(base, tasks=(replace(task, rss_anon_bytes=second),), monotonic=1000.0 + second))
        longest = max(longest, *(len(series.times) for series in history._series.values()))
    assert longest == 100 + 10
    assert len(history.values(task_key(task))) == 100
