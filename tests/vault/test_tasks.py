"""Periodic work through a real Celery worker on the real broker."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from notifications import tasks as notification_tasks
from tests.conftest import MASTERCARD, VISA, wait_for
from vault import services, tasks
from vault.models import Token

pytestmark = pytest.mark.celery


def test_beat_purges_expired_tokens_at_least_every_fifteen_minutes():
    entry = settings.CELERY_BEAT_SCHEDULE["vault-purge-expired-tokens"]
    assert entry["task"] == tasks.purge_expired_tokens.name
    assert entry["schedule"] <= 15 * 60


def test_beat_sweeps_webhook_deliveries_every_few_seconds():
    # the sweeper is what delivers an event whose broker message was lost: it must run often
    entry = settings.CELERY_BEAT_SCHEDULE["notifications-sweep-deliveries"]
    assert entry["task"] == notification_tasks.sweep_deliveries.name
    assert entry["schedule"] <= 10


def test_a_worker_purges_expired_tokens_and_leaves_live_ones(alice, celery_worker_process):
    expired = services.card_tokenize(merchant=alice, card=services.Card(VISA, "Sherlock Holmes", 5, 2035)).token
    live = services.card_tokenize(merchant=alice, card=services.Card(MASTERCARD, "John Watson", 6, 2036)).token
    Token.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    tasks.purge_expired_tokens.delay()

    wait_for(lambda: Token.objects.get(pk=expired.pk).deleted_at is not None, timeout=60)
    expired.refresh_from_db()
    live.refresh_from_db()
    assert expired.pan_ciphertext is None and expired.deleted_reason == "expired"
    assert live.deleted_at is None and live.pan_ciphertext is not None
