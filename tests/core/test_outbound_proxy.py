"""Outbound calls through an egress proxy (``OUTBOUND_PROXY_URL``), with the address checks on the final destination.

``ConnectProxy`` is a real HTTP proxy on loopback, written here: it records every CONNECT it is asked for and
tunnels it, refuses it, asks for credentials, or says nothing at all. DNS is outside the product: ``dns``
(tests/core/test_outbound_addresses.py) answers for ``*.example.com`` names, so a destination has a name the proxy
is never told. The receiver (tests/receiver.py) is the destination.
"""

import base64
import datetime
import logging
import os
import select
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from core import outbound
from tests.conftest import ROOT
from tests.core import test_outbound_addresses
from tests.core.test_outbound_addresses import PUBLIC
from tests.project.test_drills import free_port
from tests.receiver import Receiver

dns = test_outbound_addresses.dns  # the fixture: DNS by table

PROXY_USER, PROXY_PASSWORD = "vault", "pr0xy-s3cret"


@dataclass
class ConnectProxy:
    """An HTTP proxy on 127.0.0.1 that understands CONNECT only (as egress proxies for TLS do).

    ``mode``: ``"tunnel"`` relays bytes to the requested address once it answered 200; ``"refuse"`` answers 403;
    ``"silent"`` reads the request and never answers. With ``credentials`` set, a CONNECT without the matching
    ``Proxy-Authorization`` gets 407. ``requests`` holds every request line it got, ``authorizations`` the
    ``Proxy-Authorization`` header of each (or None), ``connections`` how many TCP connections it accepted.
    """

    mode: str = "tunnel"
    credentials: tuple[str, str] | None = None
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    connections: int = 0

    def __enter__(self):
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy.connections += 1
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = self.request.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                lines = head.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines[1:])
                proxy.requests.append(lines[0])
                proxy.authorizations.append(headers.get("Proxy-Authorization"))
                method, target, _ = lines[0].split(" ")
                if proxy.mode == "silent":
                    proxy._stopping.wait(30)
                    return
                if proxy.mode == "refuse" or method != "CONNECT":
                    self.request.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                    return
                if proxy.credentials:
                    expected = "Basic " + base64.b64encode(":".join(proxy.credentials).encode()).decode()
                    if headers.get("Proxy-Authorization") != expected:
                        self.request.sendall(
                            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                            b'Proxy-Authenticate: Basic realm="egress"\r\nContent-Length: 0\r\n\r\n'
                        )
                        return
                host, port = target.rsplit(":", 1)
                with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
                    self.request.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    relay(self.request, upstream)

        self._stopping = threading.Event()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc_info):
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, *, credentials: tuple[str, str] | None = None) -> str:
        userinfo = f"{credentials[0]}:{credentials[1]}@" if credentials else ""
        return f"http://{userinfo}127.0.0.1:{self.port}"


def relay(client: socket.socket, upstream: socket.socket) -> None:
    """Bytes both ways until either side closes."""
    sockets = [client, upstream]
    while True:
        readable, _, _ = select.select(sockets, [], [], 10)
        if not readable:
            return
        for sock in readable:
            data = sock.recv(65536)
            if not data:
                return
            (upstream if sock is client else client).sendall(data)


def post(url: str, *, timeout: float = 5.0) -> outbound.Answer:
    return outbound.send(method="POST", url=url, headers={"X-Call": "1"}, body=b"{}", timeout=timeout, max_body=1024)


def failure(url: str, *, timeout: float = 5.0) -> outbound.TransportError:
    """The error a call to ``url`` fails with."""
    with pytest.raises(outbound.TransportError) as failed:
        post(url, timeout=timeout)
    return failed.value


# ------------------------------------------------------------------------------------------------------------
# Through the proxy, to the vetted address
# ------------------------------------------------------------------------------------------------------------
def test_a_call_goes_through_the_proxy_which_is_asked_for_the_vetted_address_not_the_name(dns, settings):
    dns["hooks.example.com"] = ["127.0.0.1"]
    with Receiver() as receiver, ConnectProxy(credentials=(PROXY_USER, PROXY_PASSWORD)) as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url(credentials=(PROXY_USER, PROXY_PASSWORD))

        answer = post(f"http://hooks.example.com:{receiver.port}/hook")

        assert answer.status == 204
        assert proxy.requests == [f"CONNECT 127.0.0.1:{receiver.port} HTTP/1.1"]
        [request] = receiver.requests
        assert request.headers["host"] == f"hooks.example.com:{receiver.port}"
        assert request.headers["x-call"] == "1"
        assert "proxy-authorization" not in request.headers  # the proxy's, never passed on


def test_an_https_call_is_tunnelled_to_the_vetted_address_and_its_tls_is_with_the_urls_host(
    dns, settings, monkeypatch, tmp_path
):
    authority, leaf = certificates_for("hooks.example.com", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(authority))  # the system's trust store, outside the product
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*leaf)
    dns["hooks.example.com"] = ["127.0.0.1"]
    with Receiver(tls=tls) as receiver, ConnectProxy() as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url()

        answer = post(f"https://hooks.example.com:{receiver.port}/hook")

        assert answer.status == 204
        assert proxy.requests == [f"CONNECT 127.0.0.1:{receiver.port} HTTP/1.1"]
        assert proxy.authorizations == [None]
        assert receiver.requests[0].headers["host"] == f"hooks.example.com:{receiver.port}"


def test_a_certificate_for_another_name_fails_the_call_even_through_the_tunnel(dns, settings, monkeypatch, tmp_path):
    # the control for the test above: TLS is checked against the URL's host, not the address the proxy was given
    authority, leaf = certificates_for("other.example.com", tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(authority))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(*leaf)
    dns["hooks.example.com"] = ["127.0.0.1"]
    with Receiver(tls=tls) as receiver, ConnectProxy() as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url()

        error = failure(f"https://hooks.example.com:{receiver.port}/hook")

    assert isinstance(error, outbound.OutboundFailed)
    assert str(error) == "connection failed: SSLCertVerificationError"
    assert receiver.requests == []


# ------------------------------------------------------------------------------------------------------------
# The address checks come first
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("later", [["10.0.0.5"], ["169.254.169.254"], ["127.0.0.1"]])
def test_a_destination_rebound_to_an_internal_address_is_refused_before_the_proxy_is_asked(dns, settings, later):
    settings.WEBHOOK_ALLOW_LOOPBACK = False
    dns["rebind.example.com"] = later
    with ConnectProxy() as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url()

        error = failure("https://rebind.example.com/hook")

        assert isinstance(error, outbound.OutboundFailed)
        assert str(error).startswith("refused: ")
        assert proxy.connections == 0


# ------------------------------------------------------------------------------------------------------------
# A proxy that refuses, asks for credentials, is silent or is down
# ------------------------------------------------------------------------------------------------------------
def assert_failed_quietly(error: outbound.TransportError, message: str, caplog) -> None:
    """The call failed with ``message``, and neither it nor any log line carries a traceback or anything of the
    proxy's URL."""
    assert str(error) == message
    assert PROXY_PASSWORD not in str(error) and PROXY_USER not in str(error)
    for record in caplog.records:
        assert record.exc_info is None, record.getMessage()
        assert PROXY_PASSWORD not in record.getMessage()


def test_a_proxy_refusing_the_tunnel_fails_the_call_with_its_status(dns, settings, caplog):
    with ConnectProxy(mode="refuse") as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url(credentials=(PROXY_USER, PROXY_PASSWORD))

        with caplog.at_level(logging.DEBUG):
            error = failure("https://hooks.example.com/hook")

        assert proxy.requests == [f"CONNECT {PUBLIC}:443 HTTP/1.1"]
    assert isinstance(error, outbound.OutboundFailed)
    assert_failed_quietly(error, "outbound proxy refused the connection: HTTP 403", caplog)


def test_wrong_proxy_credentials_fail_the_call_without_naming_them(dns, settings, caplog):
    with ConnectProxy(credentials=(PROXY_USER, "the-right-one")) as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url(credentials=(PROXY_USER, PROXY_PASSWORD))

        with caplog.at_level(logging.DEBUG):
            error = failure("https://hooks.example.com/hook")

        sent = base64.b64decode(proxy.authorizations[0].removeprefix("Basic ")).decode()
        assert sent == f"{PROXY_USER}:{PROXY_PASSWORD}"
    assert_failed_quietly(error, "outbound proxy refused the connection: HTTP 407", caplog)


def test_a_proxy_that_is_down_fails_the_call_saying_so(dns, settings, caplog):
    settings.OUTBOUND_PROXY_URL = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{free_port()}"

    with caplog.at_level(logging.DEBUG):
        error = failure("https://hooks.example.com/hook")

    assert isinstance(error, outbound.OutboundFailed)
    assert_failed_quietly(error, "outbound proxy unreachable: ConnectionRefusedError", caplog)


def test_a_silent_proxy_is_bounded_by_the_calls_deadline(dns, settings, caplog):
    with ConnectProxy(mode="silent") as proxy:
        settings.OUTBOUND_PROXY_URL = proxy.url()
        began = time.monotonic()

        error = failure("https://hooks.example.com/hook", timeout=1)

        took = time.monotonic() - began
    assert isinstance(error, outbound.OutboundTimeout)
    assert_failed_quietly(error, "timed out after 1 s", caplog)
    assert 0.9 <= took < 10  # the proxy stays silent for 30 s


@pytest.mark.parametrize(
    "value",
    [
        f"https://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128",  # TLS to the proxy itself is not spoken
        f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal",  # no port
        f"{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:3128",
        f"http://{PROXY_USER}:{PROXY_PASSWORD}@proxy.internal:port",
    ],
)
def test_a_malformed_proxy_url_stops_start_up_naming_the_variable_and_not_its_value(value):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "OUTBOUND_PROXY_URL": value},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0 and "started" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: OUTBOUND_PROXY_URL must be http://host:port or "
        "http://user:password@host:port"
    )
    assert PROXY_PASSWORD not in result.stderr


# ------------------------------------------------------------------------------------------------------------
# Certificates made for the run
# ------------------------------------------------------------------------------------------------------------
def certificates_for(name: str, directory) -> tuple[str, tuple[str, str]]:
    """A certificate authority (its PEM file, to trust) and a certificate for ``name`` it signed (certificate and
    key files, for the receiver)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test run authority")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "authority.pem", directory / "leaf.pem", directory / "leaf.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(paths[0]), (str(paths[1]), str(paths[2]))
