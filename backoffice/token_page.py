"""The token page as the back office sees it: the vault's page (vault.admin.tokens.TokenAdmin) with what happened
around the token, which the vault may not read (it sits below networks and notifications): its network tokens, the
events about it with their deliveries, and its Activity, the audit rows about it and its network tokens.

The staff's own views of the token are many and say little each: they are one line ("viewed 12 times by staff, last
3 min ago") that opens on the list. Django's History button, which shows the admin's change log, gives way to an
Activity button, an anchor to that section; the history address itself lands there too.

A section shows what its reader may see: the events only to those who may view events (the back-office group sees
nothing of the webhooks: vault 0002), the endpoints' URLs only to those who may view endpoints, the Activity only to
those who may view the audit log. Anyone else reads one line saying so, and the section's queries are never run.
"""

from dataclasses import dataclass, field
from urllib.parse import urlencode

from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from backoffice.audit_links import AuditLinks, admin_url, may_view
from core.admin import audit_result_label
from core.admin_display import moment_shown, relative, status_label
from core.models import AuditLog
from core.selectors import audit_rows_about
from networks import selectors as network_selectors
from networks.admin.base import status_shown
from networks.models import NetworkToken
from notifications import selectors as notification_selectors
from notifications.admin.base import delivery_status
from notifications.models import Delivery
from vault.admin.base import CONFLICT_APPLIED, CONFLICT_DISMISSED
from vault.admin.tokens import TokenAdmin
from vault.models import Token

SHOWN = 50  # rows of a section; the audit log and the lists have the rest
# What a reader needs to see a section (the back-office group has none of the webhooks': vault 0002), and an
# endpoint's URL in the events section.
MAY_SEE_EVENTS = "notifications.view_event"
MAY_SEE_ENDPOINTS = "notifications.view_webhookendpoint"
MAY_SEE_ACTIVITY = "core.view_auditlog"
# Staff looking at the token (or its conflict, or a network token of it): collapsed into one line.
VIEWS = ("admin.token.view", "admin.conflict.view", "admin.network_token.view")
# An audit action as the Activity section says it; any other shows as the log names it.
DONE = {
    "token.detokenize": "Detokenized",
    "token.forward": "Forwarded",
    "token.delete": "Deleted",
    "token.extend_expiry": "Expiry extended",
    "token.conflict_apply": "Conflict applied",
    "token.conflict_dismiss": "Conflict dismissed",
    "network_token.cryptogram": "Cryptogram",
}
# What became of a conflict, as its label says it once its row is gone (vault.admin.base).
CONFLICT_OUTCOMES = {"token.conflict_apply": CONFLICT_APPLIED, "token.conflict_dismiss": CONFLICT_DISMISSED}


@dataclass
class Section:
    """A part of the page below the token's own fields: a table, or ``empty`` when it has no rows."""

    id: str
    title: str
    headers: list[str]
    rows: list[list] = field(default_factory=list)
    empty: str = ""
    before: str = ""  # HTML above the table
    after: str = ""  # HTML below it


def needs_permission(id: str, title: str, what: str) -> Section:
    """A section the reader may not see: its title, and one line saying so (no query is run for it)."""
    return Section(id, title, [], empty=f"Seeing {what} needs a permission you do not have.")


# ------------------------------------------------------------------------------------------------------------
# The sections
# ------------------------------------------------------------------------------------------------------------
def linked(user, obj, text):
    """``text`` linked to ``obj``'s admin page when ``user`` may open it."""
    if may_view(user, type(obj)):
        return format_html('<a href="{}">{}</a>', admin_url(obj), text)
    return format_html("{}", text)


def network_tokens_section(user, network_tokens: list[NetworkToken]) -> Section:
    return Section(
        "network-tokens",
        "Network tokens",
        ["Network token", "Status", "Number", "Created"],
        [
            [
                linked(user, nt, f"{nt.network} {nt.token_id}"),
                status_shown(NetworkToken, nt.status),
                f"••••{nt.token_last_digits}",
                moment_shown(nt.created_at),
            ]
            for nt in network_tokens
        ],
        empty="No network token was made from this card.",
    )


def deliveries_shown(user, deliveries: list[Delivery]):
    """Each delivery's state, and the endpoint's URL for a reader who may see the webhook endpoints."""
    if not deliveries:
        return "no endpoint listening"
    if not user.has_perm(MAY_SEE_ENDPOINTS):
        shown = ((linked(user, d, delivery_status(d)), "") for d in deliveries)
    else:
        shown = ((linked(user, d, delivery_status(d)), linked(user, d.endpoint, d.endpoint.url)) for d in deliveries)
    return format_html('<ul class="token-deliveries">{}</ul>', format_html_join("", "<li>{} {}</li>", shown))


def events_section(user, token: Token, network_token_ids: list[str]) -> Section:
    if not user.has_perm(MAY_SEE_EVENTS):
        return needs_permission("events", "Events and their deliveries", "the events about a token")
    events = notification_selectors.events_about(
        merchant_id=token.merchant_id, token_ids=[token.token_id, *network_token_ids], limit=SHOWN
    )
    return Section(
        "events",
        "Events and their deliveries",
        ["Event", "When", "Deliveries"],
        [
            [
                linked(user, event, event.type),
                moment_shown(event.created_at),
                deliveries_shown(user, list(event.deliveries.all())),
            ]
            for event in events
        ],
        empty="No event about this token.",
    )


def what_happened(row: AuditLog):
    text = DONE.get(row.action, row.action)
    if row.object_type == NetworkToken.audit_type:
        text = f"{text} (network token {row.object_id})"
    if row.action in CONFLICT_OUTCOMES and row.result == AuditLog.SUCCESS:
        return status_label(*CONFLICT_OUTCOMES[row.action])
    reason = row.detail.get("reason") if isinstance(row.detail, dict) else None
    return format_html("{}: {}", text, reason) if reason else text


def staff_views_shown(views: list[AuditLog], count: int, links: AuditLinks):
    """One line for every staff view, opening on the list of them (<details>)."""
    if not count:
        return ""
    rows = format_html_join(
        "", "<tr><td>{}</td><td>{}</td></tr>", ((moment_shown(v.created_at), links.actor(v)) for v in views)
    )
    return format_html(
        '<details class="staff-views"><summary>Viewed {} by staff, last {}</summary>'
        '<table><thead><tr><th scope="col">When</th><th scope="col">Who</th></tr></thead><tbody>{}</tbody>'
        "</table></details>",
        "once" if count == 1 else f"{count:,} times",
        relative(views[0].created_at),
        rows,
    )


def activity_section(user, token: Token, network_token_ids: list[str]) -> Section:
    if not user.has_perm(MAY_SEE_ACTIVITY):
        return needs_permission("activity", "Activity", "what was done with a token")
    rows = audit_rows_about(objects={Token.audit_type: [token.token_id], NetworkToken.audit_type: network_token_ids})
    done = list(rows.exclude(action__in=VIEWS)[:SHOWN])
    views = rows.filter(action__in=VIEWS)
    viewed = list(views[:SHOWN])
    links = AuditLinks(user, [*done, *viewed])
    # The token's own rows, by the exact lookups the object_id index answers (not a search over the whole log).
    query = urlencode({"object_type": Token.audit_type, "object_id": token.token_id})
    everything = f"{reverse('admin:core_auditlog_changelist')}?{query}"
    return Section(
        "activity",
        "Activity",
        ["When", "What", "Who", "Result"],
        [[moment_shown(r.created_at), what_happened(r), links.actor(r), audit_result_label(r)] for r in done],
        empty="Nothing was done with this token yet.",
        before=staff_views_shown(viewed, views.count() if viewed else 0, links),
        after=format_html('<p class="help"><a href="{}">Every audit row of this token</a></p>', everything),
    )


class TokenPage(TokenAdmin):
    """The vault's token page with the sections of the module's docstring."""

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Here the token is fetched (once, by Django's view) and the reader's permission to see it checked.
        if obj is not None:
            network_tokens = list(network_selectors.network_tokens_of(vault_token=obj))
            ids = [nt.token_id for nt in network_tokens]
            context["token_sections"] = [
                network_tokens_section(request.user, network_tokens),
                events_section(request.user, obj, ids),
                activity_section(request.user, obj, ids),
            ]
            context["activity_url"] = "#activity"
        return super().render_change_form(request, context, add, change, form_url, obj)

    def history_view(self, request, object_id, extra_context=None):
        """Django's change log is not where a token's story is: its Activity is."""
        url = reverse("admin:vault_token_change", args=[object_id], current_app=self.admin_site.name)
        return HttpResponseRedirect(f"{url}#activity")
