"""The test run: secrets generated per run (a worker started by a test inherits them), no TSP latency."""

import os
import tempfile

from .secrets import export_generated_secrets

export_generated_secrets()
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.gettempdir()}/tokenvault-test.sqlite3")
os.environ.setdefault("TSP_LATENCY_MS", "0")
os.environ.setdefault("TSP_SIMULATOR", "true")
os.environ.setdefault("WEBHOOK_ALLOW_LOOPBACK", "true")
os.environ.setdefault("PUBLIC_BASE_URL", "http://testserver")
# Rate limits far above what any test sends, whatever key it uses: the tests of the limits set low ones of their own.
# A minute, not a second: a key's count then lives through a test, and so does the number of queries a call makes.
os.environ.setdefault("API_RATE_LIMIT", "9999/minute")
os.environ.setdefault("API_CARD_DATA_RATE_LIMIT", "9999/minute")


def _own_broker_database(url: str, worker: str) -> str:
    """A pytest-xdist worker's broker database: the pass's Redis database ``n`` becomes ``n + 2 * (i + 1)`` for worker
    ``gw<i>``, so the Celery workers its tests start never take a task another worker's tests queued (for their own
    test database). scripts/test.sh gives its two passes databases 1 and 2: with three workers each, 3 to 8 are theirs.
    The variable is rewritten, not only the setting: the workers and servers the tests start inherit it. They inherit
    PYTEST_XDIST_WORKER too, and ``TEST_WORKER_BROKER_URL``, which says the rewriting is done: theirs is the broker
    they are given, this one or another of a test's (a drill's own Redis)."""
    base, _, number = url.rstrip("/").rpartition("/")
    if not url.startswith("redis://") or not number.isdigit():
        return url
    return f"{base}/{int(number) + 2 * (int(worker.removeprefix('gw')) + 1)}"


_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _worker.startswith("gw") and os.environ.get("CELERY_BROKER_URL") and "TEST_WORKER_BROKER_URL" not in os.environ:
    os.environ["CELERY_BROKER_URL"] = os.environ["TEST_WORKER_BROKER_URL"] = _own_broker_database(
        os.environ["CELERY_BROKER_URL"], _worker
    )

from .base import *  # noqa: E402,F403
from .base import DATABASES, LOGGING, env  # noqa: E402

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: a Celery worker started by a test must see the same test database.
    DATABASES["default"]["TEST"] = {"NAME": DATABASES["default"]["NAME"].replace(".sqlite3", "") + "-test.sqlite3"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEMO_PAGES = True  # the demo checkout page is tested like the rest
ALLOWED_HOSTS = ["*"]

# Every log line of the run also goes to this file when it is set (by scripts/test.sh), with the console's redaction
# and format: a worker or API server started by a test inherits the variable, and the leak scan searches the file
# for the run's card numbers once the pass is over.
TEST_LOG_FILE = env.str("TEST_LOG_FILE", default="")
if TEST_LOG_FILE:
    LOGGING["handlers"]["test_file"] = {
        "class": "logging.FileHandler",
        "filename": TEST_LOG_FILE,
        "formatter": "structured",
        "filters": ["redact_pan"],
    }
    LOGGING["root"]["handlers"] = [*LOGGING["root"]["handlers"], "test_file"]

# The card numbers the leak scan looks for (set by scripts/test.sh). Most of the suite's numbers are not written in
# its sources but generated (tests/cards.py, hypothesis, the simulators' network token numbers): every Luhn-valid
# 12-19 digit string a process of the run checks is one the tests used, whether they made it or the product validated
# it on its way in. Every process records its own, pytest (whose plugin loads these settings before any conftest or
# test module, so ``from vault.cards import luhn_valid`` there binds the wrapper) and the workers and servers the tests
# start, which inherit the variable. Each number is appended as it is met: a worker killed by a drill has no end.
TEST_CARD_NUMBERS_FILE = env.str("TEST_CARD_NUMBERS_FILE", default="")
if TEST_CARD_NUMBERS_FILE:
    from vault import cards

    _luhn_valid, _recorded = cards.luhn_valid, set()

    def _recording_luhn_valid(number: str) -> bool:
        valid = _luhn_valid(number)
        if valid and 12 <= len(number) <= 19 and number.isdigit() and number not in _recorded:
            _recorded.add(number)
            with open(TEST_CARD_NUMBERS_FILE, "a") as numbers:
                numbers.write(f"{number}\n")
        return valid

    cards.luhn_valid = _recording_luhn_valid

# Every event of a merchant with an endpoint is announced at once: tests create endpoints in one process and
# expect the next event to be fanned out (production processes trust what they know for 5 s).
WEBHOOK_LISTENERS_TTL = 0
