"""Outbound HTTP requests: to a vetted address only, no redirects, a hard deadline, a bounded answer.

Every request promises: it connects only to an address ``addresses.vetted_addresses`` approved a moment before
(each connect, reconnects included, vets the URL again, so DNS cannot change its mind in between), never follows a
redirect (a 3xx comes back as it is), gives up after ``timeout`` seconds in all (connect, tunnel, send and read
together), and reads at most ``max_body`` bytes of the answer (``Answer.truncated`` says there was more: whether
that is acceptable is the caller's call). With ``OUTBOUND_PROXY_URL`` set, the connection is a tunnel through the
proxy to the vetted address (core/outbound/tunnel.py). Failing to get an answer raises ``OutboundTimeout`` or
``OutboundFailed``, whose messages are safe to store or show: they name what failed, never the URL, a header value,
the body or the proxy's credentials (a forwarded request carries card data in its headers and body).

``send`` makes one request on a connection of its own (forwarding). A ``Connection`` sends requests to one URL, one
after the other, over one kept-alive connection when the receiver keeps it open (a worker sends a batch of webhook
deliveries to an endpoint this way, without a TCP and TLS handshake each).

The client is http.client with a connect hook, not urllib3: what makes it safe (vetting and pinning at connect, the
CONNECT to an IP, one deadline over the whole exchange, the body cap, messages without secrets) would be written by
hand on urllib3 too, on its private ``_new_conn``, and its wrapped exceptions unwrapped again for the messages.
"""

import http.client
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from core.outbound import addresses, tunnel

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# The client frames the request and names its host: a caller's value for these would contradict it (a second
# Content-Length smuggles a request, a Host of its own reaches another site at the vetted address).
OWN_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "proxy-connection", "te", "upgrade"}
)
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a token (RFC 9110 5.6.2)
HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # visible characters, spaces and tabs (RFC 9110 5.5)


class TransportError(Exception):
    """No HTTP answer. The message is safe to store and to show."""


class OutboundTimeout(TransportError):
    """The deadline passed before the whole answer was in (a forward answers 504)."""


class OutboundFailed(TransportError):
    """Refused address, DNS, connection, proxy or TLS failure (a forward answers 502)."""


class UnsendableRequest(ValueError):
    """The request cannot be sent as given (its method, a header's name or value). The message names the part,
    never its value, which may be card data."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names in lower case; of a repeated header, the last
    body: bytes  # at most max_body bytes
    truncated: bool  # the answer's body was longer than max_body: the rest was not read


def send(
    *, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout: float, max_body: int
) -> Answer:
    """One request on a connection of its own, with the promises of the module. Raises ``OutboundTimeout``,
    ``OutboundFailed``, or ``UnsendableRequest`` before anything is sent."""
    with Connection(url, timeout=timeout, max_body=max_body) as connection:
        return connection.send(method=method, headers=headers, body=body)


# No answer because the receiver closed the connection (http.client.RemoteDisconnected is a ConnectionResetError).
_CLOSED_BY_RECEIVER = (ConnectionResetError, BrokenPipeError)


class _Refused(OSError):
    """The URL failed its vetting at connect time (carries the addresses.UnsafeUrl message)."""


def _vetted_socket(url: str, port: int, timeout: float) -> socket.socket:
    """A socket connected to an address ``addresses.vetted_addresses`` approved just now: directly, or through a
    tunnel of the outbound proxy to that very address."""
    deadline = time.monotonic() + timeout
    try:
        address = addresses.vetted_addresses(url)[0]
    except addresses.UnsafeUrl as exc:
        raise _Refused(str(exc)) from None
    proxy = tunnel.outbound_proxy()
    if proxy is None:
        sock = socket.create_connection((address, port), timeout)
    else:
        sock = tunnel.tunnel(proxy, address, port, deadline)
    # http.client writes the headers and the body separately: without this, on a kept-alive connection the body
    # waits for the receiver's delayed ACK of the headers (40 ms a request on Linux). urllib3 does the same.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, url, host, port, timeout):
        super().__init__(host, port, timeout=timeout)
        self._url = url

    def connect(self):
        self.sock = _vetted_socket(self._url, self.port, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, url, host, port, timeout):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._url = url

    def connect(self):
        sock = _vetted_socket(self._url, self.port, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _check_request(method: str, headers: dict[str, str]) -> None:
    if method not in METHODS:
        raise UnsendableRequest("The method must be one of " + ", ".join(sorted(METHODS)))
    for name, value in headers.items():
        if not HEADER_NAME.fullmatch(name):
            raise UnsendableRequest("A header name is not an HTTP token")
        if name.lower() in OWN_HEADERS:
            raise UnsendableRequest(f"The {name.lower()} header is the client's to set")
        if not HEADER_VALUE.fullmatch(value):
            raise UnsendableRequest(f"The {name.lower()} header's value holds a line break or control character")


class Connection:
    """Requests to ``url``, one at a time, reusing the connection while the receiver keeps it alive.

    Use it as a context manager (it closes the socket at the end). Not thread-safe: one per worker and endpoint.
    """

    def __init__(self, url: str, *, timeout: float, max_body: int):
        self.timeout = timeout
        self.max_body = max_body
        self._http = None
        try:
            scheme, host, port = addresses.split_url(url)
        except addresses.UnsafeUrl as exc:
            self._refused = f"refused: {exc}"
            return
        self._refused = ""
        parts = urlsplit(url)
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection_class = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
        self._http = connection_class(url, host, port, timeout)
        self._answered = False  # the open socket has carried a whole exchange: the receiver may have closed it since

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def send(self, *, method: str, headers: dict[str, str], body: bytes | None) -> Answer:
        """The answer to one request. Raises ``OutboundTimeout``, ``OutboundFailed``, or ``UnsendableRequest``
        before anything is sent."""
        _check_request(method, headers)
        if self._refused:
            raise OutboundFailed(self._refused)
        deadline = time.monotonic() + self.timeout
        reused = self._answered and self._http.sock is not None
        try:
            try:
                return self._exchange(method, headers, body, deadline)
            except _CLOSED_BY_RECEIVER:
                if not reused:
                    raise
                # A kept-alive connection the receiver closed between two requests fails before any answer: send
                # once more on a fresh one, as HTTP clients do. (Should the receiver have had the first copy after
                # all, it gets the request twice: webhooks are delivered at least once, with an id to tell.)
                self._http.close()
                return self._exchange(method, headers, body, deadline)
        except _CLOSED_BY_RECEIVER as exc:
            self.close()
            raise OutboundFailed(f"connection failed: {type(exc).__name__}") from None
        except BaseException:
            self.close()  # whatever the state of the socket, it is not fit for another request
            raise

    def _exchange(self, method: str, headers: dict[str, str], body: bytes | None, deadline: float) -> Answer:
        connection = self._http
        self._answered = False
        try:
            if connection.sock is not None:
                connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.timeout = max(0.001, deadline - time.monotonic())  # for a (re)connect
            connection.request(method, self._target, body=body, headers=headers)
            # The response may take the socket over from the connection: keep our own handle for the deadline.
            sock = connection.sock
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            response = connection.getresponse()
            chunks, size = [], 0
            while size < self.max_body:
                sock.settimeout(tunnel.remaining(deadline))
                chunk = response.read1(self.max_body - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            truncated = False
            if response.length == 0:
                response.read()  # the whole body is in: let the response release the connection for the next one
            elif size >= self.max_body and not response.isclosed():
                if response.length is None:  # chunked, or until the receiver closes: is there more?
                    try:
                        sock.settimeout(tunnel.remaining(deadline))
                        truncated = bool(response.read1(1))
                    except TimeoutError:
                        truncated = True  # the body is not over, and what we keep of it is in
                else:
                    truncated = True
            if not response.isclosed():
                # More body than we keep: the rest would sit in front of the next answer.
                response.close()
                connection.close()
            self._answered = True
            return Answer(
                status=response.status,
                headers={name.lower(): value for name, value in response.getheaders()},
                body=b"".join(chunks)[: self.max_body],
                truncated=truncated,
            )
        except _Refused as exc:
            raise OutboundFailed(f"refused: {exc}") from None
        except tunnel.ProxyFailed as exc:
            raise OutboundFailed(str(exc)) from None
        except TimeoutError:
            raise OutboundTimeout(f"timed out after {self.timeout:g} s") from None
        except _CLOSED_BY_RECEIVER:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise OutboundFailed(f"connection failed: {type(exc).__name__}") from None
