"""The dashboard's charts, drawn on the server as inline SVG: the machines have no internet, so no CDN, and nothing
needs a script to be read. Each chart has a title and a description (its accessible name), axis labels, a <title> on
every bar (the tooltip, with its number) and, under it, a table of the same numbers for screen readers and for anyone
who wants them exact. This module computes the geometry and the tables; templates/admin/dashboard/chart.html writes
the markup. The webhook charts are in webhook_charts.py.
"""

import math
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import urlencode

from django.utils import timezone

from core.admin_display import counted
from networks.models import NETWORKS

DAYS = 30

OUTCOMES = {  # network_selectors.network_token_outcomes' keys, in the order they stack
    "ACTIVE": "active",
    "INACTIVE": "inactive",
    "SUSPENDED": "suspended",
    "DELETED": "deleted",
    "FAILED_REQUESTS": "failed async requests",
    "FAILED_BATCH_ITEMS": "failed batch items",
}
CREATED = ("ACTIVE", "INACTIVE", "SUSPENDED", "DELETED")
FAILED = ("FAILED_REQUESTS", "FAILED_BATCH_ITEMS")


@dataclass
class Tick:
    position: float  # x or y in the viewBox
    label: str


@dataclass
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str
    value: int
    key: str  # data-key: the day, network:outcome or window:outcome, for a test or a reader to find a bar by


@dataclass
class Cell:
    text: str
    url: str | None = None


@dataclass
class Chart:
    """An SVG chart in a viewBox ``width`` × ``height``, and its data table (``columns`` and ``rows`` of cells)."""

    id: str
    title: str
    description: str
    x_label: str
    y_label: str
    height: int
    columns: list[str]
    width: int = 900
    margin_left: int = 64
    margin_right: int = 16
    margin_top: int = 16
    margin_bottom: int = 64
    bars: list[Rect] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)  # labels under the x axis
    y_ticks: list[Tick] = field(default_factory=list)  # labels left of the y axis
    groups: list[Tick] = field(default_factory=list)  # a second row of labels under the x axis
    value_grid: bool = False  # grid lines across the plot at each y tick
    percent_grid: bool = False  # grid lines up the plot at each x tick
    legend: list[tuple[str, str]] = field(default_factory=list)  # (css class, label)
    notes: list[Tick] = field(default_factory=list)  # text in the plot, at (note_x, position)
    rows: list[list[Cell]] = field(default_factory=list)
    table_open: bool = False  # a short table is shown at once, a long one behind a click

    @property
    def plot_left(self):
        return self.margin_left

    @property
    def plot_right(self):
        return self.width - self.margin_right

    @property
    def plot_top(self):
        return self.margin_top

    @property
    def plot_bottom(self):
        return self.height - self.margin_bottom

    # Where the labels go: tick labels just outside the plot, the axis titles along the edges of the viewBox.
    @property
    def y_tick_x(self):
        return self.plot_left - 8

    @property
    def x_tick_y(self):
        return self.plot_bottom + 18

    @property
    def group_y(self):
        return self.plot_bottom + 36

    @property
    def note_x(self):
        return self.plot_left + 8

    @property
    def x_label_x(self):
        return (self.plot_left + self.plot_right) / 2

    @property
    def x_label_y(self):
        return self.height - 8

    @property
    def y_label_y(self):
        return (self.plot_top + self.plot_bottom) / 2

    def count_axis(self, largest: int) -> float:
        """Tick the y axis for counts up to ``largest``; the viewBox units per count."""
        top, step = nice_scale(largest)
        span = self.plot_bottom - self.plot_top
        self.y_ticks = [
            Tick(round(self.plot_bottom - value * span / top, 1), f"{value:,}") for value in range(0, top + 1, step)
        ]
        self.value_grid = True
        return span / top


def nice_scale(largest: int, *, steps: int = 4) -> tuple[int, int]:
    """An axis maximum and a tick step for counts up to ``largest``: the step is 1, 2 or 5 times a power of ten,
    about ``steps`` of them."""
    raw = max(largest / steps, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return max(step * math.ceil(largest / step), step), step


def tokens_per_day_chart(per_day: dict[date, int]) -> Chart:
    """One bar per day, today last; a day without tokens keeps a hairline on the axis (zero, not missing)."""
    days = list(per_day)
    busiest = max(days, key=lambda day: (per_day[day], day))
    chart = Chart(
        id="chart-tokens-per-day",
        title=f"Tokens created per day, last {len(days)} days",
        description=(
            f"{counted(sum(per_day.values()), 'token')} created from {days[0]:%Y-%m-%d} to "
            f"{days[-1]:%Y-%m-%d}; "
            + (
                f"the busiest day was {busiest:%Y-%m-%d} with {per_day[busiest]:,}."
                if per_day[busiest]
                else "none at all."
            )
        ),
        x_label=f"Day ({timezone.get_current_timezone_name()})",
        y_label="Tokens created",
        height=300,
        columns=["Day", "Tokens created"],
    )
    scale = chart.count_axis(max(per_day.values()))
    slot = (chart.plot_right - chart.plot_left) / len(days)
    width = slot * 0.7
    for index, (day, count) in enumerate(per_day.items()):
        x = chart.plot_left + index * slot + (slot - width) / 2
        height = count * scale if count else 1
        chart.bars.append(
            Rect(
                x=round(x, 1),
                y=round(chart.plot_bottom - height, 1),
                width=round(width, 1),
                height=round(height, 1),
                css="bar" if count else "bar bar-zero",
                title=f"{day:%Y-%m-%d}: {counted(count, 'token')}",
                value=count,
                key=f"{day:%Y-%m-%d}",
            )
        )
        if (len(days) - 1 - index) % 5 == 0:  # every fifth day counted back from today, so today has its label
            chart.x_ticks.append(Tick(round(x + width / 2, 1), f"{day:%b %d}"))
        chart.rows.append([Cell(f"{day:%Y-%m-%d}"), Cell(f"{count:,}")])
    return chart


def outcomes_chart(outcomes: dict[str, dict[str, int]], *, links: dict) -> Chart:
    """Per network, two stacked bars: the network tokens created (by their status now), then the failures."""

    def total(counts, stack):
        return sum(counts[outcome] for outcome in stack)

    chart = Chart(
        id="chart-network-outcomes",
        title=f"Network-token outcomes by network, last {DAYS} days",
        description="; ".join(
            f"{network}: {total(counts, CREATED):,} created, {total(counts, FAILED):,} failed"
            for network, counts in outcomes.items()
        )
        + ".",
        x_label="Network: tokens created, by status now, and failures",
        y_label="Tokens or failures",
        height=320,
        columns=["Network", *(label.capitalize() for label in OUTCOMES.values()), "Created", "Failed"],
        legend=[(f"seg-{_css(outcome)}", label) for outcome, label in OUTCOMES.items()],
        table_open=True,
    )
    chart.margin_bottom = 72
    scale = chart.count_axis(
        max((total(counts, stack) for counts in outcomes.values() for stack in (CREATED, FAILED)), default=0)
    )
    slot = (chart.plot_right - chart.plot_left) / len(outcomes)
    width, gap = min(slot * 0.3, 80), 8
    for index, (network, counts) in enumerate(outcomes.items()):
        centre = chart.plot_left + index * slot + slot / 2
        for x, stack, label in ((centre - gap / 2 - width, CREATED, "created"), (centre + gap / 2, FAILED, "failed")):
            bottom = chart.plot_bottom
            for outcome in stack:
                if not counts[outcome]:
                    continue
                height = counts[outcome] * scale
                chart.bars.append(
                    Rect(
                        x=round(x, 1),
                        y=round(bottom - height, 1),
                        width=round(width, 1),
                        height=round(height, 1),
                        css=f"bar seg seg-{_css(outcome)}",
                        title=f"{network}, {OUTCOMES[outcome]}: {counts[outcome]:,}",
                        value=counts[outcome],
                        key=f"{network}:{outcome}",
                    )
                )
                bottom -= height
            chart.x_ticks.append(Tick(round(x + width / 2, 1), label))
        chart.groups.append(Tick(round(centre, 1), network))
        url = (
            f"{links['network_tokens']}?{urlencode({'network__exact': network})}"
            if "network_tokens" in links and network in NETWORKS
            else None
        )
        chart.rows.append(
            [
                Cell(network, url),
                *(Cell(f"{counts[outcome]:,}") for outcome in OUTCOMES),
                Cell(f"{total(counts, CREATED):,}"),
                Cell(f"{total(counts, FAILED):,}"),
            ]
        )
    return chart


def _css(outcome: str) -> str:
    return outcome.lower().replace("_", "-")
