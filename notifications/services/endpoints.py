"""Webhook endpoints, and replays (merchants' redeliver, operators' retry and replay)."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core import outbound
from merchants.models import Merchant
from notifications import selectors
from notifications.models import (
    Delivery,
    Event,
    WebhookEndpoint,
    new_signing_secret,
)
from notifications.services.outbox import deliveries_queue_after_commit, endpoints_changed

logger = logging.getLogger(__name__)

SECRET_GRACE = timedelta(hours=24)
UNSET = object()


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
            status=Delivery.PENDING,
            attempt_count=0,
            next_attempt_at=now,
            updated_at=now,
            queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS),
        )
        deliveries_queue_after_commit(ids)
    return len(ids)


def delivery_retry_now(*, delivery: Delivery) -> bool:
    """A pending delivery's next attempt now rather than at its scheduled time; False when it is not pending or
    its endpoint is disabled (nothing is queued then)."""
    now = timezone.now()
    with transaction.atomic():
        moved = Delivery.objects.filter(pk=delivery.pk, status=Delivery.PENDING, endpoint__is_enabled=True).update(
            next_attempt_at=now,
            updated_at=now,
            queued_until=now + timedelta(seconds=settings.WEBHOOK_QUEUE_LEASE_SECONDS),
        )
        if moved:
            deliveries_queue_after_commit([delivery.pk])
    return bool(moved)


def event_redeliver(*, event: Event) -> int:
    """Send ``event`` again to every endpoint of its merchant that wants it, subscribed since or not yet tried."""
    with transaction.atomic():
        now = timezone.now()
        endpoints = [
            e
            for e in WebhookEndpoint.objects.filter(merchant=event.merchant_id, is_enabled=True)
            if e.wants(event.type)
        ]
        # Marked first: the update waits for a dispatcher making the event's first deliveries right now (its row
        # lock), the query below then sees them, and no dispatcher makes any after this.
        Event.objects.filter(pk=event.pk).update(fanned_out=True)
        existing = set(Delivery.objects.filter(event=event).values_list("endpoint_id", flat=True))
        Delivery.objects.bulk_create(
            [Delivery(event=event, endpoint=e, next_attempt_at=now) for e in endpoints if e.pk not in existing]
        )
        return deliveries_replay(deliveries=Delivery.objects.filter(event=event, endpoint__in=endpoints))


def endpoint_replay_failed(*, endpoint: WebhookEndpoint, since: datetime, until: datetime) -> int:
    """Replay every FAILED delivery of ``endpoint`` whose event happened in [since, until] (``selectors.replayable``,
    which the operator's count before the replay reads too); returns how many."""
    return deliveries_replay(deliveries=selectors.replayable(endpoints=[endpoint], since=since, until=until))


# ------------------------------------------------------------------------------------------------------------
# Endpoints
# ------------------------------------------------------------------------------------------------------------
@transaction.atomic
def endpoint_create(
    *, merchant: Merchant, url: str, event_types: list[str] | None = None, description: str = ""
) -> WebhookEndpoint:
    """Create an endpoint after vetting its URL (outbound.UnsafeUrl when refused); its secret is generated."""
    outbound.vetted_addresses(url)
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant, url=url, event_types=list(event_types or []), description=description
    )
    endpoints_changed(merchant.pk)
    return endpoint


@transaction.atomic
def endpoint_update(
    *,
    endpoint: WebhookEndpoint,
    url=UNSET,
    event_types=UNSET,
    description=UNSET,
    enabled=UNSET,
    disabled_reason: str = "Disabled by request",
) -> WebhookEndpoint:
    """Change the given fields (a new URL is vetted: outbound.UnsafeUrl). Enabling clears the failure streak;
    disabling records ``disabled_reason``."""
    fields = []
    if url is not UNSET:
        outbound.vetted_addresses(url)
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
    endpoints_changed(endpoint.merchant_id)
    return endpoint


def endpoint_disable(*, endpoint: WebhookEndpoint, reason: str) -> WebhookEndpoint:
    """Stop deliveries to ``endpoint`` (pending ones fail at their next attempt, replayable once re-enabled)."""
    return endpoint_update(endpoint=endpoint, enabled=False, disabled_reason=reason)


@transaction.atomic
def endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """A new signing secret; the one it replaces keeps signing alongside it for 24 hours. Only one previous secret
    is kept: rotating again within those hours retires the older one at once."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    endpoint.secrets_set(current=new_signing_secret(), previous=endpoint.secret)
    endpoint.previous_secret_expires_at = timezone.now() + SECRET_GRACE
    endpoint.updated_at = timezone.now()
    endpoint.save(update_fields=["secrets_ciphertext", "key_version", "previous_secret_expires_at", "updated_at"])
    return endpoint


@transaction.atomic
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    endpoint.delete()
    endpoints_changed(endpoint.merchant_id)
