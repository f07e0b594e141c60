"""The key ring: AES-256-GCM for card numbers, HMAC-SHA256 for fingerprints.

A ring holds data encryption keys (DEKs) by version and encrypts under its *active* version, recording the version
with each ciphertext; every version it holds decrypts. Where the keys come from is ``vault.keys``'s business: DEKs
stored wrapped by the key encryption key and unwrapped on first use, handed to the ring as they are needed (its
``fetch``), so a process reads rows under any version any other process wrote.

Each ciphertext is bound to its row and merchant through GCM's associated data: a ciphertext copied into another
row or another merchant's token fails authentication instead of decrypting (``DecryptionFailed``).

Fingerprints (the identity lookup for "same card") are HMAC-SHA256 under a key of their own, the fingerprint key: a
plain hash of a 16-digit number with a known BIN is brute-forced in minutes.

Every key has a *check value*, the first bytes of an HMAC of a fixed label under it: stored with the data
(``vault.models.DataKey``), it tells whether a key is the one the data was written with without revealing it.

Before key custody, the keys came from the environment: ``VAULT_KEYS`` (``"2:<base64>,1:<base64>"``) and
``VAULT_FINGERPRINT_KEY``. ``parse_key_ring`` still reads them, for ``migrate_keys_to_kek``, which wraps them under
the KEK with their versions and check values, and for the processes serving meanwhile.

Cipher and HMAC objects are built once per key; building an ``AESGCM`` per call halves throughput.
"""

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured

from core.errors import CardKeyMissing, CardKeysMismatch, CardKeysUnreachable

NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256, and the fingerprint key's HMAC-SHA256
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
    """The ciphertext is under a key version no key is stored for (a database restored without its keys' table, or
    with an older copy of it). Says the version, never anything of the data."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"no key is stored for key version {version}")


class KeyRingMismatch(KeysUnavailable, CardKeysMismatch):
    """The keys this process can get do not match the keys the data was written with (``vault.keys.keys_problems``):
    no card operation until an operator fixes them. ``problems`` say what differs, never any key material."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("the keys do not match the data: " + "; ".join(problems))


class KeysUnreachable(KeysUnavailable, CardKeysUnreachable):
    """A key this work needs is not in memory yet and the KEK provider cannot unwrap it now (an HSM unreachable):
    503 until it answers again. Says which KEK, never key material."""


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def decode_key(text: str, what: str) -> bytes:
    """A base64 key of 32 bytes from a setting; ImproperlyConfigured naming ``what`` (never the value) otherwise."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{what} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ImproperlyConfigured(f"{what} must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def parse_key_ring(spec: str) -> list[tuple[int, bytes]]:
    """``VAULT_KEYS`` (``"2:<b64>,1:<b64>"``) → ``[(2, key), (1, key)]``, in the order given, versions unique."""
    keys: list[tuple[int, bytes]] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        version, sep, material = part.partition(":")
        if not sep or not version.strip().isdigit():
            raise ImproperlyConfigured("VAULT_KEYS entries must look like '<version>:<base64 key>'")
        if not 1 <= int(version) <= 32767:
            raise ImproperlyConfigured(f"VAULT_KEYS version {version.strip()} is not between 1 and 32767")
        keys.append((int(version), decode_key(material, f"VAULT_KEYS version {version.strip()}")))
    if not keys:
        raise ImproperlyConfigured("VAULT_KEYS holds no key")
    versions = [v for v, _ in keys]
    if len(set(versions)) != len(versions):
        raise ImproperlyConfigured("VAULT_KEYS repeats a version")
    return keys


def check_value(key: bytes) -> str:
    """The check value of ``key`` (hex): what is stored with the data to recognise the key later."""
    return hmac.new(key, CHECK_LABEL, hashlib.sha256).digest()[:CHECK_BYTES].hex()


class KeyRing:
    """DEKs by version, one of them active, and the fingerprint key.

    ``fetch(version)``, when given, supplies the key of a version the ring does not hold yet, the first time a
    ciphertext under it is decrypted (and raises what keeps it from doing so); without it such a version is a
    ``KeyVersionUnavailable``. Keys are only ever added: a process's ring is shared by its threads, and a dict
    assignment is atomic.
    """

    def __init__(
        self,
        *,
        keys: Iterable[tuple[int, bytes]],
        fingerprint_key: bytes,
        active_version: int | None = None,
        fetch: Callable[[int], bytes] | None = None,
    ):
        self._keys: dict[int, bytes] = {}
        self._ciphers: dict[int, AESGCM] = {}
        for version, key in keys:
            self.hold(version, key)
        if active_version is None:
            active_version = max(self._keys)
        self.activate(active_version)
        self.fingerprint_key = fingerprint_key
        self._hmac = hmac.new(fingerprint_key, digestmod=hashlib.sha256)
        self._fetch = fetch

    def hold(self, version: int, key: bytes) -> None:
        """Hold ``key`` under ``version`` (replacing the key held under it, if any)."""
        self._ciphers[version] = AESGCM(key)
        self._keys[version] = key

    def activate(self, version: int) -> None:
        """Encrypt under ``version`` from now on: a version the ring holds."""
        if version not in self._ciphers:
            raise ValueError(f"key version {version} is not in the ring")
        self.active_version = version

    def holds(self, version: int) -> bool:
        return version in self._ciphers

    @property
    def versions(self) -> list[int]:
        return list(self._keys)

    @property
    def keys(self) -> list[tuple[int, bytes]]:
        """The keys held, ``(version, key)``, the active one first."""
        active = self.active_version
        return [(active, self._keys[active])] + [(v, k) for v, k in self._keys.items() if v != active]

    def check_value(self, version: int) -> str:
        """The check value of the key under ``version`` (which must be in the ring)."""
        return check_value(self._keys[version])

    @property
    def fingerprint_check_value(self) -> str:
        return check_value(self.fingerprint_key)

    def encrypt(self, plaintext: str, *, associated_data: bytes) -> tuple[int, bytes]:
        """Encrypt under the active key; returns ``(version, nonce || ciphertext || tag)``."""
        version = self.active_version  # read once: another thread may activate a newer one meanwhile
        nonce = os.urandom(NONCE_BYTES)
        return version, nonce + self._ciphers[version].encrypt(nonce, plaintext.encode(), associated_data)

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
        """The plaintext of ``blob``. A version not held yet is fetched first (raising what ``fetch`` raises, or
        KeyVersionUnavailable without one); DecryptionFailed when the blob does not authenticate under it."""
        cipher = self._ciphers.get(version)
        if cipher is None:
            if self._fetch is None:
                raise KeyVersionUnavailable(version)
            self.hold(version, self._fetch(version))
            cipher = self._ciphers[version]
        try:
            return cipher.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), associated_data).decode()
        except InvalidTag:
            raise DecryptionFailed(f"ciphertext does not authenticate under key version {version}") from None

    def fingerprint(self, number: str) -> str:
        digest = self._hmac.copy()
        digest.update(number.encode())
        return digest.hexdigest()
