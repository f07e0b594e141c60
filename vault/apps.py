from django.apps import AppConfig
from django.core import checks


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Vault"

    def ready(self):
        from django.core.signals import setting_changed

        from core import crypto as core_crypto
        from vault import crypto, keys

        # Fail at start-up, not at the first card, when the key ring is malformed (no database here: the keys are
        # checked against the data on the first card operation, and by keys_match_data below).
        crypto.configured_key_ring()
        setting_changed.connect(crypto.reset_key_ring)
        checks.register(keys_match_data, checks.Tags.database)
        core_crypto.key_ring_use(keys.key_ring)  # the apps below the vault encrypt their secrets under it too


def keys_match_data(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: the keys of this process against the check values stored with the data, one Error per problem.

    Tagged ``database``, so it runs where Django runs database checks: ``manage.py migrate`` (before it migrates)
    and ``manage.py check --database default``. Other commands and ``runserver`` run their checks without a database
    (a build step's ``collectstatic`` must not need one); a process that serves finds the same problems on its first
    card operation, logs them and answers 503 ``keysNotReady`` (``vault.keys.keys_verify``).
    """
    from django.db import connection

    from vault import selectors
    from vault.models import KeyCheck

    if not databases or connection.alias not in databases:
        return []
    if KeyCheck._meta.db_table not in connection.introspection.table_names():
        return []  # a database migrated before the key checks existed: nothing is recorded yet
    return [
        checks.Error(
            problem,
            hint="Give this process the keys the data was written with (VAULT_KEYS, VAULT_ACTIVE_KEY_VERSION, "
            'VAULT_FINGERPRINT_KEY): see the README\'s "Backup and restore". Card operations answer 503 '
            "until then.",
            id="vault.E001",
        )
        for problem in selectors.key_ring_problems()
    ]
