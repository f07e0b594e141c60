from celery import shared_task

from notifications import services


@shared_task(acks_late=True, ignore_result=True)
def deliver(delivery_id: int) -> None:
    """One attempt at one delivery. Takes an id only; a duplicate or late message does nothing (see the claim)."""
    services.delivery_attempt(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def sweep_deliveries() -> int:
    """Beat, every few seconds: queue what is due and not on its way (retries, lost messages, killed workers)."""
    return services.deliveries_sweep()
