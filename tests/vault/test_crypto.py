"""The key ring: encryption bound to row and merchant, HMAC fingerprints, an active version apart from the versions
that decrypt, keys fetched the first time a value under them is read, and rotation to a new data encryption key
(DEK) that can be interrupted and retires what it emptied.

alice and bob are merchants (tests/conftest.py); carol is alice's payment processor, whose key may detokenize.
"""

import base64
import hashlib
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from config.settings.secrets import new_key
from core.audit import SYSTEM
from core.models import AuditLog
from tests.conftest import AMEX, MASTERCARD, VISA, card_request, path_of
from vault import keys, services
from vault.crypto import DecryptionFailed, KeyRing, KeyVersionUnavailable, parse_key_ring
from vault.keys import key_ring
from vault.models import DataKey, Token


def b64key(byte: int) -> str:
    return base64.b64encode(bytes([byte]) * 32).decode()


def a_card(number=VISA):
    return services.Card(number=number, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)


def ring_of(*versions: int, active: int | None = None, fetch=None) -> KeyRing:
    """A ring holding ``versions``, each under the key bytes([version]) * 32."""
    return KeyRing(
        keys=[(v, bytes([v]) * 32) for v in versions],
        fingerprint_key=bytes([99]) * 32,
        active_version=active,
        fetch=fetch,
    )


def test_the_card_number_is_stored_only_as_ciphertext_under_the_active_key(alice):
    token = services.card_tokenize(merchant=alice, card=a_card()).token
    token.refresh_from_db()
    assert VISA.encode() not in bytes(token.pan_ciphertext)
    assert token.key_version == key_ring().active_version == 1
    assert len(bytes(token.pan_ciphertext)) == 12 + len(VISA) + 16  # nonce, ciphertext, GCM tag


@pytest.mark.pci("3.5.1.1")
@pytest.mark.pci("3.7.1")
def test_keys_are_made_of_32_random_bytes_and_a_weaker_one_is_refused(alice):
    made = [base64.b64decode(new_key()) for _ in range(64)]
    assert all(len(key) == 32 for key in made) and len(set(made)) == 64
    for weak in (base64.b64encode(bytes(16)).decode(), base64.b64encode(bytes(31)).decode(), "not-base64!"):
        with pytest.raises(ImproperlyConfigured):
            parse_key_ring(f"1:{weak}")
    # The keys the vault makes itself: a DEK and a fingerprint key of their own, 32 random bytes each.
    services.card_tokenize(merchant=alice, card=a_card())
    ring = key_ring()
    assert len(ring.keys[0][1]) == 32 and len(ring.fingerprint_key) == 32 and ring.keys[0][1] != ring.fingerprint_key


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
    ring = ring_of(2, 1, active=1)
    rows = [(VISA, b"token:1:A"), (MASTERCARD, b"token:1:B"), (VISA, b"token:2:A")]

    version, blobs = ring.encrypt_many(rows)

    assert version == 1
    assert [ring.decrypt(version, blob, associated_data=aad) for blob, (_, aad) in zip(blobs, rows, strict=True)] == [
        VISA,
        MASTERCARD,
        VISA,
    ]
    assert len({blob[:12] for blob in blobs}) == 3 and blobs[0] != blobs[2]
    with pytest.raises(DecryptionFailed):
        ring.decrypt(version, blobs[0], associated_data=b"token:1:B")


@pytest.mark.parametrize(
    "spec, complaint",
    [
        ("", "holds no key"),
        ("1:not-base64!", "not valid base64"),
        (f"1:{base64.b64encode(b'short').decode()}", "32 bytes"),
        (f"1:{b64key(1)},1:{b64key(2)}", "repeats"),
        (f"0:{b64key(1)}", "version 0 is not between 1 and 32767"),
        (b64key(1), "<version>:<base64 key>"),
    ],
)
def test_a_malformed_vault_keys_is_refused_with_a_reason(spec, complaint):
    # Read only to move an installation from before key custody under the KEK (migrate_keys_to_kek).
    with pytest.raises(ImproperlyConfigured, match=complaint):
        parse_key_ring(spec)


# ------------------------------------------------------------------------------------------------------------
# The active version, versions that only decrypt, versions fetched on first read
# ------------------------------------------------------------------------------------------------------------
def test_a_ring_encrypts_under_its_active_version_and_decrypts_under_every_version_it_holds():
    ring = ring_of(2, 1, active=1)
    version, blob = ring.encrypt(VISA, associated_data=b"token:1:A")
    assert version == 1

    ring.activate(2)
    version_2, blob_2 = ring.encrypt(MASTERCARD, associated_data=b"token:1:B")

    assert version_2 == 2
    assert ring.decrypt(1, blob, associated_data=b"token:1:A") == VISA
    assert ring.decrypt(2, blob_2, associated_data=b"token:1:B") == MASTERCARD


def test_the_active_version_is_the_highest_when_none_is_named_whatever_the_order_of_the_ring():
    assert ring_of(1, 3, 2).active_version == 3
    assert [v for v, _ in parse_key_ring(f"1:{b64key(1)},2:{b64key(2)}")] == [1, 2]
    with pytest.raises(ValueError, match="key version 4 is not in the ring"):
        ring_of(1).activate(4)


def test_a_version_the_ring_lacks_is_fetched_once_the_first_time_a_value_under_it_is_read():
    version, blob = ring_of(2, 1, active=2).encrypt(VISA, associated_data=b"token:1:A")
    fetched = []

    def fetch(wanted: int) -> bytes:
        fetched.append(wanted)
        return bytes([wanted]) * 32

    ring = ring_of(1, fetch=fetch)
    assert [ring.decrypt(version, blob, associated_data=b"token:1:A") for _ in range(3)] == [VISA] * 3
    assert fetched == [2] and ring.versions == [1, 2] and ring.active_version == 1

    with pytest.raises(KeyVersionUnavailable) as raised:  # and a ring that fetches nothing names the version
        ring_of(1).decrypt(version, blob, associated_data=b"token:1:A")
    assert raised.value.version == 2 and not isinstance(raised.value, DecryptionFailed)


def test_a_ciphertext_that_does_not_authenticate_under_a_version_the_ring_holds_stays_an_integrity_failure():
    version, blob = ring_of(1).encrypt(VISA, associated_data=b"token:1:A")
    other_key_1 = KeyRing(keys=[(1, bytes([7]) * 32)], fingerprint_key=bytes([99]) * 32)
    with pytest.raises(DecryptionFailed):
        other_key_1.decrypt(version, blob, associated_data=b"token:1:A")


def test_check_values_tell_keys_apart_and_hold_nothing_of_them():
    ring = ring_of(2, 1)
    values = {ring.check_value(1), ring.check_value(2), ring.fingerprint_check_value}
    assert len(values) == 3 and all(len(value) == 16 for value in values)
    assert ring_of(1).check_value(1) == ring.check_value(1)  # the same key, the same value, in any ring
    for _, key in ring.keys:
        assert key.hex()[:16] not in values and key.hex()[-16:] not in values


# ------------------------------------------------------------------------------------------------------------
# Rotation to a new DEK
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("3.7.4")
def test_rotation_to_a_new_dek_re_encrypts_every_card_and_retires_the_old_one(carol_api, alice):
    hrefs = []
    for number in (VISA, MASTERCARD):
        response = carol_api.post("/tokens", card_request(cardNumber=number), format="json")
        hrefs.append(path_of(response.json()["tokenPaymentInstrument"]["href"]))
    assert set(Token.objects.values_list("key_version", flat=True)) == {1}

    out = StringIO()
    call_command("rotate_keys", "--new-dek", stdout=out, stderr=StringIO())

    assert "Started data encryption key version 2" in out.getvalue()
    assert "Rotated 2 value(s); 0 left" in out.getvalue() and "Retired key version(s) 1" in out.getvalue()
    assert set(Token.objects.values_list("key_version", flat=True)) == {2}
    assert DataKey.objects.get(purpose="encryption", version=1).retired_at is not None
    assert AuditLog.objects.filter(action="keys.dek.create", actor="command:rotate_keys", detail__version=2).exists()
    assert AuditLog.objects.filter(action="keys.rotate.finish", detail__rows=2, detail__retired_versions=[1]).exists()
    numbers = [carol_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] for href in hrefs]
    assert numbers == [VISA, MASTERCARD]


def test_an_interrupted_rotation_finishes_on_rerun_without_losing_a_card(alice):
    numbers = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"]
    tokens = [services.card_tokenize(merchant=alice, card=a_card(n)).token for n in numbers]
    keys.dek_create(actor=SYSTEM)

    def crash_after_first_batch(count):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        keys.keys_rotate(batch_size=2, on_batch=crash_after_first_batch)
    assert sorted(Token.objects.values_list("key_version", flat=True)) == [1, 1, 1, 2, 2]
    assert AuditLog.objects.filter(action="keys.rotate.stop", detail__rows=2).exists()
    # Interrupted: version 1 still holds cards, and is not retired.
    assert DataKey.objects.get(purpose="encryption", version=1).retired_at is None

    assert keys.keys_rotate(batch_size=2).rotated == 3
    assert DataKey.objects.get(purpose="encryption", version=1).retired_at is not None
    ring = key_ring()
    for token, number in zip(tokens, numbers, strict=True):
        token.refresh_from_db()
        assert token.key_version == 2
        assert ring.decrypt(token.key_version, token.pan_ciphertext, associated_data=token.associated_data()) == number


def test_a_rotation_told_to_stop_ends_after_the_batch_and_the_next_run_goes_on(alice):
    tokens = [services.card_tokenize(merchant=alice, card=a_card(n)).token for n in (VISA, MASTERCARD, AMEX)]
    keys.dek_create(actor=SYSTEM)

    stopped = keys.keys_rotate(batch_size=2, should_stop=lambda: True)

    assert (stopped.rotated, stopped.finished) == (2, False)
    assert AuditLog.objects.filter(action="keys.rotate.stop", detail__rows=2).exists()
    assert keys.keys_rotate(batch_size=2).rotated == 1
    assert {token.key_version for token in Token.objects.filter(pk__in=[t.pk for t in tokens])} == {2}


def test_rotation_also_re_encrypts_network_token_numbers(alice):
    from networks import services as network_services
    from networks import tsp
    from networks.models import NetworkToken

    origin = network_services.Origin(merchant=alice, correlation_id="rotation")
    token = network_services.network_token_provision(origin=origin, card=tsp.CardData(MASTERCARD, 5, 2035))
    number = key_ring().decrypt(1, token.dpan_ciphertext, associated_data=token.associated_data())

    keys.keys_rotate(new_dek=True)

    token = NetworkToken.objects.get(pk=token.pk)
    assert token.key_version == 2
    assert key_ring().decrypt(2, token.dpan_ciphertext, associated_data=token.associated_data()) == number
