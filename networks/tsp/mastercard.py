"""Mastercard Digital Enablement Service, simulated. tokenId rule: a new tokenId for every request."""

import secrets

from networks.tsp.base import ProvisionRequest, SimulatedProvider


class MastercardProvider(SimulatedProvider):
    network = "MASTERCARD"
    token_bin = "522000"
    eci = "02"
    par_prefix = "5001"

    def token_id_for(self, request: ProvisionRequest) -> str:
        return f"DM4MMC{secrets.token_hex(16).upper()}"
