"""The dashboard's live numbers: a fixed handful of aggregate queries whatever the size of the data.

The apps' selectors answer what they already know (delivery health, the failing endpoints and their pending and
dead letters); the rest is asked here of their models: the back office sits on top of every app and reads them all,
and these questions are the dashboard's alone. Every figure comes with the moments it was counted at, so that a link
to the list it counts filters on the very same bounds.
"""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.db.models.functions import TruncHour

from networks.models import BatchItem, ProvisioningRequest
from notifications import selectors as notification_selectors
from notifications.models import Delivery, DeliveryAttempt, WebhookEndpoint

ENDPOINTS_SHOWN = 20
HOURS = 24


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
    the dead letters), and the dead letters of the last 24 hours (``dead_letters_24h``, on the (status,
    updated_at) index). Two queries."""
    figures = notification_selectors.delivery_health(now=at.now)
    figures["dead_letters_24h"] = Delivery.objects.filter(status=Delivery.FAILED, updated_at__gte=at.day_ago).count()
    return figures


def attempts_per_hour(*, at: Moments) -> dict[datetime, tuple[int, int]]:
    """Delivery attempts (succeeded, failed) started in each hour (UTC) of the last ``HOURS``, the current one last,
    every hour present. One GROUP BY query."""
    rows = (
        DeliveryAttempt.objects.filter(started_at__gte=at.first_hour)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("hour")
        .annotate(ok=Count("pk", filter=Q(succeeded=True)), failed=Count("pk", filter=Q(succeeded=False)))
        .order_by("hour")
    )
    counts = {row["hour"]: (row["ok"], row["failed"]) for row in rows}
    hours = (at.first_hour + timedelta(hours=n) for n in range(HOURS))
    return {hour: counts.get(hour, (0, 0)) for hour in hours}


def endpoint_counts() -> dict[str, int]:
    """Endpoints ``failing`` (enabled, in a run of failures) and ``disabled``. One aggregate query."""
    return WebhookEndpoint.objects.aggregate(
        failing=Count("pk", filter=Q(is_enabled=True, failing_since__isnull=False)),
        disabled=Count("pk", filter=Q(is_enabled=False)),
    )


def endpoints_in_trouble() -> list[WebhookEndpoint]:
    """The ``ENDPOINTS_SHOWN`` longest-failing endpoints, then disabled ones, each with its ``pending`` and
    ``dead_letters``, its last error (``last_error``, ``last_status_code``, ``last_error_at``: from the delivery
    whose latest attempt failed last) and ``last_success_at``. One query: subqueries on the endpoint's deliveries
    (its foreign key's index), for the endpoints shown only."""
    endpoints = notification_selectors.with_delivery_counts(notification_selectors.endpoints_failing())
    latest_failure = (
        Delivery.objects.filter(endpoint=OuterRef("pk"))
        .exclude(status=Delivery.SUCCEEDED)
        .exclude(last_error="")
        .order_by("-updated_at", "-pk")
    )
    last_success = (
        Delivery.objects.filter(endpoint=OuterRef("pk"), status=Delivery.SUCCEEDED)
        .order_by()
        .values("endpoint")
        .annotate(at=Max("delivered_at"))
        .values("at")
    )
    return list(
        endpoints.annotate(
            last_error=Subquery(latest_failure.values("last_error")[:1]),
            last_status_code=Subquery(latest_failure.values("last_status_code")[:1]),
            last_error_at=Subquery(latest_failure.values("updated_at")[:1]),
            last_success_at=Subquery(last_success),
        )[:ENDPOINTS_SHOWN]
    )


def network_failures(*, at: Moments) -> dict[str, int]:
    """Asynchronous network-token ``requests`` and batch ``items`` that failed in the last 24 hours. Two counts."""
    return {
        "requests": ProvisioningRequest.objects.filter(
            status=ProvisioningRequest.FAILED, updated_at__gte=at.day_ago
        ).count(),
        "items": BatchItem.objects.filter(status=BatchItem.FAILED, finished_at__gte=at.day_ago).count(),
    }
