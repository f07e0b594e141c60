from celery import shared_task
from django.conf import settings

from core.queue import RETRY_DATABASE_OUTAGES
from notifications import services


@shared_task(acks_late=True, ignore_result=True, **RETRY_DATABASE_OUTAGES)
def deliver(delivery_ids: list[int]) -> None:
    """One attempt at each of a batch of deliveries, filled up with other due deliveries of the same endpoints.
    Takes ids only; a duplicate or late message does nothing for a delivery no longer due or claimed by another
    worker (see the claim)."""
    services.deliveries_attempt(delivery_ids=delivery_ids, fill_to=settings.WEBHOOK_BATCH_SIZE)


@shared_task(acks_late=True, ignore_result=True, **RETRY_DATABASE_OUTAGES)
def fan_out_events() -> int:
    """After a transaction that wrote events commits: their deliveries, a few attempted here and a backlog queued
    (see ``services.events_fan_out``)."""
    return services.events_fan_out(attempt=_attempt)


def _attempt(deliveries) -> None:
    services.claimed_deliveries_attempt(deliveries=deliveries)


@shared_task(ignore_result=True)
def sweep_deliveries() -> int:
    """Beat, every few seconds: queue what is due and not on its way (retries, lost messages, killed workers)."""
    return services.deliveries_sweep()
