"""American Express Token Service, simulated. tokenId rule: the same tokenId for the same merchant, card, accountId
and email (an email is required), as long as that token lives; once it is deleted, a new one."""

from networks.tsp.base import ProvisionRequest, SimulatedProvider, digits_from, keyed_digest, live_token_id


class AmexProvider(SimulatedProvider):
    network = "AMEX"
    token_bin = "374245"
    token_length = 15
    eci = "05"
    par_prefix = "A001"
    requires_email = True

    def token_id_for(self, request: ProvisionRequest) -> str:
        def token_id(generation: int) -> str:
            digest = keyed_digest(
                "amex-token-id",
                request.merchant_id,
                request.card.number,
                request.account_id,
                request.email.lower(),
                str(generation),
            )
            return f"AETS{digits_from(digest, 22)}"

        return live_token_id(token_id)
