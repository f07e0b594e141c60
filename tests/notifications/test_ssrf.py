"""Webhook URLs reach the public internet only: refused when saved (400 at $.url) and again at connect time, where
the refusal is stored with the attempt. The rules themselves are tests/core/test_outbound_addresses.py's.

Actors (tests/conftest.py): alice is a merchant with the default scopes (webhooks included). DNS is outside the
product: ``dns`` (tests/core/test_outbound_addresses.py) answers for ``*.example.com`` names, and ``connections``
records the TCP connections opened. ``WEBHOOK_ALLOW_LOOPBACK`` is on in the test settings; tests that need
production behaviour turn it off. The broker is outside the product too: the shared stub (``broker``,
tests/conftest.py) keeps what is queued.
"""

import pytest
from django.utils import timezone

from core import outbound
from notifications import services
from notifications.models import Delivery, WebhookEndpoint
from tests.conftest import VISA
from tests.core import test_outbound_addresses
from tests.core.test_outbound_addresses import INTERNAL, NOT_HTTP_URLS, PUBLIC, REFUSED_FORMS
from tests.receiver import Receiver
from vault import services as vault_services

dns = test_outbound_addresses.dns  # the fixtures: DNS by table, and the connections opened
connections = test_outbound_addresses.connections


def assert_refused_at_url(response):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema"
    assert [(e["errorName"], e["jsonPath"]) for e in body["validationErrors"]] == [("fieldHasInvalidValue", "$.url")]


@pytest.mark.parametrize("url", INTERNAL)
def test_the_api_answers_400_at_url_for_an_internal_address(api, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    response = api.post("/webhook-endpoints", {"url": url}, format="json")

    assert_refused_at_url(response)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://[::1]:8080/hook"])
def test_allowing_loopback_lets_loopback_through(alice, api, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    assert services.endpoint_create(merchant=alice, url=url).url == url
    assert api.post("/webhook-endpoints", {"url": url}, format="json").status_code == 201


def test_allowing_loopback_still_refuses_metadata_and_private_addresses(api, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    for url in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook"):
        assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))
    assert api.post("/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, format="json").status_code == 201


@pytest.mark.parametrize("url", NOT_HTTP_URLS)
def test_urls_that_are_not_plain_http_or_https_are_refused(alice, api, dns, url):
    with pytest.raises(outbound.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "answer", [["10.0.0.5"], ["169.254.169.254"], ["fd00::5"], [PUBLIC, "10.0.0.5"], ["10.0.0.5", PUBLIC]]
)
def test_a_name_resolving_to_an_internal_address_is_refused(alice, api, dns, settings, answer):
    dns["internal.example.com"] = answer
    url = "https://internal.example.com/hook"

    with pytest.raises(outbound.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))


def test_a_public_address_is_accepted(alice, api, dns, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    endpoint = services.endpoint_create(merchant=alice, url="https://hooks.example.com/hook")
    response = api.post("/webhook-endpoints", {"url": "https://hooks.example.com/other"}, format="json")

    assert endpoint.url == "https://hooks.example.com/hook"
    assert response.status_code == 201
    assert response.json()["url"] == "https://hooks.example.com/other"
    assert response.json()["secret"].startswith("whsec_")
    assert services.endpoint_create(merchant=alice, url=f"http://{PUBLIC}:8080/hook").pk


def test_changing_an_endpoint_to_an_internal_address_is_refused(alice, api, dns, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    endpoint = services.endpoint_create(merchant=alice, url="https://hooks.example.com/hook")

    response = api.patch(f"/webhook-endpoints/{endpoint.public_id}", {"url": "http://10.0.0.1/hook"}, format="json")

    assert_refused_at_url(response)
    endpoint.refresh_from_db()
    assert endpoint.url == "https://hooks.example.com/hook"
    with pytest.raises(outbound.UnsafeUrl):
        services.endpoint_update(endpoint=endpoint, url="http://169.254.169.254/")


# ------------------------------------------------------------------------------------------------------------
# Refused again at connect time (DNS rebinding)
# ------------------------------------------------------------------------------------------------------------
def _saved_then_rebound(alice, dns, port: int, later: list[str]) -> Delivery:
    """An endpoint saved while its name answered a public address, then an event; DNS now answers ``later``."""
    dns["rebind.example.com"] = [PUBLIC]
    endpoint = services.endpoint_create(merchant=alice, url=f"http://rebind.example.com:{port}/hook")
    vault_services.card_tokenize(merchant=alice, card=vault_services.Card(VISA, "Sherlock Holmes", 5, 2035))
    services.events_fan_out()  # the dispatcher's work on the message the event's commit sends
    dns["rebind.example.com"] = later
    return Delivery.objects.get(endpoint=endpoint)


def test_a_name_rebound_to_loopback_after_saving_is_refused_at_connect_time_and_nothing_connects(
    alice, dns, settings, connections
):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    with Receiver() as receiver:
        delivery = _saved_then_rebound(alice, dns, receiver.port, later=["127.0.0.1"])

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

        assert attempt is not None and not attempt.succeeded
        assert "refused" in attempt.error
        assert attempt.status_code is None
        assert receiver.requests == []
    assert connections == []
    delivery.refresh_from_db()
    assert delivery.status == Delivery.PENDING and delivery.next_attempt_at > timezone.now()


def test_a_name_rebound_to_a_private_address_is_refused_at_connect_time_even_with_loopback_allowed(
    alice, dns, settings, connections
):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 1

    delivery = _saved_then_rebound(alice, dns, 8080, later=["10.0.0.5"])
    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert "refused" in attempt.error
    assert connections == []


def test_with_loopback_allowed_the_rebound_name_reaches_the_receiver_on_the_checked_address(
    alice, dns, settings, connections
):
    # the control for the two tests above: the same set-up does connect when the address is allowed
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    with Receiver() as receiver:
        delivery = _saved_then_rebound(alice, dns, receiver.port, later=["127.0.0.1"])

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

        assert attempt.succeeded
        [request] = receiver.requests
        assert request.headers["host"].startswith("rebind.example.com")
    assert [address for address, _ in connections] == ["127.0.0.1"]


# ------------------------------------------------------------------------------------------------------------
# Forms a security review found accepted (issue 17): the same rule refuses them when saved and at connect time
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("url", REFUSED_FORMS)
def test_a_form_the_filter_once_accepted_is_refused_when_saved(alice, api, dns, url):
    with pytest.raises(outbound.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("url", REFUSED_FORMS)
def test_a_url_saved_before_the_rule_is_refused_at_connect_time_and_nothing_connects(
    alice, dns, settings, connections, url
):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    delivery = _saved_then_rebound(alice, dns, 8080, later=[PUBLIC])
    WebhookEndpoint.objects.filter(pk=delivery.endpoint_id).update(url=url)  # as a row written before the rule

    attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert attempt is not None and not attempt.succeeded
    assert attempt.error.startswith("refused: ")
    assert attempt.status_code is None
    assert connections == []


def test_the_refusal_names_what_is_wrong_and_never_echoes_the_url(api, dns):
    answers = {
        url: api.post("/webhook-endpoints", {"url": url}, format="json").json()["validationErrors"][0]["message"]
        for url in (f"http://{PUBLIC}:22/hook", "https://hooks.example.com/ho\r\nok", "http://[fec0::1]/hook")
    }

    assert answers == {
        f"http://{PUBLIC}:22/hook": "The URL's port must be 80, 443, or 1024 and above",
        "https://hooks.example.com/ho\r\nok": "The URL must not contain spaces, control characters or non-ASCII "
        "characters (percent-encode them)",
        "http://[fec0::1]/hook": "The URL resolves to a private, loopback, link-local or otherwise internal address",
    }


def test_loopback_where_allowed_takes_any_port_but_zero(alice, api, settings):
    # A developer's receiver listens where it likes, and the demo's endpoints point at the discard port (9), so
    # deliveries fail at once. Production never allows loopback (config/settings/production.py).
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    for url in ("http://127.0.0.1:9/hook", "http://127.0.0.1:22/hook", "http://[::1]:25/hook"):
        assert api.post("/webhook-endpoints", {"url": url}, format="json").status_code == 201
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": "http://127.0.0.1:0/hook"}, format="json"))

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": "http://127.0.0.1:22/hook"}, format="json"))
