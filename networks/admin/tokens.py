"""Network tokens and their lifecycle actions (suspend, resume, delete, card reissued), each confirmed and audited.

Which tokens an action applies to is the service's rule (``services.LIFECYCLE_FROM``): the pages say it, and each
token is then handed to ``services.network_token_operate``, which checks it again under the row lock, records the
event, audits it and tells the merchant; a token it refuses is left alone with the service's reason.
"""

from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ReadOnlyInline, run_each, staff_actor
from core.admin_display import NOTHING, counted, expiry_shown, moment_shown
from core.audit import audit_record
from networks import services
from networks.admin.base import HistoryAdmin, ShowsVaultTokens, masked_card, status_shown
from networks.models import LifecycleEvent, NetworkToken


class LifecycleEventInline(ReadOnlyInline):
    model = LifecycleEvent
    fields = ["when", "type", "change", "details", "source"]
    readonly_fields = fields
    verbose_name = "lifecycle event"
    verbose_name_plural = "lifecycle history"

    @admin.display(description="when")
    def when(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="status")
    def change(self, obj):
        old, new = status_shown(NetworkToken, obj.old_status), status_shown(NetworkToken, obj.new_status)
        return new if obj.old_status == obj.new_status else format_html("{} → {}", old, new)

    @admin.display(description="details")
    def details(self, obj):
        parts = []
        if "cardExpiryDate" in obj.detail:
            expiry = obj.detail["cardExpiryDate"]
            parts.append(f"card expiry {expiry_shown(expiry.get('month'), expiry.get('year'))}")
        if "cardLastDigits" in obj.detail:
            parts.append(f"card last digits {obj.detail['cardLastDigits']}")
        return ", ".join(parts) or NOTHING


@dataclass(frozen=True)
class Lifecycle:
    """How the admin presents one lifecycle event; the service says which tokens it applies to."""

    type: str
    title: str
    intro: str
    submit: str
    done: str
    button: str  # on the token's page

    @property
    def action(self) -> str:
        """The admin action, and the audit action's last word."""
        return services.STAFF_ACTIONS[self.type]

    @property
    def applies_to(self) -> tuple[str, ...]:
        return services.LIFECYCLE_FROM[self.type]

    @property
    def states(self) -> str:
        return " or ".join(self.applies_to)


SUSPEND = Lifecycle(
    LifecycleEvent.SUSPENDED,
    "Suspend network tokens",
    "Each ACTIVE token becomes SUSPENDED: no cryptogram is issued for it until it is resumed. The merchant gets a "
    "network_token.updated webhook.",
    "Suspend",
    "Suspended",
    "Suspend",
)
RESUME = Lifecycle(
    LifecycleEvent.RESUMED,
    "Resume or activate network tokens",
    "Each SUSPENDED token becomes ACTIVE again, and each INACTIVE one becomes ACTIVE as its issuer's step-up is done "
    "(the requests waiting for its activation then succeed, each with its network_token.created webhook). The "
    "merchant gets a network_token.updated webhook.",
    "Resume",
    "Resumed",
    "Resume",
)
DELETE = Lifecycle(
    LifecycleEvent.DELETED,
    "Delete network tokens",
    "Each token is deleted for good: its encrypted token number is destroyed, it takes no further lifecycle events "
    "and no cryptogram. The row stays, masked, with its history. The merchant gets a network_token.updated webhook. "
    "This cannot be undone.",
    "Delete",
    "Deleted",
    "Delete",
)
CARD_UPDATED = Lifecycle(
    LifecycleEvent.CARD_UPDATED,
    "Record a reissued card",
    "The issuer reissued the card behind each token: record its new expiry and/or last four digits. The token keeps "
    "its number and status. The merchant gets a network_token.updated webhook.",
    "Record",
    "Updated",
    "Card updated",
)
# By admin action name, in the order of the token page's buttons.
LIFECYCLES = {lifecycle.action: lifecycle for lifecycle in (SUSPEND, RESUME, CARD_UPDATED, DELETE)}


class CardUpdatedForm(forms.Form):
    expiry_month = forms.IntegerField(label="New expiry month", min_value=1, max_value=12, required=False)
    expiry_year = forms.IntegerField(label="New expiry year", min_value=2000, max_value=2099, required=False)
    card_last_digits = forms.RegexField(
        regex=r"^\d{4}$",
        label="New last four digits",
        required=False,
        error_messages={"invalid": "Four digits, the last four of the reissued card."},
        help_text="Only when the reissued card has a new number; leave empty otherwise.",
    )

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        month, year, last = cleaned.get("expiry_month"), cleaned.get("expiry_year"), cleaned.get("card_last_digits")
        if (month is None) != (year is None):
            raise forms.ValidationError("Give both the month and the year of the new expiry, or neither.")
        if month is None and not last:
            raise forms.ValidationError("Give the new expiry, the new last four digits, or both.")
        today = timezone.localdate()
        if month is not None and (year, month) < (today.year, today.month):
            raise forms.ValidationError("The new expiry is in the past.")
        return cleaned

    def changes(self) -> dict:
        """``lifecycle_apply``'s keyword arguments for what was given."""
        data = self.cleaned_data
        return {
            "expiry": (data["expiry_month"], data["expiry_year"]) if data["expiry_month"] is not None else None,
            "card_last_digits": data["card_last_digits"] or None,
        }


@admin.register(NetworkToken)
class NetworkTokenAdmin(ShowsVaultTokens, HistoryAdmin):
    confirmation_template = "admin/networks/action_confirmation.html"
    list_display = [
        "token_id",
        "current_status",
        "network",
        "token_last_digits",
        "card",
        "issuer",
        "merchant_name",
        "created",
    ]
    list_filter = ["network", "status", "issuer"]
    list_select_related = ["merchant", "issuer"]
    # Exact matches only: an operator asks for one token, not for every token sharing some characters.
    search_fields = [
        "=token_id",
        "=token_last_digits",
        "=payment_account_reference",
        "vault_token__token_id__exact",
    ]
    search_help_text = "The tokenId (network or vault), the token number's last four digits or the PAR, exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = list(services.STAFF_ACTIONS.values())  # one per lifecycle event staff may trigger
    inlines = [LifecycleEventInline]
    # The same actions as buttons on the token's page, each shown only for the statuses the service allows it from.
    object_actions = {name: lifecycle.button for name, lifecycle in LIFECYCLES.items()}
    irreversible_actions = frozenset({DELETE.action})
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "token_id",
                    "network",
                    "current_status",
                    "issuer",
                    "merchant",
                    "correlation_id",
                    "account_id",
                    "vault_token_link",
                ]
            },
        ),
        ("Token (masked)", {"fields": ["token_last_digits", "token_expiry", "payment_account_reference"]}),
        ("Card (masked)", {"fields": ["card", "card_expiry"]}),
        ("Dates", {"fields": ["created", "updated"]}),
    ]
    readonly_fields = [
        "token_id",
        "network",
        "current_status",
        "issuer",
        "merchant",
        "correlation_id",
        "account_id",
        "vault_token_link",
        "token_last_digits",
        "token_expiry",
        "payment_account_reference",
        "card",
        "card_expiry",
        "created",
        "updated",
    ]

    def object_action_applies(self, obj, name):
        return obj.status in LIFECYCLES[name].applies_to

    @admin.display(description="card", ordering="card_bin")
    def card(self, obj):
        return masked_card(obj)

    @admin.display(description="card expiry")
    def card_expiry(self, obj):
        return expiry_shown(obj.card_expiry_month, obj.card_expiry_year)

    @admin.display(description="token expiry")
    def token_expiry(self, obj):
        return expiry_shown(obj.token_expiry_month, obj.token_expiry_year)

    @admin.display(description="vault token")
    def vault_token_link(self, obj):
        return self.vault_token_shown(obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # 200 means the page shows the token (a missing one redirects with a message).
        if request.method == "GET" and response.status_code == 200:
            token = response.context_data["original"]
            audit_record(
                actor=staff_actor(request),
                action="admin.network_token.view",
                obj=token,
                detail={"merchant": token.merchant.public_id},
            )
        return response

    # --------------------------------------------------------------------------------------------------------
    # Lifecycle actions
    # --------------------------------------------------------------------------------------------------------
    @admin.action(description="Suspend selected network tokens", permissions=["operate"])
    def suspend(self, request, queryset):
        return self._lifecycle(request, queryset, SUSPEND)

    @admin.action(description="Resume (or activate) selected network tokens", permissions=["operate"])
    def resume(self, request, queryset):
        return self._lifecycle(request, queryset, RESUME)

    @admin.action(description="Delete selected network tokens", permissions=["operate"])
    def delete(self, request, queryset):
        return self._lifecycle(request, queryset, DELETE)

    @admin.action(description="Record a reissued card (new expiry or last digits)", permissions=["operate"])
    def card_updated(self, request, queryset):
        confirmed = bool(request.POST.get("post"))
        form = CardUpdatedForm(request.POST if confirmed else None)
        return self._lifecycle(request, queryset, CARD_UPDATED, form=form)

    def _lifecycle(self, request, queryset, lifecycle: Lifecycle, *, form: CardUpdatedForm | None = None):
        """The confirmation page, then the lifecycle event for each token, which the service may refuse."""
        queryset = queryset.select_related("merchant")
        confirmed = bool(request.POST.get("post"))
        if not confirmed or (form is not None and not form.is_valid()):
            tokens = list(queryset)
            wrong = sum(1 for token in tokens if token.status not in lifecycle.applies_to)
            return self.confirm(
                request,
                tokens,
                action=lifecycle.action,
                title=lifecycle.title,
                intro=lifecycle.intro,
                submit=lifecycle.submit,
                form=form,
                notes=[
                    f"{counted(wrong, 'of these tokens is', 'of these tokens are')} not {lifecycle.states} and will "
                    "be left alone."
                    if wrong
                    else ""
                ],
                rows=[(token, self._row_note(token, lifecycle)) for token in tokens],
            )
        changes = form.changes() if form is not None else {}
        actor = staff_actor(request)
        # A token whose status does not allow the event (perhaps the TSP changed it while this page was open) is
        # refused by the service.
        applied, refused = run_each(
            queryset,
            lambda token: services.network_token_operate(token=token, type=lifecycle.type, actor=actor, **changes),
        )
        for token, event in applied:
            self.log_change(
                request,
                token,
                f"{lifecycle.done}: lifecycle event {event.type} ({event.old_status} → {event.new_status}).",
            )
        if applied or not refused:
            self.message_user(request, f"{lifecycle.done} {counted(len(applied), 'network token')}.", messages.SUCCESS)
        for reason, count in refused.items():
            self.message_user(request, f"{counted(count, 'network token')} left alone: {reason}.", messages.WARNING)
        return None

    @staticmethod
    def _row_note(token: NetworkToken, lifecycle: Lifecycle) -> str:
        where = f"{token.merchant.name}, {token.status}"
        if token.status not in lifecycle.applies_to:
            return f"{where}: left alone (only {lifecycle.states} tokens)"
        return where
