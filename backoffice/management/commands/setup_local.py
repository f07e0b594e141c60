import os

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from backoffice.demo.plans import DEMO_MERCHANT
from merchants import services
from merchants.models import ApiKey, Merchant


class Command(BaseCommand):
    help = "Embedded run: make sure the admin superuser and the demo merchant exist, and print how to use them."

    def handle(self, *args, **options):
        # The rate limits' cache table: migrate made the default one; this makes the one CACHE_URL names, if another.
        call_command("createcachetable", verbosity=0)
        password = os.environ["ADMIN_PASSWORD"]
        demo_key = os.environ["DEMO_API_KEY"]
        User = get_user_model()
        admin, created = User.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@localhost"}
        )
        if created or not admin.check_password(password):
            admin.set_password(password)
            admin.save(update_fields=["password"])

        merchant = Merchant.objects.filter(name=DEMO_MERCHANT).first() or Merchant.objects.create(name=DEMO_MERCHANT)
        if not ApiKey.objects.filter(key_hash=ApiKey.hash(demo_key)).exists():
            services.api_key_create(
                merchant=merchant,
                name="demo",
                raw_key=demo_key,
                scopes=["tokens", "tokens:detokenize", "network-tokens", "webhooks", "forwarding"],
            )
        port = os.environ.get("PORT", "8000")
        self.stdout.write(
            "\n"
            f"  API and admin:   http://127.0.0.1:{port}/  (docs at /api/docs/)\n"
            f"  Admin login:     admin / {password}\n"
            f"  Demo merchant:   {merchant.public_id}\n"
            f"  Demo API key:    {demo_key}\n"
            "  (kept in var/local.env; set ADMIN_PASSWORD to choose your own)\n"
        )
