"""The admin login, protected against brute force (being built)."""

from django.contrib import admin


def login(request, extra_context=None):
    return admin.site.login(request, extra_context)
