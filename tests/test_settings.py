"""Production refuses to start without its secrets; the embedded run makes its own once and keeps them."""

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SECRETS = ("DJANGO_SECRET_KEY", "VAULT_KEYS", "VAULT_FINGERPRINT_KEY", "NETWORK_TOKENS_JWE_KEY")
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DATABASE_URL": "postgres://vault@db.internal/vault",
    "CELERY_BROKER_URL": "redis://broker.internal:6379/0",
    "DJANGO_ALLOWED_HOSTS": "vault.example.com",
    "PUBLIC_BASE_URL": "https://vault.example.com",
}


def start_django(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *PRODUCTION, "ADMIN_PASSWORD", "DEMO_API_KEY")}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("missing", SECRETS + ("CELERY_BROKER_URL", "DATABASE_URL", "PUBLIC_BASE_URL"))
def test_production_refuses_to_start_without_each_secret_and_server(missing):
    env = {**PRODUCTION, **{name: os.environ[name] for name in SECRETS}}
    del env[missing]
    result = start_django(env)
    assert result.returncode != 0
    assert missing in result.stderr
    assert "started" not in result.stdout


def test_production_starts_with_every_secret_given():
    result = start_django({**PRODUCTION, **{name: os.environ[name] for name in SECRETS}})
    assert result.returncode == 0, result.stderr
    assert "started" in result.stdout


def test_the_embedded_run_generates_its_keys_once_and_reuses_them(tmp_path):
    from config.settings.secrets import load_or_create_env_file

    saved = {name: os.environ.pop(name, None) for name in (*SECRETS, "ADMIN_PASSWORD", "DEMO_API_KEY")}
    try:
        load_or_create_env_file(tmp_path / "local.env")
        first = os.environ["VAULT_KEYS"]
        for name in (*SECRETS, "ADMIN_PASSWORD", "DEMO_API_KEY"):
            os.environ.pop(name, None)
        load_or_create_env_file(tmp_path / "local.env")
        assert os.environ["VAULT_KEYS"] == first
        assert oct((tmp_path / "local.env").stat().st_mode & 0o777) == "0o600"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
