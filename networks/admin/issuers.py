"""Issuers: the one thing edited through a form (name, range, card art, rate limit), each edit audited.

The back office owns the registry (the ``back-office`` group holds the issuer's change permission, vault 0002): it is
reference data about the cards, which the clerks look after with the merchants and tokens. Operators look at it
(networks 0003) to understand a batch's pace or a token's issuer, and change nothing. A new BIN range or rate limit
changes where every later card goes and how fast its issuer is called, so it is saved only after a confirmation page
showing each change, old -> new (``core.admin_changes.ConfirmsChanges``); a name or card art is saved at once. A new
issuer, which takes every later card of its range, is added after a confirmation showing each of its values.
"""

import re
from urllib.parse import urlencode

from django import forms
from django.contrib import admin
from django.core.validators import MinValueValidator, RegexValidator
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from core.admin import RefusesCardNumbersInSearch, staff_actor
from core.admin_changes import ConfirmsChanges
from networks import services
from networks.models import Issuer

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
        fields = list(services.ISSUER_FIELDS)

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
class IssuerAdmin(ConfirmsChanges, RefusesCardNumbersInSearch, admin.ModelAdmin):
    form = IssuerForm
    confirmed_fields = ("bin_low", "bin_high", "rate_limit_per_second")
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
        if not change:
            services.issuer_create(issuer=obj, actor=staff_actor(request))
            return
        changes = {name: form.cleaned_data[name] for name in IssuerForm.Meta.fields if name in form.changed_data}
        services.issuer_update(issuer=obj, changes=changes, actor=staff_actor(request))
