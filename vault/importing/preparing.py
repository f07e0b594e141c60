"""Preparing a batch of valid rows: everything about their new tokens that needs no database, off the storing
threads' path (the reader thread does it while they wait on the database).

Each row gets the columns of the token ``card_tokenize`` would make of it (``tokenize.token_columns``: ids, masked
parts, brand, default description, expiry), its number fingerprinted and encrypted (a batch at once,
``encrypt_many``, bound to the token as ``token_associated_data`` says), and the columns of its ``token.created``
event, whose payload is the API's (``vault.events.token_columns_event_data``) and whose row the outbox makes
(``notifications.services.event_rows``). Rows of values, not model instances (see ``writers``). A row's namespace
is known by name until storing finds or creates it and sets the token's ``namespace_id``.
"""

import base64
import secrets

from django.utils import timezone

from merchants.models import Merchant
from notifications.services import event_rows
from vault.events import token_columns_event_data
from vault.importing.checking import Row
from vault.keys import key_ring
from vault.models import TOKEN_ID_RANDOM_BYTES, token_associated_data, token_id_from
from vault.services.tokenize import Card, default_lifetime, token_columns

# The random bytes of a row's ids, read for a whole batch at once: a system call for each, which gives the other
# threads the interpreter while it waits, made preparing the slowest part of the import. As in vault.models:
# a token id (token_id_from; new_token_id when too few of its bytes make letters) and a reference of 24 bytes.
_ROW_RANDOM_BYTES = TOKEN_ID_RANDOM_BYTES + 24


def _urlsafe(random) -> str:
    """``secrets.token_urlsafe``'s text of ``random``."""
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode()


class Preparer:
    def __init__(self, merchant: Merchant):
        self.merchant = merchant
        self.ring = key_ring()
        self.lifetime = default_lifetime()

    def prepare(self, rows: list[Row]) -> None:
        """Set ``token`` and ``event`` of each of ``rows``, and drop its number."""
        now = timezone.now()
        expires_at = now + self.lifetime
        fingerprint, merchant_id = self.ring.fingerprint, self.merchant.pk
        random = secrets.token_bytes(_ROW_RANDOM_BYTES * len(rows))
        for row, start in zip(rows, range(0, len(random), _ROW_RANDOM_BYTES), strict=True):
            middle = start + TOKEN_ID_RANDOM_BYTES
            row.token = token_columns(
                merchant_id=merchant_id,
                namespace_id=None,
                fingerprint=fingerprint(row.number),
                card=Card(row.number, row.holder, row.month, row.year, row.address),
                expires_at=expires_at,
                now=now,
                token_id=token_id_from(random[start:middle]),
                reference=_urlsafe(random[middle : start + _ROW_RANDOM_BYTES]),
            )
        key_version, ciphertexts = self.ring.encrypt_many(
            [(row.number, token_associated_data(merchant_id, row.token["token_id"])) for row in rows]
        )
        for row, ciphertext in zip(rows, ciphertexts, strict=True):
            row.token["key_version"], row.token["pan_ciphertext"] = key_version, ciphertext
            row.number = None
        events = event_rows(
            merchant_id=merchant_id,
            type="token.created",
            data=[token_columns_event_data(row.token, row.namespace) for row in rows],
            created_at=now,
        )
        for row, event in zip(rows, events, strict=True):
            row.event = event
