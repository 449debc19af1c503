"""The selected row in full: every memory figure, usage over the last minutes, growth and time to the limit,
and for Kubernetes containers the QoS class with expected vs actual ``oom_score_adj`` and the request it implies.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Region, Size
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Sparkline, Static

from oomtop.model import Cgroup, CgroupKind, QosClass, Task
from oomtop.rank import (
    KUBELET_BURSTABLE_MAX_ADJ,
    KUBELET_BURSTABLE_MIN_ADJ,
    badness_points,
    memcg_totalpages,
    swap_allowance_bytes,
)
from oomtop.report import qos_adj
from oomtop.text import format_bytes, printable
from oomtop.ui.history import History, time_to_limit
from oomtop.ui.rows import Ranking, Row, RowKey, RowKind, cgroup_key, task_key
from oomtop.ui.sparkline import UsageSparkline


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    return f"{seconds / 86400:.1f} days"


def rate(bytes_per_s: float) -> str:
    sign = "+" if bytes_per_s >= 0 else "-"
    return f"{sign}{format_bytes(int(abs(bytes_per_s)))}/s"


def _field(text: Text, name: str, value: str, style: str = "") -> None:
    text.append(f"{name:<10}", "dim")
    text.append(value, style)
    text.append("\n")


def _growth_lines(text: Text, key: RowKey, usage: int, domain: Cgroup | None, domain_key: RowKey | None,
                  history: History, whose: str) -> None:  # fmt: skip
    growth = history.growth(key)
    if growth is None:
        _field(text, "growth", "not enough history yet", "dim")
        return
    value = rate(growth)
    if domain is None or domain.limit_bytes is None:
        _field(text, "growth", f"{value} · no limit above it")
        return
    domain_growth = history.growth(domain_key) if domain_key is not None else growth
    left = time_to_limit(domain.usage_bytes, domain.limit_bytes, domain_growth)
    if left is None:
        _field(text, "growth", f"{value} · {whose} limit {format_bytes(domain.limit_bytes)} not approached")
    elif domain_key == key:
        _field(text, "growth", f"{value} · limit in {duration(left)} at this rate", "bold" if left < 60 else "")
    else:
        _field(
            text,
            "growth",
            f"{value} · {whose} limit in {duration(left)} (it grows {rate(domain_growth or 0)})",
            "bold" if left < 60 else "",
        )


def _qos_lines(text: Text, ranking: Ranking, container: Cgroup | None, actual_adj: int | None) -> None:
    """kubelet's adj for the class next to the one the tasks carry, and the request a Burstable adj implies."""
    if container is None or container.identity.qos is None or container.identity.kind is not CgroupKind.CONTAINER:
        return
    qos = container.identity.qos
    adj = qos_adj(ranking.view, container, qos)
    actual = actual_adj if actual_adj is not None else adj["actual"]
    if qos is QosClass.BURSTABLE:
        expected = f"{KUBELET_BURSTABLE_MIN_ADJ}..{KUBELET_BURSTABLE_MAX_ADJ} (1000 - 1000 x request / node memory)"
    else:
        expected = str(adj["expected"])
    _field(text, "QoS", qos.value, "bold")
    _field(text, "adj", f"expected {expected}, actual {'-' if actual is None else actual}")
    implied = adj["implied_request_bytes"]
    if qos is QosClass.BURSTABLE and implied:
        low, high = implied
        _field(
            text,
            "request",
            f"implied {format_bytes(low)} - {format_bytes(high)} ({adj['kubelet']})",  # from the adj line above
        )
        if_sidecar = adj["implied_request_bytes_if_sidecar"]
        if if_sidecar and if_sidecar != implied:  # its adj may have been capped at its pod's highest
            _field(text, "sidecar", f"if one: up to {format_bytes(if_sidecar[1])} (capped adj)", "dim")
    elif (
        qos is not QosClass.BURSTABLE
        and actual is not None
        and adj["expected"] is not None
        and actual != adj["expected"]
    ):
        _field(text, "request", f"adj {actual} is not kubelet's {adj['expected']} for {qos.value}", "bold")


def cgroup_details(row: Row, ranking: Ranking, history: History) -> Text:
    cgroup = row.cgroup
    assert cgroup is not None
    view = ranking.view
    identity = cgroup.identity
    text = Text(end="")
    text.append(row.label + "\n", "bold")
    limit = cgroup.limit_bytes
    if limit is None:
        domain_path = view.prediction.nearest_limit.get(cgroup.path)
        above = (
            f"; {printable(view.by_path[domain_path].identity.label or domain_path)}'s "
            f"{format_bytes(view.effective_limit(cgroup.path))} applies"
            if domain_path
            else ""
        )
        _field(text, "usage", f"{format_bytes(cgroup.usage_bytes)} · no limit{above}")
    else:
        allowance = swap_allowance_bytes(cgroup, view.sample.node.swap_total_bytes)
        _field(
            text,
            "usage",
            f"{format_bytes(cgroup.usage_bytes)} of {format_bytes(limit)} ({cgroup.usage_bytes / limit * 100:.0f}%)"
            # the kernel sizes this OOM domain (and so the adj weight) as limit + the swap it may use
            + (f" + {format_bytes(allowance)} swap" if allowance else ""),
        )
    _field(
        text,
        "wset",
        f"{format_bytes(cgroup.working_set_bytes)}  high {format_bytes(cgroup.high_bytes, 'none')}"
        f"  peak {format_bytes(cgroup.peak_bytes)}",
    )
    _field(
        text,
        "charge",
        f"anon {format_bytes(cgroup.anon_bytes)}  file {format_bytes(cgroup.file_bytes)} "
        f"(inactive {format_bytes(cgroup.inactive_file_bytes)})  shmem "
        f"{format_bytes(cgroup.shmem_bytes)}",
    )
    swap = format_bytes(cgroup.swap_bytes)
    if cgroup.swap_limit_bytes is not None:
        swap += f" of {format_bytes(cgroup.swap_limit_bytes)}"
    _field(text, "swap", swap)
    local = "" if cgroup.oom_kills_local is None else f" ({cgroup.oom_kills_local} here)"
    group = "" if cgroup.oom_group is None else f"  oom.group {'on' if cgroup.oom_group else 'off'}"
    _field(text, "ooms", f"kills {cgroup.oom_kills}{local}  events {cgroup.oom_events}  failcnt "
                         f"{'-' if cgroup.failcnt is None else cgroup.failcnt}{group}"
                         f"{'  UNDER OOM' if cgroup.under_oom else ''}",
           "bold" if cgroup.oom_kills or cgroup.under_oom else "")  # fmt: skip
    if cgroup.pressure is not None:
        p = cgroup.pressure
        _field(
            text,
            "pressure",
            f"some {p.some_avg10:.2f}/{p.some_avg60:.2f}/{p.some_avg300:.2f}  full "
            f"{p.full_avg10:.2f}/{p.full_avg60:.2f}/{p.full_avg300:.2f} % (10s/60s/300s)",
        )
    verdict = view.prediction.by_domain.get(cgroup.path)
    if verdict is not None:
        if verdict.victim is None:
            _field(text, "victim", "nothing killable here")
        else:
            score = next((c.score for c in verdict.candidates if c.task.key == verdict.victim.key), None)
            line = f"{verdict.victim.pid} {printable(verdict.victim.comm)} (score {score})"
            if verdict.group_path is not None:
                line += f" with all {len(verdict.group_victims)} of oom.group {printable(verdict.group_path)}"
            _field(text, "victim", line, "bold")
    _field(text, "procs", f"{len(view.tasks_by_cgroup.get(cgroup.path, ()))} here")
    domain_path = view.prediction.nearest_limit.get(cgroup.path)
    domain = view.by_path.get(domain_path) if domain_path else None
    whose = "its" if domain_path == cgroup.path else "the ancestor's"
    _growth_lines(text, row.key, cgroup.usage_bytes, domain, cgroup_key(domain) if domain else None, history, whose)
    tasks = view.tasks_by_cgroup.get(cgroup.path, ())
    _qos_lines(text, ranking, cgroup, max((t.oom_score_adj for t in tasks), default=None))
    kind = identity.kind.value
    if identity.container is not None:
        kind += f" {printable(identity.container.id[:12])}"
        if identity.container.runtime:
            kind += f" ({identity.container.runtime})"
    if identity.pod is not None:
        pod = identity.pod
        if pod.name and pod.namespace:
            kind += f" · pod {printable(pod.label)} uid {printable(pod.uid)}"
        else:
            kind += f" · {printable(pod.label)}"  # "pod <uid>"
    _field(text, "kind", kind)
    _field(text, "path", printable(cgroup.path))
    text.rstrip()
    return text


def _points_line(text: Text, task: Task, domain: Cgroup, node_swap_total: int, page_size: int) -> None:
    """The kernel's points of a task that holds swap, term by term: its swap entries count as much as its rss,
    and its domain's size (limit + swap allowance) sets what one adj point weighs."""
    totalpages = memcg_totalpages(domain, node_swap_total, page_size)
    points = None if totalpages is None else badness_points(task, totalpages, page_size)
    if totalpages is None or points is None:
        return
    _field(
        text,
        "points",
        f"{points} = rss {task.rss_bytes // page_size} + swap {task.swap_bytes // page_size} + page tables "
        f"{task.pgtables_bytes // page_size} + adj {task.oom_score_adj} x {totalpages // 1000} (pages)",
    )


def task_details(row: Row, ranking: Ranking, history: History) -> Text:
    task = row.task
    assert task is not None
    view = ranking.view
    text = Text(end="")
    text.append(row.label + "\n", "bold")
    _field(text, "cmdline", printable(task.cmdline) or "-")
    owner = view.by_path.get(task.cgroup)
    _field(
        text,
        "rss",
        f"{format_bytes(task.rss_bytes)} = anon {format_bytes(task.rss_anon_bytes)} + file "
        f"{format_bytes(task.rss_file_bytes)} + shmem {format_bytes(task.rss_shmem_bytes)}",
    )
    _field(text, "swap", f"{format_bytes(task.swap_bytes)}  page tables {format_bytes(task.pgtables_bytes)}")
    domain_path = view.prediction.nearest_limit.get(task.cgroup)
    domain = view.by_path.get(domain_path) if domain_path else None
    score = view.prediction.memcg_score.get(task.key)
    where = ""
    if domain is not None and domain_path is not None:
        where = f" against {ranking.domain_name(domain_path)} ({format_bytes(domain.limit_bytes)})"
    _field(text, "oom", f"adj {task.oom_score_adj}  memcg score {'-' if score is None else score}{where}")
    if task.swap_bytes and domain is not None:  # swapped-out pages still count: show where its points come from
        _points_line(text, task, domain, view.sample.node.swap_total_bytes, view.sample.node.page_size)
    _field(
        text,
        "node",
        f"oom_score {'-' if task.oom_score is None else task.oom_score} (kernel, node-wide)  "
        f"node score {_or_dash(view.node_score(task))}",
    )
    if not task.has_memory:
        _field(text, "", "no memory of its own (exiting): never picked", "dim")
    marks = []
    if row.victim_of:
        marks.append("next victim of " + ", ".join(row.victim_of))
    if row.node_victim:
        marks.append("node-wide victim")
    if marks:
        _field(text, "marked", "; ".join(marks), "bold")
    _growth_lines(
        text, task_key(task), task.rss_bytes, domain, cgroup_key(domain) if domain else None, history, "its cgroup's"
    )
    container = owner if owner is not None and owner.identity.kind is CgroupKind.CONTAINER else None
    _qos_lines(text, ranking, container, task.oom_score_adj)
    _field(text, "uid", f"{task.uid}  start {task.start_ticks} ticks")
    _field(text, "cgroup", printable(task.cgroup))
    text.rstrip()
    return text


def group_details(row: Row) -> Text:
    text = Text(end="")
    text.append("other cgroups\n", "bold")
    text.append(
        f"{row.group_size} cgroups of the node outside kubepods (system slices, Docker, plain), "
        f"{format_bytes(row.group_usage_bytes)} in all",
        "dim",
    )
    return text


def details_text(row: Row | None, ranking: Ranking | None, history: History) -> Text:
    if row is None or ranking is None:
        return Text("no row selected", "dim", end="")
    if row.kind is RowKind.TASK:
        return task_details(row, ranking, history)
    if row.kind is RowKind.GROUP:
        return group_details(row)
    return cgroup_details(row, ranking, history)


class DetailsText(Widget):
    """The figures of the selected row, wrapped to the pane's width.

    Most of them stay the same from one Sample to the next (names, limits, QoS) while a few move (usage,
    growth): only the lines whose text changed are repainted, and the screen's layout is redone only when the
    number of lines changes.
    """

    DEFAULT_CSS = """
    DetailsText { height: auto; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text(end="")
        self._lines: list[Text] = []
        self._strips: list[Strip | None] = []
        self._wrapped_at = -1

    def render(self) -> Text:
        """The whole text (what the lines are cut from)."""
        return self._text

    def _wrap(self, width: int) -> list[Text]:
        return list(self._text.wrap(self.app.console, width)) if width > 0 else []

    def update(self, text: Text) -> None:
        self._text = text
        width = self.size.width
        if width <= 0:
            self._wrapped_at = -1
            self.refresh(layout=True)
            return
        lines = self._wrap(width)
        if len(lines) != len(self._lines) or width != self._wrapped_at:
            self._lines, self._strips, self._wrapped_at = lines, [None] * len(lines), width
            self.refresh(layout=True)
            return
        for y, (line, before) in enumerate(zip(lines, self._lines, strict=False)):
            if line != before:
                self._lines[y], self._strips[y] = line, None
                self.refresh(Region(0, y, width, 1))

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self._wrap(width))

    def on_resize(self) -> None:
        self._wrapped_at = -1
        self.refresh(layout=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = [None] * len(self._lines)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if width != self._wrapped_at:
            self._lines = self._wrap(width)
            self._strips, self._wrapped_at = [None] * len(self._lines), width
        if not 0 <= y < len(self._lines):
            return Strip.blank(width, base)
        strip = self._strips[y]
        if strip is None:
            segments = list(self._lines[y].render(self.app.console))
            strip = Strip(segments).apply_style(base).extend_cell_length(width, base)
            self._strips[y] = strip
        return strip


class DetailsPane(VerticalScroll):
    """Figures of the row under the cursor, with its usage sparkline."""

    DEFAULT_CSS = """
    DetailsPane {
        border: round $panel-lighten-2;
        border-title-color: $text-accent;
        padding: 0 1;
        background: $surface;
        scrollbar-size-vertical: 1;
    }
    DetailsPane > #details-spark-label { color: $text-muted; height: 1; margin-top: 1; }
    DetailsPane > Sparkline { height: 2; margin-bottom: 0; }
    DetailsPane > Sparkline > .sparkline--max-color { color: $oomtop-crit; }
    DetailsPane > Sparkline > .sparkline--min-color { color: $oomtop-ok; }
    """

    def compose(self) -> ComposeResult:
        yield DetailsText(id="details-text")
        yield Static(id="details-spark-label")
        yield UsageSparkline([], id="details-spark")

    def on_mount(self) -> None:
        self.border_title = "details"
        self._text = Text(end="")

    def show(self, row: Row | None, ranking: Ranking | None, history: History) -> None:
        """Called per Sample: repaints what changed, and asks for a layout pass only when the height did."""
        text = details_text(row, ranking, history)
        if text != self._text:
            self.query_one(DetailsText).update(text)
            self._text = text
        values = history.values(row.key) if row is not None else []
        label = self.query_one("#details-spark-label", Static)
        spark = self.query_one(Sparkline)
        if len(values) >= 2:
            span = len(values) * history.resolution_s
            label.update(
                Text(
                    f"usage, last {duration(span)}: {format_bytes(int(min(values)))} .. "
                    f"{format_bytes(int(max(values)))}",
                    end="",
                ),
                layout=False,
            )
            if spark.data != values:
                spark.data = values
            spark.display = True
        else:
            label.update(Text("usage history: collecting…", end=""), layout=False)
            spark.display = False


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)
