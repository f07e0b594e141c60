"""The page that shows rotated signing secrets, once: the answer to the POST that rotated them."""

from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from core.admin_display import when_shown
from notifications.models import WebhookEndpoint


def secrets_page(request, model_admin, rotated: list[tuple[WebhookEndpoint, WebhookEndpoint]]) -> TemplateResponse:
    """ "Copy the new signing secret now": the answer to the POST that rotated them, each (endpoint as it was, as it
    is now). The only place a new secret is shown: a message would sit in the session table, and a URL, a log or
    the audit trail would keep it too; the answer is not cached either (no-store)."""
    opts = model_admin.opts
    if len(rotated) == 1:
        done_url = reverse("admin:notifications_webhookendpoint_change", args=[rotated[0][0].pk])
    else:
        done_url = reverse("admin:notifications_webhookendpoint_changelist")
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Copy the new signing secret now" if len(rotated) == 1 else "Copy the new signing secrets now",
        "subtitle": None,
        "opts": opts,
        "rotated": [
            {
                "endpoint": before,
                "merchant": before.merchant.name,
                "secret": after.secret,
                "previous_until": when_shown(after.previous_secret_expires_at),
            }
            for before, after in rotated
        ],
        "done_url": done_url,
    }
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/notifications/webhookendpoint/secret_rotated.html", context)
    add_never_cache_headers(response)  # no-store: not in the browser's cache, nor on its back button
    return response
