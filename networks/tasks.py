from celery import shared_task

from core.queue import RETRY_DATABASE_OUTAGES
from networks import services


@shared_task(acks_late=True, ignore_result=True, **RETRY_DATABASE_OUTAGES)
def run_provisioning_request(request_id: int) -> None:
    """One attempt at an async network-token request (see ``services.provisioning_request_run``): its retries are
    scheduled in the database, not in the broker."""
    services.provisioning_request_run(request_id=request_id)


@shared_task(ignore_result=True)
def sweep_provisioning_requests() -> int:
    """Beat, every few seconds: queue the async requests that are due and not on their way."""
    return services.provisioning_requests_sweep()


@shared_task(acks_late=True, ignore_result=True, **RETRY_DATABASE_OUTAGES)
def run_batch_items(item_ids: list[int]) -> None:
    """A chunk of released batch items; then the next release, since this worker is free for more."""
    services.batch_items_run(item_ids=item_ids)
    services.batches_dispatch()


@shared_task(ignore_result=True)
def dispatch_batches() -> int:
    """Beat, every second, and on each new batch: release the next items fairly across issuers."""
    return services.batches_dispatch()
