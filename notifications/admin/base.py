"""What the webhook console's pages share: the audit of an action, how a secret is shown, the page class, the
search by event id or tokenId, the confirmation notes, and the one place each state becomes a coloured label."""

from contextlib import contextmanager

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db import transaction
from django.utils.html import format_html

from core.admin import ConfirmsActions, ObjectActions, RefusesCardNumbersInSearch, WrittenByServices, staff_actor
from core.admin_display import BAD, GOOD, QUIET, WARNING, counted, status_label
from core.audit import audit_record
from notifications.models import Delivery, DeliveryAttempt, WebhookEndpoint
from notifications.selectors import error_reason

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
class OperationsAdmin(ObjectActions, ConfirmsActions, RefusesCardNumbersInSearch, WrittenByServices, admin.ModelAdmin):
    """Look through pages, act through actions (``permissions=["operate"]``: the model's change permission), from
    the list or from the object's own page (``object_actions``). Nothing is added (endpoints are the merchants',
    made through the API, which hands them their secret) or deleted (disable an endpoint instead; events,
    deliveries and attempts are the record of what was sent).

    An empty list says what was searched and what to try: ``empty_hint`` (admin/notifications/change_list.html).
    """

    empty_hint = ""

    def has_operate_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.{get_permission_codename('change', self.opts)}")

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"empty_hint": self.empty_hint, **(extra_context or {})})


class SearchesEvents:
    """A list searched by event: an event id (``msg_…``, the webhook-id header) or the ``tokenId`` its data carries
    (a vault token's, or a network token's), each exactly as written.

    One equality per search, chosen by the term's shape, rather than Django's OR of every field: the event id is
    answered by its unique index, the tokenId by the index on the payload's tokenId (notifications knows no token,
    only what its events carry).
    """

    event_prefix = ""  # the path from the list's model to its event: "" for events, "event__" for deliveries
    search_help_text = "An event id (msg_…, the webhook-id header) or a tokenId, exactly as written."
    empty_hint = (
        "Search takes a whole event id (msg_…) or a whole tokenId, letters in the same case. "
        "Check it for a missing character, or clear the filters."
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        field = "public_id" if term.startswith("msg_") else "data__tokenId"
        return queryset.filter(**{f"{self.event_prefix}{field}": term}), False


# ------------------------------------------------------------------------------------------------------------
# States as labels: the one place each state gets its word and its tone
# ------------------------------------------------------------------------------------------------------------
def endpoint_status(endpoint: WebhookEndpoint):
    """Disabled (switched off, by an operator, the merchant or the rules), Failing (a run of failures under way),
    or Healthy."""
    if not endpoint.is_enabled:
        return status_label("Disabled", QUIET)
    if endpoint.failing_since is not None:
        return status_label("Failing", BAD)
    return status_label("Healthy", GOOD)


def delivery_status(delivery: Delivery):
    """Succeeded, Dead letter (no attempt left: replay it), Retrying (pending after a failed attempt) or Pending
    (not attempted yet in this cycle)."""
    if delivery.status == Delivery.SUCCEEDED:
        return status_label("Succeeded", GOOD)
    if delivery.status == Delivery.FAILED:
        return status_label("Dead letter", BAD)
    if delivery.attempt_count:
        return status_label("Retrying", WARNING)
    return status_label("Pending", WARNING)


def attempt_result(attempt: DeliveryAttempt):
    """An attempt's outcome: its status code, green when it succeeded; else what went wrong in a word (the whole
    error on hover)."""
    if attempt.succeeded:
        return status_label(str(attempt.status_code), GOOD)
    reason = error_reason(attempt.status_code, attempt.error)
    return format_html('<span title="{}">{}</span>', attempt.error, status_label(reason, BAD))


def deliveries_counted(count: int) -> str:
    return counted(count, "delivery", "deliveries")


def delivery_note(delivery: Delivery, *, wanted: str | None = None) -> str:
    """What an action will do with ``delivery``, for its confirmation page."""
    if not delivery.endpoint.is_enabled:
        return "endpoint disabled, left alone"
    if wanted and delivery.status != wanted:
        return f"{delivery.get_status_display()}, left alone"
    return delivery.get_status_display()


def disabled_note(count: int) -> str:
    if not count:
        return ""
    return (
        f"{deliveries_counted(count)} to a disabled endpoint will be left alone: an attempt there fails at once. "
        "Enable the endpoint first."
    )
