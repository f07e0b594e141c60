from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self):
        from django.core import checks

        from backoffice import metrics, staff_audit

        staff_audit.connect()  # staff permission and group changes are audit rows, whoever makes them
        checks.register(metrics.metrics_protected, checks.Tags.security)
