"""Token service providers, one module per network, behind ``base.SimulatedProvider``'s contract."""

from networks.tsp.amex import AmexProvider
from networks.tsp.base import CardData, Declined, Provisioned, ProvisionRequest, TspError
from networks.tsp.mastercard import MastercardProvider
from networks.tsp.visa import VisaProvider

PROVIDERS = {provider.network: provider for provider in (VisaProvider(), MastercardProvider(), AmexProvider())}

__all__ = ["PROVIDERS", "CardData", "Declined", "ProvisionRequest", "Provisioned", "TspError", "provider_for"]


def provider_for(network: str):
    """The provider of ``network``, or None for networks without a token service here."""
    return PROVIDERS.get(network)
