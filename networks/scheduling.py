"""Calls to issuers: never above an issuer's rate limit, and fair between issuers, whatever the number of workers.

**Rate.** Every call to a TSP first reserves a start time from its issuer's clock (``Issuer.next_call_at``), under a
row lock: the call may start at ``max(now, next_call_at)`` and moves the clock on by ``1 / rate_limit_per_second``.
Calls to one issuer are therefore spaced evenly at most ``rate`` a second across every worker and machine, because
the clock lives in the database; a worker waits for its reserved moment before calling. A worker running a chunk
of batch items reserves a few slots at a time (``CallSlots``) rather than one lock per call.

**Fairness.** Batch items do not go to the broker all at once: the dispatcher (``services.batches_dispatch``, run by
beat every second, when a batch arrives and whenever a worker finishes a chunk) releases them in chunks, one task per
chunk of one issuer's items, at most about two seconds' worth of calls per issuer in flight, a chunk per issuer in
turn (issuers with the least in flight first). A batch of 9,000 cards of one bank and 1,000 of others therefore never
queues the small issuers behind the big one: their chunks sit in the queue between the big issuer's, finish at
their own pace, and no worker waits long for a slot.

**Backpressure.** The dispatcher also keeps the queue short: no more items wait in the broker than the workers are
running (or ``MIN_QUEUED_ITEMS`` when they run few), so an item spends about one chunk's time in the queue whatever
the number of workers, far less than its lease, and a new batch or the dispatcher's own task never waits behind
thousands of messages.
"""

import math
import time
from collections import Counter, deque
from collections.abc import Container
from datetime import UTC, datetime, timedelta
from itertools import chain, zip_longest

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from core import queue
from networks.metrics import issuer_call_count
from networks.models import Batch, BatchItem, Issuer

RELEASE_HORIZON_SECONDS = 2
# A released item whose message was lost, or a claimed one whose worker died, goes back to PENDING after this long.
ITEM_LEASE_SECONDS = settings.NETWORK_BATCH_LEASE_SECONDS
# A chunk holds about half a second of its issuer's calls (a slow issuer's chunk would otherwise keep a worker
# waiting for slots while other issuers' items queue), and at most CHUNK_MAX_ITEMS: beyond that, fewer statements
# per item no longer show, while fairness and progress get coarser.
CHUNK_SECONDS = 0.5
CHUNK_MAX_ITEMS = 100
# Queued items allowed when the workers run fewer than this: enough for two worker processes to find their next
# chunk waiting while the one they finished releases more.
MIN_QUEUED_ITEMS = 2 * CHUNK_MAX_ITEMS
# How far ahead a worker reserves an issuer's slots: long enough to take a lock for several calls at a high rate,
# short enough that another worker on the same issuer is not kept waiting long.
RESERVE_AHEAD_SECONDS = 0.05
# How late a call may still take its slot when the slot is shorter than this: about a reservation's round trip to
# the database, so that at high rates a worker is not forever reserving slots that have passed by the time it has
# them. It adds at most ``rate × SLOT_GRACE_SECONDS`` calls to a second (5 at 1,000 a second, none below 200).
SLOT_GRACE_SECONDS = 0.005


def chunk_size(issuer: Issuer) -> int:
    return max(1, min(CHUNK_MAX_ITEMS, int(issuer.rate_limit_per_second * CHUNK_SECONDS)))


def reserve_calls(issuer: Issuer, count: int) -> tuple[datetime, timedelta]:
    """Reserve the next ``count`` call slots of ``issuer``; returns when the first starts and the spacing."""
    with transaction.atomic():
        locked = Issuer.objects.select_for_update().get(pk=issuer.pk)
        now = timezone.now()
        start = max(now, locked.next_call_at or now)
        interval = timedelta(seconds=1 / locked.rate_limit_per_second)
        locked.next_call_at = start + count * interval
        locked.save(update_fields=["next_call_at"])
    return start, interval


def reserve_call(issuer: Issuer) -> float:
    """Reserve the next call slot of ``issuer``; returns how many seconds to wait before calling."""
    start, _ = reserve_calls(issuer, 1)
    return max(0.0, (start - timezone.now()).total_seconds())


def call_slot(issuer: Issuer) -> None:
    """Wait until ``issuer`` may be called again (the call is counted: ``tokenvault_issuer_calls_total``)."""
    wait = reserve_call(issuer)
    if wait > 0:
        time.sleep(wait)
    issuer_call_count(issuer)


class CallSlots:
    """The calls one worker makes to one issuer for a chunk of batch items, reserved a few at a time.

    A reservation of n slots is n consecutive intervals of ``1 / rate`` on the issuer's clock, and each call starts
    inside its own interval (or within SLOT_GRACE_SECONDS of its start). A worker that falls behind its slots (it
    computes slower than the issuer's rate, or the machine is busy) lets the slots it missed go rather than use them
    late: late calls would bunch up with the next reservation's, another worker's. However the workers' pace varies,
    a second therefore holds at most ``rate + 1`` calls (+1: a second straddling two intervals), plus the grace's.
    """

    def __init__(self, issuer: Issuer, calls: int):
        self.issuer = issuer
        self.calls = calls  # still to make: no reservation goes beyond them
        self.slots: deque[datetime] = deque()
        self.interval = timedelta(seconds=1 / issuer.rate_limit_per_second)

    def take(self) -> datetime:
        """Wait for the next slot; returns the moment the call may start (now), and counts the call."""
        while True:
            now = timezone.now()
            usable = max(self.interval, timedelta(seconds=SLOT_GRACE_SECONDS))
            while self.slots and self.slots[0] + usable <= now:
                self.slots.popleft()  # missed: let it go
            if not self.slots:
                ahead = math.ceil(self.issuer.rate_limit_per_second * RESERVE_AHEAD_SECONDS)
                count = max(1, min(self.calls, ahead))
                start, self.interval = reserve_calls(self.issuer, count)
                self.slots.extend(start + i * self.interval for i in range(count))
            elif now < self.slots[0]:
                time.sleep((self.slots[0] - now).total_seconds())  # then look again: a sleep may overshoot
            else:
                self.slots.popleft()
                self.calls -= 1
                issuer_call_count(self.issuer)
                return now


def batch_items_release(*, now: datetime) -> int:
    """Release batch items to the workers in chunks, fairly, within each issuer's rate and no faster than the
    workers take them; returns how many it released."""

    pending = dict(
        BatchItem.objects.filter(status=BatchItem.PENDING).order_by().values_list("issuer").annotate(Count("pk"))
    )
    if not pending:
        return 0
    in_flight, by_status = Counter(), Counter()
    for issuer_id, status, count in (
        BatchItem.objects.filter(status__in=[BatchItem.QUEUED, BatchItem.RUNNING])
        .order_by()
        .values_list("issuer", "status")
        .annotate(Count("pk"))
    ):
        in_flight[issuer_id] += count
        by_status[status] += count
    room = max(by_status[BatchItem.RUNNING], MIN_QUEUED_ITEMS) - by_status[BatchItem.QUEUED]

    # Share the room out a chunk at a time, issuers with the least in flight (then the longest idle) first.
    never = datetime.min.replace(tzinfo=UTC)
    issuers = sorted(
        Issuer.objects.filter(pk__in=pending), key=lambda i: (in_flight[i.pk], i.next_call_at or never, i.pk)
    )
    share = Counter()
    waiting = list(issuers)
    while room > 0 and waiting:
        for issuer in list(waiting):
            size = min(
                chunk_size(issuer),
                room,
                pending[issuer.pk] - share[issuer.pk],
                issuer.rate_limit_per_second * RELEASE_HORIZON_SECONDS - in_flight[issuer.pk] - share[issuer.pk],
            )
            if size <= 0:
                waiting.remove(issuer)
                continue
            share[issuer.pk] += size
            room -= size
            if room <= 0:
                break

    per_issuer: dict[Issuer, list[int]] = {}
    alone: set[int] = set()  # items a worker stopped holding: each goes in a chunk of its own
    for issuer in issuers:
        if not share[issuer.pk]:
            continue
        with transaction.atomic():
            # The issuer's row lock makes concurrent dispatchers (beat, a new batch, workers) take turns per issuer.
            issuer = Issuer.objects.select_for_update().get(pk=issuer.pk)
            flying = BatchItem.objects.filter(issuer=issuer, status__in=[BatchItem.QUEUED, BatchItem.RUNNING]).count()
            take = min(share[issuer.pk], issuer.rate_limit_per_second * RELEASE_HORIZON_SECONDS - flying)
            if take <= 0:
                continue
            # Across batches: the lowest positions first, so two batches of one issuer advance together.
            taken = list(
                BatchItem.objects.select_for_update(skip_locked=True)
                .filter(issuer=issuer, status=BatchItem.PENDING)
                .order_by("index", "batch_id")
                .values_list("pk", "abandoned")[:take]
            )
            ids = [pk for pk, _ in taken]
            BatchItem.objects.filter(pk__in=ids).update(status=BatchItem.QUEUED, queued_at=now)
        per_issuer[issuer] = ids
        alone.update(pk for pk, abandoned in taken if abandoned)

    chunks = chunks_of(per_issuer, alone=alone)
    released = list(chain.from_iterable(chunks))
    Batch.objects.filter(items__pk__in=released, status=Batch.PENDING).update(status=Batch.RUNNING)
    for chunk in chunks:
        queue.send("networks.tasks.run_batch_items", chunk)
    return len(released)


def chunks_of(per_issuer: dict[Issuer, list[int]], *, alone: Container[int] = ()) -> list[list[int]]:
    """The released items in chunks of one issuer's (``chunk_size``), one task each, issuers interleaved; the items
    in ``alone`` in chunks of their own, after their issuer's others.

    One issuer per chunk: a worker reserves that issuer's slots for the whole chunk, and two workers on two chunks
    are then most often on two issuers, neither waiting for the other's slots. (Chunks mixing issuers had each worker
    reserve slots at every issuer, only to miss most of them while calling the others.)
    """
    per_chunk = []
    for issuer, ids in per_issuer.items():
        together = [pk for pk in ids if pk not in alone]
        size = chunk_size(issuer)
        per_chunk.append(
            [together[start : start + size] for start in range(0, len(together), size)]
            + [[pk] for pk in ids if pk in alone]
        )
    return [chunk for chunk in chain.from_iterable(zip_longest(*per_chunk)) if chunk]
