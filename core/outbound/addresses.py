"""Outbound calls (webhooks, forwarding) may only reach the public internet.

An address is acceptable when it is globally routable unicast: that one test refuses private, loopback,
link-local (and with it the 169.254.169.254 metadata service), CGNAT (100.64/10), multicast, unspecified, reserved
and documentation ranges, in IPv4 and IPv6 alike, and IPv4 addresses smuggled inside IPv6 (``::ffff:10.0.0.1``,
NAT64) are judged as the IPv4 address they carry. IPv6 outside the global unicast block is refused too, though
Python counts some of it global: the deprecated IPv4-compatible form (``::10.0.0.1``, which a host with an automatic
tunnel still sends to the IPv4 address), the rest of ``::/8`` and the unassigned blocks, and site-local
``fec0::/10`` (deprecated, and private in use). ``WEBHOOK_ALLOW_LOOPBACK`` lets loopback through, for local
development and tests, and nothing else (the setting keeps its first user's name: it governs every outbound call).

The port must be 80, 443, or 1024 and above, where web servers listen: the ports below 1024 are SSH's, SMTP's,
DNS's and the like, which an outbound call must not be made to talk to (port 0 is no port at all). Loopback, where
it is allowed, takes any port but 0: a developer's receiver listens where it likes, and the demo's endpoints point
at the discard port. A URL is printable ASCII: spaces, control characters (CR and LF split a request line into
headers) and non-ASCII characters are refused rather than dropped or encoded on the way, so the URL that is stored
and shown is the one connected to.

The check runs when a URL is saved (a webhook endpoint, a forwarding destination) and again at connect time, on the
addresses the connection will use (``vetted_addresses``), so a name that resolves to a public address at save time
and to a private one later (DNS rebinding) is still refused. Through an outbound proxy (``OUTBOUND_PROXY_URL``) the
check is the same and comes first: the proxy is asked for a tunnel to the vetted address, never to the name
(core/outbound/client.py).
"""

import ipaddress
import re
import socket
from urllib.parse import urlsplit

from django.conf import settings

NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
WEB_PORTS = {80, 443}
FIRST_UNPRIVILEGED_PORT = 1024
PORT_REFUSED = "The URL's port must be 80, 443, or 1024 and above"
# Anything but printable ASCII: not part of a URL (RFC 3986), and urlsplit drops tabs, CR and LF without a word.
NOT_PRINTABLE_ASCII = re.compile(r"[^\x21-\x7e]")


class UnsafeUrl(Exception):
    """The URL is malformed or reaches an address outbound calls must not reach. The message is safe to show."""


def _embedded_ipv4(address):
    if address.version == 6:
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address in NAT64:
            return ipaddress.ip_address(int(address) & 0xFFFFFFFF)
        if address.sixtofour:
            return address.sixtofour
        if address.teredo:
            return address.teredo[1]
    return address


def address_allowed(address) -> bool:
    address = _embedded_ipv4(ipaddress.ip_address(address))
    if address in METADATA:
        return False
    if address.is_loopback:
        return settings.WEBHOOK_ALLOW_LOOPBACK
    if address.version == 6 and (address.is_reserved or address.is_site_local):
        return False  # outside the global unicast block 2000::/3 (IPv4-compatible ::/96 included), or fec0::/10
    return address.is_global and not address.is_multicast


def port_allowed(port: int, address) -> bool:
    """Web ports and unprivileged ones; any port on loopback where loopback is allowed (``address_allowed``)."""
    if port in WEB_PORTS or port >= FIRST_UNPRIVILEGED_PORT:
        return True
    return _embedded_ipv4(ipaddress.ip_address(address)).is_loopback and settings.WEBHOOK_ALLOW_LOOPBACK


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL, or UnsafeUrl."""
    if NOT_PRINTABLE_ASCII.search(url):
        raise UnsafeUrl(
            "The URL must not contain spaces, control characters or non-ASCII characters (percent-encode them)"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The URL is not valid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("The URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("The URL must not carry credentials")
    if port == 0:
        raise UnsafeUrl(PORT_REFUSED)
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def vetted_addresses(url: str) -> list[str]:
    """Resolve the URL's host; every address it resolves to must be allowed. Returns them, in resolver order."""
    _, host, port = split_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeUrl("The URL's host does not resolve") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise UnsafeUrl("The URL's host does not resolve")
    for address in (address.split("%")[0] for address in addresses):
        if not address_allowed(address):
            raise UnsafeUrl("The URL resolves to a private, loopback, link-local or otherwise internal address")
        if not port_allowed(port, address):
            raise UnsafeUrl(PORT_REFUSED)
    return addresses
