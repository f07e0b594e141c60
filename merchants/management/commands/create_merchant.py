import json as jsonlib

from django.core.management.base import BaseCommand, CommandError

from merchants import services
from merchants.models import DEFAULT_SCOPES, SCOPES


class Command(BaseCommand):
    help = "Create a merchant with one API key and print the key (shown this once, stored only hashed)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--scopes",
            default=",".join(DEFAULT_SCOPES),
            help=f"Comma-separated, from: {', '.join(SCOPES)} (default: all but tokens:detokenize)",
        )
        parser.add_argument("--json", action="store_true", help='Print one line {"merchantId": …, "apiKey": …}')

    def handle(self, *args, name, scopes, json: bool, **options):
        requested = [scope.strip() for scope in scopes.split(",") if scope.strip()]
        unknown = sorted(set(requested) - set(SCOPES))
        if unknown:
            said = "unknown scope" if len(unknown) == 1 else "unknown scopes"
            raise CommandError(f"{said}: {', '.join(unknown)}; choose from {', '.join(SCOPES)}")
        merchant, raw_key = services.merchant_create(name=name, scopes=requested)
        if json:
            self.stdout.write(_json_line(merchant.public_id, raw_key))
        else:
            self.stdout.write(f"Merchant {merchant.name} created: {merchant.public_id}")
            self.stdout.write(f"Scopes: {', '.join(requested)}")
            self.stdout.write(f"API key (shown once, keep it safe): {raw_key}")


def _json_line(merchant_id: str, raw_key: str) -> str:
    return jsonlib.dumps({"merchantId": merchant_id, "apiKey": raw_key})
