from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from notifications import services


class PublishedOnce(Task):
    """Sent without Celery's publish retries. With the broker down they held every API request that emitted an event
    for 0.65 s (the Redis drill); a delivery whose message was not sent is not lost: its row says it is due, and the
    sweeper queues it again once its queue lease has passed."""

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("retry", False)
        return super().apply_async(args, kwargs, **options)


# The retry policy of a task that meets a database restarting or failing over: it runs again shortly. What it had
# claimed comes back through its lease and the sweepers anyway; the retry only saves the wait.
RETRY_DATABASE_OUTAGES = {"autoretry_for": (OperationalError, InterfaceError), "retry_backoff": 1,
                          "retry_backoff_max": 30, "max_retries": 5}


@shared_task(base=PublishedOnce, acks_late=True, ignore_result=True, **RETRY_DATABASE_OUTAGES)
def deliver(delivery_ids: list[int]) -> None:
    """One attempt at each of a batch of deliveries, filled up with other due deliveries of the same endpoints.
    Takes ids only; a duplicate or late message does nothing for a delivery no longer due or claimed by another
    worker (see the claim)."""
    if isinstance(delivery_ids, int):  # a message queued before deliveries travelled in batches
        delivery_ids = [delivery_ids]
    services.deliveries_attempt(delivery_ids=delivery_ids, fill_to=settings.WEBHOOK_BATCH_SIZE)


@shared_task(ignore_result=True)
def sweep_deliveries() -> int:
    """Beat, every few seconds: queue what is due and not on its way (retries, lost messages, killed workers)."""
    return services.deliveries_sweep()
