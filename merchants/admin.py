"""The back office for merchants and their API keys (superusers only: no group holds these permissions but a view).

A key's raw value is shown once, on the page after it is made; only its hash is stored. Keys are revoked, never
edited or deleted, so the audit trail's ``api-key:<prefix>`` actors keep meaning something.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q

from core.admin import ConfirmsActions, RefusesCardNumbersInSearch, staff_actor
from core.audit import audit_record
from merchants import services
from merchants.models import DEFAULT_SCOPES, SCOPES, ApiKey, Merchant
from merchants.rates import RATE_HELP
from merchants.throttling import default_rates


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
        audit_record(
            actor=staff_actor(request),
            action="admin.api_key.create",
            object_type="api_key",
            object_id=key.prefix,
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
        return (
            super()
            .get_queryset(request)
            .annotate(active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
        )

    def get_fields(self, request, obj=None):
        # A new merchant is made by services.merchant_create, which also issues its first key.
        if obj is None:
            return ["name"]
        return ["name", "public_id", "is_active", "api_rate_limit", "card_data_rate_limit", "created_at"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        default = default_rates().get(db_field.name)
        if default:
            # The default as the settings have it now: an empty field follows it when it changes.
            field.help_text = f"{db_field.help_text} {RATE_HELP}; empty for the default, now {default}."
            field.widget.attrs["placeholder"] = default
        return field

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        # Tokens and the audit trail point at merchants: deactivate one instead.
        return False

    def has_create_key_permission(self, request):
        return request.user.has_perm("merchants.add_apikey")

    @admin.display(description="active API keys", ordering="active_key_count")
    def active_keys(self, obj):
        return obj.active_key_count

    def save_model(self, request, obj, form, change):
        if change:
            # A rename or a deactivation (which stops every key of the merchant at once) is audited like an action.
            with transaction.atomic():
                super().save_model(request, obj, form, change)
                if form.changed_data:
                    audit_record(
                        actor=staff_actor(request),
                        action="admin.merchant.change",
                        object_type="merchant",
                        object_id=obj.public_id,
                        detail={name: form.cleaned_data[name] for name in form.changed_data},
                    )
            return
        with transaction.atomic():
            merchant, raw = services.merchant_create(name=form.cleaned_data["name"])
            audit_record(
                actor=staff_actor(request),
                action="admin.merchant.create",
                object_type="merchant",
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
            request,
            queryset,
            action="create_api_key",
            title="Create an API key",
            form=form,
            submit=f"Create the key{'s' if len(queryset) > 1 else ''}",
            intro="A new key will be made for each of these merchants. Each key is shown once, on the next page: "
            "copy it then, because only its hash is kept.",
            rows=[
                (
                    merchant,
                    ""
                    if merchant.is_active
                    else "inactive: the key will not authenticate until the merchant is active",
                )
                for merchant in queryset
            ],
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
        return request.user.has_perm("merchants.change_apikey")

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
                request,
                keys,
                action="revoke",
                title="Revoke API keys",
                submit="Revoke",
                intro="Each key stops authenticating at once: the merchant's requests with it answer 401 from the "
                "next one on. A revoked key cannot be restored; issue a new one instead.",
                rows=[
                    (
                        key,
                        f"{key.merchant}, scopes {', '.join(key.scopes)}"
                        + (" — already revoked, left as it is" if key.revoked_at else ""),
                    )
                    for key in keys
                ],
            )
        revoked = services.api_keys_revoke(keys=queryset, actor=staff_actor(request))
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
