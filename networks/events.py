"""What the network-token webhooks carry (``network_token.created``, ``.failed``, ``.updated``), and the token
metadata they share with the API's answers.

Network-token events carry the metadata of the synchronous answer (``metadata``: never a card or token number)
under the correlation id of the request they answer. The services build every payload here; the API's
representations (``networks.api.representations``) answer the same ``metadata``.
"""

from networks.models import NetworkToken


def metadata(token: NetworkToken) -> dict:
    """Everything about a network token a merchant may see without the detokenize scope: the sync answer, and the
    core of every network-token event."""
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


def created_data(token: NetworkToken, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.created`` event's data: the token's metadata under the correlation id of the request (or
    batch item) it answers, and which request that is (``requestId``, or ``batchId`` and ``index``)."""
    return {**metadata(token), "correlationId": correlation_id, **ids}


def failed_data(error_name: str, message: str, *, correlation_id: str, **ids) -> dict:
    """A ``network_token.failed`` event's data: which request (``requestId``, or ``batchId`` and ``index``) failed,
    under its correlation id, and why (as the request or item records it: ``errors.failure_of``)."""
    return {**ids, "correlationId": correlation_id, "errorName": error_name, "message": message}


def updated_data(token: NetworkToken, *, event: str, detail: dict) -> dict:
    """A ``network_token.updated`` event's data: the token's metadata, the lifecycle event and what it changed."""
    return {**metadata(token), "event": event, **detail}
