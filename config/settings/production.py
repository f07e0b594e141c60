"""Production: every secret and server from the environment; a missing one stops start-up."""

from .base import *  # noqa: F403
from .base import env

DEBUG = False
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL")
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL")
TSP_SIMULATOR_ENDPOINTS = False
TOKENS_ENVIRONMENT = env.str("TOKENS_ENVIRONMENT", default="live")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=True)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
