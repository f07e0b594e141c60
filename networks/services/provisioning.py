"""Provisioning a network token from a TSP, and what every way of asking for one shares: where the card comes from,
the one call to the token service (``tsp_provision``, with the one translation of its errors), the token row and
the vault's link to it. A TSP call never runs inside a database transaction (it may take seconds); what it returns
is stored in one.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from merchants.models import Merchant
from networks import scheduling, tsp
from networks.errors import (
    NetworkNotConfigured,
    email_required,
    network_not_supported,
    tokenization_declined,
    tsp_unavailable,
)
from networks.events import created_data
from networks.metrics import PROVISION, tsp_call_count
from networks.models import Issuer, NetworkToken
from networks.services.issuers import issuer_for
from notifications.services import event_emit
from vault import cards
from vault import services as vault_services
from vault.keys import key_ring
from vault.models import Token


@dataclass(frozen=True)
class Origin:
    """Where the card of a provisioning comes from and who asked: for the token row and its events
    (``request_id`` names the asynchronous request it serves, if any)."""

    merchant: Merchant
    correlation_id: str
    vault_token: Token | None = None
    request_id: str | None = None


def token_service(network: str) -> tsp.TokenService | None:
    """``tsp.provider_for`` for the services: None for a network without a token service; raises
    NetworkNotConfigured (503) for one whose token service this installation is not connected to."""
    try:
        return tsp.provider_for(network)
    except tsp.NotConfigured:
        raise NetworkNotConfigured(f"No token service is configured for {network} on this server") from None


def card_from_vault(token: Token) -> tsp.CardData:
    number = key_ring().decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data())
    return tsp.CardData(number, token.expiry_month, token.expiry_year, token.card_holder_name)


def check_supported(number: str, *, email: str) -> str:
    """The card's network; raises networkNotSupported (422), networkNotConfigured (503) or, for Amex without email,
    a 400."""
    network = cards.brand_of(number)
    provider = token_service(network)
    if provider is None:
        raise network_not_supported()
    if provider.requires_email and not email:
        raise email_required()
    return network


def tsp_provision(
    *, network: str, merchant: Merchant, card: tsp.CardData, account_id: str = "", email: str = ""
) -> tsp.Provisioned:
    """The one call to ``network``'s token service for a token, whichever way it was asked for (sync, async, batch).
    Raises tokenizationDeclined (422) when the issuer says no, ``TspUnavailable`` when the service fails. Each call
    is counted by outcome, and timed (``tokenvault_tsp_requests_total``)."""
    service = token_service(network)
    started = time.monotonic()
    try:
        provisioned = service.provision(
            tsp.ProvisionRequest(merchant_id=merchant.public_id, card=card, account_id=account_id, email=email)
        )
    except tsp.Declined:
        _tsp_call_counted(network, "declined", started)
        raise tokenization_declined() from None
    except tsp.TspError as exc:
        _tsp_call_counted(network, "timeout" if exc.timeout else "error", started)
        raise tsp_unavailable(exc) from exc
    _tsp_call_counted(network, "success" if provisioned.status == NetworkToken.ACTIVE else "step_up", started)
    return provisioned


def _tsp_call_counted(network: str, outcome: str, started: float) -> None:
    tsp_call_count(network=network, operation=PROVISION, outcome=outcome, seconds=time.monotonic() - started)


def network_token_provision(
    *,
    origin: Origin,
    card: tsp.CardData,
    account_id: str = "",
    email: str = "",
    on_call: Callable[[], None] | None = None,
) -> NetworkToken:
    """Ask the card's network for a token, within its issuer's rate limit, and store it.

    ``on_call`` runs the moment the call to the TSP starts (after waiting for the issuer's slot).

    Visa and Amex give the same live tokenId again for the same merchant and card (and accountId, and Amex's
    email): the stored token is then returned, updated. Raises networkNotSupported/tokenizationDeclined (422),
    networkNotConfigured (503), ``TspUnavailable``. Emits ``network_token.created`` when the token is ACTIVE; an
    INACTIVE one (a step-up) is announced when the network activates it (``lifecycle_apply``).
    """
    network = check_supported(card.number, email=email)
    issuer = issuer_for(card.number, network)
    scheduling.call_slot(issuer)
    if on_call is not None:
        on_call()
    provisioned = tsp_provision(
        network=network, merchant=origin.merchant, card=card, account_id=account_id, email=email
    )
    try:
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    except IntegrityError:
        # A concurrent request got the same (Visa or Amex) tokenId and stored it first: update that row.
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)


@transaction.atomic
def _store(
    *, origin: Origin, card: tsp.CardData, issuer: Issuer, provisioned: tsp.Provisioned, account_id: str
) -> NetworkToken:
    token = NetworkToken.objects.select_for_update().filter(token_id=provisioned.token_id).first()
    if token is None:
        token = NetworkToken(token_id=provisioned.token_id, merchant=origin.merchant)
    card_before = token.vault_token_id
    fill_token(token, origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    token.save()
    vault_links_refresh([card_before, token.vault_token_id])
    if token.status == NetworkToken.ACTIVE:
        ids = {"requestId": origin.request_id} if origin.request_id else {}
        event_emit(
            merchant=origin.merchant,
            type="network_token.created",
            data=created_data(token, correlation_id=origin.correlation_id, **ids),
        )
    return token


def vault_links_refresh(vault_token_ids) -> None:
    """Tell the vault, for each of these cards, its newest network token that is not deleted (the vault token's
    ``networkToken`` link), in the caller's transaction. Called wherever a network token is made, moved or deleted."""
    ids = {pk for pk in vault_token_ids if pk}
    if not ids:
        return
    newest = dict.fromkeys(ids, "")
    rows = (
        NetworkToken.objects.filter(vault_token_id__in=ids)
        .exclude(status=NetworkToken.DELETED)
        .order_by("created_at", "pk")
        .values_list("vault_token_id", "token_id")
    )
    for vault_token_id, token_id in rows:
        newest[vault_token_id] = token_id  # the last one is the newest
    vault_services.tokens_network_token_set(links=newest)


# What a provisioning sets on a token row, new or reused (``fill_token``).
TOKEN_FIELDS = [
    "vault_token",
    "network",
    "issuer",
    "status",
    "token_last_digits",
    "token_expiry_month",
    "token_expiry_year",
    "card_bin",
    "card_last_digits",
    "card_expiry_month",
    "card_expiry_year",
    "payment_account_reference",
    "account_id",
    "correlation_id",
    "updated_at",
    "key_version",
    "dpan_ciphertext",
]


def fill_token(
    token: NetworkToken,
    *,
    origin: Origin,
    card: tsp.CardData,
    issuer: Issuer,
    provisioned: tsp.Provisioned,
    account_id: str,
) -> None:
    token.vault_token = origin.vault_token or token.vault_token
    token.network = issuer.network
    token.issuer = issuer
    token.status = provisioned.status
    token.token_last_digits = provisioned.token_number[-4:]
    token.token_expiry_month, token.token_expiry_year = provisioned.token_expiry_month, provisioned.token_expiry_year
    token.card_bin, token.card_last_digits = card.number[:6], card.number[-4:]
    token.card_expiry_month, token.card_expiry_year = card.expiry_month, card.expiry_year
    token.payment_account_reference = provisioned.payment_account_reference
    token.account_id = account_id
    token.correlation_id = origin.correlation_id
    token.updated_at = timezone.now()
    token.key_version, token.dpan_ciphertext = key_ring().encrypt(
        provisioned.token_number, associated_data=token.associated_data()
    )
