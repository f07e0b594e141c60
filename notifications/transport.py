"""Sending webhook requests: to a vetted address only, no redirects, a hard deadline, a bounded body.

A ``Connection`` sends requests to one URL, one after the other, over one kept-alive HTTP connection when the
receiver keeps it open (a worker sends a batch of deliveries to an endpoint this way, without a TCP and TLS
handshake each). Every send promises: it connects only to an address ``ssrf.vetted_addresses`` approved a moment
before (each connect, reconnects included, vets the URL again, so DNS cannot change its mind in between), never
follows a redirect (a 3xx comes back as it is), gives up after ``timeout`` seconds in all (connect, send and read
together), and reads at most ``MAX_BODY`` bytes of the answer. Failures to get an answer at all raise
``TransportError``.

With ``OUTBOUND_PROXY_URL`` set (closed networks reach the internet through an egress proxy only), every connection,
to an https or a plain http URL alike, is a CONNECT tunnel through the proxy to the vetted address itself, the IP and
port (RFC 9110 9.3.6). The address is vetted here, before the proxy is asked, and the proxy is given no name to
resolve, so neither DNS rebinding nor the proxy's own resolver can lead a request to an internal address. Inside the
tunnel nothing changes: TLS is with the URL's host (its name for SNI and the certificate check), the Host header is
the URL's, and the tunnel is kept alive like a direct connection. The proxy's address and credentials never appear
in an error: they are configuration, and errors are stored with the delivery.
"""

import base64
import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings

from notifications import ssrf

MAX_BODY = 20 * 1024


class TransportError(Exception):
    """No HTTP answer: refused address, DNS failure, connection error or timeout. The message is safe to store."""


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


# No answer because the receiver closed the connection (http.client.RemoteDisconnected is a ConnectionResetError).
_CLOSED_BY_RECEIVER = (ConnectionResetError, BrokenPipeError)


class _Refused(OSError):
    """The URL failed its vetting at connect time (carries the ssrf.UnsafeUrl message)."""


class _ProxyFailed(OSError):
    """The outbound proxy could not be reached or would not open the tunnel (the message is safe to store)."""


# The proxy's answer to CONNECT is a status line and a few headers: more than this is no proxy we should talk to.
MAX_PROXY_ANSWER = 16 * 1024


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str  # the Proxy-Authorization header's value, or "" when the URL carries no credentials


def _outbound_proxy() -> _Proxy | None:
    """``OUTBOUND_PROXY_URL`` (checked at start-up by the settings), or None when calls go out directly."""
    if not settings.OUTBOUND_PROXY_URL:
        return None
    parts = urlsplit(settings.OUTBOUND_PROXY_URL)
    authorization = ""
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return _Proxy(parts.hostname, parts.port, authorization)


def _vetted_socket(url: str, port: int, timeout: float) -> socket.socket:
    """A socket connected to an address ``ssrf.vetted_addresses`` approved just now: directly, or through a tunnel
    of the outbound proxy to that very address."""
    deadline = time.monotonic() + timeout
    try:
        address = ssrf.vetted_addresses(url)[0]
    except ssrf.UnsafeUrl as exc:
        raise _Refused(str(exc)) from None
    proxy = _outbound_proxy()
    if proxy is None:
        sock = socket.create_connection((address, port), timeout)
    else:
        sock = _tunnel(proxy, address, port, deadline)
    # http.client writes the headers and the body separately: without this, on a kept-alive connection the body
    # waits for the receiver's delayed ACK of the headers (40 ms a request on Linux). urllib3 does the same.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    return remaining


def _tunnel(proxy: _Proxy, address: str, port: int, deadline: float) -> socket.socket:
    """A socket through ``proxy`` to ``address:port`` (an IP: the proxy resolves nothing), once the proxy answered
    CONNECT with a 2xx. Timeouts are the attempt's (TimeoutError); any other failure is a ``_ProxyFailed``."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), _remaining(deadline))
    except TimeoutError:
        raise
    except OSError as exc:
        raise _ProxyFailed(f"outbound proxy unreachable: {type(exc).__name__}") from None
    try:
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        sock.settimeout(_remaining(deadline))
        sock.sendall(f"{head}\r\n".encode())
        status = _tunnel_status(sock, deadline)
    except (TimeoutError, _ProxyFailed):
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise _ProxyFailed(f"outbound proxy connection failed: {type(exc).__name__}") from None
    if not 200 <= status < 300:  # any 2xx opens the tunnel (RFC 9110 15.3)
        sock.close()
        raise _ProxyFailed(f"outbound proxy refused the connection: HTTP {status}")
    return sock


def _tunnel_status(sock: socket.socket, deadline: float) -> int:
    """The status of the proxy's answer to CONNECT, read up to the end of its headers and not a byte further (what
    follows a 200 is the destination's)."""
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        if len(answer) >= MAX_PROXY_ANSWER:
            raise _ProxyFailed("outbound proxy answered CONNECT with no end of headers")
        sock.settimeout(_remaining(deadline))
        byte = sock.recv(1)
        if not byte:
            raise _ProxyFailed("outbound proxy closed the connection before answering")
        answer += byte
    parts = answer.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise _ProxyFailed("outbound proxy gave no HTTP answer to CONNECT")
    return int(parts[1])


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


class Connection:
    """Requests to ``url``, one at a time, reusing the connection while the receiver keeps it alive.

    Use it as a context manager (it closes the socket at the end). Not thread-safe: one per worker and endpoint.
    """

    def __init__(self, *, url: str, timeout: float):
        self.timeout = timeout
        self._http = None
        try:
            scheme, host, port = ssrf.split_url(url)
        except ssrf.UnsafeUrl as exc:
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

    def send(self, *, body: bytes, headers: dict[str, str]) -> Answer:
        if self._refused:
            raise TransportError(self._refused)
        deadline = time.monotonic() + self.timeout
        reused = self._answered and self._http.sock is not None
        try:
            try:
                return self._exchange(body, headers, deadline)
            except _CLOSED_BY_RECEIVER:
                if not reused:
                    raise
                # A kept-alive connection the receiver closed between two requests fails before any answer: send
                # once more on a fresh one, as HTTP clients do. (Delivery is at least once: should the receiver have
                # had the first copy after all, it gets the same webhook-id twice.)
                self._http.close()
                return self._exchange(body, headers, deadline)
        except _CLOSED_BY_RECEIVER as exc:
            self.close()
            raise TransportError(f"connection failed: {type(exc).__name__}") from None
        except BaseException:
            self.close()  # whatever the state of the socket, it is not fit for another request
            raise

    def _exchange(self, body: bytes, headers: dict[str, str], deadline: float) -> Answer:
        connection = self._http
        self._answered = False
        try:
            if connection.sock is not None:
                connection.sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.timeout = max(0.001, deadline - time.monotonic())  # for a (re)connect
            connection.request(
                "POST",
                self._target,
                body=body,
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
            if response.length == 0:
                response.read()  # the whole body is in: let the response release the connection for the next one
            if not response.isclosed():
                # More body than we keep: the rest would sit in front of the next answer.
                response.close()
                connection.close()
            self._answered = True
            return Answer(
                status=response.status,
                headers={name.lower(): value for name, value in response.getheaders()},
                body=b"".join(chunks)[:MAX_BODY].decode("utf-8", "replace"),
            )
        except _Refused as exc:
            raise TransportError(f"refused: {exc}") from None
        except _ProxyFailed as exc:
            raise TransportError(str(exc)) from None
        except TimeoutError:
            raise TransportError(f"timed out after {self.timeout:g} s") from None
        except _CLOSED_BY_RECEIVER:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise TransportError(f"connection failed: {type(exc).__name__}") from None
