"""The demo seeder: tokens, conflicts, extensions, deletions, network tokens, an async request and a batch, through
the services the API and the admin use, then moved back over the last days."""

import itertools
import random
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from tqdm import tqdm

from backoffice.demo.history import WebhookHistory
from backoffice.demo.plans import (
    BRANDS,
    CHUNK,
    CITIES,
    DAYS,
    DEMO_MERCHANTS,
    FIRST_NAMES,
    LAST_NAMES,
    MERCHANT_WEIGHTS,
    NAMESPACE_SIZES,
    NETWORK_BRANDS,
    SPECIAL_SUFFIXES,
    STREETS,
    Plan,
)
from core.audit import Actor
from core.models import AuditLog
from merchants import services as merchant_services
from merchants.models import Merchant
from networks import services as network_services
from networks.models import BatchItem, LifecycleEvent, NetworkToken
from networks.tsp.base import DECLINE_SUFFIX, STEP_UP_SUFFIX
from notifications.models import Event
from vault import cards, services
from vault.models import Namespace, Token


class Seeder(WebhookHistory):
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
