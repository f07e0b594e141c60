import logging

from django.apps import AppConfig

logger = logging.getLogger(__name__)


class NetworksConfig(AppConfig):
    name = "networks"
    verbose_name = "Networks"

    def ready(self):
        from networks import jwe, tsp
        from networks.forwarding import network_token_for_forward
        from vault.forwarding.network_tokens import network_token_source_use

        # Fail at start-up, not at the first encrypted card, when the JWE key is malformed.
        jwe.private_key()
        if missing := tsp.unconfigured_networks():
            logger.warning(
                "no token service is configured for %s: network-token calls for their cards answer 503 "
                "networkNotConfigured (set TSP_PROVIDERS, or TSP_SIMULATOR=true outside production)",
                ", ".join(missing),
            )
        network_token_source_use(network_token_for_forward)  # the vault's forwards fill in network tokens
