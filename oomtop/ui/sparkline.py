"""The details pane's usage sparkline: Textual's ``Sparkline``, drawn with a fraction of the work.

Textual's renderable recomputes every bar once per line (the bucket's summary, its colour blend and a new
Style) and partitions the data with ``Fraction`` arithmetic; with five minutes of history that was 1.4 ms of
each repaint, ten times a second.  :class:`FastSparklineRenderable` computes each bar once and yields exactly
the segments Textual's does (the same characters, colours and order), so the screen is unchanged to the byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.color import Color, blend_rgb
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style
from textual.renderables.sparkline import Sparkline as SparklineRenderable
from textual.strip import Strip
from textual.widgets import Sparkline


def blend_colors(low: Color, high: Color, ratio: float) -> Color:
    """The colour ``ratio`` of the way from ``low`` to ``high`` in RGB, as Textual's sparkline blends its bars
    (through Rich's public ``blend_rgb``, not a private Textual module); a colour without RGB gives ``high``."""
    if low.triplet is None or high.triplet is None:
        return high
    return Color.from_triplet(blend_rgb(low.triplet, high.triplet, ratio))


class FastSparklineRenderable(SparklineRenderable[float]):
    """Textual's sparkline renderable with each bar's summary, height and style computed once."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        data = self.data
        if len(data) < 2:  # the special cases, as Textual draws them
            yield from super().__rich_console__(console, options)
            return
        width = self.width or options.max_width
        height = self.height or 1
        per_line = len(self.BARS)
        bar_segments = per_line * height - 1
        minimum, maximum = min(data), max(data)
        extent = maximum - minimum or 1
        min_color, max_color = self.min_color.color, self.max_color.color
        assert min_color is not None and max_color is not None
        buckets = _buckets(data, width)
        # Which bucket each bar shows: the float walk Textual's loop makes, step for step.
        step = len(buckets) / width
        bars: list[tuple[int, Style]] = []
        styles: dict[float, Style] = {}
        bucket_index = 0.0
        for _ in range(width):
            ratio = (self.summary_function(buckets[int(bucket_index)]) - minimum) / extent
            style = styles.get(ratio)
            if style is None:
                style = styles[ratio] = Style.from_color(blend_colors(min_color, max_color, ratio))
            bars.append((int(ratio * bar_segments), style))
            bucket_index += step
        for line in reversed(range(height)):
            low, high = line * per_line, (line + 1) * per_line
            for bar_index, style in bars:
                if bar_index < low:
                    yield Segment(" ", None)
                elif bar_index >= high:
                    yield Segment("█", style)
                else:
                    yield Segment(self.BARS[bar_index % per_line], style)
            if line > 0:
                yield Segment.line()


def _buckets(data: Sequence[float], count: int) -> list[Sequence[float]]:
    """``SparklineRenderable._buckets`` in integer arithmetic: int(Fraction(n, count) * k) is n * k // count."""
    n = len(data)
    buckets = []
    for k in range(count):
        start, end = n * k // count, n * (k + 1) // count
        if end > start:
            buckets.append(data[start:end])
    return buckets


class UsageSparkline(Sparkline):
    """``Sparkline`` drawn by :class:`FastSparklineRenderable` through the line API (same look, same CSS).

    A Rich renderable in a widget goes through Textual's general rendering path (a Visual, a styled console
    render, line splitting) on every repaint: for two lines that was more than the bars themselves.  This
    widget makes the same cells directly, one segment per run of bars in one colour (not one per bar), and
    keeps them until the data, size or colours change.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._drawn: tuple[tuple[object, ...], list[Strip]] | None = None

    def render(self) -> FastSparklineRenderable:
        _, base = self.background_colors
        min_color = base + (
            self.get_component_styles("sparkline--min-color").color if self.min_color is None else self.min_color
        )
        max_color = base + (
            self.get_component_styles("sparkline--max-color").color if self.max_color is None else self.max_color
        )
        return FastSparklineRenderable(
            self.data or [],
            width=self.size.width,
            height=self.size.height,
            min_color=min_color.rich_color,
            max_color=max_color.rich_color,
            summary_function=self.summary_function,
        )

    def render_line(self, y: int) -> Strip:
        base = self.visual_style.rich_style
        width = self.size.width
        renderable = self.render()
        key = (tuple(self.data or ()), width, self.size.height, renderable.min_color, renderable.max_color, base)
        if self._drawn is None or self._drawn[0] != key:
            # what Textual's path does with the renderable: its style under every segment, cut into lines
            console = self.app.console
            bars = renderable.__rich_console__(console, console.options.update_width(width))
            # runs of bars in one colour joined: each later step of a repaint works per segment
            segments = Segment.simplify(Segment.apply_style((bar for bar in bars if isinstance(bar, Segment)), base))
            lines = [
                Strip(line)
                for line in Segment.split_and_crop_lines(segments, width, include_new_lines=False, pad=False)
            ]
            self._drawn = (key, lines)
        lines = self._drawn[1]
        return lines[y] if 0 <= y < len(lines) else Strip.blank(width, base)
