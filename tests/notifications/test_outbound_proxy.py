"""Webhooks through an egress proxy (``OUTBOUND_PROXY_URL``): delivered through the tunnel, and a proxy's failure
stored with the attempt without a word of the proxy's URL. The client's side of it is
tests/core/test_outbound_proxy.py's, whose ``ConnectProxy`` (a real CONNECT proxy on loopback) serves here too.

Actors (tests/conftest.py): alice is a merchant whose webhook endpoint is reached through the proxy. DNS is outside
the product: ``dns`` (tests/core/test_outbound_addresses.py) answers for ``*.example.com`` names.
"""

import logging

from notifications import services
from notifications.models import Delivery, DeliveryAttempt
from tests.conftest import wait_for
from tests.core import test_outbound_addresses
from tests.core.test_outbound_addresses import PUBLIC
from tests.core.test_outbound_proxy import PROXY_PASSWORD, PROXY_USER, ConnectProxy
from tests.receiver import Receiver

dns = test_outbound_addresses.dns  # the fixture: DNS by table


def delivery_to(alice, url: str) -> Delivery:
    """alice's endpoint at ``url`` and one event for it: its delivery, not yet attempted."""
    endpoint = services.endpoint_create(merchant=alice, url=url)
    services.event_emit(merchant=alice, type="token.deleted", data={"tokenId": "9876543210ABCDEFGHJ"})
    services.events_fan_out()  # as the dispatcher does once the event is committed
    return Delivery.objects.get(endpoint=endpoint)


def test_a_webhook_goes_through_the_proxy_which_is_asked_for_the_vetted_address_not_the_name(alice, dns, settings):
    dns["hooks.example.com"] = ["127.0.0.1"]
    with Receiver() as receiver, ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url(credentials=(PROXY_USER, PROXY_PASSWORD))
        delivery = delivery_to(alice, f"http://hooks.example.com:{receiver.port}/hook")

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

        assert attempt.succeeded, attempt.error
        assert proxy.requests == [f"CONNECT 127.0.0.1:{receiver.port} HTTP/1.1"]
        [request] = receiver.requests
        assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
        assert request.headers["webhook-id"] == delivery.event.public_id
    delivery.refresh_from_db()
    assert delivery.status == Delivery.SUCCEEDED


def assert_failed_quietly(attempt: DeliveryAttempt, error: str, caplog) -> None:
    """The attempt failed with ``error`` stored, the delivery waits for its next attempt, and no log line carries a
    traceback or anything of the proxy's URL."""
    assert not attempt.succeeded
    assert attempt.status_code is None
    assert attempt.error == error
    delivery = Delivery.objects.get(pk=attempt.delivery_id)
    assert delivery.status == Delivery.PENDING and delivery.attempt_count == 1
    assert delivery.last_error == error
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert PROXY_PASSWORD not in record.getMessage()
    assert PROXY_PASSWORD not in attempt.error and PROXY_USER not in attempt.error


def test_a_proxy_refusing_the_tunnel_fails_the_attempt_with_its_status(alice, dns, settings, caplog):
    dns["hooks.example.com"] = [PUBLIC]
    with ConnectProxy(mode="refuse") as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url(credentials=(PROXY_USER, PROXY_PASSWORD))
        delivery = delivery_to(alice, "https://hooks.example.com/hook")

        with caplog.at_level(logging.DEBUG):
            attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert_failed_quietly(attempt, "outbound proxy refused the connection: HTTP 403", caplog)


def test_a_silent_proxy_is_bounded_by_the_attempts_deadline(alice, dns, settings, caplog):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    dns["hooks.example.com"] = [PUBLIC]
    with ConnectProxy(mode="silent") as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url()
        delivery = delivery_to(alice, "https://hooks.example.com/hook")

        attempt = services.delivery_attempt(delivery_id=delivery.pk)

    assert_failed_quietly(attempt, "timed out after 1 s", caplog)
    wait_for(lambda: proxy.requests, timeout=10)  # the proxy's thread records the CONNECT when it gets to it
    assert len(proxy.requests) == 1  # one CONNECT: no second try on a fresh deadline
    # Cut at the 1 s deadline, not when the proxy gives up (30 s) or at the default 15 s; room for a loaded machine.
    assert 900 <= attempt.duration_ms < 5000
