import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.audit import Actor
from vault import keys
from vault.crypto import KeysUnavailable


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (card numbers, network token numbers, secrets) under the active data "
        "encryption key (DEK), then retire the DEK versions no value is left under. With --new-dek, start a new DEK "
        "first (a new one also starts by itself at the end of a cryptoperiod: VAULT_DEK_MAX_AGE_DAYS, "
        "VAULT_DEK_MAX_USES). Safe to interrupt and rerun; the API keeps serving meanwhile."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--new-dek", action="store_true", help="start a new DEK now, and move every value to it")

    def handle(self, *args, batch_size: int, new_dek: bool, **options):
        actor = Actor("command:rotate_keys")
        try:
            if new_dek:
                version = keys.dek_create(actor=actor, reason="started by rotate_keys --new-dek")
                self.stdout.write(f"Started data encryption key version {version}")
            active = keys.key_ring().active_version
            pending = keys.values_on_other_versions(active)
            self.stdout.write(f"Rotating {pending} encrypted value(s) to key version {active}")
            with tqdm(total=pending, unit="value", disable=None, file=sys.stderr) as bar:
                rotation = keys.keys_rotate(batch_size=batch_size, on_batch=bar.update, actor=actor)
        except KeysUnavailable as exc:
            raise CommandError(f"{exc}; run rotate_keys again once it is fixed") from None
        left = keys.values_on_other_versions(active)
        self.stdout.write(self.style.SUCCESS(f"Rotated {rotation.rotated} value(s); {left} left on other key versions"))
        if rotation.retired:
            versions = ", ".join(str(v) for v in rotation.retired)
            self.stdout.write(
                f"Retired key version(s) {versions}: no value is under them any more (their wrapped keys stay, for "
                "the backups made under them)."
            )
