"""Calls to issuers: never above an issuer's rate limit, and fair between issuers, whatever the number of workers.

**Rate.** Every call to a TSP first reserves a start time from its issuer's clock (``Issuer.next_call_at``), under a
row lock: the call may start at ``max(now, next_call_at)`` and moves the clock on by ``1 / rate_limit_per_second``.
Calls to one issuer are therefore spaced evenly at most ``rate`` a second across every worker and machine, because
the clock lives in the database; a worker waits for its reserved moment before calling.

**Fairness.** Batch items do not go to the broker all at once: the dispatcher (``batches_dispatch``, run by beat every
second and when a batch arrives) releases to the queue at most about two seconds' worth of calls per issuer,
interleaving issuers (and batches of one issuer). A batch of 9,000 cards of one bank and 1,000 of others therefore
never queues the small issuers behind the big one: their items sit in the queue between the big issuer's, finish
at their own pace, and no worker waits long for a slot.
"""

import time
from datetime import timedelta
from itertools import chain, zip_longest

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from networks.models import Batch, BatchItem, Issuer

RELEASE_HORIZON_SECONDS = 2
# A released item whose message or worker was lost goes back to PENDING after this long.
ITEM_LEASE_SECONDS = 120


def reserve_call(issuer: Issuer) -> float:
    """Reserve the next call slot of ``issuer``; returns how many seconds to wait before calling."""
    with transaction.atomic():
        locked = Issuer.objects.select_for_update().get(pk=issuer.pk)
        now = timezone.now()
        start = max(now, locked.next_call_at or now)
        locked.next_call_at = start + timedelta(seconds=1 / locked.rate_limit_per_second)
        locked.save(update_fields=["next_call_at"])
    return (start - now).total_seconds()


def call_slot(issuer: Issuer) -> None:
    """Wait until ``issuer`` may be called again."""
    wait = reserve_call(issuer)
    if wait > 0:
        time.sleep(wait)


def batches_dispatch() -> int:
    """Release batch items to the workers, fairly and within each issuer's rate; returns how many it released."""
    from networks.tasks import run_batch_item

    now = timezone.now()
    stale = now - timedelta(seconds=ITEM_LEASE_SECONDS)
    BatchItem.objects.filter(
        Q(status=BatchItem.QUEUED, queued_at__lt=stale) | Q(status=BatchItem.RUNNING, called_at__lt=stale)
    ).update(status=BatchItem.PENDING)

    per_issuer: list[list[int]] = []
    busy_issuers = list(
        BatchItem.objects.filter(status=BatchItem.PENDING).order_by().values_list("issuer", flat=True).distinct()
    )
    for issuer_id in busy_issuers:
        with transaction.atomic():
            # The issuer's row lock makes concurrent dispatchers (beat and a new batch) take turns per issuer.
            issuer = Issuer.objects.select_for_update().get(pk=issuer_id)
            in_flight = BatchItem.objects.filter(issuer=issuer, status__in=[BatchItem.QUEUED, BatchItem.RUNNING]).count()
            room = issuer.rate_limit_per_second * RELEASE_HORIZON_SECONDS - in_flight
            if room <= 0:
                continue
            # Across batches: the lowest positions first, so two batches of one issuer advance together.
            ids = list(
                BatchItem.objects.select_for_update(skip_locked=True)
                .filter(issuer=issuer, status=BatchItem.PENDING)
                .order_by("index", "batch_id")
                .values_list("pk", flat=True)[:room]
            )
            BatchItem.objects.filter(pk__in=ids).update(status=BatchItem.QUEUED, queued_at=now)
        per_issuer.append(ids)
        Batch.objects.filter(items__pk__in=ids, status=Batch.PENDING).update(status=Batch.RUNNING)

    released = [item_id for item_id in chain.from_iterable(zip_longest(*per_issuer)) if item_id is not None]
    for item_id in released:
        run_batch_item.delay(item_id)
    return len(released)
