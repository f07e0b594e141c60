"""Provisioning a network token from a TSP, and what every way of asking for one shares: the errors, where the card
comes from, its issuer, the token row and the events' data. A TSP call never runs inside a database transaction (it
may take seconds); what it returns is stored in one.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from config.errors import ApiError, BusinessRuleError
from networks import scheduling, tsp
from networks.models import Issuer, NetworkToken
from notifications.services import event_emit
from vault import cards
from vault.crypto import key_ring
from vault.models import Merchant, Token


class NetworkUnavailable(ApiError):
    status_code = 502
    error_name = "networkUnavailable"
    default_message = "The card network's token service is unavailable; try again later"


class NetworkTimeout(NetworkUnavailable):
    status_code = 504
    default_message = "The card network's token service did not answer in time; try again later"


class NetworkNotConfigured(ApiError):
    """The card's network has a token service, but this installation is connected to none (production without a
    real integration in TSP_PROVIDERS, and without TSP_SIMULATOR)."""

    status_code = 503
    error_name = "networkNotConfigured"
    default_message = "No token service is configured for this card's network on this server"


def token_service(network: str) -> tsp.TokenService | None:
    """``tsp.provider_for`` for the services: None for a network without a token service; raises
    NetworkNotConfigured (503) for one whose token service this installation is not connected to."""
    try:
        return tsp.provider_for(network)
    except tsp.NotConfigured:
        raise NetworkNotConfigured(f"No token service is configured for {network} on this server") from None


def network_not_supported() -> BusinessRuleError:
    return BusinessRuleError(
        "networkNotSupported", "Network tokens are available for VISA, MASTERCARD and AMEX cards", status_code=422
    )


def tokenization_declined() -> BusinessRuleError:
    return BusinessRuleError("tokenizationDeclined", "The card issuer declined to tokenize this card", status_code=422)


def email_required() -> ApiError:
    return ApiError(validation_errors=[{
        "errorName": "fieldIsMissing", "message": "American Express cards need an email", "jsonPath": "$.email",
    }])


@dataclass(frozen=True)
class Origin:
    """Where the card of a provisioning comes from and who asked: for the token row and its events
    (``request_id`` names the asynchronous request it serves, if any)."""

    merchant: Merchant
    correlation_id: str
    vault_token: Token | None = None
    request_id: str | None = None


# ------------------------------------------------------------------------------------------------------------
# Cards and issuers
# ------------------------------------------------------------------------------------------------------------
def card_from_vault(token: Token) -> tsp.CardData:
    number = key_ring().decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data())
    return tsp.CardData(number, token.expiry_month, token.expiry_year, token.card_holder_name)


def issuer_for(card_number: str, network: str) -> Issuer:
    """The registered issuer whose BIN range holds the card (the innermost); for a BIN outside the registry, the
    issuer of that one BIN, made on first use with the default rate limit, so that a bank the registry does not
    list yet is spaced and scheduled on its own rather than with every other unlisted bank of its network."""
    bin_ = card_number[:6]
    issuer = (
        Issuer.objects.filter(network=network, registered=True, bin_low__lte=bin_, bin_high__gte=bin_)
        .order_by("-bin_low", "bin_high").first()  # the innermost range holding the BIN was registered for it
    )
    if issuer is None:
        # get_or_create: two workers meeting the BIN at once end in the one row the unique constraint allows.
        issuer, _ = Issuer.objects.get_or_create(
            network=network, registered=False, bin_low=bin_, bin_high=bin_,
            defaults={"name": f"Unregistered {network} issuer, BIN {bin_}"},
        )
    return issuer


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


# ------------------------------------------------------------------------------------------------------------
# Provisioning
# ------------------------------------------------------------------------------------------------------------
def network_token_provision(*, origin: Origin, card: tsp.CardData, account_id: str = "", email: str = "",
                            on_call: Callable[[], None] | None = None) -> NetworkToken:
    """Ask the card's network for a token, within its issuer's rate limit, and store it.

    ``on_call`` runs the moment the call to the TSP starts (after waiting for the issuer's slot).

    Visa and Amex give the same live tokenId again for the same merchant and card (and accountId, and Amex's
    email): the stored token is then returned, updated. Raises networkNotSupported/tokenizationDeclined (422),
    NetworkUnavailable/NetworkTimeout (502/504, ``transient`` on the cause). Emits ``network_token.created`` when
    the token is ACTIVE; an INACTIVE one (a step-up) is announced when the network activates it (``lifecycle_apply``).
    """
    network = check_supported(card.number, email=email)
    issuer = issuer_for(card.number, network)
    scheduling.call_slot(issuer)
    if on_call is not None:
        on_call()
    try:
        provisioned = token_service(network).provision(tsp.ProvisionRequest(
            merchant_id=origin.merchant.public_id, card=card, account_id=account_id, email=email
        ))
    except tsp.Declined:
        raise tokenization_declined() from None
    except tsp.TspError as exc:
        raise (NetworkTimeout() if exc.timeout else NetworkUnavailable()) from exc
    try:
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    except IntegrityError:
        # A concurrent request got the same (Visa or Amex) tokenId and stored it first: update that row.
        return _store(origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)


@transaction.atomic
def _store(*, origin: Origin, card: tsp.CardData, issuer: Issuer, provisioned: tsp.Provisioned,
           account_id: str) -> NetworkToken:
    token = NetworkToken.objects.select_for_update().filter(token_id=provisioned.token_id).first()
    if token is None:
        token = NetworkToken(token_id=provisioned.token_id, merchant=origin.merchant)
    fill_token(token, origin=origin, card=card, issuer=issuer, provisioned=provisioned, account_id=account_id)
    token.save()
    if token.status == NetworkToken.ACTIVE:
        ids = {"requestId": origin.request_id} if origin.request_id else {}
        event_emit(merchant=origin.merchant, type="network_token.created",
                   data=created_data(token, correlation_id=origin.correlation_id, **ids))
    return token


# What a provisioning sets on a token row, new or reused (``fill_token``).
TOKEN_FIELDS = [
    "vault_token", "network", "issuer", "status", "token_last_digits", "token_expiry_month", "token_expiry_year",
    "card_bin", "card_last_digits", "card_expiry_month", "card_expiry_year", "payment_account_reference",
    "account_id", "correlation_id", "updated_at", "key_version", "dpan_ciphertext",
]


def fill_token(token: NetworkToken, *, origin: Origin, card: tsp.CardData, issuer: Issuer,
               provisioned: tsp.Provisioned, account_id: str) -> None:
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


def created_data(token: NetworkToken, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.created`` event's data: the token's metadata under the correlation id of the request (or
    batch item) it answers, and which request that is (``requestId``, or ``batchId`` and ``index``)."""
    return {**metadata(token), "correlationId": correlation_id, **ids}


def failed_data(error: ApiError, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.failed`` event's data: which request (``requestId``, or ``batchId`` and ``index``) failed,
    under its correlation id, and why."""
    return {**ids, "correlationId": correlation_id, "errorName": error.error_name, "message": failure_reason(error)}


def metadata(token: NetworkToken) -> dict:
    """Everything about a network token a merchant may see without the detokenize scope (the sync answer)."""
    issuer = token.issuer
    return {
        "tokenId": token.token_id,
        "network": token.network,
        "status": token.status,
        "tokenLastDigits": token.token_last_digits,
        "tokenExpiryDate": {"month": token.token_expiry_month, "year": token.token_expiry_year},
        "cardBin": token.card_bin,
        "cardLastDigits": token.card_last_digits,
        "cardExpiryDate": {"month": token.card_expiry_month, "year": token.card_expiry_year},
        "paymentAccountReference": token.payment_account_reference,
        "cardArt": list(issuer.card_art_ids),
        "issuer": {"name": issuer.name},
        "correlationId": token.correlation_id,
    }




def failure_reason(error: ApiError) -> str:
    """What a failed request or batch item records of ``error``: its first validation message, or its message."""
    return (error.validation_errors[0]["message"] if error.validation_errors else error.message)[:255]
