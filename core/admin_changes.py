"""A form whose weightier fields are saved only after a confirmation page showing what will be saved.

Rate limits (a merchant's, an issuer's) and an issuer's BIN range change what every later call meets: a slip of the
keyboard there throttles a merchant or sends cards to the wrong issuer. The form is posted as usual; when it is valid
and sets one of ``confirmed_fields``, the page that answers lists each changed field with its old and new value (a new
object: each of its values) and posts the same form again, confirmed. Nothing is saved before that second post, which
runs Django's own view (its permission checks, validation and ``save_model``) unchanged.
"""

from django.contrib.admin.utils import unquote
from django.template.response import TemplateResponse
from django.utils.text import capfirst

from core.admin_display import NOTHING

CONFIRMED = "_confirmed"


class ConfirmsChanges:
    confirmed_fields: tuple[str, ...] = ()
    change_confirmation_template = "admin/change_confirmation.html"

    def value_shown(self, name: str, value) -> str:
        """How the confirmation page shows a field's value; an admin may say what an empty one means."""
        if isinstance(value, list | tuple):
            value = ", ".join(str(part) for part in value)
        return NOTHING if value in (None, "") else str(value)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        if request.method == "POST" and not request.POST.get(CONFIRMED):
            confirmation = self._change_confirmation(request, object_id)
            if confirmation is not None:
                return confirmation
        return super().changeform_view(request, object_id, form_url, extra_context)

    def _change_confirmation(self, request, object_id):
        """The confirmation page, or None when Django's view should answer (no such object, no permission, errors
        to show, nothing weighty set)."""
        adding = object_id is None
        if adding:
            obj, allowed = None, self.has_add_permission(request)
        else:
            obj = self.get_object(request, unquote(object_id))
            allowed = obj is not None and self.has_change_permission(request, obj)
        if not allowed:
            return None
        form = self.get_form(request, obj, change=not adding)(request.POST, request.FILES, instance=obj)
        old = {name: form.initial.get(name) for name in form.fields}  # before validation writes the new ones on obj
        if not form.is_valid() or not set(form.changed_data) & set(self.confirmed_fields):
            return None
        rows = [
            (
                capfirst(form.fields[name].label or name),
                None if adding else self.value_shown(name, old[name]),
                self.value_shown(name, form.cleaned_data[name]),
            )
            for name in (form.fields if adding else form.changed_data)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": f"Add this {self.opts.verbose_name}?" if adding else f"Save these changes to {obj}?",
            "subtitle": None,
            "opts": self.opts,
            "original": obj,
            "adding": adding,
            "rows": rows,
            # The form as posted, posted again with the confirmation: the CSRF token is the page's own.
            "posted": [
                (name, value)
                for name in request.POST
                if name != "csrfmiddlewaretoken"
                for value in request.POST.getlist(name)
            ],
            "confirmed_name": CONFIRMED,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.change_confirmation_template, context)
