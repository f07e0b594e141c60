import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.audit import Actor
from vault import keys
from vault.crypto import KeyRingMismatch, KeyVersionUnavailable, configured_key_ring


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (card numbers, network token numbers) under the active key version "
        "(VAULT_ACTIVE_KEY_VERSION, or the highest of VAULT_KEYS), then retire the versions no value is left under: "
        "those may leave VAULT_KEYS (keep them with the backups made under them). Safe to interrupt and rerun; the "
        "API keeps serving meanwhile."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        active = configured_key_ring().active_version
        pending = _on_other_keys(active)
        self.stdout.write(f"Rotating {pending} encrypted value(s) to key version {active}")
        actor = Actor("command:rotate_keys")
        try:
            with tqdm(total=pending, unit="value", disable=None, file=sys.stderr) as bar:
                rotation = keys.keys_rotate(batch_size=batch_size, on_batch=bar.update, actor=actor)
        except KeyRingMismatch as exc:
            raise CommandError(f"{exc}; nothing was rotated") from None
        except KeyVersionUnavailable as exc:
            raise CommandError(f"{exc}: add it back to VAULT_KEYS and run rotate_keys again") from None
        left = _on_other_keys(active)
        self.stdout.write(self.style.SUCCESS(f"Rotated {rotation.rotated} value(s); {left} left on other key versions"))
        if rotation.retired:
            versions = ", ".join(str(v) for v in rotation.retired)
            self.stdout.write(
                f"Retired key version(s) {versions}: no value is under them any more. They may leave "
                "VAULT_KEYS; keep them with the backups made under them."
            )


def _on_other_keys(active: int) -> int:
    return sum(
        model.objects.filter(**{f"{model.encrypted_field}__isnull": False}).exclude(key_version=active).count()
        for model in keys.encrypted_models()
    )
