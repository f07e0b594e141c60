from django.core.management.base import BaseCommand

from vault import services


class Command(BaseCommand):
    help = "Destroy the card data of every expired token now (beat also does this every 15 minutes)."

    def handle(self, *args, **options):
        purged = services.tokens_purge_expired()
        self.stdout.write(f"Purged {purged} expired token(s)")
