from django.apps import AppConfig
from django.core import checks


class VaultConfig(AppConfig):
    name = "vault"
    verbose_name = "Vault"

    def ready(self):
        from django.core.signals import setting_changed

        from core import crypto as core_crypto
        from vault import kek, keys

        setting_changed.connect(kek.reset_kek_provider)
        setting_changed.connect(keys.reset_custody)
        checks.register(kek_serves)
        checks.register(keys_match_data, checks.Tags.database)
        core_crypto.key_ring_use(keys.key_ring)  # the apps below the vault encrypt their secrets under it too
        # Fail at start-up, not at the first card, when VAULT_KEYS (kept for the move to key custody) is malformed.
        keys.legacy_keys()


def kek_serves(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: the KEK provider can serve (``KekProvider.verify``: a malformed VAULT_KEK, a wrong PIN, a
    missing HSM module, token or key are named here, in one line, with what to do).

    Where the product starts, its provider is checked once: ``runserver`` and every ``manage.py`` command that runs
    the system checks (``migrate``, ``check``...) stop on this Error; gunicorn's workers and Celery's workers, which
    run no checks, call ``verify`` themselves (``config/wsgi.py``, ``config/asgi.py``, ``config/celery.py``). A
    test process runs none of them, so it opens no HSM session it has no use for. ``kek_create``, which makes the
    KEK this check would find missing, runs without the checks.
    """
    from django.core.exceptions import ImproperlyConfigured

    from vault.kek import kek_provider

    try:
        kek_provider().verify()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), id="vault.E002")]
    return []


def keys_match_data(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """System check: the keys this process can get against those the data was written with, one Error per problem
    (``vault.keys.keys_problems``, every stored key unwrapped: a KEK that is not the data's is named here), and a
    Warning while keys of VAULT_KEYS await ``migrate_keys_to_kek``.

    Tagged ``database``, so it runs where Django runs database checks: ``manage.py migrate`` (before it migrates)
    and ``manage.py check --database default``. Other commands and ``runserver`` run their checks without a database
    (a build step's ``collectstatic`` must not need one); a process that serves finds the same problems on its first
    card operation, logs them and answers 503 ``keysNotReady`` (``vault.keys.key_ring``).
    """
    from django.db import connection

    from vault import keys
    from vault.models import DataKey

    if not databases or connection.alias not in databases:
        return []
    table = DataKey._meta.db_table
    with connection.cursor() as cursor:
        if table not in connection.introspection.table_names(cursor):
            return []  # a database migrated before the check values existed: nothing is recorded yet
        columns = {column.name for column in connection.introspection.get_table_description(cursor, table)}
    if "wrapped_key" not in columns:
        return []  # migrated before key custody: the check values are read once migrate has made the keys' table
    hint = (
        "Give this process the KEK the keys are wrapped under (VAULT_KEK, VAULT_KEK_PREVIOUS, or the PKCS11_ "
        'settings), and VAULT_KEYS / VAULT_FINGERPRINT_KEY for keys not wrapped yet: see the README\'s "Key custody". '
        "Card operations answer 503 until then."
    )
    errors = [checks.Error(problem, hint=hint, id="vault.E001") for problem in keys.keys_problems(every_key=True)]
    awaiting = keys.keys_awaiting_migration()
    if awaiting and not errors:
        errors.append(
            checks.Warning(
                f"{', '.join(awaiting)} not wrapped under the KEK yet: served from VAULT_KEYS / VAULT_FINGERPRINT_KEY",
                hint="Run manage.py migrate_keys_to_kek, then remove VAULT_KEYS and VAULT_FINGERPRINT_KEY.",
                id="vault.W001",
            )
        )
    return errors
