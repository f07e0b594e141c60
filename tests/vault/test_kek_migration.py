"""The move from ``VAULT_KEYS`` to key custody: one command (``migrate_keys_to_kek``) wraps the keys an installation
ran on under the KEK, with the versions and check values the data was written with, while the API serves; no
encrypted row changes, every card decrypts and every fingerprint stays what it was.

An installation from before key custody has only the check values of its keys stored (the previous release recorded
them as ``KeyCheck`` rows, in the same table): ``legacy_installation`` makes one, with its keys given to the process
as they were (``VAULT_KEYS``, ``VAULT_FINGERPRINT_KEY``). alice is a merchant, carol her payment processor.
"""

import base64
from io import StringIO

import pytest
from django.core import checks
from django.core.management import CommandError, call_command

from config.settings.secrets import new_key
from core.models import AuditLog
from notifications import services as notification_services
from notifications.models import WebhookEndpoint
from tests.conftest import AMEX, MASTERCARD, VISA, database_url, path_of
from tests.vault.test_key_custody import api_server, detokenized_number, manage_py, process_env, tokenize_on
from vault import selectors
from vault.crypto import check_value
from vault.kek import kek_provider
from vault.models import DataKey, Token


@pytest.fixture(autouse=True)
def checked_at_every_card_operation(settings):
    settings.VAULT_KEY_CHECK_SECONDS = 0


def legacy_installation(settings, *, versions=(1,), recorded=None, fingerprint_recorded=True) -> dict:
    """This process given ``VAULT_KEYS`` (a key per version, the highest active) and ``VAULT_FINGERPRINT_KEY``, and
    the database holding what the previous release stored of them: a check value per version of ``recorded``
    (default ``versions``; None for a version recorded blank, as migration 0005 did), and the fingerprint key's.
    Returns the keys, by version and "fingerprint"."""
    made = {version: new_key() for version in versions}
    made["fingerprint"] = new_key()
    settings.VAULT_KEYS = ",".join(f"{version}:{made[version]}" for version in versions)
    settings.VAULT_FINGERPRINT_KEY = made["fingerprint"]
    for version in versions if recorded is None else recorded:
        value = check_value(base64.b64decode(made[version])) if version in made else ""
        DataKey.objects.create(purpose="encryption", version=version, check_value=value)
    if fingerprint_recorded:
        DataKey.objects.create(purpose="fingerprint", check_value=check_value(base64.b64decode(made["fingerprint"])))
    return made


def snapshot() -> dict:
    return {
        token.pk: (bytes(token.pan_ciphertext), token.key_version, token.fingerprint) for token in Token.objects.all()
    }


def migrate() -> str:
    out = StringIO()
    call_command("migrate_keys_to_kek", stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.7.4")
def test_an_installation_on_vault_keys_moves_under_the_kek_with_every_card_decrypting_and_no_fingerprint_changed(
    settings, tokenize, carol_api, alice
):
    legacy_installation(settings)
    hrefs = {
        number: path_of(tokenize(cardNumber=number).json()["tokenPaymentInstrument"]["href"])
        for number in (VISA, MASTERCARD, AMEX)
    }
    endpoint = notification_services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hook")
    before = snapshot()
    assert {version for _, version, _ in before.values()} == {1}
    warnings = [c for c in checks.run_checks(databases=["default"]) if c.id == "vault.W001"]
    assert len(warnings) == 1 and "encryption key 1, fingerprint key not wrapped under the KEK yet" in warnings[0].msg

    out = migrate()

    kek = kek_provider().current_kek_id()
    assert "Wrapped under local: KEK" in out and "encryption key 1, fingerprint key" in out
    assert {(k.purpose, k.version, k.kek_id) for k in DataKey.objects.all()} == {
        ("encryption", 1, kek),
        ("fingerprint", None, kek),
    }
    assert snapshot() == before  # no encrypted row touched
    assert AuditLog.objects.filter(action="keys.migrate_to_kek", actor="command:migrate_keys_to_kek").count() == 1
    assert [c.id for c in checks.run_checks(databases=["default"]) if c.id.startswith("vault.")] == []

    # VAULT_KEYS and VAULT_FINGERPRINT_KEY leave the environment: a process with the KEK alone serves every card.
    settings.VAULT_KEYS = settings.VAULT_FINGERPRINT_KEY = ""
    for number, href in hrefs.items():
        assert carol_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] == number
        again = tokenize(cardNumber=number)
        assert again.status_code == 200 and path_of(again.json()["tokenPaymentInstrument"]["href"]) == href
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.secret
    assert migrate() == "Nothing to wrap: every stored key is wrapped under a KEK already.\n"
    assert AuditLog.objects.filter(action="keys.migrate_to_kek").count() == 1


def test_versions_recorded_before_their_check_values_were_are_wrapped_with_them(settings, alice, tokenize, carol_api):
    # Cards under versions 1 and 3; the check values recorded blank (migration 0005) and no fingerprint key's yet.
    made = legacy_installation(settings, versions=(1, 3), recorded=[1], fingerprint_recorded=False)
    settings.VAULT_KEYS = f"1:{made[1]}"
    old = path_of(tokenize(cardNumber=VISA).json()["tokenPaymentInstrument"]["href"])
    settings.VAULT_KEYS = f"3:{made[3]},1:{made[1]}"
    DataKey.objects.create(purpose="encryption", version=3, check_value="")
    new = path_of(tokenize(cardNumber=MASTERCARD).json()["tokenPaymentInstrument"]["href"])
    DataKey.objects.update(check_value="")
    assert sorted(Token.objects.values_list("key_version", flat=True)) == [1, 3]
    settings.VAULT_ACTIVE_KEY_VERSION = 3

    assert "encryption key 1, encryption key 3, fingerprint key" in migrate()

    assert {(k.version, k.check_value) for k in DataKey.objects.filter(purpose="encryption")} == {
        (1, check_value(base64.b64decode(made[1]))),
        (3, check_value(base64.b64decode(made[3]))),
    }
    settings.VAULT_KEYS, settings.VAULT_FINGERPRINT_KEY, settings.VAULT_ACTIVE_KEY_VERSION = "", "", None
    assert carol_api.post(f"{old}/detokenize").json()["paymentInstrument"]["cardNumber"] == VISA
    assert carol_api.post(f"{new}/detokenize").json()["paymentInstrument"]["cardNumber"] == MASTERCARD
    assert tokenize(cardNumber=VISA).status_code == 200
    assert Token.objects.get(token_id=tokenize(cardNumber=AMEX).json()["tokenId"]).key_version == 3


# Each a way the environment may not hold the keys the data was written with: what changes, and what is said.
REFUSALS = {
    "version-missing": (lambda s, made: setattr(s, "VAULT_KEYS", f"2:{new_key()}"), "key version 1 holds data"),
    "version-differs": (
        lambda s, made: setattr(s, "VAULT_KEYS", f"1:{new_key()}"),
        "key version 1 in VAULT_KEYS differs",
    ),
    "fingerprint-differs": (
        lambda s, made: setattr(s, "VAULT_FINGERPRINT_KEY", new_key()),
        "VAULT_FINGERPRINT_KEY differs",
    ),
    "fingerprint-missing": (
        lambda s, made: setattr(s, "VAULT_FINGERPRINT_KEY", ""),
        "VAULT_FINGERPRINT_KEY is not set",
    ),
    "rotation-unfinished": (lambda s, made: setattr(s, "VAULT_ACTIVE_KEY_VERSION", 1), "finish the rotation first"),
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_the_move_is_refused_naming_what_differs_and_wraps_nothing(db, settings, kind):
    made = legacy_installation(settings, versions=(1, 2))
    change, complaint = REFUSALS[kind]
    change(settings, made)

    with pytest.raises(CommandError, match=complaint) as refused:
        migrate()

    assert not DataKey.objects.filter(wrapped_key__isnull=False).exists()
    assert not AuditLog.objects.filter(action="keys.migrate_to_kek").exists()
    assert all(key not in str(refused.value) for key in made.values())


def test_a_process_on_the_kek_alone_before_the_move_refuses_card_operations_naming_the_command(settings, tokenize):
    legacy_installation(settings)
    settings.VAULT_KEYS = settings.VAULT_FINGERPRINT_KEY = ""

    refused = tokenize()

    assert refused.status_code == 503 and refused.json()["errorName"] == "keysNotReady"
    problems = selectors.key_ring_problems()
    assert len(problems) == 2 and all("run manage.py migrate_keys_to_kek" in problem for problem in problems)
    assert not Token.objects.exists() and not DataKey.objects.filter(wrapped_key__isnull=False).exists()


@pytest.mark.django_db(transaction=True)
def test_processes_still_on_vault_keys_serve_on_while_the_keys_move_and_after(settings, alice, tmp_path):
    from merchants import services as merchant_services

    _, carol_key = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="p")
    made = legacy_installation(settings)
    database = database_url()
    legacy_env = {
        **process_env(database=database),
        "VAULT_KEYS": f"1:{made[1]}",
        "VAULT_FINGERPRINT_KEY": made["fingerprint"],
    }
    with api_server("on-vault-keys", legacy_env, tmp_path) as serving:
        carol = serving.session(carol_key)
        before = path_of(tokenize_on(carol, serving, VISA).json()["tokenPaymentInstrument"]["href"])

        moved = manage_py("migrate_keys_to_kek", env=legacy_env)
        assert moved.returncode == 0 and "encryption key 1, fingerprint key" in moved.stdout, moved.stderr[-2000:]

        # The server started on VAULT_KEYS goes on, now reading the same keys wrapped.
        after = path_of(tokenize_on(carol, serving, MASTERCARD).json()["tokenPaymentInstrument"]["href"])
        assert tokenize_on(carol, serving, VISA).status_code == 200
        assert detokenized_number(carol, serving, before) == VISA
        assert "Traceback" not in serving.log.read_text()

    # Restarted with the KEK alone (the test run's environment holds no VAULT_KEYS).
    kek_alone = process_env(database=database)
    with api_server("on-the-kek", kek_alone, tmp_path) as restarted:
        assert detokenized_number(carol, restarted, before) == VISA
        assert detokenized_number(carol, restarted, after) == MASTERCARD
        assert tokenize_on(carol, restarted, MASTERCARD).status_code == 200
