"""The operators' console in a real browser, with a real Celery worker on the real broker and the merchant's
receiver on loopback: a failed delivery replayed until it succeeds, an endpoint's failed deliveries replayed from its
page with a count that follows the window (and a replay of nothing refused), a network token suspended and its
webhook sent.

olive is an operator (see conftest); alice is the merchant, whose webhook receiver is a real HTTP server on loopback
that answers 500 until the test tells it otherwise.
"""

import json
from datetime import UTC, timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from standardwebhooks.webhooks import Webhook

from networks import services as network_services
from networks import tsp
from notifications import services as webhook_services
from notifications.models import Delivery, Event
from tests.browser.conftest import (
    confirm,
    field,
    log_in,
    open_list,
    reload_until,
    result_row,
    run_action,
    screens,
    success_message,
)
from tests.conftest import VISA
from tests.receiver import Reply
from vault import services as vault_services

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

# How long to wait for what a worker started in the test does: its start-up comes first, and on a loaded CI machine
# that alone can exceed 15 s.
WORKER_START_TIMEOUT = 120.0


def attempted_until_done(endpoint) -> list[Delivery]:
    """Fan out alice's new events and attempt each delivery of ``endpoint`` until it is done, as the workers would
    (none runs yet)."""
    webhook_services.events_fan_out()
    deliveries = []
    for delivery in Delivery.objects.filter(endpoint=endpoint, status=Delivery.PENDING).order_by("pk"):
        while delivery.status == Delivery.PENDING:
            assert webhook_services.delivery_attempt(delivery_id=delivery.pk) is not None
            delivery.refresh_from_db()
        deliveries.append(delivery)
    return deliveries


def tokenized(merchant, *, holder: str = "Sherlock Holmes", namespace: str | None = None) -> None:
    card = vault_services.Card(number=VISA, holder_name=holder, expiry_month=5, expiry_year=2035)
    vault_services.card_tokenize(merchant=merchant, card=card, namespace=namespace)


@pytest.fixture
def failed_delivery(settings, alice, receiver) -> Delivery:
    """alice's token.created webhook, refused with a 500 at each of its three attempts, now a dead letter."""
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]  # two retries, due at once: the whole schedule runs in a blink
    endpoint = webhook_services.endpoint_create(merchant=alice, url=receiver.url, description="checkout")
    tokenized(alice)
    [delivery] = attempted_until_done(endpoint)
    assert delivery.status == Delivery.FAILED and delivery.attempt_count == 3
    return delivery


@pytest.fixture
def old_dead_letter(alice, failed_delivery) -> Delivery:
    """A dead letter of the same endpoint from an incident three days ago, long before its current run of failures:
    its event happened then, and it died then."""
    tokenized(alice, namespace="old-incident")
    [delivery] = attempted_until_done(failed_delivery.endpoint)
    three_days_ago = timezone.now() - timedelta(days=3)
    Event.objects.filter(pk=delivery.event_id).update(created_at=three_days_ago)
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=three_days_ago)
    return delivery


def test_an_operator_replays_a_failed_delivery_and_sees_it_succeed(page, olive, receiver, worker, failed_delivery):
    worker()  # only now: the worker must not retry the delivery on its own schedule while it is failing
    log_in(page, olive)

    open_list(page, "notifications", "delivery")
    page.locator("#changelist-filter").get_by_role("link", name="failed (dead letter)").click()
    expect(result_row(page, "token.created").locator(".status")).to_have_text("Dead letter")
    result_row(page, "token.created").get_by_role("link", name="token.created").click()
    expect(field(page, "status_shown")).to_have_text("Dead letter")
    expect(page.locator(".inline-group tbody tr").filter(has_text="HTTP 500")).to_have_count(3)
    delivery_page = page.url

    receiver.always(Reply(200, body="thanks"))  # the merchant fixed their server
    page.go_back()
    run_action(page, "replay", "token.created")
    if page.locator("input[name=post][value=yes]").count():  # an intermediate page, if the action has one
        confirm(page)
    expect(success_message(page)).to_contain_text("Replayed 1 delivery")

    page.goto(delivery_page)
    reload_until(page, field(page, "status_shown"), "Succeeded", timeout=WORKER_START_TIMEOUT)
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

    [request] = receiver.wait_for_requests(1, timeout=WORKER_START_TIMEOUT)
    payload = Webhook(endpoint.secret).verify(request.body, request.headers)
    assert payload["type"] == "network_token.updated"
    assert payload["data"]["tokenId"] == token.token_id
    assert payload["data"]["status"] == "SUSPENDED"
    assert VISA not in request.text and VISA not in json.dumps(payload)

    result_row(page, token.token_id).get_by_role("link", name=token.token_id).click()
    expect(field(page, "current_status")).to_contain_text("Suspended")  # the networks admin's status label
    expect(page.locator(".inline-group tbody tr").filter(has_text="admin:olive")).to_have_count(1)


# ------------------------------------------------------------------------------------------------------------
# Replaying an endpoint's failed deliveries
# ------------------------------------------------------------------------------------------------------------
def minute(moment) -> str:
    """A datetime-local input's value: the admin runs in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def test_the_replay_form_counts_what_its_window_holds_as_the_window_changes(
    page, olive, failed_delivery, old_dead_letter
):
    log_in(page, olive)
    open_list(page, "notifications", "webhookendpoint")
    run_action(page, "replay_failed", failed_delivery.endpoint.public_id)

    count = page.locator("#replay-count")
    # By default the window starts when the endpoint started failing: today's dead letter, not the old incident's.
    expect(count).to_have_text("1 of 2 failed deliveries will be replayed.")

    page.locator("#id_since").fill(minute(timezone.now() - timedelta(days=4)))
    expect(count).to_have_text("2 of 2 failed deliveries will be replayed.")

    page.locator("#id_since").fill(minute(timezone.now() + timedelta(days=1)))
    expect(count).to_have_text("The window ends before it starts.")

    page.locator("#id_until").fill(minute(timezone.now() + timedelta(days=2)))
    expect(count).to_have_text(
        "None of the 2 failed deliveries has its event in this window: nothing would be replayed."
    )


def test_a_replay_of_nothing_is_refused_with_a_warning(page, olive, failed_delivery):
    log_in(page, olive)
    open_list(page, "notifications", "webhookendpoint")
    run_action(page, "replay_failed", failed_delivery.endpoint.public_id)
    a_year_ago = timezone.now() - timedelta(days=365)
    page.locator("#id_since").fill(minute(a_year_ago))
    page.locator("#id_until").fill(minute(a_year_ago + timedelta(days=1)))
    confirm(page)

    expect(page.locator("ul.messagelist li.warning")).to_contain_text("Nothing was replayed")
    expect(success_message(page)).to_have_count(0)
    expect(page.locator("#replay-count")).to_contain_text("nothing would be replayed")  # the form again, to widen
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == Delivery.FAILED


def test_an_operator_replays_failed_deliveries_from_the_endpoint_page(page, olive, receiver, worker, failed_delivery):
    endpoint = failed_delivery.endpoint
    receiver.always(Reply(200, body="thanks"))  # the merchant fixed their server
    worker()
    log_in(page, olive)
    open_list(page, "notifications", "webhookendpoint")
    result_row(page, endpoint.public_id).get_by_role("link", name=endpoint.public_id).click()
    expect(page.locator("#endpoint-status .status")).to_have_text("Failing")

    page.locator("#object-action-replay_failed").click()
    expect(page.locator("#replay-count")).to_have_text("1 of 1 failed delivery will be replayed.")
    confirm(page)

    expect(success_message(page)).to_contain_text("Replayed 1 failed delivery.")
    expect(page.locator("#endpoint-health")).to_be_visible()  # back on the endpoint's page
    page.locator("#replayed-deliveries").click()
    row = result_row(page, "token.created")
    expect(row).to_have_count(1)
    reload_until(page, row.locator(".status"), "Succeeded", timeout=WORKER_START_TIMEOUT)
    [*refused, delivered] = receiver.wait_for_requests(4, timeout=12)
    assert delivered.headers["webhook-id"] == failed_delivery.event.public_id


def test_a_failing_endpoints_page_says_why_it_fails(page, olive, settings, alice, receiver):
    """The endpoint page of the README's tour: a success, then a receiver down for maintenance."""
    settings.WEBHOOK_RETRY_SCHEDULE = [0, 0]
    endpoint = webhook_services.endpoint_create(
        merchant=alice, url=receiver.url, description="checkout", event_types=["token.created", "token.updated"]
    )
    receiver.always(Reply(204))
    tokenized(alice, namespace="first")
    attempted_until_done(endpoint)
    receiver.always(Reply(503, body="down for maintenance"))
    for number in range(3):
        tokenized(alice, namespace=f"later-{number}")
    attempted_until_done(endpoint)
    log_in(page, olive)

    page.goto(f"/admin/notifications/webhookendpoint/{endpoint.pk}/change/")

    expect(page.locator("#endpoint-status .status")).to_have_text("Failing")
    expect(page.locator("#endpoint-errors")).to_have_text("503 ×9")
    expect(page.locator("#endpoint-last-success a")).to_contain_text("UTC")
    expect(page.locator("#endpoint-attempts tbody tr")).to_have_count(10)
    expect(page.locator("#object-action-replay_failed")).to_be_visible()
    screens(page, "endpoint-page")
