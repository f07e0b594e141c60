"""``GET /metrics`` in one process (the test's, counting in memory): what the API's requests count, who may read it
under production's rules, the switch that turns it all off, and that no card, token id or key reaches it. The
processes' sum under gunicorn and Celery is tests/project/test_metrics_processes.py's.

Actors (tests/conftest.py): alice is a merchant tokenizing cards, carol her payment processor who detokenizes them;
the scraper is Prometheus, an anonymous client of /metrics, coming from 127.0.0.1 unless a test says otherwise.
"""

import pytest
from django.core import checks
from django.test import Client

from merchants import services as merchant_services
from tests.conftest import AMEX, MASTERCARD, VISA, VISA_2, card_request, client_for, path_of
from tests.metrics import Scrape
from tests.project.test_settings import production_with, start_django

# The apps' state gauges are read from the database at each scrape.
pytestmark = pytest.mark.django_db

TOKENS_CREATED = ("tokenvault_http_requests_total", {"route": "tokens", "method": "POST", "status_class": "2xx"})
# A token of 40 characters: production refuses shorter ones.
TOKEN = "metrics-scraper-token-of-forty-chars-xyz"


def scrape(client: Client | None = None, **headers) -> Scrape:
    """What /metrics shows, read as Prometheus reads it."""
    response = (client or Client()).get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return Scrape(response.content.decode())


def value(samples: Scrape, name: str, labels: dict) -> float:
    return samples.value(name, **labels)


@pytest.fixture
def production(settings):
    """/metrics under production's rule: no one reads it unless a token or an address list lets them."""
    settings.METRICS_OPEN = False
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_ADDRESSES = []
    return settings


# ------------------------------------------------------------------------------------------------------------
# What the API's requests count
# ------------------------------------------------------------------------------------------------------------
def test_a_tokenize_counts_one_request_on_the_tokens_route(tokenize):
    before = value(scrape(), *TOKENS_CREATED)

    assert tokenize().status_code == 201

    samples = scrape()
    assert value(samples, *TOKENS_CREATED) == before + 1
    duration = ("tokenvault_http_request_duration_seconds_count", {"route": "tokens", "method": "POST"})
    assert value(samples, *duration) >= 1


def test_a_token_path_counts_under_its_pattern_and_an_unknown_path_as_unmatched(api):
    unknown = ("tokenvault_http_requests_total", {"route": "unmatched", "method": "GET", "status_class": "4xx"})
    a_token = (
        "tokenvault_http_requests_total",
        {"route": "tokens/<token_reference:reference>", "method": "GET", "status_class": "4xx"},
    )
    before = scrape()

    assert api.get("/no-such-endpoint/abc123").status_code == 404
    assert api.get("/tokens/not-a-token-of-alice").status_code == 404

    samples = scrape()
    assert value(samples, *unknown) == value(before, *unknown) + 1
    assert value(samples, *a_token) == value(before, *a_token) + 1
    routes = {dict(labels).get("route") for _, labels in samples.samples}
    assert not any("no-such-endpoint" in route or "not-a-token" in route for route in routes if route)


def test_a_method_outside_the_known_ones_counts_as_other(api):
    other = ("tokenvault_http_requests_total", {"route": "tokens", "method": "other", "status_class": "4xx"})
    before = value(scrape(), *other)

    api.generic("BREW", "/tokens")

    assert value(scrape(), *other) == before + 1


# ------------------------------------------------------------------------------------------------------------
# Who may read it
# ------------------------------------------------------------------------------------------------------------
def test_local_runs_and_tests_serve_metrics_to_anyone():
    assert Client().get("/metrics").status_code == 200


def test_production_refuses_a_scraper_without_the_token_in_the_apis_error_shape(production):
    production.METRICS_TOKEN = TOKEN

    response = Client().get("/metrics")

    assert response.status_code == 403
    body = response.json()
    assert body["errorName"] == "accessDenied"
    assert body["message"] == "Metrics are served to the configured token or addresses only"


def test_production_serves_the_scraper_with_the_token_and_refuses_a_wrong_one(production):
    production.METRICS_TOKEN = TOKEN

    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN[:-1]}x").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 403


@pytest.mark.parametrize(
    ("address", "status"),
    [("10.20.0.7", 200), ("192.0.2.10", 200), ("10.21.0.7", 403), ("2001:db8::1", 403)],
    ids=["inside-the-block", "the-listed-address", "outside-the-block", "ipv6-not-listed"],
)
def test_production_serves_the_listed_addresses_only(production, address, status):
    production.METRICS_ALLOWED_ADDRESSES = ["10.20.0.0/16", "192.0.2.10"]

    assert Client(REMOTE_ADDR=address).get("/metrics").status_code == status


def test_production_with_a_token_and_addresses_serves_either(production):
    production.METRICS_TOKEN = TOKEN
    production.METRICS_ALLOWED_ADDRESSES = ["10.20.0.0/16"]

    assert Client(REMOTE_ADDR="10.20.0.7").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.99").get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    assert Client(REMOTE_ADDR="192.0.2.99").get("/metrics").status_code == 403


def test_production_with_neither_refuses_everyone_and_the_checks_warn(production):
    assert Client().get("/metrics").status_code == 403
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403

    warnings = [
        message for message in checks.run_checks(tags=[checks.Tags.security]) if message.id.startswith("backoffice")
    ]

    assert [message.id for message in warnings] == ["backoffice.W001"]
    assert warnings[0].level == checks.WARNING
    assert "METRICS_TOKEN" in warnings[0].msg and "METRICS_ALLOWED_ADDRESSES" in warnings[0].msg


def test_the_checks_say_nothing_once_a_token_is_configured(production):
    production.METRICS_TOKEN = TOKEN

    assert not [message for message in checks.run_checks() if message.id == "backoffice.W001"]


def test_production_refuses_a_short_metrics_token_without_echoing_it():
    result = start_django(production_with(METRICS_TOKEN="guessable-token-1234"))

    assert result.returncode != 0
    assert "METRICS_TOKEN must have 32 characters or more" in result.stderr.strip().splitlines()[-1]
    assert "guessable-token-1234" not in result.stderr


def test_production_refuses_an_address_list_holding_something_else_than_addresses():
    result = start_django(production_with(METRICS_ALLOWED_ADDRESSES="10.0.0.0/8,prometheus.internal"))

    assert result.returncode != 0
    assert "METRICS_ALLOWED_ADDRESSES must list IP addresses or CIDR blocks" in result.stderr


# ------------------------------------------------------------------------------------------------------------
# METRICS_ENABLED false
# ------------------------------------------------------------------------------------------------------------
def test_with_metrics_switched_off_metrics_is_an_unknown_path_and_requests_are_not_counted(settings, alice):
    before = value(scrape(), *TOKENS_CREATED)
    settings.METRICS_ENABLED = False
    # A new client: its handler builds the middleware chain again, under the switch (as a process starting).
    api = client_for(alice.raw_key)

    assert api.post("/tokens", card_request(), format="json").status_code == 201
    response = Client().get("/metrics")

    assert response.status_code == 404
    assert response.json()["errorName"] == "endpointNotFound"
    settings.METRICS_ENABLED = True
    assert value(scrape(), *TOKENS_CREATED) == before


# ------------------------------------------------------------------------------------------------------------
# No card number, token id or key
# ------------------------------------------------------------------------------------------------------------
def test_no_card_number_token_id_or_api_key_reaches_the_metrics(alice, tokenize):
    # carol is alice's payment processor; her key detokenizes.
    _, carol_key = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="p")
    carol = client_for(carol_key)
    numbers = [VISA, VISA_2, MASTERCARD, AMEX]
    token_ids, hrefs = [], []
    for number in numbers:
        created = tokenize(cardNumber=number)
        assert created.status_code == 201
        token_ids.append(created.json()["tokenId"])
        hrefs.append(path_of(created.json()["tokenPaymentInstrument"]["href"]))
    for href in hrefs:
        assert carol.post(f"{href}/detokenize").status_code == 200
    # A card again (matched), then paths holding a card number and a key where a token id or an endpoint goes.
    tokenize(cardNumber=VISA)
    client_for(alice.raw_key).get(f"/tokens/{VISA}")
    Client().get(f"/{carol_key}/{MASTERCARD}")

    text = Client().get("/metrics").content.decode()

    for secret in [*numbers, *token_ids, alice.raw_key, carol_key]:
        assert secret not in text
