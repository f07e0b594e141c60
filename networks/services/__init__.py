"""Network tokens: provisioning from the TSPs (sync, async, batches), cryptograms, lifecycle. Every write is here.

A TSP call never runs inside a database transaction (it may take seconds); what it returns is stored in one. Card
and token numbers only ever exist in memory, in the vault's encryption, or in a detokenize-scoped answer.

- ``provisioning``: one provisioning from a TSP, and what every way of asking shares (errors, issuers, events' data);
- ``async_requests``: asynchronous requests, which live in the database until they end;
- ``batches``: batches, released fairly across issuers and provisioned a chunk at a time;
- ``tokens``: cryptograms and the lifecycle the TSP reports.
"""

from networks.services.async_requests import (ASYNC_MAX_ATTEMPTS, provisioning_request_create,
                                              provisioning_request_retry_now, provisioning_request_run,
                                              provisioning_requests_sweep, request_retry_delay)
from networks.services.batches import (BATCH_ITEM_MAX_ABANDONED, BATCH_ITEM_MAX_ATTEMPTS, BatchEntry, batch_create,
                                       batch_item_run, batch_items_reclaim, batch_items_run)
from networks.services.provisioning import (NetworkNotConfigured, NetworkTimeout, NetworkUnavailable, Origin,
                                            card_from_vault, check_supported, created_data, failed_data, issuer_for,
                                            metadata, network_token_provision, token_service)
from networks.services.tokens import cryptogram_create, lifecycle_apply, network_token_delete

__all__ = [
    "ASYNC_MAX_ATTEMPTS", "BATCH_ITEM_MAX_ABANDONED", "BATCH_ITEM_MAX_ATTEMPTS", "BatchEntry", "NetworkNotConfigured",
    "NetworkTimeout", "NetworkUnavailable", "Origin", "batch_create", "batch_item_run", "batch_items_reclaim",
    "batch_items_run", "card_from_vault", "check_supported", "created_data", "cryptogram_create", "failed_data",
    "issuer_for", "lifecycle_apply", "metadata", "network_token_delete", "network_token_provision",
    "provisioning_request_create", "provisioning_request_retry_now", "provisioning_request_run",
    "provisioning_requests_sweep", "request_retry_delay", "token_service",
]
