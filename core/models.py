"""The audit log: the one table every app writes to (through ``core.audit.audit_record``).

Its merchant is a foreign key by name, as Django's own admin log names the user model: the database links the row to
the merchant, and this app imports nothing of the apps above it.
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
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)

    class Meta:
        db_table = "vault_auditlog"  # made by the vault's first migration, before this app
        ordering = ["-created_at"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.result}"
