from datetime import datetime, timedelta

from django.db.models import Count, F, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from core.errors import ResourceNotFound
from merchants.models import Merchant
from notifications.models import Delivery, DeliveryAttempt, Event, Heartbeat, WebhookEndpoint


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


# ------------------------------------------------------------------------------------------------------------
# The operators' endpoint page and its replay: bounded reads of one endpoint, however many deliveries it has
# ------------------------------------------------------------------------------------------------------------
RECENT_ATTEMPTS = 10
ERROR_SAMPLE = 500  # the endpoint's newest attempts that the error breakdown reads, at most
ERROR_WINDOW = timedelta(hours=24)


def replay_window_start(*, endpoint: WebhookEndpoint, now: datetime) -> datetime:
    """Where "replay failed deliveries" starts by default: for an endpoint failing now, when its run of failures
    began, or earlier if a delivery that died during the run has an older event (one queued before the first
    failure); for an endpoint not failing now, its oldest dead letter's event; with no dead letter, 24 hours ago.
    One aggregate query over the endpoint's dead letters."""
    dead_letters = Delivery.objects.filter(endpoint=endpoint, status=Delivery.FAILED)
    if endpoint.failing_since is not None:
        dead_letters = dead_letters.filter(updated_at__gte=endpoint.failing_since)
    oldest = dead_letters.aggregate(oldest=Min("event__created_at"))["oldest"]
    starts = [moment for moment in (endpoint.failing_since, oldest) if moment is not None]
    return min(starts, default=now - timedelta(hours=24))


def replayable_count(*, endpoints: list[WebhookEndpoint], since: datetime, until: datetime) -> dict:
    """``in_window``: the dead letters (FAILED) of the enabled ``endpoints`` whose event happened in [since, until],
    what ``endpoint_replay_failed`` would replay now; ``failed``: all their dead letters. One aggregate query."""
    enabled = [endpoint.pk for endpoint in endpoints if endpoint.is_enabled]
    window = Q(event__created_at__gte=since, event__created_at__lte=until)
    counts = Delivery.objects.filter(endpoint__in=enabled, status=Delivery.FAILED).aggregate(
        failed=Count("pk"), in_window=Count("pk", filter=window)
    )
    return {"in_window": counts["in_window"], "failed": counts["failed"]}


def endpoint_recent_attempts(*, endpoint: WebhookEndpoint, limit: int = RECENT_ATTEMPTS) -> list[DeliveryAttempt]:
    """The endpoint's newest attempts, newest first, with their delivery and event. Attempts are numbered in the
    order they are written, so the newest are the highest ids: the primary key's index read backwards, no sort."""
    return list(
        DeliveryAttempt.objects.filter(delivery__endpoint=endpoint)
        .select_related("delivery__event")
        .order_by("-pk")[:limit]
    )


def endpoint_error_breakdown(*, endpoint: WebhookEndpoint, now: datetime) -> list[tuple[str, int]]:
    """Why the endpoint's attempts of the last 24 hours failed, most frequent first: ("503", 40), ("timeout", 20),
    ("refused", 18). Read from its newest ``ERROR_SAMPLE`` attempts (the primary key's index backwards), so an
    endpoint with a million attempts costs what one with five hundred does."""
    newest = (
        DeliveryAttempt.objects.filter(delivery__endpoint=endpoint)
        .order_by("-pk")
        .values_list("pk", flat=True)[:ERROR_SAMPLE]
    )
    failures = (
        DeliveryAttempt.objects.filter(pk__in=list(newest), succeeded=False, started_at__gte=now - ERROR_WINDOW)
        .values("status_code", "error")
        .annotate(count=Count("pk"))
    )
    tally: dict[str, int] = {}
    for row in failures:
        reason = error_reason(row["status_code"], row["error"])
        tally[reason] = tally.get(reason, 0) + row["count"]
    return sorted(tally.items(), key=lambda item: (-item[1], item[0]))


def error_reason(status_code: int | None, error: str) -> str:
    """A failed attempt's cause in a word or two, as an operator tallies them: "503", "timeout", "refused", or the
    transport's message up to its first colon ("connection failed")."""
    if status_code:
        return str(status_code)
    if error.startswith("timed out"):
        return "timeout"
    return error.split(":", 1)[0].strip() or "error"


def endpoint_last_success(*, endpoint: WebhookEndpoint) -> Delivery | None:
    """The endpoint's delivery that succeeded last, with its event, or None if none ever did."""
    return (
        Delivery.objects.filter(endpoint=endpoint, status=Delivery.SUCCEEDED)
        .select_related("event")
        .order_by(F("delivered_at").desc(nulls_last=True), "-pk")
        .first()
    )
