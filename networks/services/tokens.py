"""Using and managing network tokens: cryptograms, and the lifecycle the TSP reports (suspended, resumed, deleted,
card reissued), which also settles the requests and batch items waiting for a step-up token's activation."""

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from config.errors import BusinessRuleError
from config.http import timestamp
from networks import tsp
from networks.models import BatchItem, LifecycleEvent, NetworkToken, ProvisioningRequest
from networks.services.provisioning import (NetworkTimeout, NetworkUnavailable, created_data, failed_data,
                                            failure_reason, metadata, token_service)
from notifications.services import event_emit, events_emit
from vault import services as vault_services
from vault.crypto import key_ring

CRYPTOGRAM_LIFETIME = timedelta(minutes=15)


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
        status=ProvisioningRequest.FAILED, failure_code=error.error_name, failure_reason=failure_reason(error),
        updated_at=now)
    # Their batches counted them as finished already, when the TSP answered.
    BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(
        status=BatchItem.FAILED, failure_code=error.error_name, failure_reason=failure_reason(error), finished_at=now)
    if waiting:
        events_emit(merchant=token.merchant, type="network_token.failed", data=[
            failed_data(error, correlation_id=correlation_id, tokenId=token.token_id, **ids)
            for correlation_id, ids in waiting
        ])


def network_token_delete(*, token: NetworkToken, source: str) -> LifecycleEvent:
    """Delete at the merchant's request: the TSP deletes the token, which is then recorded like any lifecycle event."""
    return lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source=source)
