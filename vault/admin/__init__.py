"""The back office for the vault: masked card data only.

Nothing here shows or accepts a full card number: card columns are the masked number, BIN, last four and brand;
the ciphertext and the fingerprint are never fields of any form or page, and a search that looks like a card number
is refused before it reaches a query or a page. Viewing a token or a conflict (holder name, address) is audited as
``admin:<username>``.

Who may do what is the ``back-office`` group's business (migration 0002): the token's change permission extends an
expiry, its delete permission destroys the card data, the conflict's change permission applies or dismisses it.
Every action shows a confirmation page first (what will happen, to which rows, which are left alone, by the
service's own rules), then calls one service of ``vault.services`` per object with the staff user as the actor: the
service writes the change and its audit row (``token.delete``, ``token.extend_expiry``, ``token.conflict_apply``,
``token.conflict_dismiss``), so a token "deleted" here is a tombstone, exactly as through the API. What a service
refuses is left alone, and the page says why in the service's words.
"""

from vault.admin import capture, conflicts, forwarding, keys, namespaces, tokens  # noqa: F401 - each registers its pages
from vault.admin.base import NamespaceFilter

__all__ = ["NamespaceFilter"]  # the network-token batches list types namespaces in the same way
