"""The key ring: AES-256-GCM for card numbers, HMAC-SHA256 for fingerprints.

``VAULT_KEYS`` holds versioned 32-byte keys, newest first (``"2:<base64>,1:<base64>"``). New rows are encrypted
under the newest version and record it; any version still in the ring decrypts. ``rotate_keys`` re-encrypts rows
to the newest version, after which older keys can leave the ring.

Each ciphertext is bound to its row and merchant through GCM's associated data: a ciphertext copied into another
row or another merchant's token fails authentication instead of decrypting.

Fingerprints (the identity lookup for "same card") are HMAC-SHA256 under ``VAULT_FINGERPRINT_KEY``, a key of their
own: a plain hash of a 16-digit number with a known BIN is brute-forced in minutes.

Cipher and HMAC objects are built once per process; building an ``AESGCM`` per call halves throughput.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

NONCE_BYTES = 12


class DecryptionFailed(Exception):
    """The ciphertext does not authenticate under its key version and associated data."""


def _decode_key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{what} is not valid base64") from None
    if len(key) != 32:
        raise ImproperlyConfigured(f"{what} must be 32 bytes (AES-256), got {len(key)}")
    return key


def parse_key_ring(spec: str) -> list[tuple[int, bytes]]:
    """``"2:<b64>,1:<b64>"`` → ``[(2, key), (1, key)]``, newest first, versions unique."""
    keys: list[tuple[int, bytes]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        version, sep, material = part.partition(":")
        if not sep or not version.strip().isdigit():
            raise ImproperlyConfigured("VAULT_KEYS entries must look like '<version>:<base64 key>'")
        keys.append((int(version), _decode_key(material, f"VAULT_KEYS version {version.strip()}")))
    if not keys:
        raise ImproperlyConfigured("VAULT_KEYS holds no key")
    versions = [v for v, _ in keys]
    if len(set(versions)) != len(versions):
        raise ImproperlyConfigured("VAULT_KEYS repeats a version")
    if versions != sorted(versions, reverse=True):
        raise ImproperlyConfigured("VAULT_KEYS must list the newest (highest) version first")
    return keys


@dataclass
class KeyRing:
    keys: list[tuple[int, bytes]]
    fingerprint_key: bytes
    _ciphers: dict[int, AESGCM] = field(init=False, repr=False)
    _hmac: "hmac.HMAC" = field(init=False, repr=False)

    def __post_init__(self):
        self._ciphers = {version: AESGCM(key) for version, key in self.keys}
        self._hmac = hmac.new(self.fingerprint_key, digestmod=hashlib.sha256)

    @property
    def newest_version(self) -> int:
        return self.keys[0][0]

    @property
    def versions(self) -> list[int]:
        return [v for v, _ in self.keys]

    def encrypt(self, plaintext: str, *, associated_data: bytes) -> tuple[int, bytes]:
        """Encrypt under the newest key; returns ``(version, nonce || ciphertext || tag)``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.newest_version].encrypt(nonce, plaintext.encode(), associated_data)
        return self.newest_version, nonce + sealed

    def encrypt_many(self, items: list[tuple[str, bytes]]) -> tuple[int, list[bytes]]:
        """``encrypt`` for many ``(plaintext, associated_data)`` at once, as the import needs: one read of random
        bytes for every nonce (a system call each was a fifth of the import's preparing). Returns the key version and
        the blobs, in order."""
        version = self.newest_version
        cipher = self._ciphers[version]
        nonces = os.urandom(NONCE_BYTES * len(items))
        blobs = []
        for start, (plaintext, associated_data) in zip(range(0, len(nonces), NONCE_BYTES), items):
            nonce = nonces[start:start + NONCE_BYTES]
            blobs.append(nonce + cipher.encrypt(nonce, plaintext.encode(), associated_data))
        return version, blobs

    def decrypt(self, version: int, blob: bytes, *, associated_data: bytes) -> str:
        cipher = self._ciphers.get(version)
        if cipher is None:
            raise DecryptionFailed(f"key version {version} is not in the key ring")
        try:
            return cipher.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), associated_data).decode()
        except InvalidTag:
            raise DecryptionFailed(f"ciphertext does not authenticate under key version {version}") from None

    def fingerprint(self, number: str) -> str:
        digest = self._hmac.copy()
        digest.update(number.encode())
        return digest.hexdigest()


@functools.cache
def key_ring() -> KeyRing:
    return KeyRing(
        keys=parse_key_ring(settings.VAULT_KEYS),
        fingerprint_key=_decode_key(settings.VAULT_FINGERPRINT_KEY, "VAULT_FINGERPRINT_KEY"),
    )


def reset_key_ring(*, setting, **kwargs):
    if setting in ("VAULT_KEYS", "VAULT_FINGERPRINT_KEY"):
        key_ring.cache_clear()
