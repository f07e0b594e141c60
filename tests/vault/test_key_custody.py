"""Key custody against the data: the data encryption keys (DEKs) and the fingerprint key stored wrapped by the key
encryption key (KEK), made by the first card operation, unwrapped on first use, checked against their check values;
cryptoperiods; and restores that cannot silently lose every card (issues 15 and 21).

A process with another KEK than the one the keys are wrapped under, or whose keys unwrap to another key than the
data's, refuses card operations with a 503 and says why once in its log; ``manage.py check --database default`` and
``migrate`` name the problem. The tests marked with real processes start gunicorn servers and ``manage.py`` on
loopback, as an operator would run them; the others are the same rules in one process, a settings change standing
for a process started with another environment.

alice is a merchant tokenizing cards; carol is alice's payment processor, whose key may detokenize; every key of the
tests is generated when it runs.
"""

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.utils import timezone

from config.settings.secrets import new_key
from core.models import AuditLog
from merchants import services as merchant_services
from tests.conftest import (
    AMEX,
    MASTERCARD,
    PGBIN,
    ROOT,
    VISA,
    VISA_2,
    capture_path,
    card_request,
    database_url,
    path_of,
    stop_process_group,
    wait_for,
)
from tests.project.test_drills import free_port
from vault import keys, selectors
from vault.crypto import check_value
from vault.kek import kek_provider
from vault.models import DataKey, Token

UNREACHABLE = {
    "errorName": "serviceUnavailable",
    "message": "The keys of card data cannot be reached just now; retry later",
}


@pytest.fixture(autouse=True)
def checked_at_every_card_operation(settings):
    """What a process does once its last look at the keys is VAULT_KEY_CHECK_SECONDS old: here, at every card
    operation."""
    settings.VAULT_KEY_CHECK_SECONDS = 0


def href_of(response) -> str:
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


def stored_keys() -> set[tuple]:
    return {(k.purpose, k.version, k.kek_id, k.retired_at is not None) for k in DataKey.objects.all()}


# ------------------------------------------------------------------------------------------------------------
# The keys stored with the data, in one process
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("3.6.1")
def test_the_first_card_on_an_empty_database_stores_a_wrapped_dek_and_fingerprint_key_without_complaint(tokenize):
    assert not DataKey.objects.exists()

    assert tokenize().status_code == 201

    kek = kek_provider().current_kek_id()
    assert stored_keys() == {("encryption", 1, kek, False), ("fingerprint", None, kek, False)}
    ring = keys.key_ring()
    for stored in DataKey.objects.all():
        key = kek_provider().unwrap(stored.kek_id, bytes(stored.wrapped_key))
        assert stored.check_value == check_value(key)
        assert key == (ring.fingerprint_key if stored.purpose == "fingerprint" else dict(ring.keys)[1])
        assert key not in bytes(stored.wrapped_key)
    assert selectors.key_ring_problems() == []
    call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())  # no SystemCheckError


def test_a_server_started_with_another_kek_answers_503_says_so_once_and_serves_again_with_the_right_one(
    tokenize, api, settings, caplog
):
    first = tokenize()
    assert first.status_code == 201
    data_kek = settings.VAULT_KEK

    settings.VAULT_KEK = new_key()  # a restore, or a start, with another KEK
    with caplog.at_level(logging.ERROR):
        again = tokenize()
        other_card = tokenize(cardNumber=MASTERCARD)

    assert again.status_code == 503, again.content
    assert again.json() == {**UNREACHABLE, "requestId": again.headers["X-Request-Id"]} and again["Retry-After"] == "1"
    assert other_card.status_code == 503
    assert Token.objects.count() == 1 and DataKey.objects.count() == 2  # no second token, no new keys
    outage = [r.getMessage() for r in caplog.records if r.name == "vault.keys" and r.levelno >= logging.ERROR]
    assert len(outage) == 1 and "is not held by this process" in outage[0]  # once, not per request
    [problem] = selectors.key_ring_problems()
    assert problem.startswith("the KEK provider cannot unwrap the keys now: the KEK local:")
    with pytest.raises(SystemCheckError, match="is not held by this process"):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())
    # Everything but card operations goes on serving.
    assert api.get("/tokens", {"tokenId": first.json()["tokenId"]}).status_code == 200
    assert api.get("/webhook-endpoints").status_code == 200

    settings.VAULT_KEK = data_kek
    again = tokenize()
    assert again.status_code == 200 and again.json()["tokenId"] == first.json()["tokenId"]


@pytest.mark.pci("3.7.5")
@pytest.mark.pci("3.7.7")
def test_a_stored_key_that_unwraps_to_another_key_than_the_datas_refuses_card_operations_and_is_named(
    tokenize, carol_api, api, caplog
):
    href = href_of(tokenize())
    # The row of DEK 1 now claims another key (a restore mixing two backups, a hand edit).
    DataKey.objects.filter(purpose="encryption", version=1).update(check_value="00" * 8)

    with caplog.at_level(logging.ERROR):
        detokenized = carol_api.post(f"{href}/detokenize")
        tokenized = tokenize(cardNumber=MASTERCARD)

    assert detokenized.status_code == 503 and detokenized.json()["errorName"] == "keysNotReady"
    assert tokenized.status_code == 503
    problem = "the encryption key 1 unwraps under local:"
    assert [p[: len(problem)] for p in selectors.key_ring_problems()] == [problem]
    assert len([r for r in caplog.records if problem in r.getMessage()]) == 1
    assert api.get(href).status_code == 200
    assert AuditLog.objects.filter(
        action="token.detokenize", result=AuditLog.FAILURE, detail__reason="keys do not match the data"
    ).exists()


def test_a_database_whose_keys_are_missing_refuses_card_operations_rather_than_making_new_ones(tokenize):
    assert tokenize().status_code == 201
    DataKey.objects.all().delete()  # restored without its keys' table

    assert tokenize(cardNumber=MASTERCARD).status_code == 503

    assert not DataKey.objects.exists()
    assert selectors.key_ring_problems() == [
        "encrypted values are stored but no key is: restore the keys' table (vault_keycheck) with the data"
    ]


def test_a_card_under_a_version_no_key_is_stored_for_answers_503_naming_the_version(tokenize, carol_api, caplog):
    href = href_of(tokenize())
    Token.objects.update(key_version=7)

    with caplog.at_level(logging.ERROR):
        answer = carol_api.post(f"{href}/detokenize")

    assert answer.status_code == 503 and answer.json() == {
        "errorName": "serviceUnavailable",
        "message": "The card's encryption key is not available on this server; retry later",
        "requestId": answer.headers["X-Request-Id"],
    }
    assert [r.getMessage() for r in caplog.records if "key version 7" in r.getMessage()] == [
        "a stored value is under key version 7, for which no key is stored"
    ]
    assert AuditLog.objects.filter(
        action="token.detokenize", result=AuditLog.FAILURE, detail__reason="key version 7 not on this server"
    ).exists()


def test_an_import_is_refused_with_the_problem_named_and_stores_nothing(tokenize, alice, tmp_path):
    assert tokenize().status_code == 201
    source = tmp_path / "cards.csv"
    source.write_text(
        f"externalReference,cardNumber,expiryDate,cardHolderName\ncust-1,{MASTERCARD},05/2035,Ada Lovelace\n"
    )
    DataKey.objects.filter(purpose="fingerprint").update(check_value="00" * 8)

    with pytest.raises(CommandError, match="the fingerprint key unwraps under local:"):
        call_command("import_cards", str(source), "--merchant", alice.public_id, stdout=StringIO(), stderr=StringIO())

    assert Token.objects.count() == 1


@pytest.mark.pci("3.7.4")
def test_rotate_keys_refuses_while_the_keys_do_not_match_the_data_and_changes_nothing(tokenize, settings):
    tokenize()
    settings.VAULT_KEK = new_key()

    with pytest.raises(CommandError, match="is not held by this process"):
        call_command("rotate_keys", "--new-dek", stdout=StringIO(), stderr=StringIO())

    assert set(Token.objects.values_list("key_version", flat=True)) == {1}
    assert not DataKey.objects.filter(version=2).exists()


# ------------------------------------------------------------------------------------------------------------
# Cryptoperiods: a new DEK when the active one is too old or has encrypted too many cards
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("3.7.4")
def test_a_dek_older_than_its_cryptoperiod_is_replaced_by_a_new_one_at_the_next_look(tokenize, settings, carol_api):
    settings.VAULT_DEK_MAX_AGE_DAYS = 90
    old = href_of(tokenize())
    DataKey.objects.filter(version=1).update(period_started_at=timezone.now() - timedelta(days=89, hours=23))
    assert Token.objects.get(token_id=tokenize(cardNumber=MASTERCARD).json()["tokenId"]).key_version == 1

    DataKey.objects.filter(version=1).update(period_started_at=timezone.now() - timedelta(days=90))
    new = tokenize(cardNumber=AMEX)

    assert Token.objects.get(token_id=new.json()["tokenId"]).key_version == 2
    assert DataKey.objects.get(version=2).period_started_at > timezone.now() - timedelta(minutes=1)
    assert AuditLog.objects.filter(
        action="keys.dek.create", actor="system", detail__reason="key version 1 is 90 days old (VAULT_DEK_MAX_AGE_DAYS)"
    ).exists()
    assert carol_api.post(f"{old}/detokenize").json()["paymentInstrument"]["cardNumber"] == VISA
    assert keys.values_on_other_versions(2) == 2  # until rotate_keys moves them


@pytest.mark.pci("3.7.4")
def test_a_dek_that_has_encrypted_its_share_of_cards_is_replaced_by_a_new_one(tokenize, settings):
    settings.VAULT_DEK_MAX_USES = 3
    versions = [
        Token.objects.get(token_id=tokenize(cardNumber=number).json()["tokenId"]).key_version
        for number in (VISA, VISA_2, MASTERCARD, AMEX)
    ]

    assert versions == [1, 1, 1, 2]  # the fourth card's look found three cards under version 1
    assert AuditLog.objects.filter(
        action="keys.dek.create", detail__reason="key version 1 has encrypted 3 cards (VAULT_DEK_MAX_USES)"
    ).exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_processes_starting_at_once_agree_on_one_set_of_first_keys_and_on_one_new_dek(alice):
    """Eight threads (each its own connection, as processes would have) make the first keys at once, then all find
    the cryptoperiod over at once: one fingerprint key, DEK 1, and one DEK 2, read by all."""
    barrier = threading.Barrier(8)
    seen, errors = [], []

    def start():
        try:
            barrier.wait()
            ring = keys.key_ring()
            seen.append((ring.fingerprint_check_value, ring.active_version, ring.check_value(ring.active_version)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    def all_at_once():
        threads = [threading.Thread(target=start) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    all_at_once()
    assert not errors and len(set(seen)) == 1 and seen[0][1] == 1
    keys.key_ring_refresh()
    DataKey.objects.filter(version=1).update(period_started_at=timezone.now() - timedelta(days=365))
    seen.clear()
    # Each thread looks afresh (VAULT_KEY_CHECK_SECONDS is 0 here), as each process would at its next look.
    all_at_once()

    assert not errors and {entry[1] for entry in seen} == {2}
    assert sorted(DataKey.objects.filter(purpose="encryption").values_list("version", flat=True)) == [1, 2]
    assert DataKey.objects.filter(purpose="fingerprint").count() == 1
    assert AuditLog.objects.filter(action="keys.dek.create").count() == 1


# ------------------------------------------------------------------------------------------------------------
# Real processes: gunicorn servers and manage.py, with the environments an operator gives them
# ------------------------------------------------------------------------------------------------------------
@dataclass
class Server:
    url: str
    log: Path

    def session(self, raw_key: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {raw_key}"
        return session

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def process_env(*, database: str, kek: str | None = None, check_seconds: float | None = None) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": database}
    if kek is not None:
        env["VAULT_KEK"] = kek
    if check_seconds is not None:
        env["VAULT_KEY_CHECK_SECONDS"] = str(check_seconds)
    return env


@contextlib.contextmanager
def api_server(name: str, env: dict, tmp_path: Path):
    """The API under gunicorn with one worker (one process, so one ring of keys), on a free loopback port; yields
    once it answers, whatever it answers."""
    log = capture_path(f"key-custody-{name}.log", fallback=tmp_path)
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", "1"]
    command += ["--bind", f"127.0.0.1:{port}", "--timeout", "60", "--graceful-timeout", "5"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers():
            if process.poll() is not None:
                pytest.fail(f"gunicorn {name} exited with {process.returncode}: see {log}")
            with contextlib.suppress(requests.RequestException):
                return requests.get(f"{url}/healthz", timeout=2).status_code > 0

        wait_for(answers, timeout=60, interval=0.2)
        yield Server(url, log)
    finally:
        stop_process_group(process)


def manage_py(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def tokenize_on(session: requests.Session, server: Server, number: str) -> requests.Response:
    return session.post(f"{server.url}/tokens", json=card_request(cardNumber=number), timeout=30)


def detokenized_number(session: requests.Session, server: Server, href: str) -> str:
    response = session.post(f"{server.url}{href}/detokenize", timeout=30)
    assert response.status_code == 200, (response.status_code, response.text[:300])
    return response.json()["paymentInstrument"]["cardNumber"]


@pytest.fixture
def carol_key(alice) -> str:
    """The raw key of carol, alice's payment processor (tokens and detokenize)."""
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "tokens:detokenize"], name="processor")
    return raw


@pytest.mark.pci("3.7.4")
@pytest.mark.django_db(transaction=True)
def test_a_dek_started_by_another_process_is_read_by_a_server_that_has_not_looked_since_and_never_answers_500(
    carol_key, tmp_path
):
    database = database_url()
    # This server trusts its last look at the keys for an hour: what another process does meanwhile is new to it.
    with api_server("stale", process_env(database=database, check_seconds=3600), tmp_path) as stale:
        carol = stale.session(carol_key)
        first = href_of(tokenize_on(carol, stale, VISA))

        # Another process starts DEK 2 and moves every card to it; version 1 is retired.
        rotated = manage_py("rotate_keys", "--new-dek", env=process_env(database=database))
        assert rotated.returncode == 0, rotated.stderr[-2000:]
        assert "Rotated 1 value(s); 0 left" in rotated.stdout and "Retired key version(s) 1" in rotated.stdout

        # The server reads the card under version 2 (unwrapping it on first read), and still encrypts under 1.
        assert detokenized_number(carol, stale, first) == VISA
        second = href_of(tokenize_on(carol, stale, MASTERCARD))
        assert Token.objects.get(reference=second.rsplit("/", 1)[1]).key_version == 1
        assert "Traceback" not in stale.log.read_text()

    # A server started now encrypts under 2 and reads both; a rerun of rotate_keys moves the straggler.
    with api_server("fresh", process_env(database=database), tmp_path) as fresh:
        assert detokenized_number(carol, fresh, first) == VISA
        assert detokenized_number(carol, fresh, second) == MASTERCARD
        third = href_of(tokenize_on(carol, fresh, AMEX))
        assert Token.objects.get(reference=third.rsplit("/", 1)[1]).key_version == 2
    again = manage_py("rotate_keys", env=process_env(database=database))
    assert "Rotated 1 value(s); 0 left" in again.stdout, again.stderr[-2000:]


# ------------------------------------------------------------------------------------------------------------
# The restore drill of the README: a backup restored with another KEK, then with the right one
# ------------------------------------------------------------------------------------------------------------
def backup_and_restore(tmp_path: Path) -> tuple[str, callable]:
    """Back the test database up and restore it into a new one, as the README's drill does (pg_dump and
    pg_restore on PostgreSQL, SQLite's online backup otherwise); returns the restored database's URL and its
    clean-up."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        restored = tmp_path / "restored.sqlite3"
        with sqlite3.connect(db["NAME"]) as source, sqlite3.connect(restored) as target:
            source.backup(target)
        return f"sqlite:///{restored}", lambda: None
    tool = {
        name: str(PGBIN / name) if (PGBIN / name).exists() else shutil.which(name)
        for name in ("pg_dump", "pg_restore", "createdb", "dropdb")
    }
    server = ["-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432), "-U", db["USER"]]
    env = {**os.environ, "PGPASSWORD": db["PASSWORD"] or ""}
    name = f"{db['NAME']}_restored"
    dump = tmp_path / "backup.dump"

    def run(*command):
        result = subprocess.run([str(part) for part in command], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr

    run(tool["pg_dump"], *server, "--format=custom", "--no-owner", "-f", dump, db["NAME"])
    run(tool["dropdb"], *server, "--if-exists", name)
    run(tool["createdb"], *server, name)
    run(tool["pg_restore"], *server, "--no-owner", "-d", name, dump)
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{name}"
    return url, lambda: run(tool["dropdb"], *server, "--if-exists", name)


@pytest.mark.pci("3.7.5")
@pytest.mark.django_db(transaction=True)
def test_a_backup_restored_with_another_kek_is_refused_and_serves_every_card_with_the_right_one(carol_key, tmp_path):
    kek = os.environ["VAULT_KEK"]
    numbers = [VISA, MASTERCARD, AMEX]
    with api_server("before-backup", process_env(database=database_url(), kek=kek), tmp_path) as before:
        carol = before.session(carol_key)
        stored = {number: tokenize_on(carol, before, number).json() for number in numbers}
    restored, drop = backup_and_restore(tmp_path)
    try:
        # Another KEK: refused by the system check and by migrate, and tokenizing a card the backup holds answers 503,
        # not a second token (201).
        wrong_kek = process_env(database=restored, kek=new_key())
        for command in (("check", "--database", "default"), ("migrate", "--noinput")):
            refused = manage_py(*command, env=wrong_kek)
            assert refused.returncode != 0 and "is not held by this process" in refused.stderr, refused.stderr[-2000:]
        with api_server("wrong-kek", wrong_kek, tmp_path) as wrong:
            again = tokenize_on(carol, wrong, VISA)
            assert again.status_code == 503, again.text[:300]
            assert again.json() == {**UNREACHABLE, "requestId": again.headers["X-Request-Id"]}, again.text[:300]
            found = carol.get(f"{wrong.url}/tokens", params={"tokenId": stored[VISA]["tokenId"]}, timeout=30)
            assert found.status_code == 200
            assert len([line for line in wrong.log_lines() if "cannot unwrap keys" in line]) == 1

        # The KEK the backup's keys are wrapped under: every card as it was.
        right = process_env(database=restored, kek=kek)
        checked = manage_py("check", "--database", "default", env=right)
        assert checked.returncode == 0, checked.stderr[-2000:]
        with api_server("restored", right, tmp_path) as served:
            for number in numbers:
                again = tokenize_on(carol, served, number)
                assert again.status_code == 200 and again.json()["tokenId"] == stored[number]["tokenId"]
                assert detokenized_number(carol, served, href_of_body(stored[number])) == number
    finally:
        drop()


def href_of_body(body: dict) -> str:
    return path_of(body["tokenPaymentInstrument"]["href"])
