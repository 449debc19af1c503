"""Names laid out by terminal cells: wide (CJK), zero-width, combining and emoji characters keep every column.

A process, pod or container name comes from anyone; its length in code points is not its width on screen.  The
cell functions of :mod:`oomtop.text` (headless: no Rich) are held here to Rich's ``cell_len`` and ``Text``
truncation (what the UI and Textual's compositor measure with), and every view that lays names out in columns
(``oomtop --once``, ``oomtop explain``'s ranking, the UI's rows) is checked with such names, Rich's measure
being the oracle.
"""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.cells import cell_len, get_character_cell_size
from rich.text import Text

from oomtop.explain import render_text
from oomtop.lab.describe import why_lines
from oomtop.model import CgroupKind, KernelCandidate, KilledTask, OomEvent, Sample
from oomtop.rank import predict
from oomtop.report import View, render_tree
from oomtop.text import NARROW_TO_WIDE, cell_width, char_width, fit, pad, printable, truncate
from oomtop.ui.cells import ColumnLayout, Palette, render_row
from oomtop.ui.rows import Ranking, Row, RowKind, TreeState, build_rows
from tests.test_lab_check import POD, make_world
from tests.ui_fixtures import FIXED_TIME, make_app, settle, synthetic_sample

ZWJ, VS16 = "\u200d", "\ufe0f"

# ------------------------------------------------------------------------------------------------ names

_SEQUENCES = (
    "👨‍👩‍👧‍👦",  # family: a ZWJ sequence
    "🏳️‍🌈",  # rainbow flag: VS16 and ZWJ
    "🧑🏿‍🚀",  # skin tone and ZWJ
    "👁️‍🗨️",
    "🐻‍❄️",
    "❤️",  # text-presentation heart made an emoji: one cell becomes two
    "☀️",
    "1️⃣",  # keycap: VS16 and an enclosing mark
    "#️⃣",
    "👍🏽",
    "🇯🇵",  # a flag: two regional indicators
    "e\u0301",  # e and a combining acute
    "\U0001fae8",  # 🫨, Unicode 15: newer than Python 3.11's data
    "ハンカク",  # halfwidth katakana
)
_PIECES = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),  # CJK ideographs
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),  # Hangul syllables
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),  # fullwidth forms
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F64F),  # emoji (and the skin-tone modifiers)
    st.characters(categories=["Mn", "Me", "Mc"]),  # combining marks, spacing ones too
    st.sampled_from(["\u200b", "\u200c", ZWJ, "\u2060", "\ufeff", "\u00ad", VS16, "\ufe0e", "\u034f"]),
    st.sampled_from(["\x1b", "\t", "\x07", "\u202e", "\u2028"]),  # escaped by printable() before measuring
    st.sampled_from(_SEQUENCES),
)
NAMES = st.lists(_PIECES, max_size=20).map("".join)


# ----------------------------------------------------------------------------------- agreeing with Rich


def test_char_width_agrees_with_rich_on_every_code_point_this_python_knows() -> None:
    """Every assigned code point (in this Python's Unicode data) takes the cells Rich gives it.  Where they may
    differ is only in code points this Python does not know yet: combining marks of newer Unicode versions
    (Rich's table is Unicode 17) and code points unassigned in both."""
    disagree = [
        code
        for code in range(0x110000)
        if not 0xD800 <= code <= 0xDFFF and char_width(chr(code)) != get_character_cell_size(chr(code))
    ]
    assert [f"U+{code:04X}" for code in disagree if unicodedata.category(chr(code)) != "Cn"] == []
    # newer emoji this Python may not know are wide all the same (🫨 🩷 🛜 🪼)
    for emoji in "\U0001fae8\U0001fa77\U0001f6dc\U0001fabc":
        assert char_width(emoji) == cell_len(emoji) == 2


def test_an_emoji_presentation_selector_widens_what_rich_widens() -> None:
    """U+FE0F makes a text-presentation emoji (❤, ☀, the keycap digits) two cells, and nothing else wider."""
    widened = {
        chr(code)
        for code in range(0x20000)
        if not 0xD800 <= code <= 0xDFFF and cell_len(chr(code)) == 1 and cell_len(chr(code) + VS16) == 2
    }
    assert widened == NARROW_TO_WIDE
    assert all(cell_width(char + VS16) == 2 for char in widened)


@given(NAMES)
def test_cell_width_is_richs_cell_len(name: str) -> None:
    assert cell_width(name) == cell_len(name)
    assert cell_width(printable(name)) == cell_len(printable(name))


@pytest.mark.parametrize(
    ("name", "cells"),
    [
        ("postgres", 8),
        ("数据库", 6),  # CJK: two cells each
        ("ｶﾀｶﾅ", 4),  # halfwidth katakana: one each
        ("e\u0301te\u0301", 3),  # combining acutes take none
        ("👨‍👩‍👧", 2),  # a ZWJ family is one glyph
        ("❤️x", 3),  # VS16 widens the heart
        ("❤x", 2),
        ("🇯🇵", 2),
        ("👍🏽", 2),  # the skin tone colours the thumb
    ],
)
def test_cell_width_of_names(name: str, cells: int) -> None:
    assert cell_width(name) == cells == cell_len(name)


def test_printable_keeps_a_joiner_only_between_pictographs() -> None:
    """Rich measures a joiner as swallowing the next character; between letters a terminal draws both, so such a
    joiner is shown as an escape (and measured as the text it is)."""
    assert printable("👨‍👩‍👧") == "👨‍👩‍👧"
    assert printable("🏳️‍🌈") == "🏳️‍🌈"  # the selector between flag and joiner
    assert printable("a\u200d中") == "a\\u200d中"
    assert printable("\u200d中") == "\\u200d中"
    assert printable("👨\u200d") == "👨\\u200d"
    assert cell_width(printable("a\u200d中")) == 9 == cell_len(printable("a\u200d中"))
    assert printable("line\u2028break") == "line\\u2028break"


# ------------------------------------------------------------------------------------------ fit and cut


@given(NAMES, st.integers(min_value=0, max_value=40))
def test_fit_takes_exactly_the_cells_asked_for(name: str, width: int) -> None:
    text = printable(name)
    for align in ("left", "right"):
        fitted = fit(text, width, align)
        assert cell_width(fitted) == cell_len(fitted) == width
    assert cell_len(truncate(text, width)) == min(width, cell_len(text))
    assert cell_len(pad(text, width)) == cell_len(pad(text, width, "right")) == max(width, cell_len(text))


@given(NAMES, st.integers(min_value=1, max_value=40))
def test_fit_cuts_as_the_ui_does_and_never_inside_a_character(name: str, width: int) -> None:
    text = printable(name)
    fitted = fit(text, width)
    ui = Text(text, end="")
    ui.truncate(width, overflow="ellipsis", pad=True)
    assert fitted == ui.plain  # `oomtop --once` and the screen show the same cut
    if cell_len(text) <= width:
        assert fitted == text + " " * (width - cell_len(text))
        return
    assert fitted.endswith("…")
    body = fitted[:-1]
    kept = body if text.startswith(body) else body[:-1]  # a space holds the place of a wide char cut off
    assert text.startswith(kept) and body[len(kept) :] in ("", " ")
    rest = text[len(kept) :]
    # the cut falls before a character that takes cells: marks, selectors and joined emoji stay with their base
    assert rest and get_character_cell_size(rest[0]) > 0 and not kept.endswith(ZWJ)
    if body != kept:  # the padding space only where the next character is wide and did not fit
        assert cell_len(kept) == width - 2 and get_character_cell_size(rest[0]) == 2


def test_a_wide_character_at_the_edge_leaves_a_space() -> None:
    assert fit("数据库服务器", 6) == "数据 …"
    assert fit("数据库服务器", 7) == "数据库…"
    assert fit("ab数据", 4) == "ab …"
    assert fit("e\u0301e\u0301e\u0301e\u0301", 3) == "e\u0301e\u0301…"
    assert fit("数据", 1) == "…" and fit("数据", 0) == ""
    assert fit("数", 4, "right") == "  数"


# ------------------------------------------------------------------------------------------ the views


def _named(base: Sample, names: list[str]) -> Sample:
    """``base`` with its processes, pods and containers named from ``names`` (in turn)."""
    pick = iter(names * (len(base.tasks) + len(base.cgroups) + 1))
    tasks = tuple(replace(task, comm=next(pick)) for task in base.tasks)
    pods = {}
    for cgroup in base.cgroups:
        pod = cgroup.identity.pod
        if pod is not None and pod.uid not in pods:
            pods[pod.uid] = replace(pod, name=next(pick), namespace=next(pick) or "ns")
    cgroups = []
    for cgroup in base.cgroups:
        identity = cgroup.identity
        pod = pods.get(identity.pod.uid) if identity.pod is not None else None
        container = identity.container
        if container is not None and identity.kind is CgroupKind.CONTAINER:
            container = replace(container, name=next(pick) or None)
        label = pod.label if identity.kind is CgroupKind.POD and pod is not None else identity.label
        cgroups.append(replace(cgroup, identity=replace(identity, pod=pod, container=container, label=label)))
    return replace(base, tasks=tasks, cgroups=tuple(cgroups))


def _benign(sample: Sample) -> Sample:
    return _named(sample, ["x"])


BASE = synthetic_sample(0, pods=3, containers=2, procs=9)


def _index_at_cell(line: str, cells: int) -> int | None:
    """The index of the character that starts at cell ``cells`` (after any zero-width ones before it), by Rich's
    measure; None when a character straddles that cell (a column edge drawn through a wide character)."""
    found = None
    for index in range(len(line) + 1):
        measured = cell_len(line[:index])
        if measured == cells:
            found = index
        elif measured > cells:
            break
    return found


@given(st.lists(NAMES, min_size=1, max_size=6), st.sampled_from([80, 120, 160]))
def test_once_keeps_every_column_whatever_the_names(names: list[str], width: int) -> None:
    """``oomtop --once``: the name column is exactly its width in cells on every line; a cgroup line is as wide as
    the heading and its figures sit under it; a process line's figures start right after the name column."""
    lines = render_tree(_named(BASE, names), width).splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("CGROUP / PROCESS"))
    heading = lines[head]
    name_width = max(30, width - 70)
    benign = render_tree(_benign(BASE), width).splitlines()[head + 1 :]
    rows = lines[head + 1 :]
    assert len(rows) == len(benign) == len(BASE.cgroups) + len(BASE.tasks)
    for line, plain in zip(rows, benign, strict=True):
        at = _index_at_cell(line, name_width)
        assert at is not None, line
        figures = line[at:]
        assert figures == plain[name_width:]  # the same figures, from the same cell on
        if figures.startswith(" rss "):
            continue
        assert cell_len(line) == cell_len(heading) == name_width + cell_len(figures)


@given(st.lists(NAMES, min_size=1, max_size=6), st.sampled_from([60, 92, 160]))
def test_ui_rows_keep_every_column_whatever_the_names(names: list[str], width: int) -> None:
    """A tree row is exactly the tree's width, its name column exactly its width, and everything after it is what
    the row shows with a plain name."""
    layout = ColumnLayout.for_width(width)
    palette = Palette({})
    rows = build_rows(Ranking(View.of(_named(BASE, names))), TreeState(), expand_all=True)
    plain_rows = build_rows(Ranking(View.of(_benign(BASE))), TreeState(), expand_all=True)
    assert len(rows) == len(plain_rows)
    for row, plain_row in zip(rows, plain_rows, strict=True):
        line, plain = render_row(row, layout, palette), render_row(plain_row, layout, palette)
        assert (
            line.cells == width == cell_len(line.plain) == sum(segment.cell_length for segment in line.segments(None))
        )
        at = _index_at_cell(line.plain, layout.name_width)
        assert at is not None, line.plain
        assert line.plain[at:] == plain.plain[layout.name_width :]


def test_a_victim_mark_naming_a_wide_domain_is_shown_whole_or_shortened() -> None:
    """The mark after a process names the domains it would die in (a cgroup's label, CJK maybe): the longest
    variant that fits in cells is shown, never one cut off at the screen's edge."""
    task = BASE.tasks[0]
    layout = ColumnLayout.for_width(120)
    for length in range(1, 40):
        domain = "数" * length
        variants = ("  ← next victim of " + domain, "  ← next victim", "  ← victim")
        row = Row(("task", task.pid, task.start_ticks), RowKind.TASK, 1, f"{task.pid} x", task=task,
                  victim_of=(domain,), score=1)  # fmt: skip
        line = render_row(row, layout, Palette({})).plain
        mark = line[line.index("  ←") :].split("  oom_score")[0].rstrip()
        assert mark in variants, (length, mark)
        if cell_len(variants[0]) <= layout.width - cell_len(line[: line.index("  ←")]):
            assert mark == variants[0]


def _explained(comms: list[str]) -> OomEvent:
    candidates = tuple(
        KernelCandidate(
            pid=100 + i,
            comm=comm,
            oom_score_adj=0,
            rss_pages=500 + i,
            uid=0,
            tgid=100 + i,
            total_vm_pages=1000,
            pgtables_bytes=8192,
            swapents=0,
        )
        for i, comm in enumerate(comms)
    )
    victim = KilledTask(pid=100 + len(comms) - 1, comm=comms[-1])
    return OomEvent(
        kind="memcg", time=FIXED_TIME, kernel_time_s=None, oom_cgroup="/kubepods/x", task_cgroup="/kubepods/x",
        victim=victim, killed=(victim,), candidates=candidates, source=("kmsg",), limit_bytes=1 << 30,
        usage_bytes=1 << 30,
    )  # fmt: skip


@given(st.lists(NAMES, min_size=1, max_size=5))
def test_explain_ranking_keeps_its_columns(comms: list[str]) -> None:
    """``oomtop explain``: the comm column is measured in cells, so every line of the ranking (its numbers right-
    aligned after the comm) is equally wide."""
    lines = render_text([_explained(comms)]).splitlines()
    head = next(i for i, line in enumerate(lines) if "points" in line and "comm" in line)
    table = lines[head : head + 1 + len(comms)]
    assert all(line.startswith("    ") for line in table)
    assert len({cell_len(line) for line in table}) == 1, table


def test_the_labs_why_lines_keep_their_columns(tmp_path: Path) -> None:
    """``oomtop lab``'s candidates (comm, pid, container, adj reason, points) line up whatever the comm."""
    world = make_world(tmp_path)
    comms = ["数据库服务器", "e\u0301te\u0301", "👨‍👩‍👧", "pause"]
    tasks = tuple(replace(task, comm=comms[i % len(comms)]) for i, task in enumerate(world.sample.tasks))
    sample = replace(world.sample, tasks=tasks)
    lines = why_lines(predict(sample).by_domain[POD], sample, world.node)[1:]
    assert len(lines) == 4
    for column in (" pid ", " rss ", " points "):
        assert len({cell_len(line[: line.index(column)]) for line in lines}) == 1, (column, lines)


# ---------------------------------------------------------------------------------------------- the app

WIDE_NAMES = ["数据库服务器进程", "e\u0301te\u0301-cafe\u0301", "👨‍👩‍👧 family", "🏳️‍🌈", "ｶﾀｶﾅ", "postgres", "❤️sidecar"]
WIDE = _named(BASE, WIDE_NAMES)


async def test_the_app_paints_wide_names_within_their_cells() -> None:
    """On screen (headless), every tree line is the tree's width and its USAGE figures end in one column."""
    app = make_app([WIDE])
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        tree = app.process_tree
        layout = tree.layout_now
        usage_end = layout.name_width + 1 + 7  # the cell after USAGE's last letter
        lines = ["".join(segment.text for segment in tree.render_line(y)) for y in range(len(tree.rows) + 1)]
    assert lines[0][usage_end - 5 : usage_end] == "USAGE"
    assert any(cell_len(line) != len(line) for line in lines)  # wide names are on screen
    for line in lines:
        assert cell_len(line) == layout.width, line
        at = _index_at_cell(line, layout.name_width)
        assert at is not None and line[at] == " ", line
        assert line[at + 7] != " " and line[at + 8] == " ", line  # a right-aligned figure fills the column


@pytest.mark.usefixtures("utc")
def test_wide_names_snapshot_120x30(snap_compare: Any) -> None:
    """CJK, combining, emoji (ZWJ, VS16) names in processes, pods and containers: the columns stay put."""

    async def run_before(pilot: Any) -> None:
        await settle(pilot)

    assert snap_compare(make_app([WIDE]), terminal_size=(120, 30), run_before=run_before)
