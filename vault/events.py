"""The webhook events the vault emits, built from a token's masked data only (never a number, never a name).

``token_event_data`` is the one builder of their payload: ``token_event`` emits it in the caller's transaction, and
the bulk import stores it for thousands of new tokens at once (``vault.importing.storing``).
"""

import functools

from django.conf import settings

from core.http import timestamp
from notifications.services import event_emit
from vault.models import Token


def token_event_data(token: Token, **extra) -> dict:
    """The payload of a token event: ids, masked card, expiry, namespace, then ``extra``. ``token`` need not be
    saved: its namespace is read through ``token.namespace`` (select it with the token to save a query)."""
    card = {"type": "card/masked", "cardNumber": token.masked_number, "bin": token.bin, "brand": token.brand}
    if token.expiry_month:
        card["cardExpiryDate"] = {"month": token.expiry_month, "year": token.expiry_year}
    data = {
        "tokenId": token.token_id,
        "href": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/tokens/{token.reference}",
        "tokenExpiryDateTime": _timestamp(token.expires_at),
        "paymentInstrument": card,
    }
    namespace = token.namespace
    if namespace is not None:
        data["namespace"] = namespace.name
    return {**data, **extra} if extra else data


# The tokens a bulk import makes together share their expiry: its text is made once (a third of a payload's cost).
_timestamp = functools.lru_cache(maxsize=256)(timestamp)


def token_event(token: Token, type: str, **extra) -> None:
    """Emit ``type`` for ``token`` in the caller's transaction."""
    event_emit(merchant=token.merchant, type=type, data=token_event_data(token, **extra))
