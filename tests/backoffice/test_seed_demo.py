"""``manage.py seed_demo``: every state the back office shows, no card number or API key in its output, and a
second run that refuses politely unless asked for another set.

The demo set is small here (200 tokens) but has every state the 3,000-token default has.
"""

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.test import override_settings
from django.utils import timezone

from core.models import AuditLog
from merchants.models import ApiKey, Merchant
from networks.models import Batch, BatchItem, LifecycleEvent, NetworkToken, ProvisioningRequest
from networks.tsp.base import SimulatedProvider
from notifications.models import Delivery, DeliveryAttempt, Event, WebhookEndpoint
from vault.keys import key_ring
from vault.models import ExpiryExtension, Namespace, Token, TokenConflict

TOKENS = 200
# A card-number-like run of digits; merchant ids (``mer_`` + hex) may hold long digit runs and are not one.
DIGIT_RUN = re.compile(r"(?<!\w)\d{12,19}(?!\w)")
RAW_KEY = re.compile(r"sk_[A-Za-z0-9_-]{40,}")
BRANDS = {"VISA", "MASTERCARD", "AMEX", "DISCOVER", "DINERS", "JCB", "UNIONPAY", "MAESTRO"}


def seed(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("seed_demo", "--tokens", str(TOKENS), *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def seeded(db):
    """One demo set; returns what the command printed (stdout + stderr)."""
    return "".join(seed("--seed", "7"))


def card_numbers() -> set[str]:
    ring = key_ring()
    return {
        ring.decrypt(t.key_version, t.pan_ciphertext, associated_data=t.associated_data())
        for t in Token.objects.filter(deleted_at__isnull=True)
    }


# ------------------------------------------------------------------------------------------------------------
# The vault
# ------------------------------------------------------------------------------------------------------------
def test_it_creates_three_merchants_with_working_api_keys(seeded):
    merchants = Merchant.objects.filter(name__endswith="(demo)")

    assert merchants.count() == 3
    assert all(ApiKey.objects.filter(merchant=m, revoked_at__isnull=True).exists() for m in merchants)


def test_it_creates_the_tokens_asked_for_across_all_eight_brands(seeded):
    per_brand = dict(Token.objects.values_list("brand").annotate(n=Count("id")))

    assert sum(per_brand.values()) == TOKENS
    assert set(per_brand) == BRANDS
    assert per_brand["VISA"] > per_brand["DINERS"]  # a realistic mix, not an even one


def test_it_spreads_tokens_over_many_namespaces_within_the_card_limit(seeded):
    sizes = list(Namespace.objects.annotate(n=Count("tokens")).values_list("n", flat=True))

    assert len(sizes) >= 20
    assert max(sizes) <= 16
    assert Token.objects.filter(namespace__isnull=True).exists()
    assert Namespace.objects.values("merchant").distinct().count() == 3


def test_tokens_are_spread_over_the_last_30_days(seeded):
    now = timezone.now()
    days = {t.date() for t in Token.objects.values_list("created_at", flat=True)}

    assert len(days) >= 15
    assert Token.objects.filter(created_at__lt=now - timedelta(days=30, hours=1)).count() == 0
    assert Token.objects.filter(created_at__gt=now).count() == 0
    # The events of those tokens moved with them, so webhook history tells the same story.
    token = Token.objects.order_by("created_at").first()
    created = Event.objects.get(type="token.created", data__tokenId=token.token_id)
    assert created.created_at == token.created_at


def test_it_leaves_pending_conflicts_extensions_and_deleted_tokens(seeded):
    now = timezone.now()

    assert TokenConflict.objects.filter(expires_at__gt=now).count() >= 3
    assert TokenConflict.objects.exclude(card_holder_name=None).exists()
    assert TokenConflict.objects.exclude(expiry_year=None).exists()
    assert ExpiryExtension.objects.exclude(reason="detokenize").exists()  # by a clerk
    assert not ExpiryExtension.objects.filter(reason="detokenize").exists()  # in try no use extends a token
    assert AuditLog.objects.filter(action="token.detokenize").exists()
    deleted = Token.objects.filter(deleted_at__isnull=False)
    assert deleted.count() >= 3
    assert not deleted.filter(pan_ciphertext__isnull=False).exists()
    assert AuditLog.objects.filter(action="token.delete").count() == deleted.count()


# ------------------------------------------------------------------------------------------------------------
# Network tokens
# ------------------------------------------------------------------------------------------------------------
def test_it_leaves_network_tokens_in_every_status_with_their_lifecycle_history(seeded):
    statuses = dict(NetworkToken.objects.values_list("status").annotate(n=Count("id")))
    events = set(LifecycleEvent.objects.values_list("type", flat=True))

    assert set(statuses) == {"ACTIVE", "INACTIVE", "SUSPENDED", "DELETED"}
    assert events == {"SUSPENDED", "ACTIVE", "DELETED", "CARD_UPDATED"}
    assert NetworkToken.objects.filter(status="DELETED", dpan_ciphertext__isnull=False).count() == 0
    assert set(NetworkToken.objects.values_list("network", flat=True)) == {"VISA", "MASTERCARD", "AMEX"}


def test_it_leaves_a_declined_async_request_and_a_completed_batch(seeded):
    failed = ProvisioningRequest.objects.get(status=ProvisioningRequest.FAILED)
    batch = Batch.objects.get()
    items = dict(BatchItem.objects.filter(batch=batch).values_list("failure_code").annotate(n=Count("id")))

    assert failed.failure_code == "tokenizationDeclined"
    assert failed.card_ciphertext is None
    assert ProvisioningRequest.objects.filter(status=ProvisioningRequest.SUCCEEDED).exists()
    assert batch.status == Batch.COMPLETED
    assert items.pop("networkNotSupported") == 1
    assert items.pop("tokenizationDeclined") == 1
    assert items.pop("") == batch.total - 2


# ------------------------------------------------------------------------------------------------------------
# Webhooks
# ------------------------------------------------------------------------------------------------------------
def test_it_leaves_deliveries_in_every_state(seeded):
    now = timezone.now()
    succeeded = Delivery.objects.filter(status=Delivery.SUCCEEDED)
    retrying = Delivery.objects.filter(status=Delivery.PENDING)
    dead = Delivery.objects.filter(status=Delivery.FAILED)

    assert succeeded.count() > 100
    assert not succeeded.filter(attempts__isnull=True).exists()
    assert succeeded.filter(attempt_count__gt=1).exists()  # a few succeeded on a retry
    assert retrying.exists()
    assert not retrying.filter(attempt_count=0).exists()
    assert not retrying.filter(next_attempt_at__lte=now).exists()
    assert dead.exists()
    assert DeliveryAttempt.objects.filter(delivery__in=dead, succeeded=True).count() == 0
    assert dead.filter(attempt_count=8).exists()  # the whole default schedule used up


def test_it_leaves_a_disabled_endpoint_with_its_reason_and_a_failing_one(seeded):
    disabled = WebhookEndpoint.objects.get(is_enabled=False)
    failing = WebhookEndpoint.objects.filter(is_enabled=True, failing_since__isnull=False)

    assert disabled.disabled_reason == "Every delivery failed for 5 days"
    assert disabled.disabled_at < timezone.now() - timedelta(hours=23)
    assert failing.exists()
    assert all(url.startswith("http://127.0.0.1:9/") for url in WebhookEndpoint.objects.values_list("url", flat=True))


def test_no_webhook_event_of_the_seed_is_queued_for_delivery_before_the_endpoints_exist(seeded):
    # Every delivery was written with its history; none is an untried one the sweeper would send at once.
    assert not Delivery.objects.filter(attempt_count=0).exists()


# ------------------------------------------------------------------------------------------------------------
# Output, secrets, settings
# ------------------------------------------------------------------------------------------------------------
def test_its_output_holds_no_card_number_and_no_api_key(seeded):
    numbers = card_numbers()

    assert numbers
    assert not DIGIT_RUN.search(seeded)
    assert not any(number in seeded for number in numbers)
    assert not RAW_KEY.search(seeded)
    assert "Demo data added" in seeded


def test_no_card_number_is_stored_in_clear_in_events_audit_rows_or_batches(seeded):
    numbers = card_numbers()
    stored = " ".join(
        [
            *(str(data) for data in Event.objects.values_list("data", flat=True)),
            *(str(detail) for detail in AuditLog.objects.values_list("detail", flat=True)),
            *BatchItem.objects.values_list("token_reference", flat=True),
        ]
    )

    assert not any(number in stored for number in numbers)


def test_it_prints_the_raw_api_keys_only_when_asked(db):
    out, _ = seed("--show-keys")
    keys = RAW_KEY.findall(out)

    assert len(keys) == 3
    assert all(ApiKey.objects.filter(key_hash=ApiKey.hash(key)).exists() for key in keys)


@override_settings(TSP_LATENCY_MS="1000-3000", TSP_FAILURE_RATE=0.5)
def test_it_seeds_without_the_tsp_latency_and_failures_of_the_demo_settings(db, monkeypatch):
    from django.conf import settings

    latencies = []
    latency_seconds = SimulatedProvider.latency_seconds

    def recorded(provider):
        latencies.append(latency_seconds(provider))
        return latencies[-1]

    monkeypatch.setattr(SimulatedProvider, "latency_seconds", recorded)
    seed("--seed", "3")

    # ~20 TSP calls at 1-3 s each would take a minute; half of them would fail.
    assert latencies and set(latencies) == {0}
    assert NetworkToken.objects.count() >= 12
    assert settings.TSP_LATENCY_MS == "1000-3000"  # restored afterwards


@override_settings(WEBHOOK_ALLOW_LOOPBACK=False)
def test_it_refuses_to_run_where_loopback_webhooks_are_refused(db):
    with pytest.raises(CommandError, match="WEBHOOK_ALLOW_LOOPBACK"):
        seed()

    assert not Merchant.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Running it again
# ------------------------------------------------------------------------------------------------------------
def test_a_second_run_refuses_politely_and_adds_nothing(seeded):
    before = (Merchant.objects.count(), Token.objects.count(), Delivery.objects.count())

    out, _ = seed()

    assert "already here" in out and "--again" in out
    assert (Merchant.objects.count(), Token.objects.count(), Delivery.objects.count()) == before


def test_again_adds_another_set_with_the_same_data_for_the_same_seed(seeded):
    seed("--seed", "7", "--again")

    def cards_of(name: str) -> list:
        return sorted(
            Token.objects.filter(merchant__name=name).values_list(
                "brand", "bin", "last_four", "namespace__name", "card_holder_name"
            )
        )

    assert Merchant.objects.filter(name__contains="(demo 2)").count() == 3
    assert Token.objects.count() == 2 * TOKENS
    assert cards_of("Northwind Outfitters (demo)") == cards_of("Northwind Outfitters (demo 2)")


def test_if_empty_seeds_an_empty_database_and_leaves_one_with_tokens_alone(db):
    out, _ = seed("--if-empty")
    assert "No tokens yet" in out
    assert Token.objects.count() == TOKENS

    Merchant.objects.filter(name__endswith="(demo)").update(name="Renamed")
    out, _ = seed("--if-empty")

    assert out == ""
    assert Token.objects.count() == TOKENS
