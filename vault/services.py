"""Every write the vault makes. Views, admin actions, commands and tasks call these and nothing else.

Each service is keyword-only, runs in one transaction, and says in its docstring what it writes and raises.
"""

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.constants import OnConflict
from django.utils import timezone

from config.errors import BusinessRuleError, ResourceNotFound
from config.http import timestamp
from vault import cards, selectors
from vault.events import token_event
from vault.crypto import (KeyRing, KeyRingMismatch, KeysUnavailable, KeyVersionUnavailable, configured_key_ring,
                          key_ring)
from vault.models import (DEFAULT_SCOPES, ApiKey, AuditLog, ExpiryExtension, KeyCheck, Merchant, Namespace, Token,
                          TokenConflict)

logger = logging.getLogger(__name__)

UNSET = object()
API_NAMES = {
    "description": "description",
    "card_holder_name": "cardHolderName",
    "expiry_month": "cardExpiryDate",
    "expiry_year": "cardExpiryDate",
    "billing_address": "billingAddress",
    "scheme_transaction_reference": "schemeTransactionReference",
}
BILLING_FIELDS = ("address1", "address2", "address3", "postalCode", "city", "state", "countryCode")
# The lines of a billing address a request may leave out (one left out keeps the stored line), and the others.
OPTIONAL_ADDRESS_LINES = ("address2", "address3", "state")
REQUIRED_ADDRESS_LINES = tuple(name for name in BILLING_FIELDS if name not in OPTIONAL_ADDRESS_LINES)


@dataclass(frozen=True)
class Card:
    """A card as a merchant sends it. ``repr`` never shows the number."""

    number: str
    holder_name: str
    expiry_month: int
    expiry_year: int
    billing_address: dict | None = None

    def __repr__(self):
        return f"Card({cards.mask(self.number)})"


class Outcome(StrEnum):
    CREATED = "created"
    MATCHED = "matched"
    CONFLICT = "conflict"


@dataclass
class TokenizeResult:
    token: Token
    outcome: Outcome
    conflict: TokenConflict | None = None


@dataclass(frozen=True)
class Actor:
    """Who is acting, for the audit log: a merchant's API key, a staff user, or the system."""

    label: str
    merchant: Merchant | None = None
    origin: str = ""


SYSTEM = Actor("system")


# ------------------------------------------------------------------------------------------------------------
# Merchants and keys
# ------------------------------------------------------------------------------------------------------------
def api_key_create(*, merchant: Merchant, scopes: list[str] | None = None, name: str = "default",
                   raw_key: str | None = None) -> tuple[ApiKey, str]:
    """Create a key for ``merchant``; returns the row and the raw key, which is never stored and never shown again.

    ``raw_key`` lets the embedded run keep its demo key across restarts; everything else gets a fresh random one.
    """
    raw = raw_key or f"sk_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        merchant=merchant,
        name=name,
        prefix=raw[:11],
        key_hash=ApiKey.hash(raw),
        scopes=list(scopes if scopes is not None else DEFAULT_SCOPES),
    )
    return key, raw


def api_keys_revoke(*, keys, actor: Actor) -> int:
    """Revoke every key of the ``keys`` queryset not revoked yet, one audit row each; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        revoked = list(keys.select_for_update().filter(revoked_at__isnull=True))
        for key in revoked:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            audit_record(actor=actor, action="admin.api_key.revoke", object_type="api_key", object_id=key.prefix,
                         detail={"merchant_id": key.merchant_id})
    return len(revoked)


@transaction.atomic
def merchant_create(*, name: str, scopes: list[str] | None = None) -> tuple[Merchant, str]:
    """Create a merchant with one API key; returns the merchant and the raw key (shown once)."""
    merchant = Merchant.objects.create(name=name)
    _, raw = api_key_create(merchant=merchant, scopes=scopes)
    return merchant, raw


# ------------------------------------------------------------------------------------------------------------
# Audit
# ------------------------------------------------------------------------------------------------------------
def audit_record(*, actor: Actor, action: str, result: str = AuditLog.SUCCESS, obj: Token | None = None,
                 object_type: str = "", object_id: str = "", detail: dict | None = None) -> AuditLog:
    """Append one audit row. Never pass card data in ``detail``."""
    if obj is not None:
        object_type, object_id = "token", obj.token_id
    return AuditLog.objects.create(
        actor=actor.label[:120],
        merchant=actor.merchant,
        action=action,
        object_type=object_type,
        object_id=object_id,
        result=result,
        origin=actor.origin[:64],
        detail=detail or {},
    )


# ------------------------------------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------------------------------------
def default_lifetime() -> timedelta:
    return timedelta(days=4 * 365 + 1) if settings.TOKENS_ENVIRONMENT == "live" else timedelta(days=7)


def _normalised_address(address: dict | None) -> dict | None:
    if address is None:
        return None
    return {name: address[name] for name in BILLING_FIELDS if address.get(name) is not None}


def _address_as_requested(requested: dict | None, stored: dict | None) -> dict | None:
    """The billing address a request asks for, given the token's ``stored`` one; None when it sends none.

    For the same place (address1, postalCode, city and countryCode as stored) it is the lines the request sends and
    the stored optional lines (address2, address3, state) it leaves out: an absent optional field keeps the stored
    value, so leaving one out is no difference, and applying a conflict never erases it. Another place is the
    request's address as sent: none of the stored address's lines belong to it.
    """
    requested = _normalised_address(requested)
    if requested is None or stored is None:
        return requested
    if any(requested.get(name) != stored.get(name) for name in REQUIRED_ADDRESS_LINES):
        return requested
    kept = {name: stored[name] for name in OPTIONAL_ADDRESS_LINES if name in stored and name not in requested}
    return _normalised_address({**kept, **requested})


def billing_address_differs(requested: dict | None, stored: dict | None) -> bool:
    """Whether a request's billing address differs from a token's ``stored`` one, by ``card_tokenize``'s rule (no
    address, or an optional line left out, is no difference)."""
    address = _address_as_requested(requested, stored)
    return address is not None and address != stored


def card_tokenize(*, merchant: Merchant, card: Card, description: str | None = None, namespace: str | None = None,
                  expires_at: datetime | None = None, scheme_transaction_reference: str | None = None) -> TokenizeResult:
    """Store ``card`` for ``merchant`` (in ``namespace``) or find the token that already holds it.

    Identity is (merchant, card number, namespace). The first request creates the token (CREATED). A later one
    MATCHES when every compared value it supplies equals the stored one, and is a CONFLICT otherwise: the stored
    data stays, the differing values are kept as a pending conflict (replacing any earlier one), and the result
    carries it. Compared: holder name, expiry, billing address, scheme transaction reference. An optional value the
    request leaves out (the billing address, its address2, address3 or state, the scheme transaction reference)
    keeps the stored one and is no difference; a scheme transaction reference sent for a token without one is
    stored silently, in either outcome, and is no difference; the description is not compared.

    Concurrent calls for the same card end in one token: the database's unique constraint decides. Without a
    namespace the loser's insert waits for the winner's commit and writes nothing; in one, the namespace's lock
    makes it wait. Either way it then finds the winner's row (a loser that still fails retries). Raises
    ``BusinessRuleError(namespaceCardLimitReached)`` for a 17th card.
    """
    ring = key_ring()
    fingerprint = ring.fingerprint(card.number)
    for attempt in range(3):
        try:
            with transaction.atomic():
                ns = _namespace_locked(merchant=merchant, name=namespace) if namespace else None
                token = _new_token(merchant=merchant, namespace=ns, card=card, fingerprint=fingerprint,
                                   description=description, expires_at=expires_at,
                                   scheme_transaction_reference=scheme_transaction_reference)
                # A new card, the usual case, is stored straight away; only a card the vault holds is looked up. (In
                # a namespace the lookup comes first: the namespace's room is counted under its lock.)
                if ns is None and _insert_unless_held(token):
                    return _created(token)
                try:
                    # get(), not first(): at most one row matches (a partial unique index), and the ORDER BY that
                    # first() adds cost more to compile than the query takes to run.
                    existing = Token.objects.select_for_update().get(
                        merchant=merchant, fingerprint=fingerprint, namespace=ns, deleted_at__isnull=True
                    )
                except Token.DoesNotExist:
                    existing = None
                if existing is not None and existing.is_expired():
                    _destroy(existing, reason="expired")
                    existing = None
                if existing is not None:
                    return _match(existing, card=card, scheme_transaction_reference=scheme_transaction_reference)
                if ns is not None:
                    _check_namespace_room(ns)
                token.save(force_insert=True)
                return _created(token)
        except IntegrityError:
            # Another request stored the same card (or created the namespace) first; look again.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _new_token(*, merchant: Merchant, namespace: Namespace | None, card: Card, fingerprint: str,
               description: str | None, expires_at: datetime | None,
               scheme_transaction_reference: str | None) -> Token:
    """The token that stores ``card``, its number encrypted; not saved."""
    token = Token(
        merchant=merchant,
        namespace=namespace,
        fingerprint=fingerprint,
        bin=card.number[:6],
        last_four=card.number[-4:],
        pan_length=len(card.number),
        brand=cards.brand_of(card.number),
        card_holder_name=card.holder_name,
        expiry_month=card.expiry_month,
        expiry_year=card.expiry_year,
        billing_address=_normalised_address(card.billing_address),
        scheme_transaction_reference=scheme_transaction_reference,
        expires_at=expires_at or timezone.now() + default_lifetime(),
    )
    token.description = description or f"{token.brand.title()} card ending {token.last_four}"
    token.key_version, token.pan_ciphertext = key_ring().encrypt(card.number, associated_data=token.associated_data())
    return token


def _insert_unless_held(token: Token) -> bool:
    """Insert ``token`` unless a unique constraint holds one of its values already (a live token of its card, in
    practice: its random ids are unique); say which. One ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (``INSERT
    OR IGNORE`` on SQLite), which neither fails the transaction nor logs an error when the card is held.

    Through ``QuerySet._insert``, the call ``Model.save()`` makes, because ``bulk_create(ignore_conflicts=True)``
    does not say whether the row was written.
    """
    fields = [field for field in Token._meta.local_concrete_fields if not field.primary_key]
    [row] = Token.objects._insert(
        [token], fields=fields, returning_fields=Token._meta.db_returning_fields, on_conflict=OnConflict.IGNORE
    )
    if row is None:
        return False
    token.pk = row[0]
    token._state.adding, token._state.db = False, transaction.get_connection().alias
    return True


def _created(token: Token) -> TokenizeResult:
    # A token this new has no network token: say so as selectors.with_network_token would, which spares its
    # representation a query.
    token.newest_network_token_id = None
    token_event(token, "token.created")
    return TokenizeResult(token=token, outcome=Outcome.CREATED)


def _namespace_locked(*, merchant: Merchant, name: str) -> Namespace:
    namespace, _ = Namespace.objects.get_or_create(merchant=merchant, name=name)
    return Namespace.objects.select_for_update().get(pk=namespace.pk)


def _check_namespace_room(namespace: Namespace) -> None:
    live = Token.objects.filter(namespace=namespace, deleted_at__isnull=True, expires_at__gt=timezone.now()).count()
    if live >= settings.NAMESPACE_CARD_LIMIT:
        raise BusinessRuleError(
            "namespaceCardLimitReached",
            f"The namespace already holds {settings.NAMESPACE_CARD_LIMIT} cards, the most it can hold",
        )


def _match(token: Token, *, card: Card, scheme_transaction_reference: str | None) -> TokenizeResult:
    """``card_tokenize``'s comparison of a request with the token that holds its card (see there)."""
    changed = []
    differences = {}
    if scheme_transaction_reference:
        if not token.scheme_transaction_reference:
            # The seed's note: an empty reference takes the supplied one, without a word.
            token.scheme_transaction_reference = scheme_transaction_reference
            changed.append("scheme_transaction_reference")
        elif scheme_transaction_reference != token.scheme_transaction_reference:
            differences["scheme_transaction_reference"] = scheme_transaction_reference

    if card.holder_name != token.card_holder_name:
        differences["card_holder_name"] = card.holder_name
    if (card.expiry_month, card.expiry_year) != (token.expiry_month, token.expiry_year):
        differences["expiry_month"], differences["expiry_year"] = card.expiry_month, card.expiry_year
    if billing_address_differs(card.billing_address, token.billing_address):
        differences["billing_address"] = _address_as_requested(card.billing_address, token.billing_address)

    if changed:
        token.updated_at = timezone.now()
        token.save(update_fields=[*changed, "updated_at"])
        token_event(token, "token.updated", changed=["schemeTransactionReference"])
    if not differences:
        return TokenizeResult(token=token, outcome=Outcome.MATCHED)

    TokenConflict.objects.filter(token=token).delete()
    conflict = TokenConflict.objects.create(
        token=token,
        expires_at=timezone.now() + timedelta(seconds=settings.TOKEN_CONFLICT_TTL_SECONDS),
        **differences,
    )
    return TokenizeResult(token=token, outcome=Outcome.CONFLICT, conflict=conflict)


@transaction.atomic
def token_update(*, token: Token, description=UNSET, card_holder_name=UNSET, expiry: tuple[int, int] | object = UNSET,
                 billing_address=UNSET, scheme_transaction_reference=UNSET) -> Token:
    """Replace the given details of ``token`` (those left UNSET keep their value); writes only what changed."""
    changes = {
        "description": description,
        "card_holder_name": card_holder_name,
        "billing_address": billing_address if billing_address is UNSET else _normalised_address(billing_address),
        "scheme_transaction_reference": scheme_transaction_reference,
    }
    if expiry is not UNSET:
        changes["expiry_month"], changes["expiry_year"] = expiry
    fields = []
    for name, value in changes.items():
        if value is not UNSET:
            setattr(token, name, value)
            fields.append(name)
    token.updated_at = timezone.now()
    token.save(update_fields=[*fields, "updated_at"])
    token_event(token, "token.updated", changed=sorted({API_NAMES[name] for name in fields}))
    return token


@transaction.atomic
def conflict_apply(*, token: Token) -> Token:
    """Apply the pending conflict's values to ``token``. Raises ResourceNotFound when none is pending."""
    conflict = TokenConflict.objects.select_for_update().filter(token=token, expires_at__gt=timezone.now()).first()
    if conflict is None:
        raise ResourceNotFound("The token has no pending conflict")
    changes = {}
    if conflict.card_holder_name is not None:
        changes["card_holder_name"] = conflict.card_holder_name
    if conflict.expiry_month is not None:
        changes["expiry"] = (conflict.expiry_month, conflict.expiry_year)
    if conflict.billing_address is not None:
        changes["billing_address"] = conflict.billing_address
    if conflict.scheme_transaction_reference is not None:
        changes["scheme_transaction_reference"] = conflict.scheme_transaction_reference
    conflict.delete()
    return token_update(token=token, **changes)


@transaction.atomic
def conflict_dismiss(*, token: Token) -> None:
    """Forget the pending conflict of ``token``, keeping the stored data."""
    TokenConflict.objects.filter(token=token).delete()


def _destroy(token: Token, *, reason: str) -> None:
    """Destroy the card data of ``token`` and leave a masked tombstone (token id, BIN, last four, brand)."""
    token.pan_ciphertext = None
    token.fingerprint = None
    token.key_version = None
    token.card_holder_name = ""
    token.billing_address = None
    token.expiry_month = token.expiry_year = None
    token.scheme_transaction_reference = None
    token.deleted_at = timezone.now()
    token.deleted_reason = reason
    token.save(update_fields=[
        "pan_ciphertext", "fingerprint", "key_version", "card_holder_name", "billing_address", "expiry_month",
        "expiry_year", "scheme_transaction_reference", "deleted_at", "deleted_reason",
    ])
    TokenConflict.objects.filter(token=token).delete()
    token_event(token, "token.deleted", reason=reason)


@transaction.atomic
def token_delete(*, token: Token, actor: Actor = SYSTEM) -> None:
    """Destroy the card behind ``token``; its href answers 404 from now on, the same card tokenizes anew.

    Raises ResourceNotFound when a concurrent request deleted it first (one delete, one audit row, one event).
    """
    token = Token.objects.select_for_update(of=("self",)).select_related("merchant", "namespace").get(pk=token.pk)
    if token.deleted_at is not None:
        raise ResourceNotFound("The token does not exist")
    _destroy(token, reason="deleted")
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
    token_event(token, "token.expiry_extended", previousExpiryDateTime=timestamp(old),
                reason=reason)
    return extension


@transaction.atomic
def token_extend_expiry(*, token: Token, actor: Actor, reason: str = "extended by staff") -> ExpiryExtension:
    """Move ``token``'s expiry one default lifetime past the later of now and its current expiry; audited, and the
    merchant hears of it (``token.expiry_extended``)."""
    token = Token.objects.select_for_update(of=("self",)).select_related("merchant", "namespace").get(pk=token.pk)
    if token.deleted_at is not None or token.is_expired():
        raise ResourceNotFound("The token does not exist")  # an expired token is gone for its merchant: no revival
    reason = reason[:40]
    old = token.expires_at
    token.expires_at = max(old, timezone.now()) + default_lifetime()
    token.updated_at = timezone.now()
    token.save(update_fields=["expires_at", "updated_at"])
    extension = ExpiryExtension.objects.create(
        token=token, old_expires_at=old, new_expires_at=token.expires_at, reason=reason
    )
    audit_record(actor=actor, action="token.extend_expiry", obj=token,
                 detail={"old": timestamp(old), "new": timestamp(token.expires_at)})
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
            number = key_ring().decrypt(token.key_version, token.pan_ciphertext,
                                        associated_data=token.associated_data())
            audit_record(actor=actor, action="token.detokenize", obj=token)
    except KeysUnavailable as exc:
        reason = (f"key version {exc.version} not on this server" if isinstance(exc, KeyVersionUnavailable)
                  else "keys do not match the data")
        audit_record(actor=actor, action="token.detokenize", obj=token, result=AuditLog.FAILURE,
                     detail={"reason": reason})
        raise
    return token, number


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
                _destroy(token, reason="expired")
        purged += len(batch)
        if len(batch) < batch_size:
            return purged


# ------------------------------------------------------------------------------------------------------------
# Key custody: the keys against the data, rotation
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _KeysVerdict:
    """This process's last check of ``ring`` against the data, made at ``checked_at`` (time.monotonic()); a verdict
    that is not ``settled`` is checked again at the next card operation."""

    ring: KeyRing
    problems: tuple[str, ...]
    checked_at: float
    settled: bool = True


_keys_verdict: _KeysVerdict | None = None


def keys_verify(*, ring: KeyRing) -> None:
    """Refuse card work while ``ring`` does not match the keys the data was written with (``vault.crypto.key_ring``
    calls this before handing the ring out).

    Asks ``selectors.key_ring_problems`` on the process's first card operation and then at most every
    ``VAULT_KEY_CHECK_SECONDS`` (a couple of queries on a table of a few rows). When all is well, records the check
    values that are new (``key_checks_record``) and asks again: of two processes recording different keys at once,
    one wins and the other sees the difference. Logs one error line when the problems appear or change (not one per
    request), and raises KeyRingMismatch while there are any.
    """
    global _keys_verdict
    verdict = _keys_verdict
    now = time.monotonic()
    if (verdict is None or verdict.ring is not ring or not verdict.settled
            or now - verdict.checked_at >= settings.VAULT_KEY_CHECK_SECONDS):
        problems = selectors.key_ring_problems()
        recorded = not problems and key_checks_record(ring=ring)
        if recorded:
            problems = selectors.key_ring_problems()
        if problems and (verdict is None or verdict.problems != tuple(problems)):
            logger.error("card operations refused until the keys match the data: %s", "; ".join(problems))
        elif not problems and verdict is not None and verdict.ring is ring and verdict.problems:
            logger.info("the keys match the data again: card operations resume")
        # A record written inside the caller's transaction is trusted once it is seen committed.
        settled = not (recorded and transaction.get_connection().in_atomic_block)
        verdict = _keys_verdict = _KeysVerdict(ring=ring, problems=tuple(problems), checked_at=now, settled=settled)
    if verdict.problems:
        raise KeyRingMismatch(list(verdict.problems))


def _forget_keys_verdict() -> None:
    global _keys_verdict
    _keys_verdict = None


def key_checks_record(*, ring: KeyRing) -> bool:
    """Store with the data the check values of the keys ``ring`` uses on it where none is stored yet: the
    fingerprint key's, the active version's (its first use as the active one; a retired version made active again is
    live again), and those of versions in the ring found holding data without one (migration 0005). Returns whether
    it wrote anything.

    Never changes a stored value: a difference is a problem to report (``selectors.key_ring_problems``), not one to
    paper over; ``keys_verify`` calls this only when there is none. Concurrent calls store one row each (the unique
    constraints, with INSERT … ON CONFLICT DO NOTHING).
    """
    recorded = list(KeyCheck.objects.all())
    encryption = {check.version: check for check in recorded if check.purpose == KeyCheck.ENCRYPTION}
    new = []
    if not any(check.purpose == KeyCheck.FINGERPRINT for check in recorded):
        new.append(KeyCheck(purpose=KeyCheck.FINGERPRINT, check_value=ring.fingerprint_check_value))
    if ring.active_version not in encryption:
        new.append(KeyCheck(purpose=KeyCheck.ENCRYPTION, version=ring.active_version,
                            check_value=ring.check_value(ring.active_version)))
    wrote = False
    with transaction.atomic():
        if new:
            KeyCheck.objects.bulk_create(new, ignore_conflicts=True)
            wrote = True
        active = encryption.get(ring.active_version)
        if active is not None and active.retired_at is not None:
            wrote |= bool(KeyCheck.objects.filter(pk=active.pk).update(retired_at=None))
        for version, check in encryption.items():
            if not check.check_value and version in ring.versions:
                wrote |= bool(KeyCheck.objects.filter(pk=check.pk, check_value="")
                              .update(check_value=ring.check_value(version)))
    return wrote


def key_versions_retire(*, active: int) -> list[int]:
    """Mark retired every recorded key version but ``active`` that no encrypted value is under any more, and return
    them: such a version may leave the ring (its key stays with the backups made under it).

    Looks each candidate up in every encrypted table, a scan where none is left: ``rotate_keys``'s business, never a
    request's. A process still using a retired version as its active one makes it live again at its next check.
    """
    retired = []
    for check in KeyCheck.objects.filter(purpose=KeyCheck.ENCRYPTION, retired_at__isnull=True).exclude(version=active):
        in_use = any(
            model.objects.filter(key_version=check.version, **{f"{model.encrypted_field}__isnull": False}).exists()
            for model in encrypted_models()
        )
        if not in_use:
            KeyCheck.objects.filter(pk=check.pk, retired_at__isnull=True).update(retired_at=timezone.now())
            retired.append(check.version)
    if retired:
        _forget_keys_verdict()
    return retired


def encrypted_models() -> list:
    """Every model holding data under the key ring: those naming their ``encrypted_field``."""
    return [model for model in apps.get_models() if getattr(model, "encrypted_field", None)]


@dataclass(frozen=True)
class Rotation:
    rotated: int  # values re-encrypted
    retired: list[int]  # key versions no value is under any more (they may leave VAULT_KEYS)


def keys_rotate(*, batch_size: int = 500, on_batch: Callable[[int], None] | None = None,
                actor: Actor = SYSTEM) -> Rotation:
    """Re-encrypt every encrypted column (card numbers, network token numbers, cards awaiting an async request)
    under the active key version, then retire the versions no value is left under (``key_versions_retire``).

    Works in batches of ``batch_size`` rows, each its own transaction holding row locks only on its batch, so the
    API keeps serving and an interrupted run loses nothing: a rerun picks up the rows still on other versions.
    Versions that hold nothing are retired first too, so a version recorded but never used (activated on one server,
    then not) cannot stop the run. Raises KeyRingMismatch, having changed nothing, while the keys do not match the
    data, and KeyVersionUnavailable when a value is under a version the ring lacks.
    """
    retired = key_versions_retire(active=configured_key_ring().active_version)
    ring = key_ring()
    active = ring.active_version
    rotated = 0
    audit_record(actor=actor, action="keys.rotate.start", detail={"to_version": active})
    for model in encrypted_models():
        field = model.encrypted_field
        last_pk = 0
        while True:
            with transaction.atomic():
                batch = list(
                    model.objects.select_for_update(of=("self",))
                    .filter(pk__gt=last_pk, **{f"{field}__isnull": False})
                    .exclude(key_version=active)
                    .order_by("pk")[:batch_size]
                )
                for row in batch:
                    aad = row.associated_data()
                    plain = ring.decrypt(row.key_version, getattr(row, field), associated_data=aad)
                    row.key_version, ciphertext = ring.encrypt(plain, associated_data=aad)
                    setattr(row, field, ciphertext)
                model.objects.bulk_update(batch, ["key_version", field])
            if not batch:
                break
            last_pk = batch[-1].pk
            rotated += len(batch)
            if on_batch:
                on_batch(len(batch))
    retired += key_versions_retire(active=active)
    audit_record(actor=actor, action="keys.rotate.finish",
                 detail={"to_version": active, "rows": rotated, "retired_versions": retired})
    return Rotation(rotated=rotated, retired=retired)
