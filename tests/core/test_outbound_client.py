"""``outbound.send``: one request to a vetted address, no redirects, one deadline, a bounded answer, safe errors.

The receiver (tests/receiver.py) is a real HTTP server on loopback (``WEBHOOK_ALLOW_LOOPBACK`` is on in the test
settings); ``ChunkedReceiver`` below answers one request with a chunked body, which the receiver never sends. DNS is
outside the product: ``dns`` (tests/core/test_outbound_addresses.py) answers for ``*.example.com`` names.
"""

import socket
import ssl
import threading
import time

import pytest

from core import outbound
from tests.core import test_outbound_addresses
from tests.core.test_outbound_proxy import certificates_for
from tests.project.test_drills import free_port
from tests.receiver import Receiver, Reply

dns = test_outbound_addresses.dns  # the fixture: DNS by table
connections = test_outbound_addresses.connections


def send(url: str, *, method: str = "POST", headers=None, body: bytes | None = b"{}", timeout=5.0, max_body=1024):
    return outbound.send(method=method, url=url, headers=headers or {}, body=body, timeout=timeout, max_body=max_body)


def failure(url: str, **kwargs) -> outbound.TransportError:
    """The error a call to ``url`` fails with."""
    with pytest.raises(outbound.TransportError) as failed:
        send(url, **kwargs)
    return failed.value


class ChunkedReceiver:
    """Answers one request with 200 and ``body`` in chunks of 10 bytes (Transfer-Encoding: chunked)."""

    def __init__(self, body: bytes):
        self.body = body
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/chunked"
        threading.Thread(target=self._answer, daemon=True).start()

    def _answer(self):
        client, _ = self._server.accept()
        with client:
            client.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                request += client.recv(4096)
            chunks = [self.body[i : i + 10] for i in range(0, len(self.body), 10)]
            answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            answer += b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
            try:
                client.sendall(answer)
            except OSError:
                pass  # the client had what it wanted and closed

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._server.close()


# ------------------------------------------------------------------------------------------------------------
# What is sent, what comes back
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_the_method_path_headers_and_body_arrive_as_given(method):
    with Receiver(path="/v1/charges?expand=card") as receiver:
        send(receiver.url, method=method, headers={"Authorization": "Bearer sk_test_1", "X-Id": "42"}, body=b"a=1")

        [request] = receiver.requests
        assert request.headers["host"] == f"127.0.0.1:{receiver.port}"
    assert (request.method, request.path, request.body) == (method, "/v1/charges?expand=card", b"a=1")
    assert request.headers["authorization"] == "Bearer sk_test_1"
    assert request.headers["x-id"] == "42"


def test_a_request_without_a_body_sends_none():
    with Receiver() as receiver:
        send(receiver.url, method="GET", body=None)

        [request] = receiver.requests
    assert request.body == b""
    assert "transfer-encoding" not in request.headers


def test_the_answer_comes_back_with_its_status_headers_and_body():
    with Receiver(Reply(402, headers={"Content-Type": "application/json", "X-Request-Id": "r1"}, body='{"a":1}')) as r:
        answer = send(r.url)

    assert answer.status == 402
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"] == "r1"
    assert (answer.body, answer.truncated) == (b'{"a":1}', False)


def test_a_redirect_is_not_followed_but_comes_back_as_it_is():
    with Receiver() as elsewhere, Receiver(Reply(302, headers={"Location": elsewhere.url})) as receiver:
        answer = send(receiver.url)

        assert answer.status == 302
        assert answer.headers["location"] == elsewhere.url
        assert elsewhere.requests == []


def test_https_is_spoken_with_the_urls_host(dns, monkeypatch, tmp_path):
    authority, leaf = certificates_for("pay.example.com", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", authority)  # the system's trust store, outside the product
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*leaf)
    dns["pay.example.com"] = dns["other.example.com"] = ["127.0.0.1"]
    with Receiver(Reply(200, body="ok"), tls=tls) as receiver:
        answer = send(f"https://pay.example.com:{receiver.port}/hook")
        error = failure(f"https://other.example.com:{receiver.port}/hook")

    assert (answer.status, answer.body) == (200, b"ok")
    assert isinstance(error, outbound.OutboundFailed)
    assert str(error) == "connection failed: SSLCertVerificationError"


# ------------------------------------------------------------------------------------------------------------
# The answer's body is bounded
# ------------------------------------------------------------------------------------------------------------
def test_a_body_longer_than_max_body_is_cut_there_and_said_to_be():
    with Receiver(Reply(200, body=b"x" * 5_000_000)) as receiver:
        began = time.monotonic()
        answer = send(receiver.url, max_body=100)

    assert (answer.body, answer.truncated) == (b"x" * 100, True)
    assert time.monotonic() - began < 2  # the rest was never read


def test_a_body_of_exactly_max_body_is_whole():
    with Receiver(Reply(200, body=b"x" * 100)) as receiver:
        answer = send(receiver.url, max_body=100)

    assert (answer.body, answer.truncated) == (b"x" * 100, False)


@pytest.mark.parametrize(("size", "truncated"), [(99, False), (100, False), (101, True), (10_000, True)])
def test_a_chunked_body_is_cut_at_max_body_too(size, truncated):
    with ChunkedReceiver(b"y" * size) as receiver:
        answer = send(receiver.url, max_body=100)

    assert (answer.body, answer.truncated) == (b"y" * min(size, 100), truncated)


# ------------------------------------------------------------------------------------------------------------
# No answer: a timeout or a failure, saying which
# ------------------------------------------------------------------------------------------------------------
def test_a_hanging_receiver_times_out_within_the_deadline():
    with Receiver(Reply(hang=True)) as receiver:
        began = time.monotonic()
        error = failure(receiver.url, timeout=0.5)
        took = time.monotonic() - began

    assert isinstance(error, outbound.OutboundTimeout)
    assert str(error) == "timed out after 0.5 s"
    assert 0.5 <= took < 5  # the receiver hangs for 60 s: a busy machine may add seconds, not a minute


def test_a_receiver_stalling_in_its_body_is_held_to_the_same_deadline():
    with Receiver(Reply(200, body=b"z" * 100, stall_after=10)) as receiver:
        began = time.monotonic()
        error = failure(receiver.url, timeout=0.5)
        took = time.monotonic() - began

    assert isinstance(error, outbound.OutboundTimeout)
    assert 0.5 <= took < 5  # the body stalls for 60 s


def test_a_refused_connection_fails():
    error = failure(f"http://127.0.0.1:{free_port()}/hook")

    assert isinstance(error, outbound.OutboundFailed)
    assert str(error) == "connection failed: ConnectionRefusedError"


def test_a_private_address_is_refused_at_connect_time_and_nothing_connects(settings, connections):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    with Receiver() as receiver:
        error = failure(receiver.url)

        assert receiver.requests == []
    assert isinstance(error, outbound.OutboundFailed)
    assert str(error) == ("refused: The URL resolves to a private, loopback, link-local or otherwise internal address")
    assert connections == []


def test_a_name_that_does_not_resolve_fails(dns):
    error = failure("https://nowhere.example.com/hook")

    assert isinstance(error, outbound.OutboundFailed)
    assert str(error) == "refused: The URL's host does not resolve"


def test_failures_never_echo_the_url_its_headers_or_its_body():
    secret = "s3cret-value"
    with Receiver(Reply(hang=True)) as hanging:
        errors = [
            failure(f"http://127.0.0.1:{free_port()}/{secret}?key={secret}", headers={"X-Key": secret}),
            failure(f"{hanging.url}?key={secret}", headers={"X-Key": secret}, body=secret.encode(), timeout=0.3),
            failure(f"http://127.0.0.1:0/{secret}"),
        ]

    assert all(secret not in str(error) for error in errors)


# ------------------------------------------------------------------------------------------------------------
# Requests the client will not send
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "TRACE", "CONNECT", "get", "POST / HTTP/1.1\r\nX: y\r\n"])
def test_a_method_other_than_the_five_is_refused_before_anything_is_sent(method):
    with Receiver() as receiver:
        with pytest.raises(outbound.UnsendableRequest):
            send(receiver.url, method=method)

        assert receiver.requests == []


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Note": "s3cret\r\nX-Injected: yes"},
        {"X-Note": "s3cret\nb"},
        {"X-Note": "s3cret\x00b"},
        {"X Note": "s3cret"},
        {"X-Note\r\nX-Injected": "s3cret"},
        {"Host": "internal.example.com"},
        {"Content-Length": "0"},
        {"transfer-encoding": "chunked"},
        {"Connection": "upgrade"},
    ],
)
def test_headers_that_would_change_the_requests_frame_or_host_are_refused_without_echoing_them(headers):
    with Receiver() as receiver:
        with pytest.raises(outbound.UnsendableRequest) as refused:
            send(receiver.url, headers=headers)

        assert receiver.requests == []
    assert "s3cret" not in str(refused.value) and "internal" not in str(refused.value)
