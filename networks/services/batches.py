"""Batches of network-token requests: accepted at once (bad items fail with their reason), released by the dispatcher
fairly across issuers (``networks.scheduling``), provisioned a chunk at a time by the workers."""

import logging
import secrets
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from core import queue
from core.errors import ApiError, InternalError, NotFound
from core.logging import redact
from merchants.models import Merchant
from networks import scheduling, tsp
from networks.errors import Failure, NetworkNotConfigured, TspUnavailable, failure_of
from networks.events import created_data, failed_data
from networks.metrics import batch_items_count
from networks.models import Batch, BatchItem, Issuer, NetworkToken
from networks.services.issuers import issuer_for
from networks.services.provisioning import (
    TOKEN_FIELDS,
    Origin,
    card_from_vault,
    check_supported,
    fill_token,
    tsp_provision,
    vault_links_refresh,
)
from notifications.services import events_emit
from vault.crypto import KeysUnavailable
from vault.models import Token

BATCH_ITEM_MAX_ATTEMPTS = 3
BATCH_ITEM_MAX_ABANDONED = 3  # times an item's worker may stop holding it (see batch_items_reclaim)
# A worker running a chunk of batch items writes what it has at least this often (the batch shows progress, the
# lease of the items still to do is renewed), and hands back what it has not started after BATCH_CHUNK_SECONDS
# (a slow TSP), well within the task's time limit and the lease.
BATCH_WRITE_SECONDS = 1.0
BATCH_CHUNK_SECONDS = 30.0

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchEntry:
    token_reference: str
    vault_token: Token | None
    account_id: str = ""
    email: str = ""
    correlation_id: str = ""


def batch_create(*, merchant: Merchant, entries: list[BatchEntry]) -> Batch:
    """Accept a batch: entries whose vault token is unknown or whose card cannot get a network token fail at once
    with their reason (a ``network_token.failed`` webhook each); the others wait for the dispatcher, which releases
    them fairly across issuers. An entry without a correlation id takes the batch's id. Raises NetworkNotConfigured
    (nothing stored) when an entry's network has no token service configured here."""
    now = timezone.now()
    batch = Batch(merchant=merchant)
    items, failures = [], []
    issuers: dict[tuple[str, str], Issuer] = {}
    for index, entry in enumerate(entries):
        item = BatchItem(
            index=index,
            token_reference=_safe_reference(entry.token_reference),
            vault_token=entry.vault_token,
            correlation_id=entry.correlation_id or batch.public_id,
            account_id=entry.account_id,
            email=entry.email,
        )
        try:
            if entry.vault_token is None:
                raise NotFound("The vault token does not exist")
            number = card_from_vault(entry.vault_token).number
            network = check_supported(number, email=entry.email)
            if (network, number[:6]) not in issuers:
                issuers[network, number[:6]] = issuer_for(number, network)
            item.issuer = issuers[network, number[:6]]
        except NetworkNotConfigured:
            raise  # the installation's fault, not the item's: the whole batch answers 503
        except (ApiError, NotFound) as exc:
            item.status, item.finished_at = BatchItem.FAILED, now
            item.failure_code, item.failure_reason = failure_of(exc)
            failures.append(
                failed_data(
                    item.failure_code,
                    item.failure_reason,
                    correlation_id=item.correlation_id,
                    batchId=batch.public_id,
                    index=index,
                )
            )
        items.append(item)
    batch.total, batch.finished = len(items), len(failures)
    if batch.finished == batch.total:
        batch.status, batch.completed_at = Batch.COMPLETED, now
    with transaction.atomic():
        batch.save(force_insert=True)
        for item in items:
            item.batch = batch
        BatchItem.objects.bulk_create(items, batch_size=1000)
        if failures:
            events_emit(merchant=merchant, type="network_token.failed", data=failures)
        transaction.on_commit(_dispatch_soon, robust=True)
    batch_items_count(BatchItem.FAILED, len(failures))
    return batch


def _safe_reference(reference: str) -> str:
    """A merchant may paste a card number where a token reference belongs: never keep that in clear."""
    return redact(reference)[:200]


def _dispatch_soon() -> None:
    queue.send("networks.tasks.dispatch_batches")


@dataclass
class _Call:
    """What the TSP said about one batch item, waiting to be written with the others of its chunk."""

    item: BatchItem
    called_at: datetime | None = None
    card: tsp.CardData | None = None
    provisioned: tsp.Provisioned | None = None
    error: Failure | None = None


def batch_items_run(*, item_ids: list[int]) -> int:
    """Provision released batch items (a chunk of one issuer's, as the dispatcher sends them); returns how many
    ended.

    Only items still QUEUED are claimed, so a duplicate message finds nothing to do. Each TSP call waits for a slot
    of its issuer (``scheduling.CallSlots``); what the calls return is written about once a second and at the end,
    in one transaction each time: the network tokens, their ``network_token.created`` events, the items' outcomes
    and their batches' progress together. A worker killed at any moment thus leaves every item either ended, once,
    or claimed until its lease runs out and it is released again (``batch_items_reclaim``); an item whose lease ran
    out while this worker still had it (it now belongs to another) is not written. A transient TSP failure puts the
    item back for the dispatcher until its BATCH_ITEM_MAX_ATTEMPTS-th attempt, which fails it; a failure that is not
    transient fails it at once.
    """
    claim = secrets.token_hex(16)
    if not BatchItem.objects.filter(pk__in=item_ids, status=BatchItem.QUEUED).update(
        status=BatchItem.RUNNING, called_at=timezone.now(), claim=claim
    ):
        return 0
    position = {item_id: n for n, item_id in enumerate(item_ids)}
    items = sorted(
        BatchItem.objects.filter(pk__in=item_ids, claim=claim).select_related(
            "batch__merchant", "vault_token", "issuer"
        ),
        key=lambda item: position[item.pk],
    )
    calls_per_issuer = Counter(item.issuer_id for item in items)
    issuers = {item.issuer_id: item.issuer for item in items}
    slots = {pk: scheduling.CallSlots(issuer, calls_per_issuer[pk]) for pk, issuer in issuers.items()}
    started = written = time.monotonic()
    ended, done, n = 0, [], 0
    try:
        for n, item in enumerate(items):
            if time.monotonic() - started > BATCH_CHUNK_SECONDS:
                return ended + _batch_items_write(done, claim=claim, rest=items[n:], hand_back=True)
            done.append(_batch_item_call(item, slots[item.issuer_id]))
            if time.monotonic() - written >= BATCH_WRITE_SECONDS and n + 1 < len(items):
                ended += _batch_items_write(done, claim=claim, rest=items[n + 1 :])
                done, written = [], time.monotonic()
    except BaseException:
        # The database went away, the task hit its time limit...: keep what the TSP already answered (a second call
        # could mint a second token) and hand the rest back now rather than when the lease runs out.
        _batch_items_write(done, claim=claim, rest=items[n:], hand_back=True)
        raise
    return ended + _batch_items_write(done, claim=claim, rest=[])


def _batch_item_call(item: BatchItem, slots: scheduling.CallSlots) -> _Call:
    call = _Call(item)
    try:
        if item.vault_token is None or item.vault_token.deleted_at is not None:
            raise NotFound("The vault token was deleted")
        call.card = card_from_vault(item.vault_token)
        network = check_supported(call.card.number, email=item.email)
        call.called_at = slots.take()
        call.provisioned = tsp_provision(
            network=network, merchant=item.batch.merchant, card=call.card, account_id=item.account_id, email=item.email
        )
    except (ApiError, NotFound, TspUnavailable) as exc:
        call.error = exc
    except (DatabaseError, KeysUnavailable):
        raise  # not the item's fault: batch_items_run hands the chunk back
    except Exception as exc:  # noqa: BLE001 - see below
        # A bug, or a card that cannot be read (a key retired too early): the item fails rather than coming back
        # for ever. Its type only: a message could hold card data.
        logger.error("batch item %s failed: unexpected %s", item.pk, type(exc).__name__)
        call.error = InternalError()
    return call


@transaction.atomic
def _batch_items_write(calls: list[_Call], *, claim: str, rest: list[BatchItem], hand_back: bool = False) -> int:
    """Write the outcome of ``calls`` for the items still under ``claim``; renew the lease of the ``rest`` of the
    chunk, or hand them back to the dispatcher. Returns how many items ended."""
    still_ours = set(
        BatchItem.objects.select_for_update()
        .filter(pk__in=[call.item.pk for call in calls], status=BatchItem.RUNNING, claim=claim)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    calls = [call for call in calls if call.item.pk in still_ours]
    now = timezone.now()
    made = [call for call in calls if call.provisioned is not None]
    for call, token in zip(made, _tokens_store(made, now=now), strict=True):
        call.item.network_token = token

    events = defaultdict(list)  # (merchant, type) → the items' webhooks, written in bulk
    ended_per_batch, ended_in = Counter(), Counter()  # items ended, per batch and per state
    for call in calls:
        item = call.item
        item.attempts += 1
        item.claim = ""
        item.called_at = call.called_at  # None for an item that failed before its call
        merchant, ids = item.batch.merchant, {"batchId": item.batch.public_id, "index": item.index}
        if (
            call.provisioned is None
            and isinstance(call.error, TspUnavailable)
            and call.error.transient
            and item.attempts < BATCH_ITEM_MAX_ATTEMPTS
        ):
            item.status = BatchItem.PENDING
            continue
        if call.provisioned is None:
            item.status = BatchItem.FAILED
            item.failure_code, item.failure_reason = failure_of(call.error)
            events[merchant, "network_token.failed"].append(
                failed_data(item.failure_code, item.failure_reason, correlation_id=item.correlation_id, **ids)
            )
        elif item.network_token.status == NetworkToken.ACTIVE:
            item.status = BatchItem.SUCCEEDED
            events[merchant, "network_token.created"].append(
                created_data(item.network_token, correlation_id=item.correlation_id, **ids)
            )
        else:
            item.status = BatchItem.PENDING_ACTIVATION  # announced when the network activates the token
        item.finished_at = now
        ended_per_batch[item.batch_id] += 1
        ended_in[item.status] += 1
    for (merchant, type), data in events.items():
        events_emit(merchant=merchant, type=type, data=data)
    # The items are locked rows of ours: "insert, or on their id update these fields" writes every item's own values
    # in one statement (bulk_update's CASE per field and row cost more than the rest of the write).
    BatchItem.objects.bulk_create(
        [call.item for call in calls],
        update_conflicts=True,
        unique_fields=["id"],
        update_fields=[
            "status",
            "attempts",
            "claim",
            "called_at",
            "network_token",
            "failure_code",
            "failure_reason",
            "finished_at",
        ],
    )
    if rest:
        unstarted = BatchItem.objects.filter(pk__in=[item.pk for item in rest], status=BatchItem.RUNNING, claim=claim)
        if hand_back:
            unstarted.update(status=BatchItem.PENDING, claim="")
        else:
            unstarted.update(called_at=now)
    # Last, and in a fixed order: each batch row stays locked until the commit, by whichever worker writes to it.
    for batch_id in sorted(ended_per_batch):
        _batch_progress(batch_id, ended=ended_per_batch[batch_id], now=now)
    for state, count in ended_in.items():
        batch_items_count(state, count)
    return sum(ended_per_batch.values())


def _tokens_store(calls: list[_Call], *, now: datetime) -> list[NetworkToken]:
    """``_store`` for many provisionings at once, one token per call, in order: a tokenId already stored (Visa and
    Amex reuse them), or given twice in ``calls``, is one row, updated."""
    try:
        with transaction.atomic():
            return _tokens_write(calls, now=now)
    except IntegrityError:
        # Another worker or request stored one of these tokenIds first: update that row instead.
        return _tokens_write(calls, now=now)


def _tokens_write(calls: list[_Call], *, now: datetime) -> list[NetworkToken]:
    stored = NetworkToken.objects.select_for_update().in_bulk(
        [call.provisioned.token_id for call in calls], field_name="token_id"
    )
    tokens: dict[str, NetworkToken] = {}
    cards = {token.vault_token_id for token in stored.values()}
    for call in calls:
        token_id, batch = call.provisioned.token_id, call.item.batch
        token = (
            tokens.get(token_id)
            or stored.get(token_id)
            or NetworkToken(token_id=token_id, merchant=batch.merchant, created_at=now)
        )
        origin = Origin(
            merchant=batch.merchant, correlation_id=call.item.correlation_id, vault_token=call.item.vault_token
        )
        fill_token(
            token,
            origin=origin,
            card=call.card,
            issuer=call.item.issuer,
            provisioned=call.provisioned,
            account_id=call.item.account_id,
        )
        token.updated_at = now
        tokens[token_id] = token
    NetworkToken.objects.bulk_create([token for token in tokens.values() if token.pk is None])
    changed = [token for token_id, token in tokens.items() if token_id in stored]
    if changed:
        NetworkToken.objects.bulk_update(changed, fields=TOKEN_FIELDS)
    vault_links_refresh(cards | {token.vault_token_id for token in tokens.values()})
    return [tokens[call.provisioned.token_id] for call in calls]


def batches_dispatch() -> int:
    """Take back the items whose lease ran out, then release the next items to the workers fairly across issuers
    (``scheduling.batch_items_release``, which queues them once each issuer's share is committed); returns how many
    it released. Not one transaction: a worker must find its items released when its message arrives."""
    now = timezone.now()
    batch_items_reclaim(stale=now - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS), now=now)
    return scheduling.batch_items_release(now=now)


@transaction.atomic
def batch_items_reclaim(*, stale: datetime, now: datetime) -> int:
    """Put the items whose lease ran out before ``stale`` back to PENDING; returns how many failed instead.

    A QUEUED one's message was lost: nothing of the item's doing. A RUNNING one's worker stopped holding it (killed,
    out of memory, a crash in native code), perhaps because of the item: it is counted in ``abandoned``, and the
    dispatcher releases it alone from then on, so an item that kills its worker takes no other with it. The
    BATCH_ITEM_MAX_ABANDONED-th time it fails with ``internalErrorOccurred`` rather than coming back for ever, and
    its batch can complete.
    """
    BatchItem.objects.filter(status=BatchItem.QUEUED, queued_at__lt=stale).update(status=BatchItem.PENDING, claim="")
    abandoned = BatchItem.objects.filter(status=BatchItem.RUNNING, called_at__lt=stale)
    abandoned.filter(abandoned__lt=BATCH_ITEM_MAX_ABANDONED - 1).update(
        status=BatchItem.PENDING, claim="", abandoned=F("abandoned") + 1
    )
    given_up = list(
        abandoned.select_for_update(skip_locked=True, of=("self",)).select_related("batch__merchant").order_by("pk")
    )
    if not given_up:
        return 0
    code, reason = failure_of(InternalError(f"The worker provisioning it stopped {BATCH_ITEM_MAX_ABANDONED} times"))
    BatchItem.objects.filter(pk__in=[item.pk for item in given_up]).update(
        status=BatchItem.FAILED,
        claim="",
        abandoned=F("abandoned") + 1,
        failure_code=code,
        failure_reason=reason,
        finished_at=now,
    )
    logger.error("%d batch item(s) failed: their worker stopped %d times", len(given_up), BATCH_ITEM_MAX_ABANDONED)
    failures = defaultdict(list)
    for item in given_up:
        failures[item.batch.merchant].append(
            failed_data(
                code, reason, correlation_id=item.correlation_id, batchId=item.batch.public_id, index=item.index
            )
        )
    for merchant, data in failures.items():
        events_emit(merchant=merchant, type="network_token.failed", data=data)
    # In a fixed order, as _batch_items_write locks batches.
    for batch_id, ended in sorted(Counter(item.batch_id for item in given_up).items()):
        _batch_progress(batch_id, ended=ended, now=now)
    batch_items_count(BatchItem.FAILED, len(given_up))
    return len(given_up)


def _batch_progress(batch_id: int, *, ended: int, now: datetime) -> None:
    """Count ``ended`` more items of the batch; the one that reaches its total completes it (one statement)."""
    completes = Q(finished=F("total") - ended)
    Batch.objects.filter(pk=batch_id).update(
        finished=F("finished") + ended,
        status=Case(When(completes, then=Value(Batch.COMPLETED)), default=F("status")),
        completed_at=Case(When(completes, then=Value(now)), default=F("completed_at")),
    )
