"""Every write to merchants and their API keys."""

import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.audit import Actor, audit_record
from merchants.models import DEFAULT_SCOPES, ApiKey, Merchant


def api_key_create(
    *, merchant: Merchant, scopes: list[str] | None = None, name: str = "default", raw_key: str | None = None
) -> tuple[ApiKey, str]:
    """Create a key for ``merchant``; returns the row and the raw key, which is never stored and never shown again.

    ``raw_key`` lets the embedded run keep its demo key across restarts; everything else gets a fresh random one.
    """
    raw = raw_key or f"sk_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        merchant=merchant,
        name=name,
        prefix=raw[:11],
        key_hash=ApiKey.hash(raw),
        scopes=list(scopes if scopes is not None else DEFAULT_SCOPES),
    )
    return key, raw


def api_key_used(*, key_id: int, at: datetime, precision: timedelta) -> bool:
    """Record that the key was used ``at``; returns whether the row was written.

    One UPDATE, no read: nothing is written when the row already holds a use less than ``precision`` before ``at``
    (another server process recorded it), so the key's row is written about once per ``precision`` however many
    processes serve its calls, and never moves back in time.
    """
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=at - precision)
    return bool(ApiKey.objects.filter(stale, pk=key_id).update(last_used_at=at))


def api_keys_revoke(*, keys, actor: Actor) -> int:
    """Revoke every key of the ``keys`` queryset not revoked yet, one audit row each; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        revoked = list(keys.select_for_update().filter(revoked_at__isnull=True))
        for key in revoked:
            key.revoked_at = now
            key.save(update_fields=["revoked_at"])
            audit_record(
                actor=actor,
                action="admin.api_key.revoke",
                object_type="api_key",
                object_id=key.prefix,
                detail={"merchant_id": key.merchant_id},
            )
    return len(revoked)


@transaction.atomic
def merchant_create(*, name: str, scopes: list[str] | None = None) -> tuple[Merchant, str]:
    """Create a merchant with one API key; returns the merchant and the raw key (shown once)."""
    merchant = Merchant.objects.create(name=name)
    _, raw = api_key_create(merchant=merchant, scopes=scopes)
    return merchant, raw
