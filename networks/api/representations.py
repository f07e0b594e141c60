"""The one source of what the network-token API answers.

Non-sensitive metadata only: a network token is its tokenId, status, last digits, expiry, card BIN and last digits,
PAR, card art and issuer (``metadata``, the synchronous answer, which the webhooks carry too: it is defined with the
event payloads in ``networks.events``, below both this module and the services that emit them). The token number
appears in one body only, a cryptogram's, and only when the service put it there (the detokenize scope).
"""

from collections.abc import Iterable

from core.http import timestamp
from networks.events import metadata
from networks.models import Batch, BatchItem, LifecycleEvent, NetworkToken, ProvisioningRequest

__all__ = [
    "batch_accepted_body",
    "batch_body",
    "cryptogram_body",
    "metadata",
    "network_token_body",
    "request_body",
    "request_accepted_body",
]


# ------------------------------------------------------------------------------------------------------------
# Answers
# ------------------------------------------------------------------------------------------------------------
def network_token_body(token: NetworkToken, *, lifecycle: Iterable[LifecycleEvent]) -> dict:
    """``GET /network-tokens/{tokenId}``: the metadata, when it was made and changed, and its lifecycle."""
    return {
        **metadata(token),
        "createdAt": timestamp(token.created_at),
        "updatedAt": timestamp(token.updated_at),
        "lifecycle": [
            {
                "type": event.type,
                "oldStatus": event.old_status,
                "newStatus": event.new_status,
                "at": timestamp(event.created_at),
            }
            for event in lifecycle
        ],
    }


def cryptogram_body(cryptogram) -> dict:
    """``POST /network-tokens/{tokenId}/cryptograms``: a ``services.Cryptogram``; its token number only if it
    holds one."""
    token = cryptogram.token
    body = {
        "cryptogram": cryptogram.cryptogram,
        "eci": cryptogram.eci,
        "tokenExpiryDate": {"month": token.token_expiry_month, "year": token.token_expiry_year},
        "cryptogramExpiryDateTime": timestamp(cryptogram.expires_at),
    }
    if cryptogram.token_number is not None:
        body["tokenNumber"] = cryptogram.token_number
    return body


def request_accepted_body(request: ProvisioningRequest) -> dict:
    """``POST /network-tokens/async`` (202)."""
    return {"requestId": request.public_id, "correlationId": request.correlation_id, "status": request.status}


def request_body(request: ProvisioningRequest) -> dict:
    """``GET /network-tokens/requests/{requestId}``: where the request stands, its token or why it failed."""
    failed = request.status == ProvisioningRequest.FAILED
    return {
        "requestId": request.public_id,
        "correlationId": request.correlation_id,
        "status": request.status,
        "createdAt": timestamp(request.created_at),
        "updatedAt": timestamp(request.updated_at),
        "attempts": request.attempts,
        "networkToken": metadata(request.network_token) if request.network_token_id else None,
        "error": {"errorName": request.failure_code, "message": request.failure_reason} if failed else None,
    }


def batch_accepted_body(batch: Batch, *, counts: dict[str, int]) -> dict:
    """``POST /network-tokens/batches`` (202)."""
    return {"id": batch.public_id, "status": batch.status, "counts": counts}


def batch_body(batch: Batch, *, counts: dict[str, int], failed: Iterable[BatchItem], page: dict) -> dict:
    """``GET /network-tokens/batches/{id}``: status, counts by state and one page of the failed items."""
    return {
        "id": batch.public_id,
        "status": batch.status,
        "total": batch.total,
        "counts": counts,
        "createdAt": timestamp(batch.created_at),
        "completedAt": timestamp(batch.completed_at),
        "failedItems": [
            {
                "index": item.index,
                "token": item.token_reference,
                "errorName": item.failure_code,
                "message": item.failure_reason,
            }
            for item in failed
        ],
        "page": page,
    }
