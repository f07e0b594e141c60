"""The embedded run: SQLite, a broker that needs no server, keys generated once into var/local.env."""

import os
from pathlib import Path

from .secrets import load_or_create_env_file

_VAR = Path(__file__).resolve().parent.parent.parent / "var"
load_or_create_env_file(_VAR / "local.env")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{_VAR / 'db.sqlite3'}")
os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "true")
os.environ.setdefault("TSP_LATENCY_MS", "1000-3000")
os.environ.setdefault("TSP_SIMULATOR", "true")
os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{os.environ.get('PORT', '8000')}")

from .base import *  # noqa: E402,F403
from .base import env  # noqa: E402

# The demo checkout at /demo/checkout/ (browser card capture with the demo merchant).
DEMO_PAGES = True

# ------------------------------------------------------------------------------------------------------------
# Celery on the local filesystem: a worker and beat on this machine, no server to install.
# ------------------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    for _folder in ("broker/in", "broker/processed", "broker/control"):
        (_VAR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_VAR / "broker" / "in"),
        "data_folder_out": str(_VAR / "broker" / "in"),
        "processed_folder": str(_VAR / "broker" / "processed"),
        "control_folder": str(_VAR / "broker" / "control"),
        "store_processed": False,
    }
