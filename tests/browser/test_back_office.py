"""The back office in a real browser: finding a token, resolving its conflict, the dashboard's charts, and the token
page a clerk answers questions from.

bea is back-office staff (see conftest); alice is the merchant whose tokens she looks after, carol alice's payment
processor (the key that may detokenize). Sherlock's Visa ends in 1111; alice also holds a Mastercard ending in 4444,
which a search for 1111 must not bring up.
"""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from networks import services as network_services
from networks.services.provisioning import card_from_vault
from notifications import services as notification_services
from tests.browser.conftest import confirm, field, log_in, open_list, screens, success_message
from tests.conftest import MASTERCARD, VISA, path_of
from vault import services
from vault.models import Token

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def card(number: str = VISA, **changes) -> services.Card:
    fields = {"number": number, "holder_name": "Sherlock Holmes", "expiry_month": 5, "expiry_year": 2035, **changes}
    return services.Card(**fields)


@pytest.fixture
def sherlock(alice) -> Token:
    """alice's token for Sherlock's Visa, with a pending conflict: the same card sent again as John Watson's."""
    token = services.card_tokenize(merchant=alice, card=card(), namespace="baker-street").token
    services.card_tokenize(merchant=alice, card=card(number=MASTERCARD), namespace="baker-street")
    resent = services.card_tokenize(merchant=alice, card=card(holder_name="John Watson"), namespace="baker-street")
    assert resent.outcome == services.Outcome.CONFLICT
    return token


def test_back_office_finds_a_token_by_its_last_four_and_applies_its_pending_conflict(page, bea, sherlock):
    log_in(page, bea)

    open_list(page, "vault", "token")
    page.locator("#searchbar").fill("1111")
    page.locator("#searchbar").press("Enter")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("4444********1111")
    page.get_by_role("link", name=sherlock.token_id).click()

    # The pending conflict, side by side with the stored data: stored on the left, requested on the right.
    holder = page.locator("table.vault-conflict tr").filter(has_text="Card holder name").locator("td")
    expect(holder).to_have_text(["Sherlock Holmes", "John Watson"])
    stored, requested = holder.nth(0).bounding_box(), holder.nth(1).bounding_box()
    assert abs(stored["y"] - requested["y"]) < 1 and requested["x"] > stored["x"] + stored["width"] - 1
    expect(field(page, "card_holder_name")).to_have_text("Sherlock Holmes")
    token_page = page.url
    assert VISA not in page.content()

    page.locator(".field-pending_conflict a[href*='/tokenconflict/']").click()  # the conflict's own page
    page.locator("#object-action-apply").click()
    expect(page.locator("#content")).to_contain_text(sherlock.token_id)  # the confirmation names what it applies
    confirm(page)
    expect(success_message(page)).to_contain_text("Applied 1 conflict")

    expect(page).to_have_url(token_page.split("?")[0])  # the conflict is gone: its token's page shows the outcome
    expect(field(page, "card_holder_name")).to_have_text("John Watson")
    expect(field(page, "pending_conflict")).to_have_text("No pending conflict.")


def test_the_dashboard_draws_its_charts(page, bea, alice):
    # Tokens on two days of the last 30: today's three and two from three days ago.
    numbers = ["4111111111111111", "5555555555554444", "378282246310005", "6011111111111117", "3530111333300000"]
    tokens = [services.card_tokenize(merchant=alice, card=card(number=number)).token for number in numbers]
    Token.objects.filter(pk__in=[t.pk for t in tokens[3:]]).update(created_at=timezone.now() - timedelta(days=3))
    log_in(page, bea)

    page.locator("#content a[href='/admin/dashboard/']").first.click()  # linked from the admin index

    chart = page.locator("svg#chart-tokens-per-day")
    expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box["width"] > 0 and box["height"] > 0
    bars = [bar.bounding_box() for bar in chart.locator(".bar").all()]
    drawn = [bar for bar in bars if bar and bar["width"] > 0 and bar["height"] > 0]
    assert len(drawn) >= 2, f"bars of tokens per day: {bars}"  # today and three days ago at least
    for other in page.locator("svg[id^='chart-']").all():
        other_box = other.bounding_box()
        assert other_box and other_box["width"] > 0 and other_box["height"] > 0, other.get_attribute("id")


# ------------------------------------------------------------------------------------------------------------
# The token page: who did what, its conflict, its search
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def detokenized(alice, tokenize, carol_api) -> Token:
    """Sherlock's Visa tokenized through the API, then detokenized once by carol, alice's payment processor."""
    created = tokenize().json()
    assert carol_api.post(f"{path_of(created['tokenPaymentInstrument']['href'])}/detokenize").status_code == 200
    return Token.objects.get(token_id=created["tokenId"])


def test_a_clerk_answers_who_detokenized_a_token_from_its_page(page, bea, alice, detokenized):
    processor = alice.api_keys.get(name="processor")
    log_in(page, bea)
    open_list(page, "vault", "token")
    page.locator("#searchbar").fill(detokenized.token_id[:6])
    page.locator("#searchbar").press("Enter")
    page.get_by_role("link", name=detokenized.token_id).click()

    page.locator("#activity-link").click()

    expect(page).to_have_url(re.compile(r"#activity$"))
    row = page.locator("#activity tbody tr").filter(has_text="Detokenized")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(f"key {processor.prefix}…")
    expect(row).to_contain_text(alice.name[:10])
    expect(row).to_contain_text("Success")
    assert VISA not in page.content()


def test_a_conflict_is_resolved_from_its_own_page_in_three_clicks(page, bea, sherlock):
    log_in(page, bea, next=f"/admin/vault/token/{sherlock.pk}/change/")
    clicks = 0

    page.locator("#pending-conflict").click()
    clicks += 1
    expect(page.locator("table.vault-conflict")).to_contain_text("John Watson")
    page.locator("#object-action-apply").click()
    clicks += 1
    expect(page.locator("#content")).to_contain_text(sherlock.token_id)
    confirm(page)
    clicks += 1

    assert clicks <= 3
    expect(success_message(page)).to_have_text("Applied 1 conflict.")
    expect(field(page, "card_holder_name")).to_have_text("John Watson")  # back on the token's page
    expect(page.locator("#pending-conflict")).to_have_count(0)


def test_a_masked_number_as_the_pages_show_it_finds_its_token(page, bea, sherlock):
    log_in(page, bea)
    open_list(page, "vault", "token")

    page.locator("#searchbar").fill("4444 **** **** 1111")
    page.locator("#searchbar").press("Enter")

    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text(sherlock.token_id)
    page.locator("#searchbar").fill("4444********9999")
    page.locator("#searchbar").press("Enter")
    expect(page.locator("#empty-results")).to_contain_text("ending 9999")


def test_the_token_page_with_network_tokens_events_and_activity(page, bea, alice, detokenized):
    network_services.network_token_provision(
        origin=network_services.Origin(merchant=alice, correlation_id="tour-1", vault_token=detokenized),
        card=card_from_vault(detokenized),
        account_id="shopper-42",
    )
    notification_services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hooks")
    notification_services.event_emit(merchant=alice, type="token.updated", data={"tokenId": detokenized.token_id})
    notification_services.events_fan_out()
    token_page = f"/admin/vault/token/{detokenized.pk}/change/"
    log_in(page, bea, next=token_page)
    page.reload()  # a second view of bea's: the collapsed line counts them

    expect(page.locator("#network-tokens tbody tr")).to_have_count(1)
    # bea is back office, with nothing of the webhooks: the section says so in one line, and nothing of them.
    expect(page.locator("#events")).to_contain_text("needs a permission you do not have")
    expect(page.locator("#events tbody tr")).to_have_count(0)
    page.locator("#activity details.staff-views summary").click()
    expect(page.locator("#activity details.staff-views")).to_contain_text("staff bea")
    assert VISA not in page.content()
    screens(page, "token-page")
