"""Asynchronous network-token requests: accepted at once, provisioned by a worker, retried from the database, swept
up again when a message or a worker is lost (see ``networks.models.ProvisioningRequest``)."""

import logging
import random
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import queue
from core.audit import Actor, audit_record
from core.errors import ApiError, InternalError, NotFound
from merchants.models import Merchant
from networks import tsp
from networks.errors import Failure, TspUnavailable, failure_of
from networks.events import failed_data
from networks.models import NetworkToken, ProvisioningRequest
from networks.services.provisioning import Origin, card_from_vault, check_supported, network_token_provision
from notifications.services import event_emit
from vault.crypto import KeysUnavailable
from vault.keys import key_ring
from vault.models import Token

ASYNC_MAX_ATTEMPTS = 5
# How long an async request waits for this server's keys to match the data again before its next attempt.
KEYS_UNAVAILABLE_WAIT = timedelta(seconds=60)

logger = logging.getLogger(__name__)


def provisioning_request_create(
    *,
    merchant: Merchant,
    correlation_id: str,
    card: tsp.CardData | None = None,
    vault_token: Token | None = None,
    account_id: str = "",
    email: str = "",
) -> ProvisioningRequest:
    """Accept an async request (unsupported networks and Amex without email are refused at once) and queue it.

    The request is due at once and its message goes to the broker after the commit; if the message is lost (the
    broker down, restarted, or a worker killed holding it) the sweeper queues the request again. A card sent in the
    body is kept encrypted on the request row until the request ends; the task gets the id.
    """
    network = check_supported((card or card_from_vault(vault_token)).number, email=email)
    now = timezone.now()
    with transaction.atomic():
        request = ProvisioningRequest(
            merchant=merchant,
            correlation_id=correlation_id,
            network=network,
            vault_token=vault_token,
            account_id=account_id,
            email=email,
            next_attempt_at=now,
            queued_until=now + _request_lease(),
        )
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
    def publish():
        for request_id in request_ids:
            queue.send("networks.tasks.run_provisioning_request", request_id)

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
    return timedelta(seconds=min(2**attempts, 60) * random.uniform(0.8, 1.2))


def provisioning_request_run(*, request_id: int) -> None:
    """One attempt at an async request, if it is due and no other worker holds it; safe to run twice.

    Claims the attempt (``claimed_until``, ``claim``): a duplicate or late message finds the request claimed, not
    due, or ended, and does nothing. A transient TSP failure makes the request due again later (``next_attempt_at``;
    the sweeper queues it then) until the ASYNC_MAX_ATTEMPTS-th, which fails it; a failure that is not transient
    fails it at once. Every end (token or failure) is a webhook carrying the correlation id; an INACTIVE token's
    request waits for its activation (PENDING_ACTIVATION).
    """
    now = timezone.now()
    claim = secrets.token_hex(16)
    claimed = ProvisioningRequest.objects.filter(
        Q(claimed_until__isnull=True) | Q(claimed_until__lt=now),
        pk=request_id,
        status=ProvisioningRequest.PENDING,
        next_attempt_at__lte=now,
    ).update(
        attempts=F("attempts") + 1, claim=claim, claimed_until=now + _request_lease(), queued_until=None, updated_at=now
    )
    if not claimed:
        return
    request = ProvisioningRequest.objects.select_related("merchant", "vault_token").get(pk=request_id)
    if request.attempts > ASYNC_MAX_ATTEMPTS:
        # Only attempts that never ended get here (a transient failure fails the last one): the worker was killed,
        # ran out of memory, or lost the database each time. Perhaps because of the request: give up on it.
        _request_failed(
            request, InternalError("The attempts at this request kept stopping before they ended"), claim=claim
        )
        return
    origin = Origin(
        merchant=request.merchant,
        correlation_id=request.correlation_id,
        vault_token=request.vault_token,
        request_id=request.public_id,
    )
    try:
        if request.vault_token_id and request.vault_token.deleted_at is not None:
            raise NotFound("The vault token was deleted")
        token = network_token_provision(
            origin=origin, card=_request_card(request), account_id=request.account_id, email=request.email
        )
    except TspUnavailable as exc:
        if not exc.transient or request.attempts >= ASYNC_MAX_ATTEMPTS:
            _request_failed(request, exc, claim=claim)
        else:
            ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
                next_attempt_at=timezone.now() + request_retry_delay(request.attempts),
                claimed_until=None,
                claim="",
                updated_at=timezone.now(),
            )
    except (ApiError, NotFound) as exc:
        _request_failed(request, exc, claim=claim)
    except DatabaseError:
        raise  # not the request's fault: its claim runs out and the sweeper queues it again
    except KeysUnavailable:
        # Not the request's fault either (a key rollout not here yet, keys that do not match the data): it waits,
        # this attempt not counted, until an operator has fixed the keys.
        ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
            attempts=F("attempts") - 1,
            next_attempt_at=timezone.now() + KEYS_UNAVAILABLE_WAIT,
            claimed_until=None,
            claim="",
            updated_at=timezone.now(),
        )
    except Exception as exc:  # noqa: BLE001 - see below
        # A bug, or a card that cannot be read: the request fails rather than coming back for ever. Its type only: a
        # message could hold card data.
        logger.error("network-token request %s failed: unexpected %s", request.public_id, type(exc).__name__)
        _request_failed(request, InternalError(), claim=claim)
    else:
        # An INACTIVE token (a step-up) is not usable yet: the request waits for the network to activate it.
        status = (
            ProvisioningRequest.SUCCEEDED
            if token.status == NetworkToken.ACTIVE
            else (ProvisioningRequest.PENDING_ACTIVATION)
        )
        ProvisioningRequest.objects.filter(pk=request.pk, claim=claim).update(
            status=status,
            network_token=token,
            card_ciphertext=None,
            next_attempt_at=None,
            claimed_until=None,
            updated_at=timezone.now(),
        )


@transaction.atomic
def _request_failed(request: ProvisioningRequest, error: Failure, *, claim: str) -> None:
    """End ``request`` FAILED with a webhook, unless another worker took the attempt over (its lease ran out)."""
    code, reason = failure_of(error)
    ended = ProvisioningRequest.objects.filter(pk=request.pk, claim=claim, status=ProvisioningRequest.PENDING).update(
        status=ProvisioningRequest.FAILED,
        failure_code=code,
        failure_reason=reason,
        card_ciphertext=None,
        next_attempt_at=None,
        claimed_until=None,
        updated_at=timezone.now(),
    )
    if ended:
        event_emit(
            merchant=request.merchant,
            type="network_token.failed",
            data=failed_data(code, reason, correlation_id=request.correlation_id, requestId=request.public_id),
        )


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
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        ProvisioningRequest.objects.filter(pk__in=due).update(queued_until=now + _request_lease())
        _queue_requests_after_commit(due)
    if due:
        logger.info("queued %d due network-token request(s) again", len(due))
    return len(due)


@transaction.atomic
def provisioning_request_retry_now(*, request: ProvisioningRequest, actor: Actor) -> bool:
    """An operator's "retry now" of a PENDING request: due now, its leases dropped (a worker still holding it loses
    the claim: at worst the network is asked twice, as after a lease ran out), queued after the commit; audited.
    Returns False, writing nothing, for a request that is no longer PENDING."""
    now = timezone.now()
    retried = ProvisioningRequest.objects.filter(pk=request.pk, status=ProvisioningRequest.PENDING).update(
        next_attempt_at=now, claimed_until=None, claim="", queued_until=now + _request_lease(), updated_at=now
    )
    if retried:
        audit_record(
            actor=actor,
            action="admin.network_token_request.retry_now",
            obj=request,
            detail={"merchant": request.merchant.public_id, "attempts": request.attempts},
        )
        _queue_requests_after_commit([request.pk])
    return bool(retried)
