import base64
import json
import secrets

from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from core import crypto
from merchants.models import Merchant

EVENT_TYPES = (
    "token.created",
    "token.updated",
    "token.deleted",
    "token.expiry_extended",
    "network_token.created",
    "network_token.failed",
    "network_token.updated",
)


EVENT_ID_BYTES = 18  # random bytes per event id: 24 URL-safe characters, no padding


def new_event_ids(count: int) -> list[str]:
    """``count`` event ids ("msg_" and 24 URL-safe characters) from one read of random bytes: a system call per id
    let a bulk import's other threads take the interpreter."""
    text = secrets.token_urlsafe(EVENT_ID_BYTES * count)
    return [f"msg_{text[start : start + 24]}" for start in range(0, len(text), 24)]


def new_claim() -> str:
    """The random mark a worker writes on the deliveries it takes (``Delivery.claim``)."""
    return secrets.token_hex(16)


def new_event_id() -> str:
    [event_id] = new_event_ids(1)
    return event_id


def new_endpoint_id() -> str:
    return f"ep_{secrets.token_urlsafe(12)}"


def new_signing_secret() -> str:
    # Standard Webhooks: "whsec_" + base64 of the HMAC key (24 random bytes here).
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Event(models.Model):
    """The outbox: one row per thing that happened, written in the transaction that made it happen."""

    public_id = models.CharField(max_length=40, default=new_event_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=40, choices=[(t, t) for t in EVENT_TYPES])
    data = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    # Whether its deliveries were made (notifications.services.events_fan_out): the request writes the event only.
    fanned_out = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        # Events are written with every token change and by the thousand in an import: each index here serves a
        # query. The text columns are indexed here rather than with unique=True or db_index=True, which on PostgreSQL
        # add a second, varchar_pattern_ops index for LIKE; nothing looks for events by prefix (the API and the
        # admin match the id and the type exactly).
        indexes = [
            models.Index(fields=["type"], name="event_type"),  # the API's ?type= and the admin's type filter
            # The dispatcher's queue: the few events not fanned out yet.
            models.Index(fields=["id"], condition=Q(fanned_out=False), name="event_not_fanned_out"),
            # The back office's "this token's events" and its search by tokenId: the payload's tokenId, as the
            # lookup data__tokenId compares it (notifications knows no token, only what its events carry).
            models.Index(F("data__tokenId"), name="event_token_id"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["public_id"], name="event_public_id_unique"),
        ]

    def __str__(self):
        return f"{self.type} {self.public_id}"


class WebhookEndpoint(models.Model):
    public_id = models.CharField(max_length=40, unique=True, default=new_endpoint_id, editable=False)
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.URLField(max_length=2048)
    description = models.CharField(max_length=255, blank=True)
    event_types = models.JSONField(default=list, blank=True, help_text="Empty: every event type.")
    # The signing secrets, the current one and the previous one during its grace, encrypted together under the
    # vault's key ring and bound to the endpoint (``core.crypto``): never in clear at rest. Read and set through
    # ``secret`` and ``previous_secret``; a new endpoint gets a new secret when saved without one.
    secrets_ciphertext = models.BinaryField(editable=False)
    key_version = models.PositiveIntegerField(editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(null=True, blank=True, help_text="Start of the current run of failures.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    encrypted_field = "secrets_ciphertext"  # re-encrypted with the cards by rotate_keys (vault.keys)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "webhook endpoint"

    def __str__(self):
        return f"{self.url} ({self.public_id})"

    def save(self, *args, **kwargs):
        if not self.secrets_ciphertext:
            self.secrets_set(current=new_signing_secret())
        super().save(*args, **kwargs)

    def associated_data(self) -> bytes:
        return f"webhook-endpoint:{self.public_id}".encode()

    @property
    def secret(self) -> str:
        return self._secrets()[0]

    @secret.setter
    def secret(self, value: str) -> None:
        self.secrets_set(current=value, previous=self.previous_secret if self.secrets_ciphertext else "")

    @property
    def previous_secret(self) -> str:
        return self._secrets()[1]

    @previous_secret.setter
    def previous_secret(self, value: str) -> None:
        self.secrets_set(current=self.secret, previous=value)

    def secrets_set(self, *, current: str, previous: str = "") -> None:
        """Encrypt the signing secrets into the row (saved with it)."""
        plain = json.dumps([current, previous])
        self.key_version, self.secrets_ciphertext = crypto.key_ring().encrypt(
            plain, associated_data=self.associated_data()
        )
        self._secrets_plain = (bytes(self.secrets_ciphertext), (current, previous))

    def _secrets(self) -> tuple[str, str]:
        blob = bytes(self.secrets_ciphertext)
        known = getattr(self, "_secrets_plain", None)
        if known is None or known[0] != blob:
            plain = crypto.key_ring().decrypt(self.key_version, blob, associated_data=self.associated_data())
            current, previous = json.loads(plain)
            known = self._secrets_plain = (blob, (current, previous))
        return known[1]

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types

    def signing_secrets(self, now=None) -> list[str]:
        """The current secret, and the previous one while its 24 hours of grace last."""
        now = now or timezone.now()
        if self.previous_secret and self.previous_secret_expires_at and self.previous_secret_expires_at > now:
            return [self.secret, self.previous_secret]
        return [self.secret]


class Delivery(models.Model):
    """One event to one endpoint. Its schedule lives here (``next_attempt_at``), never in the broker."""

    PENDING, SUCCEEDED, FAILED = "PENDING", "SUCCEEDED", "FAILED"
    STATUSES = [(PENDING, "pending"), (SUCCEEDED, "succeeded"), (FAILED, "failed (dead letter)")]

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # Indexed by delivery_by_endpoint, which leads with it, rather than by an index of its own.
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    status = models.CharField(max_length=10, choices=STATUSES, default=PENDING)
    attempt_count = models.PositiveIntegerField(default=0, help_text="Attempts in the current cycle.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A worker owns the delivery until claimed_until (its attempt in flight), under the random claim it wrote with
    # it; the sweeper does not re-queue it before queued_until (a message for it is already in the broker).
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim = models.CharField(max_length=32, blank=True, editable=False)
    queued_until = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="delivery_one_per_event_and_endpoint"),
            models.CheckConstraint(
                condition=Q(status="PENDING", next_attempt_at__isnull=False) | ~Q(status="PENDING"),
                name="delivery_pending_has_next_attempt",
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["status", "updated_at"], name="delivery_finished"),  # the dashboard's success rate
            # An endpoint's deliveries in a state, the last written first: its last success and last error (the
            # endpoint's page, the dashboard) stop at the first entry, its dead letters are counted in the index alone,
            # and every lookup by endpoint (the foreign key's) uses its first column. It replaces the foreign key's
            # index: one entry per row version either way (a write to status or updated_at is never a HOT update,
            # delivery_finished holds them), but ~48 bytes each where the foreign key's shared theirs: some 45 MB
            # more per million deliveries (12 MB against 1.6 MB for 250,000 on PostgreSQL 15).
            models.Index(fields=["endpoint", "status", "updated_at"], name="delivery_by_endpoint"),
            # A worker fills its batch with an endpoint's oldest due deliveries: the pending ones only, a small index.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                condition=Q(status="PENDING"),
                name="delivery_pending_by_endpoint",
            ),
        ]

    def __str__(self):
        return f"{self.event.type} → {self.endpoint.url} ({self.status})"


class DeliveryAttempt(models.Model):
    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 20 kB.")
    error = models.CharField(max_length=500, blank=True)
    succeeded = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]
        # The dashboard's hourly trend of the last day's attempts (appended at the index's end: attempts are written
        # in time order).
        indexes = [models.Index(fields=["started_at"], name="attempt_started_at")]

    def __str__(self):
        return f"attempt {self.number}: {self.status_code or self.error}"


class Heartbeat(models.Model):
    """When a periodic task last ran, one row per task, rewritten in place: ``/healthz`` reads beat's liveness here,
    where every server sees it (the webhook sweeper writes its own on each run)."""

    DELIVERIES_SWEEP = "notifications.sweep_deliveries"

    name = models.CharField(max_length=100, primary_key=True)
    beat_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} at {self.beat_at:%Y-%m-%d %H:%M:%S}"
