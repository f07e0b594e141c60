"""Webhook URLs reach the public internet only: refused when saved (400 at $.url) and again at connect time.

Actors (tests/conftest.py): alice is a merchant with the default scopes (webhooks included). DNS is outside the
product, so ``dns`` replaces ``socket.getaddrinfo`` with a table for ``*.example.com`` names (IP literals still go to
the real resolver, which does not touch the network for them). ``WEBHOOK_ALLOW_LOOPBACK`` is on in the test
settings; tests that need production behaviour turn it off. The broker is outside the product too: the shared stub
(``broker``, tests/conftest.py) keeps what is queued.
"""

import socket

import pytest
from django.utils import timezone

from notifications import services, ssrf
from notifications.models import Delivery, WebhookEndpoint
from tests.conftest import VISA
from tests.receiver import Receiver
from vault import services as vault_services

PUBLIC = "93.184.216.34"

# Every one of these is refused with WEBHOOK_ALLOW_LOOPBACK off (production).
INTERNAL = [
    "http://10.0.0.1/hook",
    "http://172.16.0.1/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # CGNAT
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.100.100.200/",  # another cloud's metadata
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",  # multicast
    "http://[::]/hook",
    "http://[::1]/hook",
    "http://127.0.0.1/hook",
    "https://127.0.0.1:8443/hook",
    "http://[fd00::1]/hook",  # IPv6 unique local
    "http://[fd00:ec2::254]/",  # IPv6 metadata
    "http://[fe80::1]/hook",  # IPv6 link-local
    "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[64:ff9b::a00:1]/hook",  # NAT64 of 10.0.0.1
    "http://[2002:a00:1::]/hook",  # 6to4 of 10.0.0.1
    "http://2130706433/hook",  # 127.0.0.1 as one decimal number
    "http://127.1/hook",  # 127.0.0.1, abbreviated
]
LOOPBACK = {
    "http://[::1]/hook",
    "http://127.0.0.1/hook",
    "https://127.0.0.1:8443/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://2130706433/hook",
    "http://127.1/hook",
}
NOT_WEBHOOK_URLS = [
    "ftp://hooks.example.com/hook",
    "file:///etc/passwd",
    "gopher://hooks.example.com/hook",
    "https://user:secret@hooks.example.com/hook",
    "https://user@hooks.example.com/hook",
    "hooks.example.com/hook",
    "http:///hook",
]


@pytest.fixture
def dns(monkeypatch):
    """DNS answers by name (a list of addresses, changeable mid-test); unknown example.com names do not resolve."""
    answers = {"hooks.example.com": [PUBLIC]}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host in answers:
            return [
                (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, int(port or 0), 0, 0))
                if ":" in a
                else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0)))
                for a in answers[host]
            ]
        if isinstance(host, str) and host.endswith("example.com"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def connections(monkeypatch):
    """Every address the process opens a TCP connection to (the real connection still happens)."""
    opened = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


def assert_refused_at_url(response):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["errorName"] == "bodyDoesNotMatchSchema"
    assert [(e["errorName"], e["jsonPath"]) for e in body["validationErrors"]] == [("fieldHasInvalidValue", "$.url")]


# ------------------------------------------------------------------------------------------------------------
# Refused when saved
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_address_is_refused_when_the_endpoint_is_created(alice, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    with pytest.raises(ssrf.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)

    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", INTERNAL)
def test_the_api_answers_400_at_url_for_an_internal_address(api, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    response = api.post("/webhook-endpoints", {"url": url}, format="json")

    assert_refused_at_url(response)
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("url", [url for url in INTERNAL if url not in LOOPBACK])
def test_allowing_loopback_lets_nothing_else_through(alice, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    with pytest.raises(ssrf.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)


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


@pytest.mark.parametrize("url", NOT_WEBHOOK_URLS)
def test_urls_that_are_not_plain_http_or_https_are_refused(alice, api, dns, url):
    with pytest.raises(ssrf.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize(
    "answer", [["10.0.0.5"], ["169.254.169.254"], ["fd00::5"], [PUBLIC, "10.0.0.5"], ["10.0.0.5", PUBLIC]]
)
def test_a_name_resolving_to_an_internal_address_is_refused(alice, api, dns, settings, answer):
    dns["internal.example.com"] = answer
    url = "https://internal.example.com/hook"

    with pytest.raises(ssrf.UnsafeUrl):
        services.endpoint_create(merchant=alice, url=url)
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": url}, format="json"))


def test_a_name_resolving_to_loopback_is_refused_in_production(alice, dns, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    dns["sneaky.example.com"] = ["127.0.0.1"]

    with pytest.raises(ssrf.UnsafeUrl):
        services.endpoint_create(merchant=alice, url="https://sneaky.example.com/hook")


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
    with pytest.raises(ssrf.UnsafeUrl):
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
# Refused whether loopback is allowed or not. The ports: 80, 443 and 1024 and above, where web servers listen; the
# ports below 1024 are SSH's, SMTP's, DNS's and the like, and port 0 is no port at all.
REFUSED_FORMS = [
    "http://[::127.0.0.1]/hook",  # IPv4-compatible IPv6 (deprecated) of loopback
    "http://[::10.0.0.1]/hook",  # ... of a private address
    f"http://[::{PUBLIC}]/hook",  # ... of a public one: no receiver lives at a deprecated form
    "http://[fec0::1]/hook",  # IPv6 site-local (fec0::/10, deprecated and private in use)
    "http://[feff:ffff::1]/hook",  # its last block
    f"http://{PUBLIC}:0/hook",
    f"http://{PUBLIC}:22/hook",
    "https://hooks.example.com:22/hook",
    "https://hooks.example.com:25/hook",
    "https://hooks.example.com:1023/hook",
    "http://127.0.0.1:0/hook",
    "https://hooks.example.com/hook\r\nX-Injected: yes",
    "https://hooks.example.com/ho\nok",
    "https://hooks.example.com/ho\rok",
    "https://hooks.example.com/ho\tok",
    "https://hooks.example.com/ho ok",
    "https://hooks.example.com/hook ",
    " https://hooks.example.com/hook",
    "https://hooks.example.com/hook?a=b c",
    "https://hooks.example.com/ho\u00a0ok",  # a no-break space
    "https://hooks.example.com/caf\u00e9",  # not a URL until percent-encoded: no request line can carry it
]


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("allow_loopback", [True, False], ids=["loopback allowed", "production"])
@pytest.mark.parametrize("url", REFUSED_FORMS)
def test_a_form_the_filter_once_accepted_is_refused_when_saved(alice, api, dns, settings, url, allow_loopback):
    settings.WEBHOOK_ALLOW_LOOPBACK = allow_loopback

    with pytest.raises(ssrf.UnsafeUrl):
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


@pytest.mark.parametrize("port", [80, 443, 1024, 8080, 8443, 65535])
def test_web_ports_and_ports_from_1024_up_are_accepted(alice, dns, settings, port):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    assert services.endpoint_create(merchant=alice, url=f"https://hooks.example.com:{port}/hook").pk
    assert services.endpoint_create(merchant=alice, url=f"http://[2606:2800:220:1::]:{port}/hook").pk


def test_loopback_where_allowed_takes_any_port_but_zero(alice, api, settings):
    # A developer's receiver listens where it likes, and the demo's endpoints point at the discard port (9), so
    # deliveries fail at once. Production never allows loopback (config/settings/production.py).
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    for url in ("http://127.0.0.1:9/hook", "http://127.0.0.1:22/hook", "http://[::1]:25/hook"):
        assert api.post("/webhook-endpoints", {"url": url}, format="json").status_code == 201
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": "http://127.0.0.1:0/hook"}, format="json"))

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    assert_refused_at_url(api.post("/webhook-endpoints", {"url": "http://127.0.0.1:22/hook"}, format="json"))
