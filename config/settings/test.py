"""The test run: secrets generated per run (a worker started by a test inherits them), no TSP latency."""

import os
import tempfile

from .secrets import export_generated_secrets

export_generated_secrets()
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.gettempdir()}/tokenvault-test.sqlite3")
os.environ.setdefault("TSP_LATENCY_MS", "0")
os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "true")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")

from .base import *  # noqa: E402,F403
from .base import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: a Celery worker started by a test must see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": DATABASES["default"]["NAME"].replace(".sqlite3", "") + "-test.sqlite3"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ALLOWED_HOSTS = ["*"]
