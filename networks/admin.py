"""The back office for network tokens: issuers, tokens and their lifecycle, asynchronous requests and batches.

No page shows a token number (DPAN), a card number or any ciphertext: a network token is its tokenId, the last four
digits of its number, its card's BIN and last digits, and its PAR. A search that looks like a card or token number
is refused before it reaches a query or a page.

Tokens change only through lifecycle actions, which run ``networks.services.lifecycle_apply``, the code the TSP's
own notifications run: the merchant gets its ``network_token.updated`` webhook exactly as when the network suspends
a token itself. The actions take the network token's change permission (the ``operators`` group, migration 0003),
ask for confirmation, check each token's state under its row lock, and write one audit row per token as
``admin:<username>``. Opening a token's page is audited too. Requests, batches and their items are history: view
only. Issuers are the one thing edited through a form (name, range, card art, rate limit), and each edit is audited.
"""

import re
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.validators import MinValueValidator, RegexValidator
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from config.admin import NUMBER_LIKE, ReadOnlyInline, RefusesCardNumbersInSearch
from networks import services
from networks.models import Batch, BatchItem, Issuer, LifecycleEvent, NetworkToken, ProvisioningRequest
from notifications.admin import OperationsAdmin
from vault import services as vault_services
from vault.admin import NamespaceFilter

# Shown on a batch page; the rest are a click away in the batch items list.
FAILED_ITEMS_SHOWN = 50


def _actor(request) -> vault_services.Actor:
    return vault_services.Actor(f"admin:{request.user.get_username()}", origin=request.META.get("REMOTE_ADDR", ""))


def _source(request) -> str:
    """Who triggered a lifecycle event, as ``LifecycleEvent.source`` holds it."""
    return f"admin:{request.user.get_username()}"[: LifecycleEvent._meta.get_field("source").max_length]


# ------------------------------------------------------------------------------------------------------------
# Presentation helpers
# ------------------------------------------------------------------------------------------------------------
def _expiry(month: int | None, year: int | None) -> str:
    return f"{month:02d}/{year}" if month and year else "—"


def _masked_card(token: NetworkToken) -> str:
    # The card's length is not stored: the ellipsis does not pretend to know how many digits it hides.
    return f"{token.card_bin}…{token.card_last_digits}"


def _reference(text: str) -> str:
    """What a merchant sent as a vault token reference, masked if it looks like a card number after all."""
    return NUMBER_LIKE.sub(lambda m: f"{m.group()[:4]}…{m.group()[-4:]}", text)


class ShowsVaultTokens:
    """Links to a vault token's page for whoever may open it (the back office); its tokenId alone for the others."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            # Display methods get the object, never the request: the permission rides along on the object.
            obj.may_view_vault_token = request.user.has_perm("vault.view_token")
        return obj

    @staticmethod
    def vault_token_shown(obj):
        if obj.vault_token_id is None:
            return "—"
        token_id = obj.vault_token.token_id
        if getattr(obj, "may_view_vault_token", False):
            return format_html('<a href="{}">{}</a>', reverse("admin:vault_token_change", args=[obj.vault_token_id]),
                               token_id)
        return token_id


class HistoryAdmin(RefusesCardNumbersInSearch, OperationsAdmin):
    """Rows written by services only: looked at, never added, edited or deleted here."""


# ------------------------------------------------------------------------------------------------------------
# Issuers
# ------------------------------------------------------------------------------------------------------------
_BIN = RegexValidator(r"^\d{6}$", "A BIN is six digits.")
_CARD_ART_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class CardArtIdsField(forms.CharField):
    """Card art identifiers typed as one comma-separated line, stored as the JSON list the API answers."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        parts = (part.strip() for part in (super().to_python(value) or "").split(","))
        return list(dict.fromkeys(part for part in parts if part))

    def validate(self, value):
        super().validate(value)
        wrong = [part for part in value if not _CARD_ART_ID.match(part)]
        if wrong:
            raise forms.ValidationError(
                "Card art ids are letters, digits, dots, dashes and underscores (up to 64): %(wrong)s",
                params={"wrong": ", ".join(wrong)},
            )


class IssuerForm(forms.ModelForm):
    card_art_ids = CardArtIdsField(
        required=False, label="Card art ids", help_text="Comma-separated, in the order the API lists them."
    )

    class Meta:
        model = Issuer
        fields = ["name", "network", "bin_low", "bin_high", "card_art_ids", "rate_limit_per_second"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A user who may only view issuers gets the form without its fields.
        for name in ("bin_low", "bin_high"):
            if name in self.fields:
                self.fields[name].validators.append(_BIN)
        if rate := self.fields.get("rate_limit_per_second"):
            rate.validators.append(MinValueValidator(1))
            rate.widget.attrs["min"] = 1
            rate.help_text = "Calls a second to this issuer, across every worker; batches are spread to stay under it."

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("bin_low"), cleaned.get("bin_high")
        if low and high and low > high:
            raise forms.ValidationError("The range ends before it starts: the last BIN is below the first.")
        return cleaned


@admin.register(Issuer)
class IssuerAdmin(RefusesCardNumbersInSearch, admin.ModelAdmin):
    form = IssuerForm
    list_display = ["name", "network", "bin_range", "rate_limit_per_second", "registered", "token_count"]
    list_filter = ["network", "registered"]
    search_fields = ["name"]
    search_help_text = "Part of the name, or a BIN (six digits): the issuers whose range holds it."

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(token_count=Count("network_tokens"))

    def get_fields(self, request, obj=None):
        fields = list(IssuerForm.Meta.fields)
        # An issuer added here is registered; an unregistered one was made for a BIN outside the registry (a range
        # registered for it later takes its new cards).
        return fields if obj is None else [*fields, "registered", "tokens"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["registered", "tokens"]

    def has_delete_permission(self, request, obj=None):
        # Network tokens and batch items point at their issuer: correct a wrong one instead.
        return False

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if re.fullmatch(r"\d{6,11}", term):
            bin_ = term[:6]
            return queryset.filter(bin_low__lte=bin_, bin_high__gte=bin_), False
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="BIN range", ordering="bin_low")
    def bin_range(self, obj):
        return f"{obj.bin_low}–{obj.bin_high}"

    @admin.display(description="network tokens", ordering="token_count")
    def token_count(self, obj):
        return obj.token_count

    @admin.display(description="network tokens")
    def tokens(self, obj):
        url = reverse("admin:networks_networktoken_changelist")
        return format_html('<a href="{}?{}">{}</a>', url, urlencode({"issuer__id__exact": obj.pk}), obj.token_count)

    def save_model(self, request, obj, form, change):
        # Only the fields the form changed: the scheduler keeps moving ``next_call_at`` on this row meanwhile.
        changed = [name for name in IssuerForm.Meta.fields if name in form.changed_data] if change else None
        if change and not changed:
            return
        with transaction.atomic():
            obj.save(update_fields=changed)
            vault_services.audit_record(
                actor=_actor(request), action=f"admin.issuer.{'change' if change else 'create'}",
                object_type="issuer", object_id=str(obj.pk),
                detail={name: form.cleaned_data[name] for name in (changed or IssuerForm.Meta.fields)},
            )


# ------------------------------------------------------------------------------------------------------------
# Network tokens
# ------------------------------------------------------------------------------------------------------------
class LifecycleEventInline(ReadOnlyInline):
    model = LifecycleEvent
    fields = ["created_at", "type", "old_status", "new_status", "details", "source"]
    readonly_fields = fields
    verbose_name = "lifecycle event"
    verbose_name_plural = "lifecycle history"

    @admin.display(description="details")
    def details(self, obj):
        parts = []
        if "cardExpiryDate" in obj.detail:
            expiry = obj.detail["cardExpiryDate"]
            parts.append(f"card expiry {_expiry(expiry.get('month'), expiry.get('year'))}")
        if "cardLastDigits" in obj.detail:
            parts.append(f"card last digits {obj.detail['cardLastDigits']}")
        return ", ".join(parts) or "—"


@dataclass(frozen=True)
class Lifecycle:
    """One lifecycle action of the admin: the event it records and the token statuses it applies to."""

    action: str  # the admin action, and the audit action's last word
    type: str
    applies_to: tuple[str, ...]
    title: str
    intro: str
    submit: str
    done: str


_NOT_DELETED = (NetworkToken.ACTIVE, NetworkToken.SUSPENDED, NetworkToken.INACTIVE)
SUSPEND = Lifecycle(
    "suspend", LifecycleEvent.SUSPENDED, (NetworkToken.ACTIVE,), "Suspend network tokens",
    "Each ACTIVE token becomes SUSPENDED: no cryptogram is issued for it until it is resumed. The merchant gets a "
    "network_token.updated webhook.", "Suspend", "Suspended",
)
RESUME = Lifecycle(
    "resume", LifecycleEvent.RESUMED, (NetworkToken.SUSPENDED,), "Resume network tokens",
    "Each SUSPENDED token becomes ACTIVE again. The merchant gets a network_token.updated webhook.",
    "Resume", "Resumed",
)
DELETE = Lifecycle(
    "delete", LifecycleEvent.DELETED, _NOT_DELETED, "Delete network tokens",
    "Each token is deleted for good: its encrypted token number is destroyed, it takes no further lifecycle events "
    "and no cryptogram. The row stays, masked, with its history. The merchant gets a network_token.updated webhook. "
    "This cannot be undone.", "Delete", "Deleted",
)
CARD_UPDATED = Lifecycle(
    "card_updated", LifecycleEvent.CARD_UPDATED, _NOT_DELETED, "Record a reissued card",
    "The issuer reissued the card behind each token: record its new expiry and/or last four digits. The token keeps "
    "its number and status. The merchant gets a network_token.updated webhook.", "Record", "Updated",
)


class CardUpdatedForm(forms.Form):
    expiry_month = forms.IntegerField(label="New expiry month", min_value=1, max_value=12, required=False)
    expiry_year = forms.IntegerField(label="New expiry year", min_value=2000, max_value=2099, required=False)
    card_last_digits = forms.RegexField(
        regex=r"^\d{4}$", label="New last four digits", required=False,
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
    list_display = ["token_id", "network", "status", "token_last_digits", "card", "issuer", "merchant", "created_at"]
    list_filter = ["network", "status", "issuer"]
    list_select_related = ["merchant", "issuer"]
    # Exact matches only: an operator asks for one token, not for every token sharing some characters.
    search_fields = ["=token_id", "=token_last_digits", "=payment_account_reference"]
    search_help_text = "tokenId, the token number's last four digits or the PAR, exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["suspend", "resume", "delete", "card_updated"]
    inlines = [LifecycleEventInline]
    fieldsets = [
        (None, {"fields": ["token_id", "network", "status", "issuer", "merchant", "correlation_id", "account_id",
                           "vault_token_link"]}),
        ("Token (masked)", {"fields": ["token_last_digits", "token_expiry", "payment_account_reference"]}),
        ("Card (masked)", {"fields": ["card", "card_expiry"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "token_id", "network", "status", "issuer", "merchant", "correlation_id", "account_id", "vault_token_link",
        "token_last_digits", "token_expiry", "payment_account_reference", "card", "card_expiry", "created_at",
        "updated_at",
    ]

    @admin.display(description="card", ordering="card_bin")
    def card(self, obj):
        return _masked_card(obj)

    @admin.display(description="card expiry")
    def card_expiry(self, obj):
        return _expiry(obj.card_expiry_month, obj.card_expiry_year)

    @admin.display(description="token expiry")
    def token_expiry(self, obj):
        return _expiry(obj.token_expiry_month, obj.token_expiry_year)

    @admin.display(description="vault token")
    def vault_token_link(self, obj):
        return self.vault_token_shown(obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # 200 means the page shows the token (a missing one redirects with a message).
        if request.method == "GET" and response.status_code == 200:
            token = response.context_data["original"]
            vault_services.audit_record(
                actor=_actor(request), action="admin.network_token.view", object_type="network_token",
                object_id=token.token_id, detail={"merchant": token.merchant.public_id},
            )
        return response

    # --------------------------------------------------------------------------------------------------------
    # Lifecycle actions
    # --------------------------------------------------------------------------------------------------------
    @admin.action(description="Suspend selected network tokens", permissions=["operate"])
    def suspend(self, request, queryset):
        return self._lifecycle(request, queryset, SUSPEND)

    @admin.action(description="Resume selected network tokens", permissions=["operate"])
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
        """The confirmation page, then the lifecycle event for each token in a state it applies to."""
        queryset = queryset.select_related("merchant")
        confirmed = bool(request.POST.get("post"))
        if not confirmed or (form is not None and not form.is_valid()):
            tokens = list(queryset)
            wrong = sum(1 for token in tokens if token.status not in lifecycle.applies_to)
            return self.confirm(
                request, tokens, action=lifecycle.action, title=lifecycle.title, intro=lifecycle.intro,
                submit=lifecycle.submit, form=form,
                notes=[f"{wrong} of these token(s) are not {self._states(lifecycle)} and will be left alone."
                       if wrong else ""],
                rows=[(token, self._row_note(token, lifecycle)) for token in tokens],
            )
        changes = form.changes() if form is not None else {}
        applied = skipped = 0
        for token in queryset:
            if self._apply(request, token, lifecycle, changes):
                applied += 1
            else:
                skipped += 1
        self.message_user(request, f"{lifecycle.done} {applied} network token(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"{skipped} network token(s) were not {self._states(lifecycle)} and were left alone.",
                messages.WARNING,
            )
        return None

    def _apply(self, request, token: NetworkToken, lifecycle: Lifecycle, changes: dict) -> bool:
        with transaction.atomic():
            # The state is checked under the row lock lifecycle_apply takes again: a token suspended by the TSP
            # while this page was open is skipped rather than suspended twice.
            locked = NetworkToken.objects.select_for_update().select_related("merchant").get(pk=token.pk)
            if locked.status not in lifecycle.applies_to:
                return False
            event = services.lifecycle_apply(token=locked, type=lifecycle.type, source=_source(request), **changes)
            detail = {"merchant": locked.merchant.public_id, "status_before": event.old_status,
                      "status_after": event.new_status}
            if event.detail:
                detail["changed"] = sorted(event.detail)
            vault_services.audit_record(
                actor=_actor(request), action=f"admin.network_token.{lifecycle.action}", object_type="network_token",
                object_id=locked.token_id, detail=detail,
            )
        self.log_change(request, locked, f"{lifecycle.done}: lifecycle event {event.type} ({event.old_status} → "
                                         f"{event.new_status}).")
        return True

    @staticmethod
    def _states(lifecycle: Lifecycle) -> str:
        return " or ".join(lifecycle.applies_to)

    def _row_note(self, token: NetworkToken, lifecycle: Lifecycle) -> str:
        where = f"{token.merchant}, {token.status}"
        if token.status not in lifecycle.applies_to:
            return f"{where}: left alone (only {self._states(lifecycle)} tokens)"
        return where


# ------------------------------------------------------------------------------------------------------------
# Asynchronous requests
# ------------------------------------------------------------------------------------------------------------
@admin.register(ProvisioningRequest)
class ProvisioningRequestAdmin(ShowsVaultTokens, HistoryAdmin):
    list_display = ["public_id", "merchant", "correlation_id", "status", "attempts", "failure_code", "created_at"]
    list_filter = ["status"]
    list_select_related = ["merchant"]
    search_fields = ["=public_id", "=correlation_id"]
    search_help_text = "The request id (req_…) or the merchant's correlation id, exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["retry_now"]
    # Never the card ciphertext nor its key version: a card sent in the request is only said to be there.
    fields = ["public_id", "merchant", "correlation_id", "status", "attempts", "next_attempt_at", "queued_until",
              "claimed_until", "card_source", "account_id", "network_token", "failure_code", "failure_reason",
              "created_at", "updated_at"]
    readonly_fields = fields

    @admin.action(description="Retry now (pending requests)", permissions=["operate"])
    def retry_now(self, request, queryset):
        """A pending request attempted at once: one whose retry is scheduled later, or that looks stuck (its message
        lost, its worker gone before its lease ran out). Requests that ended are left alone."""
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            return self.confirm(
                request, queryset, action="retry_now", title="Retry network-token requests now", submit="Retry now",
                intro="Each pending request below is queued for an attempt at once. A worker still busy with one "
                      "loses it to the new attempt: the network may then be asked twice for that card.",
                rows=[(r, f"{r.status}, attempt {r.attempts}" + ("" if r.status == ProvisioningRequest.PENDING
                                                                  else ", left alone")) for r in queryset],
            )
        actor = _actor(request)
        retried = sum(services.provisioning_request_retry_now(request=r, actor=actor) for r in queryset)
        self.message_user(request, f"{retried} request(s) will be attempted now.", messages.SUCCESS)
        if left := queryset.count() - retried:
            self.message_user(request, f"{left} request(s) had ended and were left alone.", messages.WARNING)

    @admin.display(description="card")
    def card_source(self, obj):
        if obj.vault_token_id is not None:
            return format_html("from vault token {}", self.vault_token_shown(obj))
        if obj.card_ciphertext is not None:
            return "sent in the request (kept encrypted until the request ends)"
        return "sent in the request (destroyed when the request ended)"


# ------------------------------------------------------------------------------------------------------------
# Batches
# ------------------------------------------------------------------------------------------------------------
def _counted(status: str) -> str:
    return f"{status.lower()}_count"


class BatchFilter(NamespaceFilter):
    """By batch id, typed in: batches are far too many to list."""

    title = "batch"
    parameter_name = "batch"
    placeholder = "bat_…"

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(batch__public_id=self.value())
        return queryset


@admin.register(Batch)
class BatchAdmin(HistoryAdmin):
    list_display = ["public_id", "merchant", "status", "total", "pending", "queued", "running",
                    "pending_activation", "succeeded", "failed", "created_at", "completed_at"]
    list_filter = ["status"]
    list_select_related = ["merchant"]
    search_fields = ["=public_id"]
    search_help_text = "The batch id (bat_…), exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["public_id", "merchant", "status", "total", "items_by_state", "created_at", "completed_at",
              "failed_items"]
    readonly_fields = fields

    def get_queryset(self, request):
        counts = {_counted(status): Count("items", filter=Q(items__status=status)) for status, _ in BatchItem.STATUSES}
        return super().get_queryset(request).annotate(**counts)

    @admin.display(description="pending", ordering=_counted(BatchItem.PENDING))
    def pending(self, obj):
        return getattr(obj, _counted(BatchItem.PENDING))

    @admin.display(description="queued", ordering=_counted(BatchItem.QUEUED))
    def queued(self, obj):
        return getattr(obj, _counted(BatchItem.QUEUED))

    @admin.display(description="running", ordering=_counted(BatchItem.RUNNING))
    def running(self, obj):
        return getattr(obj, _counted(BatchItem.RUNNING))

    @admin.display(description="awaiting activation", ordering=_counted(BatchItem.PENDING_ACTIVATION))
    def pending_activation(self, obj):
        return getattr(obj, _counted(BatchItem.PENDING_ACTIVATION))

    @admin.display(description="succeeded", ordering=_counted(BatchItem.SUCCEEDED))
    def succeeded(self, obj):
        return getattr(obj, _counted(BatchItem.SUCCEEDED))

    @admin.display(description="failed", ordering=_counted(BatchItem.FAILED))
    def failed(self, obj):
        return getattr(obj, _counted(BatchItem.FAILED))

    @admin.display(description="items")
    def items_by_state(self, obj):
        url = reverse("admin:networks_batchitem_changelist")
        links = [(url, urlencode({"batch": obj.public_id}), "all", obj.total)] + [
            (url, urlencode({"batch": obj.public_id, "status__exact": status}), status.lower(),
             getattr(obj, _counted(status)))
            for status, _ in BatchItem.STATUSES
        ]
        return format_html_join(" · ", '<a href="{}?{}">{} ({})</a>', links)

    @admin.display(description="failed items")
    def failed_items(self, obj):
        failed = list(obj.items.filter(status=BatchItem.FAILED).order_by("index")[:FAILED_ITEMS_SHOWN])
        if not failed:
            return "None."
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((item.index, _reference(item.token_reference), item.failure_code, item.failure_reason) for item in failed),
        )
        more = getattr(obj, _counted(BatchItem.FAILED)) - len(failed)
        link = reverse("admin:networks_batchitem_changelist") + "?" + urlencode(
            {"batch": obj.public_id, "status__exact": BatchItem.FAILED}
        )
        return format_html(
            '<table><thead><tr><th scope="col">#</th><th scope="col">token</th><th scope="col">error</th>'
            '<th scope="col">reason</th></tr></thead><tbody>{}</tbody></table><p>{}<a href="{}">All failed items'
            "</a></p>",
            rows, f"{more} more not shown. " if more > 0 else "", link,
        )


@admin.register(BatchItem)
class BatchItemAdmin(HistoryAdmin):
    list_display = ["batch", "index", "reference", "issuer", "status", "attempts", "failure_code", "failure_reason",
                    "finished_at"]
    list_filter = [BatchFilter, "status", "issuer"]
    list_select_related = ["batch", "issuer"]
    search_fields = ["=batch__public_id", "=token_reference"]
    search_help_text = "The batch id (bat_…) or the token reference the merchant sent, exactly."
    show_full_result_count = False
    fields = ["batch", "index", "reference", "correlation_id", "account_id", "issuer", "status", "attempts",
              "abandoned", "queued_at", "called_at", "finished_at", "network_token", "failure_code", "failure_reason"]
    readonly_fields = fields

    @admin.display(description="token reference", ordering="token_reference")
    def reference(self, obj):
        return _reference(obj.token_reference)
