"""The key ring: AES-256-GCM for card numbers, HMAC-SHA256 for fingerprints.

``VAULT_KEYS`` holds versioned 32-byte keys (``"2:<base64>,1:<base64>"``, in any order). Every version in the ring
decrypts; new rows are encrypted under the *active* version, ``VAULT_ACTIVE_KEY_VERSION`` (the highest version when
unset), and record it. That split is what makes a rollout safe: a new version is first added everywhere while the old
one stays active, so every process can read what any other writes; only then is it activated, ``rotate_keys``
re-encrypts the older rows to it, and the old version leaves the ring.

A row under a version this process's ring lacks raises ``KeyVersionUnavailable`` (a rollout not finished here: a
503 for the client, an error log line naming the version), never the integrity failure ``DecryptionFailed``, which
is kept for a ciphertext that does not authenticate under a key the ring has. It and ``KeyRingMismatch`` (below) are
``KeysUnavailable``: the work may succeed later or elsewhere, and is not the request's fault.

Each ciphertext is bound to its row and merchant through GCM's associated data: a ciphertext copied into another
row or another merchant's token fails authentication instead of decrypting.

Fingerprints (the identity lookup for "same card") are HMAC-SHA256 under ``VAULT_FINGERPRINT_KEY``, a key of their
own: a plain hash of a 16-digit number with a known BIN is brute-forced in minutes.

Every key has a *check value*, the first bytes of an HMAC of a fixed label under it: stored with the data
(``vault.models.KeyCheck``), it tells whether a key is the one the data was written with without revealing it.
``key_ring()``, the one way card code gets the ring, hands it out only while the ring matches those values
(``vault.keys.keys_verify``); ``configured_key_ring()`` is the ring as configured, for that check itself.

Cipher and HMAC objects are built once per process; building an ``AESGCM`` per call halves throughput.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import os
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from core.errors import CardKeyMissing, CardKeysMismatch

logger = logging.getLogger(__name__)

NONCE_BYTES = 12
# What a check value is the HMAC of, and how many of its bytes are kept: enough to tell keys apart, far too few (and
# the wrong function) to tell anything of the key.
CHECK_LABEL = b"tokenvault key check value"
CHECK_BYTES = 8


class DecryptionFailed(Exception):
    """The ciphertext does not authenticate under its key version and associated data."""


class KeysUnavailable(Exception):
    """This process cannot work on the card data for now, through no fault of the request: later, or on another
    server, the same work may succeed (a task should try again rather than fail its request)."""


class KeyVersionUnavailable(KeysUnavailable, CardKeyMissing):
    """The ciphertext was written under a key version this process's ring does not hold (a rollout that has not
    reached this server, or a key dropped too early). Says the version, never anything of the data."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"key version {version} is not in this server's VAULT_KEYS")


class KeyRingMismatch(KeysUnavailable, CardKeysMismatch):
    """The ring does not match the keys the data was written with (``vault.selectors.key_ring_problems``): no card
    operation until an operator fixes the keys. ``problems`` say what differs, never any key material."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the keys do not match the data: " + "; ".join(problems))


def _decode_key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{what} is not valid base64") from None
    if len(key) != 32:
        raise ImproperlyConfigured(f"{what} must be 32 bytes (AES-256), got {len(key)}")
    return key


def parse_key_ring(spec: str) -> list[tuple[int, bytes]]:
    """``"2:<b64>,1:<b64>"`` → ``[(2, key), (1, key)]``, in the order given, versions unique.

    The order carries no meaning: the active version is named (or the highest), so a rule about order would only be
    one more way for a rollout to fail."""
    keys: list[tuple[int, bytes]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        version, sep, material = part.partition(":")
        if not sep or not version.strip().isdigit():
            raise ImproperlyConfigured("VAULT_KEYS entries must look like '<version>:<base64 key>'")
        if not 1 <= int(version) <= 32767:
            raise ImproperlyConfigured(f"VAULT_KEYS version {version.strip()} is not between 1 and 32767")
        keys.append((int(version), _decode_key(material, f"VAULT_KEYS version {version.strip()}")))
    if not keys:
        raise ImproperlyConfigured("VAULT_KEYS holds no key")
    versions = [v for v, _ in keys]
    if len(set(versions)) != len(versions):
        raise ImproperlyConfigured("VAULT_KEYS repeats a version")
    return keys


def check_value(key: bytes) -> str:
    """The check value of ``key`` (hex): what is stored with the data to recognise the key later."""
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).digest()[:CHECK_BYTES].hex()


@dataclass
class KeyRing:
    keys: list[tuple[int, bytes]]
    fingerprint_key: bytes
    active_version: int | None = None  # None: the highest version of ``keys``
    _ciphers: dict[int, AESGCM] = field(init=False, repr=False)
    _hmac: "hmac.HMAC" = field(init=False, repr=False)

    def __post_init__(self):
        self._ciphers = {version: AESGCM(key) for version, key in self.keys}
        if self.active_version is None:
            self.active_version = max(self._ciphers)
        elif self.active_version not in self._ciphers:
            held = ", ".join(str(v) for v in self.versions)
            raise ImproperlyConfigured(
                f"VAULT_ACTIVE_KEY_VERSION {self.active_version} is not a version of VAULT_KEYS (it holds {held})"
            )
        self._hmac = hmac.new(self.fingerprint_key, digestmod=hashlib.sha256)

    @property
    def versions(self) -> list[int]:
        return [v for v, _ in self.keys]

    def check_value(self, version: int) -> str:
        """The check value of the key under ``version`` (which must be in the ring)."""
        return check_value(dict(self.keys)[version])

    @property
    def fingerprint_check_value(self) -> str:
        return check_value(self.fingerprint_key)

    def encrypt(self, plaintext: str, *, associated_data: bytes) -> tuple[int, bytes]:
        """Encrypt under the active key; returns ``(version, nonce || ciphertext || tag)``."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active_version].encrypt(nonce, plaintext.encode(), associated_data)
        return self.active_version, nonce + sealed

    def encrypt_many(self, items: list[tuple[str, bytes]]) -> tuple[int, list[bytes]]:
        """``encrypt`` for many ``(plaintext, associated_data)`` at once, as the import needs: one read of random
        bytes for every nonce (a system call each was a fifth of the import's preparing). Returns the key version and
        the blobs, in order."""
        version = self.active_version
        cipher = self._ciphers[version]
        nonces = os.urandom(NONCE_BYTES * len(items))
        blobs = []
        for start, (plaintext, associated_data) in zip(range(0, len(nonces), NONCE_BYTES), items, strict=True):
            nonce = nonces[start : start + NONCE_BYTES]
            blobs.append(nonce + cipher.encrypt(nonce, plaintext.encode(), associated_data))
        return version, blobs

    def decrypt(self, version: int, blob: bytes, *, associated_data: bytes) -> str:
        """The plaintext of ``blob``. Raises KeyVersionUnavailable (and logs the version, once per call) when the
        ring lacks ``version``, DecryptionFailed when the blob does not authenticate under it."""
        cipher = self._ciphers.get(version)
        if cipher is None:
            logger.error("a stored card is under key version %s, which is not in this server's VAULT_KEYS", version)
            raise KeyVersionUnavailable(version)
        try:
            return cipher.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), associated_data).decode()
        except InvalidTag:
            raise DecryptionFailed(f"ciphertext does not authenticate under key version {version}") from None

    def fingerprint(self, number: str) -> str:
        digest = self._hmac.copy()
        digest.update(number.encode())
        return digest.hexdigest()


@functools.cache
def configured_key_ring() -> KeyRing:
    """The ring as the settings make it, checked against nothing (malformed settings raise ImproperlyConfigured)."""
    return KeyRing(
        keys=parse_key_ring(settings.VAULT_KEYS),
        fingerprint_key=_decode_key(settings.VAULT_FINGERPRINT_KEY, "VAULT_FINGERPRINT_KEY"),
        active_version=settings.VAULT_ACTIVE_KEY_VERSION,
    )


def reset_key_ring(*, setting, **kwargs):
    # A new ring object is also checked afresh against the data (vault.keys.keys_verify).
    if setting in ("VAULT_KEYS", "VAULT_FINGERPRINT_KEY", "VAULT_ACTIVE_KEY_VERSION", "VAULT_KEY_CHECK_SECONDS"):
        configured_key_ring.cache_clear()
