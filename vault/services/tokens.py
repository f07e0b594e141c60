"""A token's life after tokenize: uses and expiry extensions, detokenize, deletion,
expiry purges, and the network-token link the networks app keeps.

Each service is keyword-only, runs in one transaction, and says in its docstring what it writes and raises.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from core.errors import ResourceNotFound
from core.http import timestamp
from core.models import AuditLog
from vault.crypto import KeysUnavailable, KeyVersionUnavailable
from vault.events import token_event
from vault.keys import key_ring
from vault.models import ExpiryExtension, Token
from vault.services.tokenize import card_data_destroy, default_lifetime

logger = logging.getLogger(__name__)


@transaction.atomic
def token_delete(*, token: Token, actor: Actor = SYSTEM) -> None:
    """Destroy the card behind ``token``; its href answers 404 from now on, the same card tokenizes anew.

    Raises ResourceNotFound when a concurrent request deleted it first (one delete, one audit row, one event).
    """
    token = Token.objects.select_for_update(of=("self",)).select_related("merchant", "namespace").get(pk=token.pk)
    if token.deleted_at is not None:
        raise ResourceNotFound("The token does not exist")
    card_data_destroy(token, reason="deleted")
    audit_record(actor=actor, action="token.delete", obj=token)


@transaction.atomic
def token_use(*, token: Token, reason: str) -> ExpiryExtension | None:
    """Record a use of ``token`` (detokenize, cryptogram) for its expiry.

    In live, a use with less than half of the token's own lifetime left (from its creation to its current expiry,
    whether that was the default or a ``tokenExpiryDateTime``) moves the expiry one default lifetime (4 years) on:
    writes the expiry and an extension row with ``reason``, and emits ``token.expiry_extended``. In try no use
    extends a token (the seed: "for Try, expiry date extensions are not applicable"); staff still can
    (``token_extend_expiry``).

    Returns the extension row written, or None when nothing was extended.
    """
    if settings.TOKENS_ENVIRONMENT != "live":
        return None
    token = Token.objects.select_for_update().get(pk=token.pk)
    now = timezone.now()
    if token.expires_at - now >= (token.expires_at - token.created_at) / 2:
        return None
    old = token.expires_at
    token.expires_at = old + default_lifetime()
    token.updated_at = now
    token.save(update_fields=["expires_at", "updated_at"])
    extension = ExpiryExtension.objects.create(
        token=token, old_expires_at=old, new_expires_at=token.expires_at, reason=reason
    )
    token_event(token, "token.expiry_extended", previousExpiryDateTime=timestamp(old), reason=reason)
    return extension


def token_can_extend(token: Token, now: datetime | None = None) -> bool:
    """Whether ``token_extend_expiry`` extends ``token``: not when it is deleted, nor when it has expired (an expired
    token is gone for its merchant, and an extension must not revive it)."""
    return not token.is_deleted and not token.is_expired(now)


def token_extended_expiry(token: Token, now: datetime | None = None) -> datetime:
    """The expiry ``token_extend_expiry`` gives ``token``: one default lifetime past the later of now and its current
    expiry."""
    return max(token.expires_at, now or timezone.now()) + default_lifetime()


@transaction.atomic
def token_extend_expiry(*, token: Token, actor: Actor, reason: str = "extended by staff") -> ExpiryExtension:
    """Move ``token``'s expiry to ``token_extended_expiry``: writes the expiry, an extension row with ``reason``, a
    ``token.extend_expiry`` audit row, and the merchant's ``token.expiry_extended`` event.

    Raises ResourceNotFound, writing nothing, when ``token_can_extend`` says no under the row's lock (a token deleted
    or expired since the caller read it is not revived).
    """
    token = Token.objects.select_for_update(of=("self",)).select_related("merchant", "namespace").get(pk=token.pk)
    now = timezone.now()
    if not token_can_extend(token, now):
        raise ResourceNotFound("The token was deleted or has expired")
    reason = reason[:40]
    old = token.expires_at
    token.expires_at = token_extended_expiry(token, now)
    token.updated_at = now
    token.save(update_fields=["expires_at", "updated_at"])
    extension = ExpiryExtension.objects.create(
        token=token, old_expires_at=old, new_expires_at=token.expires_at, reason=reason
    )
    audit_record(
        actor=actor,
        action="token.extend_expiry",
        obj=token,
        detail={"old": timestamp(old), "new": timestamp(token.expires_at)},
    )
    token_event(token, "token.expiry_extended", previousExpiryDateTime=timestamp(old), reason=reason)
    return extension


def token_detokenize(*, token: Token, actor: Actor) -> tuple[Token, str]:
    """Decrypt the card number of ``token`` for payment processing; audited and counted as a use.

    Returns the (possibly extended) token and the number. The number must go straight into the response. Raises
    KeysUnavailable (KeyRingMismatch, or KeyVersionUnavailable when this server's ring lacks the card's key version):
    nothing is changed then but a failure row in the audit log.
    """
    try:
        with transaction.atomic():
            extension = token_use(token=token, reason="detokenize")
            if extension is not None:
                token.expires_at = extension.new_expires_at
            number = key_ring().decrypt(
                token.key_version, token.pan_ciphertext, associated_data=token.associated_data()
            )
            audit_record(actor=actor, action="token.detokenize", obj=token)
    except KeysUnavailable as exc:
        reason = (
            f"key version {exc.version} not on this server"
            if isinstance(exc, KeyVersionUnavailable)
            else "keys do not match the data"
        )
        audit_record(
            actor=actor, action="token.detokenize", obj=token, result=AuditLog.FAILURE, detail={"reason": reason}
        )
        raise
    return token, number


def tokens_network_token_set(*, links: dict[int, str]) -> None:
    """Record, per token pk, the tokenId of its newest network token not deleted ("" for none): the token's
    ``networkToken`` link. The networks app calls this whenever that changes; the vault knows nothing of networks."""
    if links:
        Token.objects.bulk_update(
            [Token(pk=pk, network_token_id=token_id) for pk, token_id in links.items()],
            ["network_token_id"],
            batch_size=500,
        )


def tokens_purge_expired(*, batch_size: int = 500) -> int:
    """Tombstone every live token whose expiry has passed, a batch per transaction; returns how many."""
    purged = 0
    while True:
        with transaction.atomic():
            batch = list(
                Token.objects.select_for_update()
                .filter(deleted_at__isnull=True, expires_at__lte=timezone.now())
                .order_by("pk")[:batch_size]
            )
            for token in batch:
                card_data_destroy(token, reason="expired")
        purged += len(batch)
        if len(batch) < batch_size:
            return purged
