"""Key custody against the data: key rollouts that never answer 500, and restores that cannot silently lose every
card (issue 15, items 5 and 6).

Every version of VAULT_KEYS decrypts, only the active one (VAULT_ACTIVE_KEY_VERSION) encrypts; a card under a version
a server lacks is a 503 with one error line naming the version, never a 500. Check values stored with the data
(vault.models.KeyCheck) refuse card operations (503 keysNotReady) while a server's keys do not match the data, and
``manage.py check --database default`` and ``migrate`` name the problem. The tests marked with real processes start
gunicorn servers and ``manage.py`` on loopback, as an operator would run them; the others are the same rules in one
process, a settings change standing for another server's environment.

alice is a merchant tokenizing cards; carol is alice's payment processor, whose key may detokenize; every key of the
tests is generated when it runs.
"""

import base64
import contextlib
import importlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import connection

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
    client_for,
    database_url,
    path_of,
    stop_process_group,
    wait_for,
)
from tests.project.test_drills import free_port
from vault import keys as vault_keys
from vault import selectors, services
from vault.crypto import KeyRing, configured_key_ring
from vault.models import KeyCheck, Token

FINGERPRINT_DIFFERS = (
    "VAULT_FINGERPRINT_KEY differs from the one the data was written with: duplicate tokens would follow"
)


def holds_data_missing(version: int) -> str:
    return f"key version {version} holds data but is not in VAULT_KEYS"


@pytest.fixture(autouse=True)
def checked_at_every_card_operation(settings):
    """What a process does once its last check is VAULT_KEY_CHECK_SECONDS old: here, at every card operation."""
    settings.VAULT_KEY_CHECK_SECONDS = 0


@pytest.fixture
def keys():
    """Version keys generated for the test: keys[1], keys[2], ..."""
    return {version: new_key() for version in (1, 2, 3)}


def href_of(response) -> str:
    return path_of(response.json()["tokenPaymentInstrument"]["href"])


def key_checks() -> set[tuple]:
    return {(c.purpose, c.version, c.check_value, c.retired_at is not None) for c in KeyCheck.objects.all()}


# ------------------------------------------------------------------------------------------------------------
# Check values, in one process
# ------------------------------------------------------------------------------------------------------------
def test_the_first_card_on_an_empty_database_records_the_check_values_of_its_keys_without_complaint(tokenize):
    assert not KeyCheck.objects.exists()

    assert tokenize().status_code == 201

    ring = configured_key_ring()
    assert key_checks() == {
        ("encryption", ring.active_version, ring.check_value(ring.active_version), False),
        ("fingerprint", None, ring.fingerprint_check_value, False),
    }
    assert selectors.key_ring_problems() == []
    call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())  # no SystemCheckError


def test_another_fingerprint_key_than_the_datas_answers_503_instead_of_a_duplicate_token(
    tokenize, api, settings, caplog
):
    first = tokenize()
    assert first.status_code == 201
    written_with = settings.VAULT_FINGERPRINT_KEY

    settings.VAULT_FINGERPRINT_KEY = new_key()  # a restore, or a start, with another fingerprint key
    with caplog.at_level(logging.ERROR):
        again = tokenize()
        other_card = tokenize(cardNumber=MASTERCARD)

    assert again.status_code == 503, again.content
    assert again.json()["errorName"] == "keysNotReady" and set(again.json()) == {"errorName", "message"}
    assert again["Retry-After"] == "1"
    assert other_card.status_code == 503
    assert Token.objects.count() == 1
    assert selectors.key_ring_problems() == [FINGERPRINT_DIFFERS]
    refusals = [record.getMessage() for record in caplog.records if record.name == "vault.keys"]
    assert len(refusals) == 1 and FINGERPRINT_DIFFERS in refusals[0]  # once, not per request
    # Everything but card operations goes on serving.
    assert api.get("/tokens", {"tokenId": first.json()["tokenId"]}).status_code == 200
    assert api.get("/webhook-endpoints").status_code == 200

    settings.VAULT_FINGERPRINT_KEY = written_with
    again = tokenize()
    assert again.status_code == 200 and again.json()["tokenId"] == first.json()["tokenId"]


@pytest.mark.pci("3.7.5")
def test_a_version_holding_cards_missing_from_the_ring_refuses_card_operations_and_the_system_check_names_it(
    settings, keys, tokenize, carol_api, api
):
    settings.VAULT_KEYS = f"1:{keys[1]}"
    href = href_of(tokenize())

    settings.VAULT_KEYS = f"2:{keys[2]}"  # version 1 dropped before rotate_keys moved its cards

    detokenized = carol_api.post(f"{href}/detokenize")
    assert detokenized.status_code == 503 and detokenized.json()["errorName"] == "keysNotReady"
    assert tokenize(cardNumber=MASTERCARD).status_code == 503
    assert selectors.key_ring_problems() == [holds_data_missing(1)]
    with pytest.raises(SystemCheckError, match=holds_data_missing(1)):
        call_command("check", "--database", "default", stdout=StringIO(), stderr=StringIO())
    assert api.get(href).status_code == 200
    assert (
        AuditLog.objects.filter(
            action="token.detokenize", result=AuditLog.FAILURE, detail__reason="keys do not match the data"
        ).count()
        == 1
    )


def test_an_import_is_refused_with_the_problem_named_and_stores_nothing(settings, tokenize, alice, tmp_path):
    assert tokenize().status_code == 201
    source = tmp_path / "cards.csv"
    source.write_text(
        f"externalReference,cardNumber,expiryDate,cardHolderName\ncust-1,{MASTERCARD},05/2035,Ada Lovelace\n"
    )
    settings.VAULT_FINGERPRINT_KEY = new_key()

    with pytest.raises(CommandError, match=FINGERPRINT_DIFFERS):
        call_command("import_cards", str(source), "--merchant", alice.public_id, stdout=StringIO(), stderr=StringIO())

    assert Token.objects.count() == 1


def test_another_key_under_a_version_already_recorded_is_refused(settings, keys, tokenize):
    settings.VAULT_KEYS = f"1:{keys[1]}"
    assert tokenize().status_code == 201

    settings.VAULT_KEYS = f"1:{keys[2]}"

    assert tokenize(cardNumber=MASTERCARD).status_code == 503
    assert selectors.key_ring_problems() == [
        "key version 1 in VAULT_KEYS differs from the one the data was written with"
    ]


@pytest.mark.pci("3.7.4")
def test_rotate_keys_refuses_while_the_keys_do_not_match_the_data_and_changes_nothing(settings, keys, tokenize):
    settings.VAULT_KEYS = f"1:{keys[1]}"
    tokenize()
    settings.VAULT_KEYS = f"2:{keys[2]},1:{keys[3]}"  # version 1 under another key

    with pytest.raises(CommandError, match="key version 1 in VAULT_KEYS differs"):
        call_command("rotate_keys", stdout=StringIO(), stderr=StringIO())

    assert set(Token.objects.values_list("key_version", flat=True)) == {1}
    assert not KeyCheck.objects.filter(version=2).exists()


@pytest.mark.pci("3.7.4")
@pytest.mark.pci("3.7.5")
def test_a_version_activated_and_withdrawn_before_it_held_a_card_is_retired_by_rotate_keys(
    settings, keys, tokenize, carol_api
):
    settings.VAULT_KEYS = f"1:{keys[1]}"
    href = href_of(tokenize())
    settings.VAULT_KEYS = f"2:{keys[2]},1:{keys[1]}"  # activated on one server, which detokenizes a card...
    assert carol_api.post(f"{href}/detokenize").status_code == 200
    settings.VAULT_KEYS = f"1:{keys[1]}"  # ...and withdrawn: nobody can tell yet that it holds nothing
    assert tokenize(cardNumber=MASTERCARD).status_code == 503

    out = StringIO()
    call_command("rotate_keys", stdout=out, stderr=StringIO())

    assert "Rotated 0 value(s); 0 left" in out.getvalue() and "Retired key version(s) 2" in out.getvalue()
    assert tokenize(cardNumber=MASTERCARD).status_code == 201


def test_cards_stored_before_the_check_values_existed_have_their_versions_checked(settings, keys, alice):
    # An installation from before migration 0005, with cards under versions 1 and 3.
    settings.VAULT_KEYS = f"3:{keys[3]},1:{keys[1]}"
    for number, active in ((VISA, 1), (MASTERCARD, 3)):
        settings.VAULT_ACTIVE_KEY_VERSION = active
        services.card_tokenize(merchant=alice, card=services.Card(number, "Sherlock Holmes", 5, 2035))
    KeyCheck.objects.all().delete()
    migration = importlib.import_module("vault.migrations.0005_keycheck")

    migration.record_versions_holding_data(django_apps, connection.schema_editor())

    assert key_checks() == {("encryption", 1, "", False), ("encryption", 3, "", False)}
    settings.VAULT_KEYS, settings.VAULT_ACTIVE_KEY_VERSION = f"1:{keys[1]}", None
    assert selectors.key_ring_problems() == [holds_data_missing(3)]
    # A process holding both records their check values on its first card operation.
    settings.VAULT_KEYS, settings.VAULT_ACTIVE_KEY_VERSION = f"3:{keys[3]},1:{keys[1]}", 1
    services.card_tokenize(merchant=alice, card=services.Card(AMEX, "Sherlock Holmes", 5, 2035))
    ring = configured_key_ring()
    assert {(c.version, c.check_value) for c in KeyCheck.objects.filter(purpose="encryption")} == {
        (1, ring.check_value(1)),
        (3, ring.check_value(3)),
    }


# ------------------------------------------------------------------------------------------------------------
# A card under a version this server lacks: 503, never 500, for every card operation
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def processor_api(alice):
    """alice's payment processor key for network tokens: its cryptograms carry the token number."""
    _, raw = merchant_services.api_key_create(
        merchant=alice, scopes=["tokens", "network-tokens", "tokens:detokenize"], name="processor"
    )
    return client_for(raw)


def test_a_card_under_a_version_this_server_lacks_answers_503_naming_the_version_until_its_ring_has_it(
    settings, keys, tokenize, processor_api, caplog
):
    # This server (ring 1) checked its keys a moment ago and trusts that check for a while.
    settings.VAULT_KEY_CHECK_SECONDS = 3600
    settings.VAULT_KEYS = f"1:{keys[1]}"
    href = href_of(tokenize())
    provisioned = processor_api.post("/network-tokens", {"token": href}, format="json", HTTP_X_CORRELATION_ID="rollout")
    assert provisioned.status_code == 201, provisioned.content
    network_token_id = provisioned.json()["tokenId"]
    number = processor_api.post(f"/network-tokens/{network_token_id}/cryptograms").json()["tokenNumber"]

    # Another server, version 2 active, re-encrypts both (rotate_keys there) and has recorded its key.
    other = KeyRing(
        keys=[(2, base64.b64decode(keys[2])), (1, base64.b64decode(keys[1]))],
        fingerprint_key=configured_key_ring().fingerprint_key,
        active_version=2,
    )
    vault_keys.key_checks_record(ring=other)
    token = Token.objects.get()
    token.key_version, token.pan_ciphertext = other.encrypt(VISA, associated_data=token.associated_data())
    token.save(update_fields=["key_version", "pan_ciphertext"])
    network_token = token.network_tokens.get()
    network_token.key_version, network_token.dpan_ciphertext = other.encrypt(
        number, associated_data=network_token.associated_data()
    )
    network_token.save(update_fields=["key_version", "dpan_ciphertext"])

    with caplog.at_level(logging.ERROR):
        answers = [
            processor_api.post(f"{href}/detokenize"),
            processor_api.post("/network-tokens", {"token": href}, format="json", HTTP_X_CORRELATION_ID="rollout"),
            processor_api.post(f"/network-tokens/{network_token_id}/cryptograms"),
        ]

    for answer in answers:
        assert answer.status_code == 503, answer.content
        assert answer.json() == {
            "errorName": "serviceUnavailable",
            "message": "The card's encryption key is not available on this server; retry later",
        }
        assert answer["Retry-After"] == "1"
    named = [record for record in caplog.records if "key version 2" in record.getMessage()]
    assert len(named) == 3 and all(record.name == "vault.crypto" for record in named)  # one line per request
    assert VISA not in caplog.text and number not in caplog.text
    assert AuditLog.objects.filter(
        action="token.detokenize", result=AuditLog.FAILURE, detail__reason="key version 2 not on this server"
    ).exists()

    # Its next check finds version 2 holding cards: every card operation waits for the ring to have it.
    settings.VAULT_KEY_CHECK_SECONDS = 0
    refused = processor_api.post(f"{href}/detokenize")
    assert refused.status_code == 503 and refused.json()["errorName"] == "keysNotReady"
    assert selectors.key_ring_problems() == [holds_data_missing(2)]

    settings.VAULT_KEYS = f"2:{keys[2]},1:{keys[1]}"
    settings.VAULT_ACTIVE_KEY_VERSION = 1
    assert processor_api.post(f"{href}/detokenize").json()["paymentInstrument"]["cardNumber"] == VISA
    assert processor_api.post(f"/network-tokens/{network_token_id}/cryptograms").json()["tokenNumber"] == number


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


def process_env(
    *,
    database: str,
    vault_keys: str,
    active: int | None = None,
    fingerprint: str | None = None,
    check_seconds: float | None = None,
) -> dict:
    env = {name: value for name, value in os.environ.items() if name != "VAULT_ACTIVE_KEY_VERSION"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=database, VAULT_KEYS=vault_keys)
    if active is not None:
        env["VAULT_ACTIVE_KEY_VERSION"] = str(active)
    if fingerprint is not None:
        env["VAULT_FINGERPRINT_KEY"] = fingerprint
    if check_seconds is not None:
        env["VAULT_KEY_CHECK_SECONDS"] = str(check_seconds)
    return env


@contextlib.contextmanager
def api_server(name: str, env: dict, tmp_path: Path):
    """The API under gunicorn with one worker (one process, so one check of the keys), on a free loopback port;
    yields once it answers, whatever it answers."""
    log = capture_path(f"key-custody-{name}.log", fallback=tmp_path)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
        "--timeout",
        "60",
        "--graceful-timeout",
        "5",
    ]
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


@pytest.mark.django_db(transaction=True)
def test_a_rollout_where_one_server_decrypts_with_the_new_key_and_another_encrypts_with_it_never_answers_500(
    carol_key, keys, tmp_path
):
    ring = f"2:{keys[2]},1:{keys[1]}"
    database = database_url()
    numbers = [VISA, VISA_2, MASTERCARD, AMEX]
    # Step 1 of the procedure reached one server (version 2 decrypts, version 1 encrypts); step 2 another.
    with (
        api_server("decrypt-only", process_env(database=database, vault_keys=ring, active=1), tmp_path) as d,
        api_server("activated", process_env(database=database, vault_keys=ring, active=2), tmp_path) as e,
    ):
        carol = d.session(carol_key)
        hrefs = {}
        for number, server in zip(numbers, (d, e, d, e), strict=True):
            response = tokenize_on(carol, server, number)
            assert response.status_code == 201, response.text[:300]
            hrefs[number] = href_of(response)
        assert {
            number: Token.objects.get(reference=hrefs[number].rsplit("/", 1)[1]).key_version for number in numbers
        } == {VISA: 1, VISA_2: 2, MASTERCARD: 1, AMEX: 2}
        # Each server reads what the other wrote, and knows the other's cards as the same cards.
        for server in (d, e):
            assert {number: detokenized_number(carol, server, href) for number, href in hrefs.items()} == {
                number: number for number in numbers
            }
            for number in numbers:
                assert tokenize_on(carol, server, number).status_code == 200
        assert "Traceback" not in d.log.read_text() + e.log.read_text()

    # Step 3: rotate_keys, run as the activated servers are configured, moves every card to version 2 and retires 1.
    rotated = manage_py("rotate_keys", env=process_env(database=database, vault_keys=ring, active=2))
    assert rotated.returncode == 0, rotated.stderr[-2000:]
    assert "Rotated 2 value(s); 0 left on other key versions" in rotated.stdout
    assert "Retired key version(s) 1" in rotated.stdout
    # Step 4: version 1 leaves the ring.
    with api_server("retired", process_env(database=database, vault_keys=f"2:{keys[2]}"), tmp_path) as n:
        assert {number: detokenized_number(carol, n, href) for number, href in hrefs.items()} == {
            number: number for number in numbers
        }


@pytest.mark.django_db(transaction=True)
def test_a_card_written_under_a_version_a_server_lacks_is_a_503_naming_it_and_reads_once_the_ring_has_it(
    carol_key, keys, tmp_path
):
    database = database_url()
    old_ring = process_env(database=database, vault_keys=f"1:{keys[1]}")
    # The old server trusts its last check of the keys for an hour: the card reaches it before its next check.
    with api_server("old", {**old_ring, "VAULT_KEY_CHECK_SECONDS": "3600"}, tmp_path) as old:
        carol = old.session(carol_key)
        stored_before = href_of(tokenize_on(carol, old, VISA))
        with api_server(
            "new", process_env(database=database, vault_keys=f"2:{keys[2]},1:{keys[1]}", active=2), tmp_path
        ) as new:
            written_by_new = tokenize_on(carol, new, MASTERCARD)
            assert written_by_new.status_code == 201
        href = href_of(written_by_new)

        answer = carol.post(f"{old.url}{href}/detokenize", timeout=30)

        assert answer.status_code == 503, answer.text[:300]
        assert answer.json() == {
            "errorName": "serviceUnavailable",
            "message": "The card's encryption key is not available on this server; retry later",
        }
        assert answer.headers["Retry-After"] == "1"
        log = old.log.read_text()
        assert len([line for line in old.log_lines() if "key version 2" in line]) == 1
        assert "Traceback" not in log and MASTERCARD not in log

    # Started again as it was, the old server is refused: by the system check, and at its first card operation.
    for command in (("check", "--database", "default"), ("migrate", "--noinput")):
        refused = manage_py(*command, env=old_ring)
        assert refused.returncode != 0 and holds_data_missing(2) in refused.stderr, (command, refused.stderr[-2000:])
    with api_server("old-restarted", old_ring, tmp_path) as restarted:
        answer = carol.post(f"{restarted.url}{stored_before}/detokenize", timeout=30)
        assert answer.status_code == 503 and answer.json()["errorName"] == "keysNotReady"
        assert len([line for line in restarted.log_lines() if holds_data_missing(2) in line]) == 1

    # Once its ring has version 2 (decrypt-only), it reads both.
    with api_server(
        "old-with-2", process_env(database=database, vault_keys=f"2:{keys[2]},1:{keys[1]}", active=1), tmp_path
    ) as upgraded:
        assert detokenized_number(carol, upgraded, href) == MASTERCARD
        assert detokenized_number(carol, upgraded, stored_before) == VISA


# ------------------------------------------------------------------------------------------------------------
# The restore drill of the README: a backup restored with the wrong secrets, then with the right ones
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


@pytest.mark.django_db(transaction=True)
def test_a_backup_restored_with_other_secrets_is_refused_and_serves_every_card_with_the_right_ones(
    carol_key, keys, tmp_path
):
    secrets = {"vault_keys": f"1:{keys[1]}", "fingerprint": os.environ["VAULT_FINGERPRINT_KEY"]}
    numbers = [VISA, MASTERCARD, AMEX]
    with api_server("before-backup", process_env(database=database_url(), **secrets), tmp_path) as before:
        carol = before.session(carol_key)
        stored = {number: tokenize_on(carol, before, number).json() for number in numbers}
    restored, drop = backup_and_restore(tmp_path)
    try:
        # Another fingerprint key: refused by the system check and by migrate, and tokenizing a card the backup holds
        # answers 503, not a second token (201).
        wrong_fingerprint = process_env(database=restored, vault_keys=secrets["vault_keys"], fingerprint=new_key())
        for command in (("check", "--database", "default"), ("migrate", "--noinput")):
            refused = manage_py(*command, env=wrong_fingerprint)
            assert refused.returncode != 0 and FINGERPRINT_DIFFERS in refused.stderr, refused.stderr[-2000:]
        with api_server("wrong-fingerprint", wrong_fingerprint, tmp_path) as wrong:
            again = tokenize_on(carol, wrong, VISA)
            assert again.status_code == 503 and again.json()["errorName"] == "keysNotReady", again.text[:300]
            found = carol.get(f"{wrong.url}/tokens", params={"tokenId": stored[VISA]["tokenId"]}, timeout=30)
            assert found.status_code == 200
        # The backup's key version dropped from the ring (rotated since): named, refused.
        dropped = manage_py(
            "check",
            "--database",
            "default",
            env=process_env(database=restored, vault_keys=f"2:{keys[2]}", fingerprint=secrets["fingerprint"]),
        )
        assert dropped.returncode != 0 and holds_data_missing(1) in dropped.stderr

        # The secrets the backup was made with: every card as it was.
        right = process_env(database=restored, **secrets)
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
