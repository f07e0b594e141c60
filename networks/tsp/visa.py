"""Visa Token Service, simulated. tokenId rule: the same tokenId for the same merchant, card and accountId, as long
as that token lives; once it is deleted, a new one."""

from networks.tsp.base import ProvisionRequest, SimulatedProvider, digits_from, keyed_digest, live_token_id


class VisaProvider(SimulatedProvider):
    network = "VISA"
    token_bin = "489537"
    eci = "05"
    par_prefix = "V001"

    def token_id_for(self, request: ProvisionRequest) -> str:
        def token_id(generation: int) -> str:
            digest = keyed_digest(
                "visa-token-id", request.merchant_id, request.card.number, request.account_id, str(generation)
            )
            return f"DNITHE{digits_from(digest, 20)}"

        return live_token_id(token_id)
