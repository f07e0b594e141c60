"""Settings shared by every environment.

Every value comes from the environment through the one ``env`` object below and is read once, here. The
environment-specific modules (local, test, production) only decide defaults and which secrets are mandatory.
"""

import contextlib
import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()

# ------------------------------------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------------------------------------
SECRET_KEY = env("DJANGO_SECRET_KEY")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
USE_X_FORWARDED_HOST = env.bool("DJANGO_USE_X_FORWARDED_HOST", default=False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "merchants",
    "notifications",
    "vault",
    "networks",
    "backoffice",
]

MIDDLEWARE = [
    # First, so every answer (the refusals of the middleware below too) carries X-Request-Id and is measured.
    "core.request_id.RequestIdMiddleware",
    "core.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.ContentSecurityPolicyMiddleware",
    # The admin's static files, collected into STATIC_ROOT by `manage.py collectstatic`: served by the application
    # itself in production, with far-future caching and compressed variants, so no proxy rule is needed.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
# One-time secrets (new API keys, webhook signing secrets) are shown through messages: keep them server-side.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# ------------------------------------------------------------------------------------------------------------
# Database
# ------------------------------------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (API, worker, beat) queue for the write lock up front instead of failing mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20, "transaction_mode": "IMMEDIATE"})
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

# ------------------------------------------------------------------------------------------------------------
# Vault
# ------------------------------------------------------------------------------------------------------------
# "try" or "live": decides the default token lifetime (7 days or 4 years).
TOKENS_ENVIRONMENT = env.str("TOKENS_ENVIRONMENT", default="try")
# Key custody (vault/keys/, vault/kek/): cards are encrypted under data encryption keys (DEKs), stored in the
# database only wrapped by the key encryption key (KEK) of this provider: "local" (the KEK from VAULT_KEK, or XORed
# from VAULT_KEK_COMPONENTS, base64 of 32 bytes each, two or more: split knowledge), "pkcs11" (an HSM: the KEK never
# leaves it), or the dotted path of a provider class of vault.kek's contract.
VAULT_KEK_PROVIDER = env.str("VAULT_KEK_PROVIDER", default="local")
VAULT_KEK = env.str("VAULT_KEK", default="")
VAULT_KEK_COMPONENTS = env.str("VAULT_KEK_COMPONENTS", default="")
# Older KEKs (comma-separated; a KEK made of components as its components joined by ":"), kept only until rotate_kek
# has re-wrapped every key under the current one.
VAULT_KEK_PREVIOUS = env.str("VAULT_KEK_PREVIOUS", default="")
PKCS11_MODULE = env.str("PKCS11_MODULE", default="")
PKCS11_TOKEN_LABEL = env.str("PKCS11_TOKEN_LABEL", default="")
PKCS11_PIN = env.str("PKCS11_PIN", default="")
PKCS11_KEY_LABEL = env.str("PKCS11_KEY_LABEL", default="")
# Cryptoperiods: a new DEK is started when the active one is this old, or has encrypted this many cards. 90 days is
# PCI DSS's customary period; a million cards keeps what one DEK protects bounded, and stays far below the 2^32
# encryptions NIST SP 800-38D allows a key with random 96-bit nonces.
VAULT_DEK_MAX_AGE_DAYS = env.int("VAULT_DEK_MAX_AGE_DAYS", default=90)
VAULT_DEK_MAX_USES = env.int("VAULT_DEK_MAX_USES", default=1_000_000)
# The keys of an installation from before key custody, read only until manage.py migrate_keys_to_kek has wrapped them
# under the KEK (same versions, same check values): VAULT_KEYS "2:<base64 32 bytes>,1:<base64 32 bytes>", the
# version it encrypted under (the highest when unset), and the fingerprint key. Remove them once migrated.
VAULT_KEYS = env.str("VAULT_KEYS", default="")
VAULT_ACTIVE_KEY_VERSION = env.int("VAULT_ACTIVE_KEY_VERSION", default=None)
VAULT_FINGERPRINT_KEY = env.str("VAULT_FINGERPRINT_KEY", default="")
# How often a process looks at the stored keys again: to switch to a newer DEK, start one at the end of a
# cryptoperiod, and find keys that do not match the data (card operations refuse with 503 keysNotReady meanwhile).
VAULT_KEY_CHECK_SECONDS = env.float("VAULT_KEY_CHECK_SECONDS", default=5.0)
TOKEN_CONFLICT_TTL_SECONDS = env.int("TOKEN_CONFLICT_TTL_SECONDS", default=30 * 60)
NAMESPACE_CARD_LIMIT = 16
# How long a capture session (POST /capture-sessions: a card typed in the shopper's browser) takes its card.
CAPTURE_SESSION_LIFETIME_SECONDS = env.int("CAPTURE_SESSION_LIFETIME_SECONDS", default=15 * 60)
# Where merchants reach this API: the base of token hrefs in webhook events, and of the links in API answers.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="")
# The demo checkout page (/demo/checkout/, backoffice/demo/checkout.py): the embedded run and the tests switch it on;
# no environment variable does, so production never serves it.
DEMO_PAGES = False

# ------------------------------------------------------------------------------------------------------------
# Networks and webhooks
# ------------------------------------------------------------------------------------------------------------
# The card networks' token services: the simulators (networks/tsp) when TSP_SIMULATOR is on (make run, tests), else
# the real integrations named in TSP_PROVIDERS ("VISA=pkg.module.Class,…", each a networks.tsp.base.TokenService); a
# network with neither answers 503 networkNotConfigured.
TSP_SIMULATOR = env.bool("TSP_SIMULATOR", default=False)
TSP_PROVIDERS = env.dict("TSP_PROVIDERS", default={})
TSP_LATENCY_MS = env.str("TSP_LATENCY_MS", default="0")
# The RSA private key (base64 of its PEM) that decrypts JWE-encrypted cards sent to /network-tokens; its public half
# is served at /network-tokens/encryption-key.
NETWORK_TOKENS_JWE_KEY = env.str("NETWORK_TOKENS_JWE_KEY")
# The simulator's lifecycle endpoint (POST /network-tokens/{tokenId}/simulate-lifecycle): tests and demos only.
TSP_SIMULATOR_ENDPOINTS = env.bool("TSP_SIMULATOR_ENDPOINTS", default=True)
TSP_FAILURE_RATE = env.float("TSP_FAILURE_RATE", default=0.0)
WEBHOOK_ALLOW_LOOPBACK = env.bool("WEBHOOK_ALLOW_LOOPBACK", default=False)
WEBHOOK_RETRY_SCHEDULE = env.list("WEBHOOK_RETRY_SCHEDULE", cast=int, default=[5, 300, 1800, 7200, 18000, 36000, 36000])

# ------------------------------------------------------------------------------------------------------------
# Celery
# ------------------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/0")
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes the database connection after every task unless told to keep it: reconnecting cost
# half of a webhook delivery's time (make bench: 62.5 against 129 deliveries/s).
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=1000)
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Nothing waits for a broker message: every piece of work lives in the database and a sweeper queues again what a lost
# message or a killed worker left behind, after a lease of minutes. So
# - visibility_timeout: Redis hands an unacknowledged message to another worker after this long (kombu's default is an
#   hour); it only has to exceed the longest task (CELERY_TASK_TIME_LIMIT), so a running task is never run twice;
# - max_retries 0: a message that cannot be sent fails at once instead of holding the API request that sent it for
#   the broker's 4 s connect timeout and more (6 s per request while Redis was down); its sweeper sends it later.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 900, "max_retries": 0}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False  # keep our LOGGING, with its card-number redaction
# Beat's record of when each periodic task last ran: in var/ beside the project's other local files, not in whatever
# folder `celery beat` was started from. Only beat writes it; a process that cannot create the folder (a read-only
# API server) leaves it to beat, which says so if it cannot either.
CELERY_BEAT_SCHEDULE_FILENAME = str(BASE_DIR / "var" / "celerybeat-schedule")
with contextlib.suppress(OSError):
    (BASE_DIR / "var").mkdir(exist_ok=True)
CELERY_BEAT_SCHEDULE = {
    "vault-purge-expired-tokens": {
        "task": "vault.tasks.purge_expired_tokens",
        "schedule": 15 * 60,
    },
}

# ------------------------------------------------------------------------------------------------------------
# REST API
# ------------------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["merchants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["merchants.authentication.HasScope"],
    "DEFAULT_PARSER_CLASSES": ["core.http.JsonParser"],
    "DEFAULT_RENDERER_CLASSES": ["core.http.HalJsonRenderer", "core.http.JsonRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.http.LenientContentNegotiation",
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_RATES": {},
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Token vault API",
    "DESCRIPTION": (
        "Card tokens (vault), network tokens from the card networks' token services, and signed webhooks. "
        "Every call is authenticated with a merchant API key: `Authorization: Bearer <key>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "notifications.models.EVENT_TYPES",
        "CaptureSessionStatusEnum": "vault.models.CAPTURE_STATUSES",
    },
    # Every request body is required; see core.schema for what the schema publishes beyond drf-spectacular.
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.require_request_bodies"],
    # /api/docs/ runs on the admin's origin: Swagger UI from the pinned drf-spectacular-sidecar package, served with
    # the other static files, never from a CDN; and no validator badge, which sends the schema's URL to swagger.io.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
}

# ------------------------------------------------------------------------------------------------------------
# Logging: structured lines, card-number-looking digit runs redacted in every record.
# ------------------------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_pan": {"()": "core.logging.RedactCardNumbersFilter"},
        "as_warning_without_traceback": {"()": "core.logging.AsWarningWithoutTraceback"},
        "routine_tasks_at_debug": {"()": "core.logging.RoutineTasksAtDebug"},
    },
    "formatters": {"structured": {"()": "core.logging.StructuredFormatter"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "structured", "filters": ["redact_pan"]},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # 4xx answers are the client's business and are in the audit log where it matters; 5xx stay logged.
        "django.request": {"level": "ERROR"},
        # A Host header not in ALLOWED_HOSTS: one WARNING line, not an ERROR with a traceback for each request.
        "django.security.DisallowedHost": {"filters": ["as_warning_without_traceback"]},
        # The periodic tasks' every-few-seconds lines at DEBUG (beat's, then the worker's); failures stay as they are.
        "celery.beat": {"filters": ["routine_tasks_at_debug"]},
        "celery.worker.strategy": {"filters": ["routine_tasks_at_debug"]},
        "celery.app.trace": {"filters": ["routine_tasks_at_debug"]},
        # Django's own handlers write past the redaction: runserver's access lines ("django.server", which would not
        # propagate), its debug console and mails to ADMINS ("django"). Without them every record reaches the root's.
        "django": {"handlers": []},
        "django.server": {"handlers": [], "propagate": True},
    },
}

# ------------------------------------------------------------------------------------------------------------
# Webhook delivery (see notifications/services.py for how these fit together)
# ------------------------------------------------------------------------------------------------------------
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=15.0)
# An HTTP egress proxy for every outbound call (webhooks), as closed networks require: "http://host:port", with
# "user:password@" when it asks for them. Each call goes through a CONNECT tunnel to the address the SSRF guard
# vetted (core/outbound/tunnel.py). Checked here so a malformed one stops start-up rather than every delivery.
OUTBOUND_PROXY_URL = env.str("OUTBOUND_PROXY_URL", default="")
if OUTBOUND_PROXY_URL:
    try:
        _proxy = urlsplit(OUTBOUND_PROXY_URL)
        _proxy_ok = _proxy.scheme == "http" and bool(_proxy.hostname and _proxy.port) and _proxy.path in ("", "/")
    except ValueError:  # a port that is no number, a broken IPv6 literal
        _proxy_ok = False
    if not _proxy_ok:  # the value itself may hold the proxy's password: never echoed
        raise ImproperlyConfigured("OUTBOUND_PROXY_URL must be http://host:port or http://user:password@host:port")
# How long a worker owns the deliveries it claimed; must exceed the timeout (a batch starts no attempt that could
# outlast it). After it, a killed worker's deliveries go to another worker.
WEBHOOK_CLAIM_LEASE_SECONDS = env.int("WEBHOOK_CLAIM_LEASE_SECONDS", default=60)
# How long the sweeper trusts a queued message to arrive before queueing the delivery again.
WEBHOOK_QUEUE_LEASE_SECONDS = env.int("WEBHOOK_QUEUE_LEASE_SECONDS", default=120)
# How long a process trusts what it knows of whether a merchant has an enabled webhook endpoint, before it announces
# the merchant's events to the dispatcher (notifications.services.events_stored).
WEBHOOK_LISTENERS_TTL = env.float("WEBHOOK_LISTENERS_TTL", default=5.0)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("WEBHOOK_SWEEP_INTERVAL_SECONDS", default=5.0)
# Deliveries a sweep may queue in one run: well above what the workers send in an interval, so a backlog (a worker
# down for a while, a card import) drains at the workers' pace rather than the sweeper's.
WEBHOOK_SWEEP_LIMIT = env.int("WEBHOOK_SWEEP_LIMIT", default=20_000)
# Deliveries per broker message, and per batch: a worker claims a message's deliveries together (filling a smaller
# message up with the same endpoints' other due deliveries), sends each endpoint's over one kept-alive connection
# and records them with a few statements.
WEBHOOK_BATCH_SIZE = env.int("WEBHOOK_BATCH_SIZE", default=50)
WEBHOOK_DISABLE_AFTER_DAYS = env.int("WEBHOOK_DISABLE_AFTER_DAYS", default=5)
CELERY_BEAT_SCHEDULE["notifications-sweep-deliveries"] = {
    "task": "notifications.tasks.sweep_deliveries",
    "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
}
# Each sweep leaves a heartbeat in the database; /healthz reports beat "stale" when the last one is older than this
# (beat is down, or no worker takes its tasks). Generous: behind a backlog the sweep waits its turn in the queue.
BEAT_STALE_AFTER_SECONDS = env.int("BEAT_STALE_AFTER_SECONDS", default=120)
# How long a batch item may wait in the broker, or stay claimed by a worker that shows no progress on it, before it
# is released again (a lost message, a killed worker); see networks/scheduling.py.
NETWORK_BATCH_LEASE_SECONDS = env.int("NETWORK_BATCH_LEASE_SECONDS", default=120)
CELERY_BEAT_SCHEDULE["networks-dispatch-batches"] = {"task": "networks.tasks.dispatch_batches", "schedule": 1.0}
# An async network-token request's message is trusted to arrive, and a worker owns an attempt at it, for this long;
# after either, the sweeper (every NETWORK_REQUEST_SWEEP_SECONDS) queues it again (see networks.models).
NETWORK_REQUEST_LEASE_SECONDS = env.int("NETWORK_REQUEST_LEASE_SECONDS", default=120)
NETWORK_REQUEST_SWEEP_SECONDS = env.float("NETWORK_REQUEST_SWEEP_SECONDS", default=5.0)
CELERY_BEAT_SCHEDULE["networks-sweep-requests"] = {
    "task": "networks.tasks.sweep_provisioning_requests",
    "schedule": NETWORK_REQUEST_SWEEP_SECONDS,
}

# ------------------------------------------------------------------------------------------------------------
# Staff sign-in and sessions
# ------------------------------------------------------------------------------------------------------------
# Staff sign in with a password, then a TOTP code (backoffice/admin_login.py). Every admin page asks for a session
# signed in with both: the admin app's site is the back office's (backoffice/admin_site.py), not Django's own.
INSTALLED_APPS[INSTALLED_APPS.index("django.contrib.admin")] = "backoffice.admin_apps.AdminConfig"
# Passwords of 12 characters or more, not a common one, not all digits, not like the username or e-mail (PCI DSS
# 8.3.6), wherever a password is chosen: the admin's forms, createsuperuser and changepassword at a prompt.
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# A session ends after 15 minutes without a request (each request moves its end on: PCI DSS 8.2.8) and when the
# browser closes (the cookie has no expiry).
SESSION_COOKIE_AGE = 15 * 60
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
# django-otp: the name authenticator apps show; no throttling of its own, since the sign-in's lockout already counts
# every code; keys and QR codes never shown in its admin pages (superusers may still delete a lost device there).
OTP_TOTP_ISSUER = "Token vault back office"
OTP_TOTP_THROTTLE_FACTOR = 0
OTP_ADMIN_HIDE_SENSITIVE_DATA = True

# ------------------------------------------------------------------------------------------------------------
# API rate limits
# ------------------------------------------------------------------------------------------------------------
from merchants.rates import RATE_HELP, is_rate  # noqa: E402 - plain Python, no Django

# Per API key, shared by every server process through the cache (merchants/throttling.py): Redis in production
# (CACHE_URL=redis://host:6379/1), else a table of the database, made by migrate, that every process shares.
CACHES = {"default": env.cache("CACHE_URL", default="dbcache://django_cache?max_entries=10000")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # A Redis that does not answer costs a call a second, not the system's TCP timeout (merchants/throttling.py says
    # what a call gets then).
    CACHES["default"].setdefault("OPTIONS", {}).setdefault("socket_connect_timeout", 1)
    CACHES["default"]["OPTIONS"].setdefault("socket_timeout", 1)
# The defaults, by throttle scope: every call of a key ("api"), and the calls that release card data ("card-data":
# detokenize, cryptograms with the token number), which count against both. Staff set a merchant's own in the admin.
REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"] = [
    "merchants.throttling.ApiRateThrottle",
    "merchants.throttling.CardDataRateThrottle",
]
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {}
for _scope, _variable, _default in (
    ("api", "API_RATE_LIMIT", "100/second"),
    ("card-data", "API_CARD_DATA_RATE_LIMIT", "60/minute"),
):
    REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][_scope] = env.str(_variable, default=_default)
    if not is_rate(REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"][_scope]):
        raise ImproperlyConfigured(f"{_variable} must be {RATE_HELP}")
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    *SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"],
    "merchants.throttling.rate_limits_in_schema",
]

# ------------------------------------------------------------------------------------------------------------
# Request bodies
# ------------------------------------------------------------------------------------------------------------
# The largest request body the API reads: a larger one is 413 bodyIsTooLarge, before a byte of it is read
# (core.http). The largest body the API takes is a batch of 10,000 network-token items: 6.1 MB with every field at
# its longest, 2 MB as merchants send it (an href, an account id, an email and a UUID correlation id each); a card
# token's is under 1 kB.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=8 * 1024 * 1024)

# ------------------------------------------------------------------------------------------------------------
# Forwarding (POST /forward: vault/forwarding/sending.py)
# ------------------------------------------------------------------------------------------------------------
# How long a forward waits for the destination's whole answer (then 504 destinationUnavailable), the largest request
# body it sends once filled in (a larger one is 400), and the most of the answer's body it reads (the rest is cut,
# ``bodyTruncated``: the provider acted, so its status must still reach the merchant).
FORWARD_TIMEOUT_SECONDS = env.float("FORWARD_TIMEOUT_SECONDS", default=30.0)
FORWARD_MAX_BODY_BYTES = 64 * 1024
FORWARD_MAX_ANSWER_BYTES = 1024 * 1024

# ------------------------------------------------------------------------------------------------------------
# Idempotency (Idempotency-Key on every POST: core/idempotency.py)
# ------------------------------------------------------------------------------------------------------------
# How long a key keeps its answer from its first request (DESIGN: 24 hours), and how old a claim still running must be
# to count as left by a process that died, which the next repeat takes over: longer than the slowest request (a
# forward waits 30 s for its destination, a request is cut by gunicorn at 30 s).
IDEMPOTENCY_KEY_TTL = env.int("IDEMPOTENCY_KEY_TTL", default=24 * 60 * 60)
IDEMPOTENCY_ABANDONED_AFTER = env.int("IDEMPOTENCY_ABANDONED_AFTER", default=120)
CELERY_BEAT_SCHEDULE["core-purge-expired-idempotency-keys"] = {
    "task": "core.tasks.purge_expired_idempotency_keys",
    "schedule": 15 * 60,
}
SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"] = [
    *SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"],
    "core.schema.idempotency_in_schema",
]

# ------------------------------------------------------------------------------------------------------------
# Metrics (GET /metrics, Prometheus's text format: core/metrics.py, backoffice/metrics.py)
# ------------------------------------------------------------------------------------------------------------
# Off: nothing is counted (not even the time of a request) and /metrics answers like an unknown path.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=True)
# The folder where every process of this host (gunicorn's workers, Celery's) writes its counts, which /metrics adds
# up. prometheus-client reads the variable itself, as it is imported: it must be in the environment of every process,
# not only here. Empty: each process counts in memory and /metrics shows the counts of the process it reaches.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# Who may read /metrics: a request with `Authorization: Bearer <METRICS_TOKEN>`, or from an address of
# METRICS_ALLOWED_ADDRESSES (IPs and CIDR blocks, comma-separated, matched against the connection's peer: behind the
# TLS proxy that is the proxy, so scrape the servers directly). Either suffices when both are set. With neither,
# /metrics answers everyone where METRICS_OPEN (local runs, tests) and no one in production, which warns at start.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_ADDRESSES = env.list("METRICS_ALLOWED_ADDRESSES", default=[])
for _network in METRICS_ALLOWED_ADDRESSES:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_ADDRESSES must list IP addresses or CIDR blocks (like 10.0.0.0/8), not {_network!r}"
        ) from None
METRICS_OPEN = True
