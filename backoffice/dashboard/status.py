"""Is something wrong now? The thresholds that colour the dashboard's tiles, in one place, and the status strip that
sums them up at the top of the page.

A tile is a number, what it counts and the list of those things; a number that can be wrong also gets a tone from
the thresholds below, and the page prints each rule beside its tile from the same constants, so what the page says
and what it does cannot drift apart. The strip repeats the tiles that have a threshold, one coloured label each.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils.html import format_html

from core.admin_display import BAD, GOOD, QUIET, WARNING, counted, moment_shown, status_label

# ------------------------------------------------------------------------------------------------------------
# Thresholds: from these values on (below them, for a rate) a tile turns amber (WARNING) or red (BAD)
# ------------------------------------------------------------------------------------------------------------
FAILING_ENDPOINTS_BAD = 1  # an endpoint failing now: its merchant is missing events
OVERDUE_WARNING = 1  # a delivery past its due time; the sweeper queues due ones every few seconds, so…
OVERDUE_OLDEST_BAD = timedelta(minutes=10)  # …one left waiting 10 minutes means nothing is sending
DEAD_LETTERS_24H_WARNING = 1  # a delivery that gave up today: replay it once the endpoint is fixed
ATTEMPTS_SUCCEEDED_WARNING_BELOW = 99.0  # percent of the last 24 hours' attempts
ATTEMPTS_SUCCEEDED_BAD_BELOW = 90.0
NETWORK_FAILURES_24H_WARNING = 1  # requests or batch items failed: a token service down, or issuers declining

TONE_WORDS = {GOOD: "OK", WARNING: "Warning", BAD: "Alert", QUIET: "No data"}
HEADLINES = {GOOD: "All clear", WARNING: "Needs a look", BAD: "Something is wrong", QUIET: "No figure to show"}


def tone_of_count(count: int, *, warning: int | None = None, bad: int | None = None) -> str:
    if bad is not None and count >= bad:
        return BAD
    if warning is not None and count >= warning:
        return WARNING
    return GOOD


def count_rule(*, warning: int | None = None, bad: int | None = None) -> str:
    """The rule of ``tone_of_count`` in words: "Amber from 1, red from 5"."""
    parts = [f"{colour} from {limit:,}" for colour, limit in (("amber", warning), ("red", bad)) if limit is not None]
    return ", ".join(parts).capitalize() + "."


@dataclass
class Tile:
    key: str
    label: str
    figure: str
    url: str | None = None
    tone: str | None = None  # None: a figure to know, with no threshold
    rule: str = ""  # when it turns amber or red, in words
    detail: str = ""  # a line under the figure (safe HTML)
    strip: str = ""  # what the status strip says of it ("3 endpoints failing"); empty: not in the strip

    @property
    def tone_label(self):
        return status_label(TONE_WORDS[self.tone], self.tone) if self.tone else ""

    @property
    def strip_label(self):
        return status_label(self.strip, self.tone)


@dataclass
class Strip:
    tone: str
    items: list[Tile]

    @property
    def headline(self):
        return status_label(HEADLINES[self.tone], self.tone)


def strip_of(tiles: list[Tile]) -> Strip:
    """The worst tone among the tiles with a threshold, and those tiles; with none to show, no verdict (QUIET):
    "all clear" would be a claim about what this staff member may not see."""
    items = [tile for tile in tiles if tile.strip]
    tones = {tile.tone for tile in items}
    tone = BAD if BAD in tones else WARNING if WARNING in tones else GOOD if items else QUIET
    return Strip(tone=tone, items=items)


# ------------------------------------------------------------------------------------------------------------
# The tiles
# ------------------------------------------------------------------------------------------------------------
def trouble_tiles(
    *,
    now: datetime,
    webhooks: dict | None,
    endpoints: dict | None,
    attempts: tuple[int, int] | None,
    network: dict,
    links: dict,
) -> list[Tile]:
    """The figures that say whether something is wrong, each with its threshold, in the strip's order. A figure the
    staff member may not see comes as None (``network``: without its key) and has no tile."""
    tiles = []
    if endpoints is not None:
        failing = endpoints["failing"]
        tiles.append(
            count_tile(
                "endpoints-failing",
                "Endpoints failing",
                failing,
                url=links.get("endpoints_failing"),
                strip=f"{counted(failing, 'endpoint')} failing",
                bad=FAILING_ENDPOINTS_BAD,
            )
        )
    if webhooks is not None:
        dead_24h = webhooks["dead_letters_24h"]
        tiles.append(overdue_tile(now=now, webhooks=webhooks, links=links))
        tiles.append(
            count_tile(
                "dead-letters-24h",
                "Dead letters, last 24 h",
                dead_24h,
                url=links.get("dead_letters_24h"),
                strip=f"{counted(dead_24h, 'dead letter')} in 24 h",
                warning=DEAD_LETTERS_24H_WARNING,
            )
        )
    if attempts is not None:
        tiles.append(attempts_tile(succeeded=attempts[0], failed=attempts[1]))
    for kind, key, label, link, noun in (
        (
            "requests",
            "network-requests-failed",
            "Network-token requests failed, 24 h",
            "requests_failed",
            "network-token request",
        ),
        ("items", "batch-items-failed", "Batch items failed, 24 h", "items_failed", "batch item"),
    ):
        if kind in network:
            tiles.append(
                count_tile(
                    key,
                    label,
                    network[kind],
                    url=links.get(link),
                    strip=f"{counted(network[kind], noun)} failed",
                    warning=NETWORK_FAILURES_24H_WARNING,
                )
            )
    return tiles


def count_tile(
    key: str, label: str, count: int, *, url: str | None, strip: str, warning: int | None = None, bad: int | None = None
) -> Tile:
    """A count whose colour its thresholds decide (``tone_of_count``), with the rule in words."""
    return Tile(
        key=key,
        label=label,
        figure=f"{count:,}",
        url=url,
        tone=tone_of_count(count, warning=warning, bad=bad),
        rule=count_rule(warning=warning, bad=bad),
        strip=strip,
    )


def overdue_tile(*, now: datetime, webhooks: dict, links: dict) -> Tile:
    overdue, oldest = webhooks["overdue"], webhooks["oldest_overdue_at"]
    tone = tone_of_count(overdue, warning=OVERDUE_WARNING)
    if oldest is not None and now - oldest >= OVERDUE_OLDEST_BAD:
        tone = BAD
    minutes = int(OVERDUE_OLDEST_BAD.total_seconds() // 60)
    return Tile(
        key="overdue",
        label="Deliveries overdue",
        figure=f"{overdue:,}",
        url=links.get("overdue"),
        tone=tone,
        rule=f"Amber from {OVERDUE_WARNING:,}, red when the oldest has waited {minutes} min.",
        detail=format_html("oldest due {}", moment_shown(oldest, now)) if oldest else "",
        strip=f"{overdue:,} overdue",
    )


def attempts_tile(*, succeeded: int, failed: int) -> Tile:
    attempts = succeeded + failed
    rate = 100 * succeeded / attempts if attempts else None
    if rate is None:
        tone = QUIET
    elif rate < ATTEMPTS_SUCCEEDED_BAD_BELOW:
        tone = BAD
    elif rate < ATTEMPTS_SUCCEEDED_WARNING_BELOW:
        tone = WARNING
    else:
        tone = GOOD
    shown = "—" if rate is None else f"{rate:.1f} %"
    return Tile(
        key="attempts-succeeded",
        label="Webhook attempts succeeded, 24 h",
        figure=shown,
        url="#chart-webhook-hourly-module",
        tone=tone,
        rule=f"Amber below {ATTEMPTS_SUCCEEDED_WARNING_BELOW:g} %, red below {ATTEMPTS_SUCCEEDED_BAD_BELOW:g} %.",
        detail=f"{succeeded:,} of {counted(attempts, 'attempt')}",
        strip="no webhook attempt in 24 h" if rate is None else f"{shown} of webhook attempts succeeded",
    )


def volume_tiles(
    *,
    tokens_today: int | None,
    tokens_period: int | None,
    days: int,
    webhooks: dict | None,
    endpoints: dict | None,
    links: dict,
) -> list[Tile]:
    """Figures to know, with no threshold: how much work there is. None: a figure the staff member may not see."""
    tiles = []
    if tokens_today is not None:
        tiles.append(Tile("tokens-today", "Tokens created today", f"{tokens_today:,}", links.get("tokens_today")))
        tiles.append(
            Tile("tokens-period", f"Tokens created in {days} days", f"{tokens_period:,}", links.get("tokens_period"))
        )
    if webhooks is not None:
        tiles.append(Tile("pending", "Deliveries pending", f"{webhooks['pending']:,}", links.get("pending")))
        tiles.append(
            Tile("dead-letters", "Dead letters in all", f"{webhooks['dead_letters']:,}", links.get("dead_letters"))
        )
    if endpoints is not None:
        tiles.append(
            Tile(
                "endpoints-disabled",
                "Endpoints disabled",
                f"{endpoints['disabled']:,}",
                links.get("endpoints_disabled"),
            )
        )
    return tiles
