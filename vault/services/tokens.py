"""A token's life after tokenize: uses and expiry extensions, detokenize, deletion,
expiry purges, and the network-token link the networks app keeps.

Each service is keyword-only, runs in one transaction, and says in its docstring what it writes and raises.
"""

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from core.errors import BusinessRuleError, ResourceNotFound
from core.http import timestamp
from core.models import AuditLog
from vault.crypto import KeysUnavailable, KeyVersionUnavailable
from vault.events import token_event
from vault.keys import key_ring
from vault.metrics import DETOKENIZED, detokenize_refused_result
from vault.models import ExpiryExtension, Token
from vault.services.tokenize import card_data_destroy, default_lifetime

logger = logging.getLogger(__name__)

# The latest expiry an extension gives: a token stored before tokenExpiryDateTime had an upper bound may expire near
# the largest date a datetime holds, and one lifetime more would overflow. An extension stops here instead, and never
# moves an expiry back: a token past it keeps its expiry.
LATEST_EXPIRY = datetime(9999, 12, 31, tzinfo=UTC)


def _one_lifetime_after(instant: datetime) -> datetime:
    """``instant`` moved one default lifetime on, up to ``LATEST_EXPIRY``; never earlier than ``instant``."""
    lifetime = default_lifetime()
    return max(instant, min(instant, LATEST_EXPIRY - lifetime) + lifetime)


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

    Returns the extension row written, or None when nothing was extended (nor is a token at ``LATEST_EXPIRY``).
    """
    if settings.TOKENS_ENVIRONMENT != "live":
        return None
    token = Token.objects.select_for_update().get(pk=token.pk)
    now = timezone.now()
    if token.expires_at - now >= (token.expires_at - token.created_at) / 2:
        return None
    old = token.expires_at
    token.expires_at = _one_lifetime_after(old)
    if token.expires_at == old:
        return None
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
    expiry, up to ``LATEST_EXPIRY`` (its current expiry, for a token already there)."""
    return _one_lifetime_after(max(token.expires_at, now or timezone.now()))


@transaction.atomic
def token_extend_expiry(*, token: Token, actor: Actor, reason: str = "extended by staff") -> ExpiryExtension:
    """Move ``token``'s expiry to ``token_extended_expiry``: writes the expiry, an extension row with ``reason``, a
    ``token.extend_expiry`` audit row, and the merchant's ``token.expiry_extended`` event.

    Raises ResourceNotFound, writing nothing, when ``token_can_extend`` says no under the row's lock (a token deleted
    or expired since the caller read it is not revived), and ``tokenExpiryAtLatest`` when its expiry is already
    ``LATEST_EXPIRY`` or later.
    """
    token = Token.objects.select_for_update(of=("self",)).select_related("merchant", "namespace").get(pk=token.pk)
    now = timezone.now()
    if not token_can_extend(token, now):
        raise ResourceNotFound("The token was deleted or has expired")
    reason = reason[:40]
    old = token.expires_at
    token.expires_at = token_extended_expiry(token, now)
    if token.expires_at == old:
        raise BusinessRuleError("tokenExpiryAtLatest", "The token's expiry is already the latest a token may have")
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
    nothing is changed then but a failure row in the audit log. Either way counted (``tokenvault_detokenize_total``:
    released, unavailable).
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
        DETOKENIZED["unavailable"].inc()
        raise
    DETOKENIZED["released"].inc()
    return token, number


def token_detokenize_refused(*, actor: Actor, reference: str, reason: str, status: int) -> AuditLog:
    """Audit a detokenize attempt that released nothing, other than those ``token_detokenize`` audits itself (the
    keys failing it): refused before it ran (no key, a key without the scope, the rate limit, no such token for the
    merchant) or failing in it otherwise. Writes one failure row with ``reason`` and the answer's ``status``, and
    counts the attempt by that status (``vault.metrics.DETOKENIZE_REFUSED``).

    The row names the token whose href ends in ``reference``, whatever its merchant or state, so that staff see which
    token was tried; for a reference of no token it names none, and the reference itself is never written down
    (anything may be typed there, a card number too). Call it once the attempt's own transactions are rolled back.
    """
    DETOKENIZED[detokenize_refused_result(status)].inc()
    token_id = Token.objects.filter(reference=reference).values_list("token_id", flat=True).first()
    return audit_record(
        actor=actor,
        action="token.detokenize",
        result=AuditLog.FAILURE,
        object_type=Token.audit_type,
        object_id=token_id or "",
        detail={"reason": reason, "status": status},
    )


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
