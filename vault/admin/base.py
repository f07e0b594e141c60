"""What the vault's admin pages share: masked card data and conflicts shown, the typed-in namespace filter, and the
page class whose actions run one service per object."""

from collections import Counter
from datetime import datetime, timedelta

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.admin import ConfirmsActions, ReadOnlyAdmin, run_each
from core.admin_display import BAD, GOOD, QUIET, WARNING, counted, expiry_shown, moment_shown, status_label
from vault.models import Token, TokenConflict

# A live token this close to its end is "Expiring": a clerk may want to extend it before it goes.
EXPIRING_WITHIN = timedelta(days=30)


# ------------------------------------------------------------------------------------------------------------
# Presentation helpers
# ------------------------------------------------------------------------------------------------------------
def address_shown(address: dict | None):
    """A billing address as escaped lines."""
    if not address:
        return "—"
    town = " ".join(part for part in (address.get("postalCode"), address.get("city")) if part)
    lines = [
        address.get("address1"),
        address.get("address2"),
        address.get("address3"),
        town,
        address.get("state"),
        address.get("countryCode"),
    ]
    return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines if line))


def duration_shown(delta) -> str:
    days = delta.days
    return f"{days // 365} years" if days >= 365 else f"{days} days"


def conflict_comparison(token: Token, conflict: TokenConflict):
    """The conflict's requested values beside the stored ones, as a table (only the fields that differ)."""
    rows = []
    if conflict.card_holder_name is not None:
        rows.append(("Card holder name", token.card_holder_name or "—", conflict.card_holder_name))
    if conflict.expiry_month is not None:
        rows.append(
            (
                "Card expiry",
                expiry_shown(token.expiry_month, token.expiry_year),
                expiry_shown(conflict.expiry_month, conflict.expiry_year),
            )
        )
    if conflict.billing_address is not None:
        rows.append(("Billing address", address_shown(token.billing_address), address_shown(conflict.billing_address)))
    if conflict.scheme_transaction_reference is not None:
        rows.append(
            (
                "Scheme transaction reference",
                token.scheme_transaction_reference or "—",
                conflict.scheme_transaction_reference,
            )
        )
    return format_html(
        '<table class="vault-conflict"><thead><tr><th scope="col">Field</th><th scope="col">Stored now</th>'
        '<th scope="col">Requested (applied by “Apply”)</th></tr></thead><tbody>{}</tbody></table>',
        format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>', rows),
    )


def conflict_table(token: Token, conflict: TokenConflict | None):
    """The pending conflict side by side with the stored data, and its own page, where it is applied or dismissed."""
    if conflict is None or not conflict.is_pending():
        return "No pending conflict."
    return format_html(
        '{}<p>Pending until {}. <a href="{}" class="pending-conflict-link">Apply or dismiss it</a> on the conflict\'s '
        "page; once it expires the stored data simply stays.</p>",
        conflict_comparison(token, conflict),
        moment_shown(conflict.expires_at),
        reverse("admin:vault_tokenconflict_change", args=[conflict.pk]),
    )


# ------------------------------------------------------------------------------------------------------------
# Status labels: the one place the vault's states become words and colours (core.admin_display.status_label)
# ------------------------------------------------------------------------------------------------------------
def token_status(token: Token, now: datetime | None = None) -> tuple[str, str]:
    """Deleted (quiet), Expired (bad), Expiring within 30 days (warning) or Active (good): what the API would do
    with the token now, and whether a clerk should look."""
    now = now or timezone.now()
    if token.is_deleted:
        return "Deleted", QUIET
    if token.expires_at <= now:
        return "Expired", BAD
    if token.expires_at <= now + EXPIRING_WITHIN:
        return "Expiring", WARNING
    return "Active", GOOD


def token_status_label(token: Token, now: datetime | None = None):
    return status_label(*token_status(token, now))


# A conflict row lives while it is pending or expired: applying or dismissing it removes it (the services), so
# "Applied" and "Dismissed" are what the token's activity says of it afterwards.
CONFLICT_APPLIED = ("Applied", GOOD)
CONFLICT_DISMISSED = ("Dismissed", QUIET)


def conflict_status(conflict: TokenConflict, now: datetime | None = None) -> tuple[str, str]:
    return ("Pending", WARNING) if conflict.is_pending(now) else ("Expired", QUIET)


# ------------------------------------------------------------------------------------------------------------
# Filters and pages
# ------------------------------------------------------------------------------------------------------------
class NamespaceFilter(admin.ListFilter):
    """By namespace name, typed in: a merchant may keep a namespace per shopper, far too many to list."""

    title = "namespace"
    parameter_name = "namespace"
    placeholder = "exact name"
    template = "admin/text_filter.html"

    def __init__(self, request, params, model, model_admin):
        super().__init__(request, params, model, model_admin)
        if self.parameter_name in params:
            self.used_parameters[self.parameter_name] = params.pop(self.parameter_name)[-1]

    def has_output(self):
        return True

    def value(self):
        return self.used_parameters.get(self.parameter_name) or None

    def expected_parameters(self):
        return [self.parameter_name]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(namespace__name=self.value())
        return queryset

    def choices(self, changelist):
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "All",
            "hidden": [(name, value) for name, value in changelist.params.items() if name != self.parameter_name],
        }


class ServiceActions(ConfirmsActions, ReadOnlyAdmin):
    """Read-only pages whose actions, once confirmed, run one service per object (see the package's docstring)."""

    run_each = staticmethod(run_each)

    def report(self, request, done: str, refused: Counter, what: str) -> None:
        """The action's outcome: ``done``, then one warning per reason some ``what`` (singular: "token") were left
        alone."""
        self.message_user(request, done, messages.SUCCESS)
        for reason, count in refused.items():
            self.message_user(request, f"{reason}: {counted(count, what)} left alone.", messages.WARNING)
