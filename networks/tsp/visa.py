"""Visa Token Service, simulated. tokenId rule: the same tokenId for the same merchant, card and accountId."""

from networks.tsp.base import ProvisionRequest, SimulatedProvider, digits_from, keyed_digest


class VisaProvider(SimulatedProvider):
    network = "VISA"
    token_bin = "489537"
    eci = "05"
    par_prefix = "V001"

    def token_id_for(self, request: ProvisionRequest) -> str:
        digest = keyed_digest("visa-token-id", request.merchant_id, request.card.number, request.account_id)
        return f"DNITHE{digits_from(digest, 20)}"
