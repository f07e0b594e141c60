from django.apps import AppConfig


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Vault"

    def ready(self):
        from django.core.signals import setting_changed

        from vault import crypto, schema  # noqa: F401 - registers the OpenAPI description of API keys

        # Fail at start-up, not at the first card, when the key ring is malformed.
        crypto.key_ring()
        setting_changed.connect(crypto.reset_key_ring)
