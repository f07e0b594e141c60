"""Merchants and API keys in the back office: a new key is shown once on a page of its own, with the scopes chosen for
it; keys are listed with readable scopes and revoked for good; a merchant's rate limits change after a confirmation.

admin_client is a superuser ("admin"): API keys belong to superusers alone (vault 0002 gives no group their
permissions). alice is a merchant with one key (the default scopes), bob another merchant.
"""

import logging
import re

import pytest
from django.contrib.messages import SUCCESS
from django.urls import reverse

from core.models import AuditLog
from merchants import services
from merchants.models import DEFAULT_SCOPES, ApiKey, Merchant
from tests.conftest import client_for

KEY_ON_PAGE = re.compile(r'<code class="api-key-value"[^>]*>(sk_[A-Za-z0-9_-]+)</code>')


def changelist(model: str) -> str:
    return reverse(f"admin:merchants_{model}_changelist")


def change_page(model: str, pk) -> str:
    return reverse(f"admin:merchants_{model}_change", args=[pk])


def object_action(model: str, pk, action: str) -> str:
    return reverse(f"admin:merchants_{model}_object_action", args=[pk, action])


def keys_on(response) -> list[str]:
    return KEY_ON_PAGE.findall(response.content.decode())


def shown_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def assert_shown_once(response, raw: str) -> None:
    """The raw key is on this page, which no cache keeps, and in no message, header or URL of it."""
    assert response.status_code == 200
    assert "admin/merchants/apikey/created.html" in [t.name for t in response.templates]
    assert "no-store" in response["Cache-Control"]
    assert all(raw not in message for message in shown_messages(response))
    assert all(raw not in value for _, value in response.items())
    assert raw not in response.wsgi_request.get_full_path()


def merchant_form(merchant: Merchant, **changes) -> dict:
    """The merchant's change form as the page posts it (its keys' read-only inline included)."""
    keys = list(merchant.api_keys.order_by("pk"))
    data = {
        "name": merchant.name,
        "is_active": "on" if merchant.is_active else "",
        "api_rate_limit": merchant.api_rate_limit,
        "card_data_rate_limit": merchant.card_data_rate_limit,
        "api_keys-TOTAL_FORMS": str(len(keys)),
        "api_keys-INITIAL_FORMS": str(len(keys)),
        "api_keys-MIN_NUM_FORMS": "0",
        "api_keys-MAX_NUM_FORMS": "0",
        "_save": "Save",
    }
    for index, key in enumerate(keys):
        data[f"api_keys-{index}-id"] = str(key.pk)
        data[f"api_keys-{index}-merchant"] = str(merchant.pk)
    return {name: value for name, value in {**data, **changes}.items() if value != ""}


# ------------------------------------------------------------------------------------------------------------
# A new key: shown once, on its own page
# ------------------------------------------------------------------------------------------------------------
def test_the_merchant_form_says_a_key_will_be_made_and_ticks_the_default_scopes(admin_client):
    body = admin_client.get(reverse("admin:merchants_merchant_add")).content.decode()

    assert "Saving makes the merchant and one API key with these scopes" in body
    for scope in ("tokens", "network-tokens", "webhooks"):
        assert re.search(rf'<input type="checkbox" name="scopes" value="{scope}"[^>]*checked', body)
    assert re.search(r'<input type="checkbox" name="scopes" value="tokens:detokenize"(?![^>]*checked)[^>]*>', body)
    assert "Detokenize (full card numbers)" in body and "Network tokens" in body


def test_adding_a_merchant_shows_its_key_once_with_the_scopes_chosen(admin_client, caplog):
    caplog.set_level(logging.DEBUG)

    response = admin_client.post(
        reverse("admin:merchants_merchant_add"), {"name": "Hudson's Teas", "scopes": ["tokens", "webhooks"]}
    )

    [raw] = keys_on(response)
    assert_shown_once(response, raw)
    key = ApiKey.objects.get(key_hash=ApiKey.hash(raw))
    assert key.merchant.name == "Hudson's Teas"
    assert key.scopes == ["tokens", "webhooks"]
    assert 'id="api-key-stored"' in response.content.decode()
    assert f'href="{change_page("merchant", key.merchant.pk)}"' in response.content.decode()
    assert client_for(raw).get("/tokens").status_code == 200
    # Never again, and nowhere else.
    assert raw not in admin_client.get(change_page("merchant", key.merchant.pk)).content.decode()
    assert raw not in admin_client.get(changelist("apikey")).content.decode()
    assert raw not in caplog.text
    assert not AuditLog.objects.filter(detail__icontains=raw[3:]).exists()
    created = AuditLog.objects.get(action="admin.merchant.create")
    assert created.detail == {"scopes": ["tokens", "webhooks"]}


def test_a_merchant_added_with_the_defaults_gets_the_default_scopes(admin_client):
    response = admin_client.post(reverse("admin:merchants_merchant_add"), {"name": "Baker's", "scopes": DEFAULT_SCOPES})

    [raw] = keys_on(response)
    assert ApiKey.objects.get(key_hash=ApiKey.hash(raw)).scopes == list(DEFAULT_SCOPES)


def test_a_key_made_on_the_key_form_is_shown_once_and_works(admin_client, alice):
    response = admin_client.post(
        reverse("admin:merchants_apikey_add"),
        {"merchant": alice.pk, "name": "checkout", "scopes": ["tokens", "tokens:detokenize"]},
    )

    [raw] = keys_on(response)
    assert_shown_once(response, raw)
    key = ApiKey.objects.get(merchant=alice, name="checkout")
    assert (key.key_hash, key.prefix, key.scopes) == (ApiKey.hash(raw), raw[:11], ["tokens", "tokens:detokenize"])
    assert client_for(raw).get("/tokens").status_code == 200
    assert raw not in admin_client.get(change_page("apikey", key.pk)).content.decode()
    assert AuditLog.objects.filter(action="admin.api_key.create", object_id=key.prefix).exists()


def test_create_api_key_makes_one_key_per_merchant_all_on_one_page(admin_client, alice, bob):
    form = admin_client.post(
        changelist("merchant"), {"action": "create_api_key", "_selected_action": [alice.pk, bob.pk], "index": "0"}
    )
    assert "admin/action_confirmation.html" in [t.name for t in form.templates]
    assert ApiKey.objects.count() == 2

    response = admin_client.post(
        changelist("merchant"),
        {
            "action": "create_api_key",
            "_selected_action": [alice.pk, bob.pk],
            "post": "yes",
            "name": "processor",
            "scopes": ["tokens", "tokens:detokenize"],
        },
    )

    raws = keys_on(response)
    assert len(raws) == 2
    for raw in raws:
        assert_shown_once(response, raw)
        key = ApiKey.objects.get(key_hash=ApiKey.hash(raw))
        assert (key.name, key.scopes) == ("processor", ["tokens", "tokens:detokenize"])
    assert {ApiKey.objects.get(key_hash=ApiKey.hash(raw)).merchant for raw in raws} == {alice, bob}
    assert shown_messages(response) == ["Created 2 API keys for Alice's Shop, Bob's Bikes."]


def test_the_merchant_page_has_a_create_api_key_button_leading_to_the_same_form(admin_client, alice):
    page = admin_client.get(change_page("merchant", alice.pk)).content.decode()
    url = object_action("merchant", alice.pk, "create_api_key")
    assert f'href="{url}" id="object-action-create_api_key"' in page

    form = admin_client.get(url)
    assert 'name="scopes"' in form.content.decode() and 'name="name"' in form.content.decode()

    response = admin_client.post(
        url, {"action": "create_api_key", "_selected_action": [alice.pk], "post": "yes", "name": "pos", "scopes": []}
    )

    assert response.status_code == 200  # a form error: a key needs a scope
    assert alice.api_keys.count() == 1
    response = admin_client.post(
        url,
        {
            "action": "create_api_key",
            "_selected_action": [alice.pk],
            "post": "yes",
            "name": "pos",
            "scopes": ["tokens"],
        },
    )
    [raw] = keys_on(response)
    assert ApiKey.objects.get(key_hash=ApiKey.hash(raw)).merchant == alice
    assert f'href="{change_page("merchant", alice.pk)}" class="button default" id="api-key-stored"' in (
        response.content.decode()
    )


# ------------------------------------------------------------------------------------------------------------
# Key lists and revoking
# ------------------------------------------------------------------------------------------------------------
def test_key_lists_show_status_readable_scopes_and_dates(admin_client, alice):
    services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="processor")

    listing = admin_client.get(changelist("apikey")).content.decode()
    merchant_page = admin_client.get(change_page("merchant", alice.pk)).content.decode()

    for body in (listing, merchant_page):
        assert '<span class="status status-good">Active</span>' in body
        assert "Card tokens Network tokens Webhooks" in body
        assert '<span class="status status-warning">Detokenize (full card numbers)</span>' in body
        assert '<span class="relative">(just now)</span>' in body
    assert "(s)" not in listing


def test_key_lists_show_when_each_key_was_last_used(admin_client, alice):
    services.api_key_create(merchant=alice, name="processor")
    assert client_for(alice.raw_key).get("/tokens").status_code == 200
    used = alice.api_keys.get(name="default")

    listing = admin_client.get(changelist("apikey")).content.decode()
    merchant_page = admin_client.get(change_page("merchant", alice.pk)).content.decode()

    for body in (listing, merchant_page):
        assert re.search(r">\s*Last used\s*<", body)
        rows = {name: row for row in body.split("<tr") for name in ("default", "processor") if f">{name}<" in row}
        moment = re.escape(f'<time datetime="{used.last_used_at.isoformat()}">')
        assert re.search(rf'field-last_used">\s*(<p>)?{moment}', rows["default"])
        assert re.search(r'field-last_used">\s*(<p>)?never<', rows["processor"])


def test_revoking_says_it_cannot_be_undone_and_looks_irreversible(admin_client, alice):
    key = alice.api_keys.get()
    page = admin_client.get(change_page("apikey", key.pk)).content.decode()
    url = object_action("apikey", key.pk, "revoke")
    assert f'href="{url}" id="object-action-revoke" class="object-action irreversible"' in page

    confirmation = admin_client.get(url)

    body = confirmation.content.decode()
    assert "admin/merchants/action_confirmation.html" in [t.name for t in confirmation.templates]
    assert "This cannot be undone" in body and key.prefix in body and 'value="Revoke for good"' in body
    assert "never used" in body
    assert client_for(alice.raw_key).get("/tokens").status_code == 200  # nothing before the confirmation

    done = admin_client.post(url, {"action": "revoke", "_selected_action": [key.pk], "post": "yes"}, follow=True)

    assert done.redirect_chain == [(change_page("apikey", key.pk), 302)]
    assert [str(m) for m in done.context["messages"] if m.level == SUCCESS] == ["Revoked 1 API key."]
    assert '<span class="status status-quiet">Revoked</span>' in done.content.decode()
    assert 'id="object-action-revoke"' not in done.content.decode()  # nothing left to revoke
    assert client_for(alice.raw_key).get("/tokens").status_code == 401
    assert AuditLog.objects.filter(action="admin.api_key.revoke", object_id=key.prefix).exists()


# ------------------------------------------------------------------------------------------------------------
# Rate limits, confirmed
# ------------------------------------------------------------------------------------------------------------
def test_a_new_rate_limit_is_saved_only_after_a_confirmation_showing_old_and_new(admin_client, alice, settings):
    default = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["api"]
    form = merchant_form(alice, api_rate_limit="5/second")

    confirmation = admin_client.post(change_page("merchant", alice.pk), form)

    assert confirmation.status_code == 200
    body = confirmation.content.decode()
    table = re.search(r'<table id="change-confirmation">.*?</table>', body, re.S).group()
    assert re.search(
        rf"Rate limit</th><td[^>]*>the default \(now {re.escape(default)}\)</td><td[^>]*>5/second</td>", table
    )
    alice.refresh_from_db()
    assert alice.api_rate_limit == ""
    assert not AuditLog.objects.filter(action="admin.merchant.change").exists()

    done = admin_client.post(change_page("merchant", alice.pk), {**form, "_confirmed": "yes"})

    assert done.status_code == 302
    alice.refresh_from_db()
    assert alice.api_rate_limit == "5/second"
    row = AuditLog.objects.get(action="admin.merchant.change")
    assert row.detail == {"api_rate_limit": "5/second"}


def test_a_rename_is_saved_without_a_confirmation(admin_client, alice):
    response = admin_client.post(change_page("merchant", alice.pk), merchant_form(alice, name="Alice's Bakery"))

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.name == "Alice's Bakery"


def test_a_wrong_rate_limit_shows_the_form_error_and_no_confirmation(admin_client, alice):
    response = admin_client.post(change_page("merchant", alice.pk), merchant_form(alice, api_rate_limit="lots"))

    assert "admin/change_confirmation.html" not in [t.name for t in response.templates]
    assert "Write a rate as" in response.content.decode()


@pytest.mark.parametrize("model", ["merchant", "apikey"])
def test_the_merchant_pages_stay_closed_to_operators(operator, alice, model):
    pk = alice.pk if model == "merchant" else alice.api_keys.get().pk

    assert operator.get(changelist(model)).status_code == 403
    assert operator.get(change_page(model, pk)).status_code == 403
    action = "create_api_key" if model == "merchant" else "revoke"
    assert operator.get(object_action(model, pk, action)).status_code == 403
