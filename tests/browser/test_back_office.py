"""The back office in a real browser: finding a token, resolving its conflict, the dashboard's charts.

bea is back-office staff (see conftest); alice is the merchant whose tokens she looks after. Sherlock's Visa ends in
1111; alice also holds a Mastercard ending in 4444, which a search for 1111 must not bring up.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import confirm, field, log_in, open_list, run_action, success_message
from tests.conftest import MASTERCARD, VISA
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

    page.locator(".field-pending_conflict a[href*='/tokenconflict/']").click()
    run_action(page, "apply", sherlock.token_id)
    expect(page.locator("#content")).to_contain_text(sherlock.token_id)  # the confirmation names what it applies
    confirm(page)
    expect(success_message(page)).to_contain_text("Applied 1 conflict")

    page.goto(token_page)
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
