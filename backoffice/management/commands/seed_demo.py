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

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.test.utils import override_settings
from django.utils import timezone
from tqdm import tqdm

from core.audit import Actor
from core.models import AuditLog
from merchants import services as merchant_services
from merchants.models import Merchant
from networks import services as network_services
from networks.models import BatchItem, LifecycleEvent, NetworkToken
from networks.tsp import CardData
from networks.tsp.base import DECLINE_SUFFIX, STEP_UP_SUFFIX
from notifications import services as notification_services
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from vault import cards, services
from vault.models import Namespace, Token

DEMO_MERCHANTS = ("Northwind Outfitters", "Harbour Coffee Roasters", "Lumen Travel")
MERCHANT_WEIGHTS = (5, 3, 2)
DEMO_MARK = "(demo"
DAYS = 30
CHUNK = 250
DISCARD_URL = "http://127.0.0.1:9"

# brand: (share of the tokens, [(BIN, card length), …]). Where a network has issuers in the registry (networks
# migration 0002), the BINs fall in several of their ranges, so network tokens spread over issuers.
BRANDS = {
    "VISA": (40, [("444433", 16), ("400012", 16), ("453201", 16), ("476173", 16)]),
    "MASTERCARD": (28, [("555555", 16), ("520082", 16), ("222300", 16)]),
    "AMEX": (8, [("371449", 15), ("340000", 15)]),
    "DISCOVER": (5, [("601100", 16), ("650002", 16)]),
    "DINERS": (3, [("305693", 14), ("361234", 14)]),
    "JCB": (5, [("353011", 16), ("356600", 16)]),
    "UNIONPAY": (6, [("620000", 16), ("621234", 19)]),
    "MAESTRO": (5, [("675964", 16), ("630400", 18), ("560000", 12)]),
}
NETWORK_BRANDS = ("VISA", "MASTERCARD", "AMEX")
SPECIAL_SUFFIXES = (DECLINE_SUFFIX, STEP_UP_SUFFIX)
# How many cards a namespace (a shopper) holds: mostly a few, now and then a full one.
NAMESPACE_SIZES = ([1, 2, 3, 4, 6, 10, 16], [30, 25, 18, 12, 8, 4, 3])

FIRST_NAMES = (
    "Ada",
    "Ben",
    "Chloe",
    "Dmitri",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kemi",
    "Lars",
    "Maya",
    "Nikhil",
    "Olga",
    "Pedro",
    "Quinn",
    "Rosa",
    "Samir",
    "Tess",
    "Umar",
    "Vera",
    "Wen",
    "Yusuf",
)
LAST_NAMES = (
    "Abbott",
    "Bianchi",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ivanova",
    "Jensen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Varga",
    "Walsh",
    "Yilmaz",
    "Zhang",
)
CITIES = (
    ("London", "EC1A 1BB", "GB"),
    ("Manchester", "M1 1AE", "GB"),
    ("Paris", "75002", "FR"),
    ("Lyon", "69002", "FR"),
    ("Berlin", "10115", "DE"),
    ("Munich", "80331", "DE"),
    ("Madrid", "28013", "ES"),
    ("Amsterdam", "1012 JS", "NL"),
    ("Dublin", "D02 X285", "IE"),
    ("Milan", "20121", "IT"),
)
STREETS = ("High Street", "Station Road", "Church Lane", "Park Avenue", "Mill Road", "Victoria Street", "Kings Road")
FAILURES = (
    (None, "connection failed: ConnectionRefusedError"),
    (None, "timed out after 15 s"),
    (503, ""),
    (500, ""),
    (502, ""),
)


@dataclass(eq=False)  # compared and hashed by identity: two plans are two cards
class Plan:
    """One card to tokenize: who holds it, where, and when the demo pretends it arrived."""

    merchant: int
    brand: str
    number: str
    holder: str
    month: int
    year: int
    address: dict | None
    namespace: str | None
    created_at: datetime
    role: str = "plain"  # "plain", "step-up" (its network token is INACTIVE) or "decline" (the issuer refuses)
    token: Token | None = None

    def __repr__(self):
        return f"Plan({cards.mask(self.number)}, {self.role})"

    def card(self, **changes) -> services.Card:
        fields = {
            "number": self.number,
            "holder_name": self.holder,
            "expiry_month": self.month,
            "expiry_year": self.year,
            "billing_address": self.address,
            **changes,
        }
        return services.Card(**fields)

    def card_data(self) -> CardData:
        return CardData(self.number, self.month, self.year, self.holder)

    @property
    def email(self) -> str:
        return f"{self.holder.lower().replace(' ', '.')}@example.com"


@dataclass
class EndpointPlan:
    """How a demo endpoint behaved: attempts from ``failing_since`` on fail, from ``disabled_at`` on it is off."""

    endpoint: WebhookEndpoint
    failing_since: datetime | None = None
    disabled_at: datetime | None = None
    flakiness: float = 0.03


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


class Seeder:
    def __init__(self, *, rng: random.Random, tokens: int, suffix: str, stderr):
        self.rng = rng
        self.count = tokens
        self.suffix = suffix
        self.stderr = stderr
        self.now = timezone.now()
        self.used_numbers: set[str] = set()
        self.merchants: list[Merchant] = []
        self.keys: list[str] = []
        self.actors: list[Actor] = []
        self.network_tokens: list[tuple[Plan, NetworkToken]] = []

    def run(self) -> None:
        self.merchants_create()
        plans = self.plan()
        pools = self.split(plans)
        steps = len(plans) + len(pools["network"]) + sum(len(pools[name]) for name in ("conflict", "extend", "delete"))
        with tqdm(total=steps + 5, unit="step", desc="demo data", disable=None, file=self.stderr) as self.bar:
            self.tokenize(plans)
            self.conflicts(pools["conflict"])
            self.extensions(pools["extend"])
            self.deletions(pools["delete"])
            self.provision(pools["network"])
            self.lifecycle()
            self.async_requests(success=pools["async"][0], decline=pools["decline"][0])
            self.batch(pools["batch"] + pools["unsupported"] + pools["decline"][1:])
            self.backdate(plans, deleted=pools["delete"])
            self.bar.set_description("webhooks")
            self.webhooks()
            self.bar.update(1)

    # --------------------------------------------------------------------------------------------------------
    # Merchants and cards
    # --------------------------------------------------------------------------------------------------------
    def merchants_create(self) -> None:
        for name in DEMO_MERCHANTS:
            merchant, key = merchant_services.merchant_create(name=f"{name} {self.suffix}")
            self.merchants.append(merchant)
            self.keys.append(key)
            self.actors.append(Actor(f"api-key:{key[:11]}", merchant=merchant, origin="203.0.113.10"))

    def card_number(self, bin_: str, length: int, suffix: str = "") -> str:
        """A new Luhn-valid number: ``bin_``, random digits, then the check digit (or a digit that makes the
        number valid before ``suffix``, which the simulators read). Plain cards never end in a special suffix."""
        rng = self.rng
        while True:
            head = bin_ + "".join(rng.choice("0123456789") for _ in range(length - len(bin_) - len(suffix) - 1))
            if suffix:
                number = next(n for n in (head + digit + suffix for digit in "0123456789") if cards.luhn_valid(n))
            else:
                number = head + cards.luhn_check_digit(head)
                if number.endswith(SPECIAL_SUFFIXES):
                    continue
            if number not in self.used_numbers:
                self.used_numbers.add(number)
                return number

    def plan(self) -> list[Plan]:
        """Every card of the demo: each brand at least once, a few step-up and declining cards, the rest by share."""
        rng = self.rng
        brands = list(BRANDS)
        special = max(2, self.count // 250)
        roles = ["plain"] * len(brands) + ["step-up"] * special + ["decline"] * 2
        chosen = brands + [rng.choice(("VISA", "MASTERCARD")) for _ in range(special)] + ["VISA", "VISA"]
        rest = self.count - len(chosen)
        chosen += rng.choices(brands, weights=[BRANDS[b][0] for b in brands], k=rest)
        roles += ["plain"] * rest

        day_weights = [
            (1 + 0.05 * (DAYS - 1 - d)) * (0.6 if (self.now - timedelta(days=d)).weekday() >= 5 else 1)
            for d in range(DAYS)
        ]
        today = self.now.replace(hour=0, minute=0, second=0, microsecond=0)
        namespaces = [self.namespaces() for _ in self.merchants]
        plans = []
        for index, (brand, role) in enumerate(zip(chosen, roles, strict=False)):
            if role == "decline":
                merchant = 0  # the async request and the batch that meet these cards are the first merchant's
            elif index < len(BRANDS):
                # The first card of each brand goes round the merchants: the first one gets a DISCOVER card, which
                # its batch needs as the card no token service takes.
                merchant = index % len(self.merchants)
            else:
                merchant = rng.choices(range(len(self.merchants)), MERCHANT_WEIGHTS)[0]
            bin_, length = rng.choice(BRANDS[brand][1])
            suffix = {"step-up": STEP_UP_SUFFIX, "decline": DECLINE_SUFFIX}.get(role, "")
            day = rng.choices(range(DAYS), day_weights)[0]
            created_at = min(
                today - timedelta(days=day) + timedelta(seconds=rng.uniform(0, 86400)),
                self.now - timedelta(seconds=rng.uniform(30, 3600)),
            )
            holder = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            plans.append(
                Plan(
                    merchant=merchant,
                    brand=brand,
                    number=self.card_number(bin_, length, suffix),
                    holder=holder,
                    month=rng.randint(1, 12),
                    year=self.now.year + rng.randint(1, 5),
                    address=self.address() if rng.random() < 0.6 else None,
                    namespace=next(namespaces[merchant]) if rng.random() < 0.7 else None,
                    created_at=created_at,
                    role=role,
                )
            )
        return plans

    def namespaces(self):
        """One merchant's namespace for each next card: ``customer-00001`` for a few cards, then the next one."""
        for number in itertools.count(1):
            yield from [f"customer-{number:05d}"] * self.rng.choices(*NAMESPACE_SIZES)[0]

    def address(self) -> dict:
        city, postal_code, country = self.rng.choice(CITIES)
        return {
            "address1": f"{self.rng.randint(1, 250)} {self.rng.choice(STREETS)}",
            "postalCode": postal_code,
            "city": city,
            "countryCode": country,
        }

    def split(self, plans: list[Plan]) -> dict[str, list[Plan]]:
        """Which cards play which part; no card plays two."""
        plain = [p for p in plans if p.role == "plain"]
        self.rng.shuffle(plain)
        taken: set[Plan] = set()

        def take(count: int, wanted=lambda plan: True) -> list[Plan]:
            chosen = [p for p in plain if p not in taken and wanted(p)][:count]
            taken.update(chosen)
            return chosen

        def tokenizable(plan: Plan) -> bool:
            return plan.brand in NETWORK_BRANDS

        return {
            # The batch is the first merchant's, with one card of a network that has no token service.
            "unsupported": take(1, lambda p: p.merchant == 0 and not tokenizable(p)),
            "batch": take(6, lambda p: p.merchant == 0 and p.brand in ("VISA", "MASTERCARD")),
            "async": take(1, tokenizable),
            "network": take(max(10, self.count // 25), tokenizable) + [p for p in plans if p.role == "step-up"],
            "decline": [p for p in plans if p.role == "decline"],
            "conflict": take(max(3, self.count // 60)),
            "extend": take(max(4, self.count // 50)),
            "delete": take(max(3, self.count // 40)),
        }

    # --------------------------------------------------------------------------------------------------------
    # The vault
    # --------------------------------------------------------------------------------------------------------
    def tokenize(self, plans: list[Plan]) -> None:
        self.bar.set_description("tokens")
        for start in range(0, len(plans), CHUNK):
            with transaction.atomic():
                for plan in plans[start : start + CHUNK]:
                    result = services.card_tokenize(
                        merchant=self.merchants[plan.merchant], card=plan.card(), namespace=plan.namespace
                    )
                    assert result.outcome == services.Outcome.CREATED, result.outcome
                    plan.token = result.token
            self.bar.update(len(plans[start : start + CHUNK]))

    def conflicts(self, plans: list[Plan]) -> None:
        """The same card again with another name (a nickname, a married name) or a renewed expiry: pending."""
        self.bar.set_description("conflicts")
        with transaction.atomic():
            for index, plan in enumerate(plans):
                first, last = plan.holder.split(" ", 1)
                changes = {"holder_name": f"{first[0]}. {last}"} if index % 3 != 2 else {"expiry_year": plan.year + 3}
                result = services.card_tokenize(
                    merchant=self.merchants[plan.merchant], card=plan.card(**changes), namespace=plan.namespace
                )
                assert result.outcome == services.Outcome.CONFLICT, result.outcome
                self.bar.update(1)

    def extensions(self, plans: list[Plan]) -> None:
        """Tokens close to their expiry: half detokenized by the merchant's processor (in live, a use past the
        token's half-life extends it; in try none does), half extended by a clerk."""
        self.bar.set_description("extensions")
        with transaction.atomic():
            for plan in plans:
                # Their creation date already (backdate() sets the rest): the half-life counts from it.
                plan.token.created_at = plan.created_at
                plan.token.expires_at = self.now + timedelta(hours=self.rng.uniform(6, 72))
            Token.objects.bulk_update([p.token for p in plans], ["created_at", "expires_at"])
            for index, plan in enumerate(plans):
                if index % 2:
                    services.token_extend_expiry(
                        token=plan.token, actor=Actor("admin:clerk"), reason="customer asked to keep the card"
                    )
                else:
                    services.token_detokenize(token=plan.token, actor=self.actors[plan.merchant])
                self.bar.update(1)

    def deletions(self, plans: list[Plan]) -> None:
        self.bar.set_description("deletions")
        with transaction.atomic():
            for plan in plans:
                services.token_delete(token=plan.token, actor=self.actors[plan.merchant])
                self.bar.update(1)

    # --------------------------------------------------------------------------------------------------------
    # Network tokens
    # --------------------------------------------------------------------------------------------------------
    def origin(self, plan: Plan) -> network_services.Origin:
        correlation_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return network_services.Origin(
            merchant=self.merchants[plan.merchant], correlation_id=correlation_id, vault_token=plan.token
        )

    def provision(self, plans: list[Plan]) -> None:
        self.bar.set_description("network tokens")
        for start in range(0, len(plans), CHUNK):
            with transaction.atomic():
                for plan in plans[start : start + CHUNK]:
                    token = network_services.network_token_provision(
                        origin=self.origin(plan),
                        card=plan.card_data(),
                        email=plan.email if plan.brand == "AMEX" else "",
                    )
                    self.network_tokens.append((plan, token))
                    self.bar.update(1)

    def lifecycle(self) -> None:
        """What the networks later said: suspensions (some resumed), deletions, reissued cards, a step-up done."""
        self.bar.set_description("lifecycle")
        active = [token for _, token in self.network_tokens if token.status == NetworkToken.ACTIVE]
        inactive = [token for _, token in self.network_tokens if token.status == NetworkToken.INACTIVE]
        self.rng.shuffle(active)
        share = max(1, len(active) // 10)
        suspended, deleted, updated = active[:share], active[share : 2 * share], active[2 * share : 3 * share]
        apply = network_services.lifecycle_apply
        with transaction.atomic():
            for index, token in enumerate(suspended):
                apply(token=token, type=LifecycleEvent.SUSPENDED, source="TSP simulator")
                if index % 3 == 1:
                    apply(token=token, type=LifecycleEvent.RESUMED, source="TSP simulator")
            for token in deleted:
                apply(token=token, type=LifecycleEvent.DELETED, source="merchant API")
            for index, token in enumerate(updated):
                last_digits = f"{self.rng.randint(0, 9999):04d}" if index % 2 else None
                apply(
                    token=token,
                    type=LifecycleEvent.CARD_UPDATED,
                    source="TSP simulator",
                    expiry=(token.card_expiry_month, token.card_expiry_year + 3),
                    card_last_digits=last_digits,
                )
            for token in inactive[:1]:
                apply(token=token, type=LifecycleEvent.RESUMED, source="TSP simulator (step-up completed)")
        self.bar.update(1)

    def async_requests(self, *, success: Plan, decline: Plan) -> None:
        """Two asynchronous requests, run here rather than by a worker (in the same transaction, so the message
        queued on commit finds them finished): one tokenized, one declined by the issuer."""
        self.bar.set_description("async requests")
        for plan in (success, decline):
            origin = self.origin(plan)
            with transaction.atomic():
                request = network_services.provisioning_request_create(
                    merchant=origin.merchant,
                    correlation_id=origin.correlation_id,
                    vault_token=plan.token,
                    email=plan.email if plan.brand == "AMEX" else "",
                )
                network_services.provisioning_request_run(request_id=request.pk)
        self.bar.update(1)

    def batch(self, plans: list[Plan]) -> None:
        """A batch run to its end here, as the dispatcher and workers would: most items tokenized, one card of a
        network without a token service refused at once, one declined by its issuer."""
        self.bar.set_description("batch")
        with transaction.atomic():
            batch = network_services.batch_create(
                merchant=self.merchants[0],
                entries=[
                    network_services.BatchEntry(
                        token_reference=plan.token.token_id,
                        vault_token=plan.token,
                        email=plan.email if plan.brand == "AMEX" else "",
                    )
                    for plan in plans
                ],
            )
            waiting = BatchItem.objects.filter(batch=batch, status=BatchItem.PENDING)
            ids = list(waiting.values_list("pk", flat=True))
            waiting.update(status=BatchItem.QUEUED, queued_at=timezone.now())
            for item_id in ids:  # one at a time, as a worker takes an item released alone
                network_services.batch_items_run(item_ids=[item_id])
        self.bar.update(1)

    # --------------------------------------------------------------------------------------------------------
    # The past
    # --------------------------------------------------------------------------------------------------------
    def between(self, start: datetime, end: datetime) -> datetime:
        return start + (end - start) * self.rng.random() if end > start else start

    def backdate(self, plans: list[Plan], *, deleted: list[Plan]) -> None:
        """Move what the services stamped "now" to when the demo says it happened; the events and audit rows of
        those changes move with them."""
        self.bar.set_description("history")
        now = self.now
        when: dict[tuple[str, str], list[datetime]] = {}  # (event type, tokenId) → times, oldest first
        audits: dict[str, datetime] = {}
        tokens = []
        for plan in plans:
            token = plan.token
            token.created_at = token.updated_at = plan.created_at
            when[("token.created", token.token_id)] = [plan.created_at]
            tokens.append(token)
        for plan in deleted:
            token = plan.token
            token.deleted_at = token.updated_at = self.between(plan.created_at, now)
            when[("token.deleted", token.token_id)] = [token.deleted_at]
            audits[token.token_id] = token.deleted_at

        network_tokens, lifecycle = [], []
        history = {}
        recorded = LifecycleEvent.objects.filter(network_token__in=[t for _, t in self.network_tokens])
        for event in recorded.order_by("pk"):
            history.setdefault(event.network_token_id, []).append(event)
        for plan, token in self.network_tokens:
            token.created_at = self.between(plan.created_at, min(now, plan.created_at + timedelta(days=2)))
            token.updated_at = token.created_at
            when[("network_token.created", token.token_id)] = [token.created_at]
            moments = sorted(self.between(token.created_at, now) for _ in history.get(token.pk, []))
            for event, moment in zip(history.get(token.pk, []), moments, strict=False):
                event.created_at = token.updated_at = moment
                lifecycle.append(event)
            when[("network_token.updated", token.token_id)] = moments
            network_tokens.append(token)

        with transaction.atomic():
            Token.objects.bulk_update(tokens, ["created_at", "updated_at", "deleted_at"], batch_size=500)
            NetworkToken.objects.bulk_update(network_tokens, ["created_at", "updated_at"], batch_size=500)
            LifecycleEvent.objects.bulk_update(lifecycle, ["created_at"], batch_size=500)
            namespaces = []
            first: dict[int, datetime] = {}
            for token in tokens:
                if token.namespace_id:
                    first[token.namespace_id] = min(first.get(token.namespace_id, now), token.created_at)
            for namespace in Namespace.objects.filter(pk__in=first):
                namespace.created_at = first[namespace.pk]
                namespaces.append(namespace)
            Namespace.objects.bulk_update(namespaces, ["created_at"], batch_size=500)
            events = []
            for event in Event.objects.filter(merchant__in=self.merchants).order_by("pk").only("type", "data"):
                moments = when.get((event.type, event.data.get("tokenId")))
                if moments:
                    event.created_at = moments.pop(0)
                    events.append(event)
            Event.objects.bulk_update(events, ["created_at"], batch_size=500)
            rows = list(AuditLog.objects.filter(action="token.delete", object_id__in=audits).only("object_id"))
            for row in rows:
                row.created_at = audits[row.object_id]
            AuditLog.objects.bulk_update(rows, ["created_at"], batch_size=500)
            Merchant.objects.filter(pk__in=[m.pk for m in self.merchants]).update(
                created_at=now - timedelta(days=DAYS + 5)
            )
        self.bar.update(1)

    # --------------------------------------------------------------------------------------------------------
    # Webhooks
    # --------------------------------------------------------------------------------------------------------
    def webhooks(self) -> None:
        """Endpoints created last (no event of the seed goes to the broker), with the deliveries the retry schedule
        would have left: a healthy endpoint per merchant, one failing for two days (dead letters and retries), one
        disabled after five days of failures."""
        self.now = now = timezone.now()  # the history of attempts runs up to this moment, past the last event
        disable_after = timedelta(days=settings.WEBHOOK_DISABLE_AFTER_DAYS)
        events = {m.pk: list(Event.objects.filter(merchant=m).order_by("created_at", "pk")) for m in self.merchants}
        # Failing long enough that its oldest failures have used up the schedule (~28 h by default).
        used_up = now - timedelta(seconds=sum(settings.WEBHOOK_RETRY_SCHEDULE) * 1.25)
        older = [e.created_at for e in events[self.merchants[0].pk] if e.created_at < used_up]
        failing_since = min(now - timedelta(days=2), older[-5] if len(older) >= 5 else now) - timedelta(minutes=1)
        disabled_at = now - timedelta(days=1)

        def endpoint(merchant: int, path: str, description: str, event_types=None) -> WebhookEndpoint:
            return notification_services.endpoint_create(
                merchant=self.merchants[merchant],
                url=f"{DISCARD_URL}/{path}",
                description=description,
                event_types=event_types,
            )

        with transaction.atomic():
            plans = [
                EndpointPlan(endpoint(0, "webhooks/orders", "Order service")),
                EndpointPlan(
                    endpoint(0, "hooks/analytics", "Analytics collector (down since the migration)"),
                    failing_since=failing_since,
                ),
                EndpointPlan(endpoint(1, "erp/webhooks", "ERP sync")),
                EndpointPlan(
                    endpoint(1, "legacy-crm/notify", "Legacy CRM", ["token.created", "token.deleted"]),
                    failing_since=disabled_at - disable_after,
                    disabled_at=disabled_at,
                ),
                EndpointPlan(endpoint(2, "bookings/webhooks", "Booking engine")),
            ]
            WebhookEndpoint.objects.filter(pk__in=[p.endpoint.pk for p in plans]).update(
                created_at=now - timedelta(days=DAYS + 1)
            )
            for plan in plans:
                if plan.disabled_at:
                    notification_services.endpoint_disable(
                        endpoint=plan.endpoint,
                        reason=f"Every delivery failed for {settings.WEBHOOK_DISABLE_AFTER_DAYS} days",
                    )
                    WebhookEndpoint.objects.filter(pk=plan.endpoint.pk).update(disabled_at=plan.disabled_at)
                self.deliveries(plan, [e for e in events[plan.endpoint.merchant_id] if plan.endpoint.wants(e.type)])
            # Their deliveries are written above, as the dispatcher would have made them.
            Event.objects.filter(merchant__in=self.merchants).update(fanned_out=True)

    def deliveries(self, plan: EndpointPlan, events: list[Event]) -> None:
        """Write each event's delivery to ``plan.endpoint`` as the retry schedule would have left it by now."""
        deliveries, attempts = [], []
        for event in events:
            if plan.disabled_at and event.created_at >= plan.disabled_at:
                continue  # a disabled endpoint gets no deliveries
            delivery, tries = self.simulate(plan, event)
            deliveries.append(delivery)
            attempts.append(tries)
        Delivery.objects.bulk_create(deliveries, batch_size=500)
        for delivery, tries in zip(deliveries, attempts, strict=True):
            for attempt in tries:
                attempt.delivery = delivery
        DeliveryAttempt.objects.bulk_create([a for tries in attempts for a in tries], batch_size=500)
        # The endpoint has been failing since the first failure after its last success, if any.
        trail = sorted((a for tries in attempts for a in tries), key=lambda a: a.started_at)
        failing = None
        for attempt in reversed(trail):
            if attempt.succeeded:
                break
            failing = attempt.started_at
        WebhookEndpoint.objects.filter(pk=plan.endpoint.pk).update(failing_since=failing)

    def simulate(self, plan: EndpointPlan, event: Event) -> tuple[Delivery, list[DeliveryAttempt]]:
        rng, now, schedule = self.rng, self.now, settings.WEBHOOK_RETRY_SCHEDULE
        delivery = Delivery(event=event, endpoint=plan.endpoint, created_at=event.created_at)
        tries: list[DeliveryAttempt] = []
        at = min(event.created_at + timedelta(seconds=rng.uniform(0.05, 2)), now)
        while True:
            if at > now:
                delivery.status, delivery.next_attempt_at = Delivery.PENDING, at
                break
            number = len(tries) + 1
            duration = rng.randint(25, 400)
            if plan.disabled_at and at >= plan.disabled_at:
                tries.append(DeliveryAttempt(number=number, started_at=at, duration_ms=0, error="endpoint disabled"))
                delivery.status = Delivery.FAILED
                break
            if (plan.failing_since and at >= plan.failing_since) or rng.random() < plan.flakiness:
                code, error = rng.choice(FAILURES)
                if code:
                    error = f"HTTP {code}"
                else:
                    duration = 15000 if error.startswith("timed out") else rng.randint(1, 5)
                tries.append(
                    DeliveryAttempt(
                        number=number,
                        started_at=at,
                        duration_ms=duration,
                        status_code=code,
                        response_body="Service Unavailable" if code else "",
                        error=error,
                    )
                )
                if number > len(schedule):
                    delivery.status = Delivery.FAILED
                    break
                at += timedelta(seconds=schedule[number - 1] * rng.uniform(0.8, 1.2))
                continue
            tries.append(
                DeliveryAttempt(
                    number=number,
                    started_at=at,
                    duration_ms=duration,
                    status_code=200,
                    response_body='{"received":true}',
                    succeeded=True,
                )
            )
            delivery.status = Delivery.SUCCEEDED
            delivery.delivered_at = at + timedelta(milliseconds=duration)
            break
        last = tries[-1]  # the first attempt is never later than now
        delivery.attempt_count = len(tries)
        delivery.last_status_code, delivery.last_error = last.status_code, last.error
        delivery.updated_at = last.started_at
        return delivery, tries
