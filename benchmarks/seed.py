"""Test cards and a fast way to fill the vault with them.

Cards are ``prefix + digit + eight-digit counter + Luhn digit``, the same rule as ``wrk/cards.lua``: the runner
stores the cards of digit 9, wrk sends new ones under its thread numbers (1-8) and repeats stored ones.

``tokens_copy`` writes tokens with PostgreSQL COPY, bypassing the API but not the vault's rules: each row has its
own token id and reference, the number encrypted by the key ring under its associated data, and the HMAC
fingerprint, so the API finds, matches and decrypts them like any other token. About 30x faster than the API.

Run as a module (``python -m benchmarks.seed``) to fill another database than the runner's: it prints the new
merchant's id and API key as JSON (and with ``--detokenize``, a key allowed to detokenize and a stored token's
reference, the path of its href).
"""

import argparse
import json
import os
from collections.abc import Iterator
from datetime import timedelta

HOLDER = "Bench Holder"
EXPIRY = (12, 2034)
STORED_DIGIT = "9"
ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


def check_digit(partial: str) -> str:
    total = 0
    for index, char in enumerate(reversed(partial)):
        digit = ord(char) - 48
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def card_number(prefix: str, digit: str, n: int) -> str:
    partial = f"{prefix}{digit}{n:08d}"
    return partial + check_digit(partial)


def _token_ids(count: int) -> Iterator[str]:
    """Random ids in the product's alphabet and length (os.urandom in bulk: secrets.choice per character is the
    slowest part of a row otherwise)."""
    raw = os.urandom(19 * count)
    for i in range(count):
        yield "".join(ALPHABET[b % 34] for b in raw[19 * i : 19 * i + 19])


def tokens_copy(*, merchant, numbers, count: int, batch: int = 50_000) -> int:
    """COPY ``count`` tokens of ``merchant``, for the card numbers ``numbers`` yields; returns how many."""
    import secrets

    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    from vault import cards
    from vault.keys import key_ring
    from vault.models import Token

    ring = key_ring()
    now = timezone.now()
    lifetime = timedelta(days=4 * 365 + 1) if settings.TOKENS_ENVIRONMENT == "live" else timedelta(days=7)
    expires = now + lifetime
    month, year = EXPIRY
    columns = (
        "merchant_id",
        "token_id",
        "reference",
        "description",
        "fingerprint",
        "pan_ciphertext",
        "key_version",
        "bin",
        "last_four",
        "pan_length",
        "brand",
        "card_holder_name",
        "expiry_month",
        "expiry_year",
        "expires_at",
        "created_at",
        "updated_at",
        "deleted_reason",
        "network_token_id",
    )
    numbers = iter(numbers)
    written = 0
    while written < count:
        size = min(batch, count - written)
        with transaction.atomic(), connection.cursor() as cursor:
            with cursor.connection.cursor().copy(
                f"COPY {Token._meta.db_table} ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                for token_id, number in zip(_token_ids(size), numbers, strict=False):
                    aad = f"token:{merchant.pk}:{token_id}".encode()
                    version, blob = ring.encrypt(number, associated_data=aad)
                    brand = cards.brand_of(number)
                    copy.write_row(
                        (
                            merchant.pk,
                            token_id,
                            secrets.token_urlsafe(24),
                            f"{brand.title()} card ending {number[-4:]}",
                            ring.fingerprint(number),
                            blob,
                            version,
                            number[:6],
                            number[-4:],
                            len(number),
                            brand,
                            HOLDER,
                            month,
                            year,
                            expires,
                            now,
                            now,
                            "",
                            "",
                        )
                    )
        written += size
    return written


def merchant_with_key(name: str):
    from merchants import services

    merchant, raw_key = services.merchant_create(name=name)
    return merchant, raw_key


def stored_cards(prefix: str, count: int) -> Iterator[str]:
    return (card_number(prefix, STORED_DIGIT, n) for n in range(count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--prefix", required=True, help="the first digits of every card (6 for 16-digit cards)")
    parser.add_argument("--merchant", default="Bench merchant")
    parser.add_argument(
        "--detokenize",
        action="store_true",
        help="also a key of scope tokens:detokenize, the merchant's card-data limit lifted (it would measure itself)",
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    from merchants import services
    from vault.models import Token

    merchant, raw_key = merchant_with_key(args.merchant)
    tokens_copy(merchant=merchant, numbers=stored_cards(args.prefix, args.tokens), count=args.tokens)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE vault_token")
    seeded = {"merchant_id": merchant.pk, "api_key": raw_key}
    if args.detokenize:
        merchant.card_data_rate_limit = "9999/second"
        merchant.save(update_fields=["card_data_rate_limit"])
        _, seeded["detokenize_key"] = services.api_key_create(
            merchant=merchant, scopes=["tokens:detokenize"], name="bench detokenize"
        )
        seeded["token_reference"] = Token.objects.filter(merchant=merchant).values_list("reference", flat=True).first()
    print(json.dumps(seeded))


if __name__ == "__main__":
    main()
