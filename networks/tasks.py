from celery import shared_task

from networks import scheduling, services
from networks.services import ASYNC_MAX_ATTEMPTS, NetworkUnavailable


@shared_task(bind=True, acks_late=True, ignore_result=True, autoretry_for=(NetworkUnavailable,),
             retry_backoff=2, retry_backoff_max=60, retry_jitter=True, max_retries=ASYNC_MAX_ATTEMPTS - 1)
def run_provisioning_request(self, request_id: int) -> None:
    """An async network-token request: transient TSP failures retry with backoff, then end in a failed webhook."""
    services.provisioning_request_run(request_id=request_id, final_attempt=self.request.retries >= self.max_retries)


@shared_task(acks_late=True, ignore_result=True)
def run_batch_items(item_ids: list[int]) -> None:
    """A chunk of released batch items; then the next release, since this worker is free for more."""
    services.batch_items_run(item_ids=item_ids)
    scheduling.batches_dispatch()


@shared_task(acks_late=True, ignore_result=True)
def run_batch_item(item_id: int) -> None:
    """One item, as the dispatcher released them before chunks: messages queued then still run."""
    services.batch_items_run(item_ids=[item_id])


@shared_task(ignore_result=True)
def dispatch_batches() -> int:
    """Beat, every second, and on each new batch: release the next items fairly across issuers."""
    return scheduling.batches_dispatch()
