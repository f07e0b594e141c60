"""Forwarding: a merchant's request sent on to its payment provider with the card filled in by the vault, so the
merchant's systems never hold the card (DESIGN.md, "Forwarding").

- ``destinations``: where forwards may go (the URL rules, at save), and the credentials a forward fills in.
"""

from vault.forwarding.destinations import (
    UNSET,
    destination_create,
    destination_credential_names,
    destination_credentials,
    destination_delete,
    destination_disable,
    destination_enable,
    destination_get,
    destination_list,
    destination_update,
    destination_url_vet,
)

__all__ = [
    "UNSET",
    "destination_create",
    "destination_credential_names",
    "destination_credentials",
    "destination_delete",
    "destination_disable",
    "destination_enable",
    "destination_get",
    "destination_list",
    "destination_update",
    "destination_url_vet",
]
