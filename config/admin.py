"""Admin building blocks shared by the apps."""

from django.contrib import admin


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
