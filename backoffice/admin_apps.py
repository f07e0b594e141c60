"""Django's admin app, with the back office's site as ``admin.site`` (backoffice.admin_site).

A module of its own: INSTALLED_APPS names it, so it is imported while the apps load, before any model may be; the
site (and the sign-in views it serves) is imported by name once they have.
"""

from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    default_site = "backoffice.admin_site.BackOfficeSite"
