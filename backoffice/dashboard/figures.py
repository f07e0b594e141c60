"""The dashboard's live numbers, asked of each app's selectors: a fixed handful of aggregate queries whatever the size
of the data, and only those of the figures the staff member may see (``SEES``).

Every figure comes with the moments it was counted at, so that a link to the list it counts filters on the very same
bounds.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from networks import selectors as network_selectors
from notifications import selectors as notification_selectors
from notifications.models import WebhookEndpoint

ENDPOINTS_SHOWN = 20
HOURS = 24

# Who sees a figure: whoever may open the list of what it counts. The endpoints in trouble (their URLs, merchants and
# errors) and the endpoint tiles are the endpoints'; the delivery tiles and the webhook charts the deliveries'. A
# back-office clerk, who may open the vault's lists alone, sees the vault's figures alone.
SEES = {
    "tokens": "vault.view_token",
    "network_tokens": "networks.view_networktoken",
    "requests": "networks.view_provisioningrequest",
    "items": "networks.view_batchitem",
    "deliveries": "notifications.view_delivery",
    "endpoints": "notifications.view_webhookendpoint",
}


def seen_by(user) -> frozenset[str]:
    """The parts of ``SEES`` this staff member may see."""
    return frozenset(part for part, permission in SEES.items() if user.has_perm(permission))


@dataclass(frozen=True)
class Moments:
    """When the figures were counted, and the bounds of their windows."""

    now: datetime
    day_ago: datetime  # the last 24 hours
    first_hour: datetime  # the start of the oldest hour of the hourly trend

    @classmethod
    def at(cls, now: datetime) -> "Moments":
        hour = now.replace(minute=0, second=0, microsecond=0)
        return cls(
            now=now,
            day_ago=now - timedelta(hours=24),
            first_hour=hour - timedelta(hours=HOURS - 1),
        )


def webhook_figures(*, at: Moments) -> dict:
    """The notifications app's delivery health counted at ``at.now`` (success over 24 hours and 7 days, the backlog,
    the dead letters), and the dead letters of the last 24 hours (``dead_letters_24h``). Two queries."""
    figures = notification_selectors.delivery_health(now=at.now)
    figures["dead_letters_24h"] = notification_selectors.dead_letters_since(since=at.day_ago)
    return figures


def attempts_per_hour(*, at: Moments) -> dict[datetime, tuple[int, int]]:
    """Delivery attempts (succeeded, failed) started in each hour (UTC) of the last ``HOURS``, the current one last,
    every hour present. One query."""
    counts = notification_selectors.attempts_per_hour(since=at.first_hour)
    hours = (at.first_hour + timedelta(hours=n) for n in range(HOURS))
    return {hour: counts.get(hour, (0, 0)) for hour in hours}


def endpoint_counts() -> dict[str, int]:
    """Endpoints ``failing`` and ``disabled``. One query."""
    return notification_selectors.endpoint_counts()


def endpoints_in_trouble() -> list[WebhookEndpoint]:
    """The ``ENDPOINTS_SHOWN`` longest-failing endpoints, then disabled ones, with their pending deliveries and dead
    letters, last error and last success. Two queries."""
    return notification_selectors.endpoints_in_trouble(limit=ENDPOINTS_SHOWN)


def network_failures(*, at: Moments, parts: frozenset[str]) -> dict[str, int]:
    """Asynchronous network-token ``requests`` and batch ``items`` that failed in the last 24 hours, of those
    ``parts`` the staff member may see. A count each."""
    failures = {}
    if "requests" in parts:
        failures["requests"] = network_selectors.provisioning_requests_failed(since=at.day_ago)
    if "items" in parts:
        failures["items"] = network_selectors.batch_items_failed(since=at.day_ago)
    return failures
