"""Merchants in the back office: made with their first API key (its scopes chosen on the form), renamed, deactivated,
their rate limits changed after a confirmation; "Create API key" on the list and on the merchant's page."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q
from django.urls import reverse

from core.admin import ConfirmsActions, ObjectActions, RefusesCardNumbersInSearch, staff_actor
from core.admin_changes import ConfirmsChanges
from core.admin_display import GOOD, QUIET, counted, merchant_shown, moment_shown, status_label
from core.audit import audit_record
from merchants import services
from merchants.admin.keys import ApiKeyInline, ApiKeyOptionsForm, ScopesField, api_key_issue, key_page, remember_issued
from merchants.models import Merchant
from merchants.rates import RATE_HELP
from merchants.throttling import default_rates

RATE_FIELDS = ("api_rate_limit", "card_data_rate_limit")


class MerchantAddForm(forms.ModelForm):
    scopes = ScopesField(label="Scopes of its first API key")

    class Meta:
        model = Merchant
        fields = ["name"]


@admin.register(Merchant)
class MerchantAdmin(ObjectActions, ConfirmsChanges, ConfirmsActions, RefusesCardNumbersInSearch, admin.ModelAdmin):
    list_display = ["merchant", "public_id", "status", "active_keys", "created"]
    list_filter = ["is_active"]
    search_fields = ["name", "=public_id"]
    inlines = [ApiKeyInline]
    actions = ["create_api_key"]
    object_actions = {"create_api_key": "Create API key"}
    confirmed_fields = RATE_FIELDS

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(active_key_count=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)))
        )

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = MerchantAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fieldsets(self, request, obj=None):
        # A new merchant is made by services.merchant_create, which also issues its first key.
        if obj is None:
            return [
                (None, {"fields": ["name"]}),
                (
                    "Its first API key",
                    {
                        "fields": ["scopes"],
                        "description": "Saving makes the merchant and one API key with these scopes. The key is "
                        "shown once, on the next page: only its hash is kept.",
                    },
                ),
            ]
        return [(None, {"fields": ["name", "public_id", "is_active", *RATE_FIELDS, "created"]})]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["public_id", "created"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        default = default_rates().get(db_field.name)
        if default:
            # The default as the settings have it now: an empty field follows it when it changes.
            field.help_text = f"{db_field.help_text} {RATE_HELP}; empty for the default, now {default}."
            field.widget.attrs["placeholder"] = default
        return field

    def value_shown(self, name, value):
        if name in RATE_FIELDS and not value:
            return f"the default (now {default_rates()[name]})"
        return super().value_shown(name, value)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        # Tokens and the audit trail point at merchants: deactivate one instead.
        return False

    def has_create_key_permission(self, request):
        return request.user.has_perm("merchants.add_apikey")

    @admin.display(description="merchant", ordering="name")
    def merchant(self, obj):
        return merchant_shown(obj)

    @admin.display(description="status", ordering="-is_active")
    def status(self, obj):
        return status_label("Active", GOOD) if obj.is_active else status_label("Inactive", QUIET)

    @admin.display(description="active API keys", ordering="active_key_count")
    def active_keys(self, obj):
        return obj.active_key_count

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    def save_model(self, request, obj, form, change):
        if change:
            # A rename, a deactivation (which stops every key of the merchant at once) or new rate limits are
            # audited like an action.
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
        scopes = form.cleaned_data["scopes"]
        with transaction.atomic():
            merchant, raw = services.merchant_create(name=form.cleaned_data["name"], scopes=scopes)
            audit_record(
                actor=staff_actor(request),
                action="admin.merchant.create",
                object_type="merchant",
                object_id=merchant.public_id,
                detail={"scopes": scopes},
            )
        for field in Merchant._meta.concrete_fields:
            setattr(obj, field.attname, getattr(merchant, field.attname))
        obj._state.adding = False
        remember_issued(request, merchant.api_keys.get(), raw)

    def response_add(self, request, obj, post_url_continue=None):
        # The key's page instead of Django's redirect and its message: the raw key goes nowhere else.
        return key_page(request, self, done_url=reverse("admin:merchants_merchant_change", args=[obj.pk]))

    @admin.action(description="Create an API key", permissions=["create_key"])
    def create_api_key(self, request, queryset):
        """Ask for the key's name and scopes, then issue one key per selected merchant, all shown on the next page."""
        confirmed = bool(request.POST.get("post"))
        form = ApiKeyOptionsForm(request.POST if confirmed else None)
        merchants = list(queryset)
        if confirmed and form.is_valid():
            for merchant in merchants:
                api_key_issue(request, merchant=merchant, **form.cleaned_data)
            names = ", ".join(merchant.name for merchant in merchants)
            self.message_user(request, f"Created {counted(len(merchants), 'API key')} for {names}.", messages.SUCCESS)
            one = len(merchants) == 1
            done = reverse("admin:merchants_merchant_change", args=[merchants[0].pk]) if one else request.path
            return key_page(request, self, done_url=done)
        return self.confirm(
            request,
            merchants,
            action="create_api_key",
            title="Create an API key",
            form=form,
            submit="Create the key" if len(merchants) == 1 else "Create the keys",
            intro="A new key will be made for each of these merchants. Each key is shown once, on the next page: "
            "copy it then, because only its hash is kept.",
            rows=[
                (
                    merchant,
                    ""
                    if merchant.is_active
                    else "inactive: the key will not authenticate until the merchant is active",
                )
                for merchant in merchants
            ],
        )
