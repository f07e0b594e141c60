"""``manage.py seed_demo``: a back office that looks lived in, in one command.

Three merchants get a few thousand card tokens across all eight brands and many namespaces, pending conflicts,
expiry extensions, deleted tokens, network tokens in every status with their lifecycle history, an async request
that failed, a completed batch, and webhook endpoints whose deliveries succeeded, are retrying, or ended as dead
letters (one endpoint disabled, with its reason).

Everything that means something goes through the services the API and the admin use, so the rows, audit entries
and events are the ones real traffic leaves. Two things are written directly, in bulk:

- **the past.** The services stamp "now"; afterwards the tokens (and their namespaces, network tokens, lifecycle
  events, deletions and the events and audit rows of those) are moved back over the last 30 days, so the
  dashboard's per-day chart has a shape. Conflicts and expiry extensions stay recent: a conflict is pending for
  ``TOKEN_CONFLICT_TTL_SECONDS`` only, like any other.
- **webhook deliveries.** The endpoints are created last, so the seed's thousands of events queue no delivery
  message; then each endpoint's deliveries are written with the attempts the retry schedule would have made
  against an endpoint that answers, fails, or was disabled. The URLs point at http://127.0.0.1:9 (the discard
  port): a later real attempt (a retry coming due, an operator's replay) is refused at once, so nothing is sent
  anywhere. Loopback URLs need ``WEBHOOK_ALLOW_LOOPBACK`` (the embedded run and the tests have it): the command
  refuses to run without it, which also keeps demo merchants out of production.

The async requests and the batch are run to their end here, in the transaction that creates them, so the one
message each service queues on commit finds them finished. The TSP simulator runs without latency or failures
while seeding, whatever the environment says. Work is committed in chunks: an interrupted run leaves part of a set.

Card numbers are made up here (a BIN, random digits, the Luhn check digit) and only ever reach the vault's
encryption: nothing printed, logged or stored in clear holds one.

Running it twice: a second run refuses politely (exit status 0) while demo merchants exist; ``--again`` adds one
more demo set ("… (demo 2)"). ``--if-empty`` (used by ``make run``) seeds only a database without any token.
"""

import random

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings
from django.utils import timezone

from backoffice.demo.plans import DEMO_MARK, DEMO_MERCHANTS
from backoffice.demo.seeder import Seeder
from merchants.models import Merchant
from networks.models import NetworkToken
from notifications.models import Delivery
from vault.models import Namespace, Token


class Command(BaseCommand):
    help = (
        "Fill the database with a demo data set (3 merchants, tokens across brands and namespaces, conflicts, "
        "extensions, network tokens in every state, webhook deliveries in every state). Refuses politely when demo "
        "data is already there, unless --again. Never prints a card number, nor an API key unless --show-keys."
    )

    def add_arguments(self, parser):
        parser.add_argument("--tokens", type=int, default=3000, help="How many card tokens (default 3000, min 50)")
        parser.add_argument(
            "--seed", type=int, default=None, help="Random seed: the same seed, the same cards, names and namespaces"
        )
        parser.add_argument("--again", action="store_true", help="Add another demo set even if one exists")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Seed only a database holding no token at all, else do nothing (for make run)",
        )
        parser.add_argument("--show-keys", action="store_true", help="Print the demo merchants' raw API keys")

    def handle(self, *args, tokens: int, seed: int | None, again: bool, if_empty: bool, show_keys: bool, **options):
        if if_empty and Token.objects.exists():
            return
        if tokens < 50:
            raise CommandError("--tokens must be at least 50, enough for every state of the demo")
        if not settings.WEBHOOK_ALLOW_LOOPBACK:
            raise CommandError(
                "seed_demo is for the embedded run and tests: its webhook endpoints are on loopback, which "
                "WEBHOOK_ALLOW_LOOPBACK=false refuses. Set it to true to seed demo data here anyway."
            )
        if if_empty:
            self.stdout.write("No tokens yet: adding demo data once (SEED_DEMO=0 make run skips this).")
        sets = Merchant.objects.filter(name__startswith=f"{DEMO_MERCHANTS[0]} {DEMO_MARK}").count()
        if sets and not again:
            self.stdout.write(
                f"Demo data is already here ({sets} set(s): merchants named '… {DEMO_MARK}…)'); nothing added. "
                "Run with --again to add another set."
            )
            return
        suffix = f"{DEMO_MARK})" if not sets else f"{DEMO_MARK} {sets + 1})"
        started = timezone.now()
        # The demo's TSP latency (1-3 s a call) would make this take hours; its failures would make it random.
        with override_settings(TSP_LATENCY_MS="0", TSP_FAILURE_RATE=0.0):
            # The stream behind OutputWrapper, which would end each refresh of the bar with a newline, in red.
            seeder = Seeder(rng=random.Random(seed), tokens=tokens, suffix=suffix, stderr=self.stderr._out)
            seeder.run()
        self._report(seeder, show_keys=show_keys, seconds=(timezone.now() - started).total_seconds())

    def _report(self, seeder: "Seeder", *, show_keys: bool, seconds: float):
        tokens = Token.objects.filter(merchant__in=seeder.merchants)
        network_tokens = NetworkToken.objects.filter(merchant__in=seeder.merchants)
        deliveries = Delivery.objects.filter(endpoint__merchant__in=seeder.merchants)
        lines = [f"Demo data added in {seconds:.1f} s:"]
        for merchant, key in zip(seeder.merchants, seeder.keys, strict=True):
            shown = key if show_keys else f"{key[:11]}… (--show-keys prints it)"
            lines.append(f"  {merchant.name}  {merchant.public_id}  API key {shown}")
        lines += [
            f"  tokens: {tokens.filter(deleted_at__isnull=True).count()} live, "
            f"{tokens.filter(deleted_at__isnull=False).count()} deleted, "
            f"{Namespace.objects.filter(merchant__in=seeder.merchants).count()} namespaces, "
            f"{tokens.filter(conflict__isnull=False).count()} pending conflicts, "
            f"{tokens.filter(expiry_extensions__isnull=False).distinct().count()} with extended expiry",
            "  network tokens: "
            + ", ".join(
                f"{network_tokens.filter(status=status).count()} {status}" for status, _ in NetworkToken.STATUSES
            ),
            "  webhook deliveries: "
            + ", ".join(f"{deliveries.filter(status=status).count()} {status}" for status, _ in Delivery.STATUSES),
        ]
        self.stdout.write("\n".join(lines))
