from django.apps import AppConfig


class MerchantsConfig(AppConfig):
    name = "merchants"
    verbose_name = "Merchants"

    def ready(self):
        from merchants import schema  # noqa: F401 - registers the OpenAPI description of API keys
