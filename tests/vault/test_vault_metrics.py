"""The vault's metrics as an operator's Prometheus scrapes them from ``GET /metrics``: tokenize outcomes, detokenize
and forward results, and whether the KEK provider is reachable, moved by real API calls.

Actors (tests/conftest.py): alice is a merchant tokenizing cards (no detokenize scope); carol is alice's payment
processor, whose key may detokenize; bob is another merchant. ``prometheus`` is the operator's scraper: it reads
/metrics in the text format and parses it with prometheus-client's own parser. Counters are the process's, shared by
every test of the run: each test compares a scrape before with one after.
"""

import json
import socket
import uuid

import pytest
from django.test import Client

from core.audit import Actor
from tests.cards import distinct_card_numbers
from tests.conftest import AMEX, MASTERCARD, VISA, VISA_2, card_request, path_of
from tests.metrics import Scrape
from tests.receiver import Receiver, Reply
from vault import keys
from vault.models import Token


class Prometheus:
    """The operator's scraper."""

    def __init__(self):
        self.client = Client()

    def scrape(self) -> Scrape:
        return Scrape.of(self.client)


@pytest.fixture
def prometheus(db) -> Prometheus:
    """The operator's scraper (the state gauges read the database)."""
    return Prometheus()


def changes(before: Scrape, after: Scrape, name: str, label: str, values) -> dict[str, float]:
    """How much each sample ``name{label=value}`` moved between the two scrapes, for each of ``values``."""
    return {value: after.value(name, **{label: value}) - before.value(name, **{label: value}) for value in values}


TOKENIZE_OUTCOMES = ("created", "matched", "conflict", "namespace_full")
DETOKENIZE_RESULTS = ("released", "denied", "not_found", "rate_limited", "unavailable", "failed")
FORWARD_RESULTS = ("ok", "destination_error", "unreachable", "timeout", "refused")


# ------------------------------------------------------------------------------------------------------------
# Tokenize
# ------------------------------------------------------------------------------------------------------------
def test_a_tokenize_counts_created_the_same_card_again_matched_and_another_holder_conflict(prometheus, tokenize):
    before = prometheus.scrape()

    assert tokenize().status_code == 201
    assert tokenize().status_code == 200
    assert tokenize(cardHolderName="Mycroft Holmes").status_code == 409

    after = prometheus.scrape()
    assert changes(before, after, "tokenvault_tokenize_total", "outcome", TOKENIZE_OUTCOMES) == {
        "created": 1,
        "matched": 1,
        "conflict": 1,
        "namespace_full": 0,
    }


def test_a_replayed_idempotent_tokenize_is_not_counted_again(prometheus, tokenize, api):
    before = prometheus.scrape()

    first = api.post("/tokens", card_request(), format="json", HTTP_IDEMPOTENCY_KEY="order-1")
    replayed = api.post("/tokens", card_request(), format="json", HTTP_IDEMPOTENCY_KEY="order-1")

    assert (first.status_code, replayed.status_code) == (201, 201)
    assert replayed["Idempotent-Replayed"] == "true"
    after = prometheus.scrape()
    assert changes(before, after, "tokenvault_tokenize_total", "outcome", ("created", "matched")) == {
        "created": 1,
        "matched": 0,
    }


def test_the_17th_card_of_a_namespace_counts_as_namespace_full(prometheus, tokenize):
    numbers = distinct_card_numbers("400000", 17)
    for number in numbers[:16]:
        assert tokenize(cardNumber=number, namespace="FAMILY").status_code == 201
    before = prometheus.scrape()

    assert tokenize(cardNumber=numbers[16], namespace="FAMILY").status_code == 400

    after = prometheus.scrape()
    assert changes(before, after, "tokenvault_tokenize_total", "outcome", TOKENIZE_OUTCOMES)["namespace_full"] == 1


# ------------------------------------------------------------------------------------------------------------
# Detokenize
# ------------------------------------------------------------------------------------------------------------
def test_detokenize_counts_the_card_released_and_each_refusal_by_its_reason(prometheus, tokenize, api, carol_api):
    href = tokenize().json()["tokenPaymentInstrument"]["href"]
    before = prometheus.scrape()

    assert carol_api.post(f"{path_of(href)}/detokenize").status_code == 200
    assert api.post(f"{path_of(href)}/detokenize").status_code == 403  # alice's own key lacks the scope
    assert Client().post(f"{path_of(href)}/detokenize").status_code == 401  # no key at all
    assert carol_api.post(f"/tokens/{uuid.uuid4().hex}/detokenize").status_code == 404

    after = prometheus.scrape()
    assert changes(before, after, "tokenvault_detokenize_total", "result", DETOKENIZE_RESULTS) == {
        "released": 1,
        "denied": 2,
        "not_found": 1,
        "rate_limited": 0,
        "unavailable": 0,
        "failed": 0,
    }


# ------------------------------------------------------------------------------------------------------------
# Forwards
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def psp():
    """alice's payment provider: a real HTTP server on loopback, answering 201 unless told otherwise."""
    with Receiver(Reply(201, body="{}"), path="/v1") as receiver:
        yield receiver


def destination_for(api, url: str) -> str:
    response = api.post("/forward-destinations", {"name": "Loopback PSP", "url": url}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def forward(api, destination: str, token: str):
    body = json.dumps({"card": "{{ card.number }}"})
    return api.post(
        "/forward",
        {"destination": destination, "token": token, "path": "/payments", "body": body},
        format="json",
    )


def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_forwards_count_by_what_the_destination_did_and_those_refused_before_sending(prometheus, tokenize, api, psp):
    token = tokenize().json()["tokenId"]
    destination = destination_for(api, psp.url)
    nowhere = destination_for(api, f"http://127.0.0.1:{closed_port()}/v1")
    before = prometheus.scrape()

    assert forward(api, destination, token).json()["status"] == 201
    psp.always(Reply(500))
    assert forward(api, destination, token).json()["status"] == 500
    assert forward(api, nowhere, token).status_code == 502
    assert forward(api, destination, "ABCDEFGHJKLMNPQRSTU").status_code == 404  # no such token: nothing sent

    after = prometheus.scrape()
    assert changes(before, after, "tokenvault_forwards_total", "result", FORWARD_RESULTS) == {
        "ok": 1,
        "destination_error": 1,
        "unreachable": 1,
        "timeout": 0,
        "refused": 1,
    }


# ------------------------------------------------------------------------------------------------------------
# The KEK provider
# ------------------------------------------------------------------------------------------------------------
def test_the_local_kek_provider_is_available(prometheus):
    assert prometheus.scrape().value("tokenvault_kek_available", provider="local") == 1


def use_kek(softhsm, settings, label: str) -> None:
    """This process's settings name the HSM's key ``label``: as a server (re)started with them."""
    for name, value in softhsm.settings(label).items():
        setattr(settings, name, value)


@pytest.fixture
def hsm(softhsm, settings):
    """The pkcs11 provider on the test SoftHSM2 token, under a KEK of this test's own; returns its label."""
    label = f"kek-{uuid.uuid4().hex[:8]}"
    softhsm.provider(label).create_kek()
    use_kek(softhsm, settings, label)
    return label


def test_the_hsm_is_available_until_it_goes_away_and_again_once_it_is_back(
    prometheus, softhsm, settings, hsm, tokenize, carol_api
):
    older = tokenize(cardNumber=VISA).json()["tokenPaymentInstrument"]["href"]  # under DEK 1
    keys.dek_create(actor=Actor("test"))
    tokenize(cardNumber=MASTERCARD)  # under DEK 2
    use_kek(softhsm, settings, hsm)  # a server process started afresh: DEK 1 not in memory
    assert prometheus.scrape().value("tokenvault_kek_available", provider="pkcs11") == 1

    with softhsm.unplugged():
        # What the process knows: a card operation found the HSM gone, the scrape need not ask it.
        assert carol_api.post(f"{path_of(older)}/detokenize").status_code == 503
        known = prometheus.scrape().value("tokenvault_kek_available", provider="pkcs11")
        use_kek(softhsm, settings, hsm)  # a server process started during the outage: the scrape asks the HSM
        asked = prometheus.scrape().value("tokenvault_kek_available", provider="pkcs11")

    use_kek(softhsm, settings, hsm)
    back = prometheus.scrape().value("tokenvault_kek_available", provider="pkcs11")
    assert (known, asked, back) == (0, 0, 1)
    assert softhsm.pin not in prometheus.scrape().text


# ------------------------------------------------------------------------------------------------------------
# What a scrape never shows
# ------------------------------------------------------------------------------------------------------------
def test_no_metric_shows_a_card_number_a_token_id_or_a_merchant(prometheus, tokenize, carol_api, alice, bob_api):
    created = [tokenize(cardNumber=number).json() for number in (VISA, VISA_2, MASTERCARD, AMEX)]
    for token in created:
        carol_api.post(f"{path_of(token['tokenPaymentInstrument']['href'])}/detokenize")
    bob_api.post(f"{path_of(created[0]['tokenPaymentInstrument']['href'])}/detokenize")

    text = prometheus.scrape().text

    for number in (VISA, VISA_2, MASTERCARD, AMEX):
        assert number not in text
    for token in created:
        assert token["tokenId"] not in text
        assert token["tokenPaymentInstrument"]["href"].rsplit("/", 1)[-1] not in text
    assert alice.public_id not in text and alice.name not in text
    assert Token.objects.count() == 4
