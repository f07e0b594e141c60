"""Where a forward gets the network token it fills in (``{{ networkToken.* }}``): from the networks app, which sits
above the vault and fills this registry in its AppConfig.ready (networks/forwarding.py), as the vault fills the
key ring's for the apps below it (``core.crypto.key_ring_use``).

The source promises a fresh cryptogram for each call: it is made (and audited, and counted as a use of the card's
token) by the networks app's own cryptogram service, for an ACTIVE network token of this merchant made from this
very card token. Anything else is its domain error (NotFound for a network token of another merchant or another
card, its ``tokenNotActive`` for one not ACTIVE, its ``networkUnavailable`` when the token service fails).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from core.audit import Actor
from merchants.models import Merchant
from vault.models import Token


@dataclass(frozen=True)
class NetworkTokenCard:
    """What a forward may fill in of a network token. Never logged: the number and cryptogram are kept out of the
    repr."""

    number: str = field(repr=False)
    expiry_month: int
    expiry_year: int
    cryptogram: str = field(repr=False)
    eci: str


NetworkTokenSource = Callable[..., NetworkTokenCard]
_source: NetworkTokenSource | None = None


def network_token_source_use(source: NetworkTokenSource) -> None:
    """Register the function a forward asks for a network token:
    ``source(*, merchant, token, network_token_id, actor) -> NetworkTokenCard``."""
    global _source
    _source = source


def network_token_card(*, merchant: Merchant, token: Token, network_token_id: str, actor: Actor) -> NetworkTokenCard:
    """The merchant's network token ``network_token_id`` of ``token``, with a cryptogram made for this call (see the
    module's docstring for what it raises)."""
    if _source is None:
        raise RuntimeError("no network token source is registered: is the networks app installed?")
    return _source(merchant=merchant, token=token, network_token_id=network_token_id, actor=actor)
