"""Network tokens: provisioning from the TSPs (sync, async, batches), cryptograms, lifecycle, issuers. Every write
is here.

A TSP call never runs inside a database transaction (it may take seconds); what it returns is stored in one. Card
and token numbers only ever exist in memory, in the vault's encryption, or in a detokenize-scoped answer. What the
services raise is in ``networks.errors``; the bodies and event payloads they build, in ``networks.api.representations``.

- ``provisioning``: one provisioning from a TSP, and what every way of asking shares (the one TSP call, the token row);
- ``async_requests``: asynchronous requests, which live in the database until they end;
- ``batches``: batches, released fairly across issuers and provisioned a chunk at a time;
- ``tokens``: cryptograms and the lifecycle, as the TSP reports it or an operator triggers it;
- ``issuers``: the issuer registry by BIN and the staff's edits of it.
"""

from networks.services.async_requests import (
    ASYNC_MAX_ATTEMPTS,
    provisioning_request_create,
    provisioning_request_retry_now,
    provisioning_request_run,
    provisioning_requests_sweep,
)
from networks.services.batches import (
    BATCH_ITEM_MAX_ABANDONED,
    BATCH_ITEM_MAX_ATTEMPTS,
    BatchEntry,
    batch_create,
    batch_items_run,
    batches_dispatch,
)
from networks.services.issuers import ISSUER_FIELDS, issuer_create, issuer_update
from networks.services.provisioning import Origin, card_from_vault, network_token_provision
from networks.services.tokens import (
    LIFECYCLE_FROM,
    STAFF_ACTIONS,
    Cryptogram,
    cryptogram_create,
    lifecycle_apply,
    network_token_delete,
    network_token_operate,
)

__all__ = [
    "ASYNC_MAX_ATTEMPTS",
    "BATCH_ITEM_MAX_ABANDONED",
    "BATCH_ITEM_MAX_ATTEMPTS",
    "ISSUER_FIELDS",
    "LIFECYCLE_FROM",
    "STAFF_ACTIONS",
    "BatchEntry",
    "Cryptogram",
    "Origin",
    "batch_create",
    "batch_items_run",
    "batches_dispatch",
    "card_from_vault",
    "cryptogram_create",
    "issuer_create",
    "issuer_update",
    "lifecycle_apply",
    "network_token_delete",
    "network_token_operate",
    "network_token_provision",
    "provisioning_request_create",
    "provisioning_request_retry_now",
    "provisioning_request_run",
    "provisioning_requests_sweep",
]
