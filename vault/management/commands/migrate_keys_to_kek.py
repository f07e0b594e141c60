from django.core.management.base import BaseCommand, CommandError

from core.audit import Actor
from vault import keys
from vault.crypto import KeysUnavailable
from vault.kek import kek_provider


class Command(BaseCommand):
    help = (
        "Move an installation from VAULT_KEYS to key custody: wrap the keys of VAULT_KEYS and VAULT_FINGERPRINT_KEY "
        "under the KEK, with the versions and check values the data was written with (no card is touched, every "
        "fingerprint stays). Idempotent; safe while the API serves. Afterwards VAULT_KEYS, VAULT_ACTIVE_KEY_VERSION "
        "and VAULT_FINGERPRINT_KEY may leave the environment."
    )

    def handle(self, *args, **options):
        try:
            migration = keys.keys_migrate_to_kek(actor=Actor("command:migrate_keys_to_kek"))
        except KeysUnavailable as exc:
            raise CommandError(f"{exc}; nothing was wrapped") from None
        if migration.wrapped:
            self.stdout.write(
                self.style.SUCCESS(f"Wrapped under {kek_provider().describe()}: {', '.join(migration.wrapped)}")
            )
            self.stdout.write(
                "VAULT_KEYS, VAULT_ACTIVE_KEY_VERSION and VAULT_FINGERPRINT_KEY may now leave the environment of every "
                "process (restart them with the KEK alone); keep them with the backups made before this migration."
            )
        else:
            self.stdout.write("Nothing to wrap: every stored key is wrapped under a KEK already.")
