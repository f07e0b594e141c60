"""The leak scan (scripts/leak_scan.py) finds a planted card number wherever a run could leak it, and names the file
and line without printing the number."""

import base64
import importlib.util
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
from django.apps import apps

from config.celery import app
from networks.models import NetworkToken
from tests.conftest import (
    AMEX,
    MASTERCARD,
    ROOT,
    VISA,
    VISA_2,
    client_for,
    start_celery_worker,
    stop_process_group,
    wait_for,
)
from tests.receiver import Receiver, Reply
from vault.keys import key_ring

spec = importlib.util.spec_from_file_location("leak_scan", ROOT / "scripts" / "leak_scan.py")
leak_scan = importlib.util.module_from_spec(spec)
spec.loader.exec_module(leak_scan)

NUMBERS = {VISA, MASTERCARD, AMEX}
SHORT_VISA = "400000000002"  # 12 digits, the shortest card number the API takes
NO_BRAND = "123456781234568"  # Luhn-valid, in no brand's range: the API takes it


def celery_message(args) -> str:
    """A task message as kombu pushes it to Redis: a JSON envelope with the task's JSON body in base64."""
    body = base64.b64encode(json.dumps([args, {}, {"callbacks": None}]).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"task": "vault.tasks.example"},
            "properties": {"body_encoding": "base64"},
        }
    )


def monitor_line(command: str, *args: str) -> str:
    """A line of `redis-cli monitor`: every argument quoted, its quotes escaped."""
    quoted = " ".join('"' + arg.replace('"', '\\"') + '"' for arg in (command, *args))
    return f"1795507712.118571 [0 127.0.0.1:35072] {quoted}\n"


def leaks_in(tmp_path, text: str, numbers=NUMBERS) -> list:
    log = tmp_path / "some.log"
    log.write_text(text)
    return list(leak_scan.scan_files([log], numbers))


def leak_scan_run(*arguments: str) -> subprocess.CompletedProcess:
    """scripts/leak_scan.py run as make test runs it, with ``arguments``."""
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "leak_scan.py"), *arguments], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "line",
    [
        f'{{"level": "INFO", "message": "tokenized {VISA}"}}',
        f"card {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]} declined",
        f"card {VISA[:4]}-{VISA[4:8]}-{VISA[8:12]}-{VISA[12:]} declined",
        f"reference 00{VISA}99 in a longer run of digits",
        f"COPY vault_token (id, reference) FROM stdin;\n7\t{VISA}\n",
        monitor_line("LPUSH", "celery", celery_message([VISA, 12])),
    ],
    ids=["plain", "grouped by spaces", "grouped by dashes", "inside a longer run", "pg_dump", "celery message"],
)
def test_it_finds_a_card_number_however_it_was_written(tmp_path, line):
    [leak] = leaks_in(tmp_path, f"first line\n{line}\n")

    assert leak.last_four == VISA[-4:]
    assert leak.line in (2, 3)
    assert leak.encoded == ("celery" in line)


def test_it_ignores_masked_redacted_and_unknown_numbers(tmp_path):
    text = (
        f'{{"message": "tokenized [REDACTED]"}}\n'
        f"masked {VISA[:4]}********{VISA[-4:]}\n"
        f"another card {VISA_2}\n"  # Luhn-valid, but not one of the numbers searched for
        f"{monitor_line('LPUSH', 'celery', celery_message([42]))}"
    )

    assert leaks_in(tmp_path, text) == []


def test_it_collects_the_luhn_valid_literals_of_the_test_sources(tmp_path):
    (tmp_path / "test_some.py").write_text(
        f'CARD = "{VISA}"\nAMEX = "{AMEX}"\nSHORTEST = "{SHORT_VISA}"\nNOT_LUHN = "{VISA[:-1]}2"\n'
        f'TOO_SHORT = "{SHORT_VISA[:-1]}"\nLONGER = "{VISA}0000"\nZEROS = "{"0" * 16}"\n'
        f'TIMESTAMP = "{NO_BRAND}"\n'  # Luhn-valid, as one digit string in ten is: not a card number in a source
    )

    assert leak_scan.card_numbers_in_sources([tmp_path]) == {VISA, AMEX, SHORT_VISA}


def test_the_numbers_a_run_recorded_count_whatever_their_length_and_brand_but_a_fuzzers_zeros(tmp_path):
    """The API takes 12 to 19 digits of any brand. A run of one digit passes the Luhn check too, and would be found in
    every longer run of that digit in a dump."""
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(f"{'0' * 12}\n{'0' * 16}\n{MASTERCARD}\n{SHORT_VISA}\n{NO_BRAND}\n{SHORT_VISA[:-1]}\n")

    assert leak_scan.read_numbers(numbers) == {MASTERCARD, SHORT_VISA, NO_BRAND}


@pytest.mark.parametrize("number", [SHORT_VISA, NO_BRAND], ids=["12 digits", "no known brand"])
def test_it_finds_a_short_or_unbranded_card_number(tmp_path, number):
    [leak] = leaks_in(tmp_path, f"ok\ncard {number[:4]} {number[4:8]} {number[8:]} declined\n", numbers={number})

    assert (leak.line, leak.last_four) == (2, number[-4:])


def test_the_script_fails_naming_file_and_line_but_never_the_number(tmp_path):
    capture = tmp_path / "capture"
    (capture / "nested").mkdir(parents=True)
    (capture / "clean.log").write_text("nothing here\n")
    (capture / "nested" / "worker.log").write_text(f"ok\nok\nsent {MASTERCARD} to the broker\n")
    numbers = tmp_path / "numbers.txt"
    numbers.write_text(f"{MASTERCARD}\n")
    sources = tmp_path / "no-sources"
    sources.mkdir()

    result = leak_scan_run("--numbers", str(numbers), "--sources", str(sources), str(capture))

    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"{capture / 'nested' / 'worker.log'}:3: a test card number ending in {MASTERCARD[-4:]}" in output
    assert "1 LEAK(S)" in output
    assert MASTERCARD not in output


def test_the_script_passes_a_clean_capture(tmp_path):
    (tmp_path / "app.log").write_text('{"message": "tokenized [REDACTED]"}\n')

    result = leak_scan_run(str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "no card number or key found" in result.stdout


@pytest.mark.celery
def test_it_finds_a_number_published_to_the_broker_in_a_capture_of_the_wire(tmp_path):
    """What scripts/test.sh does for a whole pass: `redis-cli monitor` on the broker while a task is published."""
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis://"):
        pytest.fail("this test needs a real Redis broker: run it through `make test` or set CELERY_BROKER_URL")
    # Not Luhn-valid, so the suite's own leak scan (which is capturing this broker too) does not look for it.
    planted = "4000123412341235"
    queue = f"leak-scan-probe-{uuid.uuid4().hex}"  # a queue nobody consumes, deleted below
    capture = tmp_path / "broker-monitor.log"
    with open(capture, "wb") as out:
        monitor = subprocess.Popen(
            ["redis-cli", "-u", broker, "monitor"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: capture.read_bytes().startswith(b"OK"), timeout=10)
        app.send_task("tests.leak_scan_probe", args=[planted], queue=queue)
        # The queue's name goes by first in kombu's binding (SADD); the message itself is the LPUSH.
        wait_for(
            lambda: any(
                b'"lpush"' in line.lower() and queue.encode() in line for line in capture.read_bytes().splitlines()
            ),
            timeout=10,
        )
    finally:
        stop_process_group(monitor)
        redis.Redis.from_url(broker).delete(queue)

    leaks = list(leak_scan.scan_files([capture], {planted}))

    assert any(leak.encoded for leak in leaks), "the task's body (base64 on the wire) was not searched"
    assert {leak.last_four for leak in leaks} == {planted[-4:]}


@pytest.mark.celery
def test_a_worker_records_the_network_token_numbers_it_makes(alice, transactional_db, tmp_path):
    """The simulators make network token numbers in the workers, which the pytest process never sees: each worker
    appends the numbers it checks to the pass's file as it meets them (it may be killed before it could at the end)."""
    numbers = tmp_path / "card-numbers.txt"
    worker = start_celery_worker(env={"TEST_CARD_NUMBERS_FILE": str(numbers)})
    try:
        api = client_for(alice.raw_key)
        card = {"cardNumber": MASTERCARD, "cardExpiryDate": {"month": 5, "year": 2035}, "cardHolderName": "S Holmes"}
        response = api.post("/network-tokens/async", {"card": card}, format="json", HTTP_X_CORRELATION_ID="leak-scan")
        assert response.status_code == 202, response.content
        request_id = response.json()["requestId"]

        def ended() -> dict:
            """The request once it has ended; {} while PENDING or while SQLite, busy with the worker's writes,
            answers 503."""
            answer = api.get(f"/network-tokens/requests/{request_id}")
            assert answer.status_code in (200, 503), answer.content
            body = answer.json() if answer.status_code == 200 else {}
            return body if body.get("status", "PENDING") != "PENDING" else {}

        body = wait_for(ended, timeout=120)  # the worker's start-up included
    finally:
        stop_process_group(worker)

    assert body["status"] == "SUCCEEDED", body
    token = NetworkToken.objects.get(merchant=alice)
    dpan = key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())
    assert dpan in leak_scan.read_numbers(numbers)


# ------------------------------------------------------------------------------------------------------------
# Forwards: the card goes to the provider (its side, not ours) and nowhere else. The pass's own scan searches the
# logs and dumps of every forward the suite makes (tests/vault/test_forward.py); this test searches, on its own, what
# forwards of every outcome leave in our log and our database, before any redaction.
# ------------------------------------------------------------------------------------------------------------
def database_text() -> str:
    """Every row of every table, as text: a dump through the ORM, which sees the test's uncommitted rows too."""
    return "\n".join(repr(row) for model in apps.get_models() for row in model.objects.values_list())


def test_a_forward_leaves_no_card_number_in_the_log_or_the_database(alice, api, tokenize, caplog, settings):
    token = tokenize().json()["tokenId"]
    network_token = api.post("/network-tokens", {"token": token}, format="json", HTTP_X_CORRELATION_ID="leak")
    template = {
        "token": token,
        "networkToken": network_token.json()["tokenId"],
        "path": f"/cards/{VISA}",  # typed where it does not belong: sent, and kept masked
        "headers": {"Content-Type": "application/json", "X-Card": "{{ card.number }}"},
        "body": '{"pan": "{{ card.number }}", "dpan": "{{ networkToken.number }}", "oops": "{{ card.cvv }}"}',
    }
    echo = Reply(200, body=f'{{"pan": "{VISA}"}}')
    with Receiver(echo, path="/v1") as provider:
        destination = api.post("/forward-destinations", {"name": "PSP", "url": provider.url}, format="json").json()
        forward = {**template, "destination": destination["id"]}
        bad = api.post("/forward", forward, format="json")  # the unknown expression: 400, nothing sent
        forward["body"] = forward["body"].replace('"{{ card.cvv }}"', "1")
        sent = api.post("/forward", forward, format="json")
        provider.always(Reply(hang=True))
        settings.FORWARD_TIMEOUT_SECONDS = 0.5  # only now: the forward that must succeed keeps the default
        timed_out = api.post("/forward", forward, format="json")
        received = provider.requests

    assert (bad.status_code, sent.status_code, timed_out.status_code) == (400, 200, 504)
    token_row = NetworkToken.objects.get(token_id=network_token.json()["tokenId"])
    dpan = key_ring().decrypt(
        token_row.key_version, token_row.dpan_ciphertext, associated_data=token_row.associated_data()
    )
    numbers = {VISA, dpan}
    assert {number for number in numbers if number in received[0].text} == numbers  # the provider's side
    assert list(leak_scan.scan_text(caplog.text, numbers)) == []
    assert list(leak_scan.scan_text(database_text(), numbers)) == []
    for answer in (bad, sent, timed_out):
        assert list(leak_scan.scan_text(answer.content.decode(), numbers)) == []


# ------------------------------------------------------------------------------------------------------------
# Keys: every key encryption key, data encryption key and PIN a pass used (TEST_KEY_MATERIAL_FILE), in any of the
# forms a program writes bytes in. Each test makes its own keys; they go into its temporary files only.
# ------------------------------------------------------------------------------------------------------------
def key_forms(key: bytes) -> dict[str, str]:
    """The lines a careless program could write ``key`` in, by name."""
    body = base64.b64encode(json.dumps([[key.hex()], {}]).encode()).decode()
    return {
        "hex": f"unwrapped data key {key.hex()}",
        "upper-case hex in a SQLite dump": f"INSERT INTO \"vault_datakey\" VALUES(1,X'{key.hex().upper()}');",
        "bytea in a pg_dump": f"1\tpkcs11:kek-a\t\\x{key.hex()}",
        "base64": json.dumps({"message": f"kek={base64.b64encode(key).decode()}"}),
        "URL-safe base64 unpadded": f"key {base64.urlsafe_b64encode(key).decode().rstrip('=')}",
        "inside base64, offset 0": base64.b64encode(key + b"tail").decode(),
        "inside base64, offset 1": base64.b64encode(b"h" + key + b"tail").decode(),
        "inside base64, offset 2": base64.b64encode(b"he" + key + b"tail").decode(),
        "bytes literal": f"ValueError: bad key {key!r}",
        "bytes literal in a JSON line": json.dumps({"message": f"ring keys [{key!r}]"}),
        "celery message": monitor_line("LPUSH", "celery", json.dumps({"body": body})).strip(),
    }


FORMS = list(key_forms(b"\0" * 32))


@pytest.mark.parametrize("form", FORMS, ids=FORMS)
def test_it_finds_a_key_however_it_was_written(tmp_path, form):
    key, other = os.urandom(32), os.urandom(32)
    log = tmp_path / "some.log"
    log.write_text(f"first line\n{key_forms(key)[form]}\n{key_forms(other)[form]}\n")

    leaks = list(leak_scan.scan_files([log], set(), leak_scan.Keys([key])))

    assert {(leak.line, leak.key_id) for leak in leaks} == {(2, leak_scan.key_id(key))}
    assert leaks[0].encoded == (form == "celery message")


def test_it_finds_a_raw_key_even_across_a_line_break(tmp_path):
    key = b"\n" + os.urandom(30) + b"\n"  # raw bytes hold any byte, a line break too
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"header\n" + os.urandom(100).replace(b"\n", b" ") + key + b"\nrest\n")

    [leak] = [leak for leak in leak_scan.scan_files([dump], set(), leak_scan.Keys([key])) if leak.form == "raw"]

    assert (leak.line, leak.key_id) == (2, leak_scan.key_id(key))


def test_it_finds_a_pin_in_clear(tmp_path):
    pin = os.urandom(12).hex()
    log = tmp_path / "app.log"
    log.write_text(f"ok\nlogging in to the HSM with {pin}\n")

    leaks = list(leak_scan.scan_files([log], set(), leak_scan.Keys([pin.encode()])))

    assert [(leak.line, leak.form) for leak in leaks] == [(2, "raw")]


def test_it_finds_one_key_among_thousands_in_a_broker_capture(tmp_path):
    """A pass records a data key or more per test: the scan looks each window up in one index of them all."""
    keys = [os.urandom(32) for _ in range(5000)]
    log = tmp_path / "broker-monitor.log"
    log.write_text(
        "".join(monitor_line("LPUSH", "celery", celery_message([os.urandom(200).hex()])) for _ in range(500))
        + f"{keys[1234].hex()}\n"
    )

    [leak] = leak_scan.scan_files([log], set(), leak_scan.Keys(keys))

    assert (leak.line, leak.key_id) == (501, leak_scan.key_id(keys[1234]))


def test_the_script_names_a_leaked_key_by_a_hash_never_its_bytes(tmp_path):
    key = os.urandom(32)
    capture = tmp_path / "capture"
    capture.mkdir()
    (capture / "app.log").write_text(f"ok\nrewrapping {base64.b64encode(key).decode()}\n")
    keys = tmp_path / "key-material.txt"
    keys.write_text(f"{os.urandom(32).hex()}\n{key.hex()}\n")
    sources = tmp_path / "no-sources"
    sources.mkdir()

    result = leak_scan_run("--keys", str(keys), "--sources", str(sources), str(capture))

    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"{capture / 'app.log'}:2: a test key (SHA-256 {leak_scan.key_id(key)}...) in base64" in output
    assert "0 card numbers and 2 keys searched for" in output
    for form in (key.hex(), base64.b64encode(key).decode()[:40]):
        assert form not in output


def test_the_script_refuses_a_key_too_short_to_search_for(tmp_path):
    keys = tmp_path / "key-material.txt"
    keys.write_text(f"{os.urandom(8).hex()}\n")

    result = leak_scan_run("--keys", str(keys), str(tmp_path))

    assert result.returncode == 2
    assert "a key of 8 bytes is too short to search for" in result.stderr
