"""The key ring: encryption bound to row and merchant, HMAC fingerprints, rotation that can be interrupted."""

import base64
import hashlib
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from tests.conftest import MASTERCARD, VISA, card_request, path_of
from vault import services
from vault.crypto import DecryptionFailed, key_ring, parse_key_ring
from vault.models import AuditLog, Token


def b64key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def a_card(number=VISA):
    return services.Card(number=number, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)


def test_the_card_number_is_stored_only_as_ciphertext_under_the_newest_key(alice):
    token = services.card_tokenize(merchant=alice, card=a_card()).token
    token.refresh_from_db()
    assert VISA.encode() not in bytes(token.pan_ciphertext)
    assert token.key_version == key_ring().newest_version
    assert len(bytes(token.pan_ciphertext)) == 12 + len(VISA) + 16  # nonce, ciphertext, GCM tag


def test_the_fingerprint_is_a_keyed_hmac_not_a_plain_hash(alice):
    token = services.card_tokenize(merchant=alice, card=a_card()).token
    assert token.fingerprint != hashlib.sha256(VISA.encode()).hexdigest()
    assert token.fingerprint == key_ring().fingerprint(VISA)
    assert key_ring().fingerprint(VISA) != key_ring().fingerprint(MASTERCARD)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(alice, bob):
    ring = key_ring()
    mine = services.card_tokenize(merchant=alice, card=a_card()).token
    other_row = services.card_tokenize(merchant=alice, card=a_card(MASTERCARD)).token
    bobs = services.card_tokenize(merchant=bob, card=a_card(MASTERCARD)).token
    for target in (other_row, bobs):
        with pytest.raises(DecryptionFailed):
            ring.decrypt(mine.key_version, mine.pan_ciphertext, associated_data=target.associated_data())
    assert ring.decrypt(mine.key_version, mine.pan_ciphertext, associated_data=mine.associated_data()) == VISA


def test_numbers_encrypted_together_decrypt_each_under_its_own_row_and_never_share_a_nonce():
    # The import encrypts a batch at once, with one read of random bytes for every nonce.
    ring = key_ring()
    rows = [(VISA, b"token:1:A"), (MASTERCARD, b"token:1:B"), (VISA, b"token:2:A")]

    version, blobs = ring.encrypt_many(rows)

    assert version == ring.newest_version
    assert [ring.decrypt(version, blob, associated_data=aad) for blob, (_, aad) in zip(blobs, rows)] == [
        VISA, MASTERCARD, VISA]
    assert len({blob[:12] for blob in blobs}) == 3 and blobs[0] != blobs[2]
    with pytest.raises(DecryptionFailed):
        ring.decrypt(version, blobs[0], associated_data=b"token:1:B")


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("", "holds no key"),
        ("1:not-base64!", "not valid base64"),
        (f"1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"1:{b64key(1)},2:{b64key(2)}", "newest"),
        (f"1:{b64key(1)},1:{b64key(2)}", "repeats"),
        (b64key(1), "<version>:<base64 key>"),
    ],
)
def test_a_malformed_key_ring_is_refused_with_a_reason(spec, complaint):
    with pytest.raises(ImproperlyConfigured, match=complaint):
        parse_key_ring(spec)


def test_rotation_re_encrypts_every_card_and_the_old_key_can_then_leave_the_ring(settings, carol_api, alice):
    settings.VAULT_KEYS = f"1:{b64key(1)}"
    hrefs = []
    for number in (VISA, MASTERCARD):
        response = carol_api.post("/tokens", card_request(cardNumber=number), format="json")
        hrefs.append(path_of(response.json()["tokenPaymentInstrument"]["href"]))
    assert set(Token.objects.values_list("key_version", flat=True)) == {1}

    settings.VAULT_KEYS = f"2:{b64key(2)},1:{b64key(1)}"
    out = StringIO()
    call_command("rotate_keys", stdout=out, stderr=StringIO())
    assert "Rotated 2 value(s); 0 left" in out.getvalue()
    assert set(Token.objects.values_list("key_version", flat=True)) == {2}
    assert AuditLog.objects.filter(action="keys.rotate.finish", detail__rows=2).exists()

    settings.VAULT_KEYS = f"2:{b64key(2)}"
    numbers = [carol_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] for href in hrefs]
    assert numbers == [VISA, MASTERCARD]


def test_an_interrupted_rotation_finishes_on_rerun_without_losing_a_card(settings, alice):
    settings.VAULT_KEYS = f"1:{b64key(1)}"
    numbers = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"]
    tokens = [services.card_tokenize(merchant=alice, card=a_card(n)).token for n in numbers]

    settings.VAULT_KEYS = f"2:{b64key(2)},1:{b64key(1)}"

    def crash_after_first_batch(count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        services.keys_rotate(batch_size=2, on_batch=crash_after_first_batch)
    versions = sorted(Token.objects.values_list("key_version", flat=True))
    assert versions == [1, 1, 1, 2, 2]

    assert services.keys_rotate(batch_size=2) == 3
    settings.VAULT_KEYS = f"2:{b64key(2)}"
    ring = key_ring()
    for token, number in zip(tokens, numbers, strict=True):
        token.refresh_from_db()
        assert ring.decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data()) == number


def test_rotation_also_re_encrypts_network_token_numbers(settings, alice):
    from networks import services as network_services
    from networks import tsp
    from networks.models import NetworkToken

    settings.VAULT_KEYS = f"1:{b64key(1)}"
    origin = network_services.Origin(merchant=alice, correlation_id="rotation")
    token = network_services.network_token_provision(origin=origin, card=tsp.CardData(MASTERCARD, 5, 2035))
    number = key_ring().decrypt(1, token.dpan_ciphertext, associated_data=token.associated_data())

    settings.VAULT_KEYS = f"2:{b64key(2)},1:{b64key(1)}"
    services.keys_rotate()
    settings.VAULT_KEYS = f"2:{b64key(2)}"

    token = NetworkToken.objects.get(pk=token.pk)
    assert token.key_version == 2
    assert key_ring().decrypt(2, token.dpan_ciphertext, associated_data=token.associated_data()) == number
