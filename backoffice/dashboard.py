"""The back-office dashboard at /admin/dashboard/: how the product is doing, in aggregates only.

Any staff user may look: the page holds counts, merchant names and endpoint URLs, never a card, a card or token
number, or a tokenId. It must stay fast with millions of tokens, so every number comes from an aggregate query in
the apps' selectors, and their number is fixed whatever the size of the data (tests/backoffice/test_dashboard.py
counts them).

The charts are drawn here, on the server, as inline SVG: the machines have no internet, so no CDN, and nothing
needs a script to be read. Each chart has a title and a description (its accessible name), axis labels, a <title>
on every bar (the tooltip, with its number) and, under it, a table of the same numbers for screen readers and for
anyone who wants them exact. This module computes the geometry and the tables; templates/admin/dashboard.html
writes the markup.
"""

import math
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from networks import selectors as network_selectors
from networks.models import NETWORKS
from notifications import selectors as notification_selectors
from vault import selectors as vault_selectors

DAYS = 30
ENDPOINTS_SHOWN = 20

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
WINDOWS = {"24h": "Last 24 h", "7d": "Last 7 days"}  # notification_selectors.delivery_health's windows


@staff_member_required
def dashboard(request):
    now = timezone.now()
    today = timezone.localdate(now)
    first_day = today - timedelta(days=DAYS - 1)
    since = datetime.combine(first_day, time.min, tzinfo=timezone.get_current_timezone())

    per_day = vault_selectors.tokens_created_per_day(first_day=first_day, last_day=today)
    outcomes = network_selectors.network_token_outcomes(since=since)
    health = notification_selectors.delivery_health(now=now)
    failing = notification_selectors.endpoints_failing()
    endpoints = list(notification_selectors.with_delivery_counts(failing)[:ENDPOINTS_SHOWN])
    endpoints_failing = failing.count()  # always: the page makes the same queries whatever the data

    links = _links(request.user)
    for endpoint in endpoints:
        endpoint.admin_url = reverse(links["endpoint"], args=[endpoint.pk]) if "endpoint" in links else None
    rate_24h = success_rate(health["succeeded_24h"], health["finished_24h"])
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "subtitle": None,
        "zone": timezone.get_current_timezone_name(),
        "summary": [
            ("tokens-today", "Tokens created today", f"{per_day[today]:,}", links.get("tokens")),
            ("tokens-period", f"Tokens created in {DAYS} days", f"{sum(per_day.values()):,}", links.get("tokens")),
            ("webhook-rate", "Webhook success, 24 h", "—" if rate_24h is None else f"{rate_24h:.1f} %", None),
            ("backlog", "Deliveries pending", f"{health['pending']:,}", links.get("pending")),
            ("dead-letters", "Dead letters", f"{health['dead_letters']:,}", links.get("dead_letters")),
            ("endpoints-failing", "Endpoints failing", f"{endpoints_failing:,}", links.get("endpoints")),
        ],
        "charts": [
            tokens_per_day_chart(per_day),
            outcomes_chart(outcomes, links=links),
            success_rate_chart(health),
        ],
        "health": health,
        "endpoints": endpoints,
        "endpoints_failing": endpoints_failing,
        "links": links,
    }
    request.current_app = admin.site.name
    return TemplateResponse(request, "admin/dashboard.html", context)


def _links(user) -> dict[str, str]:
    """Where a number leads, among the admin pages this user may open (a link to a 403 helps nobody)."""
    links = {}
    if user.has_perm("vault.view_token"):
        links["tokens"] = reverse("admin:vault_token_changelist")
    if user.has_perm("networks.view_networktoken"):
        links["network_tokens"] = reverse("admin:networks_networktoken_changelist")
    if user.has_perm("notifications.view_delivery"):
        deliveries = reverse("admin:notifications_delivery_changelist")
        links["pending"] = f"{deliveries}?status__exact=PENDING"
        links["dead_letters"] = f"{deliveries}?status__exact=FAILED"
    if user.has_perm("notifications.view_webhookendpoint"):
        links["endpoints"] = reverse("admin:notifications_webhookendpoint_changelist")
        links["endpoint"] = "admin:notifications_webhookendpoint_change"
    return links


# ------------------------------------------------------------------------------------------------------------
# Charts
# ------------------------------------------------------------------------------------------------------------
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


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def tokens_per_day_chart(per_day: dict[date, int]) -> Chart:
    """One bar per day, today last; a day without tokens keeps a hairline on the axis (zero, not missing)."""
    days = list(per_day)
    busiest = max(days, key=lambda day: (per_day[day], day))
    chart = Chart(
        id="chart-tokens-per-day",
        title=f"Tokens created per day, last {len(days)} days",
        description=(
            f"{_plural(sum(per_day.values()), 'token')} created from {days[0]:%Y-%m-%d} to "
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
                title=f"{day:%Y-%m-%d}: {_plural(count, 'token')}",
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


def success_rate(succeeded: int, finished: int) -> float | None:
    return 100 * succeeded / finished if finished else None


def _rate_sentence(window: str, succeeded: int, finished: int) -> str:
    rate = success_rate(succeeded, finished)
    if rate is None:
        return f"{WINDOWS[window]}: no delivery finished"
    return f"{WINDOWS[window]}: {rate:.1f} % succeeded ({succeeded:,} of {finished:,} finished)"


def success_rate_chart(health: dict) -> Chart:
    """One 0–100 % bar per window: the deliveries that succeeded, then those dead-lettered, among those finished."""
    chart = Chart(
        id="chart-webhook-success",
        title="Webhook delivery success rate",
        description="; ".join(
            _rate_sentence(window, health[f"succeeded_{window}"], health[f"finished_{window}"]) for window in WINDOWS
        )
        + ".",
        x_label="Share of the deliveries finished in the window (%)",
        y_label="Window",
        height=200,
        margin_left=120,
        columns=["Window", "Success rate", "Succeeded", "Failed (dead letters)", "Finished"],
        legend=[("seg-succeeded", "succeeded"), ("seg-dead", "failed (dead letter)")],
        percent_grid=True,
        table_open=True,
    )
    span = chart.plot_right - chart.plot_left
    chart.x_ticks = [
        Tick(round(chart.plot_left + percent * span / 100, 1), f"{percent} %") for percent in range(0, 101, 25)
    ]
    slot = (chart.plot_bottom - chart.plot_top) / len(WINDOWS)
    height = slot * 0.6
    for index, (window, label) in enumerate(WINDOWS.items()):
        succeeded, finished = health[f"succeeded_{window}"], health[f"finished_{window}"]
        rate = success_rate(succeeded, finished)
        y = chart.plot_top + index * slot + (slot - height) / 2
        chart.y_ticks.append(Tick(round(y + height / 2, 1), label))
        chart.rows.append(
            [
                Cell(label),
                Cell("—" if rate is None else f"{rate:.1f} %"),
                Cell(f"{succeeded:,}"),
                Cell(f"{finished - succeeded:,}"),
                Cell(f"{finished:,}"),
            ]
        )
        if rate is None:
            chart.notes.append(Tick(round(y + height / 2 + 4, 1), "no delivery finished"))
            continue
        sentence = _rate_sentence(window, succeeded, finished)
        good = span * succeeded / finished
        for x, w, count, outcome in (
            (chart.plot_left, good, succeeded, "succeeded"),
            (chart.plot_left + good, span - good, finished - succeeded, "dead"),
        ):
            if count:
                chart.bars.append(
                    Rect(
                        x=round(x, 1),
                        y=round(y, 1),
                        width=round(w, 1),
                        height=round(height, 1),
                        css=f"bar seg seg-{outcome}",
                        title=sentence,
                        value=count,
                        key=f"{window}:{outcome}",
                    )
                )
    return chart
