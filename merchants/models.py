"""Merchants and their API keys: who calls the API, and with which scopes."""

import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from merchants.rates import RATE_HELP, is_rate

SCOPES = ("tokens", "tokens:detokenize", "network-tokens", "webhooks", "forwarding")
# Every scope but detokenize (DESIGN.md, "Security model"): a forward sends the card to the merchant's own registered
# destinations only and never shows it to the caller, so it is not held back the way the card in clear is.
DEFAULT_SCOPES = ("tokens", "network-tokens", "webhooks", "forwarding")


def new_merchant_id() -> str:
    return f"mer_{secrets.token_hex(8)}"


def validate_rate(value: str) -> None:
    if not is_rate(value):
        raise ValidationError(f"Write a rate as {RATE_HELP}, e.g. 100/second.", code="invalid")


class Merchant(models.Model):
    public_id = models.CharField(max_length=24, unique=True, default=new_merchant_id, editable=False)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    # Each of the merchant's API keys may make this many calls (merchants.throttling); empty: the settings' default.
    api_rate_limit = models.CharField(
        "rate limit", max_length=20, blank=True, validators=[validate_rate], help_text="Calls per API key."
    )
    card_data_rate_limit = models.CharField(
        "card data rate limit",
        max_length=20,
        blank=True,
        validators=[validate_rate],
        help_text="Calls per API key that release card data (detokenize, cryptograms with the token number).",
    )

    class Meta:
        db_table = "vault_merchant"  # made by the vault's first migration, before this app
        ordering = ["name"]

    def __str__(self):
        return f"{self.name} ({self.public_id})"


class ApiKey(models.Model):
    """A merchant's API key. Only its SHA-256 is stored (keys are 256-bit random, so a slow hash buys nothing)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, default="default")
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise the key.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Written by authentication at most once a minute per key and server process (merchants.authentication): staff
    # see whether a key is still in use before revoking it, to the minute.
    last_used_at = models.DateTimeField("last used", null=True, blank=True, editable=False)

    class Meta:
        db_table = "vault_apikey"  # as the merchant's
        verbose_name = "API key"

    def __str__(self):
        return f"{self.prefix}… ({self.name})"

    @staticmethod
    def hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes
