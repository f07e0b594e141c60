"""Webhook delivery that never loses an event.

The outbox: ``event_emit`` writes the event and one delivery per subscribed endpoint in the caller's transaction,
so an event exists exactly when the change that caused it committed. After commit the deliveries are queued to
Celery, a batch of ids per message (the events of one transaction share their messages); if that fails (broker
down, process killed), nothing is lost: the delivery row is due (``next_attempt_at``) and the sweeper, run by beat
every few seconds, queues whatever is due and not already queued (``queued_until``) or claimed.

A worker first claims the due deliveries of its message, filled up with other due deliveries of the same endpoints,
with one conditional UPDATE (a lease, ``claimed_until``, under a random ``claim``), so duplicate messages,
redelivered messages and the sweeper never make two workers send the same attempt at once; a worker killed
mid-batch leaves leases that expire, and the sweeper hands those deliveries to another worker. Delivery is therefore
at least once, with a stable ``webhook-id``. The claimed deliveries of one endpoint go out one after the other over
one kept-alive connection, and the attempts are recorded with a few statements for the whole batch; endpoint health
is written only when it changes, with conditional updates rather than a lock on the endpoint row, so workers sending
to one endpoint never take turns.

The retry schedule (``WEBHOOK_RETRY_SCHEDULE``, seconds after each failed attempt, ±20 % jitter) lives in
``next_attempt_at``, not in broker countdowns. A ``Retry-After`` answer replaces the scheduled wait, bounded to
[1 s, 24 h]. 410 Gone disables the endpoint. After the last scheduled attempt the delivery is FAILED (a dead
letter) and can be replayed. An endpoint that has failed without a single success for 5 days is disabled.
"""

import json
import logging
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import groupby

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from notifications import signing, ssrf, transport
from notifications.models import Delivery, DeliveryAttempt, Event, Heartbeat, WebhookEndpoint, new_signing_secret
from vault.models import Merchant

logger = logging.getLogger(__name__)

SECRET_GRACE = timedelta(hours=24)
RETRY_AFTER_BOUNDS = (1, 24 * 3600)
SWEEP_PAGE = 1000  # deliveries the sweeper takes per transaction
UNSET = object()


# ------------------------------------------------------------------------------------------------------------
# Events (the outbox) and queueing
# ------------------------------------------------------------------------------------------------------------
def event_emit(*, merchant: Merchant, type: str, data: dict) -> Event:
    """Record an event and its deliveries in the caller's transaction; queue them once it commits.

    ``data`` must hold ids, masked data and metadata only: it is sent as it is. Three statements (two when no
    endpoint wants the event) and no savepoint: a failure here fails the caller's transaction, as it must.
    """
    [event] = events_emit(merchant=merchant, type=type, data=[data])
    return event


def events_emit(*, merchant: Merchant, type: str, data: list[dict]) -> list[Event]:
    """``event_emit`` for many events of one merchant and type, in the same three statements whatever their number
    (a chunk of a network-token batch ends in one transaction)."""
    with transaction.atomic(savepoint=False):
        endpoints = [e for e in WebhookEndpoint.objects.filter(merchant=merchant, is_enabled=True) if e.wants(type)]
        events = Event.objects.bulk_create([Event(merchant=merchant, type=type, data=each) for each in data])
        if endpoints:
            now = timezone.now()
            # Marked queued from the start: the message goes out right after the commit (see _queue_after_commit).
            queued_until = now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS)
            deliveries = Delivery.objects.bulk_create([
                Delivery(event=event, endpoint=endpoint, next_attempt_at=now, queued_until=queued_until,
                         created_at=now, updated_at=now)
                for event in events for endpoint in endpoints
            ])
            _queue_after_commit([delivery.pk for delivery in deliveries])
    return events


def _queue_after_commit(delivery_ids: list[int]) -> None:
    """Publish ``delivery_ids`` once the transaction commits (their rows must already say ``queued_until``).

    Ids queued one after the other in the same transaction and savepoint join the same pending callback, so a
    transaction emitting many events sends a few messages of ``WEBHOOK_BATCH_SIZE`` ids, not one per event. (A
    callback of an inner savepoint lives and dies with that savepoint, so only callbacks registered under the same
    savepoints are joined.) ``robust``: a broker outage must not fail the change that caused the events; once
    ``queued_until`` has passed, the sweeper queues them.
    """
    if not delivery_ids:
        return
    connection = transaction.get_connection()
    # Django's run_on_commit entries are (savepoint ids, callback, robust), an internal layout: anything else and
    # the ids get a callback of their own, as they would without this joining.
    last = connection.run_on_commit[-1] if connection.in_atomic_block and connection.run_on_commit else None
    if isinstance(last, tuple) and len(last) == 3:
        savepoints, pending, _ = last
        if getattr(pending, "webhook_delivery_ids", None) is not None and savepoints == set(connection.savepoint_ids):
            pending.webhook_delivery_ids.extend(delivery_ids)
            return

    def publish():
        _publish(publish.webhook_delivery_ids)

    publish.webhook_delivery_ids = list(delivery_ids)
    transaction.on_commit(publish, robust=True)


def _publish(delivery_ids: list[int]) -> None:
    from notifications.tasks import deliver

    size = settings.WEBHOOK_BATCH_SIZE
    for start in range(0, len(delivery_ids), size):
        deliver.delay(delivery_ids[start:start + size])


def deliveries_queue(*, delivery_ids: list[int]) -> None:
    """Hand deliveries to the workers now and note that a message is on its way (the sweeper leaves them alone)."""
    Delivery.objects.filter(pk__in=delivery_ids).update(
        queued_until=timezone.now() + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS)
    )
    _publish(delivery_ids)


def deliveries_sweep(*, limit: int | None = None) -> int:
    """Queue every delivery that is due and neither queued nor claimed (lost messages, killed workers, retries),
    oldest first, up to ``limit`` (``WEBHOOK_SWEEP_LIMIT``) a run; returns how many.

    It goes on, a page at a time, while there is a backlog, so that one run can queue more than the workers send in
    a sweep interval. Each page is taken with SKIP LOCKED and marked queued in one transaction, so two sweepers
    never queue the same delivery twice.
    """
    limit = limit or settings.WEBHOOK_SWEEP_LIMIT
    heartbeat_record(name=Heartbeat.DELIVERIES_SWEEP)  # /healthz's sign that beat (and a worker) is alive
    queued = 0
    while queued < limit:
        now = timezone.now()
        with transaction.atomic():
            page = list(
                Delivery.objects.select_for_update(skip_locked=True)
                .filter(status=Delivery.PENDING, next_attempt_at__lte=now)
                .filter(Q(queued_until__isnull=True) | Q(queued_until__lt=now))
                .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
                .order_by("next_attempt_at")
                .values_list("pk", "endpoint_id")[:min(SWEEP_PAGE, limit - queued)]
            )
            Delivery.objects.filter(pk__in=[pk for pk, _ in page]).update(
                queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS)
            )
        # Each endpoint's deliveries side by side (oldest first still), so that a message's batch shares connections.
        page.sort(key=lambda row: row[1])
        _publish([pk for pk, _ in page])
        queued += len(page)
        if len(page) < SWEEP_PAGE:
            break
    return queued


# ------------------------------------------------------------------------------------------------------------
# Attempts
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    """One attempt, sent or not (an endpoint disabled before it was sent), waiting to be recorded."""

    delivery: Delivery
    started: datetime
    duration_ms: int = 0
    answer: transport.Answer | None = None
    error: str = ""
    sent: bool = True

    @property
    def succeeded(self) -> bool:
        return self.answer is not None and 200 <= self.answer.status < 300

    @property
    def gone(self) -> bool:
        return self.answer is not None and self.answer.status == 410


def event_body(event: Event) -> bytes:
    """The bytes sent for ``event``: the same on every attempt, so the signature covers a stable payload."""
    payload = {"type": event.type, "timestamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def delivery_attempt(*, delivery_id: int) -> DeliveryAttempt | None:
    """Make one attempt at a due delivery; returns the attempt, or None when it was not due or someone else's.

    Idempotent: a duplicate message for the same delivery finds it claimed or no longer due and does nothing.
    """
    attempts = deliveries_attempt(delivery_ids=[delivery_id])
    return attempts[0] if attempts else None


def deliveries_attempt(*, delivery_ids: list[int], fill_to: int = 0) -> list[DeliveryAttempt]:
    """Make one attempt at each of these deliveries that is due and nobody else's, and at other due deliveries of
    the same endpoints, oldest first, up to ``fill_to`` in all; returns the attempts made.

    Idempotent per delivery, as ``delivery_attempt``. Each endpoint's deliveries are sent one after the other over
    one connection. The batch stops starting new attempts when one could outlast the claim's lease (every attempt
    is bounded by ``WEBHOOK_TIMEOUT_SECONDS``): those not sent are released and queued again, so a slow endpoint
    never has its deliveries sent twice at once.
    """
    claimed = _claim(delivery_ids, fill_to=fill_to)
    if not claimed:
        return []
    began = time.monotonic()
    budget = settings.WEBHOOK_CLAIM_LEASE_SECONDS * 0.9 - settings.WEBHOOK_TIMEOUT_SECONDS
    outcomes: list[_Outcome] = []
    unsent: list[int] = []
    for _, group in groupby(claimed, key=lambda delivery: delivery.endpoint_id):
        group = list(group)
        endpoint = group[0].endpoint
        enabled = endpoint.is_enabled
        signing_secrets = endpoint.signing_secrets()
        with transport.Connection(url=endpoint.url, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as connection:
            for delivery in group:
                if not enabled:
                    outcomes.append(_Outcome(delivery, started=timezone.now(), error="endpoint disabled", sent=False))
                    continue
                if outcomes and time.monotonic() - began > budget:
                    unsent.append(delivery.pk)
                    continue
                outcome = _send(connection, delivery, signing_secrets)
                outcomes.append(outcome)
                enabled = not outcome.gone  # 410: the rest of the batch finds the endpoint disabled
    attempts = _record(outcomes)
    if unsent:
        Delivery.objects.filter(pk__in=unsent).update(claimed_until=None, claim="")
        deliveries_queue(delivery_ids=unsent)
    return attempts


def _claim(delivery_ids: list[int], *, fill_to: int = 0) -> list[Delivery]:
    """Take a lease on those of ``delivery_ids`` that are due and unclaimed, and on other due ones of the same
    endpoints up to ``fill_to`` in all; returns them with their events and endpoints, each endpoint's together.

    The others are those whose messages wait in the queue behind this one (they will find them taken): a backlog
    goes out in batches even when every event came in a message of its own (API traffic).

    One conditional UPDATE takes them, under a new random ``claim``: of two workers racing for a row, the second
    waits for the first's write and then no longer finds it unclaimed (PostgreSQL re-checks a row it waited for;
    SQLite writes one at a time), so a row goes to one claim only, which reads them back by its token. The
    endpoint rows are not locked: workers sending to one endpoint never take turns.
    """
    now = timezone.now()
    due = (
        Delivery.objects.filter(status=Delivery.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
    )
    wanted = list(delivery_ids)
    if fill_to > len(wanted):
        endpoints = Delivery.objects.filter(pk__in=delivery_ids).values("endpoint_id")
        wanted += due.filter(endpoint__in=endpoints).exclude(pk__in=delivery_ids).order_by("next_attempt_at") \
            .values_list("pk", flat=True)[:fill_to - len(wanted)]
    claim = secrets.token_hex(16)
    taken = due.filter(pk__in=wanted).update(
        claimed_until=now + timedelta(seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS), claim=claim
    )
    if not taken:
        return []
    return list(
        Delivery.objects.select_related("event", "endpoint").filter(pk__in=wanted, claim=claim)
        .order_by("endpoint_id", "pk")
    )


def _send(connection: transport.Connection, delivery: Delivery, signing_secrets: list[str]) -> _Outcome:
    event = delivery.event
    outcome = _Outcome(delivery, started=timezone.now())
    clock = time.monotonic()
    body = event_body(event)
    headers = signing.headers(secrets=signing_secrets, message_id=event.public_id, timestamp=int(time.time()),
                              body=body)
    try:
        outcome.answer = connection.send(body=body, headers=headers)
    except transport.TransportError as exc:
        outcome.error = str(exc)
    outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    if outcome.answer is not None and not outcome.succeeded:
        status = outcome.answer.status
        outcome.error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return outcome


@transaction.atomic
def _record(outcomes: list[_Outcome]) -> list[DeliveryAttempt]:
    """Write the attempts and move their deliveries on (succeeded, rescheduled or dead-lettered), a few statements
    for the whole batch; then the health of their endpoints, only where it changes.

    A delivery deleted meanwhile (its endpoint was) gets no attempt, nor one whose claim ran out and went to another
    worker (a DNS lookup has no timeout): that worker sends it again and records that.
    """
    now = timezone.now()
    still_ours = set(
        Delivery.objects.select_for_update()
        .filter(pk__in=[o.delivery.pk for o in outcomes], claim__in={o.delivery.claim for o in outcomes})
        .order_by("pk").values_list("pk", flat=True)
    )
    outcomes = [o for o in outcomes if o.delivery.pk in still_ours]
    numbers = _attempt_numbers([o.delivery for o in outcomes])
    done = {"claimed_until": None, "claim": "", "queued_until": None, "updated_at": now}
    recorded = set()
    succeeded = sorted((o.answer.status, o.delivery.pk) for o in outcomes if o.succeeded)
    for status, rows in groupby(succeeded, key=lambda row: row[0]):
        ids = [pk for _, pk in rows]
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.SUCCEEDED, attempt_count=F("attempt_count") + 1, next_attempt_at=None, delivered_at=now,
            last_status_code=status, last_error="", **done,
        )
        recorded.update(ids)
    failed = [o for o in outcomes if not o.succeeded]
    if failed:
        # Locked and re-read: a replay that came in during the attempt has reset the count the schedule goes by.
        counts = dict(
            Delivery.objects.select_for_update().filter(pk__in=[o.delivery.pk for o in failed])
            .values_list("pk", "attempt_count")
        )
        rescheduled = []
        for o in failed:
            delivery = o.delivery
            if delivery.pk not in counts:
                continue
            delivery.attempt_count = counts[delivery.pk] + 1
            delay = None if not o.sent or o.gone else _next_delay(delivery.attempt_count, o.answer)
            if delay is None:
                delivery.status, delivery.next_attempt_at = Delivery.FAILED, None
            else:
                delivery.next_attempt_at = now + timedelta(seconds=delay)
            delivery.last_status_code = o.answer.status if o.answer else None
            delivery.last_error = o.error[:500]
            delivery.claimed_until = delivery.queued_until = None
            delivery.claim = ""
            delivery.updated_at = now
            rescheduled.append(delivery)
        Delivery.objects.bulk_update(rescheduled, fields=[
            "status", "attempt_count", "next_attempt_at", "last_status_code", "last_error", *done,
        ])
        recorded.update(counts)
    outcomes = [o for o in outcomes if o.delivery.pk in recorded]
    attempts = DeliveryAttempt.objects.bulk_create([
        DeliveryAttempt(
            delivery=o.delivery, number=numbers[o.delivery.pk], started_at=o.started, duration_ms=o.duration_ms,
            status_code=o.answer.status if o.answer else None, response_body=o.answer.body if o.answer else "",
            error=o.error[:500], succeeded=o.succeeded,
        )
        for o in outcomes
    ])
    for _, group in groupby(outcomes, key=lambda o: o.delivery.endpoint_id):
        group = list(group)
        _note_endpoint_health(group[0].delivery.endpoint, [o for o in group if o.sent], now=now)
    return attempts


def _attempt_numbers(deliveries: list[Delivery]) -> dict[int, int]:
    """The number of each delivery's next attempt, counting every attempt it ever had (replays included)."""
    # Every attempt leaves a status code or an error on its delivery: one with neither was never tried, and its
    # attempt is number 1 without asking (the common case, the first attempt, costs no query).
    tried = [d.pk for d in deliveries if d.last_status_code is not None or d.last_error]
    made = dict(
        DeliveryAttempt.objects.filter(delivery__in=tried).order_by().values("delivery")
        .annotate(n=Count("pk")).values_list("delivery", "n")
    ) if tried else {}
    return {d.pk: made.get(d.pk, 0) + 1 for d in deliveries}


def _next_delay(attempts_made: int, answer) -> float | None:
    """Seconds until the next attempt, or None when the schedule is used up."""
    schedule = settings.WEBHOOK_RETRY_SCHEDULE
    if attempts_made > len(schedule):
        return None
    retry_after = _retry_after_seconds(answer.headers.get("retry-after")) if answer else None
    if retry_after is not None:
        low, high = RETRY_AFTER_BOUNDS
        return min(max(retry_after, low), high)
    return schedule[attempts_made - 1] * random.uniform(0.8, 1.2)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return (parsedate_to_datetime(value) - timezone.now()).total_seconds()
    except (TypeError, ValueError):
        return None


def _note_endpoint_health(endpoint: WebhookEndpoint, attempted: list[_Outcome], *, now: datetime) -> None:
    """Bring ``failing_since`` (the start of the current run of failures) and the disable rules up to date after a
    batch's attempts at ``endpoint``, in the order they were made.

    ``endpoint`` is as it was read at the claim. Conditional updates, no lock on the endpoint row (other workers
    keep sending to it meanwhile), and nothing written when nothing changes: a healthy endpoint costs no statement.
    """
    if not attempted:
        return
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint.pk)
    if attempted[-1].succeeded:
        if endpoint.failing_since is not None:
            endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        return
    if any(outcome.succeeded for outcome in attempted):
        endpoints.update(failing_since=now)  # a new run of failures, since this batch's last success
    elif endpoint.failing_since is None:
        endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    days = settings.WEBHOOK_DISABLE_AFTER_DAYS
    if attempted[-1].gone:
        reason, disabling = "The endpoint answered 410 Gone", endpoints.filter(is_enabled=True)
    elif endpoint.failing_since is not None and now - endpoint.failing_since >= timedelta(days=days):
        # (A run of failures seen younger than that at the claim can only have been restarted since, never aged.)
        reason = f"Every delivery failed for {days} days"
        disabling = endpoints.filter(is_enabled=True, failing_since__lte=now - timedelta(days=days))
    else:
        return
    if disabling.update(is_enabled=False, disabled_reason=reason, disabled_at=now):
        logger.warning("webhook endpoint %s disabled: %s", endpoint.public_id, reason)


# ------------------------------------------------------------------------------------------------------------
# Replays (merchants' redeliver, operators' retry and replay)
# ------------------------------------------------------------------------------------------------------------
def deliveries_replay(*, deliveries) -> int:
    """Start a fresh cycle of attempts now for each delivery to an enabled endpoint; returns how many.

    Attempt history is kept. An attempt in flight keeps its claim: the fresh cycle starts after it.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(deliveries.filter(endpoint__is_enabled=True).values_list("pk", flat=True))
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.PENDING, attempt_count=0, next_attempt_at=now, updated_at=now,
            queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS),
        )
        _queue_after_commit(ids)
    return len(ids)


def delivery_retry_now(*, delivery: Delivery) -> bool:
    """A pending delivery's next attempt now rather than at its scheduled time; False when it is not pending or
    its endpoint is disabled (nothing is queued then)."""
    now = timezone.now()
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, status=Delivery.PENDING, endpoint__is_enabled=True).update(
            next_attempt_at=now, updated_at=now,
            queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS),
        )
        if moved:
            _queue_after_commit([delivery.pk])
    return bool(moved)


def event_redeliver(*, event: Event) -> int:
    """Send ``event`` again to every endpoint of its merchant that wants it, subscribed since or not yet tried."""
    with transaction.atomic():
        now = timezone.now()
        endpoints = [e for e in WebhookEndpoint.objects.filter(merchant=event.merchant_id, is_enabled=True)
                     if e.wants(event.type)]
        existing = set(Delivery.objects.filter(event=event).values_list("endpoint_id", flat=True))
        Delivery.objects.bulk_create(
            [Delivery(event=event, endpoint=e, next_attempt_at=now) for e in endpoints if e.pk not in existing]
        )
        return deliveries_replay(deliveries=Delivery.objects.filter(event=event, endpoint__in=endpoints))


def endpoint_replay_failed(*, endpoint: WebhookEndpoint, since: datetime, until: datetime) -> int:
    """Replay every FAILED delivery of ``endpoint`` whose event happened in [since, until]."""
    return deliveries_replay(deliveries=Delivery.objects.filter(
        endpoint=endpoint, status=Delivery.FAILED, event__created_at__gte=since, event__created_at__lte=until,
    ))


# ------------------------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------------------------
@transaction.atomic
def endpoint_create(*, merchant: Merchant, url: str, event_types: list[str] | None = None,
                    description: str = "") -> WebhookEndpoint:
    """Create an endpoint after vetting its URL (ssrf.UnsafeUrl when refused); its secret is generated."""
    ssrf.vetted_addresses(url)
    return WebhookEndpoint.objects.create(
        merchant=merchant, url=url, event_types=list(event_types or []), description=description
    )


@transaction.atomic
def endpoint_update(*, endpoint: WebhookEndpoint, url=UNSET, event_types=UNSET, description=UNSET,
                    enabled=UNSET, disabled_reason: str = "Disabled by request") -> WebhookEndpoint:
    """Change the given fields (a new URL is vetted: ssrf.UnsafeUrl). Enabling clears the failure streak;
    disabling records ``disabled_reason``."""
    fields = []
    if url is not UNSET:
        ssrf.vetted_addresses(url)
        endpoint.url = url
        fields.append("url")
    if event_types is not UNSET:
        endpoint.event_types = list(event_types)
        fields.append("event_types")
    if description is not UNSET:
        endpoint.description = description
        fields.append("description")
    if enabled is not UNSET and enabled != endpoint.is_enabled:
        endpoint.is_enabled = enabled
        if enabled:
            endpoint.disabled_reason, endpoint.disabled_at, endpoint.failing_since = "", None, None
        else:
            endpoint.disabled_reason, endpoint.disabled_at = disabled_reason[:255], timezone.now()
        fields += ["is_enabled", "disabled_reason", "disabled_at", "failing_since"]
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=[*fields, "updated_at"])
    return endpoint


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> WebhookEndpoint:
    """Stop deliveries to ``endpoint`` (pending ones fail at their next attempt, replayable once re-enabled)."""
    return endpoint_update(endpoint=endpoint, enabled=False, disabled_reason=reason)


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new signing secret; the one it replaces keeps signing alongside it for 24 hours. Only one previous secret
    is kept: rotating again within those hours retires the older one at once."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = timezone.now() + SECRET_GRACE
    endpoint.secret = new_signing_secret()
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["previous_secret", "previous_secret_expires_at", "secret", "updated_at"])
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()


# ------------------------------------------------------------------------------------------------------------
# Heartbeats of periodic tasks
# ------------------------------------------------------------------------------------------------------------
def heartbeat_record(*, name: str) -> None:
    """Note that the periodic task ``name`` runs now: one row per task, inserted or rewritten in one statement (two
    sweepers at once both succeed, the later time wins)."""
    Heartbeat.objects.bulk_create(
        [Heartbeat(name=name, beat_at=timezone.now())],
        update_conflicts=True, unique_fields=["name"], update_fields=["beat_at"],
    )
