import logging

from celery import shared_task

from vault import services

logger = logging.getLogger(__name__)


@shared_task(acks_late=True)
def purge_expired_tokens() -> int:
    """Beat runs this every 15 minutes: expired tokens lose their card data and leave a tombstone."""
    purged = services.tokens_purge_expired()
    if purged:
        logger.info("purged %d expired tokens", purged)
    return purged
