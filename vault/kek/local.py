"""The ``local`` KEK provider: the key encryption key held in this process's memory, from the environment.

The KEK comes from ``VAULT_KEK`` (base64 of 32 bytes), or is assembled from ``VAULT_KEK_COMPONENTS``: two or more
components of 32 bytes, each generated and entered by a different custodian, XORed together. Nobody who holds fewer
than all of them knows anything of the KEK (split knowledge, dual control: PCI DSS 3.6.1.2 and 3.7.6); the README's
"Key custody" shows the ceremony. ``VAULT_KEK_PREVIOUS`` holds older KEKs while ``rotate_kek`` moves the keys wrapped
under them to the current one; each entry is a KEK, or its components joined by ``:`` (a character base64 never
uses), so a KEK made of components is never assembled by hand to be retired either.

Keys are wrapped with AES key wrap (RFC 3394, NIST SP 800-38F "KW"), not AES-GCM: it is made for wrapping keys (no
nonce to get wrong: wrapping the same key twice gives the same bytes, which is harmless for random keys), its
64-bit integrity check makes a wrong KEK fail to unwrap instead of yielding another key, and it is the mechanism HSMs
offer (``CKM_AES_KEY_WRAP``, which the ``pkcs11`` provider uses), so both providers store the same 40-byte shape.

A KEK is named ``local:<check value>`` (``vault.crypto.check_value``): which key, never anything of it.
"""

import base64
import binascii
import os
from collections.abc import Sequence

from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap
from django.core.exceptions import ImproperlyConfigured

from vault.kek import KekUnavailable

ID_PREFIX = "local:"
KEY_BYTES = 32  # AES-256: the KEK, each of its components, and the keys it wraps
# Joins the components of one KEK in VAULT_KEK_PREVIOUS (commas separate KEKs): no base64 alphabet has it.
COMPONENT_SEPARATOR = ":"


def kek_id_of(kek: bytes) -> str:
    # Imported here: production settings check the KEK with keks_from before Django is set up, and vault.crypto
    # brings the API's error contract (DRF) with it.
    from vault.crypto import check_value

    return ID_PREFIX + check_value(kek)


def _decoded(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{what} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ImproperlyConfigured(f"{what} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def assembled(components: Sequence[str], what: str) -> bytes:
    """The KEK that ``components`` (base64, 32 bytes each, at least two) XOR to. Raises ImproperlyConfigured, naming
    ``what`` and never a value, for fewer than two, a repeated one (two equal components cancel out) or a result
    that is all zeros or one of the components (the others cancel out: not split knowledge)."""
    if len(components) < 2:
        raise ImproperlyConfigured(
            f"{what} must hold at least 2 components (split knowledge: one per custodian), got {len(components)}"
        )
    parts = [_decoded(text, f"{what} component {n}") for n, text in enumerate(components, 1)]
    if len(set(parts)) != len(parts):
        raise ImproperlyConfigured(f"{what} repeats a component: equal components cancel each other out")
    kek = bytes(KEY_BYTES)
    for part in parts:
        kek = bytes(a ^ b for a, b in zip(kek, part, strict=True))
    if kek == bytes(KEY_BYTES) or kek in parts:
        raise ImproperlyConfigured(f"{what} cancel each other out: generate every component afresh")
    return kek


def keks_from(*, kek: str = "", components: str = "", previous: str = "") -> tuple[bytes, list[bytes]]:
    """The current KEK and the previous ones, from the settings' values (``VAULT_KEK`` or ``VAULT_KEK_COMPONENTS``,
    and ``VAULT_KEK_PREVIOUS``). Raises ImproperlyConfigured naming the setting that is wrong, never its value."""
    if kek.strip() and components.strip():
        raise ImproperlyConfigured("Set VAULT_KEK or VAULT_KEK_COMPONENTS, not both")
    if kek.strip():
        current = _decoded(kek, "VAULT_KEK")
    elif components.strip():
        current = assembled([part for part in components.split(",") if part.strip()], "VAULT_KEK_COMPONENTS")
    else:
        raise ImproperlyConfigured(
            "No key encryption key: set VAULT_KEK, or VAULT_KEK_COMPONENTS (VAULT_KEK_PROVIDER=local), or choose "
            "VAULT_KEK_PROVIDER=pkcs11"
        )
    older = []
    for n, entry in enumerate(filter(None, (part.strip() for part in previous.split(","))), 1):
        what = f"VAULT_KEK_PREVIOUS entry {n}"
        parts = entry.split(COMPONENT_SEPARATOR)
        older.append(assembled(parts, what) if len(parts) > 1 else _decoded(entry, what))
    if current in older:
        raise ImproperlyConfigured("VAULT_KEK_PREVIOUS holds the current KEK: previous KEKs only")
    return current, older


class LocalProvider:
    """Wraps and unwraps in this process, under the current KEK and, for unwrapping, the previous ones."""

    name = "local"

    def __init__(self, kek: bytes, previous: Sequence[bytes] = (), *, source: str = "VAULT_KEK"):
        self._current = kek_id_of(kek)
        self._keks = {kek_id_of(key): key for key in (kek, *previous)}
        self._source = source

    @classmethod
    def from_settings(cls) -> "LocalProvider":
        from django.conf import settings

        current, previous = keks_from(
            kek=settings.VAULT_KEK, components=settings.VAULT_KEK_COMPONENTS, previous=settings.VAULT_KEK_PREVIOUS
        )
        return cls(current, previous, source="VAULT_KEK_COMPONENTS" if settings.VAULT_KEK_COMPONENTS else "VAULT_KEK")

    def __repr__(self) -> str:  # never the keys
        return f"<LocalProvider {self.describe()}>"

    def current_kek_id(self) -> str:
        return self._current

    def wrap(self, key: bytes) -> tuple[str, bytes]:
        return self._current, aes_key_wrap(self._keks[self._current], key)

    def unwrap(self, kek_id: str, wrapped: bytes) -> bytes:
        kek = self._keks.get(kek_id)
        if kek is None:
            raise KekUnavailable(
                f"the KEK {kek_id} is not held by this process: it is neither VAULT_KEK nor in VAULT_KEK_PREVIOUS"
            )
        try:
            return aes_key_unwrap(kek, bytes(wrapped))
        except InvalidUnwrap:
            raise ValueError(f"the wrapped key does not unwrap under {kek_id}") from None

    def describe(self) -> str:
        previous = len(self._keks) - 1
        kept = f", {previous} previous KEK(s) kept for rotate_kek" if previous else ""
        return f"local: KEK {self._current} from {self._source}{kept}"

    def verify(self) -> None:
        """The settings were checked when this provider was made; a wrap and unwrap round trip checks the rest."""
        probe = os.urandom(KEY_BYTES)
        if self.unwrap(*self.wrap(probe)) != probe:
            raise ImproperlyConfigured("the local KEK does not unwrap what it wraps")
