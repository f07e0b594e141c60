"""Every entry point runs production settings unless told otherwise, and names everything production is missing at
once; production refuses development switches and has no simulated card networks.

An operator's view: ``manage.py`` and ``celery -A config`` started with a production environment and no
``DJANGO_SETTINGS_MODULE`` (only ``make run`` and ``make test`` choose other settings).
"""

import os
import subprocess
import sys

import pytest

from networks import tsp
from networks.tsp.base import Provisioned, TokenService
from tests.conftest import AMEX, DISCOVER, MASTERCARD, ROOT, VISA

# What production reads from its environment, besides the secrets (which the test run generated: reused here).
SERVERS = {
    "DJANGO_ALLOWED_HOSTS": "vault.example.com",
    "PUBLIC_BASE_URL": "https://vault.example.com",
    "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",  # nothing listens there: these processes never reach a broker
}
# Development and test switches the test run set, which an operator's environment would not have.
NOT_IN_PRODUCTION = (
    "DJANGO_SETTINGS_MODULE",
    "TSP_SIMULATOR",
    "TSP_LATENCY_MS",
    "WEBHOOK_ALLOW_LOOPBACK",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "ADMIN_PASSWORD",
    "DEMO_API_KEY",
)


def production_environment(tmp_path, **changes) -> dict:
    """A complete production environment (a SQLite file standing in for the database server); ``changes`` set or,
    given None, remove variables."""
    env = {name: value for name, value in os.environ.items() if name not in NOT_IN_PRODUCTION}
    env.update(SERVERS, DATABASE_URL=f"sqlite:///{tmp_path / 'production.sqlite3'}")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run(command: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


SHOW_SETTINGS = (
    "from django.conf import settings; print(settings.SETTINGS_MODULE, settings.DEBUG, settings.TSP_SIMULATOR)"
)


def test_manage_py_runs_production_settings_unless_told_otherwise(tmp_path):
    result = run(["manage.py", "shell", "--no-imports", "-c", SHOW_SETTINGS], production_environment(tmp_path))

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["config.settings.production", "False", "False"]


def test_the_celery_app_runs_production_settings_unless_told_otherwise(tmp_path):
    # What `celery -A config …` loads: the app module, then Django's settings through it.
    result = run(
        ["-c", f"import config.celery, django; django.setup(); {SHOW_SETTINGS}"], production_environment(tmp_path)
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["config.settings.production", "False", "False"]


@pytest.mark.parametrize(
    "command",
    [
        ["manage.py", "check"],
        ["-m", "celery", "-A", "config", "worker", "--pool=solo"],
    ],
    ids=["manage.py", "celery"],
)
def test_an_incomplete_production_environment_names_every_missing_variable_at_once(tmp_path, command):
    env = production_environment(tmp_path, DATABASE_URL=None, VAULT_KEK=None, PUBLIC_BASE_URL=None)

    result = run(command, env)

    assert result.returncode != 0
    assert "missing: DATABASE_URL, PUBLIC_BASE_URL, VAULT_KEK or VAULT_KEK_COMPONENTS" in result.stderr
    assert os.environ["DJANGO_SECRET_KEY"] not in result.stderr + result.stdout


def test_manage_py_says_what_is_missing_in_one_line_without_a_traceback(tmp_path):
    result = run(["manage.py", "migrate"], production_environment(tmp_path, DJANGO_SECRET_KEY=None))

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "manage.py: Production settings need 1 more environment variable(s), missing: DJANGO_SECRET_KEY (see the "
        "README's Configuration section)"
    ]


def test_production_refuses_loopback_webhooks(tmp_path):
    result = run(["manage.py", "check"], production_environment(tmp_path, WEBHOOK_ALLOW_LOOPBACK="true"))

    assert result.returncode == 1
    assert "WEBHOOK_ALLOW_LOOPBACK cannot be switched on under production settings" in result.stderr


def test_production_warns_at_start_that_no_token_service_is_configured(tmp_path):
    result = run(["manage.py", "check"], production_environment(tmp_path))

    assert result.returncode == 0, result.stderr
    assert "no token service is configured for VISA, MASTERCARD, AMEX" in result.stderr


# ------------------------------------------------------------------------------------------------------------
# Network tokens without the simulators: 503 networkNotConfigured, or the integration TSP_PROVIDERS names
# ------------------------------------------------------------------------------------------------------------
class RecordingVisa(TokenService):
    """A stand-in for a real Visa integration (outside the product): answers one fixed token."""

    network = "VISA"
    calls = 0

    def provision(self, request):
        RecordingVisa.calls += 1
        return Provisioned(
            token_id="DNITHE-REAL-1",
            token_number="4895370000000009",
            token_expiry_month=5,
            token_expiry_year=2030,
            status="ACTIVE",
            payment_account_reference="V001" + "R" * 25,
        )

    def cryptogram(self, *, token_id):
        return "real-cryptogram", "05"


def provision(api, number, path="/network-tokens"):
    card = {"cardNumber": number, "cardExpiryDate": {"month": 5, "year": 2035}}
    return api.post(
        path, {"card": card, "email": "holmes@example.com"}, format="json", HTTP_X_CORRELATION_ID="checkout-1"
    )


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/network-tokens", "/network-tokens/async"])
@pytest.mark.parametrize("number", [VISA, MASTERCARD, AMEX])
def test_without_the_simulator_a_network_token_call_answers_503_network_not_configured(api, settings, number, path):
    settings.TSP_SIMULATOR = False

    response = provision(api, number, path)

    assert response.status_code == 503
    assert response.json()["errorName"] == "networkNotConfigured"
    assert number not in response.content.decode()


@pytest.mark.django_db
def test_without_the_simulator_a_network_without_a_token_service_is_still_not_supported(api, settings):
    settings.TSP_SIMULATOR = False

    assert provision(api, DISCOVER).json()["errorName"] == "networkNotSupported"


@pytest.mark.django_db
def test_a_token_service_named_in_tsp_providers_serves_its_network(api, settings):
    settings.TSP_SIMULATOR = False
    settings.TSP_PROVIDERS = {"VISA": f"{__name__}.RecordingVisa"}
    RecordingVisa.calls = 0

    response = provision(api, VISA)

    assert response.status_code == 201, response.content
    assert response.json()["tokenId"] == "DNITHE-REAL-1" and RecordingVisa.calls == 1
    assert provision(api, MASTERCARD).json()["errorName"] == "networkNotConfigured"
    assert tsp.unconfigured_networks() == ["MASTERCARD", "AMEX"]
