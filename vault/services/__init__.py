"""Every write the vault makes. Views, admin actions, commands, tasks and the apps above call these and nothing else.

- ``tokenize``: a card's details: tokenize, updates, the tombstone a card leaves;
- ``conflicts``: a token's pending conflict applied or dismissed;
- ``tokens``: uses and expiry extensions, detokenize, deletion, expiry purges, the network-token link.

Key custody (the keys against the data, rotation) is ``vault.keys``.
"""

from vault.services.conflicts import conflict_apply, conflict_dismiss
from vault.services.tokenize import (
    UNSET,
    Card,
    Outcome,
    TokenizeResult,
    billing_address_differs,
    card_data_destroy,
    card_tokenize,
    default_lifetime,
    token_update,
)
from vault.services.tokens import (
    token_can_extend,
    token_delete,
    token_detokenize,
    token_extend_expiry,
    token_extended_expiry,
    token_use,
    tokens_network_token_set,
    tokens_purge_expired,
)

__all__ = [
    "UNSET",
    "Card",
    "Outcome",
    "TokenizeResult",
    "billing_address_differs",
    "card_data_destroy",
    "card_tokenize",
    "conflict_apply",
    "conflict_dismiss",
    "default_lifetime",
    "token_can_extend",
    "token_delete",
    "token_detokenize",
    "token_extend_expiry",
    "token_extended_expiry",
    "token_update",
    "token_use",
    "tokens_network_token_set",
    "tokens_purge_expired",
]
