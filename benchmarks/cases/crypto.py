"""Per-card cost of what the vault does to a card number on the way in (encrypt + fingerprint), in µs, through
``vault.keys.key_ring()`` vs the bare ``cryptography`` AES-GCM and ``hmac`` calls on the same data.

The bare side is what any code has to do: a random nonce, one AES-GCM seal with the associated data, one
HMAC-SHA256 hexdigest. The difference is the key ring's own overhead (key lookup, HMAC copy, tuple building).
Both sides are timed in alternation, five times each; the median of each is kept.
"""

import hashlib
import hmac
import os
import statistics
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from benchmarks import seed
from benchmarks.cases import Context

REPEATS = 5


def run(ctx: Context) -> dict:
    from vault.keys import key_ring

    count = ctx.sizes.crypto
    ring = key_ring()
    prefix = ctx.prefix()
    numbers = [seed.card_number(prefix, "9", n) for n in range(count)]
    aads = [f"token:1:{n:019d}".encode() for n in range(count)]
    encrypt, fingerprint = ring.encrypt, ring.fingerprint
    version, key = ring.keys[0]
    aes, mac_key, sha256 = AESGCM(key), ring.fingerprint_key, hashlib.sha256

    def product():
        for number, aad in zip(numbers, aads, strict=True):
            encrypt(number, associated_data=aad)
            fingerprint(number)

    def bare():
        for number, aad in zip(numbers, aads, strict=True):
            data = number.encode()
            aes.encrypt(os.urandom(12), data, aad)
            hmac.new(mac_key, data, sha256).hexdigest()

    # Same outputs, so the two sides do the same work.
    assert ring.fingerprint(numbers[0]) == hmac.new(mac_key, numbers[0].encode(), sha256).hexdigest()
    timings = {"key_ring": [], "bare": []}
    for _ in range(REPEATS):
        for name, loop in (("key_ring", product), ("bare", bare)):
            started = time.perf_counter()
            loop()
            timings[name].append((time.perf_counter() - started) / count * 1e6)
    key_ring_us, bare_us = (round(statistics.median(timings[n]), 2) for n in ("key_ring", "bare"))
    return {
        "status": "ok",
        "key_ring_us_per_card": key_ring_us,
        "bare_us_per_card": bare_us,
        "ratio": round(key_ring_us / bare_us, 3),
        "target": "reported (no target)",
        "met": None,
        "cards": count,
        "repeats": REPEATS,
    }
