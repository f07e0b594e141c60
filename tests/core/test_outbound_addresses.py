"""Outbound calls reach the public internet only: URLs are judged when saved (``vetted_addresses``) and again at
connect time, on the address the connection then uses (``send``).

DNS is outside the product, so ``dns`` replaces ``socket.getaddrinfo`` with a table for ``*.example.com`` names (IP
literals still go to the real resolver, which does not touch the network for them); ``connections`` records every
TCP connection the process opens. ``WEBHOOK_ALLOW_LOOPBACK`` is on in the test settings; tests that need production
behaviour turn it off. The receiver (tests/receiver.py) is a real HTTP server on loopback.
"""

import socket

import pytest

from core import outbound
from tests.receiver import Receiver

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
NOT_HTTP_URLS = [
    "ftp://hooks.example.com/hook",
    "file:///etc/passwd",
    "gopher://hooks.example.com/hook",
    "https://user:secret@hooks.example.com/hook",
    "https://user@hooks.example.com/hook",
    "hooks.example.com/hook",
    "http:///hook",
]
# Forms a security review found accepted (issue 17), refused whether loopback is allowed or not. The ports: 80, 443
# and 1024 and above, where web servers listen; the ports below 1024 are SSH's, SMTP's, DNS's and the like, and
# port 0 is no port at all.
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


def post(url: str, *, timeout: float = 2.0) -> outbound.Answer:
    return outbound.send(method="POST", url=url, headers={}, body=b"{}", timeout=timeout, max_body=1024)


# ------------------------------------------------------------------------------------------------------------
# Judged when saved
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", INTERNAL)
def test_an_internal_address_is_refused(settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses(url)


@pytest.mark.parametrize("url", [url for url in INTERNAL if url not in LOOPBACK])
def test_allowing_loopback_lets_nothing_else_through(settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://[::1]:8080/hook"])
def test_allowing_loopback_lets_loopback_through(settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    assert outbound.vetted_addresses(url)


@pytest.mark.parametrize("url", NOT_HTTP_URLS)
def test_urls_that_are_not_plain_http_or_https_are_refused(dns, url):
    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses(url)


@pytest.mark.parametrize(
    "answer", [["10.0.0.5"], ["169.254.169.254"], ["fd00::5"], [PUBLIC, "10.0.0.5"], ["10.0.0.5", PUBLIC]]
)
def test_a_name_resolving_to_an_internal_address_is_refused(dns, answer):
    dns["internal.example.com"] = answer

    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses("https://internal.example.com/hook")


def test_a_name_resolving_to_loopback_is_refused_in_production(dns, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    dns["sneaky.example.com"] = ["127.0.0.1"]

    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses("https://sneaky.example.com/hook")


def test_a_public_address_is_accepted_and_returned(dns, settings):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    dns["hooks.example.com"] = [PUBLIC, "2606:2800:220:1::"]

    assert outbound.vetted_addresses("https://hooks.example.com/hook") == [PUBLIC, "2606:2800:220:1::"]
    assert outbound.vetted_addresses(f"http://{PUBLIC}:8080/hook") == [PUBLIC]


def test_a_name_that_does_not_resolve_is_refused(dns):
    with pytest.raises(outbound.UnsafeUrl, match="does not resolve"):
        outbound.vetted_addresses("https://nowhere.example.com/hook")


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("allow_loopback", [True, False], ids=["loopback allowed", "production"])
@pytest.mark.parametrize("url", REFUSED_FORMS)
def test_a_form_the_filter_once_accepted_is_refused(dns, settings, url, allow_loopback):
    settings.WEBHOOK_ALLOW_LOOPBACK = allow_loopback

    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses(url)


def test_the_refusal_names_what_is_wrong_and_never_echoes_the_url(dns):
    def refusal(url):
        with pytest.raises(outbound.UnsafeUrl) as refused:
            outbound.vetted_addresses(url)
        return str(refused.value)

    assert refusal(f"http://{PUBLIC}:22/hook") == "The URL's port must be 80, 443, or 1024 and above"
    assert refusal("https://hooks.example.com/ho\r\nok") == (
        "The URL must not contain spaces, control characters or non-ASCII characters (percent-encode them)"
    )
    assert refusal("http://[fec0::1]/hook") == (
        "The URL resolves to a private, loopback, link-local or otherwise internal address"
    )


@pytest.mark.parametrize("port", [80, 443, 1024, 8080, 8443, 65535])
def test_web_ports_and_ports_from_1024_up_are_accepted(dns, settings, port):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    assert outbound.vetted_addresses(f"https://hooks.example.com:{port}/hook")
    assert outbound.vetted_addresses(f"http://[2606:2800:220:1::]:{port}/hook")


def test_loopback_where_allowed_takes_any_port_but_zero(settings):
    # A developer's receiver listens where it likes, and the demo's endpoints point at the discard port (9).
    # Production never allows loopback (config/settings/production.py).
    settings.WEBHOOK_ALLOW_LOOPBACK = True

    for url in ("http://127.0.0.1:9/hook", "http://127.0.0.1:22/hook", "http://[::1]:25/hook"):
        assert outbound.vetted_addresses(url)
    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses("http://127.0.0.1:0/hook")

    settings.WEBHOOK_ALLOW_LOOPBACK = False
    with pytest.raises(outbound.UnsafeUrl):
        outbound.vetted_addresses("http://127.0.0.1:22/hook")


# ------------------------------------------------------------------------------------------------------------
# Judged again at connect time (DNS rebinding, rows saved before a rule)
# ------------------------------------------------------------------------------------------------------------
def test_a_name_rebound_to_loopback_is_refused_at_connect_time_and_nothing_connects(dns, settings, connections):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    dns["rebind.example.com"] = [PUBLIC]
    url = "http://rebind.example.com:{port}/hook"
    with Receiver() as receiver:
        outbound.vetted_addresses(url.format(port=receiver.port))  # as when it was saved
        dns["rebind.example.com"] = ["127.0.0.1"]

        with pytest.raises(outbound.OutboundFailed) as failed:
            post(url.format(port=receiver.port))

        assert str(failed.value).startswith("refused: ")
        assert receiver.requests == []
    assert connections == []


def test_a_name_rebound_to_a_private_address_is_refused_at_connect_time_even_with_loopback_allowed(
    dns, settings, connections
):
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    dns["rebind.example.com"] = ["10.0.0.5"]

    with pytest.raises(outbound.OutboundFailed, match="^refused: "):
        post("http://rebind.example.com:8080/hook", timeout=1)

    assert connections == []


def test_with_loopback_allowed_the_name_reaches_the_receiver_on_the_checked_address(dns, settings, connections):
    # the control for the two tests above: the same set-up does connect when the address is allowed
    settings.WEBHOOK_ALLOW_LOOPBACK = True
    dns["rebind.example.com"] = ["127.0.0.1"]
    with Receiver() as receiver:
        answer = post(f"http://rebind.example.com:{receiver.port}/hook")

        assert answer.status == 204
        [request] = receiver.requests
        assert request.headers["host"] == f"rebind.example.com:{receiver.port}"
    assert [address for address, _ in connections] == ["127.0.0.1"]


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("url", REFUSED_FORMS)
def test_a_url_saved_before_the_rule_is_refused_at_connect_time_and_nothing_connects(dns, connections, url):
    with pytest.raises(outbound.OutboundFailed, match="^refused: "):
        post(url, timeout=1)

    assert connections == []
