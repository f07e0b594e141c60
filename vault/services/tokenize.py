"""A card's details: tokenize (a card in, a token out, created, matched or a conflict, by the card-token API's
rules), updates of the details, and the tombstone a card leaves (conflicts are applied or dismissed in
``conflicts``).

Each service is keyword-only, runs in one transaction, and says in its docstring what it writes and raises.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.db import RowInsert
from core.errors import BusinessRuleError
from merchants.models import Merchant
from vault import cards, rules
from vault.events import token_event
from vault.keys import key_ring
from vault.metrics import TOKENIZED
from vault.models import Namespace, Token, TokenConflict, new_token_id, new_token_reference

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


# ------------------------------------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------------------------------------
def default_lifetime() -> timedelta:
    return timedelta(days=4 * 365 + 1) if settings.TOKENS_ENVIRONMENT == "live" else timedelta(days=7)


def _normalised_address(address: dict | None) -> dict | None:
    if address is None:
        return None
    return {name: address[name] for name in rules.ADDRESS_LINES if address.get(name) is not None}


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
    if any(requested.get(name) != stored.get(name) for name in rules.REQUIRED_ADDRESS_LINES):
        return requested
    kept = {name: stored[name] for name in rules.OPTIONAL_ADDRESS_LINES if name in stored and name not in requested}
    return _normalised_address({**kept, **requested})


def billing_address_differs(requested: dict | None, stored: dict | None) -> bool:
    """Whether a request's billing address differs from a token's ``stored`` one, by ``card_tokenize``'s rule (no
    address, or an optional line left out, is no difference)."""
    address = _address_as_requested(requested, stored)
    return address is not None and address != stored


def card_tokenize(
    *,
    merchant: Merchant,
    card: Card,
    description: str | None = None,
    namespace: str | None = None,
    expires_at: datetime | None = None,
    scheme_transaction_reference: str | None = None,
) -> TokenizeResult:
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
                token = _new_token(
                    merchant=merchant,
                    namespace=ns,
                    card=card,
                    fingerprint=fingerprint,
                    description=description,
                    expires_at=expires_at,
                    scheme_transaction_reference=scheme_transaction_reference,
                )
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
                    card_data_destroy(existing, reason="expired")
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


def token_columns(
    *,
    merchant_id: int,
    namespace_id: int | None,
    card: Card,
    fingerprint: str,
    description: str | None = None,
    expires_at: datetime | None = None,
    scheme_transaction_reference: str | None = None,
    now: datetime | None = None,
    token_id: str | None = None,
    reference: str | None = None,
) -> dict:
    """The columns (by attname) of the token that will hold ``card``, but its ciphertext: what a new token is, decided
    here only. The other columns take their defaults. ``now`` is its creation time. Its ids are drawn unless given
    (the import draws a batch's random bytes at once). The bulk import writes these values as they are; the API
    makes a ``Token`` of them (``token_new``)."""
    now = now or timezone.now()
    brand, last_four = cards.brand_of(card.number), card.number[-4:]
    return {
        "merchant_id": merchant_id,
        "namespace_id": namespace_id,
        "token_id": token_id or new_token_id(),
        "reference": reference or new_token_reference(),
        "description": description or f"{brand.title()} card ending {last_four}",
        "fingerprint": fingerprint,
        "bin": card.number[:6],
        "last_four": last_four,
        "pan_length": len(card.number),
        "brand": brand,
        "card_holder_name": card.holder_name,
        "expiry_month": card.expiry_month,
        "expiry_year": card.expiry_year,
        "billing_address": _normalised_address(card.billing_address),
        "scheme_transaction_reference": scheme_transaction_reference,
        "expires_at": expires_at or now + default_lifetime(),
        "created_at": now,
        "updated_at": now,
    }


def token_new(*, merchant: Merchant, namespace: Namespace | None, card: Card, fingerprint: str, **given) -> Token:
    """The token that will hold ``card`` (``token_columns``; ``given`` are its other keywords): not saved, its number
    not encrypted yet."""
    values = token_columns(
        merchant_id=merchant.pk,
        namespace_id=None if namespace is None else namespace.pk,
        card=card,
        fingerprint=fingerprint,
        **given,
    )
    # Django's positional constructor (the one Model.from_db uses), the other columns their defaults.
    token = Token(*[values[name] if name in values else field.get_default() for name, field in _TOKEN_COLUMNS])
    token.merchant = merchant  # held, as keywords would hold them
    if namespace is not None:
        token.namespace = namespace
    return token


_TOKEN_COLUMNS = [(field.attname, field) for field in Token._meta.concrete_fields]


def _new_token(
    *,
    merchant: Merchant,
    namespace: Namespace | None,
    card: Card,
    fingerprint: str,
    description: str | None,
    expires_at: datetime | None,
    scheme_transaction_reference: str | None,
) -> Token:
    """The token that stores ``card``, its number encrypted; not saved."""
    token = token_new(
        merchant=merchant,
        namespace=namespace,
        card=card,
        fingerprint=fingerprint,
        description=description,
        expires_at=expires_at,
        scheme_transaction_reference=scheme_transaction_reference,
    )
    token.key_version, token.pan_ciphertext = key_ring().encrypt(card.number, associated_data=token.associated_data())
    return token


def _insert_unless_held(token: Token) -> bool:
    """Insert ``token`` unless a unique constraint holds one of its values already (a live token of its card, in
    practice: its random ids are unique); say which. One ``INSERT … ON CONFLICT DO NOTHING RETURNING id`` (``INSERT
    OR IGNORE`` on SQLite), which neither fails the transaction nor logs an error when the card is held."""
    return _TOKEN_INSERT(token)


_TOKEN_INSERT = RowInsert(Token, ignore_conflicts=True)


def _created(token: Token) -> TokenizeResult:
    token_event(token, "token.created")
    TOKENIZED[Outcome.CREATED].inc()
    return TokenizeResult(token=token, outcome=Outcome.CREATED)


def _namespace_locked(*, merchant: Merchant, name: str) -> Namespace:
    namespace, _ = Namespace.objects.get_or_create(merchant=merchant, name=name)
    return Namespace.objects.select_for_update().get(pk=namespace.pk)


def _check_namespace_room(namespace: Namespace) -> None:
    live = Token.objects.filter(namespace=namespace, deleted_at__isnull=True, expires_at__gt=timezone.now()).count()
    try:
        rules.namespace_has_room(live)
    except rules.RuleBroken as broken:
        TOKENIZED["namespace_full"].inc()
        raise BusinessRuleError(broken.name, broken.message) from None


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
        TOKENIZED[Outcome.MATCHED].inc()
        return TokenizeResult(token=token, outcome=Outcome.MATCHED)

    TokenConflict.objects.filter(token=token).delete()
    conflict = TokenConflict.objects.create(
        token=token,
        expires_at=timezone.now() + timedelta(seconds=settings.TOKEN_CONFLICT_TTL_SECONDS),
        **differences,
    )
    TOKENIZED[Outcome.CONFLICT].inc()
    return TokenizeResult(token=token, outcome=Outcome.CONFLICT, conflict=conflict)


@transaction.atomic
def token_update(
    *,
    token: Token,
    description=UNSET,
    card_holder_name=UNSET,
    expiry: tuple[int, int] | object = UNSET,
    billing_address=UNSET,
    scheme_transaction_reference=UNSET,
) -> Token:
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


def card_data_destroy(token: Token, *, reason: str) -> None:
    """Destroy the card data of ``token`` and leave a masked tombstone (token id, BIN, last four, brand), in the
    caller's transaction (a deletion, an expiry, an expired token replaced by tokenize)."""
    token.pan_ciphertext = None
    token.fingerprint = None
    token.key_version = None
    token.card_holder_name = ""
    token.billing_address = None
    token.expiry_month = token.expiry_year = None
    token.scheme_transaction_reference = None
    token.deleted_at = timezone.now()
    token.deleted_reason = reason
    token.save(
        update_fields=[
            "pan_ciphertext",
            "fingerprint",
            "key_version",
            "card_holder_name",
            "billing_address",
            "expiry_month",
            "expiry_year",
            "scheme_transaction_reference",
            "deleted_at",
            "deleted_reason",
        ]
    )
    TokenConflict.objects.filter(token=token).delete()
    token_event(token, "token.deleted", reason=reason)
