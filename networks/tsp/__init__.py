"""Token service providers: one module per simulated network, behind ``base.TokenService``'s contract; real
integrations plug in through ``TSP_PROVIDERS``."""

import functools

from django.conf import settings
from django.utils.module_loading import import_string

from networks.tsp.amex import AmexProvider
from networks.tsp.base import CardData, Declined, Provisioned, ProvisionRequest, TokenService, TspError
from networks.tsp.mastercard import MastercardProvider
from networks.tsp.visa import VisaProvider

SIMULATORS = {provider.network: provider for provider in (VisaProvider(), MastercardProvider(), AmexProvider())}
# The networks that have a token service at all: the others (Discover, JCB, …) are networkNotSupported.
NETWORKS_WITH_TOKEN_SERVICES = tuple(SIMULATORS)

__all__ = [
    "NETWORKS_WITH_TOKEN_SERVICES",
    "CardData",
    "Declined",
    "NotConfigured",
    "ProvisionRequest",
    "Provisioned",
    "TokenService",
    "TspError",
    "provider_for",
    "unconfigured_networks",
]


class NotConfigured(Exception):
    """The network has a token service, but this installation has none configured for it."""


@functools.cache
def _integration(path: str) -> TokenService:
    # One per process, as the simulators: an integration may hold connections or credentials worth keeping.
    return import_string(path)()


def _configured(network: str) -> TokenService | None:
    if settings.TSP_SIMULATOR:
        return SIMULATORS[network]
    path = settings.TSP_PROVIDERS.get(network)
    return _integration(path) if path else None


def provider_for(network: str) -> TokenService | None:
    """The token service of ``network``; None for networks without one. Raises ``NotConfigured`` for a network that
    has one when neither the simulator (``TSP_SIMULATOR``) nor a real integration (``TSP_PROVIDERS``) is set up."""
    if network not in NETWORKS_WITH_TOKEN_SERVICES:
        return None
    provider = _configured(network)
    if provider is None:
        raise NotConfigured(network)
    return provider


def unconfigured_networks() -> list[str]:
    """The networks whose token-service calls would answer networkNotConfigured (for the start-up warning)."""
    return [network for network in NETWORKS_WITH_TOKEN_SERVICES if _configured(network) is None]
