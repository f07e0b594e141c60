"""API keys in the back office: made with their scopes chosen, shown once on a page of their own, revoked for good.

A new key's raw value exists only in the response to the POST that made it (``key_page``): never in a URL, a
message, a log or the audit trail, and that response is not cached (``no-store``). Keys are revoked, never edited or
deleted, so the audit trail's ``api-key:<prefix>`` actors keep meaning something.

Each key shows its last use, to the minute (merchants.authentication records it): a key no call has used for months
is one to revoke, a key used a minute ago is one whose merchant will notice.
"""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html, format_html_join

from core.admin import ConfirmsActions, ObjectActions, RefusesCardNumbersInSearch, staff_actor
from core.admin_display import GOOD, QUIET, WARNING, counted, merchant_shown, moment_shown, relative, status_label
from core.audit import audit_record
from merchants import services
from merchants.models import DEFAULT_SCOPES, SCOPES, ApiKey, Merchant

# What each scope lets a key do, as staff read it; the scope's own name is what the API and the audit log say.
SCOPE_NAMES = {
    "tokens": "Card tokens",
    "tokens:detokenize": "Detokenize (full card numbers)",
    "network-tokens": "Network tokens",
    "webhooks": "Webhooks",
    "forwarding": "Forwarding (cards sent on, never shown)",
}
DETOKENIZE = "tokens:detokenize"
ISSUED = "issued_api_keys"  # the request's attribute holding the keys its POST made, for the page that shows them


def scope_name(scope: str) -> str:
    return SCOPE_NAMES.get(scope, scope)


def scopes_shown(scopes: list[str]):
    """Readable scopes, the card-data one marked: it is the one to notice on a key."""
    if not scopes:
        return "none"
    return format_html_join(
        " ",
        "{}",
        (
            (status_label(scope_name(scope), WARNING) if scope == DETOKENIZE else format_html("{}", scope_name(scope)),)
            for scope in scopes
        ),
    )


def last_use_shown(key: ApiKey):
    return moment_shown(key.last_used_at) if key.last_used_at else "never"


def key_status(key: ApiKey):
    if key.revoked_at is not None:
        return status_label("Revoked", QUIET)
    return status_label("Active", GOOD)


class ScopesField(forms.MultipleChoiceField):
    """The merchants' scopes as ticked boxes with readable names; the defaults a new key gets are ticked."""

    widget = forms.CheckboxSelectMultiple

    def __init__(self, **kwargs):
        kwargs.setdefault("help_text", "Detokenize returns full card numbers: only for a payment processor's key.")
        super().__init__(
            choices=[(scope, f"{scope_name(scope)} ({scope})") for scope in SCOPES],
            initial=list(DEFAULT_SCOPES),
            **kwargs,
        )


class ApiKeyOptionsForm(forms.Form):
    name = forms.CharField(max_length=100, initial="default")
    scopes = ScopesField()


class ApiKeyCreateForm(forms.ModelForm):
    scopes = ScopesField()

    class Meta:
        model = ApiKey
        fields = ["merchant", "name", "scopes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["merchant"].queryset = Merchant.objects.filter(is_active=True)
        self.fields["merchant"].help_text = "Active merchants only. The key is shown once, on the next page."


def remember_issued(request, key: ApiKey, raw: str) -> None:
    """Keep a key made by this request for its answer, ``key_page`` (the raw key lives no longer than the request)."""
    if not hasattr(request, ISSUED):
        setattr(request, ISSUED, [])
    getattr(request, ISSUED).append((key, raw))


def api_key_issue(request, *, merchant: Merchant, name: str, scopes: list[str]) -> ApiKey:
    """Create a key through the service, audit it (never its raw value), and keep it for this request's answer."""
    with transaction.atomic():
        key, raw = services.api_key_create(merchant=merchant, scopes=scopes, name=name)
        audit_record(
            actor=staff_actor(request),
            action="admin.api_key.create",
            object_type="api_key",
            object_id=key.prefix,
            detail={"merchant": merchant.public_id, "name": key.name, "scopes": key.scopes},
        )
    remember_issued(request, key, raw)
    return key


def key_page(request, model_admin, *, done_url: str) -> TemplateResponse:
    """ "Copy your key now": the keys this request made, each with a copy button, then "I have stored it"."""
    issued = getattr(request, ISSUED, [])
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Copy your API key now" if len(issued) == 1 else "Copy your API keys now",
        "subtitle": None,
        "opts": model_admin.opts,
        "keys": [
            {"key": key, "raw": raw, "scopes": scopes_shown(key.scopes), "merchant": key.merchant}
            for key, raw in issued
        ],
        "done_url": done_url,
    }
    request.current_app = model_admin.admin_site.name
    response = TemplateResponse(request, "admin/merchants/apikey/created.html", context)
    add_never_cache_headers(response)  # no-store: not in the browser's cache, nor on its back button
    return response


class ApiKeyInline(admin.TabularInline):
    model = ApiKey
    fields = ["prefix", "name", "status", "readable_scopes", "last_used", "created", "revoked"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="status")
    def status(self, obj):
        return key_status(obj)

    @admin.display(description="scopes")
    def readable_scopes(self, obj):
        return scopes_shown(obj.scopes)

    @admin.display(description="last used")
    def last_used(self, obj):
        return last_use_shown(obj)

    @admin.display(description="created")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="revoked")
    def revoked(self, obj):
        return moment_shown(obj.revoked_at)


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
class ApiKeyAdmin(ObjectActions, ConfirmsActions, RefusesCardNumbersInSearch, admin.ModelAdmin):
    confirmation_template = "admin/merchants/action_confirmation.html"
    list_display = ["prefix", "status", "name", "merchant_name", "readable_scopes", "last_used", "created", "revoked"]
    list_filter = [RevokedFilter, "merchant"]
    list_select_related = ["merchant"]
    search_fields = ["=prefix", "name", "merchant__name", "=merchant__public_id"]
    date_hierarchy = "created_at"
    actions = ["revoke"]
    object_actions = {"revoke": "Revoke"}
    irreversible_actions = frozenset({"revoke"})

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyCreateForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["merchant", "name", "scopes"]
        return ["merchant_name", "name", "prefix", "status", "readable_scopes", "last_used", "created", "revoked"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_change_permission(self, request, obj=None):
        # A key never changes: make a new one and revoke the old.
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoked keys stay, so the audit trail's "api-key:<prefix>" actors keep meaning something.
        return False

    def has_revoke_permission(self, request):
        return request.user.has_perm("merchants.change_apikey")

    def object_action_applies(self, obj, name):
        return obj.revoked_at is None

    @admin.display(description="merchant", ordering="merchant__name")
    def merchant_name(self, obj):
        return merchant_shown(obj.merchant)

    @admin.display(description="status", ordering="revoked_at")
    def status(self, obj):
        return key_status(obj)

    @admin.display(description="scopes")
    def readable_scopes(self, obj):
        return scopes_shown(obj.scopes)

    @admin.display(description="last used", ordering="last_used_at")
    def last_used(self, obj):
        return last_use_shown(obj)

    @admin.display(description="created", ordering="created_at")
    def created(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="revoked", ordering="revoked_at")
    def revoked(self, obj):
        return moment_shown(obj.revoked_at)

    def save_model(self, request, obj, form, change):
        key = api_key_issue(request, **form.cleaned_data)
        for field in ApiKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False

    def response_add(self, request, obj, post_url_continue=None):
        # The key's page instead of Django's redirect and its message: the raw key goes nowhere else.
        return key_page(request, self, done_url=reverse("admin:merchants_merchant_change", args=[obj.merchant_id]))

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke(self, request, queryset):
        """Through a confirmation page: each key stops authenticating at once, for good."""
        if not request.POST.get("post"):
            keys = list(queryset.select_related("merchant"))
            return self.confirm(
                request,
                keys,
                action="revoke",
                title="Revoke API key" if len(keys) == 1 else "Revoke API keys",
                submit="Revoke for good",
                intro="Each key stops authenticating at once: the merchant's requests with it answer 401 from the "
                "next one on. This cannot be undone: a revoked key is never restored; issue a new one instead.",
                rows=[
                    (
                        key,
                        f"{key.merchant.name}, {', '.join(scope_name(s) for s in key.scopes) or 'no scopes'}, "
                        + (f"last used {relative(key.last_used_at)}" if key.last_used_at else "never used")
                        + (" — already revoked, left as it is" if key.revoked_at else ""),
                    )
                    for key in keys
                ],
            )
        revoked = services.api_keys_revoke(keys=queryset, actor=staff_actor(request))
        self.message_user(request, f"Revoked {counted(revoked, 'API key')}.", messages.SUCCESS)
