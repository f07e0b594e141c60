"""The admin site: Django's, asking every page for a session signed in with both factors (backoffice.admin_login).

``admin.site``, which every app's admin registers with, is one of these (``backoffice.admin_apps.AdminConfig`` takes
the place of ``django.contrib.admin`` in INSTALLED_APPS). A session signed in some other way, with a password only
(or from before the second factor existed), is sent to the login page like an anonymous one.
"""

from django.contrib import admin
from django.urls import path

from backoffice import admin_login


class BackOfficeSite(admin.AdminSite):
    def has_permission(self, request):
        return super().has_permission(request) and request.user.is_verified()

    def login(self, request, extra_context=None):
        return admin_login.login(request, extra_context)

    def get_urls(self):
        return [
            path("login/code/", admin_login.code, name="login_code"),
            path("login/enrol/", admin_login.enrol, name="login_enrol"),
            *super().get_urls(),
        ]
