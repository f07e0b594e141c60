"""Network tokens: provisioning from the TSPs (sync, async, batches), cryptograms, lifecycle. Every write is here.

A TSP call never runs inside a database transaction (it may take seconds); what it returns is stored in one. Card
and token numbers only ever exist in memory, in the vault's encryption, or in a detokenize-scoped answer.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import ApiError, BusinessRuleError
from config.http import timestamp
from config.logging import redact
from networks import scheduling, tsp
from networks.models import Batch, BatchItem, Issuer, LifecycleEvent, NetworkToken, ProvisioningRequest
from notifications.services import event_emit
from vault import cards
from vault import services as vault_services
from vault.crypto import key_ring
from vault.models import Merchant, Token

CRYPTOGRAM_LIFETIME = timedelta(minutes=15)
ASYNC_MAX_ATTEMPTS = 5
BATCH_ITEM_MAX_ATTEMPTS = 3


class NetworkUnavailable(ApiError):
    status_code = 502
    error_name = "networkUnavailable"
    default_message = "The card network's token service is unavailable; try again later"


class NetworkTimeout(NetworkUnavailable):
    status_code = 504
    default_message = "The card network's token service did not answer in time; try again later"


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
    """Where the card of a provisioning comes from and who asked: for the token row and its events."""

    merchant: Merchant
    correlation_id: str
    vault_token: Token | None = None


# ------------------------------------------------------------------------------------------------------------
# Cards and issuers
# ------------------------------------------------------------------------------------------------------------
def card_from_vault(token: Token) -> tsp.CardData:
    number = key_ring().decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data())
    return tsp.CardData(number, token.expiry_month, token.expiry_year, token.card_holder_name)


def issuer_for(card_number: str, network: str) -> Issuer:
    """The issuer whose BIN range holds the card; cards outside the registry go to the network's catch-all issuer."""
    bin_ = card_number[:6]
    issuer = (
        Issuer.objects.filter(network=network, bin_low__lte=bin_, bin_high__gte=bin_)
        .order_by("-bin_low", "bin_high").first()  # the innermost range holding the BIN was registered for it
    )
    if issuer is None:
        issuer, _ = Issuer.objects.get_or_create(
            network=network, bin_low="000000", bin_high="999999", defaults={"name": f"Other {network} issuers"}
        )
    return issuer


def check_supported(number: str, *, email: str) -> str:
    """The card's network; raises networkNotSupported (422) or, for Amex without email, a 400."""
    network = cards.brand_of(number)
    provider = tsp.provider_for(network)
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

    Visa and Amex give the same tokenId again for the same merchant and card (and accountId, and Amex's email):
    the stored token is then returned, updated. Raises networkNotSupported/tokenizationDeclined (422),
    NetworkUnavailable/NetworkTimeout (502/504, ``transient`` on the cause) and emits ``network_token.created``.
    """
    network = check_supported(card.number, email=email)
    issuer = issuer_for(card.number, network)
    scheduling.call_slot(issuer)
    if on_call is not None:
        on_call()
    try:
        provisioned = tsp.provider_for(network).provision(tsp.ProvisionRequest(
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
    token.save()
    event_emit(merchant=origin.merchant, type="network_token.created", data=metadata(token))
    return token


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

    A card sent in the body is kept encrypted on the request row until the request ends; the task gets the id.
    """
    from networks.tasks import run_provisioning_request

    network = check_supported((card or card_from_vault(vault_token)).number, email=email)
    with transaction.atomic():
        request = ProvisioningRequest(merchant=merchant, correlation_id=correlation_id, network=network,
                                      vault_token=vault_token, account_id=account_id, email=email)
        if card is not None:
            request.key_version, request.card_ciphertext = key_ring().encrypt(
                f"{card.number}|{card.expiry_month}|{card.expiry_year}|{card.holder_name}",
                associated_data=request.associated_data(),
            )
        request.save()
        transaction.on_commit(lambda: run_provisioning_request.delay(request.pk), robust=True)
    return request


def _request_card(request: ProvisioningRequest) -> tsp.CardData:
    if request.card_ciphertext is None:
        return card_from_vault(request.vault_token)
    plain = key_ring().decrypt(request.key_version, request.card_ciphertext, associated_data=request.associated_data())
    number, month, year, holder = plain.split("|", 3)
    return tsp.CardData(number, int(month), int(year), holder)


def provisioning_request_run(*, request_id: int, final_attempt: bool) -> None:
    """One attempt at an async request. A transient TSP failure raises (the task retries it) unless this is the
    final attempt; every end (token or failure) is a webhook carrying the correlation id."""
    request = ProvisioningRequest.objects.select_related("merchant", "vault_token").filter(
        pk=request_id, status=ProvisioningRequest.PENDING
    ).first()
    if request is None:
        return
    # Claim this attempt: a duplicate message (redelivered after a late ack) finds the count moved on and stops.
    claimed = ProvisioningRequest.objects.filter(pk=request.pk, attempts=request.attempts).update(
        attempts=request.attempts + 1, updated_at=timezone.now()
    )
    if not claimed:
        return
    origin = Origin(merchant=request.merchant, correlation_id=request.correlation_id, vault_token=request.vault_token)
    try:
        if request.vault_token_id and request.vault_token.deleted_at is not None:
            raise BusinessRuleError("resourceNotFound", "The vault token was deleted", status_code=404)
        token = network_token_provision(origin=origin, card=_request_card(request), account_id=request.account_id,
                                        email=request.email)
    except NetworkUnavailable as exc:
        if not final_attempt:
            raise
        _request_failed(request, exc)
    except ApiError as exc:
        _request_failed(request, exc)
    else:
        with transaction.atomic():
            ProvisioningRequest.objects.filter(pk=request.pk).update(
                status=ProvisioningRequest.SUCCEEDED, network_token=token, card_ciphertext=None, updated_at=timezone.now()
            )


@transaction.atomic
def _request_failed(request: ProvisioningRequest, error: ApiError) -> None:
    ProvisioningRequest.objects.filter(pk=request.pk).update(
        status=ProvisioningRequest.FAILED, failure_code=error.error_name, failure_reason=error.message[:255],
        card_ciphertext=None, updated_at=timezone.now(),
    )
    event_emit(merchant=request.merchant, type="network_token.failed", data={
        "requestId": request.public_id, "correlationId": request.correlation_id,
        "errorName": error.error_name, "message": error.message,
    })


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchEntry:
    token_reference: str
    vault_token: Token | None
    account_id: str = ""
    email: str = ""


def batch_create(*, merchant: Merchant, entries: list[BatchEntry]) -> Batch:
    """Accept a batch: entries whose vault token is unknown or whose card cannot get a network token fail at once
    with their reason; the others wait for the dispatcher, which releases them fairly across issuers."""
    now = timezone.now()
    items = []
    issuers: dict[tuple[str, str], Issuer] = {}
    for index, entry in enumerate(entries):
        item = BatchItem(index=index, token_reference=_safe_reference(entry.token_reference),
                         vault_token=entry.vault_token,
                         account_id=entry.account_id, email=entry.email)
        try:
            if entry.vault_token is None:
                raise BusinessRuleError("resourceNotFound", "The vault token does not exist", status_code=404)
            number = card_from_vault(entry.vault_token).number
            network = check_supported(number, email=entry.email)
            if (network, number[:6]) not in issuers:
                issuers[network, number[:6]] = issuer_for(number, network)
            item.issuer = issuers[network, number[:6]]
        except ApiError as exc:
            item.status, item.failure_code, item.finished_at = BatchItem.FAILED, exc.error_name, now
            item.failure_reason = (exc.validation_errors[0]["message"] if exc.validation_errors else exc.message)[:255]
        items.append(item)
    with transaction.atomic():
        batch = Batch.objects.create(merchant=merchant, total=len(items))
        for item in items:
            item.batch = batch
        BatchItem.objects.bulk_create(items, batch_size=1000)
        _complete_if_done(batch.pk)
        transaction.on_commit(_dispatch_soon, robust=True)
    batch.refresh_from_db()
    return batch


def _safe_reference(reference: str) -> str:
    """A merchant may paste a card number where a token reference belongs: never keep that in clear."""
    return redact(reference)[:200]


def _dispatch_soon() -> None:
    from networks.tasks import dispatch_batches

    dispatch_batches.delay()


def batch_item_run(*, item_id: int) -> None:
    """Provision one released batch item (idempotent: an item not QUEUED is left alone).

    ``called_at`` is first the moment a worker took the item (for the lease), then the moment its TSP call started.
    """
    now = timezone.now()
    if not BatchItem.objects.filter(pk=item_id, status=BatchItem.QUEUED).update(status=BatchItem.RUNNING, called_at=now):
        return
    item = BatchItem.objects.select_related("batch__merchant", "vault_token").get(pk=item_id)
    origin = Origin(merchant=item.batch.merchant, correlation_id=item.batch.public_id[:36], vault_token=item.vault_token)
    fields = {"attempts": item.attempts + 1}

    def calling():
        BatchItem.objects.filter(pk=item_id).update(called_at=timezone.now())

    try:
        if item.vault_token.deleted_at is not None:
            raise BusinessRuleError("resourceNotFound", "The vault token was deleted", status_code=404)
        token = network_token_provision(origin=origin, card=card_from_vault(item.vault_token),
                                        account_id=item.account_id, email=item.email, on_call=calling)
    except NetworkUnavailable as exc:
        if item.attempts + 1 < BATCH_ITEM_MAX_ATTEMPTS:
            fields.update(status=BatchItem.PENDING)
        else:
            fields.update(status=BatchItem.FAILED, failure_code=exc.error_name, failure_reason=exc.message[:255])
    except ApiError as exc:
        fields.update(status=BatchItem.FAILED, failure_code=exc.error_name, failure_reason=exc.message[:255])
    else:
        fields.update(status=BatchItem.SUCCEEDED, network_token=token)
    if fields.get("status") != BatchItem.PENDING:
        fields["finished_at"] = timezone.now()
    with transaction.atomic():
        BatchItem.objects.filter(pk=item_id).update(**fields)
        _complete_if_done(item.batch_id)


def _complete_if_done(batch_id: int) -> None:
    unfinished = BatchItem.objects.filter(batch_id=batch_id).exclude(status__in=[BatchItem.SUCCEEDED, BatchItem.FAILED])
    if not unfinished.exists():
        Batch.objects.filter(pk=batch_id).exclude(status=Batch.COMPLETED).update(
            status=Batch.COMPLETED, completed_at=timezone.now()
        )


# ------------------------------------------------------------------------------------------------------------
# Using and managing tokens
# ------------------------------------------------------------------------------------------------------------
def cryptogram_create(*, token: NetworkToken, actor: vault_services.Actor, reveal_number: bool) -> dict:
    """A single-use cryptogram for an ACTIVE token; audited; a use of the vault token behind it (so its expiry may
    be extended). The token number is included only when ``reveal_number`` (the detokenize scope)."""
    if token.status != NetworkToken.ACTIVE:
        raise BusinessRuleError("tokenNotActive", f"The network token is {token.status}, not ACTIVE", status_code=422)
    try:
        cryptogram, eci = tsp.provider_for(token.network).cryptogram(token_id=token.token_id)
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
    if reveal_number:
        answer["tokenNumber"] = key_ring().decrypt(token.key_version, token.dpan_ciphertext,
                                                   associated_data=token.associated_data())
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
    return event


def network_token_delete(*, token: NetworkToken, source: str) -> LifecycleEvent:
    """Delete at the merchant's request: the TSP deletes the token, which is then recorded like any lifecycle event."""
    return lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source=source)


