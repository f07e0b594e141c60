"""Admin building blocks shared by the apps, and the audit log's page."""

import re
from collections import Counter
from collections.abc import Callable, Iterable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import quote, unquote
from django.contrib.admin.views.main import ERROR_FLAG, PAGE_VAR, SEARCH_VAR
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseBase, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.admin_display import BAD, GOOD, moment_shown, status_label
from core.audit import Actor
from core.errors import BusinessRuleError, NotFound, ResourceNotFound
from core.models import AuditLog

# Twelve or more digits standing on their own (spaces and dashes removed): a card or token number. Digits glued to
# letters are a TSP's tokenId (Visa's ``DNITHE`` and Amex's ``AETS`` carry twenty-odd digits) and may be searched.
NUMBER_LIKE = re.compile(r"(?<![A-Za-z0-9])\d{12,}")
# What people type between a number's groups: spaces, dashes and dots. A masked number (``4761********5989``) keeps
# its stars, so it is never twelve digits in a row, and may be searched.
NUMBER_SEPARATORS = re.compile(r"[\s.-]")


def staff_actor(request) -> Actor:
    """The staff user of an admin request, as the audit log names them."""
    return Actor(f"admin:{request.user.get_username()}", origin=request.META.get("REMOTE_ADDR", ""))


def looks_like_a_card_number(query: str) -> bool:
    parts = [NUMBER_SEPARATORS.sub("", term) for term in query.split()] + [NUMBER_SEPARATORS.sub("", query)]
    return any(NUMBER_LIKE.search(part) for part in parts)


class RefusesCardNumbersInSearch:
    """Searching by a full card or token number is refused before it is echoed in the page or run as a query.

    A list whose search box posts its term (the tokens': admin/vault/token/search_form.html) refuses such a number
    before it is part of any URL: the browser's history, the access logs of the proxy and the servers, the next page's
    Referer. Any other posted term goes to the list's usual ``?q=<term>``, so paging, filters and links keep it, and
    that GET is checked as any other.
    """

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST" and SEARCH_VAR in request.POST:
            if not self.has_view_or_change_permission(request):
                raise PermissionDenied
            params = request.GET.copy()
            for name in (SEARCH_VAR, PAGE_VAR, ERROR_FLAG):
                params.pop(name, None)
            term = request.POST[SEARCH_VAR].strip()
            if looks_like_a_card_number(term):
                self._refuse_search(request)
            elif term:
                params[SEARCH_VAR] = term
            return self._list_with(request, params)
        if looks_like_a_card_number(request.GET.get(SEARCH_VAR, "")):
            self._refuse_search(request)
            params = request.GET.copy()
            del params[SEARCH_VAR]
            return self._list_with(request, params)
        return super().changelist_view(request, extra_context)

    def _refuse_search(self, request) -> None:
        self.message_user(
            request,
            "Full card or token numbers are not accepted here: search by last four digits or BIN.",
            messages.ERROR,
        )

    @staticmethod
    def _list_with(request, params) -> HttpResponseRedirect:
        return HttpResponseRedirect(f"{request.path}?{params.urlencode()}" if params else request.path)


class ReadOnlyInline(admin.TabularInline):
    """History shown under its parent: never added to, changed or deleted from the admin."""

    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ConfirmsActions:
    """The intermediate page of an action: what will happen, to which rows, which are left alone, and the action's
    form if it has one.

    ``admin/action_confirmation.html`` lists ``rows`` as (object, note); a model with its own
    ``confirmation_template`` extending it shows them as it likes. Nothing happens before the submit button, which
    posts the action again with ``post=yes``.
    """

    confirmation_template = "admin/action_confirmation.html"

    def confirm(self, request, objects, *, action: str, title: str, intro: str, submit: str, rows, form=None, notes=()):
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": None,
            "opts": self.opts,
            "intro": intro,
            "notes": [note for note in notes if note],
            "rows": rows,
            "selected_pks": [obj.pk for obj in objects],
            "form": form,
            "action": action,
            "submit": submit,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media + (form.media if form else forms.Media()),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.confirmation_template, context)


class ObjectActions:
    """The object's actions as buttons at the top of its page, leading to the same confirmation pages as the list's.

    ``object_actions`` maps an action's name to its button's label; a button shows when the staff user may run the
    action (its ``permissions``) and ``object_action_applies`` says it makes sense for this object now. The button
    opens ``<pk>/actions/<name>/``, which runs the list's action on this one object: its confirmation page posts back
    there, and once done the object's page shows again with the outcome. Actions named in ``irreversible_actions``
    look like the irreversible step they are.
    """

    object_actions: dict[str, str] = {}
    irreversible_actions: frozenset[str] = frozenset()

    def object_action_applies(self, obj, name: str) -> bool:
        return True

    def get_urls(self):
        name = f"{self.opts.app_label}_{self.opts.model_name}_object_action"
        view = self.admin_site.admin_view(self.object_action_view)
        return [path("<path:object_id>/actions/<str:action>/", view, name=name), *super().get_urls()]

    def object_action_view(self, request, object_id, action):
        actions = self.get_actions(request)
        if action not in self.object_actions or action not in actions:
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            # The id is not echoed: whatever was typed in the address stays out of the message (kept in the session).
            missing = f"That {self.opts.verbose_name} does not exist: was it deleted?"
            self.message_user(request, missing, messages.WARNING)
            changelist = f"admin:{self.opts.app_label}_{self.opts.model_name}_changelist"
            return HttpResponseRedirect(reverse(changelist, current_app=self.admin_site.name))
        func = actions[action][0]
        response = func(self, request, self.get_queryset(request).filter(pk=obj.pk))
        if isinstance(response, HttpResponseBase):
            return response
        change = f"admin:{self.opts.app_label}_{self.opts.model_name}_change"
        return HttpResponseRedirect(reverse(change, args=[quote(obj.pk)], current_app=self.admin_site.name))

    def object_action_buttons(self, request, obj) -> list[dict]:
        actions = self.get_actions(request)
        url = f"admin:{self.opts.app_label}_{self.opts.model_name}_object_action"
        return [
            {
                "name": name,
                "label": label,
                "url": reverse(url, args=[quote(obj.pk), name], current_app=self.admin_site.name),
                "irreversible": name in self.irreversible_actions,
            }
            for name, label in self.object_actions.items()
            if name in actions and self.object_action_applies(obj, name)
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context["object_actions"] = self.object_action_buttons(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)


class WrittenByServices:
    """Rows written by services only: staff may look, never add, edit or delete (actions go through services)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdmin(RefusesCardNumbersInSearch, WrittenByServices, admin.ModelAdmin):
    """Read-only pages that refuse card-number searches.

    Any list that finds nothing says so (templates/admin/change_list.html), with its ``empty_hint`` as what to try.
    """

    empty_hint = ""


# What a service raises when its rules refuse the change asked of one object: an action leaves that object alone
# and shows the message. Anything else is a bug, and fails the request.
REFUSED = (BusinessRuleError, ResourceNotFound, NotFound)


def run_each(objects: Iterable, call: Callable) -> tuple[list[tuple], Counter]:
    """``call(obj)`` for each of ``objects``, each in the service's own transaction: the (object, result) pairs it
    changed, and how many objects a rule refused, by the refusal's message."""
    done, refused = [], Counter()
    for obj in objects:
        try:
            done.append((obj, call(obj)))
        except REFUSED as refusal:
            refused[str(refusal)] += 1
    return done, refused


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    """The audit log, read-only. Its actors and objects are names here (core knows none of the apps); the back
    office, which reads every app, shows this page with them linked to their pages (backoffice/audit_page.py)."""

    list_display = ["when", "actor_shown", "action", "subject", "result_shown", "origin", "request_id"]
    list_filter = ["action", "result"]
    # A request id is matched whole (its index serves it): the id a merchant quotes from an answer's X-Request-Id.
    search_fields = ["object_id", "actor", "request_id__exact"]
    search_help_text = (
        "An object's id (a tokenId, a key's prefix, a public id), an actor (api-key:sk_…, admin:name) or a request's "
        "X-Request-Id."
    )
    empty_hint = (
        "Search by an object's whole id, an actor's whole name or a whole request id, or choose another action, "
        "result or date."
    )
    date_hierarchy = "created_at"
    show_full_result_count = False
    fields = ["when", "actor_shown", "merchant", "action", "subject", "result_shown", "origin", "request_id", "detail"]
    readonly_fields = fields
    list_select_related = ["merchant"]

    @admin.display(description="when", ordering="created_at")
    def when(self, obj):
        return moment_shown(obj.created_at)

    @admin.display(description="actor", ordering="actor")
    def actor_shown(self, obj):
        return obj.actor

    @admin.display(description="object")
    def subject(self, obj):
        return f"{obj.object_type} {obj.object_id}".strip() or "—"

    @admin.display(description="result", ordering="result")
    def result_shown(self, obj):
        return audit_result_label(obj)


def audit_result_label(row: AuditLog):
    """Success (good) or Failure (bad), as every page shows an audit row's result."""
    return status_label("Success", GOOD) if row.result == AuditLog.SUCCESS else status_label("Failure", BAD)
