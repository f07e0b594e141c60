from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"
    verbose_name = "Back office"

    def ready(self):
        from backoffice import staff_audit

        staff_audit.connect()  # staff permission and group changes are audit rows, whoever makes them
