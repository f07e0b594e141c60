"""The networks app's metrics as an operator's Prometheus scrapes them from ``GET /metrics``: calls to the token
services by network, operation and outcome (a decline, a step-up, an error included) with their latency, calls per
issuer against its limit, cryptograms, batch items by state, asynchronous requests pending.

Actors (tests/conftest.py): alice is a merchant asking for network tokens through the API. ``prometheus`` is the
operator's scraper (text format, parsed with prometheus-client's own parser). The TSP simulators are the product and
run for real, without latency; the broker is outside the product, so what is queued is recorded (``broker``) and the
workers' part is run here. Counters are shared by every test of the process: tests compare scrapes before and after;
the gauges read this test's database.
"""

import time

import pytest

from core.audit import Actor
from networks import scheduling, services
from networks.models import Issuer, NetworkToken, ProvisioningRequest
from tests.cards import declining_card, distinct_card_numbers, step_up_card
from tests.conftest import MASTERCARD, VISA
from tests.metrics import Scrape
from vault import services as vault_services

EXPIRY = {"month": 5, "year": 2035}
BAKER_STREET = "Baker Street Bank"  # the registry's issuer of VISA (BIN 444433), 50 calls a second


def scrape() -> Scrape:
    return Scrape.of()


def moved(before: Scrape, after: Scrape, name: str, **labels) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def card_body(number: str) -> dict:
    return {"card": {"cardNumber": number, "cardExpiryDate": EXPIRY, "cardHolderName": "Sherlock Holmes"}}


@pytest.fixture
def provision(api):
    """POST /network-tokens (or ``path``) as alice."""

    def post(body, *, path="/network-tokens"):
        return api.post(path, body, format="json", HTTP_X_CORRELATION_ID="checkout-7f3a")

    return post


def tsp(scrape_: Scrape, network: str, operation: str, outcome: str) -> float:
    return scrape_.value("tokenvault_tsp_requests_total", network=network, operation=operation, outcome=outcome)


# ------------------------------------------------------------------------------------------------------------
# Calls to the token services
# ------------------------------------------------------------------------------------------------------------
def test_provisioning_counts_each_tsp_outcome_by_network_and_times_every_call(provision, settings):
    before = scrape()

    assert provision(card_body(VISA)).status_code == 201
    assert provision(card_body(MASTERCARD)).status_code == 201
    assert provision(card_body(declining_card())).status_code == 422
    assert provision(card_body(step_up_card())).json()["status"] == "INACTIVE"
    settings.TSP_FAILURE_RATE = 1.0
    assert provision(card_body(VISA)).status_code in (502, 504)

    after = scrape()
    outcomes = ("success", "step_up", "declined", "error", "timeout")
    visa = {
        outcome: tsp(after, "VISA", "provision", outcome) - tsp(before, "VISA", "provision", outcome)
        for outcome in outcomes
    }
    no_answer = visa.pop("error") + visa.pop("timeout")
    assert (visa, no_answer) == ({"success": 1, "step_up": 1, "declined": 1}, 1)
    assert tsp(after, "MASTERCARD", "provision", "success") - tsp(before, "MASTERCARD", "provision", "success") == 1
    timed = "tokenvault_tsp_request_duration_seconds_count"
    assert moved(before, after, timed, network="VISA", operation="provision") == 4
    assert moved(before, after, timed, network="MASTERCARD", operation="provision") == 1


def test_cryptograms_count_issued_not_active_and_tsp_unavailable_with_the_tsp_call(api, provision, settings):
    active = provision(card_body(VISA)).json()["tokenId"]
    inactive = provision(card_body(step_up_card())).json()["tokenId"]
    before = scrape()

    assert api.post(f"/network-tokens/{active}/cryptograms").status_code == 200
    assert api.post(f"/network-tokens/{inactive}/cryptograms").status_code == 422
    settings.TSP_FAILURE_RATE = 1.0
    assert api.post(f"/network-tokens/{active}/cryptograms").status_code in (502, 504)

    after = scrape()
    results = ("issued", "not_active", "tsp_unavailable")
    assert {r: moved(before, after, "tokenvault_cryptograms_total", network="VISA", result=r) for r in results} == {
        "issued": 1,
        "not_active": 1,
        "tsp_unavailable": 1,
    }
    assert tsp(after, "VISA", "cryptogram", "success") - tsp(before, "VISA", "cryptogram", "success") == 1
    failed = sum(
        tsp(after, "VISA", "cryptogram", o) - tsp(before, "VISA", "cryptogram", o) for o in ("error", "timeout")
    )
    assert failed == 1


# ------------------------------------------------------------------------------------------------------------
# Issuers: calls against their limit
# ------------------------------------------------------------------------------------------------------------
def test_each_call_counts_against_its_issuer_and_banks_outside_the_registry_as_one_unregistered(provision):
    # An operator narrows a range, leaving 48xxxx-49xxxx outside the registry: each such BIN gets an issuer of its own.
    Issuer.objects.filter(name="Northern Lights Credit Union").update(bin_high="479999")
    before = scrape()

    assert provision(card_body(VISA)).status_code == 201
    for number in distinct_card_numbers("490000", 2) + distinct_card_numbers("485555", 1):
        assert provision(card_body(number)).status_code == 201

    after = scrape()
    assert moved(before, after, "tokenvault_issuer_calls_total", network="VISA", issuer=BAKER_STREET) == 1
    assert moved(before, after, "tokenvault_issuer_calls_total", network="VISA", issuer="unregistered") == 3
    assert Issuer.objects.filter(registered=False).count() == 2
    assert "490000" not in after.words and "485555" not in after.words
    assert after.value("tokenvault_issuer_call_limit", network="VISA", issuer=BAKER_STREET) == 50
    assert after.value("tokenvault_issuer_call_limit", network="VISA", issuer="unregistered") == 50


def test_an_issuers_calls_in_the_window_climb_to_its_limit_as_its_clock_is_booked_ahead(db):
    baker_street = Issuer.objects.get(name=BAKER_STREET)
    idle = scrape()

    reserved_at = time.monotonic()
    scheduling.reserve_calls(baker_street, 25)  # half a second of its calls, from now
    half = scrape()
    # The clock runs on while the scrape reads it: the calls whose slot passed meanwhile have left the window.
    passed = (time.monotonic() - reserved_at) * 50
    # Ten seconds more: calls now wait for their slot, and the clock stays booked more than a second ahead through
    # the scrapes and the update below however slowly a busy machine runs them.
    scheduling.reserve_calls(baker_street, 500)
    full = scrape()
    services.issuer_update(issuer=baker_street, changes={"rate_limit_per_second": 80}, actor=Actor("staff"))
    raised = scrape()

    def in_window(s: Scrape) -> float:
        return s.value("tokenvault_issuer_calls_in_window", network="VISA", issuer=BAKER_STREET)

    assert in_window(idle) == 0
    assert max(0.0, 25 - passed) <= in_window(half) <= 25
    assert in_window(full) == 50 == full.value("tokenvault_issuer_call_limit", network="VISA", issuer=BAKER_STREET)
    assert raised.value("tokenvault_issuer_call_limit", network="VISA", issuer=BAKER_STREET) == 80
    assert in_window(raised) == 80  # the clock booked more than a second ahead at the new rate too


# ------------------------------------------------------------------------------------------------------------
# Batch items and asynchronous requests
# ------------------------------------------------------------------------------------------------------------
def run_batch(broker) -> None:
    """What the dispatcher and the workers do with the pending items, in this process."""
    while services.batches_dispatch():
        chunks = [chunk for (chunk,) in broker.args_of("run_batch_items")]
        broker.clear()
        for chunk in chunks:
            services.batch_items_run(item_ids=chunk)


def batch_items(s: Scrape) -> dict[str, float]:
    states = ("pending", "queued", "running", "pending_activation")
    return {state: s.value("tokenvault_batch_items", state=state) for state in states}


def items_ended(before: Scrape, after: Scrape) -> dict[str, float]:
    states = ("succeeded", "failed", "pending_activation")
    return {state: moved(before, after, "tokenvault_batch_items_total", state=state) for state in states}


def test_batch_items_show_by_state_while_under_way_and_count_as_they_end(alice, api, broker):
    numbers = [VISA, MASTERCARD, declining_card(), step_up_card()]
    tokens = [
        vault_services.card_tokenize(merchant=alice, card=vault_services.Card(n, "Card Holder", 5, 2035)).token
        for n in numbers
    ]
    items = [{"token": token.token_id} for token in tokens] + [{"token": "ABCDEFGHJKLMNPQRSTU"}]  # no such token
    start = scrape()

    assert api.post("/network-tokens/batches", {"items": items}, format="json").status_code == 202
    accepted = scrape()
    run_batch(broker)
    answered = scrape()
    stepping = NetworkToken.objects.get(status=NetworkToken.INACTIVE)
    activated = api.post(f"/network-tokens/{stepping.token_id}/simulate-lifecycle", {"event": "ACTIVE"}, format="json")
    assert activated.status_code == 200
    done = scrape()

    assert batch_items(accepted) == {"pending": 4, "queued": 0, "running": 0, "pending_activation": 0}
    assert items_ended(start, accepted) == {"succeeded": 0, "failed": 1, "pending_activation": 0}
    assert batch_items(answered) == {"pending": 0, "queued": 0, "running": 0, "pending_activation": 1}
    assert items_ended(accepted, answered) == {"succeeded": 2, "failed": 1, "pending_activation": 1}
    assert batch_items(done) == {"pending": 0, "queued": 0, "running": 0, "pending_activation": 0}
    assert items_ended(answered, done) == {"succeeded": 1, "failed": 0, "pending_activation": 0}


def test_an_async_request_is_pending_until_a_worker_has_provisioned_it(provision):
    before = scrape().value("tokenvault_async_requests_pending")

    accepted = provision(card_body(MASTERCARD), path="/network-tokens/async")
    pending = scrape().value("tokenvault_async_requests_pending")
    request = ProvisioningRequest.objects.get(public_id=accepted.json()["requestId"])
    services.provisioning_request_run(request_id=request.pk)  # what the worker does with its message
    request.refresh_from_db()

    assert (before, pending, scrape().value("tokenvault_async_requests_pending")) == (0, 1, 0)
    assert request.status == ProvisioningRequest.SUCCEEDED


def test_no_network_metric_shows_a_card_or_token_number_a_token_id_or_a_correlation_id(alice, provision, api):
    created = provision(card_body(VISA)).json()
    api.post(f"/network-tokens/{created['tokenId']}/cryptograms")

    text = scrape().words

    assert VISA not in text and VISA[:6] not in text
    assert created["tokenId"] not in text
    assert "checkout-7f3a" not in text and alice.public_id not in text
