"""The outbox: events written with the change that caused them, fanned out to their endpoints by a worker,
queued, and swept up when a message was lost. (The module docstring of ``notifications.services`` tells the whole
story.)"""

import functools
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core import queue
from core.db import RowInsert
from merchants.models import Merchant
from notifications.models import (
    Delivery,
    Event,
    Heartbeat,
    WebhookEndpoint,
    new_claim,
    new_event_ids,
)

logger = logging.getLogger(__name__)

SWEEP_PAGE = 1000  # events the dispatcher, and deliveries the sweeper, take per transaction


# ------------------------------------------------------------------------------------------------------------
# Events (the outbox) and queueing
# ------------------------------------------------------------------------------------------------------------
def event_emit(*, merchant: Merchant, type: str, data: dict) -> Event:
    """Record an event in the caller's transaction; once it commits, the dispatcher makes its deliveries.

    ``data`` must hold ids, masked data and metadata only: it is sent as it is. One statement and no savepoint: a
    failure here fails the caller's transaction, as it must.
    """
    [event] = events_new(merchant_id=merchant.pk, type=type, data=[data])
    _EVENT_INSERT(event)
    events_stored(merchant_id=merchant.pk)
    return event


_EVENT_INSERT = RowInsert(Event)


def events_emit(*, merchant: Merchant, type: str, data: list[dict]) -> list[Event]:
    """``event_emit`` for many events of one merchant and type, in one statement whatever their number (a chunk of
    a network-token batch ends in one transaction)."""
    events = Event.objects.bulk_create(events_new(merchant_id=merchant.pk, type=type, data=data))
    events_stored(merchant_id=merchant.pk)
    return events


def events_new(*, merchant_id: int, type: str, data: list[dict]) -> list[Event]:
    """Unsaved outbox rows of ``event_rows``, as ``Event`` instances."""
    return [
        Event(*[row[name] if name in row else field.get_default() for name, field in _EVENT_COLUMNS])
        for row in event_rows(merchant_id=merchant_id, type=type, data=data)
    ]


_EVENT_COLUMNS = [(field.attname, field) for field in Event._meta.concrete_fields]


def event_rows(*, merchant_id: int, type: str, data: list[dict], created_at: datetime | None = None) -> list[dict]:
    """The columns (by attname) of new outbox rows, one per payload of ``data``, the others taking their defaults:
    what an event is, decided here only. A writer that stores many at once itself (the bulk import's COPY) writes
    them as they are, then calls ``events_stored`` in the same transaction. The ids come from one read of random
    bytes (``new_event_ids``)."""
    created_at = created_at or timezone.now()
    return [
        {"public_id": event_id, "merchant_id": merchant_id, "type": type, "data": each, "created_at": created_at}
        for event_id, each in zip(new_event_ids(len(data)), data, strict=True)
    ]


def events_stored(*, merchant_id: int | None = None) -> None:
    """Have the events written in the caller's transaction fanned out once it commits (``events_fan_out``, on a
    worker), when their merchant (``merchant_id``; any when None) has an endpoint that may want them.

    A message costs the request about as much as the endpoint query the fan-out took off it (0.4 ms of CPU), so a
    process asks whether a merchant has an enabled endpoint at most every ``WEBHOOK_LISTENERS_TTL`` seconds, and
    sends nothing for one that has none. Events left unannounced lose nothing: the sweeper fans out whatever no message
    announced, within its interval (a merchant's first endpoint gets its first events that much later). ``robust``: a
    broker outage must not fail the change that caused the events.
    """
    if merchant_id is None or _has_endpoints(merchant_id):
        transaction.on_commit(_fan_out_soon, robust=True)


def _fan_out_soon() -> None:
    queue.send("notifications.tasks.fan_out_events")


_LISTENERS_KEPT = 10_000  # merchants remembered at most (then forgotten all at once)
_listeners: dict[int, tuple[float, bool]] = {}  # merchant id → (monotonic time asked, has an enabled endpoint)


def _has_endpoints(merchant_id: int) -> bool:
    now = time.monotonic()
    known = _listeners.get(merchant_id)
    if known is None or now - known[0] >= settings.WEBHOOK_LISTENERS_TTL:
        if len(_listeners) >= _LISTENERS_KEPT:
            _listeners.clear()
        known = _listeners[merchant_id] = (
            now,
            WebhookEndpoint.objects.filter(merchant_id=merchant_id, is_enabled=True).exists(),
        )
    return known[1]


def endpoints_changed(merchant_id: int) -> None:
    """This process asks again at the merchant's next event once the change is committed (other processes within
    ``WEBHOOK_LISTENERS_TTL``)."""
    _listeners.pop(merchant_id, None)
    transaction.on_commit(lambda: _listeners.pop(merchant_id, None))


def events_fan_out(*, limit: int | None = None, attempt: Callable[[list[Delivery]], object] | None = None) -> int:
    """Turn the events not fanned out yet into deliveries, oldest first, a page at a time; returns how many events.

    Each event gets one delivery per enabled endpoint of its merchant that wants its type and existed when it
    happened, in the transaction that marks the event fanned out (at least once: a crash before the commit leaves
    the event to the next run, and no delivery); the deliveries are queued once it commits. Pages are taken with
    SKIP LOCKED, so two dispatchers never fan out one event twice.

    ``attempt`` (a worker's): a page that makes at most one message's worth of deliveries (``WEBHOOK_BATCH_SIZE``)
    writes them claimed, and hands them to it once committed rather than queuing them, so a trickle of events is
    sent without a second trip through the broker and a claim (``claimed_deliveries_attempt``); should that fail,
    their leases run out and the sweeper queues them. A backlog is queued, to be shared by every worker.
    """
    limit = limit or settings.WEBHOOK_SWEEP_LIMIT
    fanned_out = 0
    while fanned_out < limit:
        with transaction.atomic():
            events = list(
                Event.objects.select_for_update(skip_locked=True)
                .filter(fanned_out=False)
                .order_by("pk")[: min(SWEEP_PAGE, limit - fanned_out)]
            )
            if not events:
                break
            endpoints = {}
            for endpoint in WebhookEndpoint.objects.filter(
                merchant__in={e.merchant_id for e in events}, is_enabled=True
            ).order_by("pk"):
                endpoints.setdefault(endpoint.merchant_id, []).append(endpoint)
            now = timezone.now()
            deliveries = [
                # Marked queued from the start: the messages go out right after the commit.
                Delivery(
                    event=event,
                    endpoint=endpoint,
                    next_attempt_at=now,
                    queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS),
                    created_at=now,
                    updated_at=now,
                )
                for event in events
                for endpoint in endpoints.get(event.merchant_id, ())
                if endpoint.wants(event.type) and endpoint.created_at <= event.created_at
            ]
            here = attempt is not None and 0 < len(deliveries) <= settings.WEBHOOK_BATCH_SIZE
            if here:  # claimed by the caller from the start, as a worker claims what it takes
                claim, claimed_until = new_claim(), now + timedelta(seconds=settings.WEBHOOK_CLAIM_LEASE_SECONDS)
                for delivery in deliveries:
                    delivery.claim, delivery.claimed_until = claim, claimed_until
            Delivery.objects.bulk_create(deliveries)
            Event.objects.filter(pk__in=[event.pk for event in events]).update(fanned_out=True)
            if here:
                deliveries.sort(key=lambda delivery: (delivery.endpoint_id, delivery.pk))
                transaction.on_commit(functools.partial(attempt, deliveries))
            else:
                deliveries_queue_after_commit([delivery.pk for delivery in deliveries])
        fanned_out += len(events)
        if len(events) < SWEEP_PAGE:
            break
    return fanned_out


def deliveries_queue_after_commit(delivery_ids: list[int]) -> None:
    """Publish ``delivery_ids`` once the transaction commits (their rows must already say ``queued_until``).
    ``robust``: should the broker be down, the sweeper queues them once ``queued_until`` has passed."""
    if delivery_ids:
        transaction.on_commit(lambda: _publish(delivery_ids), robust=True)


def _publish(delivery_ids: list[int]) -> None:
    size = settings.WEBHOOK_BATCH_SIZE
    for start in range(0, len(delivery_ids), size):
        queue.send("notifications.tasks.deliver", delivery_ids[start : start + size])


def deliveries_queue(*, delivery_ids: list[int]) -> None:
    """Hand deliveries to the workers now and note that a message is on its way (the sweeper leaves them alone)."""
    Delivery.objects.filter(pk__in=delivery_ids).update(
        queued_until=timezone.now() + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS)
    )
    _publish(delivery_ids)


def deliveries_sweep(*, limit: int | None = None) -> int:
    """Fan out the events a lost message left (``events_fan_out``), then queue every delivery that is due and
    neither queued nor claimed (lost messages, killed workers, retries), oldest first, up to ``limit``
    (``WEBHOOK_SWEEP_LIMIT``) a run; returns how many deliveries it queued.

    It goes on, a page at a time, while there is a backlog, so that one run can queue more than the workers send in
    a sweep interval. Each page is taken with SKIP LOCKED and marked queued in one transaction, so two sweepers
    never queue the same delivery twice.
    """
    limit = limit or settings.WEBHOOK_SWEEP_LIMIT
    heartbeat_record(name=Heartbeat.DELIVERIES_SWEEP)  # /healthz's sign that beat (and a worker) is alive
    events_fan_out(limit=limit)  # what a lost message left
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
                .values_list("pk", "endpoint_id")[: min(SWEEP_PAGE, limit - queued)]
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
# Heartbeats of periodic tasks
# ------------------------------------------------------------------------------------------------------------
def heartbeat_record(*, name: str) -> None:
    """Note that the periodic task ``name`` runs now: one row per task, inserted or rewritten in one statement (two
    sweepers at once both succeed, the later time wins)."""
    Heartbeat.objects.bulk_create(
        [Heartbeat(name=name, beat_at=timezone.now())],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["beat_at"],
    )
