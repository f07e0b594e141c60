"""Webhook URLs may only reach the public internet.

An address is acceptable when it is globally routable unicast: that one test refuses private, loopback,
link-local (and with it the 169.254.169.254 metadata service), CGNAT (100.64/10), multicast, unspecified, reserved
and documentation ranges, in IPv4 and IPv6 alike, and IPv4 addresses smuggled inside IPv6 (``::ffff:10.0.0.1``,
NAT64) are judged as the IPv4 address they carry. ``WEBHOOK_ALLOW_LOOPBACK`` lets loopback through, for local
development and tests, and nothing else.

The check runs when an endpoint is saved and again at connect time, on the addresses the connection will use
(``vetted_addresses``), so a name that resolves to a public address at save time and to a private one later (DNS
rebinding) is still refused. Through an outbound proxy (``OUTBOUND_PROXY_URL``) the check is the same and comes
first: the proxy is asked for a tunnel to the vetted address, never to the name (notifications/transport.py).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

NAT64 = ipaddress.ip_network("64:ff9b::/96")
METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


class UnsafeUrl(Exception):
    """The URL is malformed or reaches an address webhooks must not reach. The message is safe to show."""


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
    return address.is_global and not address.is_multicast


def split_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of an http(s) URL, or UnsafeUrl."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeUrl("The URL is not valid") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl("The URL must be http:// or https:// with a host")
    if parts.username or parts.password:
        raise UnsafeUrl("The URL must not carry credentials")
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
    for address in addresses:
        if not address_allowed(address.split("%")[0]):
            raise UnsafeUrl("The URL resolves to a private, loopback, link-local or otherwise internal address")
    return addresses
