"""The dashboard in a real browser, as the operator who opens it to learn whether something is wrong now.

olive is an operator (see conftest); alice is the merchant, whose webhook receiver is a real HTTP server on loopback
that answers 500 until told otherwise. Deliveries are attempted through the services, as a worker would, so that the
test decides when each attempt happens.
"""

import re

import pytest
from playwright.sync_api import expect

from notifications import services as webhook_services
from notifications.models import Delivery
from tests.browser.conftest import log_in, screens
from tests.conftest import MASTERCARD, VISA
from tests.receiver import Reply
from vault import services as vault_services

pytestmark = [pytest.mark.django_db(transaction=True, serialized_rollback=True)]

DASHBOARD = "/admin/dashboard/"


def tokenize_and_attempt(merchant, number: str) -> Delivery:
    """A token.created webhook for a new card of ``merchant``, attempted until it succeeds or is dead-lettered."""
    card = vault_services.Card(number=number, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    vault_services.card_tokenize(merchant=merchant, card=card)
    webhook_services.events_fan_out()  # as the dispatcher does
    delivery = Delivery.objects.filter(status=Delivery.PENDING).get()
    while delivery.status == Delivery.PENDING:
        assert webhook_services.delivery_attempt(delivery_id=delivery.pk) is not None
        delivery.refresh_from_db()
    return delivery


def test_an_operator_sees_a_failing_endpoint_at_the_top_of_the_dashboard(page, olive, alice, receiver, settings):
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]  # two retries, due at once: the whole schedule runs in a blink
    webhook_services.endpoint_create(merchant=alice, url=receiver.url, description="checkout")
    receiver.always(Reply(200, body="thanks"))
    assert tokenize_and_attempt(alice, VISA).status == Delivery.SUCCEEDED
    receiver.always(Reply(500, body="down for maintenance"))  # then the merchant's server breaks
    assert tokenize_and_attempt(alice, MASTERCARD).status == Delivery.FAILED

    log_in(page, olive, next=DASHBOARD)

    expect(page.locator("#status-strip")).to_have_attribute("data-tone", "bad")
    expect(page.locator("#status-strip .bo-headline")).to_have_text("Something is wrong")
    expect(page.locator("#strip-endpoints-failing")).to_have_text("1 endpoint failing")
    expect(page.locator("#strip-dead-letters-24h")).to_have_text("1 dead letter in 24 h")
    row = page.locator("#endpoints-failing tbody tr").filter(has_text=receiver.url)
    expect(row).to_contain_text("Failing")
    expect(row).to_contain_text("HTTP 500")
    expect(row.get_by_role("link", name="Replay failed")).to_be_visible()
    expect(page.locator("#tile-endpoints-failing")).to_have_attribute("data-tone", "bad")
    screens(page, "dashboard")

    page.locator("#strip-endpoints-failing a").click()  # the list it counts
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator("#result_list tbody tr")).to_contain_text(receiver.url)


def test_the_refresh_button_updates_the_figures_without_reloading_the_page(page, olive, alice, receiver):
    webhook_services.endpoint_create(merchant=alice, url=receiver.url, description="checkout")
    log_in(page, olive, next=DASHBOARD)
    expect(page.locator("#strip-endpoints-failing")).to_have_text("0 endpoints failing")
    expect(page.locator("#status-strip .bo-headline")).to_have_text("All clear")
    page.evaluate("window.notReloaded = true")  # gone if the page loads again

    card = vault_services.Card(number=VISA, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    vault_services.card_tokenize(merchant=alice, card=card)
    webhook_services.events_fan_out()
    webhook_services.delivery_attempt(delivery_id=Delivery.objects.get().pk)  # the receiver answers 500
    page.locator("#dashboard-refresh").click()

    expect(page.locator("#strip-endpoints-failing")).to_have_text("1 endpoint failing")
    expect(page.locator("#status-strip .bo-headline")).to_have_text("Something is wrong")
    expect(page.locator("#endpoints-failing tbody tr").filter(has_text=receiver.url)).to_have_count(1)
    expect(page.locator("#dashboard-updated")).to_have_text(re.compile(r"^updated \d\d:\d\d:\d\d UTC$"))
    expect(page.locator("#dashboard-refresh-state")).to_have_text("")
    assert page.evaluate("window.notReloaded") is True
