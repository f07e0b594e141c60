"""The webhook events the vault emits, built from a token's masked data only (never a number, never a name).

``token_columns_event_data`` is the one builder of their payload, from a token's columns: ``token_event_data`` hands
it a token's, for ``token_event`` to emit in the caller's transaction; the bulk import hands it the columns of
thousands of new tokens at once, which it stores without making a ``Token`` of them (``vault.importing.preparing``).
"""

import functools

from django.conf import settings

from core.http import timestamp
from notifications.services import event_emit
from vault.models import Token, masked_number


def token_event_data(token: Token, **extra) -> dict:
    """The payload of a token event: ids, masked card, expiry, namespace, then ``extra``. ``token`` need not be
    saved: its namespace is read through ``token.namespace`` (select it with the token to save a query)."""
    namespace = token.namespace
    columns = {name: getattr(token, name) for name in EVENT_COLUMNS}
    return token_columns_event_data(columns, None if namespace is None else namespace.name, **extra)


# The token's columns its events show.
EVENT_COLUMNS = (
    "token_id",
    "reference",
    "bin",
    "last_four",
    "pan_length",
    "brand",
    "expiry_month",
    "expiry_year",
    "expires_at",
)


def token_columns_event_data(columns: dict, namespace: str | None, **extra) -> dict:
    """``token_event_data`` of a token given as its columns (``vault.services.tokenize.token_columns``, which the
    bulk import writes without making a ``Token``) and its namespace's name."""
    card = {
        "type": "card/masked",
        "cardNumber": masked_number(columns["bin"], columns["pan_length"], columns["last_four"]),
        "bin": columns["bin"],
        "brand": columns["brand"],
    }
    if columns["expiry_month"]:
        card["cardExpiryDate"] = {"month": columns["expiry_month"], "year": columns["expiry_year"]}
    data = {
        "tokenId": columns["token_id"],
        "href": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/tokens/{columns['reference']}",
        "tokenExpiryDateTime": _timestamp(columns["expires_at"]),
        "paymentInstrument": card,
    }
    if namespace is not None:
        data["namespace"] = namespace
    return {**data, **extra} if extra else data


# The tokens a bulk import makes together share their expiry: its text is made once (a third of a payload's cost).
_timestamp = functools.lru_cache(maxsize=256)(timestamp)


def token_event(token: Token, type: str, **extra) -> None:
    """Emit ``type`` for ``token`` in the caller's transaction."""
    event_emit(merchant=token.merchant, type=type, data=token_event_data(token, **extra))
