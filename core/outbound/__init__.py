"""Outbound HTTP: calls from the product to URLs merchants give it (webhooks, forwarding), only ever to public
addresses (``addresses``), with a deadline, a bounded answer and no redirects (``client``)."""

from core.outbound.addresses import UnsafeUrl, vetted_addresses
from core.outbound.client import (
    METHODS,
    Answer,
    Connection,
    OutboundFailed,
    OutboundTimeout,
    TransportError,
    UnsendableRequest,
    send,
)

__all__ = [
    "METHODS",
    "Answer",
    "Connection",
    "OutboundFailed",
    "OutboundTimeout",
    "TransportError",
    "UnsafeUrl",
    "UnsendableRequest",
    "send",
    "vetted_addresses",
]
