import sys

from django.core.management.base import BaseCommand
from tqdm import tqdm

from vault import services
from vault.crypto import key_ring


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (card numbers, network token numbers) under the newest key of VAULT_KEYS. "
        "Safe to interrupt and rerun; "
        "the API keeps serving meanwhile. Once it reports 0 rows left, older keys can leave the ring."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500)

    def handle(self, *args, batch_size: int, **options):
        newest = key_ring().newest_version
        pending = _on_older_keys(newest)
        self.stdout.write(f"Rotating {pending} encrypted value(s) to key version {newest}")
        actor = services.Actor("command:rotate_keys")
        with tqdm(total=pending, unit="value", disable=None, file=sys.stderr) as bar:
            rotated = services.keys_rotate(batch_size=batch_size, on_batch=bar.update, actor=actor)
        left = _on_older_keys(newest)
        self.stdout.write(self.style.SUCCESS(f"Rotated {rotated} value(s); {left} left on older key versions"))


def _on_older_keys(newest: int) -> int:
    return sum(
        model.objects.filter(**{f"{model.encrypted_field}__isnull": False}).exclude(key_version=newest).count()
        for model in services.encrypted_models()
    )
