"""The API as the README deploys it: production settings, `collectstatic`, gunicorn behind a TLS-terminating proxy.

The operator runs `manage.py collectstatic` and then gunicorn, with the production environment
(tests/project/test_settings.py's, secrets generated for the run). The proxy is played by the test: it forwards the
`Host` the client asked for and says the client came over HTTPS (`X-Forwarded-Proto: https`). A scanner asks for a
host the deployment does not serve.
"""

import contextlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, VISA, stop_process_group, wait_for
from tests.project.test_drills import free_port
from tests.project.test_settings import PRODUCTION, SECRETS, TEST_RUN_DEFAULTS

HOST = PRODUCTION["DJANGO_ALLOWED_HOSTS"]
FROM_THE_PROXY = {"Host": HOST, "X-Forwarded-Proto": "https"}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Production settings with STATIC_ROOT in a folder of the test's own (the only change), the admin's static
    files collected into it, and gunicorn serving; yields ``(base URL, path of gunicorn's log)``."""
    folder = tmp_path_factory.mktemp("deployment")
    (folder / "deployment_settings.py").write_text(
        f"from config.settings.production import *  # noqa: F403\nSTATIC_ROOT = {str(folder / 'static')!r}\n"
    )
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *PRODUCTION, *TEST_RUN_DEFAULTS)}
    env = {
        **clean,
        **PRODUCTION,
        **{name: os.environ[name] for name in SECRETS},
        "DATABASE_URL": f"sqlite:///{folder / 'untouched.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "deployment_settings",
        "PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)]),
    }
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stderr

    port, log = free_port(), folder / "gunicorn.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "--workers",
                "1",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answers():
        if server.poll() is not None:
            pytest.fail(f"gunicorn exited with {server.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(requests.RequestException):
            return requests.get(f"{url}/static/admin/css/base.css", headers=FROM_THE_PROXY, timeout=2) is not None

    try:
        wait_for(answers, timeout=60, interval=0.2)
        yield url, log
    finally:
        stop_process_group(server)


# ------------------------------------------------------------------------------------------------------------
# The admin's static files, served by the application
# ------------------------------------------------------------------------------------------------------------
def test_the_admins_stylesheet_is_served_after_collectstatic(deployment):
    url, _ = deployment

    response = requests.get(f"{url}/static/admin/css/base.css", headers=FROM_THE_PROXY, timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert "body" in response.text and "{" in response.text


def test_the_admin_login_page_links_stylesheets_that_are_served(deployment):
    url, _ = deployment

    page = requests.get(f"{url}/admin/login/", headers=FROM_THE_PROXY, timeout=10)

    assert page.status_code == 200, page.text[:500]
    stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert any("admin/css/base" in href for href in stylesheets), stylesheets
    for href in stylesheets:
        css = requests.get(f"{url}{href}", headers=FROM_THE_PROXY, timeout=10)
        assert css.status_code == 200, href
        assert css.headers["Content-Type"].startswith("text/css"), href


def test_a_stylesheet_compressed_for_the_browser_that_accepts_it(deployment):
    url, _ = deployment

    response = requests.get(
        f"{url}/static/admin/css/base.css", timeout=10, headers={**FROM_THE_PROXY, "Accept-Encoding": "gzip"}
    )

    assert response.status_code == 200
    assert response.headers.get("Content-Encoding") == "gzip"


# ------------------------------------------------------------------------------------------------------------
# A host the deployment does not serve
# ------------------------------------------------------------------------------------------------------------
def test_a_host_not_allowed_gets_the_apis_error_shape_and_one_warning_line(deployment):
    url, log = deployment
    before = log.stat().st_size

    response = requests.get(
        f"{url}/healthz", headers={"Host": "scanner.invalid", "X-Forwarded-Proto": "https"}, timeout=10
    )

    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "errorName": "hostNotAllowed",
        "message": "This server does not serve the requested host",
        "requestId": response.headers["X-Request-Id"],
    }

    def logged():
        with open(log, "rb") as out:
            out.seek(before)
            return [line for line in out.read().decode().splitlines() if "scanner.invalid" in line]

    [line] = wait_for(logged, timeout=10)
    record = json.loads(line)
    assert record["level"] == "WARNING" and record["logger"] == "django.security.DisallowedHost"
    assert "exc" not in record
    assert "Traceback" not in Path(log).read_text()


# ------------------------------------------------------------------------------------------------------------
# gunicorn's own log lines, with the settings of the project's gunicorn.conf.py (read from the folder it starts in)
# ------------------------------------------------------------------------------------------------------------
def records_after(log: Path, offset: int) -> list[dict]:
    with open(log, "rb") as out:
        out.seek(offset)
        return [json.loads(line) for line in out.read().decode().splitlines() if line.startswith("{")]


@pytest.mark.pci("3.5.1")
def test_the_access_log_has_a_line_per_request_with_a_card_number_in_the_url_redacted(deployment):
    url, log = deployment
    before = log.stat().st_size

    # A clerk's search in the address bar (the database is untouched here: the admin only redirects to its login).
    response = requests.get(
        f"{url}/admin/vault/token/", params={"q": VISA}, headers=FROM_THE_PROXY, timeout=10, allow_redirects=False
    )

    assert response.status_code == 302

    # This request's line only: the previous test's access line may be written after ``before`` was read.
    def logged():
        return [
            r
            for r in records_after(log, before)
            if r["logger"] == "gunicorn.access" and " /admin/vault/token/" in r["message"]
        ]

    [record] = wait_for(logged, timeout=10)
    assert '"GET /admin/vault/token/?q=[REDACTED] HTTP/1.1" 302' in record["message"]
    assert VISA not in log.read_text()


# ------------------------------------------------------------------------------------------------------------
# HTTPS only, and what the browser is told to enforce
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("4.2.1")
def test_plain_http_is_redirected_to_https_and_https_answers_tell_the_browser_to_stay(deployment):
    url, _ = deployment

    plain = requests.get(f"{url}/admin/login/", headers={"Host": HOST}, timeout=10, allow_redirects=False)
    secure = requests.get(f"{url}/admin/login/", headers=FROM_THE_PROXY, timeout=10)

    assert plain.status_code == 301 and plain.headers["Location"] == f"https://{HOST}/admin/login/"
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_the_load_balancers_health_check_is_answered_over_plain_http(deployment):
    url, _ = deployment

    response = requests.get(f"{url}/healthz", headers={"Host": HOST}, timeout=10, allow_redirects=False)

    assert response.status_code != 301


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("path", ["/admin/login/", "/api/docs/"])
def test_the_admin_and_the_api_docs_carry_a_content_security_policy(deployment, path):
    url, _ = deployment

    response = requests.get(f"{url}{path}", headers=FROM_THE_PROXY, timeout=10)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy


@pytest.mark.pci("6.2.4")
def test_the_api_docs_load_every_asset_from_the_deployment_itself(deployment):
    url, _ = deployment

    page = requests.get(f"{url}/api/docs/", headers=FROM_THE_PROXY, timeout=10)

    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any("/swagger-ui-bundle." in asset for asset in assets), assets
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset
        served = requests.get(f"{url}{asset.replace('&amp;', '&')}", headers=FROM_THE_PROXY, timeout=10)
        assert served.status_code == 200, asset
