"""The audit log's page as the back office shows it: core's (core.admin.AuditLogAdmin), with each row's actor linked
to its merchant and API key and its object to the object's page (backoffice.audit_links, which knows every app)."""

from django.contrib import admin

from backoffice.audit_links import AuditLinks
from core.admin import AuditLogAdmin


class AuditLogPage(AuditLogAdmin):
    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        # The page's rows, fetched once here and kept by the queryset for the table: one query per kind of object.
        links = AuditLinks(request.user, changelist.result_list)
        for row in changelist.result_list:
            row.links = links
        return changelist

    def get_object(self, request, object_id, from_field=None):
        row = super().get_object(request, object_id, from_field)
        if row is not None:
            row.links = AuditLinks(request.user, [row])
        return row

    @admin.display(description="actor", ordering="actor")
    def actor_shown(self, obj):
        return obj.links.actor(obj) if hasattr(obj, "links") else super().actor_shown(obj)

    @admin.display(description="object")
    def subject(self, obj):
        return obj.links.subject(obj) if hasattr(obj, "links") else super().subject(obj)
