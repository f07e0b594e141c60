from django.apps import AppConfig


class NetworksConfig(AppConfig):
    name = "networks"
    verbose_name = "Networks"

    def ready(self):
        from networks import jwe

        # Fail at start-up, not at the first encrypted card, when the JWE key is malformed.
        jwe.private_key()
