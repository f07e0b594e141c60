"""Outbound calls through an egress proxy (``OUTBOUND_PROXY_URL``): a CONNECT tunnel to the vetted address itself.

Closed networks reach the internet through an egress proxy only. Every connection, to an https or a plain http URL
alike, is then a CONNECT tunnel through the proxy to the IP and port the address guard approved (RFC 9110 9.3.6):
the proxy is given no name to resolve, so neither DNS rebinding nor the proxy's own resolver can lead a request to
an internal address. Inside the tunnel nothing changes (core/outbound/client.py): TLS is with the URL's host, the
Host header is the URL's. The proxy's address and credentials never appear in an error: they are configuration, and
errors are stored (a webhook delivery's) or answered (a forward's).
"""

import base64
import socket
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.conf import settings

# The proxy's answer to CONNECT is a status line and a few headers: more than this is no proxy we should talk to.
MAX_PROXY_ANSWER = 16 * 1024


class ProxyFailed(OSError):
    """The outbound proxy could not be reached or would not open the tunnel (the message is safe to store)."""


@dataclass(frozen=True)
class Proxy:
    host: str
    port: int
    authorization: str  # the Proxy-Authorization header's value, or "" when the URL carries no credentials


def outbound_proxy() -> Proxy | None:
    """``OUTBOUND_PROXY_URL`` (checked at start-up by the settings), or None when calls go out directly."""
    if not settings.OUTBOUND_PROXY_URL:
        return None
    parts = urlsplit(settings.OUTBOUND_PROXY_URL)
    authorization = ""
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode()
    return Proxy(parts.hostname, parts.port, authorization)


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (a ``time.monotonic`` value), or TimeoutError when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def tunnel(proxy: Proxy, address: str, port: int, deadline: float) -> socket.socket:
    """A socket through ``proxy`` to ``address:port`` (an IP: the proxy resolves nothing), once the proxy answered
    CONNECT with a 2xx. Timeouts are the call's (TimeoutError); any other failure is a ``ProxyFailed``."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), remaining(deadline))
    except TimeoutError:
        raise
    except OSError as exc:
        raise ProxyFailed(f"outbound proxy unreachable: {type(exc).__name__}") from None
    try:
        target = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if proxy.authorization:
            head += f"Proxy-Authorization: {proxy.authorization}\r\n"
        sock.settimeout(remaining(deadline))
        sock.sendall(f"{head}\r\n".encode())
        status = _tunnel_status(sock, deadline)
    except (TimeoutError, ProxyFailed):
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise ProxyFailed(f"outbound proxy connection failed: {type(exc).__name__}") from None
    if not 200 <= status < 300:  # any 2xx opens the tunnel (RFC 9110 15.3)
        sock.close()
        raise ProxyFailed(f"outbound proxy refused the connection: HTTP {status}")
    return sock


def _tunnel_status(sock: socket.socket, deadline: float) -> int:
    """The status of the proxy's answer to CONNECT, read up to the end of its headers and not a byte further (what
    follows a 200 is the destination's)."""
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        if len(answer) >= MAX_PROXY_ANSWER:
            raise ProxyFailed("outbound proxy answered CONNECT with no end of headers")
        sock.settimeout(remaining(deadline))
        byte = sock.recv(1)
        if not byte:
            raise ProxyFailed("outbound proxy closed the connection before answering")
        answer += byte
    parts = answer.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ProxyFailed("outbound proxy gave no HTTP answer to CONNECT")
    return int(parts[1])
