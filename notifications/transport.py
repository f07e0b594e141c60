"""Sending one webhook request: to a vetted address only, no redirects, a hard deadline, a bounded body.

``send`` promises: it connects only to an address ``ssrf.vetted_addresses`` approved a moment before (so DNS cannot
change its mind in between), never follows a redirect (a 3xx comes back as it is), gives up after ``timeout``
seconds in all (connect, send and read together), and reads at most ``MAX_BODY`` bytes of the answer. Failures to
get an answer at all raise ``TransportError``.
"""

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from notifications import ssrf

MAX_BODY = 20 * 1024


class TransportError(Exception):
    """No HTTP answer: refused address, DNS failure, connection error or timeout. The message is safe to store."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, address, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def send(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> Answer:
    deadline = time.monotonic() + timeout
    try:
        scheme, host, port = ssrf.split_url(url)
        address = ssrf.vetted_addresses(url)[0]
    except ssrf.UnsafeUrl as exc:
        raise TransportError(f"refused: {exc}") from None
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(host, port, address, timeout)
    try:
        connection.request(
            "POST", target, body=body,
            headers={**headers, "Content-Type": "application/json", "User-Agent": "tokenvault-webhooks/1"},
        )
        # The response may take the socket over from the connection: keep our own handle for the deadline.
        sock = connection.sock
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        response = connection.getresponse()
        chunks, size = [], 0
        while size < MAX_BODY:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = response.read1(MAX_BODY - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return Answer(
            status=response.status,
            headers={name.lower(): value for name, value in response.getheaders()},
            body=b"".join(chunks)[:MAX_BODY].decode("utf-8", "replace"),
        )
    except (TimeoutError, socket.timeout):
        raise TransportError(f"timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise TransportError(f"connection failed: {type(exc).__name__}") from None
    finally:
        connection.close()
