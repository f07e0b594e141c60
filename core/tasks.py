import logging

from celery import shared_task

from core import idempotency

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def purge_expired_idempotency_keys() -> int:
    """Beat runs this every 15 minutes: keys past their 24 hours are deleted (an expired key is free already)."""
    purged = idempotency.idempotent_requests_purge_expired()
    if purged:
        logger.info("purged %d expired idempotency keys", purged)
    return purged
