"""The webhook events the vault emits, built from a token's masked data only (never a number, never a name)."""

from django.conf import settings

from config.http import timestamp
from notifications.services import event_emit
from vault.models import Token


def token_event(token: Token, type: str, **extra) -> None:
    """Emit ``type`` for ``token`` in the caller's transaction."""
    card = {"type": "card/masked", "cardNumber": token.masked_number, "bin": token.bin, "brand": token.brand}
    if token.expiry_month:
        card["cardExpiryDate"] = {"month": token.expiry_month, "year": token.expiry_year}
    data = {
        "tokenId": token.token_id,
        "href": f"{settings.PUBLIC_BASE_URL.rstrip('/')}/tokens/{token.reference}",
        "tokenExpiryDateTime": timestamp(token.expires_at),
        "paymentInstrument": card,
    }
    if token.namespace_id:
        data["namespace"] = token.namespace.name
    event_emit(merchant=token.merchant, type=type, data={**data, **extra})
