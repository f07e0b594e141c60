"""Production: every secret and server from the environment; a missing one stops start-up.

What production needs is checked before anything is read, and every missing variable is named at once (an operator
should not find them one start at a time). Every entry point (``manage.py``, ``celery -A config``, wsgi, asgi)
runs these settings unless ``DJANGO_SETTINGS_MODULE`` says otherwise; only ``make run`` and ``make test`` do.
"""

import os

from django.core.exceptions import ImproperlyConfigured

REQUIRED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "VAULT_KEYS",
    "VAULT_FINGERPRINT_KEY",
    "NETWORK_TOKENS_JWE_KEY",
)
_missing = [name for name in REQUIRED if not os.environ.get(name, "").strip()]
if _missing:
    raise ImproperlyConfigured(
        f"Production settings need {len(_missing)} more environment variable(s), missing: {', '.join(_missing)} "
        "(see the README's Configuration section)"
    )

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL")
TSP_SIMULATOR_ENDPOINTS = False
TOKENS_ENVIRONMENT = env.str("TOKENS_ENVIRONMENT", default="live")

# Loopback webhooks are for development: here they would open the connect-time address check to this machine's own
# services (and let seed_demo write demo merchants). The benchmarks, whose receiver is on loopback, say so in their
# own settings module.
if WEBHOOK_ALLOW_LOOPBACK:  # noqa: F405
    raise ImproperlyConfigured("WEBHOOK_ALLOW_LOOPBACK cannot be switched on under production settings")

# The admin's static files, collected by `manage.py collectstatic` at each release: hashed names cached for ever and
# compressed copies, served by WhiteNoise (base.py's MIDDLEWARE).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# HTTPS only, behind a TLS-terminating proxy that sets X-Forwarded-Proto (the README's "TLS and the proxy"): browsers
# come back over HTTPS for a year; plain HTTP is redirected, except /healthz (load balancers).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
