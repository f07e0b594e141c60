from datetime import datetime, timedelta

from django.db.models import Count, F, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from core.errors import ResourceNotFound
from merchants.models import Merchant
from notifications.models import Delivery, Event, Heartbeat, WebhookEndpoint


def endpoint_list(*, merchant: Merchant) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(merchant=merchant).order_by("created_at")


def endpoint_get(*, merchant: Merchant, public_id: str) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.filter(merchant=merchant, public_id=public_id).first()
    if endpoint is None:
        raise ResourceNotFound("The webhook endpoint does not exist")
    return endpoint


def event_list(*, merchant: Merchant, type: str | None = None) -> QuerySet[Event]:
    events = Event.objects.filter(merchant=merchant).prefetch_related(
        Prefetch("deliveries", queryset=Delivery.objects.select_related("endpoint").order_by("pk"))
    )
    return events.filter(type=type) if type else events


def event_get(*, merchant: Merchant, public_id: str) -> Event:
    event = event_list(merchant=merchant).filter(public_id=public_id).first()
    if event is None:
        raise ResourceNotFound("The event does not exist")
    return event


# ------------------------------------------------------------------------------------------------------------
# The back-office dashboard: aggregates only, a fixed number of queries whatever the number of rows
# ------------------------------------------------------------------------------------------------------------
def delivery_health(*, now: datetime) -> dict:
    """Deliveries succeeded and finished (succeeded or dead-lettered) in the last 24 hours and 7 days, by the time
    of their last attempt (``updated_at``); the backlog: pending deliveries, those overdue (their
    ``next_attempt_at`` passed) and the oldest overdue ``next_attempt_at``; the dead letters (FAILED) now.
    One aggregate query."""
    finished = Q(status__in=[Delivery.SUCCEEDED, Delivery.FAILED])
    succeeded = Q(status=Delivery.SUCCEEDED)
    overdue = Q(status=Delivery.PENDING, next_attempt_at__lt=now)
    windows = {"24h": now - timedelta(hours=24), "7d": now - timedelta(days=7)}
    aggregates = {}
    for name, since in windows.items():
        aggregates[f"succeeded_{name}"] = Count("pk", filter=succeeded & Q(updated_at__gte=since))
        aggregates[f"finished_{name}"] = Count("pk", filter=finished & Q(updated_at__gte=since))
    return Delivery.objects.aggregate(
        **aggregates,
        pending=Count("pk", filter=Q(status=Delivery.PENDING)),
        overdue=Count("pk", filter=overdue),
        oldest_overdue_at=Min("next_attempt_at", filter=overdue),
        dead_letters=Count("pk", filter=Q(status=Delivery.FAILED)),
    )


def endpoints_failing() -> QuerySet[WebhookEndpoint]:
    """Endpoints failing now (a run of failures under way) or disabled, the longest-failing first."""
    return (
        WebhookEndpoint.objects.filter(Q(failing_since__isnull=False) | Q(is_enabled=False))
        .select_related("merchant")
        .order_by(F("failing_since").asc(nulls_last=True), F("disabled_at").desc(nulls_last=True), "pk")
    )


def with_delivery_counts(endpoints: QuerySet[WebhookEndpoint]) -> QuerySet[WebhookEndpoint]:
    """Annotate ``pending`` and ``dead_letters``: each endpoint's deliveries in those states. Subqueries rather than
    a join, so that a page of endpoints costs a count per endpoint shown, not a join of all their deliveries."""

    def count(status: str):
        deliveries = (
            Delivery.objects.filter(endpoint=OuterRef("pk"), status=status)
            .order_by()
            .values("endpoint")
            .annotate(count=Count("pk"))
            .values("count")
        )
        return Coalesce(Subquery(deliveries), 0)

    return endpoints.annotate(pending=count(Delivery.PENDING), dead_letters=count(Delivery.FAILED))


def deliveries_sweep_ran_at() -> datetime | None:
    """When the webhook sweeper, which beat sends every few seconds, last ran (``services.heartbeat_record``), or
    None if it never has."""
    return Heartbeat.objects.filter(name=Heartbeat.DELIVERIES_SWEEP).values_list("beat_at", flat=True).first()
