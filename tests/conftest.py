"""Actors and helpers shared by the suite.

alice is a merchant with the default scopes; bob is another merchant who must see none of alice's tokens;
carol is alice's payment processor key, the only one allowed to detokenize.
"""

import copy
import itertools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import DatabaseError, connection
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from merchants import services as merchant_services

# The PCI DSS control map against the tests marked with its requirements (docs/pci-dss.md).
pytest_plugins = ["tests.pci_map"]

ROOT = Path(__file__).resolve().parent.parent
# Set by scripts/test.sh for the leak scan (see the end of this file); a plain pytest run captures nothing.
# Each pytest-xdist worker keeps its logs and dumps in a folder of its own inside it (their names are counted per
# process).
CAPTURE_DIR = (
    Path(os.environ["TEST_CAPTURE_DIR"]) / os.environ.get("PYTEST_XDIST_WORKER", "main")
    if os.environ.get("TEST_CAPTURE_DIR")
    else None
)
if CAPTURE_DIR is not None:
    CAPTURE_DIR.mkdir(parents=True, exist_ok=True)
WORKER_LOG = (CAPTURE_DIR or ROOT / "var") / "test-worker.log"
PGBIN = Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))

# Public test card numbers (card networks' and processors' documentation): never real cards.
VISA = "4444333322221111"
VISA_2 = "4111111111111111"
MASTERCARD = "5555555555554444"
MASTERCARD_2_SERIES = "2223003122003222"
AMEX = "378282246310005"
DISCOVER = "6011111111111117"
DINERS = "36227206271667"
JCB = "3530111333300000"
UNIONPAY = "6200000000000005"
MAESTRO = "6759649826438453"

SHERLOCK = {
    "description": "Test Token Description",
    "paymentInstrument": {
        "type": "card/front",
        "cardHolderName": "Sherlock Holmes",
        "cardNumber": VISA,
        "cardExpiryDate": {"month": 5, "year": 2035},
        "billingAddress": {
            "address1": "221B Baker Street",
            "address2": "Marylebone",
            "address3": "Westminster",
            "postalCode": "NW1 6XE",
            "city": "London",
            "state": "Greater London",
            "countryCode": "GB",
        },
    },
}


def card_request(**changes) -> dict:
    """The seed's create-a-token body; ``changes`` replace top-level or paymentInstrument keys (None removes)."""
    body = copy.deepcopy(SHERLOCK)
    instrument = body["paymentInstrument"]
    for key, value in changes.items():
        target = instrument if key in instrument or key in ("cardNumber", "billingAddress") else body
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return body


def client_for(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def text_without_request_id(response) -> str:
    """The body with its request id cut out, to search for what must not be in it: 32 random hex digits hold a short
    run of digits ("987", "4444") now and then."""
    return response.content.decode().replace(response["X-Request-Id"], "")


@pytest.fixture(autouse=True)
def _keys_looked_at_afresh():
    """Each test's database holds keys of its own (the first card operation stores them): this process looks at them
    at the test's first card operation, as a process does after a restore, rather than trusting its last look."""
    from vault import keys

    keys.key_ring_refresh()


@pytest.fixture(autouse=True)
def _postgres_tests_fail_loudly_elsewhere(request):
    if request.node.get_closest_marker("postgres") and connection.vendor != "postgresql":
        pytest.fail("this test needs PostgreSQL: run it through `make test` (its second pass) or set DATABASE_URL")


class Broker:
    """The broker is outside the product: in tests not marked ``celery``, what the product queues
    (``core.queue.send``) is recorded here instead of sent. ``fail`` makes every send raise, as a broker that is down.
    """

    def __init__(self):
        self.sent: list[tuple[str, tuple]] = []  # (task name, args), in order
        self.fail = False

    def send(self, task: str, *args) -> None:
        if self.fail:
            raise ConnectionError("the broker is down (test)")
        self.sent.append((task, args))

    def args_of(self, task: str) -> list[tuple]:
        """The args of each message sent for ``task`` (``"deliver"`` is ``notifications.tasks.deliver``)."""
        return [args for name, args in self.sent if name.rsplit(".", 1)[-1] == task]

    @property
    def deliveries(self) -> list[int]:
        """Every delivery id queued, in order (a ``deliver`` message carries a list of them)."""
        return [delivery_id for (ids,) in self.args_of("deliver") for delivery_id in ids]

    def clear(self) -> None:
        self.sent.clear()


@pytest.fixture(autouse=True)
def broker(request, monkeypatch) -> Broker:
    """The shared broker stub (see ``Broker``); tests marked ``celery`` send to the real broker instead."""
    stub = Broker()
    if not request.node.get_closest_marker("celery"):
        monkeypatch.setattr("core.queue.send", stub.send)
    return stub


@pytest.fixture
def alice(db):
    merchant, key = merchant_services.merchant_create(name="Alice's Shop")
    merchant.raw_key = key
    return merchant


@pytest.fixture
def bob(db):
    merchant, key = merchant_services.merchant_create(name="Bob's Bikes")
    merchant.raw_key = key
    return merchant


@pytest.fixture
def api(alice) -> APIClient:
    """alice's client: scopes tokens, network-tokens, webhooks, forwarding (no detokenize)."""
    return client_for(alice.raw_key)


@pytest.fixture
def bob_api(bob) -> APIClient:
    return client_for(bob.raw_key)


@pytest.fixture
def carol_api(alice) -> APIClient:
    """alice's payment processor: a key of alice's with the detokenize scope."""
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="processor")
    return client_for(raw)


# ------------------------------------------------------------------------------------------------------------
# Staff. admin_client is pytest-django's superuser, signed in as below; olive is an operator (the ``operators``
# group: webhooks and network-token lifecycle); clerk is back-office staff who may look at the vault, its merchants
# and the audit log and change nothing.
# ------------------------------------------------------------------------------------------------------------
def logged_in(user) -> Client:
    """A client signed in as ``user`` with both factors, as the admin asks: the user gets a confirmed TOTP device,
    and the session holds it as django-otp's login leaves it (tests/backoffice/test_staff_sign_in.py signs in through
    the real forms)."""
    device = otp_device(user)
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def otp_device(user) -> TOTPDevice:
    """The user's confirmed TOTP device (their authenticator app), made the first time it is asked for."""
    device, _ = TOTPDevice.objects.get_or_create(user=user, confirmed=True, defaults={"name": "authenticator"})
    return device


def otp_code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the device's app shows now (or ``steps_ahead`` 30-second steps later: a code is accepted once, and
    the one after it within a step of the clock)."""
    code = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    code.time = time.time() + steps_ahead * device.step
    return f"{code.token():0{device.digits}d}"


@pytest.fixture
def admin_client(admin_user) -> Client:
    """pytest-django's superuser ``admin``, signed in with both factors."""
    return logged_in(admin_user)


def staff_in(django_user_model, username: str, group: str) -> Client:
    """A staff user in ``group`` and nothing else, logged in."""
    user = django_user_model.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return logged_in(user)


@pytest.fixture
def olive(db, django_user_model):
    """An operator: staff, in the operators group, nothing else."""
    user = django_user_model.objects.create_user("olive", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    return user


@pytest.fixture
def operator(olive) -> Client:
    return logged_in(olive)


@pytest.fixture
def clerk_user(db, django_user_model):
    user = django_user_model.objects.create_user("clerk", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=["vault", "merchants", "core"], codename__startswith="view_"
        )
    )
    return user


@pytest.fixture
def clerk(clerk_user) -> Client:
    return logged_in(clerk_user)


@pytest.fixture
def tokenize(api):
    """POST /tokens as alice; returns the response."""

    def post(body=None, client=None, **changes):
        return (client or api).post("/tokens", body if body is not None else card_request(**changes), format="json")

    return post


def path_of(href: str) -> str:
    return "/" + href.split("/", 3)[3]


# ------------------------------------------------------------------------------------------------------------
# A real Celery worker on the real broker (CELERY_BROKER_URL, a Redis server started by `make test`).
# ------------------------------------------------------------------------------------------------------------
def start_celery_worker(*, beat: bool = False, env: dict | None = None, concurrency: int = 1) -> subprocess.Popen:
    """A real ``celery worker`` process on the real broker, using the test database; ``beat`` embeds the scheduler,
    ``concurrency`` above 1 runs that many threads.

    Call it inside a test that uses the transactional database, so the worker sees what the test committed.
    """
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.fail("this test needs a real Redis broker: run it through `make test` or set CELERY_BROKER_URL")
    pool = ["--pool=solo"] if concurrency == 1 else ["--pool=threads", f"--concurrency={concurrency}"]
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        *pool,
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    if beat:
        command += ["--beat", "--schedule", os.path.join(tempfile.mkdtemp(), "beat-schedule")]
    WORKER_LOG.parent.mkdir(exist_ok=True)
    log = open(WORKER_LOG, "ab")  # noqa: SIM115 - the worker's, closed when it stops
    full_env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        **(env or {}),
    }
    # Its own process group: an embedded beat or pool child dies with it (see kill_celery_worker).
    return subprocess.Popen(
        command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def database_url() -> str:
    """The test database as a DATABASE_URL, for a worker or server process started by a test."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def kill_process_group(process: subprocess.Popen) -> None:
    """SIGKILL, as a crash: the process and every process it started (beat, pool), with no chance to clean up."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to whatever of its group is still there after 15 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    kill_process_group(process)


kill_celery_worker = kill_process_group
stop_celery_worker = stop_process_group


@pytest.fixture
def celery_worker_process(transactional_db):
    process = start_celery_worker()
    yield process
    stop_celery_worker(process)


def events_of(api, type) -> list[dict]:
    """The data of alice's events of ``type``, oldest first, as ``GET /events`` lists them."""
    events = api.get("/events", {"type": type, "pageSize": 100}).json()["_embedded"]["events"]
    return [event["data"] for event in reversed(events)]


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1, progress=None):
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout`` seconds, saying what
    ``progress()`` (if given) reads then: how far the awaited work got tells a slow machine from a stuck one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s" + (f"; {progress()}" if progress else ""))


# ------------------------------------------------------------------------------------------------------------
# What the leak scan (scripts/leak_scan.py, run by scripts/test.sh after each pass) needs from the run. All three
# are set by scripts/test.sh; a plain pytest run records nothing.
#   TEST_CAPTURE_DIR         where every captured log, broker capture and database dump of the pass goes
#   TEST_CARD_NUMBERS_FILE   where every process of the pass writes the card numbers it checks, outside the capture
#                            (config/settings/test.py)
#   TEST_LOG_FILE            the product's log file (config/settings/test.py), read by every process it starts
# ------------------------------------------------------------------------------------------------------------


def _restores_serialized_data(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    return bool(marker and marker.kwargs.get("serialized_rollback")) or (
        "django_db_serialized_rollback" in getattr(item, "fixturenames", ())
    )


def _transactional(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker and marker.kwargs.get("transaction"):
        return True
    return not {"transactional_db", "live_server"}.isdisjoint(getattr(item, "fixturenames", ()))


#   TEST_KEY_MATERIAL_FILE   where each test appends, one hex string a line, the key material it used: the KEKs of the
#                            settings, the keys of VAULT_KEYS, and every key stored in its database, unwrapped
_recorded_key_material: set[bytes] = set()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield
    path = os.environ.get("TEST_KEY_MATERIAL_FILE")
    if path:
        new = _key_material(item) - _recorded_key_material
        _recorded_key_material.update(new)
        with open(path, "a") as out:
            out.writelines(f"{key.hex()}\n" for key in new)


def _key_material(item: pytest.Item) -> set[bytes]:
    """What the test's keys are, read as the test left them: before its fixtures undo its settings and database."""
    import base64
    import binascii

    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    from vault.kek import kek_provider
    from vault.kek.local import keks_from
    from vault.models import DataKey

    material = set()
    try:  # the local KEKs, as the components assemble them
        current, previous = keks_from(
            kek=settings.VAULT_KEK, components=settings.VAULT_KEK_COMPONENTS, previous=settings.VAULT_KEK_PREVIOUS
        )
        material |= {current, *previous}
    except ImproperlyConfigured:
        pass
    texts = [settings.VAULT_FINGERPRINT_KEY, *re.split("[,:]", settings.VAULT_KEK_COMPONENTS)]
    texts += re.split("[,:]", settings.VAULT_KEK_PREVIOUS)
    texts += [entry.partition(":")[2] for entry in settings.VAULT_KEYS.split(",")]
    for text in filter(None, (text.strip() for text in texts)):
        try:
            material.add(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            pass
    marker = item.get_closest_marker("django_db")
    if marker is None and {"db", "transactional_db"}.isdisjoint(getattr(item, "fixturenames", ())):
        return material
    try:
        for row in DataKey.objects.filter(wrapped_key__isnull=False):
            try:
                material.add(kek_provider().unwrap(row.kek_id, bytes(row.wrapped_key)))
            except Exception:  # noqa: BLE001 - a key this process cannot unwrap is one it did not use
                pass
    except DatabaseError:
        pass  # the test left its transaction failed: nothing can be read from it
    return material


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Among the transactional tests (pytest-django already runs them after the others), those that restore the
    serialized database (``serialized_rollback``) go first. The flush that ends a plain transactional test makes the
    content types and permissions again under new ids, and restoring the serialized rows over them then fails on
    their unique names; the flush that ends a serialized test leaves the tables empty, which plain tests cope with."""
    positions = [index for index, item in enumerate(items) if _transactional(item)]
    ordered = sorted((items[index] for index in positions), key=lambda item: not _restores_serialized_data(item))
    for index, item in zip(positions, ordered, strict=False):
        items[index] = item


def capture_path(name: str, *, fallback: Path) -> Path:
    """Where a test keeps a log or dump: in the pass's capture (for the leak scan) when there is one."""
    directory = CAPTURE_DIR or fallback
    directory.mkdir(parents=True, exist_ok=True)
    return directory / name


_dumps = itertools.count(1)


def dump_database(settings_dict: dict, name: str) -> None:
    """A plain-SQL dump of a test database into the capture, for the leak scan (nothing without a capture)."""
    if CAPTURE_DIR is None:
        return
    target = CAPTURE_DIR / f"db-{next(_dumps):03d}-{name}.sql"
    if settings_dict["ENGINE"].endswith("sqlite3"):
        with sqlite3.connect(settings_dict["NAME"]) as source, open(target, "w") as out:
            out.writelines(f"{line}\n" for line in source.iterdump())
        return
    pg_dump = PGBIN / "pg_dump" if os.access(PGBIN / "pg_dump", os.X_OK) else shutil.which("pg_dump")
    if pg_dump is None:
        pytest.fail("pg_dump not found: the leak scan needs a dump of the PostgreSQL test database")
    result = subprocess.run(
        [
            pg_dump,
            "--no-owner",
            "-h",
            settings_dict["HOST"] or "127.0.0.1",
            "-p",
            str(settings_dict["PORT"] or 5432),
            "-U",
            settings_dict["USER"],
            "-d",
            settings_dict["NAME"],
            "-f",
            str(target),
        ],
        env={**os.environ, "PGPASSWORD": settings_dict["PASSWORD"] or ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode:
        pytest.fail(f"pg_dump of {settings_dict['NAME']} failed: {result.stderr}")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's, dumping the test database at the end of the session, before it is dropped."""
    yield
    dump_database(connection.settings_dict, "session-end")


# Filled in by the migrations, the same for every test: copied out once, with the session's dump.
UNCHANGING_TABLES = {
    "django_migrations",
    "django_content_type",
    "auth_permission",
    "auth_group",
    "auth_group_permissions",
    "networks_issuer",
}
_tables: list[str] = []


@pytest.fixture(autouse=True)
def _copy_what_a_test_wrote(request):
    """A test on the ``db`` fixture writes in a transaction rolled back when it ends: on PostgreSQL, copy its rows
    out first, through its own connection (the only one that sees them), for the leak scan."""
    marker = request.node.get_closest_marker("django_db")
    uses_db = marker is not None or "db" in request.fixturenames
    if CAPTURE_DIR is None or not uses_db or _transactional(request.node) or connection.vendor != "postgresql":
        yield
        return
    request.getfixturevalue("_django_db_helper")  # set up first, so it is rolled back after this copy
    yield
    with connection.cursor() as cursor:
        if not _tables:
            _tables.extend(sorted(set(connection.introspection.table_names(cursor)) - UNCHANGING_TABLES))
        try:
            with open(CAPTURE_DIR / "db-tests.copy", "ab") as out:
                # The test's id, not its card numbers (a parametrized id may hold one): the scan would find them.
                out.write(f"-- {re.sub(r'[0-9]{12,}', '<number>', request.node.nodeid)}\n".encode())
                for table in _tables:
                    with cursor.cursor.copy(f'COPY "{table}" TO STDOUT') as copy:
                        for data in copy:
                            out.write(data)
        except DatabaseError:
            pass  # the test left its transaction failed (it expected an error): nothing can be read from it


@pytest.fixture(autouse=True)
def _dump_what_a_transactional_test_committed(request):
    """A transactional test (real workers, servers) commits for real and is flushed when it ends: dump it first."""
    transactional = _transactional(request.node)
    if CAPTURE_DIR is None or not transactional:
        yield
        return
    request.getfixturevalue("transactional_db")  # set up first, so it is flushed after this dump
    yield
    dump_database(connection.settings_dict, re.sub(r"[^\w.-]+", "_", request.node.name)[:80])
