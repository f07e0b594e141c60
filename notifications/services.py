"""Webhook delivery that never loses an event.

The outbox: ``event_emit`` writes the event and one delivery per subscribed endpoint in the caller's transaction,
so an event exists exactly when the change that caused it committed. After commit, each delivery is queued to
Celery; if that fails (broker down, process killed), nothing is lost: the delivery row is due
(``next_attempt_at``) and the sweeper, run by beat every few seconds, queues whatever is due and not already queued
or claimed.

An attempt first claims its delivery with one conditional UPDATE (a lease), so duplicate messages, redelivered
messages and the sweeper never make two workers send the same attempt at once; a worker killed mid-attempt leaves a
lease that expires, and the sweeper hands the delivery to another worker. Delivery is therefore at least once, with
a stable ``webhook-id``.

The retry schedule (``WEBHOOK_RETRY_SCHEDULE``, seconds after each failed attempt, ±20 % jitter) lives in
``next_attempt_at``, not in broker countdowns. A ``Retry-After`` answer replaces the scheduled wait, bounded to
[1 s, 24 h]. 410 Gone disables the endpoint. After the last scheduled attempt the delivery is FAILED (a dead
letter) and can be replayed. An endpoint that has failed without a single success for 5 days is disabled.
"""

import json
import logging
import random
import time
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from notifications import signing, ssrf, transport
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint, new_signing_secret
from vault.models import Merchant

logger = logging.getLogger(__name__)

SECRET_GRACE = timedelta(hours=24)
RETRY_AFTER_BOUNDS = (1, 24 * 3600)
UNSET = object()


# ------------------------------------------------------------------------------------------------------------
# Events (the outbox)
# ------------------------------------------------------------------------------------------------------------
def event_emit(*, merchant: Merchant, type: str, data: dict) -> Event:
    """Record an event and its deliveries in the caller's transaction; queue them once it commits.

    ``data`` must hold ids, masked data and metadata only: it is sent as it is.
    """
    with transaction.atomic():
        event = Event.objects.create(merchant=merchant, type=type, data=data)
        endpoints = [e for e in WebhookEndpoint.objects.filter(merchant=merchant, is_enabled=True) if e.wants(type)]
        now = timezone.now()
        deliveries = Delivery.objects.bulk_create(
            [Delivery(event=event, endpoint=endpoint, next_attempt_at=now) for endpoint in endpoints]
        )
        _queue_after_commit([delivery.pk for delivery in deliveries])
    return event


def _queue_after_commit(delivery_ids: list[int]) -> None:
    if delivery_ids:
        # robust: a broker outage must not fail the change that caused the event; the sweeper will queue it.
        transaction.on_commit(lambda: deliveries_queue(delivery_ids=delivery_ids), robust=True)


def deliveries_queue(*, delivery_ids: list[int]) -> None:
    """Hand deliveries to the workers and note that a message is on its way (the sweeper leaves them alone)."""
    from notifications.tasks import deliver

    Delivery.objects.filter(pk__in=delivery_ids).update(
        queued_until=timezone.now() + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS)
    )
    for delivery_id in delivery_ids:
        deliver.delay(delivery_id)


def deliveries_sweep(*, limit: int = 1000) -> int:
    """Queue every delivery that is due and neither queued nor claimed (lost messages, killed workers, retries)."""
    now = timezone.now()
    due = list(
        Delivery.objects.filter(status=Delivery.PENDING, next_attempt_at__lte=now)
        .filter(Q(queued_until__isnull=True) | Q(queued_until__lt=now))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    if due:
        deliveries_queue(delivery_ids=due)
    return len(due)


# ------------------------------------------------------------------------------------------------------------
# Attempts
# ------------------------------------------------------------------------------------------------------------
def _claim(delivery_id: int) -> bool:
    now = timezone.now()
    return bool(
        Delivery.objects.filter(pk=delivery_id, status=Delivery.PENDING, next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + timedelta(seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS))
    )


def event_body(event: Event) -> bytes:
    """The bytes sent for ``event``: the same on every attempt, so the signature covers a stable payload."""
    payload = {"type": event.type, "timestamp": event.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "data": event.data}
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def delivery_attempt(*, delivery_id: int) -> DeliveryAttempt | None:
    """Make one attempt at a due delivery; returns the attempt, or None when it was not due or someone else's.

    Idempotent: a duplicate message for the same delivery finds it claimed or no longer due and does nothing.
    """
    if not _claim(delivery_id):
        return None
    delivery = Delivery.objects.select_related("event", "endpoint").get(pk=delivery_id)
    endpoint, event = delivery.endpoint, delivery.event
    started = timezone.now()
    clock = time.monotonic()
    answer, error = None, ""
    if not endpoint.is_enabled:
        error = "endpoint disabled"
    else:
        body = event_body(event)
        headers = signing.headers(
            secrets=endpoint.signing_secrets(), message_id=event.public_id, timestamp=int(time.time()), body=body
        )
        try:
            answer = transport.send(url=endpoint.url, body=body, headers=headers,
                                    timeout=settings.WEBHOOK_TIMEOUT_SECONDS)
        except transport.TransportError as exc:
            error = str(exc)
    duration_ms = int((time.monotonic() - clock) * 1000)
    return _record(delivery, answer=answer, error=error, started=started, duration_ms=duration_ms)


@transaction.atomic
def _record(delivery: Delivery, *, answer, error: str, started: datetime, duration_ms: int) -> DeliveryAttempt:
    delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=delivery.endpoint_id)
    succeeded = answer is not None and 200 <= answer.status < 300
    if answer is not None and not succeeded:
        error = f"HTTP {answer.status}" + (" (redirects are not followed)" if 300 <= answer.status < 400 else "")
    now = timezone.now()
    attempt = DeliveryAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts.count() + 1,
        started_at=started,
        duration_ms=duration_ms,
        status_code=answer.status if answer else None,
        response_body=answer.body if answer else "",
        error=error[:500],
        succeeded=succeeded,
    )
    delivery.attempt_count += 1
    delivery.last_status_code = answer.status if answer else None
    delivery.last_error = error[:500]
    delivery.claimed_until = None
    delivery.queued_until = None
    if succeeded:
        delivery.status, delivery.next_attempt_at, delivery.delivered_at = Delivery.SUCCEEDED, None, now
        if endpoint.failing_since:
            endpoint.failing_since = None
            endpoint.save(update_fields=["failing_since"])
    else:
        gone = answer is not None and answer.status == 410
        delay = None if gone or not endpoint.is_enabled else _next_delay(delivery.attempt_count, answer)
        if delay is None:
            delivery.status, delivery.next_attempt_at = Delivery.FAILED, None
        else:
            delivery.next_attempt_at = now + timedelta(seconds=delay)
        if endpoint.is_enabled:
            _note_endpoint_failure(endpoint, gone=gone, now=now)
    delivery.updated_at = now
    delivery.save(update_fields=[
        "status", "attempt_count", "next_attempt_at", "claimed_until", "queued_until", "last_status_code",
        "last_error", "delivered_at", "updated_at",
    ])
    return attempt


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


def _note_endpoint_failure(endpoint: WebhookEndpoint, *, gone: bool, now: datetime) -> None:
    fields = []
    if endpoint.failing_since is None:
        endpoint.failing_since = now
        fields.append("failing_since")
    reason = ""
    if gone:
        reason = "The endpoint answered 410 Gone"
    elif now - endpoint.failing_since >= timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS):
        reason = f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS} days"
    if reason and endpoint.is_enabled:
        endpoint.is_enabled, endpoint.disabled_reason, endpoint.disabled_at = False, reason, now
        fields += ["is_enabled", "disabled_reason", "disabled_at"]
        logger.warning("webhook endpoint %s disabled: %s", endpoint.public_id, reason)
    if fields:
        endpoint.save(update_fields=fields)


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
            status=Delivery.PENDING, attempt_count=0, next_attempt_at=now, queued_until=None, updated_at=now,
        )
        _queue_after_commit(ids)
    return len(ids)


def delivery_retry_now(*, delivery: Delivery) -> bool:
    """A pending delivery's next attempt now rather than at its scheduled time; False when it is not pending or
    its endpoint is disabled (nothing is queued then)."""
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, status=Delivery.PENDING, endpoint__is_enabled=True).update(
            next_attempt_at=timezone.now(), queued_until=None, updated_at=timezone.now()
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

