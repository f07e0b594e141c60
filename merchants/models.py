"""Merchants and their API keys: who calls the API, and with which scopes."""

import hashlib
import secrets

from django.db import models
from django.utils import timezone

SCOPES = ("tokens", "tokens:detokenize", "network-tokens", "webhooks")
DEFAULT_SCOPES = ("tokens", "network-tokens", "webhooks")


def new_merchant_id() -> str:
    return f"mer_{secrets.token_hex(8)}"


class Merchant(models.Model):
    public_id = models.CharField(max_length=24, unique=True, default=new_merchant_id, editable=False)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

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
