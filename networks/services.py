"""Network tokens: provisioning from the TSPs (sync, async, batches), cryptograms, lifecycle. Every write is here.

A TSP call never runs inside a database transaction (it may take seconds); what it returns is stored in one. Card
and token numbers only ever exist in memory, in the vault's encryption, or in a detokenize-scoped answer.
"""

import logging
import random
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from config.errors import ApiError, BusinessRuleError, InternalError
from config.http import timestamp
from config.logging import redact
from networks import scheduling, tsp
from networks.models import Batch, BatchItem, Issuer, LifecycleEvent, NetworkToken, ProvisioningRequest
from notifications.services import event_emit, events_emit
from vault import cards
from vault import services as vault_services
from vault.crypto import KeysUnavailable, key_ring
from vault.models import Merchant, Token

CRYPTOGRAM_LIFETIME = timedelta(minutes=15)
ASYNC_MAX_ATTEMPTS = 5
# How long an async request waits for this server's keys to match the data again before its next attempt.
KEYS_UNAVAILABLE_WAIT = timedelta(seconds=60)
BATCH_ITEM_MAX_ATTEMPTS = 3
BATCH_ITEM_MAX_ABANDONED = 3  # times an item's worker may stop holding it (see batch_items_reclaim)
# A worker running a chunk of batch items writes what it has at least this often (the batch shows progress, the
# lease of the items still to do is renewed), and hands back what it has not started after BATCH_CHUNK_SECONDS
# (a slow TSP), well within the task's time limit and the lease.
BATCH_WRITE_SECONDS = 1.0
BATCH_CHUNK_SECONDS = 30.0

logger = logging.getLogger(__name__)


class NetworkUnavailable(ApiError):
    status_code = 502
    error_name = "networkUnavailable"
    default_message = "The card network's token service is unavailable; try again later"


class NetworkTimeout(NetworkUnavailable):
    status_code = 504
    default_message = "The card network's token service did not answer in time; try again later"


class NetworkNotConfigured(ApiError):
    """The card's network has a token service, but this installation is connected to none (production without a
    real integration in TSP_PROVIDERS, and without TSP_SIMULATOR)."""

    status_code = 503
    error_name = "networkNotConfigured"
    default_message = "No token service is configured for this card's network on this server"


def token_service(network: str) -> tsp.TokenService | None:
    """``tsp.provider_for`` for the services: None for a network without a token service; raises
    NetworkNotConfigured (503) for one whose token service this installation is not connected to."""
    try:
        return tsp.provider_for(network)
    except tsp.NotConfigured:
        raise NetworkNotConfigured(f"No token service is configured for {network} on this server") from None


def network_not_supported() -> BusinessRuleError:
    return BusinessRuleError(
        "networkNotSupported", "Network tokens are available for VISA, MASTERCARD and AMEX cards", status_code=422
    )


def tokenization_declined() -> BusinessRuleError:
    return BusinessRuleError("tokenizationDeclined", "The card issuer declined to tokenize this card", status_code=422)


def email_required() -> ApiError:
    return ApiError(validation_errors=[{
        "errorName": "fieldIsMissing", "message": "American Express cards need an email", "jsonPath": "$.email",
    }])


@dataclass(frozen=True)
class Origin:
    """Where the card of a provisioning comes from and who asked: for the token row and its events
    (``request_id`` names the asynchronous request it serves, if any)."""

    merchant: Merchant
    correlation_id: str
    vault_token: Token | None = None
    request_id: str | None = None


# ------------------------------------------------------------------------------------------------------------
# Cards and issuers
# ------------------------------------------------------------------------------------------------------------
def card_from_vault(token: Token) -> tsp.CardData:
    number = key_ring().decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data())
    return tsp.CardData(number, token.expiry_month, token.expiry_year, token.card_holder_name)


def issuer_for(card_number: str, network: str) -> Issuer:
    """The registered issuer whose BIN range holds the card (the innermost); for a BIN outside the registry, the
    issuer of that one BIN, made on first use with the default rate limit, so that a bank the registry does not
    list yet is spaced and scheduled on its own rather than with every other unlisted bank of its network."""
    bin_ = card_number[:6]
    issuer = (
        Issuer.objects.filter(network=network, registered=True, bin_low__lte=bin_, bin_high__gte=bin_)
        .order_by("-bin_low", "bin_high").first()  # the innermost range holding the BIN was registered for it
    )
    if issuer is None:
        # get_or_create: two workers meeting the BIN at once end in the one row the unique constraint allows.
        issuer, _ = Issuer.objects.get_or_create(
            network=network, registered=False, bin_low=bin_, bin_high=bin_,
            defaults={"name": f"Unregistered {network} issuer, BIN {bin_}"},
        )
    return issuer


def check_supported(number: str, *, email: str) -> str:
    """The card's network; raises networkNotSupported (422), networkNotConfigured (503) or, for Amex without email,
    a 400."""
    network = cards.brand_of(number)
    provider = token_service(network)
    if provider is None:
        raise network_not_supported()
    if provider.requires_email and not email:
        raise email_required()
    return network


# ------------------------------------------------------------------------------------------------------------
# Provisioning
# ------------------------------------------------------------------------------------------------------------
def network_token_provision(*, origin: Origin, card: tsp.CardData, account_id: str = "", email: str = "",
                            on_call: Callable[[], None] | None = None) -> NetworkToken:
    """Ask the card's network for a token, within its issuer's rate limit, and store it.

    ``on_call`` runs the moment the call to the TSP starts (after waiting for the issuer's slot).

    Visa and Amex give the same live tokenId again for the same merchant and card (and accountId, and Amex's
    email): the stored token is then returned, updated. Raises networkNotSupported/tokenizationDeclined (422),
    NetworkUnavailable/NetworkTimeout (502/504, ``transient`` on the cause). Emits ``network_token.created`` when
    the token is ACTIVE; an INACTIVE one (a step-up) is announced when the network activates it (``lifecycle_apply``).
    """
    network = check_supported(card.number, email=email)
    issuer = issuer_for(card.number, network)
    scheduling.call_slot(issuer)
    if on_call is not None:
        on_call()
    try:
        provisioned = token_service(network).provision(tsp.ProvisionRequest(
            merchant_id=origin.merchant.public_id, card=card, account_id=account_id, email=email
        ))
    except tsp.Declined:
        raise tokenization_declined() from None
    except tsp.TspError as exc:
        raise (NetworkTimeout() if exc.timeout else NetworkUnavailable()) from exc
    try:
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    except IntegrityError:
        # A concurrent request got the same (Visa or Amex) tokenId and stored it first: update that row.
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)


@transaction.atomic
def _store(*, origin: Origin, card: tsp.CardData, issuer: Issuer, provisioned: tsp.Provisioned,
           account_id: str) -> NetworkToken:
    token = NetworkToken.objects.select_for_update().filter(token_id=provisioned.token_id).first()
    if token is None:
        token = NetworkToken(token_id=provisioned.token_id, merchant=origin.merchant)
    _fill(token, origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    token.save()
    if token.status == NetworkToken.ACTIVE:
        ids = {"requestId": origin.request_id} if origin.request_id else {}
        event_emit(merchant=origin.merchant, type="network_token.created",
                   data=created_data(token, correlation_id=origin.correlation_id, **ids))
    return token


# What a provisioning sets on a token row, new or reused (``_fill``).
TOKEN_FIELDS = [
    "vault_token", "network", "issuer", "status", "token_last_digits", "token_expiry_month", "token_expiry_year",
    "card_bin", "card_last_digits", "card_expiry_month", "card_expiry_year", "payment_account_reference",
    "account_id", "correlation_id", "updated_at", "key_version", "dpan_ciphertext",
]


def _fill(token: NetworkToken, *, origin: Origin, card: tsp.CardData, issuer: Issuer, provisioned: tsp.Provisioned,
          account_id: str) -> None:
    token.vault_token = origin.vault_token or token.vault_token
    token.network = issuer.network
    token.issuer = issuer
    token.status = provisioned.status
    token.token_last_digits = provisioned.token_number[-4:]
    token.token_expiry_month, token.token_expiry_year = provisioned.token_expiry_month, provisioned.token_expiry_year
    token.card_bin, token.card_last_digits = card.number[:6], card.number[-4:]
    token.card_expiry_month, token.card_expiry_year = card.expiry_month, card.expiry_year
    token.payment_account_reference = provisioned.payment_account_reference
    token.account_id = account_id
    token.correlation_id = origin.correlation_id
    token.updated_at = timezone.now()
    token.key_version, token.dpan_ciphertext = key_ring().encrypt(
        provisioned.token_number, associated_data=token.associated_data()
    )


def created_data(token: NetworkToken, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.created`` event's data: the token's metadata under the correlation id of the request (or
    batch item) it answers, and which request that is (``requestId``, or ``batchId`` and ``index``)."""
    return {**metadata(token), "correlationId": correlation_id, **ids}


def failed_data(error: ApiError, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.failed`` event's data: which request (``requestId``, or ``batchId`` and ``index``) failed,
    under its correlation id, and why."""
    return {**ids, "correlationId": correlation_id, "errorName": error.error_name, "message": _failure_reason(error)}


def metadata(token: NetworkToken) -> dict:
    """Everything about a network token a merchant may see without the detokenize scope (the sync answer)."""
    issuer = token.issuer
    return {
        "tokenId": token.token_id,
        "network": token.network,
        "status": token.status,
        "tokenLastDigits": token.token_last_digits,
        "tokenExpiryDate": {"month": token.token_expiry_month, "year": token.token_expiry_year},
        "cardBin": token.card_bin,
        "cardLastDigits": token.card_last_digits,
        "cardExpiryDate": {"month": token.card_expiry_month, "year": token.card_expiry_year},
        "paymentAccountReference": token.payment_account_reference,
        "cardArt": list(issuer.card_art_ids),
        "issuer": {"name": issuer.name},
        "correlationId": token.correlation_id,
    }


# ------------------------------------------------------------------------------------------------------------
# Asynchronous requests
# ------------------------------------------------------------------------------------------------------------
def provisioning_request_create(*, merchant: Merchant, correlation_id: str, card: tsp.CardData | None = None,
                                vault_token: Token | None = None, account_id: str = "",
                                email: str = "") -> ProvisioningRequest:
    """Accept an async request (unsupported networks and Amex without email are refused at once) and queue it.

    The request is due at once and its message goes to the broker after the commit; if the message is lost (the
    broker down, restarted, or a worker killed holding it) the sweeper queues the request again. A card sent in the
    body is kept encrypted on the request row until the request ends; the task gets the id.
    """
    network = check_supported((card or card_from_vault(vault_token)).number, email=email)
    now = timezone.now()
    with transaction.atomic():
        request = ProvisioningRequest(merchant=merchant, correlation_id=correlation_id, network=network,
                                      vault_token=vault_token, account_id=account_id, email=email,
                                      next_attempt_at=now, queued_until=now + _request_lease())
        if card is not None:
            request.key_version, request.card_ciphertext = key_ring().encrypt(
                f"{card.number}|{card.expiry_month}|{card.expiry_year}|{card.holder_name}",
                associated_data=request.associated_data(),
            )
        request.save()
        _queue_requests_after_commit([request.pk])
    return request


def _request_lease() -> timedelta:
    return timedelta(seconds=settings.NETWORK_REQUEST_LEASE_SECONDS)


def _queue_requests_after_commit(request_ids: list[int]) -> None:
    from networks.tasks import run_provisioning_request

    def publish():
        for request_id in request_ids:
            run_provisioning_request.delay(request_id)

    # robust: with the broker down the request is still accepted; the sweeper queues it once its lease has passed.
    transaction.on_commit(publish, robust=True)


def _request_card(request: ProvisioningRequest) -> tsp.CardData:
    if request.card_ciphertext is None:
        return card_from_vault(request.vault_token)
    plain = key_ring().decrypt(request.key_version, request.card_ciphertext, associated_data=request.associated_data())
    number, month, year, holder = plain.split("|", 3)
    return tsp.CardData(number, int(month), int(year), holder)


def request_retry_delay(attempts: int) -> timedelta:
    """How long after its ``attempts``-th attempt failed transiently a request is due again: 2, 4, 8, 16 s (at most
    60), ±20 % so that requests failing together do not all come back together."""
    return timedelta(seconds=min(2 ** attempts, 60) * random.uniform(0.8, 1.2))


def provisioning_request_run(*, request_id: int) -> None:
    """One attempt at an async request, if it is due and no other worker holds it; safe to run twice.

    Claims the attempt (``claimed_until``, ``claim``): a duplicate or late message finds the request claimed, not
    due, or ended, and does nothing. A transient TSP failure makes the request due again later (``next_attempt_at``;
    the sweeper queues it then) until the ASYNC_MAX_ATTEMPTS-th, which fails it. Every end (token or failure) is a
    webhook carrying the correlation id; an INACTIVE token's request waits for its activation (PENDING_ACTIVATION).
    """
    now = timezone.now()
    claim = secrets.token_hex(16)
    claimed = ProvisioningRequest.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        pk=request_id, status=ProvisioningRequest.PENDING, next_attempt_at__lte=now,
    ).update(attempts=F("attempts") + 1, claim=claim, claimed_until=now + _request_lease(), queued_until=None,
             updated_at=now)
    if not claimed:
        return
    request = ProvisioningRequest.objects.select_related("merchant", "vault_token").get(pk=request_id)
    if request.attempts > ASYNC_MAX_ATTEMPTS:
        # Only attempts that never ended get here (a transient failure fails the last one): the worker was killed,
        # ran out of memory, or lost the database each time. Perhaps because of the request: give up on it.
        _request_failed(request, InternalError("The attempts at this request kept stopping before they ended"),
                        claim=claim)
        return
    origin = Origin(merchant=request.merchant, correlation_id=request.correlation_id, vault_token=request.vault_token,
                    request_id=request.public_id)
    try:
        if request.vault_token_id and request.vault_token.deleted_at is not None:
            raise BusinessRuleError("resourceNotFound", "The vault token was deleted", status_code=404)
        token = network_token_provision(origin=origin, card=_request_card(request), account_id=request.account_id,
                                        email=request.email)
    except NetworkUnavailable as exc:
        if request.attempts >= ASYNC_MAX_ATTEMPTS:
            _request_failed(request, exc, claim=claim)
        else:
            ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
                next_attempt_at=timezone.now() + request_retry_delay(request.attempts), claimed_until=None, claim="",
                updated_at=timezone.now(),
            )
    except ApiError as exc:
        _request_failed(request, exc, claim=claim)
    except DatabaseError:
        raise  # not the request's fault: its claim runs out and the sweeper queues it again
    except KeysUnavailable:
        # Not the request's fault either (a key rollout not here yet, keys that do not match the data): it waits,
        # this attempt not counted, until an operator has fixed the keys.
        ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
            attempts=F("attempts") - 1, next_attempt_at=timezone.now() + KEYS_UNAVAILABLE_WAIT, claimed_until=None,
            claim="", updated_at=timezone.now(),
        )
    except Exception as exc:
        # A bug, or a card that cannot be read: the request fails rather than coming back for ever. Its type only: a
        # message could hold card data.
        logger.error("network-token request %s failed: unexpected %s", request.public_id, type(exc).__name__)
        _request_failed(request, InternalError(), claim=claim)
    else:
        # An INACTIVE token (a step-up) is not usable yet: the request waits for the network to activate it.
        status = ProvisioningRequest.SUCCEEDED if token.status == NetworkToken.ACTIVE else (
            ProvisioningRequest.PENDING_ACTIVATION)
        ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
            status=status, network_token=token, card_ciphertext=None, next_attempt_at=None, claimed_until=None,
            updated_at=timezone.now(),
        )


@transaction.atomic
def _request_failed(request: ProvisioningRequest, error: ApiError, *, claim: str) -> None:
    """End ``request`` FAILED with a webhook, unless another worker took the attempt over (its lease ran out)."""
    ended = ProvisioningRequest.objects.filter(pk=request.pk, claim=claim, status=ProvisioningRequest.PENDING).update(
        status=ProvisioningRequest.FAILED, failure_code=error.error_name, failure_reason=_failure_reason(error),
        card_ciphertext=None, next_attempt_at=None, claimed_until=None, updated_at=timezone.now(),
    )
    if ended:
        event_emit(merchant=request.merchant, type="network_token.failed",
                   data=failed_data(error, correlation_id=request.correlation_id, requestId=request.public_id))


def provisioning_requests_sweep(*, limit: int = 1000) -> int:
    """Queue every PENDING request that is due and neither queued nor claimed (a lost message, a killed worker, a
    retry whose time has come), oldest first, at most ``limit`` a run; returns how many. Taken with SKIP LOCKED and
    marked queued in one transaction, so two sweepers never queue the same request twice."""
    now = timezone.now()
    with transaction.atomic():
        due = list(
            ProvisioningRequest.objects.select_for_update(skip_locked=True)
            .filter(status=ProvisioningRequest.PENDING, next_attempt_at__lte=now)
            .filter(Q(queued_until__isnull=True) | Q(queued_until__lt=now))
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
            .order_by("next_attempt_at").values_list("pk", flat=True)[:limit]
        )
        ProvisioningRequest.objects.filter(pk__in=due).update(queued_until=now + _request_lease())
        _queue_requests_after_commit(due)
    if due:
        logger.info("queued %d due network-token request(s) again", len(due))
    return len(due)


@transaction.atomic
def provisioning_request_retry_now(*, request: ProvisioningRequest, actor: vault_services.Actor) -> bool:
    """An operator's "retry now" of a PENDING request: due now, its leases dropped (a worker still holding it loses
    the claim: at worst the network is asked twice, as after a lease ran out), queued after the commit; audited.
    Returns False, writing nothing, for a request that is no longer PENDING."""
    now = timezone.now()
    retried = ProvisioningRequest.objects.filter(pk=request.pk, status=ProvisioningRequest.PENDING).update(
        next_attempt_at=now, claimed_until=None, claim="", queued_until=now + _request_lease(), updated_at=now
    )
    if retried:
        vault_services.audit_record(actor=actor, action="admin.network_token_request.retry_now",
                                    object_type="network_token_request", object_id=request.public_id,
                                    detail={"merchant": request.merchant.public_id, "attempts": request.attempts})
        _queue_requests_after_commit([request.pk])
    return bool(retried)


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
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
        item = BatchItem(index=index, token_reference=_safe_reference(entry.token_reference),
                         vault_token=entry.vault_token, correlation_id=entry.correlation_id or batch.public_id,
                         account_id=entry.account_id, email=entry.email)
        try:
            if entry.vault_token is None:
                raise BusinessRuleError("resourceNotFound", "The vault token does not exist", status_code=404)
            number = card_from_vault(entry.vault_token).number
            network = check_supported(number, email=entry.email)
            if (network, number[:6]) not in issuers:
                issuers[network, number[:6]] = issuer_for(number, network)
            item.issuer = issuers[network, number[:6]]
        except NetworkNotConfigured:
            raise  # the installation's fault, not the item's: the whole batch answers 503
        except ApiError as exc:
            item.status, item.failure_code, item.finished_at = BatchItem.FAILED, exc.error_name, now
            item.failure_reason = _failure_reason(exc)
            failures.append(failed_data(exc, correlation_id=item.correlation_id, batchId=batch.public_id, index=index))
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
    return batch


def _safe_reference(reference: str) -> str:
    """A merchant may paste a card number where a token reference belongs: never keep that in clear."""
    return redact(reference)[:200]


def _failure_reason(error: ApiError) -> str:
    return (error.validation_errors[0]["message"] if error.validation_errors else error.message)[:255]


def _dispatch_soon() -> None:
    from networks.tasks import dispatch_batches

    dispatch_batches.delay()


@dataclass
class _Call:
    """What the TSP said about one batch item, waiting to be written with the others of its chunk."""

    item: BatchItem
    called_at: datetime | None = None
    card: tsp.CardData | None = None
    provisioned: tsp.Provisioned | None = None
    error: ApiError | None = None


def batch_items_run(*, item_ids: list[int]) -> int:
    """Provision released batch items (a chunk of one issuer's, as the dispatcher sends them); returns how many
    ended.

    Only items still QUEUED are claimed, so a duplicate message finds nothing to do. Each TSP call waits for a slot
    of its issuer (``scheduling.CallSlots``); what the calls return is written about once a second and at the end,
    in one transaction each time: the network tokens, their ``network_token.created`` events, the items' outcomes
    and their batches' progress together. A worker killed at any moment thus leaves every item either ended, once,
    or claimed until its lease runs out and it is released again (``batch_items_reclaim``); an item whose lease ran
    out while this worker still had it (it now belongs to another) is not written. A transient TSP failure puts the
    item back for the dispatcher until its BATCH_ITEM_MAX_ATTEMPTS-th attempt, which fails it.
    """
    claim = secrets.token_hex(16)
    if not BatchItem.objects.filter(pk__in=item_ids, status=BatchItem.QUEUED).update(
        status=BatchItem.RUNNING, called_at=timezone.now(), claim=claim
    ):
        return 0
    position = {item_id: n for n, item_id in enumerate(item_ids)}
    items = sorted(
        BatchItem.objects.filter(pk__in=item_ids, claim=claim)
        .select_related("batch__merchant", "vault_token", "issuer"),
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
                ended += _batch_items_write(done, claim=claim, rest=items[n + 1:])
                done, written = [], time.monotonic()
    except BaseException:
        # The database went away, the task hit its time limit...: keep what the TSP already answered (a second call
        # could mint a second token) and hand the rest back now rather than when the lease runs out.
        _batch_items_write(done, claim=claim, rest=items[n:], hand_back=True)
        raise
    return ended + _batch_items_write(done, claim=claim, rest=[])


def batch_item_run(*, item_id: int) -> None:
    """One released item on its own (the demo seeder runs a batch this way, without workers)."""
    batch_items_run(item_ids=[item_id])


def _batch_item_call(item: BatchItem, slots: scheduling.CallSlots) -> _Call:
    call = _Call(item)
    try:
        if item.vault_token is None or item.vault_token.deleted_at is not None:
            raise BusinessRuleError("resourceNotFound", "The vault token was deleted", status_code=404)
        call.card = card_from_vault(item.vault_token)
        network = check_supported(call.card.number, email=item.email)
        call.called_at = slots.take()
        call.provisioned = token_service(network).provision(tsp.ProvisionRequest(
            merchant_id=item.batch.merchant.public_id, card=call.card, account_id=item.account_id, email=item.email
        ))
    except tsp.Declined:
        call.error = tokenization_declined()
    except tsp.TspError as exc:
        call.error = NetworkTimeout() if exc.timeout else NetworkUnavailable()
    except ApiError as exc:
        call.error = exc
    except (DatabaseError, KeysUnavailable):
        raise  # not the item's fault: batch_items_run hands the chunk back
    except Exception as exc:
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
        .order_by("pk").values_list("pk", flat=True)
    )
    calls = [call for call in calls if call.item.pk in still_ours]
    now = timezone.now()
    made = [call for call in calls if call.provisioned is not None]
    for call, token in zip(made, _tokens_store(made, now=now)):
        call.item.network_token = token

    events = defaultdict(list)  # (merchant, type) → the items' webhooks, written in bulk
    ended_per_batch = Counter()
    for call in calls:
        item = call.item
        item.attempts += 1
        item.claim = ""
        item.called_at = call.called_at  # None for an item that failed before its call
        merchant, ids = item.batch.merchant, {"batchId": item.batch.public_id, "index": item.index}
        if call.provisioned is None and isinstance(call.error, NetworkUnavailable) \
                and item.attempts < BATCH_ITEM_MAX_ATTEMPTS:
            item.status = BatchItem.PENDING
            continue
        if call.provisioned is None:
            item.status = BatchItem.FAILED
            item.failure_code, item.failure_reason = call.error.error_name, _failure_reason(call.error)
            events[merchant, "network_token.failed"].append(
                failed_data(call.error, correlation_id=item.correlation_id, **ids)
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
    for (merchant, type), data in events.items():
        events_emit(merchant=merchant, type=type, data=data)
    # The items are locked rows of ours: "insert, or on their id update these fields" writes every item's own values
    # in one statement (bulk_update's CASE per field and row cost more than the rest of the write).
    BatchItem.objects.bulk_create([call.item for call in calls], update_conflicts=True, unique_fields=["id"],
                                  update_fields=["status", "attempts", "claim", "called_at", "network_token",
                                                 "failure_code", "failure_reason", "finished_at"])
    if rest:
        unstarted = BatchItem.objects.filter(pk__in=[item.pk for item in rest], status=BatchItem.RUNNING, claim=claim)
        if hand_back:
            unstarted.update(status=BatchItem.PENDING, claim="")
        else:
            unstarted.update(called_at=now)
    # Last, and in a fixed order: each batch row stays locked until the commit, by whichever worker writes to it.
    for batch_id in sorted(ended_per_batch):
        _batch_progress(batch_id, ended=ended_per_batch[batch_id], now=now)
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
    for call in calls:
        token_id, batch = call.provisioned.token_id, call.item.batch
        token = tokens.get(token_id) or stored.get(token_id) or NetworkToken(
            token_id=token_id, merchant=batch.merchant, created_at=now
        )
        origin = Origin(merchant=batch.merchant, correlation_id=call.item.correlation_id,
                        vault_token=call.item.vault_token)
        _fill(token, origin=origin, card=call.card, issuer=call.item.issuer, provisioned=call.provisioned,
              account_id=call.item.account_id)
        token.updated_at = now
        tokens[token_id] = token
    NetworkToken.objects.bulk_create([token for token in tokens.values() if token.pk is None])
    changed = [token for token_id, token in tokens.items() if token_id in stored]
    if changed:
        NetworkToken.objects.bulk_update(changed, fields=TOKEN_FIELDS)
    return [tokens[call.provisioned.token_id] for call in calls]


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
    given_up = list(abandoned.select_for_update(skip_locked=True, of=("self",)).select_related("batch__merchant")
                    .order_by("pk"))
    if not given_up:
        return 0
    error = InternalError(f"The worker provisioning it stopped {BATCH_ITEM_MAX_ABANDONED} times")
    BatchItem.objects.filter(pk__in=[item.pk for item in given_up]).update(
        status=BatchItem.FAILED, claim="", abandoned=F("abandoned") + 1, failure_code=error.error_name,
        failure_reason=_failure_reason(error), finished_at=now,
    )
    logger.error("%d batch item(s) failed: their worker stopped %d times", len(given_up), BATCH_ITEM_MAX_ABANDONED)
    failures = defaultdict(list)
    for item in given_up:
        failures[item.batch.merchant].append(
            failed_data(error, correlation_id=item.correlation_id, batchId=item.batch.public_id, index=item.index)
        )
    for merchant, data in failures.items():
        events_emit(merchant=merchant, type="network_token.failed", data=data)
    # In a fixed order, as _batch_items_write locks batches.
    for batch_id, ended in sorted(Counter(item.batch_id for item in given_up).items()):
        _batch_progress(batch_id, ended=ended, now=now)
    return len(given_up)


def _batch_progress(batch_id: int, *, ended: int, now: datetime) -> None:
    """Count ``ended`` more items of the batch; the one that reaches its total completes it (one statement)."""
    completes = Q(finished=F("total") - ended)
    Batch.objects.filter(pk=batch_id).update(
        finished=F("finished") + ended,
        status=Case(When(completes, then=Value(Batch.COMPLETED)), default=F("status")),
        completed_at=Case(When(completes, then=Value(now)), default=F("completed_at")),
    )


# ------------------------------------------------------------------------------------------------------------
# Using and managing tokens
# ------------------------------------------------------------------------------------------------------------
def cryptogram_create(*, token: NetworkToken, actor: vault_services.Actor, reveal_number: bool) -> dict:
    """A single-use cryptogram for an ACTIVE token; audited; a use of the vault token behind it (so its expiry may
    be extended). The token number is included only when ``reveal_number`` (the detokenize scope)."""
    if token.status != NetworkToken.ACTIVE:
        raise BusinessRuleError("tokenNotActive", f"The network token is {token.status}, not ACTIVE", status_code=422)
    # Decrypted first: a number this server cannot read (its key not here yet) must not cost a cryptogram and a use.
    number = key_ring().decrypt(token.key_version, token.dpan_ciphertext,
                                associated_data=token.associated_data()) if reveal_number else None
    try:
        cryptogram, eci = token_service(token.network).cryptogram(token_id=token.token_id)
    except tsp.TspError as exc:
        raise (NetworkTimeout() if exc.timeout else NetworkUnavailable()) from exc
    with transaction.atomic():
        if token.vault_token_id and token.vault_token.deleted_at is None:
            vault_services.token_use(token=token.vault_token, reason="cryptogram")
        vault_services.audit_record(actor=actor, action="network_token.cryptogram", object_type="network_token",
                                    object_id=token.token_id)
    answer = {
        "cryptogram": cryptogram,
        "eci": eci,
        "tokenExpiryDate": {"month": token.token_expiry_month, "year": token.token_expiry_year},
        "cryptogramExpiryDateTime": timestamp(timezone.now() + CRYPTOGRAM_LIFETIME),
    }
    if number is not None:
        answer["tokenNumber"] = number
    return answer


LIFECYCLE_STATUS = {
    LifecycleEvent.SUSPENDED: NetworkToken.SUSPENDED,
    LifecycleEvent.RESUMED: NetworkToken.ACTIVE,
    LifecycleEvent.DELETED: NetworkToken.DELETED,
}
# The statuses each event may come from: only an active token is suspended; a suspended one is resumed, and an
# inactive one is activated once its step-up is done; anything not yet deleted can be deleted or have its card
# updated.
LIFECYCLE_FROM = {
    LifecycleEvent.SUSPENDED: {NetworkToken.ACTIVE},
    LifecycleEvent.RESUMED: {NetworkToken.SUSPENDED, NetworkToken.INACTIVE},
    LifecycleEvent.DELETED: {NetworkToken.ACTIVE, NetworkToken.INACTIVE, NetworkToken.SUSPENDED},
    LifecycleEvent.CARD_UPDATED: {NetworkToken.ACTIVE, NetworkToken.INACTIVE, NetworkToken.SUSPENDED},
}


@transaction.atomic
def lifecycle_apply(*, token: NetworkToken, type: str, source: str, expiry: tuple[int, int] | None = None,
                    card_last_digits: str | None = None) -> LifecycleEvent:
    """Record what the TSP says happened to ``token`` and tell the merchant (``network_token.updated``).

    SUSPENDED and ACTIVE (resumed) change the status; DELETED also destroys the token number; CARD_UPDATED (a
    reissued card) records the new card expiry and/or last digits. An event that does not fit the token's status
    (``LIFECYCLE_FROM``) raises lifecycleTransitionNotAllowed (422).

    A token created INACTIVE (a step-up) was not announced yet: when it becomes ACTIVE, the asynchronous requests
    and batch items waiting for it succeed, each with a ``network_token.created`` webhook under its own correlation
    id (one under the token's own for a token provisioned synchronously); when it is deleted instead, they fail,
    each with a ``network_token.failed`` webhook.
    """
    token = NetworkToken.objects.select_for_update().get(pk=token.pk)
    if token.status not in LIFECYCLE_FROM[type]:
        raise BusinessRuleError(
            "lifecycleTransitionNotAllowed", f"A {token.status} network token cannot become {type}", status_code=422
        )
    old_status, detail = token.status, {}
    if type == LifecycleEvent.CARD_UPDATED:
        if expiry:
            token.card_expiry_month, token.card_expiry_year = expiry
            detail["cardExpiryDate"] = {"month": expiry[0], "year": expiry[1]}
        if card_last_digits:
            token.card_last_digits = card_last_digits
            detail["cardLastDigits"] = card_last_digits
    else:
        token.status = LIFECYCLE_STATUS[type]
    if type == LifecycleEvent.DELETED:
        token.dpan_ciphertext, token.key_version = None, None
    token.updated_at = timezone.now()
    token.save()
    event = LifecycleEvent.objects.create(network_token=token, type=type, old_status=old_status,
                                          new_status=token.status, detail=detail, source=source)
    event_emit(merchant=token.merchant, type="network_token.updated",
               data={**metadata(token), "event": type, **detail})
    if old_status == NetworkToken.INACTIVE and token.status in (NetworkToken.ACTIVE, NetworkToken.DELETED):
        _activation_settled(token)
    return event


def _activation_settled(token: NetworkToken) -> None:
    """End what waited for ``token``'s activation (see ``lifecycle_apply``), in the caller's transaction."""
    now = timezone.now()
    requests = list(ProvisioningRequest.objects.select_for_update().filter(
        network_token=token, status=ProvisioningRequest.PENDING_ACTIVATION).order_by("pk"))
    items = list(BatchItem.objects.select_for_update(of=("self",)).select_related("batch").filter(
        network_token=token, status=BatchItem.PENDING_ACTIVATION).order_by("pk"))
    waiting = [(request.correlation_id, {"requestId": request.public_id}) for request in requests] + [
        (item.correlation_id, {"batchId": item.batch.public_id, "index": item.index}) for item in items
    ]
    if token.status == NetworkToken.ACTIVE:
        ProvisioningRequest.objects.filter(pk__in=[r.pk for r in requests]).update(
            status=ProvisioningRequest.SUCCEEDED, updated_at=now)
        BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(status=BatchItem.SUCCEEDED, finished_at=now)
        data = [created_data(token, correlation_id=correlation_id, **ids) for correlation_id, ids in waiting]
        events_emit(merchant=token.merchant, type="network_token.created",
                    data=data or [created_data(token, correlation_id=token.correlation_id)])
        return
    error = BusinessRuleError("tokenNotActivated", "The network deleted the token before it was activated",
                              status_code=422)
    ProvisioningRequest.objects.filter(pk__in=[r.pk for r in requests]).update(
        status=ProvisioningRequest.FAILED, failure_code=error.error_name, failure_reason=_failure_reason(error),
        updated_at=now)
    # Their batches counted them as finished already, when the TSP answered.
    BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(
        status=BatchItem.FAILED, failure_code=error.error_name, failure_reason=_failure_reason(error), finished_at=now)
    if waiting:
        events_emit(merchant=token.merchant, type="network_token.failed", data=[
            failed_data(error, correlation_id=correlation_id, tokenId=token.token_id, **ids)
            for correlation_id, ids in waiting
        ])


def network_token_delete(*, token: NetworkToken, source: str) -> LifecycleEvent:
    """Delete at the merchant's request: the TSP deletes the token, which is then recorded like any lifecycle event."""
    return lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source=source)


