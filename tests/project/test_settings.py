"""Production refuses to start without its secrets; the embedded run makes its own once and keeps them."""

import base64
import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import ROOT

SECRETS = ("DJANGO_SECRET_KEY", "VAULT_KEYS", "VAULT_FINGERPRINT_KEY", "NETWORK_TOKENS_JWE_KEY")
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DATABASE_URL": "postgres://vault@db.internal/vault",
    "CELERY_BROKER_URL": "redis://broker.internal:6379/0",
    "DJANGO_ALLOWED_HOSTS": "vault.example.com",
    "PUBLIC_BASE_URL": "https://vault.example.com",
}


# What the test settings put in this process's environment for the processes it starts: not an operator's.
TEST_RUN_DEFAULTS = ("ADMIN_PASSWORD", "DEMO_API_KEY", "WEBHOOK_ALLOW_LOOPBACK", "TSP_SIMULATOR", "TSP_LATENCY_MS")


def start_django(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *PRODUCTION, *TEST_RUN_DEFAULTS)}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
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


# ------------------------------------------------------------------------------------------------------------
# NETWORK_TOKENS_JWE_KEY: a key that cannot serve stops start-up with one line naming the variable
# ------------------------------------------------------------------------------------------------------------
def pem_base64(key, *, public: bool = False, password: bytes | None = None) -> str:
    if public:
        pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    return base64.b64encode(pem).decode()


def rsa_key(bits: int):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


# Made at run time, as the operator's mistakes would be: each with the one line start-up ends on.
BAD_JWE_KEYS = {
    "rsa-1024": (lambda: pem_base64(rsa_key(1024)), "is an RSA key of 1024 bits: at least 2048 are needed"),
    "rsa-2047": (lambda: pem_base64(rsa_key(2047)), "is an RSA key of 2047 bits: at least 2048 are needed"),
    "ec-p256": (
        lambda: pem_base64(ec.generate_private_key(ec.SECP256R1())),
        "is not an RSA key (RSA-OAEP-256 needs one)",
    ),
    "public-half": (lambda: pem_base64(rsa_key(2048), public=True), "is not base64 of a PEM private key"),
    "encrypted": (
        lambda: pem_base64(rsa_key(2048), password=b"passphrase"),
        "is an encrypted PEM key: give it unencrypted",
    ),
    "pem-not-base64": (lambda: "-----BEGIN PRIVATE KEY-----", "is not base64 (it holds base64 of a PEM RSA key)"),
    "base64-of-text": (lambda: base64.b64encode(b"a key").decode(), "is not base64 of a PEM private key"),
}


@pytest.mark.parametrize("kind", BAD_JWE_KEYS)
def test_a_jwe_key_that_cannot_serve_stops_start_up_with_one_line_naming_the_variable(kind):
    make, problem = BAD_JWE_KEYS[kind]

    result = start_django({"DJANGO_SETTINGS_MODULE": "config.settings.test", "NETWORK_TOKENS_JWE_KEY": make()})

    assert result.returncode != 0 and "started" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"django.core.exceptions.ImproperlyConfigured: NETWORK_TOKENS_JWE_KEY {problem}"
    )
    # Not a traceback from inside the key parsers (no chained exception), and no part of the key.
    assert "During handling of the above exception" not in result.stderr
    assert "site-packages/cryptography" not in result.stderr and "site-packages/joserfc" not in result.stderr


def test_an_rsa_key_of_2048_bits_starts():
    result = start_django(
        {"DJANGO_SETTINGS_MODULE": "config.settings.test", "NETWORK_TOKENS_JWE_KEY": pem_base64(rsa_key(2048))}
    )

    assert result.returncode == 0, result.stderr
