"""A new key encryption key: ``rotate_kek`` re-wraps every stored key under it, touching no card, and the old one may
then go; and the database, read as a thief with a copy of it would read it, holds no key in clear.

alice is a merchant tokenizing cards and receiving webhooks; carol is her payment processor, who detokenizes. A
settings change stands for the processes restarted with the new KEK settings.
"""

import base64
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from config.settings.secrets import new_key
from core.models import AuditLog
from networks import services as network_services
from networks import tsp
from notifications import services as notification_services
from notifications.models import WebhookEndpoint
from tests.conftest import AMEX, MASTERCARD, VISA, path_of
from vault import keys
from vault.kek import kek_provider
from vault.kek.local import kek_id_of
from vault.models import DataKey, Token


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def stored_cards(tokenize, numbers) -> dict[str, str]:
    return {number: path_of(tokenize(cardNumber=number).json()["tokenPaymentInstrument"]["href"]) for number in numbers}


def untouched(tokens) -> dict:
    return {t.pk: (bytes(t.pan_ciphertext), t.key_version, t.fingerprint) for t in tokens}


def rotate_kek() -> str:
    out = StringIO()
    call_command("rotate_kek", stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.7.4")
def test_a_kek_rotation_leaves_every_card_decryptable_and_every_fingerprint_unchanged(
    settings, tokenize, carol_api, alice
):
    cards = stored_cards(tokenize, (VISA, MASTERCARD))
    keys.keys_rotate(new_dek=True)  # DEK 2 holds the cards; DEK 1, retired, is kept with its backups
    cards |= stored_cards(tokenize, (AMEX,))
    endpoint = notification_services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hook")
    before, rows_before = untouched(Token.objects.all()), {k.pk: k for k in DataKey.objects.all()}
    old_kek, new_kek = settings.VAULT_KEK, new_key()

    settings.VAULT_KEK, settings.VAULT_KEK_PREVIOUS = new_kek, old_kek
    out = rotate_kek()

    old_id, new_id = kek_id_of(base64.b64decode(old_kek)), kek_id_of(base64.b64decode(new_kek))
    assert f"Re-wrapped 3 key(s) under {new_id}" in out
    assert f"No key is wrapped under {old_id} any more" in out and "remove it from VAULT_KEK_PREVIOUS" in out
    for row in DataKey.objects.all():
        was = rows_before[row.pk]
        assert row.kek_id == new_id and bytes(row.wrapped_key) != bytes(was.wrapped_key)
        assert (row.purpose, row.version, row.check_value, row.retired_at) == (
            was.purpose,
            was.version,
            was.check_value,
            was.retired_at,
        )
    assert untouched(Token.objects.all()) == before
    assert AuditLog.objects.filter(
        action="keys.kek.rotate",
        actor="command:rotate_kek",
        detail={"to_kek": new_id, "from_keks": [old_id], "keys": 3},
    ).exists()

    # The old KEK goes: processes restarted with the new one alone read every card, and know every card again.
    settings.VAULT_KEK_PREVIOUS = ""
    for number, href in cards.items():
        assert carol_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] == number
        again = tokenize(cardNumber=number)
        assert again.status_code == 200 and path_of(again.json()["tokenPaymentInstrument"]["href"]) == href
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret
    assert "Re-wrapped 0 key(s)" in rotate_kek()  # idempotent


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.7.6")
def test_a_kek_of_components_is_rotated_to_new_components_without_anyone_assembling_the_old_one(
    settings, tokenize, carol_api
):
    old_parts = [new_key(), new_key()]
    settings.VAULT_KEK, settings.VAULT_KEK_COMPONENTS = "", ",".join(old_parts)
    cards = stored_cards(tokenize, (VISA, MASTERCARD))

    # Three new custodians enter their components; the old two enter theirs once more, for the rotation.
    settings.VAULT_KEK_COMPONENTS = ",".join([new_key(), new_key(), new_key()])
    settings.VAULT_KEK_PREVIOUS = ":".join(old_parts)
    assert "Re-wrapped 2 key(s)" in rotate_kek()

    settings.VAULT_KEK_PREVIOUS = ""
    assert {kek_provider().current_kek_id()} == set(DataKey.objects.values_list("kek_id", flat=True))
    for number, href in cards.items():
        assert carol_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] == number


def test_rotate_kek_without_the_old_kek_re_wraps_nothing_and_says_what_is_missing(settings, tokenize):
    tokenize()
    before = {k.pk: (k.kek_id, bytes(k.wrapped_key)) for k in DataKey.objects.all()}
    settings.VAULT_KEK = new_key()  # VAULT_KEK_PREVIOUS forgotten

    with pytest.raises(CommandError, match="is not held by this process.*run rotate_kek again once it is fixed"):
        rotate_kek()

    assert {k.pk: (k.kek_id, bytes(k.wrapped_key)) for k in DataKey.objects.all()} == before
    assert not AuditLog.objects.filter(action="keys.kek.rotate").exists()


# ------------------------------------------------------------------------------------------------------------
# The database holds no key in clear
# ------------------------------------------------------------------------------------------------------------
def every_stored_byte() -> bytes:
    """Every column of every row of every table, as bytes: what a copy of the database holds."""
    stored = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                for value in row:
                    stored.append(bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode())
    return b"\x00".join(stored)


@pytest.mark.pci("3.5.1")
@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.6.1.2")
@pytest.mark.pci("3.6.1.4")
@pytest.mark.pci("3.7.3")
def test_the_database_holds_no_key_in_clear_only_keys_wrapped_by_the_kek(settings, tokenize, alice):
    stored_cards(tokenize, (VISA, MASTERCARD))
    keys.keys_rotate(new_dek=True)
    origin = network_services.Origin(merchant=alice, correlation_id="leak")
    network_services.network_token_provision(origin=origin, card=tsp.CardData(MASTERCARD, 5, 2035))
    notification_services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hook")
    settings.VAULT_KEK_PREVIOUS, settings.VAULT_KEK = settings.VAULT_KEK, new_key()
    keys.kek_rotate()
    unwrapped = [kek_provider().unwrap(k.kek_id, bytes(k.wrapped_key)) for k in DataKey.objects.all()]
    assert len(unwrapped) == 3  # DEK 1 (retired), DEK 2, the fingerprint key
    secrets = unwrapped + [base64.b64decode(settings.VAULT_KEK), base64.b64decode(settings.VAULT_KEK_PREVIOUS)]

    database = every_stored_byte()

    assert len(database) > 1000 and all(bytes(k.wrapped_key) in database for k in DataKey.objects.all())
    for key in secrets:
        for form in (key, key.hex().encode(), b64(key).encode(), base64.urlsafe_b64encode(key).rstrip(b"=")):
            assert form not in database
