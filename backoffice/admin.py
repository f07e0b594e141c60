"""The admin's user and group pages: Django's, with the staff user who saves or deletes there named as the actor of
the audit rows those changes write (backoffice/staff_audit.py)."""

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from backoffice import staff_audit
from core.admin import staff_actor


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
