from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.audit import Actor
from vault import keys
from vault.crypto import KeysUnavailable
from vault.kek import kek_provider


class Command(BaseCommand):
    help = (
        "Re-wrap every stored key (the data encryption keys and the fingerprint key) under the KEK provider's current "
        "KEK: VAULT_KEK (or VAULT_KEK_COMPONENTS), with the old one in VAULT_KEK_PREVIOUS; or PKCS11_KEY_LABEL, the "
        "old key still in the HSM. Touches the keys only, never a card: seconds, whatever their number. Idempotent; "
        "safe while the API serves. Then the old KEK may be destroyed (see what this prints)."
    )

    def handle(self, *args, **options):
        provider = kek_provider()
        self.stdout.write(f"Re-wrapping under {provider.describe()}")
        try:
            rotation = keys.kek_rotate(actor=Actor("command:rotate_kek"))
        except KeysUnavailable as exc:
            raise CommandError(f"{exc}; nothing more was re-wrapped: run rotate_kek again once it is fixed") from None
        self.stdout.write(self.style.SUCCESS(f"Re-wrapped {len(rotation.rewrapped)} key(s) under {rotation.to_kek}"))
        in_use = keys.keks_in_use()
        for old in rotation.from_keks:
            if old not in in_use:
                self.stdout.write(f"No key is wrapped under {old} any more. {self._destroy_hint(old)}")
        awaiting = keys.keys_awaiting_migration()
        if awaiting:
            self.stdout.write(f"Not wrapped yet (run migrate_keys_to_kek): {', '.join(awaiting)}")

    @staticmethod
    def _destroy_hint(old: str) -> str:
        # A backup of the database holds the keys as they were wrapped then: destroying their KEK makes it useless.
        keep = "Keep it as long as you keep backups made before this rotation; then destroy it"
        if settings.VAULT_KEK_PROVIDER == "local":
            return f"{keep}: remove it from VAULT_KEK_PREVIOUS everywhere and from your secret store."
        if settings.VAULT_KEK_PROVIDER == "pkcs11":
            label = old.removeprefix("pkcs11:")
            return (
                f"{keep}: delete the key labelled {label!r} from token {settings.PKCS11_TOKEN_LABEL!r} with the HSM's "
                f"tools (e.g. pkcs11-tool --login --delete-object --type secrkey --label {label})."
            )
        return f"{keep}, as your key manager does."
