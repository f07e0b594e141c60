"""The admin's user and group pages: Django's, with the staff user who saves or deletes there named as the actor of
the audit rows those changes write (backoffice/staff_audit.py). And the pages the back office composes from several
apps, in place of the app's own: the token page (backoffice/token_page.py) and the audit log (backoffice/audit_page.py).
"""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backoffice import staff_audit
from backoffice.audit_page import AuditLogPage
from backoffice.token_page import TokenPage
from core.admin import staff_actor
from core.models import AuditLog
from vault.models import Token


class AuditsAsTheStaffUser:
    """The admin's hooks that write, each run as the request's staff user (``staff_audit.acting``)."""

    def save_model(self, request, obj, form, change):
        with staff_audit.acting(staff_actor(request)):
            super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):  # the groups and permissions of the form
        with staff_audit.acting(staff_actor(request)):
            super().save_related(request, form, formsets, change)

    def delete_model(self, request, obj):
        with staff_audit.acting(staff_actor(request)):
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):  # the "delete selected" action
        with staff_audit.acting(staff_actor(request)):
            super().delete_queryset(request, queryset)


User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(AuditsAsTheStaffUser, auth_admin.UserAdmin):
    pass


@admin.register(Group)
class GroupAdmin(AuditsAsTheStaffUser, auth_admin.GroupAdmin):
    pass


admin.site.unregister(Token)
admin.site.register(Token, TokenPage)
admin.site.unregister(AuditLog)
admin.site.register(AuditLog, AuditLogPage)
