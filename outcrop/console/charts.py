"""Charts drawn on the server as inline SVG: no script, no library, nothing to load (the CSP allows none).

A chart is plain geometry (rectangles, ticks, labels) computed here and written out by templates/charts.html; its
colours are classes (`s0`..`s7`, styled by usage.css in both colour schemes), every bar carries its numbers in
`data-*` attributes and a <title> (the tooltip), and each chart has a text alternative and a table beside it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

WIDTH, HEIGHT = 560, 230  # the viewBox; the SVG scales to its box (usage.css)
LEFT, RIGHT, TOP, BOTTOM = 52, 22, 18, 30  # room for the axes' labels
SERIES = 7  # colours for the biggest series; the rest are drawn together as "other" (an eighth)
OTHER = "other"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int  # the colour class
    label: str  # day, or model
    name: str  # the series' name
    value: float


@dataclass(frozen=True)
class Tick:
    at: float  # x or y in the viewBox
    text: str


@dataclass
class Chart:
    id: str
    title: str
    unit: str
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    legend: list[tuple[int, str, float]] = field(default_factory=list)  # (class, name, total)
    total: float = 0
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    plot_bottom: float = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return self.total == 0

    @property
    def summary(self) -> str:
        """The chart in words (its SVG's description, for screen readers)."""
        parts = ", ".join(f"{name}: {_fmt(total)}" for _, name, total in self.legend)
        return f"{self.title}: {_fmt(self.total)} {self.unit} in all" + (f" ({parts})." if parts else ".")


def _fmt(value: float) -> str:
    if value >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def nice_max(value: float, whole: bool = True) -> float:
    """The axis' top, at or above `value`: four gridline steps of 1, 2, 2.5 or 5 times a power of ten (whole numbers
    when `whole`: counts have no quarter requests)."""
    if value <= 0:
        return 4 if whole else 1
    step = value / 4
    power = 10 ** math.floor(math.log10(step))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= step)
    return 4 * (max(1, math.ceil(step)) if whole else step)


def _y_ticks(top: float, plot_top: float, plot_bottom: float) -> list[Tick]:
    return [Tick(plot_bottom - (plot_bottom - plot_top) * i / 4, _fmt(top * i / 4)) for i in range(5)]


def days(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=i)).isoformat() for i in range((until - since).days + 1)]


def ranked(points: Iterable[tuple[str, str, float]]) -> list[str]:
    """The series of `points` (day, series, value), biggest first: pass it as `order` to charts of the same series
    (requests, tokens) so that each series keeps its colour from one to the other."""
    totals: dict[str, float] = {}
    for _, name, value in points:
        totals[name] = totals.get(name, 0) + value
    return sorted(totals, key=lambda n: (-totals[n], n))


def stacked_by_day(chart_id: str, title: str, unit: str, day_list: list[str],
                   points: Iterable[tuple[str, str, float]], order: list[str] | None = None) -> Chart:  # fmt: skip
    """Bars a day, stacked by series: `points` are (day, series, value); the series coloured in `order` (by default
    biggest first), those beyond SERIES drawn together as OTHER."""
    points = list(points)
    values: dict[str, dict[str, float]] = {d: {} for d in day_list}
    totals: dict[str, float] = {}
    for day, name, value in points:
        if day in values and value:
            values[day][name] = values[day].get(name, 0) + value
            totals[name] = totals.get(name, 0) + value
    order = [n for n in (order if order is not None else ranked(points)) if n in totals]
    order += sorted(n for n in totals if n not in order)
    shown = order if len(order) <= SERIES + 1 else order[:SERIES]
    folded = {n: (shown.index(n) if n in shown else SERIES) for n in order}
    chart = Chart(chart_id, title, unit)
    chart.legend = [(i, n, totals[n]) for i, n in enumerate(shown)]
    if len(order) > len(shown):
        chart.legend.append((SERIES, OTHER, sum(totals[n] for n in order[len(shown) :])))
    chart.total = sum(totals.values())
    top = nice_max(max((sum(v.values()) for v in values.values()), default=0))
    plot_top, plot_bottom = float(TOP), float(HEIGHT - BOTTOM)
    chart.y_ticks = _y_ticks(top, plot_top, plot_bottom)
    slot = (WIDTH - LEFT - RIGHT) / max(len(day_list), 1)
    width = max(slot * 0.78, 1.0)
    scale = (plot_bottom - plot_top) / top
    for i, day in enumerate(day_list):
        x = LEFT + i * slot + (slot - width) / 2
        y = plot_bottom
        stack: dict[int, tuple[str, float]] = {}
        for name, value in values[day].items():
            cls = folded[name]
            prior = stack.get(cls)
            stack[cls] = (name if prior is None else OTHER, value + (prior[1] if prior else 0))
        for cls in sorted(stack):
            name, value = stack[cls]
            h = value * scale
            y -= h
            chart.bars.append(Bar(round(x, 2), round(y, 2), round(width, 2), round(h, 2), cls, day, name, value))
    step = max(1, math.ceil(len(day_list) / 6))
    marks = list(range(0, len(day_list), step))
    if day_list and marks[-1] != len(day_list) - 1 and len(day_list) - 1 - marks[-1] >= step / 2:
        marks.append(len(day_list) - 1)
    chart.x_ticks = [Tick(LEFT + (i + 0.5) * slot, day_list[i][5:]) for i in marks]  # MM-DD
    return chart


def grouped(chart_id: str, title: str, unit: str, groups: list[tuple[str, list[tuple[str, float | None]]]]) -> Chart:
    """Bars side by side within each group (a model's p50, p90, p99): `groups` are (label, [(series, value)])."""
    chart = Chart(chart_id, title, unit)
    names = list(dict.fromkeys(n for _, series in groups for n, _ in series))
    chart.legend = [(i, n, 0) for i, n in enumerate(names)]
    top = nice_max(max((v or 0 for _, series in groups for _, v in series), default=0), whole=False)
    plot_top, plot_bottom = float(TOP), float(HEIGHT - BOTTOM)
    chart.y_ticks = _y_ticks(top, plot_top, plot_bottom)
    slot = (WIDTH - LEFT - RIGHT) / max(len(groups), 1)
    inner = min(slot * 0.8, 48 * max(len(names), 1))
    width = inner / max(len(names), 1)
    scale = (plot_bottom - plot_top) / top
    for i, (label, series) in enumerate(groups):
        start = LEFT + i * slot + (slot - inner) / 2
        for name, value in series:
            if value is None:
                continue
            j = names.index(name)
            h = value * scale
            chart.bars.append(Bar(round(start + j * width + 1, 2), round(plot_bottom - h, 2), round(width - 2, 2),
                                  round(h, 2), j, label, name, value))  # fmt: skip
            chart.total += value
        chart.x_ticks.append(Tick(LEFT + (i + 0.5) * slot, label if len(label) <= 28 else label[:27] + "…"))
    return chart
