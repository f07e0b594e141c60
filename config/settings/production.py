"""Production: every secret and server from the environment; a missing one stops start-up.

What production needs is checked before anything is read, and every missing variable is named at once (an operator
should not find them one start at a time). Every entry point (``manage.py``, ``celery -A config``, wsgi, asgi)
runs these settings unless ``DJANGO_SETTINGS_MODULE`` says otherwise; only ``make run`` and ``make test`` do.
"""

import base64
import binascii
import os

from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

REQUIRED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "PUBLIC_BASE_URL",
    "NETWORK_TOKENS_JWE_KEY",
)
# The key encryption key's provider needs its own (vault/kek/): the KEK, or its components, for the local one; the
# HSM's module, token, PIN and key label for pkcs11. Another provider (a dotted path) reads its own settings.
KEK_REQUIRED = {
    "local": (("VAULT_KEK", "VAULT_KEK_COMPONENTS"),),
    "pkcs11": ("PKCS11_MODULE", "PKCS11_TOKEN_LABEL", "PKCS11_PIN", "PKCS11_KEY_LABEL"),
}


def _given(name: str) -> bool:
    return bool(os.environ.get(name, "").strip())


_missing = [name for name in REQUIRED if not _given(name)]
for _names in KEK_REQUIRED.get(os.environ.get("VAULT_KEK_PROVIDER", "local"), ()):
    _either = _names if isinstance(_names, tuple) else (_names,)
    if not any(_given(name) for name in _either):
        _missing.append(" or ".join(_either))
if _missing:
    raise ImproperlyConfigured(
        f"Production settings need {len(_missing)} more environment variable(s), missing: {', '.join(_missing)} "
        "(see the README's Configuration section)"
    )

from .base import *  # noqa: E402,F403
from .base import (  # noqa: E402
    METRICS_TOKEN,
    SECRET_KEY,
    VAULT_FINGERPRINT_KEY,
    VAULT_KEK,
    VAULT_KEK_COMPONENTS,
    VAULT_KEK_PREVIOUS,
    VAULT_KEK_PROVIDER,
    VAULT_KEYS,
    WEBHOOK_ALLOW_LOOPBACK,
    env,
)

DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL")
TSP_SIMULATOR_ENDPOINTS = False
DEMO_PAGES = False
TOKENS_ENVIRONMENT = env.str("TOKENS_ENVIRONMENT", default="live")
# /metrics answers only METRICS_TOKEN or METRICS_ALLOWED_ADDRESSES; with neither, no one (backoffice/metrics.py).
METRICS_OPEN = False
METRICS_TOKEN_MIN_LENGTH = 32


def _key_bytes(text: str) -> bytes | None:
    """A base64 key as bytes, so a key is recognised however it is written (vault.crypto refuses malformed ones)."""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


# A weak configuration stops start-up too, every problem named at once, by its variable and never by its value.
_weak = []
# Django's own rule for a secret key (`manage.py check --deploy`'s security.W009): it signs the staff's sessions.
if (
    len(SECRET_KEY) < SECRET_KEY_MIN_LENGTH
    or len(set(SECRET_KEY)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
    or SECRET_KEY.startswith(SECRET_KEY_INSECURE_PREFIX)
):
    _weak.append(
        f"DJANGO_SECRET_KEY must have {SECRET_KEY_MIN_LENGTH} characters or more, {SECRET_KEY_MIN_UNIQUE_CHARACTERS} "
        f"of them different, and not start with {SECRET_KEY_INSECURE_PREFIX!r} (python -c "
        '"import secrets; print(secrets.token_urlsafe(50))" makes one)'
    )
# Any host would let a forged Host header into the links the API and the admin build.
if "*" in ALLOWED_HOSTS:
    _weak.append("DJANGO_ALLOWED_HOSTS must name the hosts served, not '*'")
# One key, one purpose: the fingerprints must not be computable by whoever holds the encryption keys, nor the reverse.
_legacy_keys = {_key_bytes(entry.partition(":")[2]) for entry in VAULT_KEYS.split(",") if entry.strip()} - {None}
_fingerprint_key = _key_bytes(VAULT_FINGERPRINT_KEY)
if _fingerprint_key and _fingerprint_key in _legacy_keys:
    _weak.append("VAULT_FINGERPRINT_KEY must differ from every key of VAULT_KEYS")
# The local KEK: split knowledge when it comes in components (two or more, none cancelling the others out), and a key
# of its own, never one of the keys it protects (those of VAULT_KEYS, while they are being moved under it).
if VAULT_KEK_PROVIDER == "local":
    from vault.kek.local import keks_from  # plain Python (base64, XOR): nothing of Django's set-up

    try:
        _kek, _previous_keks = keks_from(kek=VAULT_KEK, components=VAULT_KEK_COMPONENTS, previous=VAULT_KEK_PREVIOUS)
    except ImproperlyConfigured as exc:
        _weak.append(str(exc))
    else:
        if _kek in _legacy_keys | {_fingerprint_key}:
            _weak.append("VAULT_KEK must differ from every key of VAULT_KEYS and from VAULT_FINGERPRINT_KEY")
# Loopback webhooks are for development: here they would open the connect-time address check to this machine's own
# services (and let seed_demo write demo merchants). The benchmarks, whose receiver is on loopback, say so in their
# own settings module.
if WEBHOOK_ALLOW_LOOPBACK:
    _weak.append("WEBHOOK_ALLOW_LOOPBACK cannot be switched on under production settings")
# A token for /metrics that could be guessed would show the traffic and the state of the vault to anyone.
if METRICS_TOKEN and len(METRICS_TOKEN) < METRICS_TOKEN_MIN_LENGTH:
    _weak.append(
        f"METRICS_TOKEN must have {METRICS_TOKEN_MIN_LENGTH} characters or more (python -c "
        '"import secrets; print(secrets.token_urlsafe(32))" makes one)'
    )
if _weak:
    raise ImproperlyConfigured(f"Production refuses a weak configuration: {'; '.join(_weak)}")

# The admin's static files, collected by `manage.py collectstatic` at each release: hashed names cached for ever and
# compressed copies, served by WhiteNoise (base.py's MIDDLEWARE).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# HTTPS only, behind a TLS-terminating proxy that sets X-Forwarded-Proto (the README's "TLS and the proxy"): browsers
# come back over HTTPS for a year, to this host and the names under it; plain HTTP is redirected, except /healthz
# and /readyz (load balancers, orchestrators) and /metrics (Prometheus, which scrapes each server directly). The
# Content-Security-Policy is core.middleware's, in every environment.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
# Asking browsers to preload HTTPS for the whole registrable domain (hstspreload.org) is its owner's decision, hard
# to undo, and no business of one service on it: `check --deploy`'s reminder (security.W021) is not for us.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
