"""The back office for the vault: masked card data only.

Nothing here shows or accepts a full card number: card columns are the masked number, BIN, last four and brand;
the ciphertext, the fingerprint and API key hashes are never fields of any form or page, and a search that looks
like a card number is refused before it reaches a query or a page. Writes go through ``vault.services``, so a
token "deleted" here is a tombstone, exactly as through the API. Viewing a token or a conflict (holder name,
address) and every write are audited as ``admin:<username>``.

Who may do what is the ``back-office`` group's business (migration 0002): the token's change permission extends an
expiry, its delete permission destroys the card data, the conflict's change permission applies or dismisses it.
Every action shows a confirmation page first (what will happen, to which rows, which are left alone) and writes one
audit row per object it changes: the service's own (``token.delete``, ``token.extend_expiry``,
``admin.api_key.revoke``) or the admin's (``admin.conflict.apply``, ``admin.conflict.dismiss``, ...).
"""

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import transaction
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from config.admin import ConfirmsActions, ReadOnlyInline, RefusesCardNumbersInSearch
from config.errors import ResourceNotFound
from vault import selectors, services
from vault.models import (
    DEFAULT_SCOPES,
    SCOPES,
    ApiKey,
    AuditLog,
    ExpiryExtension,
    Merchant,
    Namespace,
    Token,
    TokenConflict,
)


def _actor(request) -> services.Actor:
    return services.Actor(f"admin:{request.user.get_username()}", origin=request.META.get("REMOTE_ADDR", ""))


# ------------------------------------------------------------------------------------------------------------
# Presentation helpers
# ------------------------------------------------------------------------------------------------------------
def _expiry(month: int | None, year: int | None) -> str:
    return f"{month:02d}/{year}" if month and year else "—"


def _address(address: dict | None):
    """A billing address as escaped lines."""
    if not address:
        return "—"
    town = " ".join(part for part in (address.get("postalCode"), address.get("city")) if part)
    lines = [address.get("address1"), address.get("address2"), address.get("address3"), town,
             address.get("state"), address.get("countryCode")]
    return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in lines if line))


def _conflict_comparison(token: Token, conflict: TokenConflict):
    """The conflict's requested values beside the stored ones, as a table (only the fields that differ)."""
    rows = []
    if conflict.card_holder_name is not None:
        rows.append(("Card holder name", token.card_holder_name or "—", conflict.card_holder_name))
    if conflict.expiry_month is not None:
        rows.append(("Card expiry", _expiry(token.expiry_month, token.expiry_year),
                     _expiry(conflict.expiry_month, conflict.expiry_year)))
    if conflict.billing_address is not None:
        rows.append(("Billing address", _address(token.billing_address), _address(conflict.billing_address)))
    if conflict.scheme_transaction_reference is not None:
        rows.append(("Scheme transaction reference", token.scheme_transaction_reference or "—",
                     conflict.scheme_transaction_reference))
    return format_html(
        '<table class="vault-conflict"><thead><tr><th scope="col">Field</th><th scope="col">Stored now</th>'
        '<th scope="col">Requested (applied by “Apply”)</th></tr></thead><tbody>{}</tbody></table>',
        format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td></tr>', rows),
    )


def _conflict_table(token: Token, conflict: TokenConflict | None):
    """The pending conflict side by side with the stored data, and where to resolve it."""
    if conflict is None or not conflict.is_pending():
        return "No pending conflict."
    resolve = reverse("admin:vault_tokenconflict_changelist") + "?" + urlencode({"q": token.token_id})
    return format_html(
        '{}<p>Pending until {} UTC. <a href="{}">Apply or dismiss it</a> from the conflicts list; once it expires '
        "the stored data simply stays.</p>",
        _conflict_comparison(token, conflict), f"{conflict.expires_at:%Y-%m-%d %H:%M}", resolve,
    )


class ReadOnlyAdmin(RefusesCardNumbersInSearch, admin.ModelAdmin):
    """Rows written by services only: staff may look, never add, edit or delete."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# ------------------------------------------------------------------------------------------------------------
# Merchants and API keys
# ------------------------------------------------------------------------------------------------------------
class ApiKeyOptionsForm(forms.Form):
    name = forms.CharField(max_length=100, initial="default")
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        initial=list(DEFAULT_SCOPES),
        widget=forms.CheckboxSelectMultiple,
        help_text="tokens:detokenize returns full card numbers: give it only to a payment processor's key.",
    )


class ApiKeyCreateForm(forms.ModelForm):
    scopes = ApiKeyOptionsForm.base_fields["scopes"]

    class Meta:
        model = ApiKey
        fields = ["merchant", "name", "scopes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["merchant"].queryset = Merchant.objects.filter(is_active=True)
        self.fields["merchant"].help_text = "Active merchants only."


def _show_raw_key_once(request, *, merchant: Merchant, raw: str) -> None:
    messages.warning(
        request,
        f"New API key for {merchant}, shown only this once (only its hash is stored, copy it now): {raw}",
    )


def _api_key_issue(request, *, merchant: Merchant, name: str, scopes: list[str]) -> ApiKey:
    """Create a key through the service, audit it, and show the raw key to this user this once."""
    with transaction.atomic():
        key, raw = services.api_key_create(merchant=merchant, scopes=scopes, name=name)
        services.audit_record(
            actor=_actor(request), action="admin.api_key.create", object_type="api_key", object_id=key.prefix,
            detail={"merchant": merchant.public_id, "name": key.name, "scopes": key.scopes},
        )
    _show_raw_key_once(request, merchant=merchant, raw=raw)
    return key


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "name", "scopes", "created_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Merchant)
class MerchantAdmin(ConfirmsActions, RefusesCardNumbersInSearch, admin.ModelAdmin):
    list_display = ["name", "public_id", "is_active", "created_at", "active_keys"]
    list_filter = ["is_active"]
    search_fields = ["name", "=public_id"]
    readonly_fields = ["public_id", "created_at"]
    inlines = [ApiKeyInline]
    actions = ["create_api_key"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(
            active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True))
        )

    def get_fields(self, request, obj=None):
        # A new merchant is made by services.merchant_create, which also issues its first key.
        return ["name"] if obj is None else ["name", "public_id", "is_active", "created_at"]

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        # Tokens and the audit trail point at merchants: deactivate one instead.
        return False

    def has_create_key_permission(self, request):
        return request.user.has_perm("vault.add_apikey")

    @admin.display(description="active API keys", ordering="active_key_count")
    def active_keys(self, obj):
        return obj.active_key_count

    def save_model(self, request, obj, form, change):
        if change:
            # A rename or a deactivation (which stops every key of the merchant at once) is audited like an action.
            with transaction.atomic():
                super().save_model(request, obj, form, change)
                if form.changed_data:
                    services.audit_record(
                        actor=_actor(request), action="admin.merchant.change", object_type="merchant",
                        object_id=obj.public_id, detail={name: form.cleaned_data[name] for name in form.changed_data},
                    )
            return
        with transaction.atomic():
            merchant, raw = services.merchant_create(name=form.cleaned_data["name"])
            services.audit_record(
                actor=_actor(request), action="admin.merchant.create", object_type="merchant",
                object_id=merchant.public_id,
            )
        for field in Merchant._meta.concrete_fields:
            setattr(obj, field.attname, getattr(merchant, field.attname))
        obj._state.adding = False
        _show_raw_key_once(request, merchant=merchant, raw=raw)

    @admin.action(description="Create an API key", permissions=["create_key"])
    def create_api_key(self, request, queryset):
        """Ask for the key's name and scopes, then issue one key per selected merchant (each shown once)."""
        confirmed = bool(request.POST.get("post"))
        form = ApiKeyOptionsForm(request.POST if confirmed else None)
        if confirmed and form.is_valid():
            for merchant in queryset:
                _api_key_issue(request, merchant=merchant, **form.cleaned_data)
            return None
        return self.confirm(
            request, queryset, action="create_api_key", title="Create an API key", form=form,
            submit=f"Create the key{'s' if len(queryset) > 1 else ''}",
            intro="A new key will be made for each of these merchants. Each key is shown once, on the next page: "
                  "copy it then, because only its hash is kept.",
            rows=[(merchant, "" if merchant.is_active else "inactive: the key will not authenticate until the "
                   "merchant is active") for merchant in queryset],
        )


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(ConfirmsActions, RefusesCardNumbersInSearch, admin.ModelAdmin):
    list_display = ["prefix", "name", "merchant", "scopes", "created_at", "revoked_at"]
    list_filter = [RevokedFilter, "merchant"]
    list_select_related = ["merchant"]
    search_fields = ["=prefix", "name", "merchant__name", "=merchant__public_id"]
    date_hierarchy = "created_at"
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["merchant", "name", "scopes"]
        return ["merchant", "name", "prefix", "scopes", "created_at", "revoked_at"]

    def has_change_permission(self, request, obj=None):
        # A key never changes: make a new one and revoke the old.
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoked keys stay, so the audit trail's "api-key:<prefix>" actors keep meaning something.
        return False

    def has_revoke_permission(self, request):
        return request.user.has_perm("vault.change_apikey")

    def save_model(self, request, obj, form, change):
        key = _api_key_issue(request, **form.cleaned_data)
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        """Through a confirmation page: each key stops authenticating at once, for good."""
        if not request.POST.get("post"):
            keys = list(queryset.select_related("merchant"))
            return self.confirm(
                request, keys, action="revoke", title="Revoke API keys", submit="Revoke",
                intro="Each key stops authenticating at once: the merchant's requests with it answer 401 from the "
                      "next one on. A revoked key cannot be restored; issue a new one instead.",
                rows=[(key, f"{key.merchant}, scopes {', '.join(key.scopes)}"
                            + (" — already revoked, left as it is" if key.revoked_at else "")) for key in keys],
            )
        revoked = services.api_keys_revoke(keys=queryset, actor=_actor(request))
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)


# ------------------------------------------------------------------------------------------------------------
# Tokens
# ------------------------------------------------------------------------------------------------------------
class ExpiredFilter(admin.SimpleListFilter):
    title = "expired"
    parameter_name = "expired"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__lte=now)
        if self.value() == "no":
            return queryset.filter(expires_at__gt=now)
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


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


class ExpiryExtensionInline(ReadOnlyInline):
    model = ExpiryExtension
    fields = ["old_expires_at", "new_expires_at", "reason", "created_at"]
    readonly_fields = fields


@admin.register(Token)
class TokenAdmin(ConfirmsActions, ReadOnlyAdmin):
    confirmation_template = "admin/vault/token/action_confirmation.html"
    list_display = ["token_id", "masked_card", "brand", "merchant", "namespace", "expires_at", "created_at", "deleted"]
    list_filter = ["brand", "merchant", NamespaceFilter, ExpiredFilter, DeletedFilter]
    list_select_related = ["merchant", "namespace"]
    # Exact matches only: a clerk asks for one token, not for every card sharing some digits. "__exact" rather than
    # "=", which means iexact: UPPER(column) = UPPER(term), which none of the token's indexes can answer.
    search_fields = ["token_id__exact", "last_four__exact", "bin__exact"]
    search_help_text = "tokenId, last four digits or BIN (first six), exactly."
    date_hierarchy = "created_at"
    show_full_result_count = False  # one COUNT over the vault per page view is enough
    actions = ["tombstone_selected", "extend_expiry"]
    inlines = [ExpiryExtensionInline]
    fieldsets = [
        (None, {"fields": ["token_id", "merchant", "namespace", "description"]}),
        ("Card (masked)", {"fields": ["masked_card", "brand", "card_holder_name", "card_expiry", "billing"]}),
        # Right under the stored card data it would replace.
        ("Pending conflict", {"fields": ["pending_conflict"]}),
        ("Lifecycle", {"fields": ["created_at", "updated_at", "expires_at", "deleted_at", "deleted_reason"]}),
    ]
    readonly_fields = [
        "token_id", "merchant", "namespace", "description", "masked_card", "brand", "card_holder_name", "card_expiry",
        "billing", "created_at", "updated_at", "expires_at", "deleted_at", "deleted_reason",
        "pending_conflict",
    ]

    def get_search_results(self, request, queryset, search_term):
        # tokenIds are capitals and digits, BINs and last fours digits: the term in capitals finds what iexact would.
        return super().get_search_results(request, queryset, search_term.upper())

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # raw row deletion would destroy the tombstone too
        return actions

    def has_tombstone_permission(self, request):
        # The model's delete permission, which here means "destroy the card data", never "drop the row".
        return request.user.has_perm("vault.delete_token")

    def has_extend_permission(self, request):
        # The model's change permission: nothing else of a token is changed in the admin.
        return request.user.has_perm("vault.change_token")

    @admin.display(description="card number")
    def masked_card(self, obj):
        return obj.masked_number

    @admin.display(description="card expiry")
    def card_expiry(self, obj):
        return _expiry(obj.expiry_month, obj.expiry_year)

    @admin.display(description="billing address")
    def billing(self, obj):
        return _address(obj.billing_address)

    @admin.display(description="deleted", boolean=True, ordering="deleted_at")
    def deleted(self, obj):
        return obj.is_deleted

    @admin.display(description="stored and requested")
    def pending_conflict(self, obj):
        return _conflict_table(obj, selectors.conflict_pending(token=obj))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # 200 means the page shows the token (a missing one redirects with a message).
        if request.method == "GET" and response.status_code == 200:
            token = response.context_data["original"]
            services.audit_record(actor=_actor(request), action="admin.token.view", obj=token)
        return response

    @admin.action(description="Delete selected tokens", permissions=["tombstone"])
    def tombstone_selected(self, request, queryset):
        """Through a confirmation page: destroy the card data of each token, keeping its masked tombstone."""
        if request.POST.get("post"):
            actor = _actor(request)
            deleted = 0
            for token in queryset.filter(deleted_at__isnull=True):
                services.token_delete(token=token, actor=actor)
                self.log_change(request, token, "Deleted the card data; the token is now a tombstone.")
                deleted += 1
            self.message_user(request, f"Deleted {deleted} token(s); their tombstones remain.", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Delete tokens",
            "subtitle": None,
            "opts": self.opts,
            "queryset": queryset.select_related("merchant"),
            "already_deleted": queryset.filter(deleted_at__isnull=False).count(),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/vault/token/delete_selected_confirmation.html", context)

    @admin.action(description="Extend expiry by one default lifetime", permissions=["extend"])
    def extend_expiry(self, request, queryset):
        """Through a confirmation page: move each live token's expiry one default lifetime on (deleted and expired
        tokens are left alone). The service writes the extension row, the audit row and the merchant's event."""
        lifetime = services.default_lifetime()
        queryset = queryset.select_related("merchant")
        if not request.POST.get("post"):
            tokens = list(queryset)
            now = timezone.now()
            left_alone = sum(1 for token in tokens if self._not_extendable(token, now))
            return self.confirm(
                request, tokens, action="extend_expiry", title="Extend token expiry", submit="Extend",
                intro=f"Each live token's expiry moves {_duration(lifetime)} (one default lifetime) later. The "
                      "extension is recorded in the token's history and the merchant gets a token.expiry_extended "
                      "webhook.",
                notes=[f"{left_alone} of these token(s) are deleted or expired and will be left alone."
                       if left_alone else ""],
                rows=[(token, self._extension_note(token, now, lifetime)) for token in tokens],
            )
        actor = _actor(request)
        extended = skipped = 0
        for token in queryset:
            with transaction.atomic():
                # Checked under the row lock the service takes again: a token that expired or was deleted while
                # the page was open is skipped, not revived.
                locked = Token.objects.select_for_update().get(pk=token.pk)
                if self._not_extendable(locked, timezone.now()):
                    skipped += 1
                    continue
                extension = services.token_extend_expiry(token=locked, actor=actor)
            self.log_change(request, locked, f"Extended the expiry to {extension.new_expires_at:%Y-%m-%d %H:%M} UTC.")
            extended += 1
        self.message_user(request, f"Extended the expiry of {extended} token(s) by {_duration(lifetime)}.",
                          messages.SUCCESS)
        if skipped:
            self.message_user(request, f"{skipped} token(s) were deleted or expired and were left alone.",
                              messages.WARNING)
        return None

    @staticmethod
    def _not_extendable(token: Token, now) -> bool:
        return token.is_deleted or token.is_expired(now)

    def _extension_note(self, token: Token, now, lifetime) -> str:
        if token.is_deleted:
            return "deleted: left alone"
        if token.is_expired(now):
            return f"expired {token.expires_at:%Y-%m-%d %H:%M} UTC: left alone"
        return f"{token.expires_at:%Y-%m-%d %H:%M} → {token.expires_at + lifetime:%Y-%m-%d %H:%M} UTC"


def _duration(delta) -> str:
    days = delta.days
    return f"{days // 365} years" if days >= 365 else f"{days} days"


class PendingFilter(admin.SimpleListFilter):
    title = "pending"
    parameter_name = "pending"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No (expired)")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "yes":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "no":
            return queryset.filter(expires_at__lte=now)
        return queryset


@dataclass(frozen=True)
class Resolution:
    """Apply or dismiss: the service each runs, and what its confirmation page and messages say."""

    action: str  # the admin action, and the audit action's last word
    service: Callable
    title: str
    intro: str
    submit: str
    done: str
    expired_note: str  # a row's note when its conflict is no longer pending


APPLY = Resolution(
    "apply", services.conflict_apply, "Apply token conflicts",
    "For each token the requested values replace the stored ones, exactly as the merchant's PUT on the token's "
    "conflicts does, and the merchant gets a token.updated webhook. The stored values are not kept anywhere.",
    "Apply", "Applied", "expired: nothing to apply, left alone",
)
DISMISS = Resolution(
    "dismiss", services.conflict_dismiss, "Dismiss token conflicts",
    "For each token the stored values stay and the requested ones are forgotten. The merchant is not notified; a "
    "later request with the same values makes a new conflict.",
    "Dismiss", "Dismissed", "expired: the conflict is removed, the stored data stays",
)


@admin.register(TokenConflict)
class TokenConflictAdmin(ConfirmsActions, ReadOnlyAdmin):
    confirmation_template = "admin/vault/tokenconflict/action_confirmation.html"
    list_display = ["token", "merchant", "created_at", "expires_at", "pending"]
    list_filter = [PendingFilter]
    list_select_related = ["token__merchant"]
    search_fields = ["=token__token_id"]
    search_help_text = "tokenId, exactly."
    actions = ["apply", "dismiss"]
    fields = ["token", "merchant", "created_at", "expires_at", "pending", "comparison"]
    readonly_fields = fields

    def has_resolve_permission(self, request):
        return request.user.has_perm("vault.change_tokenconflict")

    @admin.display(description="merchant")
    def merchant(self, obj):
        return obj.token.merchant

    @admin.display(description="pending", boolean=True, ordering="expires_at")
    def pending(self, obj):
        return obj.is_pending()

    @admin.display(description="stored and requested")
    def comparison(self, obj):
        return _conflict_table(obj.token, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        if request.method == "GET" and response.status_code == 200:
            conflict = response.context_data["original"]
            services.audit_record(actor=_actor(request), action="admin.conflict.view", obj=conflict.token)
        return response

    @admin.action(description="Apply: replace the stored data with the requested data", permissions=["resolve"])
    def apply(self, request, queryset):
        return self._resolve(request, queryset, APPLY)

    @admin.action(description="Dismiss: keep the stored data", permissions=["resolve"])
    def dismiss(self, request, queryset):
        return self._resolve(request, queryset, DISMISS)

    def _resolve(self, request, queryset, resolution: Resolution):
        """The confirmation page (stored and requested data side by side), then the service for each conflict, with
        one ``admin.conflict.<apply|dismiss>`` audit row each (a failure row when it was no longer pending)."""
        actor = _actor(request)
        queryset = queryset.select_related("token__merchant", "token__namespace")
        if not request.POST.get("post"):
            conflicts = list(queryset)
            now = timezone.now()
            rows = []
            for conflict in conflicts:
                if conflict.is_pending(now):
                    # The page shows holder names and addresses: a view of the token, audited as the conflict
                    # page is.
                    services.audit_record(actor=actor, action="admin.conflict.view", obj=conflict.token,
                                          detail={"page": f"{resolution.action} confirmation"})
                    rows.append((conflict, _conflict_comparison(conflict.token, conflict), ""))
                else:
                    rows.append((conflict, None, resolution.expired_note))
            expired = sum(1 for _, comparison, _ in rows if comparison is None)
            return self.confirm(
                request, conflicts, action=resolution.action, title=resolution.title, intro=resolution.intro,
                submit=resolution.submit, rows=rows,
                notes=[f"{expired} of these conflict(s) expired already." if expired else ""],
            )
        resolved = gone = 0
        for conflict in queryset:
            token = conflict.token
            try:
                with transaction.atomic():
                    resolution.service(token=token)
                    services.audit_record(actor=actor, action=f"admin.conflict.{resolution.action}", obj=token)
            except ResourceNotFound:
                services.audit_record(actor=actor, action=f"admin.conflict.{resolution.action}", obj=token,
                                      result=AuditLog.FAILURE, detail={"reason": "no pending conflict"})
                gone += 1
                continue
            # On the token: the conflict row is gone, the token's history is where a clerk looks.
            self.log_change(request, token, f"{resolution.done} the pending conflict.")
            resolved += 1
        self.message_user(request, f"{resolution.done} {resolved} conflict(s).", messages.SUCCESS)
        if gone:
            self.message_user(request, f"{gone} conflict(s) had expired or were resolved meanwhile, and were left "
                                       "alone.", messages.WARNING)
        return None


@admin.register(Namespace)
class NamespaceAdmin(ReadOnlyAdmin):
    # A namespace is part of its tokens' identity: renaming or dropping one here would move or orphan cards.
    list_display = ["name", "merchant", "card_count", "created_at", "tokens_link"]
    list_filter = ["merchant"]
    search_fields = ["name"]
    fields = ["name", "merchant", "card_count", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.namespaces_with_counts()

    @admin.display(description="cards", ordering="card_count")
    def card_count(self, obj):
        return obj.card_count

    @admin.display(description="tokens")
    def tokens_link(self, obj):
        url = reverse("admin:vault_token_changelist")
        query = urlencode({"merchant__id__exact": obj.merchant_id, "namespace": obj.name})
        return format_html('<a href="{}?{}">tokens</a>', url, query)


@admin.register(ExpiryExtension)
class ExpiryExtensionAdmin(ReadOnlyAdmin):
    list_display = ["token", "old_expires_at", "new_expires_at", "reason", "created_at"]
    list_filter = ["reason"]
    list_select_related = ["token"]
    search_fields = ["=token__token_id"]
    date_hierarchy = "created_at"
    fields = list_display
    readonly_fields = fields


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "subject", "result", "origin"]
    list_filter = ["action", "result"]
    search_fields = ["object_id", "actor"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["created_at", "actor", "merchant", "action", "object_type", "object_id", "result", "origin", "detail"]
    readonly_fields = fields
    list_select_related = ["merchant"]

    @admin.display(description="object")
    def subject(self, obj):
        return f"{obj.object_type} {obj.object_id}".strip() or "—"
