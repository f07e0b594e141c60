"""Encryption at rest for the apps below the vault on the ladder (webhook signing secrets, idempotent answers), under
the vault's key ring: ``key_ring()`` is the ring the vault hands card code (its data encryption keys, stored wrapped
by the key encryption key and unwrapped on first use; re-encrypted by ``rotate_keys``), which the vault registers
when it starts (``vault.apps``), since no app below it may import it.

Each value is encrypted as the vault encrypts a card: AES-256-GCM under the active key version, bound by associated
data to the row it belongs to; its model names the column (``encrypted_field``), keeps ``key_version`` and says
``associated_data()``, so that key rotation finds and re-encrypts it with the cards.
"""

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ImproperlyConfigured

_key_ring: Callable[[], Any] | None = None


def key_ring_use(provider: Callable[[], Any]) -> None:
    """Have ``key_ring()`` answer ``provider()`` (the vault's ``vault.keys.key_ring``)."""
    global _key_ring
    _key_ring = provider


def key_ring():
    """The key ring: ``encrypt(text, associated_data=) -> (version, blob)`` and ``decrypt(version, blob,
    associated_data=) -> text``. Raises what the vault's raises while its keys do not match the data."""
    if _key_ring is None:
        raise ImproperlyConfigured("No key ring: the vault app, which provides it, is not installed")
    return _key_ring()
