"""The network tokens a forward fills in (``{{ networkToken.* }}``): the vault asks through the registry it keeps
(``vault.forwarding.network_tokens``), filled in by this app's ready(), since the vault cannot import the app above
it."""

from core.audit import Actor
from core.errors import NotFound
from merchants.models import Merchant
from networks import selectors, services
from vault.forwarding.network_tokens import NetworkTokenCard
from vault.models import Token


def network_token_for_forward(
    *, merchant: Merchant, token: Token, network_token_id: str, actor: Actor
) -> NetworkTokenCard:
    """The merchant's network token ``network_token_id``, made from the card of ``token``, with a cryptogram made
    now by ``cryptogram_create`` (audited, a use of ``token``; its tokenNotActive for a token not ACTIVE, its
    TspUnavailable when the token service fails). A network token of another merchant, or of another card, is
    NotFound alike: the forward must fill in this card's."""
    network_token = selectors.network_token_get(merchant=merchant, token_id=network_token_id)
    if network_token.vault_token_id != token.pk:
        raise NotFound("The network token does not exist")
    cryptogram = services.cryptogram_create(token=network_token, actor=actor, reveal_number=True)
    return NetworkTokenCard(
        number=cryptogram.token_number,
        expiry_month=network_token.token_expiry_month,
        expiry_year=network_token.token_expiry_year,
        cryptogram=cryptogram.cryptogram,
        eci=cryptogram.eci,
    )
