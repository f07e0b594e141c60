"""Cards sent encrypted to ``POST /network-tokens``: JWE compact serialization, RSA-OAEP-256 + A256GCM.

The merchant's page (or its server) encrypts the card to the public key served at
``GET /network-tokens/encryption-key`` (a JWK set), so the card number crosses the merchant's systems only as
ciphertext. ``NETWORK_TOKENS_JWE_KEY`` holds the private half (base64 of a PEM RSA key); its ``kid`` is the key's
RFC 7638 thumbprint, so a new key gets a new ``kid`` by itself. The key is read at start-up (networks.apps), and
one that is not base64 of an unencrypted PEM RSA private key of at least 2048 bits stops it with one line naming
the variable.

Only ``alg: RSA-OAEP-256`` with ``enc: A256GCM`` is accepted, and no ``zip``: anything else (RSA1_5's padding
oracle, a compressed bomb, a downgraded cipher) is refused before any decryption. Every failure, whether
cryptographic or a plaintext of the wrong shape, is one 400 at ``$.encryptedData`` whose message names error
kinds only: never a byte of the plaintext, which is a card.
"""

import base64
import binascii
import functools

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from joserfc import jwe
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from rest_framework import serializers

from core.errors import BodyDoesNotMatchSchema, validation_errors
from core.http import MAX_DEPTH, NestedTooDeep, parse_json
from networks import tsp

ALGORITHM = "RSA-OAEP-256"
ENCRYPTION = "A256GCM"
MIN_KEY_BITS = 2048  # RSA-OAEP under 2048 bits is below every current recommendation (NIST SP 800-131A)
JSON_PATH = "$.encryptedData"
# Paths of the plaintext an error may name (a key we do not know could be a card number: never echoed).
KNOWN_PATHS = frozenset(
    {
        "$",
        "$.cardNumber",
        "$.cardExpiryDate",
        "$.cardExpiryDate.month",
        "$.cardExpiryDate.year",
        "$.cardHolderName",
    }
)


@functools.cache
def private_key() -> RSAKey:
    """The key of ``NETWORK_TOKENS_JWE_KEY``; ImproperlyConfigured, naming the variable, for a key it cannot be."""
    pem = _checked_pem(settings.NETWORK_TOKENS_JWE_KEY)
    key = RSAKey.import_key(pem, {"use": "enc", "alg": ALGORITHM})
    key.ensure_kid()
    return key


def _checked_pem(value: str) -> bytes:
    # Each refusal says what is wrong in one line, without the cause's traceback from deep in the key parser, and
    # without a byte of the value.
    try:
        pem = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured("NETWORK_TOKENS_JWE_KEY is not base64 (it holds base64 of a PEM RSA key)") from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ImproperlyConfigured("NETWORK_TOKENS_JWE_KEY is an encrypted PEM key: give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ImproperlyConfigured("NETWORK_TOKENS_JWE_KEY is not base64 of a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ImproperlyConfigured("NETWORK_TOKENS_JWE_KEY is not an RSA key (RSA-OAEP-256 needs one)")
    if key.key_size < MIN_KEY_BITS:
        raise ImproperlyConfigured(
            f"NETWORK_TOKENS_JWE_KEY is an RSA key of {key.key_size} bits: at least {MIN_KEY_BITS} are needed"
        )
    return pem


@receiver(setting_changed)
def _reset_private_key(*, setting, **kwargs):
    if setting == "NETWORK_TOKENS_JWE_KEY":
        private_key.cache_clear()


def public_jwks() -> dict:
    """The JWK set merchants encrypt cards to: the public half only."""
    public = private_key().as_dict(private=False)
    return {"keys": [{name: public[name] for name in ("kty", "use", "alg", "kid", "n", "e")}]}


def _refused(message: str) -> BodyDoesNotMatchSchema:
    return BodyDoesNotMatchSchema(
        validation_errors=[{"errorName": "fieldHasInvalidValue", "message": message, "jsonPath": JSON_PATH}]
    )


def decrypt_card(compact: str, *, shape: type[serializers.Serializer]) -> tsp.CardData:
    """The card inside a JWE compact string, validated by ``shape``, the serializer of a card sent in the body (one
    definition of the card's shape: the API's); raises a 400 otherwise."""

    try:
        plaintext = jwe.decrypt_compact(compact, private_key(), algorithms=[ALGORITHM, ENCRYPTION]).plaintext
    except (JoseError, ValueError, TypeError, KeyError):
        raise _refused(
            f"The encrypted data could not be decrypted: it must be a JWE compact serialization with alg "
            f"{ALGORITHM} and enc {ENCRYPTION}, encrypted to the key at /network-tokens/encryption-key"
        ) from None
    try:
        data = parse_json(plaintext)  # bounded like a body: json's parser recurses once a level
    except NestedTooDeep:
        raise _refused(f"The decrypted data nests arrays and objects more than {MAX_DEPTH} deep") from None
    except (ValueError, UnicodeError):
        raise _refused("The decrypted data is not JSON") from None
    card = shape(data=data)
    try:
        card.is_valid(raise_exception=True)
    except serializers.ValidationError as exc:
        raise _refused(f"The decrypted card does not match the expected schema: {_summary(exc.detail)}") from None
    value = card.validated_data
    return tsp.CardData(
        number=value["cardNumber"],
        expiry_month=value["cardExpiryDate"]["month"],
        expiry_year=value["cardExpiryDate"]["year"],
        holder_name=value.get("cardHolderName", ""),
    )


def _summary(detail) -> str:
    """Error names and the paths of known fields, e.g. ``panFailedLuhnCheck at $.cardNumber``."""
    parts = []
    for item in validation_errors(detail):
        path = item["jsonPath"]
        parts.append(f"{item['errorName']} at {path}" if path in KNOWN_PATHS else item["errorName"])
    return ", ".join(dict.fromkeys(parts))
