"""What the webhook console's pages share: the audit of an action, how a secret is shown, the page class, the
confirmation notes."""

from contextlib import contextmanager

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db import transaction

from core.admin import ConfirmsActions, WrittenByServices, staff_actor
from core.audit import audit_record
from notifications.models import Delivery, WebhookEndpoint

# "whsec_" and four characters of the key: enough to tell two secrets apart, nothing to sign with.
SECRET_SHOWN = len("whsec_") + 4
RESPONSE_BODY_SHOWN = 300


@contextmanager
def audited(request, action: str, *objects: WebhookEndpoint | Delivery, **detail):
    """One transaction for the block (a service call) and an ``admin.webhook.<action>`` audit row per object, an
    endpoint or a delivery, as it was before the block; the block may add to the ``detail`` it is given (what the
    service returned).

    Until the notifications services take the actor and audit themselves, as the vault's do: then this goes.
    """
    subjects = [audit_subject(obj) for obj in objects]
    with transaction.atomic():
        yield detail
        for object_type, object_id, about in subjects:
            audit_record(
                actor=staff_actor(request),
                action=f"admin.webhook.{action}",
                object_type=object_type,
                object_id=object_id,
                detail={**about, **detail},
            )


def audit_subject(obj: WebhookEndpoint | Delivery) -> tuple[str, str, dict]:
    """How the audit log names ``obj``, and what it notes of it."""
    if isinstance(obj, WebhookEndpoint):
        return "webhook_endpoint", obj.public_id, {"merchant": obj.merchant.public_id}
    # A delivery has no public id of its own: it is its event (the webhook-id merchants see) at one endpoint.
    return (
        "webhook_delivery",
        f"{obj.event.public_id}/{obj.endpoint.public_id}",
        {"merchant": obj.endpoint.merchant.public_id, "status_before": obj.status},
    )


def masked_secret(secret: str) -> str:
    return f"{secret[:SECRET_SHOWN]}…" if secret else "—"


# ------------------------------------------------------------------------------------------------------------
# Shared shape: read-only pages, actions on the change permission
# ------------------------------------------------------------------------------------------------------------
class OperationsAdmin(ConfirmsActions, WrittenByServices, admin.ModelAdmin):
    """Look through pages, act through actions (``permissions=["operate"]``: the model's change permission).
    Nothing is added (endpoints are the merchants', made through the API, which hands them their secret) or deleted
    (disable an endpoint instead; events, deliveries and attempts are the record of what was sent)."""

    def has_operate_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")


def delivery_note(delivery: Delivery, *, wanted: str | None = None) -> str:
    """What an action will do with ``delivery``, for its confirmation page."""
    if not delivery.endpoint.is_enabled:
        return "endpoint disabled, left alone"
    if wanted and delivery.status != wanted:
        return f"{delivery.get_status_display()}, left alone"
    return delivery.get_status_display()


def disabled_note(count: int, what: str) -> str:
    if not count:
        return ""
    return (
        f"{count} {what} to a disabled endpoint will be left alone: an attempt there fails at once. "
        "Enable the endpoint first."
    )
