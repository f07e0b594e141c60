"""Merchants' API keys and network tokens in a real browser: a new merchant's key copied from its own page, a network
token suspended from its page's button.

ada is a superuser, the only staff who make API keys (vault 0002 gives no group their permissions); olive is an
operator (see conftest); alice is the merchant whose network token olive suspends.
"""

import re

import pytest
from playwright.sync_api import expect

from merchants.models import ApiKey, Merchant
from networks import services as network_services
from networks import tsp
from tests.browser.conftest import PASSWORD, confirm, field, log_in, screens, success_message
from tests.conftest import VISA, otp_device

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture
def ada(django_user_model):
    """A superuser with an authenticator app."""
    user = django_user_model.objects.create_superuser("ada", password=PASSWORD)
    otp_device(user)
    return user


def test_a_superuser_creates_a_merchant_with_chosen_scopes_and_copies_its_key(page, ada, live_server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    log_in(page, ada, next="/admin/merchants/merchant/add/")

    expect(page.locator("#content")).to_contain_text("Saving makes the merchant and one API key with these scopes")
    page.locator("#id_name").fill("Hudson's Teas")
    page.get_by_label("Webhooks (webhooks)").uncheck()
    page.get_by_label("Detokenize (full card numbers) (tokens:detokenize)").check()
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator("h1")).to_have_text("Copy your API key now")
    shown = page.locator(".api-key-value").inner_text()
    key = ApiKey.objects.get(key_hash=ApiKey.hash(shown))
    assert key.merchant.name == "Hudson's Teas"
    assert key.scopes == ["tokens", "tokens:detokenize", "network-tokens", "forwarding"]
    assert shown not in page.url

    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".api-key-copy")).to_have_text("Copied")
    expect(page.locator(".api-key-status")).to_contain_text("Copied to the clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == shown
    screens(page, "api-key-page")

    page.get_by_role("link", name="I have stored it").click()
    merchant = Merchant.objects.get(name="Hudson's Teas")
    expect(page).to_have_url(re.compile(rf"/admin/merchants/merchant/{merchant.pk}/change/$"))
    assert shown not in page.content()


def test_an_operator_suspends_a_network_token_from_its_page(page, olive, alice):
    token = network_services.network_token_provision(
        origin=network_services.Origin(merchant=alice, correlation_id="c-button"),
        card=tsp.CardData(VISA, 5, 2035),
        account_id="acct",
    )
    log_in(page, olive, next=f"/admin/networks/networktoken/{token.pk}/change/")
    expect(field(page, "current_status")).to_have_text("Active")
    expect(page.locator("#object-action-delete")).to_have_class(re.compile(r"\birreversible\b"))
    expect(page.locator("#object-action-resume")).to_have_count(0)  # an active token is not resumed

    page.locator("#object-action-suspend").click()
    expect(page.locator("#content table")).to_contain_text(token.token_id)  # the confirmation lists the token
    confirm(page)

    expect(success_message(page)).to_have_text("Suspended 1 network token.")
    expect(field(page, "current_status")).to_have_text("Suspended")
    expect(page.locator("#object-action-resume")).to_be_visible()
    expect(page.locator("#object-action-suspend")).to_have_count(0)
    screens(page, "network-token-page")
    token.refresh_from_db()
    assert token.status == token.SUSPENDED
