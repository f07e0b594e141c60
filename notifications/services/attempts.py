"""Delivery attempts: claimed in batches, sent over one kept-alive connection per endpoint, signed, recorded, and
retried on the schedule."""

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import groupby

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from core import outbound
from notifications import signing
from notifications.metrics import attempt_count
from notifications.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    WebhookEndpoint,
    new_claim,
)
from notifications.services.outbox import deliveries_queue

logger = logging.getLogger(__name__)

RETRY_AFTER_BOUNDS = (1, 24 * 3600)
# What an attempt keeps of the receiver's answer (DeliveryAttempt.response_body): enough to tell why it failed.
MAX_ANSWER_BODY = 20 * 1024


# ------------------------------------------------------------------------------------------------------------
# Attempts
# ------------------------------------------------------------------------------------------------------------
@dataclass
class _Outcome:
    """One attempt, sent or not (an endpoint disabled before it was sent), waiting to be recorded."""

    delivery: Delivery
    started: datetime
    duration_ms: int = 0
    answer: outbound.Answer | None = None
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
    return claimed_deliveries_attempt(deliveries=_claim(delivery_ids, fill_to=fill_to))


def claimed_deliveries_attempt(*, deliveries: list[Delivery]) -> list[DeliveryAttempt]:
    """``deliveries_attempt`` for deliveries claimed already (their ``claim`` and ``claimed_until`` committed, as
    the dispatcher writes them on the few it makes and sends itself), with their events and endpoints loaded, each
    endpoint's together."""
    if not deliveries:
        return []
    began = time.monotonic()
    budget = settings.WEBHOOK_CLAIM_LEASE_SECONDS * 0.9 - settings.WEBHOOK_TIMEOUT_SECONDS
    outcomes: list[_Outcome] = []
    unsent: list[int] = []
    for _, group in groupby(deliveries, key=lambda delivery: delivery.endpoint_id):
        group = list(group)
        endpoint = group[0].endpoint
        enabled = endpoint.is_enabled
        signing_secrets = endpoint.signing_secrets()
        with outbound.Connection(
            endpoint.url, timeout=settings.WEBHOOK_TIMEOUT_SECONDS, max_body=MAX_ANSWER_BODY
        ) as connection:
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
    due = Delivery.objects.filter(status=Delivery.PENDING, next_attempt_at__lte=now).filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    )
    wanted = list(delivery_ids)
    if fill_to > len(wanted):
        endpoints = Delivery.objects.filter(pk__in=delivery_ids).values("endpoint_id")
        wanted += (
            due.filter(endpoint__in=endpoints)
            .exclude(pk__in=delivery_ids)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[: fill_to - len(wanted)]
        )
    claim = new_claim()
    taken = due.filter(pk__in=wanted).update(
        claimed_until=now + timedelta(seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS), claim=claim
    )
    if not taken:
        return []
    return list(
        Delivery.objects.select_related("event", "endpoint")
        .filter(pk__in=wanted, claim=claim)
        .order_by("endpoint_id", "pk")
    )


def _send(connection: outbound.Connection, delivery: Delivery, signing_secrets: list[str]) -> _Outcome:
    event = delivery.event
    outcome = _Outcome(delivery, started=timezone.now())
    clock = time.monotonic()
    body = event_body(event)
    headers = {
        **signing.headers(secrets=signing_secrets, message_id=event.public_id, timestamp=int(time.time()), body=body),
        "Content-Type": "application/json",
        "User-Agent": "tokenvault-webhooks/1",
    }
    try:
        outcome.answer = connection.send(method="POST", headers=headers, body=body)
    except outbound.TransportError as exc:
        outcome.error = str(exc)
    outcome.duration_ms = int((time.monotonic() - clock) * 1000)
    if outcome.answer is not None and not outcome.succeeded:
        status = outcome.answer.status
        outcome.error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return outcome


@transaction.atomic
def _record(outcomes: list[_Outcome]) -> list[DeliveryAttempt]:
    """Write the attempts and move their deliveries on (succeeded, rescheduled or dead-lettered), a few statements
    for the whole batch, and count them by outcome; then the health of their endpoints, only where it changes.

    A delivery deleted meanwhile (its endpoint was) gets no attempt, nor one whose claim ran out and went to another
    worker (a DNS lookup has no timeout): that worker sends it again and records that.
    """
    now = timezone.now()
    still_ours = set(
        Delivery.objects.select_for_update()
        .filter(pk__in=[o.delivery.pk for o in outcomes], claim__in={o.delivery.claim for o in outcomes})
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    outcomes = [o for o in outcomes if o.delivery.pk in still_ours]
    numbers = _attempt_numbers([o.delivery for o in outcomes])
    done = {"claimed_until": None, "claim": "", "queued_until": None, "updated_at": now}
    recorded = set()
    succeeded = sorted((o.answer.status, o.delivery.pk) for o in outcomes if o.succeeded)
    for status, rows in groupby(succeeded, key=lambda row: row[0]):
        ids = [pk for _, pk in rows]
        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.SUCCEEDED,
            attempt_count=F("attempt_count") + 1,
            next_attempt_at=None,
            delivered_at=now,
            last_status_code=status,
            last_error="",
            **done,
        )
        recorded.update(ids)
    failed = [o for o in outcomes if not o.succeeded]
    if failed:
        # Locked and re-read: a replay that came in during the attempt has reset the count the schedule goes by.
        counts = dict(
            Delivery.objects.select_for_update()
            .filter(pk__in=[o.delivery.pk for o in failed])
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
        Delivery.objects.bulk_update(
            rescheduled,
            fields=[
                "status",
                "attempt_count",
                "next_attempt_at",
                "last_status_code",
                "last_error",
                *done,
            ],
        )
        recorded.update(counts)
    outcomes = [o for o in outcomes if o.delivery.pk in recorded]
    attempts = DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=o.delivery,
                number=numbers[o.delivery.pk],
                started_at=o.started,
                duration_ms=o.duration_ms,
                status_code=o.answer.status if o.answer else None,
                response_body=o.answer.body.decode("utf-8", "replace") if o.answer else "",
                error=o.error[:500],
                succeeded=o.succeeded,
            )
            for o in outcomes
        ]
    )
    for o in outcomes:
        attempt_count(_outcome_label(o), seconds=o.duration_ms / 1000 if o.sent else None)
    for _, group in groupby(outcomes, key=lambda o: o.delivery.endpoint_id):
        group = list(group)
        _note_endpoint_health(group[0].delivery.endpoint, [o for o in group if o.sent], now=now)
    return attempts


def _outcome_label(outcome: _Outcome) -> str:
    """What a recorded attempt came to, for ``tokenvault_webhook_attempts_total`` (``_record`` has moved its delivery
    on: a dead letter is FAILED)."""
    if outcome.succeeded:
        return "delivered"
    if not outcome.sent:
        return "skipped"
    return "dead" if outcome.delivery.status == Delivery.FAILED else "retry"


def _attempt_numbers(deliveries: list[Delivery]) -> dict[int, int]:
    """The number of each delivery's next attempt, counting every attempt it ever had (replays included)."""
    # Every attempt leaves a status code or an error on its delivery: one with neither was never tried, and its
    # attempt is number 1 without asking (the common case, the first attempt, costs no query).
    tried = [d.pk for d in deliveries if d.last_status_code is not None or d.last_error]
    made = (
        dict(
            DeliveryAttempt.objects.filter(delivery__in=tried)
            .order_by()
            .values("delivery")
            .annotate(n=Count("pk"))
            .values_list("delivery", "n")
        )
        if tried
        else {}
    )
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
