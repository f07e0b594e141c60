"""The operators' console in a real browser, with a real Celery worker on the real broker and the merchant's
receiver on loopback: a failed delivery replayed until it succeeds, a network token suspended and its webhook sent.

olive is an operator (see conftest); alice is the merchant, whose webhook receiver is a real HTTP server on loopback
that answers 500 until the test tells it otherwise.
"""

import json

import pytest
from playwright.sync_api import expect
from standardwebhooks.webhooks import Webhook

from networks import services as network_services
from networks import tsp
from notifications import services as webhook_services
from notifications.models import Delivery
from tests.browser.conftest import (
    confirm,
    field,
    log_in,
    open_list,
    reload_until,
    result_row,
    run_action,
    success_message,
)
from tests.conftest import VISA
from tests.receiver import Reply
from vault import services as vault_services

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def failed_delivery(settings, alice, receiver) -> Delivery:
    """alice's token.created webhook, refused with a 500 at each of its three attempts, now a dead letter."""
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]  # two retries, due at once: the whole schedule runs in a blink
    endpoint = webhook_services.endpoint_create(merchant=alice, url=receiver.url, description="checkout")
    card = vault_services.Card(number=VISA, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    vault_services.card_tokenize(merchant=alice, card=card)
    webhook_services.events_fan_out()  # as the dispatcher does (no worker runs yet)
    delivery = Delivery.objects.get(endpoint=endpoint)
    while delivery.status == Delivery.PENDING:
        assert webhook_services.delivery_attempt(delivery_id=delivery.pk) is not None
        delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED and delivery.attempt_count == 3
    return delivery


def test_an_operator_replays_a_failed_delivery_and_sees_it_succeed(page, olive, receiver, worker, failed_delivery):
    worker()  # only now: the worker must not retry the delivery on its own schedule while it is failing
    log_in(page, olive)

    open_list(page, "notifications", "delivery")
    page.locator("#changelist-filter").get_by_role("link", name="failed (dead letter)").click()
    result_row(page, "token.created").get_by_role("link", name="token.created").click()
    expect(field(page, "status")).to_have_text("failed (dead letter)")
    expect(page.locator(".inline-group tbody tr").filter(has_text="HTTP 500")).to_have_count(3)
    delivery_page = page.url

    receiver.always(Reply(200, body="thanks"))  # the merchant fixed their server
    page.go_back()
    run_action(page, "replay", "token.created")
    if page.locator("input[name=post][value=yes]").count():  # an intermediate page, if the action has one
        confirm(page)
    expect(success_message(page)).to_contain_text("Replayed 1 delivery")

    page.goto(delivery_page)
    reload_until(page, field(page, "status"), "succeeded")
    expect(page.locator(".inline-group tbody tr").filter(has_text="thanks")).to_have_count(1)
    [*refused, delivered] = receiver.requests
    assert len(refused) == 3
    assert delivered.headers["webhook-id"] == failed_delivery.event.public_id
    assert delivered.json()["type"] == "token.created"


def test_an_operator_suspends_a_network_token_and_the_merchant_gets_its_webhook(page, olive, alice, receiver, worker):
    token = network_services.network_token_provision(
        origin=network_services.Origin(merchant=alice, correlation_id="c-suspend"),
        card=tsp.CardData(VISA, 5, 2035),
        account_id="acct",
    )
    endpoint = webhook_services.endpoint_create(merchant=alice, url=receiver.url, event_types=["network_token.updated"])
    receiver.always(Reply(204))
    worker()
    log_in(page, olive)

    open_list(page, "networks", "networktoken")
    run_action(page, "suspend", token.token_id)
    expect(page.locator("#content table")).to_contain_text(token.token_id)  # the confirmation lists the token
    confirm(page)
    expect(success_message(page)).to_contain_text("Suspended 1 network token")

    [request] = receiver.wait_for_requests(1, timeout=12)
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "network_token.updated"
    assert payload["data"]["tokenId"] == token.token_id
    assert payload["data"]["status"] == "SUSPENDED"
    assert VISA not in request.text and VISA not in json.dumps(payload)

    result_row(page, token.token_id).get_by_role("link", name=token.token_id).click()
    expect(field(page, "status")).to_have_text("SUSPENDED")
    expect(page.locator(".inline-group tbody tr").filter(has_text="admin:olive")).to_have_count(1)
