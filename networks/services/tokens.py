"""Using and managing network tokens: cryptograms, and the lifecycle (suspended, resumed, deleted, card reissued) as
the TSP reports it or an operator triggers it, which also settles the requests and batch items waiting for a step-up
token's activation. ``LIFECYCLE_FROM`` is the one statement of which event may happen to which token."""

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import BusinessRuleError
from networks import tsp
from networks.errors import failure_of, token_not_activated, tsp_unavailable
from networks.events import created_data, failed_data, updated_data
from networks.metrics import CRYPTOGRAM, CRYPTOGRAMS_MADE, batch_items_count, tsp_call_count
from networks.models import BatchItem, LifecycleEvent, NetworkToken, ProvisioningRequest
from networks.services.provisioning import token_service, vault_links_refresh
from notifications.services import event_emit, events_emit
from vault import services as vault_services
from vault.keys import key_ring

CRYPTOGRAM_LIFETIME = timedelta(minutes=15)


@dataclass(frozen=True)
class Cryptogram:
    """A single-use cryptogram for ``token``, valid until ``expires_at``; ``token_number`` only when revealed."""

    token: NetworkToken
    cryptogram: str = field(repr=False)
    eci: str
    expires_at: datetime
    token_number: str | None = field(default=None, repr=False)


def cryptogram_create(*, token: NetworkToken, actor: Actor, reveal_number: bool) -> Cryptogram:
    """A single-use cryptogram for an ACTIVE token; audited; a use of the vault token behind it (so its expiry may
    be extended). The token number is included only when ``reveal_number`` (the detokenize scope). Raises
    tokenNotActive (422) or ``TspUnavailable``. Counted by result (``tokenvault_cryptograms_total``)."""
    if token.status != NetworkToken.ACTIVE:
        CRYPTOGRAMS_MADE[token.network, "not_active"].inc()
        raise BusinessRuleError("tokenNotActive", f"The network token is {token.status}, not ACTIVE", status_code=422)
    # Decrypted first: a number this server cannot read (its key not here yet) must not cost a cryptogram and a use.
    number = (
        key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())
        if reveal_number
        else None
    )
    service = token_service(token.network)
    started = time.monotonic()
    try:
        cryptogram, eci = service.cryptogram(token_id=token.token_id)
    except tsp.TspError as exc:
        outcome = "timeout" if exc.timeout else "error"
        tsp_call_count(network=token.network, operation=CRYPTOGRAM, outcome=outcome, seconds=time.monotonic() - started)
        CRYPTOGRAMS_MADE[token.network, "tsp_unavailable"].inc()
        raise tsp_unavailable(exc) from exc
    tsp_call_count(network=token.network, operation=CRYPTOGRAM, outcome="success", seconds=time.monotonic() - started)
    with transaction.atomic():
        if token.vault_token_id and token.vault_token.deleted_at is None:
            vault_services.token_use(token=token.vault_token, reason="cryptogram")
        audit_record(actor=actor, action="network_token.cryptogram", obj=token)
    CRYPTOGRAMS_MADE[token.network, "issued"].inc()
    return Cryptogram(
        token=token,
        cryptogram=cryptogram,
        eci=eci,
        expires_at=timezone.now() + CRYPTOGRAM_LIFETIME,
        token_number=number,
    )


LIFECYCLE_STATUS = {
    LifecycleEvent.SUSPENDED: NetworkToken.SUSPENDED,
    LifecycleEvent.RESUMED: NetworkToken.ACTIVE,
    LifecycleEvent.DELETED: NetworkToken.DELETED,
}
# The one statement of the lifecycle rules: the statuses each event may come from. Only an active token is
# suspended; a suspended one is resumed, and an inactive one is activated (ACTIVE) once its step-up is done: the
# seed's "created and active" notification waits for it; anything not yet deleted can be deleted or have its card
# updated. The admin offers each action for these statuses only.
_NOT_DELETED = (NetworkToken.ACTIVE, NetworkToken.SUSPENDED, NetworkToken.INACTIVE)
LIFECYCLE_FROM: dict[str, tuple[str, ...]] = {
    LifecycleEvent.SUSPENDED: (NetworkToken.ACTIVE,),
    LifecycleEvent.RESUMED: (NetworkToken.SUSPENDED, NetworkToken.INACTIVE),
    LifecycleEvent.DELETED: _NOT_DELETED,
    LifecycleEvent.CARD_UPDATED: _NOT_DELETED,
}
# What staff call each event, in the admin's actions and the audit log (``admin.network_token.<action>``).
STAFF_ACTIONS = {
    LifecycleEvent.SUSPENDED: "suspend",
    LifecycleEvent.RESUMED: "resume",
    LifecycleEvent.DELETED: "delete",
    LifecycleEvent.CARD_UPDATED: "card_updated",
}


@transaction.atomic
def lifecycle_apply(
    *,
    token: NetworkToken,
    type: str,
    source: str,
    expiry: tuple[int, int] | None = None,
    card_last_digits: str | None = None,
) -> LifecycleEvent:
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
    if type == LifecycleEvent.DELETED:
        vault_links_refresh([token.vault_token_id])
    event = LifecycleEvent.objects.create(
        network_token=token, type=type, old_status=old_status, new_status=token.status, detail=detail, source=source
    )
    event_emit(
        merchant=token.merchant, type="network_token.updated", data=updated_data(token, event=type, detail=detail)
    )
    if old_status == NetworkToken.INACTIVE and token.status in (NetworkToken.ACTIVE, NetworkToken.DELETED):
        _activation_settled(token)
    return event


def _activation_settled(token: NetworkToken) -> None:
    """End what waited for ``token``'s activation (see ``lifecycle_apply``), in the caller's transaction."""
    now = timezone.now()
    requests = list(
        ProvisioningRequest.objects.select_for_update()
        .filter(network_token=token, status=ProvisioningRequest.PENDING_ACTIVATION)
        .order_by("pk")
    )
    items = list(
        BatchItem.objects.select_for_update(of=("self",))
        .select_related("batch")
        .filter(network_token=token, status=BatchItem.PENDING_ACTIVATION)
        .order_by("pk")
    )
    waiting = [(request.correlation_id, {"requestId": request.public_id}) for request in requests] + [
        (item.correlation_id, {"batchId": item.batch.public_id, "index": item.index}) for item in items
    ]
    if token.status == NetworkToken.ACTIVE:
        ProvisioningRequest.objects.filter(pk__in=[r.pk for r in requests]).update(
            status=ProvisioningRequest.SUCCEEDED, updated_at=now
        )
        BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(status=BatchItem.SUCCEEDED, finished_at=now)
        batch_items_count(BatchItem.SUCCEEDED, len(items))
        data = [created_data(token, correlation_id=correlation_id, **ids) for correlation_id, ids in waiting]
        events_emit(
            merchant=token.merchant,
            type="network_token.created",
            data=data or [created_data(token, correlation_id=token.correlation_id)],
        )
        return
    code, reason = failure_of(token_not_activated())
    ProvisioningRequest.objects.filter(pk__in=[r.pk for r in requests]).update(
        status=ProvisioningRequest.FAILED, failure_code=code, failure_reason=reason, updated_at=now
    )
    # Their batches counted them as finished already, when the TSP answered.
    BatchItem.objects.filter(pk__in=[item.pk for item in items]).update(
        status=BatchItem.FAILED, failure_code=code, failure_reason=reason, finished_at=now
    )
    batch_items_count(BatchItem.FAILED, len(items))
    if waiting:
        events_emit(
            merchant=token.merchant,
            type="network_token.failed",
            data=[
                failed_data(code, reason, correlation_id=correlation_id, tokenId=token.token_id, **ids)
                for correlation_id, ids in waiting
            ],
        )


def network_token_delete(*, token: NetworkToken, source: str) -> LifecycleEvent:
    """Delete at the merchant's request: the TSP deletes the token, which is then recorded like any lifecycle event."""
    return lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source=source)


@transaction.atomic
def network_token_operate(
    *,
    token: NetworkToken,
    type: str,
    actor: Actor,
    expiry: tuple[int, int] | None = None,
    card_last_digits: str | None = None,
) -> LifecycleEvent:
    """A lifecycle event an operator triggers (the admin): ``lifecycle_apply`` with ``actor`` as its source, and
    one audit row, ``admin.network_token.<action>`` (``STAFF_ACTIONS``), in the same transaction. The merchant gets
    its ``network_token.updated`` webhook as when the network reports the event itself. Raises
    lifecycleTransitionNotAllowed (422), writing nothing, when the token's status, read under its row lock, does
    not allow the event (``LIFECYCLE_FROM``)."""
    source_length = LifecycleEvent._meta.get_field("source").max_length
    event = lifecycle_apply(
        token=token, type=type, source=actor.label[:source_length], expiry=expiry, card_last_digits=card_last_digits
    )
    detail = {"merchant": token.merchant.public_id, "status_before": event.old_status, "status_after": event.new_status}
    if event.detail:
        detail["changed"] = sorted(event.detail)
    audit_record(actor=actor, action=f"admin.network_token.{STAFF_ACTIONS[type]}", obj=token, detail=detail)
    return event
