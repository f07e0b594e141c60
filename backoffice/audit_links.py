"""Where an audit row's actor and object live in the admin, for the staff user reading it.

The audit log names objects by their ``audit_type`` and ``audit_id`` (a tokenId, a key's prefix, a public id) and
actors by a label (``api-key:<prefix>`` with the key's merchant, ``admin:<username>``, ``system``); core writes them
and knows none of the apps. The back office reads every app, so it is the one place that turns those names into
links: the audit log's page and the token page's Activity both ask ``AuditLinks``. A page of rows costs one query per
kind of object named on it, and a link only shows when the reader may open its page (else the name, as text).
"""

from collections import defaultdict
from collections.abc import Iterable

from django.db.models import Model
from django.urls import reverse
from django.utils.html import format_html

from core.admin_display import NOTHING, merchant_shown
from core.models import AuditLog
from merchants.models import ApiKey, Merchant
from networks.models import Issuer, NetworkToken, ProvisioningRequest
from notifications.models import WebhookEndpoint
from vault.models import Token

# object_type → (model, the field its audit_id is)
OBJECT_MODELS: dict[str, tuple[type[Model], str]] = {
    "token": (Token, "token_id"),
    "network_token": (NetworkToken, "token_id"),
    "network_token_request": (ProvisioningRequest, "public_id"),
    "issuer": (Issuer, "pk"),
    "api_key": (ApiKey, "prefix"),
    "merchant": (Merchant, "public_id"),
    "webhook_endpoint": (WebhookEndpoint, "public_id"),
}
API_KEY_ACTOR = "api-key:"


def may_view(user, model: type[Model]) -> bool:
    opts = model._meta
    return user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or user.has_perm(
        f"{opts.app_label}.change_{opts.model_name}"
    )


def admin_url(obj: Model) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


class AuditLinks:
    """Links for ``rows`` as ``user`` may follow them (see the module's docstring)."""

    def __init__(self, user, rows: Iterable[AuditLog]):
        self.user = user
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row.object_type in OBJECT_MODELS and row.object_id:
                wanted[row.object_type].add(row.object_id)
            if row.actor.startswith(API_KEY_ACTOR):
                wanted["api_key"].add(row.actor.removeprefix(API_KEY_ACTOR))
        self.pages: dict[tuple[str, str], str] = {}
        for object_type, ids in wanted.items():
            model, field = OBJECT_MODELS[object_type]
            if not may_view(user, model):
                continue
            if field == "pk":
                ids = {value for value in ids if value.isdigit()}
            for obj in model.objects.filter(**{f"{field}__in": ids}):
                self.pages[object_type, str(getattr(obj, field))] = admin_url(obj)
        self.may_view_merchants = may_view(user, Merchant)

    def _linked(self, object_type: str, object_id: str, text: str):
        url = self.pages.get((object_type, object_id))
        return format_html('<a href="{}">{}</a>', url, text) if url else format_html("{}", text)

    def merchant(self, merchant: Merchant | None):
        if merchant is None:
            return NOTHING
        shown = merchant_shown(merchant)
        if not self.may_view_merchants:
            return shown
        return format_html('<a href="{}">{}</a>', admin_url(merchant), shown)

    def actor(self, row: AuditLog):
        """An API key as its merchant and the key (``Harbour Coffee · key sk_live_ab12``), staff and the system as
        the log names them."""
        if row.actor.startswith(API_KEY_ACTOR):
            prefix = row.actor.removeprefix(API_KEY_ACTOR)
            key = self._linked("api_key", prefix, f"key {prefix}…")
            if row.merchant is None:
                return key
            return format_html("{} · {}", self.merchant(row.merchant), key)
        if row.actor.startswith("admin:"):
            return format_html("staff {}", row.actor.removeprefix("admin:"))
        if row.merchant is not None:
            return format_html("{} · {}", self.merchant(row.merchant), row.actor)
        return row.actor

    def subject(self, row: AuditLog):
        """The object a row is about, linked to its page."""
        if not row.object_type and not row.object_id:
            return NOTHING
        text = f"{row.object_type.replace('_', ' ')} {row.object_id}".strip()
        return self._linked(row.object_type, row.object_id, text)
