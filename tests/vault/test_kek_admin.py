"""Key custody in the back office: superusers see the key versions (state, created, values under each, check value,
KEK) and never their material, and start a new DEK, re-encrypt to it and re-wrap under a new KEK, each through a
confirmation page and audited; other staff see nothing of it.

admin_client is pytest-django's superuser ``admin`` signed in with both factors; clerk is back-office staff holding
every view permission of the vault; alice is a merchant whose cards are under the keys.
"""

import base64

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from config.settings.secrets import new_key
from core.audit import SYSTEM
from core.models import AuditLog
from tests.conftest import MASTERCARD, VISA, logged_in
from vault import keys
from vault.kek import kek_provider
from vault.models import DataKey, Token

CHANGELIST = "admin:vault_datakey_changelist"


def change_url(key: DataKey) -> str:
    return reverse("admin:vault_datakey_change", args=[key.pk])


def action_url(key: DataKey, name: str) -> str:
    return reverse("admin:vault_datakey_object_action", args=[key.pk, name])


def material(key: bytes) -> list[str]:
    return [key.hex(), base64.b64encode(key).decode(), key.hex()[:16]]


@pytest.fixture
def cards(tokenize):
    """alice's two cards, under DEK 1."""
    for number in (VISA, MASTERCARD):
        assert tokenize(cardNumber=number).status_code == 201


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.6.1.1")
def test_the_keys_page_shows_versions_states_counts_and_check_values_and_no_key_material(cards, admin_client, settings):
    keys.dek_create(actor=SYSTEM)

    page = admin_client.get(reverse(CHANGELIST)).content.decode()

    dek_1, dek_2 = DataKey.objects.get(version=1), DataKey.objects.get(version=2)
    for text in ("encryption key 2", "encryption key 1", "fingerprint key", "Active", "Decrypt-only"):
        assert text in page
    assert dek_1.check_value in page and dek_2.check_value in page and dek_1.kek_id in page
    assert ">2<" in page and ">0<" in page  # two cards under version 1, none yet under 2
    ring = keys.key_ring()
    secrets = [*dict(ring.keys).values(), ring.fingerprint_key, base64.b64decode(settings.VAULT_KEK)]
    for key in secrets:
        assert not any(form in page for form in material(key))
    change = admin_client.get(change_url(dek_1)).content.decode()
    assert "Re-encrypt to the current DEK" in change and "Start a new DEK now" not in change
    assert bytes(dek_1.wrapped_key).hex() not in change


def test_a_superuser_starts_a_new_dek_through_its_confirmation_page_and_it_is_audited(cards, admin_client):
    active = DataKey.objects.get(version=1)

    confirm = admin_client.get(action_url(active, "start_new_dek"))
    assert confirm.status_code == 200 and "Start a new data encryption key" in confirm.content.decode()
    assert not DataKey.objects.filter(version=2).exists()  # asked, not done yet

    done = admin_client.post(action_url(active, "start_new_dek"), {"action": "start_new_dek", "post": "yes"})

    assert done.status_code == 302
    assert keys.key_ring().active_version == 2
    assert AuditLog.objects.filter(action="keys.dek.create", actor="admin:admin", detail__version=2).exists()


@pytest.mark.pci("3.7.4")
def test_a_superuser_re_encrypts_the_cards_to_the_current_dek_and_the_old_one_retires(cards, admin_client):
    keys.dek_create(actor=SYSTEM)
    old = DataKey.objects.get(version=1)
    confirm = admin_client.get(action_url(old, "reencrypt")).content.decode()
    assert "2 value(s) under it" in confirm

    admin_client.post(action_url(old, "reencrypt"), {"action": "reencrypt", "post": "yes"})

    assert set(Token.objects.values_list("key_version", flat=True)) == {2}
    old.refresh_from_db()
    assert old.retired_at is not None
    assert AuditLog.objects.filter(action="keys.rotate.finish", actor="admin:admin", detail__rows=2).exists()
    page = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Retired" in page


def test_a_superuser_re_wraps_the_keys_under_a_new_kek(cards, admin_client, settings):
    settings.VAULT_KEK_PREVIOUS, settings.VAULT_KEK = settings.VAULT_KEK, new_key()
    key = DataKey.objects.get(purpose="fingerprint")
    assert "Re-wrap under the current KEK" in admin_client.get(change_url(key)).content.decode()

    admin_client.post(action_url(key, "rewrap"), {"action": "rewrap", "post": "yes"})

    current = kek_provider().current_kek_id()
    assert set(DataKey.objects.values_list("kek_id", flat=True)) == {current}
    assert AuditLog.objects.filter(action="keys.kek.rotate", actor="admin:admin", detail__keys=2).exists()
    assert "Re-wrap under the current KEK" not in admin_client.get(change_url(key)).content.decode()


@pytest.mark.pci("3.6.1")
@pytest.mark.pci("3.6.1.3")
def test_staff_who_are_not_superusers_see_nothing_of_the_keys_and_cannot_act_on_them(cards, clerk_user):
    clerk_user.user_permissions.add(*Permission.objects.filter(codename__endswith="_datakey"))
    clerk = logged_in(clerk_user)
    key = DataKey.objects.get(version=1)

    assert clerk.get(reverse(CHANGELIST)).status_code == 403
    assert clerk.get(change_url(key)).status_code in (302, 403)
    refused = clerk.post(action_url(key, "start_new_dek"), {"action": "start_new_dek", "post": "yes"})
    assert refused.status_code == 403
    assert "Keys" not in clerk.get(reverse("admin:index")).content.decode()
    assert not DataKey.objects.filter(version=2).exists()
    assert not AuditLog.objects.filter(action__startswith="keys.").exists()
