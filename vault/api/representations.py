"""Tokens as the API shows them (HAL JSON with absolute links, card data masked), forward destinations (their
credentials by name only) and a forward's answer (as ``card_forward`` masked it).

Built as plain dicts (the hot path of every tokenize); ``serializers.TokenOutput`` documents the same shape. The
link relations are those of ``relations``, where the curie leads.
"""

from django.conf import settings

from core.http import timestamp
from vault.api.relations import CURIE_NAME, CURIE_PATH, TOKEN_DETAILS, rel
from vault.forwarding.sending import ForwardAnswer
from vault.models import Token, TokenConflict

TOKEN_DETAIL_RELS = tuple((rel(name), name) for name in TOKEN_DETAILS)


def base_url(request) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")


def curies(request) -> list[dict]:
    return [{"href": f"{base_url(request)}{CURIE_PATH}", "name": CURIE_NAME, "templated": True}]


def token_href(request, token: Token) -> str:
    return f"{base_url(request)}/tokens/{token.reference}"


def _expiry(month, year) -> dict:
    return {"month": month, "year": year}


def masked_card(token: Token) -> dict:
    card = {
        "type": "card/masked",
        "cardNumber": token.masked_number,
        "cardHolderName": token.card_holder_name,
        "cardExpiryDate": _expiry(token.expiry_month, token.expiry_year),
    }
    if token.billing_address:
        card["billingAddress"] = token.billing_address
    card["bin"] = token.bin
    card["brand"] = token.brand
    return card


def conflicts_body(conflict: TokenConflict) -> dict:
    """The ``conflicts`` object: where each value sits in a create request, only those that conflict (a
    ``paymentInstrument`` only when a card detail does), and ``conflictsExpiryDateTime``."""
    card = {}
    if conflict.card_holder_name is not None:
        card["cardHolderName"] = conflict.card_holder_name
    if conflict.expiry_month is not None:
        card["cardExpiryDate"] = _expiry(conflict.expiry_month, conflict.expiry_year)
    if conflict.billing_address is not None:
        card["billingAddress"] = conflict.billing_address
    body = {"paymentInstrument": card} if card else {}
    if conflict.scheme_transaction_reference is not None:
        body["schemeTransactionReference"] = conflict.scheme_transaction_reference
    body["conflictsExpiryDateTime"] = timestamp(conflict.expires_at)
    return body


def token_links(request, token: Token, *, conflict_pending: bool) -> dict:
    href = token_href(request, token)
    links = {rel("token"): {"href": href}}
    for name, segment in TOKEN_DETAIL_RELS:
        links[name] = {"href": f"{href}/{segment}"}
    if conflict_pending:
        links[rel("conflicts")] = {"href": f"{href}/conflicts"}
    if token.network_token_id:
        links[rel("networkToken")] = {"href": f"{base_url(request)}/network-tokens/{token.network_token_id}"}
    links["curies"] = curies(request)
    return links


def token_body(request, token: Token, *, conflict: TokenConflict | None = None) -> dict:
    """The token resource; ``conflict`` adds the ``conflicts`` object of a 409 answer."""
    body = {
        "tokenPaymentInstrument": {"type": "card/tokenized", "href": token_href(request, token)},
        "tokenId": token.token_id,
        "description": token.description,
        "tokenExpiryDateTime": timestamp(token.expires_at),
    }
    if token.namespace_id:
        body["namespace"] = token.namespace.name
    body["paymentInstrument"] = masked_card(token)
    if conflict is not None:
        body["conflicts"] = conflicts_body(conflict)
    body["_links"] = token_links(request, token, conflict_pending=conflict is not None)
    return body


def destination_body(destination, *, credential_names: list[str]) -> dict:
    """A forward destination (``destination_serializers.DestinationOutput``): its credentials by name only."""
    return {
        "id": destination.public_id,
        "name": destination.name,
        "url": destination.url,
        "description": destination.description,
        "credentials": credential_names,
        "enabled": destination.is_enabled,
        "disabledReason": destination.disabled_reason or None,
        "createdAt": timestamp(destination.created_at),
        "updatedAt": timestamp(destination.updated_at),
    }


def forward_answer_body(answer: ForwardAnswer) -> dict:
    """The destination's answer, as ``card_forward`` masked it (``forward_serializers.ForwardOutput``)."""
    return {
        "status": answer.status,
        "headers": answer.headers,
        "body": answer.body,
        "bodyTruncated": answer.body_truncated,
    }
