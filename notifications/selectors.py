from datetime import UTC, datetime, timedelta

from django.db.models import Count, F, Min, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, TruncHour

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


def events_about(*, merchant_id: int, token_ids: list[str], limit: int) -> list[Event]:
    """The merchant's newest ``limit`` events whose payload names one of ``token_ids`` (its ``tokenId``: a vault
    token or a network token), with their deliveries and endpoints. The index of the events' tokenId finds them,
    so a token's page costs the same whatever the number of the merchant's events."""
    return list(
        Event.objects.filter(merchant_id=merchant_id, data__tokenId__in=token_ids)
        .prefetch_related("deliveries__endpoint")
        .order_by("-created_at", "-pk")[:limit]
    )


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
    a join, so that a page of endpoints costs a count per endpoint shown, not a join of all their deliveries; each
    count reads its range of an index alone (delivery_pending_by_endpoint, delivery_by_endpoint)."""

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


def delivery_counts(*, endpoint: WebhookEndpoint) -> dict[str, int]:
    """The endpoint's ``pending`` deliveries and its ``dead_letters`` (FAILED): one count over its ranges of the
    delivery_by_endpoint index."""
    return Delivery.objects.filter(endpoint=endpoint, status__in=[Delivery.PENDING, Delivery.FAILED]).aggregate(
        pending=Count("pk", filter=Q(status=Delivery.PENDING)),
        dead_letters=Count("pk", filter=Q(status=Delivery.FAILED)),
    )


def newest_deliveries(status: str) -> QuerySet[Delivery]:
    """The deliveries in ``status`` of the endpoint of the outer query, the last written first: a walk backwards
    along the endpoint's range of the delivery_by_endpoint index (endpoint, status, updated_at) that stops at the
    first row a ``[:1]`` takes, however many deliveries the endpoint has.

    A succeeded delivery was last written when it succeeded (the attempt writes ``delivered_at`` and ``updated_at``
    together, and nothing writes a succeeded delivery after), so its newest is also the one delivered last."""
    return Delivery.objects.filter(endpoint=OuterRef("pk"), status=status).order_by("-updated_at", "-pk")


def endpoints_in_trouble(*, limit: int) -> list[WebhookEndpoint]:
    """The first ``limit`` of ``endpoints_failing``, each with its ``pending`` and ``dead_letters``, when it last
    succeeded (``last_success_at``), and its last error (``last_error``, ``last_status_code``, ``last_error_at``:
    the newer of its newest dead letter and its newest delivery retrying after an error). Two queries, each reading
    a few index entries per endpoint shown, not its deliveries."""
    endpoints = list(
        with_delivery_counts(endpoints_failing()).annotate(
            last_success_at=Subquery(newest_deliveries(Delivery.SUCCEEDED).values("delivered_at")[:1]),
            dead_letter_id=Subquery(newest_deliveries(Delivery.FAILED).exclude(last_error="").values("pk")[:1]),
            retrying_id=Subquery(newest_deliveries(Delivery.PENDING).exclude(last_error="").values("pk")[:1]),
        )[:limit]
    )
    ids = [pk for endpoint in endpoints for pk in (endpoint.dead_letter_id, endpoint.retrying_id) if pk]
    failures = Delivery.objects.only("last_error", "last_status_code", "updated_at").in_bulk(ids)
    for endpoint in endpoints:
        candidates = [failures[pk] for pk in (endpoint.dead_letter_id, endpoint.retrying_id) if pk in failures]
        latest = max(candidates, key=lambda delivery: (delivery.updated_at, delivery.pk), default=None)
        endpoint.last_error = latest.last_error if latest else ""
        endpoint.last_status_code = latest.last_status_code if latest else None
        endpoint.last_error_at = latest.updated_at if latest else None
    return endpoints


def endpoint_counts() -> dict[str, int]:
    """Endpoints ``failing`` (enabled, in a run of failures) and ``disabled``. One aggregate query."""
    return WebhookEndpoint.objects.aggregate(
        failing=Count("pk", filter=Q(is_enabled=True, failing_since__isnull=False)),
        disabled=Count("pk", filter=Q(is_enabled=False)),
    )


def dead_letters_since(*, since: datetime) -> int:
    """Deliveries dead-lettered since ``since``, by the time of their last attempt (the delivery_finished index)."""
    return Delivery.objects.filter(status=Delivery.FAILED, updated_at__gte=since).count()


def attempts_per_hour(*, since: datetime) -> dict[datetime, tuple[int, int]]:
    """Delivery attempts (succeeded, failed) started in each hour (UTC) from ``since``, for the hours that had
    any. One GROUP BY query over the attempt_started_at index's last entries."""
    rows = (
        DeliveryAttempt.objects.filter(started_at__gte=since)
        .annotate(hour=TruncHour("started_at", tzinfo=UTC))
        .values("hour")
        .annotate(ok=Count("pk", filter=Q(succeeded=True)), failed=Count("pk", filter=Q(succeeded=False)))
        .order_by("hour")
    )
    return {row["hour"]: (row["ok"], row["failed"]) for row in rows}


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


def dead_letters_to_replay(*, endpoints) -> QuerySet[Delivery]:
    """What a replay of ``endpoints`` (a list or a queryset) may take: their dead letters (FAILED), of those of
    them that are enabled as the database has it now (a disabled endpoint is left alone)."""
    return Delivery.objects.filter(endpoint__in=endpoints, endpoint__is_enabled=True, status=Delivery.FAILED)


def replay_window(*, since: datetime, until: datetime) -> Q:
    """Which of them a replay in [since, until] takes: those whose event happened then (not when they failed)."""
    return Q(event__created_at__gte=since, event__created_at__lte=until)


def replayable(*, endpoints, since: datetime, until: datetime) -> QuerySet[Delivery]:
    """The dead letters that ``services.endpoint_replay_failed`` replays: the one rule, which the count the
    operator reads before replaying uses too."""
    return dead_letters_to_replay(endpoints=endpoints).filter(replay_window(since=since, until=until))


def replayable_count(*, endpoints: list[WebhookEndpoint], since: datetime, until: datetime) -> dict:
    """``in_window``: the dead letters of the enabled ``endpoints`` whose event happened in [since, until], what
    ``replayable`` holds and ``endpoint_replay_failed`` would replay now; ``failed``: all their dead letters. One
    aggregate query."""
    return dead_letters_to_replay(endpoints=endpoints).aggregate(
        failed=Count("pk"), in_window=Count("pk", filter=replay_window(since=since, until=until))
    )


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
    """The endpoint's delivery that succeeded last, with its event, or None if none ever did: the first entry of
    its succeeded range of the delivery_by_endpoint index, read backwards (see ``newest_deliveries``)."""
    return (
        Delivery.objects.filter(endpoint=endpoint, status=Delivery.SUCCEEDED)
        .select_related("event")
        .order_by("-updated_at", "-pk")
        .first()
    )
