"""No log line holds a card number, whichever logger writes it: the access lines of runserver (``make run``) and of
gunicorn (production) included, whose loggers do not go through the application's handlers by default.

A client (or a clerk's browser) puts a card number in a URL: ``GET /tokens?namespace=<digits>``, the admin's
``?q=<digits>``, a malformed request line. The servers are real processes on a loopback port, started as ``make run``
and the README start them, from the project's folder; what they wrote is searched for the number.
"""

import contextlib
import json
import logging
import os
import socket
import subprocess
import sys

import pytest
import requests

from core.logging import RedactCardNumbersFilter
from tests.conftest import ROOT, VISA, database_url, stop_process_group, wait_for
from tests.project.test_drills import free_port

pytestmark = pytest.mark.pci("3.5.1")


@contextlib.contextmanager
def server(command: list[str], *, log):
    """``command`` (which serves on the port it was given) run from the project's folder with the test settings and
    database; yields its base URL once it answers, and stops it before the test reads ``log``."""
    port = free_port()
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [arg.format(port=port) for arg in command],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": database_url()},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answers():
        if process.poll() is not None:
            pytest.fail(f"{command[1:3]} exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{url}/tokens", timeout=2) is not None

    try:
        wait_for(answers, timeout=60, interval=0.2)
        yield url
    finally:
        stop_process_group(process)


def ask_with_a_card_number_in_the_url(url: str) -> None:
    assert requests.get(f"{url}/tokens", params={"namespace": VISA}, timeout=10).status_code == 401
    # Not signed in: redirected to the login page, whose URL carries the search along (?next=...%3Fq%3D<digits>).
    assert requests.get(f"{url}/admin/vault/token/", params={"q": VISA}, timeout=10).status_code == 200


def lines_of(log, logger: str) -> list[dict]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [record for record in records if record["logger"] == logger]


def test_runserver_writes_its_access_lines_with_the_card_number_redacted(transactional_db, tmp_path):
    log = tmp_path / "runserver.log"

    with server([sys.executable, "manage.py", "runserver", "127.0.0.1:{port}", "--noreload"], log=log) as url:
        ask_with_a_card_number_in_the_url(url)

    assert VISA not in log.read_text()
    access = [record["message"] for record in lines_of(log, "django.server")]
    assert any("GET /tokens?namespace=[REDACTED] HTTP/1.1" in line for line in access), access
    assert any("GET /admin/vault/token/?q=[REDACTED] HTTP/1.1" in line for line in access), access


def test_gunicorn_writes_its_access_and_error_lines_with_the_card_number_redacted(transactional_db, tmp_path):
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", "127.0.0.1:{port}"]

    with server(command, log=log) as url:
        ask_with_a_card_number_in_the_url(url)
        # A request line gunicorn refuses (no HTTP version): its error log quotes the line, at WARNING.
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as raw:
            raw.sendall(f"GET /tokens?namespace={VISA}\r\n\r\n".encode())
            assert raw.recv(1024).startswith(b"HTTP/1.1 400")

        def refusal_logged():
            return [r for r in lines_of(log, "gunicorn.error") if "Invalid request" in r["message"]]

        [refused] = wait_for(refusal_logged, timeout=10)

    assert VISA not in log.read_text()
    assert "[REDACTED]" in refused["message"]
    access = [record["message"] for record in lines_of(log, "gunicorn.access")]
    assert any("GET /tokens?namespace=[REDACTED] HTTP/1.1" in line for line in access), access
    assert any("GET /admin/vault/token/?q=[REDACTED] HTTP/1.1" in line for line in access), access


def test_every_handler_of_every_logger_redacts_card_numbers():
    """In this process, with the settings' LOGGING applied: Django's own handlers (runserver's, the debug console's,
    the admins' mails) write through the one redacting handler, not beside it."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    unredacted = {
        f"{logger.name}: {type(handler).__name__}"
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if not isinstance(handler, logging.NullHandler)
        and not type(handler).__module__.startswith("_pytest")  # pytest's capture of this run's records
        and not any(isinstance(f, RedactCardNumbersFilter) for f in handler.filters)
    }

    assert unredacted == set()
