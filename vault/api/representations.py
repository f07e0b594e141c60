"""Tokens as the API shows them: HAL JSON with absolute links, card data masked.

Built as plain dicts (the hot path of every tokenize); ``serializers.TokenOutput`` documents the same shape.
"""

from django.conf import settings

from config.http import timestamp
from networks import selectors as network_selectors
from vault.models import Token, TokenConflict

TOKEN_LINKS = ("description", "cardHolderName", "cardExpiryDate", "billingAddress", "schemeTransactionReference")


def base_url(request) -> str:
    return settings.PUBLIC_BASE_URL.rstrip("/") or request.build_absolute_uri("/").rstrip("/")


def curies(request) -> list[dict]:
    return [{"href": f"{base_url(request)}/rels/tokens/{{rel}}.json", "name": "tokens", "templated": True}]


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
    card = {}
    if conflict.card_holder_name is not None:
        card["cardHolderName"] = conflict.card_holder_name
    if conflict.expiry_month is not None:
        card["cardExpiryDate"] = _expiry(conflict.expiry_month, conflict.expiry_year)
    if conflict.billing_address is not None:
        card["billingAddress"] = conflict.billing_address
    return {"paymentInstrument": card, "conflictsExpiryDateTime": timestamp(conflict.expires_at)}


def token_links(request, token: Token, *, conflict_pending: bool) -> dict:
    href = token_href(request, token)
    links = {"tokens:token": {"href": href}}
    for name in TOKEN_LINKS:
        links[f"tokens:{name}"] = {"href": f"{href}/{name}"}
    if conflict_pending:
        links["tokens:conflicts"] = {"href": f"{href}/conflicts"}
    network_token_id = _newest_network_token_id(token)
    if network_token_id:
        links["tokens:networkToken"] = {"href": f"{base_url(request)}/network-tokens/{network_token_id}"}
    links["curies"] = curies(request)
    return links


def _newest_network_token_id(token: Token) -> str | None:
    # Lists and lookups annotate it (selectors.with_network_token), card_tokenize sets it on a token it creates
    # (None); any other token fresh from a service costs a query.
    if hasattr(token, "newest_network_token_id"):
        return token.newest_network_token_id
    return network_selectors.newest_network_token_id(vault_token=token)


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
