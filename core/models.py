"""The tables of what every app shares: the audit log, which every app writes to (through
``core.audit.audit_record``), and the API's idempotency keys (``core.idempotency``).

Their merchant is a foreign key by name, as Django's own admin log names the user model: the database links the row
to the merchant, and this app imports nothing of the apps above it.
"""

from django.db import models
from django.utils import timezone


class AuditLog(models.Model):
    """Who did what to which object, when, with what result, from where. Written by services, never edited."""

    SUCCESS, FAILURE = "success", "failure"

    actor = models.CharField(max_length=120)
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=60, db_index=True)
    object_type = models.CharField(max_length=40, blank=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    result = models.CharField(max_length=10, choices=[(SUCCESS, "success"), (FAILURE, "failure")])
    origin = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # The X-Request-Id of the request that acted (or queued the task that did; core.request_id), blank for the
    # system's own work: what joins the row to the request's log lines. Indexed (Meta.indexes) for the admin's search.
    request_id = models.CharField(max_length=128, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        db_table = "vault_auditlog"  # made by the vault's first migration, before this app
        ordering = ["-created_at"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        # Searched by exact value only: a plain index, without PostgreSQL's second one for LIKE that db_index makes.
        indexes = [models.Index(fields=["request_id"], name="auditlog_request_id")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.result}"


class IdempotentRequest(models.Model):
    """A POST sent with an ``Idempotency-Key``: claimed before its work (the unique key is the claim), then its answer,
    kept encrypted for 24 hours for repeats of the request. Written only by ``core.idempotency``."""

    RUNNING, DONE = "running", "done"

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, the path and the body: a repeat must be the same request.
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=10, choices=[(RUNNING, "running"), (DONE, "done")])
    # When the running claim began: a claim older than IDEMPOTENCY_ABANDONED_AFTER seconds was left by a process that
    # died, and the next repeat takes it over. Also who holds the claim: the finish and the release write only while
    # it is unchanged.
    claimed_at = models.DateTimeField()
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    # The answer (status, headers that matter, body), under the vault's key ring and bound to the merchant and the key
    # (``core.crypto``): it may hold a card (detokenize), a network token number or a cryptogram.
    answer_ciphertext = models.BinaryField(null=True, editable=False)
    key_version = models.PositiveIntegerField(null=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(db_index=True)

    encrypted_field = "answer_ciphertext"  # re-encrypted with the cards by rotate_keys (vault.keys)

    class Meta:
        verbose_name = "idempotent request"
        constraints = [
            models.UniqueConstraint(fields=["merchant", "key"], name="core_idempotent_request_one_per_key"),
            models.CheckConstraint(
                condition=models.Q(state="running")
                | models.Q(status__isnull=False, answer_ciphertext__isnull=False, key_version__isnull=False),
                name="core_idempotent_request_done_has_answer",
            ),
        ]

    def __str__(self):
        return f"{self.key} ({self.state})"

    def associated_data(self) -> bytes:
        return f"idempotent-request:{self.merchant_id}:{self.key}".encode()
