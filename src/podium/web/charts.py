"""SVG chart geometry for the dashboard, shared by every page that draws one: round axis numbers, charts of
figures over time (lines, or bars stacked per series for figures that add up) and interval charts (a mean
and its 95% interval per row). Geometry is computed here and drawn by the pages' templates; how a value is
written on an axis is the caller's formatter, so this module knows no domain.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

Format = Callable[[float], str]


def nice_number(value: float) -> float:
    """The smallest of 1, 2, 2.5 and 5 times a power of ten at or above `value` (1 for nothing above zero):
    an axis maximum, or a tick step."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(float(m * power) for m in (1, 2, 2.5, 5, 10) if value <= m * power * (1 + 1e-9))


def nice_step(span: float, parts: int = 4) -> float:
    """A round tick step dividing `span` into about `parts`."""
    return nice_number(span / parts)


# --- figures over time -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mark:
    """A drawn value: a dot on a line (`h` 0), or a block of a stacked bar."""

    x: float
    y: float
    h: float
    value: float
    when: str
    lone: bool = False  # a dot with no neighbour to draw a line to: always drawn


@dataclass
class Series:
    """One line or stack of a chart: a value per time slot (None: no data there)."""

    name: str
    values: list[float | None]
    color: str = ""
    segments: list[str] = field(default_factory=list)  # SVG polyline points, one per run of values (lines)
    marks: list[Mark] = field(default_factory=list)


@dataclass
class Chart:
    """A chart over time slots as SVG geometry: lines, or bars stacked per series for figures that add up
    (requests, cost, tokens, errors)."""

    key: str
    title: str
    unit: str  # what the values are (the template's `data-unit`; the caller formats them)
    series: list[Series]
    stacked: bool = False
    width: int = 600
    height: int = 200
    left: int = 64
    right: int = 12
    top: int = 12
    bottom: int = 26
    slots: int = 0
    bar_width: float = 0.0
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    empty: bool = True


def layout_chart(
    chart: Chart, slots: list[datetime], label_format: str, fmt: Format, palette: Sequence[str] = ("#3b5bdb",)
) -> Chart:
    """Fill in a chart's geometry: y ticks from zero to a round maximum written by `fmt`, x ticks at the
    first, middle and last slot (`label_format`), and per series its stacked blocks or its polylines and
    dots; a series without a colour takes one from `palette`."""
    n = chart.slots = len(slots)
    plot_w = chart.width - chart.left - chart.right
    plot_h = chart.height - chart.top - chart.bottom
    step = plot_w / max(n, 1)
    chart.bar_width = round(max(step * 0.8, 0.5), 2)
    if chart.stacked:
        heights = [sum(s.values[i] or 0.0 for s in chart.series) for i in range(n)]
    else:
        heights = [v for s in chart.series for v in s.values if v is not None]
    chart.empty = not any(heights) if chart.stacked else not heights
    top = nice_number(max(heights, default=0.0))

    def x(i: int) -> float:
        return chart.left + (i + 0.5) * step

    def y(v: float) -> float:
        return chart.top + plot_h - v / top * plot_h

    chart.y_ticks = [(round(y(top * i / 4), 1), fmt(top * i / 4)) for i in range(5)]
    picks = sorted({0, n // 2, n - 1}) if n > 2 else list(range(n))
    chart.x_ticks = [(round(x(i), 1), slots[i].strftime(label_format)) for i in picks]
    base = [0.0] * n
    for k, s in enumerate(chart.series):
        s.color = s.color or palette[k % len(palette)]
        run: list[str] = []
        for i, v in enumerate(s.values):
            when = slots[i].strftime("%Y-%m-%d %H:%M UTC")
            if chart.stacked:
                if v:
                    top_y = y(base[i] + v)
                    left = round(x(i) - chart.bar_width / 2, 2)
                    s.marks.append(Mark(left, round(top_y, 2), round(y(base[i]) - top_y, 2), v, when))
                    base[i] += v
                continue
            if v is None:
                if run:
                    s.segments.append(" ".join(run))
                run = []
                continue
            px, py = round(x(i), 1), round(y(v), 1)
            run.append(f"{px},{py}")
            lone = (i == 0 or s.values[i - 1] is None) and (i == n - 1 or s.values[i + 1] is None)
            s.marks.append(Mark(px, py, 0.0, v, when, lone))
        if run:
            s.segments.append(" ".join(run))
    return chart


# --- means with intervals ----------------------------------------------------------------------------


class Interval(Protocol):
    """A mean and its 95% interval over `n` values (None where too few to say)."""

    @property
    def n(self) -> int: ...

    @property
    def mean(self) -> float | None: ...

    @property
    def low(self) -> float | None: ...

    @property
    def high(self) -> float | None: ...


@dataclass(frozen=True)
class CiRow:
    """One row of an interval chart: its mean and 95% interval in data units and in SVG x coordinates."""

    label: str
    n: int
    mean: float | None
    low: float | None
    high: float | None
    y: float
    x_mean: float | None
    x_low: float | None
    x_high: float | None


@dataclass(frozen=True)
class CiChart:
    """An SVG chart of means with 95% interval bars, one row each."""

    key: str
    title: str
    unit: str
    width: int
    height: int
    left: int
    right: int
    rows: list[CiRow]
    ticks: list[tuple[float, str]]


CI_WIDTH = 560
CI_LEFT = 70  # room for the row labels
CI_RIGHT = 36  # room for the last tick's label
CI_ROW_HEIGHT = 26
CI_TOP = 8
CI_AXIS = 22  # room for tick labels below the rows


def ci_chart(
    key: str,
    title: str,
    unit: str,
    rows: Sequence[tuple[str, Interval]],
    fmt: Format,
    *,
    non_negative: bool = False,
) -> CiChart:
    """Lay out a mean-and-interval chart: a shared x scale with round ticks (written by `fmt`) over every
    row's interval (or mean); a `non_negative` quantity's axis (and intervals) start at zero at most."""
    points = [v for _, e in rows for v in (e.low, e.high, e.mean) if v is not None]
    lo, hi = (min(points), max(points)) if points else (0.0, 1.0)
    if non_negative:
        lo = max(lo, 0.0)
    if hi - lo < 1e-12:
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = max(lo - pad, 0.0) if non_negative else lo - pad, hi + pad
    step = nice_step(hi - lo)
    lo, hi = math.floor(lo / step + 1e-9) * step, math.ceil(hi / step - 1e-9) * step
    clip = 0.0 if non_negative else -math.inf
    inner = CI_WIDTH - CI_LEFT - CI_RIGHT

    def x(v: float | None) -> float | None:
        return None if v is None else round(CI_LEFT + (v - lo) / (hi - lo) * inner, 1)

    laid = [
        CiRow(
            label,
            e.n,
            e.mean,
            e.low,
            e.high,
            CI_TOP + i * CI_ROW_HEIGHT + CI_ROW_HEIGHT / 2,
            x(e.mean),
            x(None if e.low is None else max(e.low, clip)),
            x(e.high),
        )
        for i, (label, e) in enumerate(rows)
    ]
    count = round((hi - lo) / step)
    ticks = [(float(x(lo + step * k) or 0), fmt(lo + step * k)) for k in range(count + 1)]
    height = CI_TOP + len(rows) * CI_ROW_HEIGHT + CI_AXIS
    return CiChart(key, title, unit, CI_WIDTH, height, CI_LEFT, CI_RIGHT, laid, ticks)


@dataclass(frozen=True)
class Bar:
    """One bar of a grouped bar chart: its box in SVG units, and what it shows."""

    x: float
    y: float
    w: float
    h: float
    color: str
    side: str
    label: str
    share: float


@dataclass
class BarChart:
    """Shares per category, one bar per side (e.g. reference and current) in each category's group."""

    key: str
    title: str
    width: int = 420
    height: int = 170
    left: int = 40
    right: int = 8
    top: int = 10
    bottom: int = 34
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)


def grouped_bars(
    key: str, title: str, labels: Sequence[str], sides: Sequence[tuple[str, Sequence[float], str]]
) -> BarChart:
    """A grouped bar chart of shares (0-1): for each label, a bar per side `(name, shares, color)`; the y axis
    reads as percentages up to a nice number above the largest share."""
    chart = BarChart(key=key, title=title)
    plot_w = chart.width - chart.left - chart.right
    plot_h = chart.height - chart.top - chart.bottom
    top = nice_number(max([*(v for _, values, _ in sides for v in values), 0.01]))
    group = plot_w / max(len(labels), 1)
    bar_w = max(group * 0.76 / max(len(sides), 1), 1.0)
    for i, label in enumerate(labels):
        x0 = chart.left + i * group + group * 0.1
        for k, (side, shares, color) in enumerate(sides):
            share = shares[i] if i < len(shares) else 0.0
            h = share / top * plot_h
            top_y = round(chart.top + plot_h - h, 2)
            chart.bars.append(
                Bar(round(x0 + k * bar_w, 2), top_y, round(bar_w, 2), round(h, 2), color, side, label, share)
            )
        chart.x_labels.append((round(chart.left + (i + 0.5) * group, 1), label))
    chart.y_ticks = [(round(chart.top + plot_h - plot_h * j / 4, 1), f"{top * j / 4:.0%}") for j in range(5)]
    return chart
