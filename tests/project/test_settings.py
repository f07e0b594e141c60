"""Production refuses to start without its secrets; the embedded run makes its own once and keeps them."""

import base64
import os
import secrets
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from config.settings.secrets import new_key
from tests.conftest import ROOT

SECRETS = ("DJANGO_SECRET_KEY", "VAULT_KEK", "NETWORK_TOKENS_JWE_KEY")
# Key settings an operator's environment may hold, which a test's environment takes only from the test itself.
KEY_SETTINGS = (
    "VAULT_KEK_COMPONENTS",
    "VAULT_KEK_PREVIOUS",
    "VAULT_KEYS",
    "VAULT_FINGERPRINT_KEY",
    "VAULT_KEK_PROVIDER",
)
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DATABASE_URL": "postgres://vault@db.internal/vault",
    "CELERY_BROKER_URL": "redis://broker.internal:6379/0",
    "DJANGO_ALLOWED_HOSTS": "vault.example.com",
    "PUBLIC_BASE_URL": "https://vault.example.com",
    "METRICS_ALLOWED_ADDRESSES": "10.0.0.0/8",  # the monitoring network's scrapers
}


# What the test settings put in this process's environment for the processes it starts: not an operator's.
TEST_RUN_DEFAULTS = ("ADMIN_PASSWORD", "DEMO_API_KEY", "WEBHOOK_ALLOW_LOOPBACK", "TSP_SIMULATOR", "TSP_LATENCY_MS")


def start_django(env: dict) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *KEY_SETTINGS, *PRODUCTION, *TEST_RUN_DEFAULTS)}
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


# ------------------------------------------------------------------------------------------------------------
# A weak configuration stops start-up, naming the variable and never its value
# ------------------------------------------------------------------------------------------------------------
def production_with(**changes) -> dict:
    """Production's environment with the run's secrets, ``changes`` set or, given None, removed."""
    env = {**PRODUCTION, **{name: os.environ[name] for name in SECRETS}, **changes}
    return {name: value for name, value in env.items() if value is not None}


WEAK = {
    "one-character-secret-key": ("DJANGO_SECRET_KEY", "x"),
    "short-secret-key": ("DJANGO_SECRET_KEY", "tooShortASecret"),
    "secret-key-of-four-characters": ("DJANGO_SECRET_KEY", "abcd" * 20),
    "django-insecure-secret-key": ("DJANGO_SECRET_KEY", f"django-insecure-{secrets.token_urlsafe(50)}"),
    "any-host": ("DJANGO_ALLOWED_HOSTS", "*"),
    "any-host-among-others": ("DJANGO_ALLOWED_HOSTS", "vault.example.com,*"),
}


@pytest.mark.pci("6.2.4")
@pytest.mark.parametrize("kind", WEAK)
def test_production_refuses_a_weak_setting_naming_the_variable_and_not_its_value(kind):
    name, value = WEAK[kind]

    result = start_django(production_with(**{name: value}))

    assert result.returncode != 0 and "started" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: Production refuses a weak configuration: ")
    assert name in last
    assert len(value) == 1 or value not in result.stderr


@pytest.mark.pci("3.6.1")
def test_production_refuses_a_fingerprint_key_that_is_also_an_encryption_key():
    shared = new_key()

    result = start_django(production_with(VAULT_KEYS=f"2:{new_key()},1:{shared}", VAULT_FINGERPRINT_KEY=shared))

    assert result.returncode != 0 and "started" not in result.stdout
    assert "VAULT_FINGERPRINT_KEY must differ from every key of VAULT_KEYS" in result.stderr
    assert shared not in result.stderr


# ------------------------------------------------------------------------------------------------------------
# The key encryption key: a source production cannot start without, split knowledge, a key of its own
# ------------------------------------------------------------------------------------------------------------
def test_production_starts_on_a_kek_of_components_and_keeps_vault_keys_only_while_they_are_moved():
    components = ",".join(new_key() for _ in range(3))
    legacy = {"VAULT_KEYS": f"1:{new_key()}", "VAULT_FINGERPRINT_KEY": new_key()}

    for env in (
        production_with(VAULT_KEK=None, VAULT_KEK_COMPONENTS=components),
        production_with(**legacy),  # an installation from before key custody, until migrate_keys_to_kek
    ):
        result = start_django(env)
        assert result.returncode == 0, result.stderr


def test_production_names_every_setting_the_pkcs11_provider_misses_with_the_others():
    env = production_with(VAULT_KEK=None, VAULT_KEK_PROVIDER="pkcs11", PKCS11_MODULE="/usr/lib/softhsm/x.so")
    del env["DATABASE_URL"]

    result = start_django(env)

    assert result.returncode != 0
    assert "missing: DATABASE_URL, PKCS11_TOKEN_LABEL, PKCS11_PIN, PKCS11_KEY_LABEL" in result.stderr


# Made at run time: each a KEK setting production refuses, with the words it refuses it with.
WEAK_KEKS = {
    "one-component": (lambda shared: {"VAULT_KEK": None, "VAULT_KEK_COMPONENTS": shared}, "at least 2 components"),
    "kek-and-components": (
        lambda shared: {"VAULT_KEK_COMPONENTS": f"{new_key()},{shared}"},
        "Set VAULT_KEK or VAULT_KEK_COMPONENTS, not both",
    ),
    "kek-is-a-vault-key": (
        lambda shared: {"VAULT_KEK": shared, "VAULT_KEYS": f"1:{shared}", "VAULT_FINGERPRINT_KEY": new_key()},
        "VAULT_KEK must differ from every key of VAULT_KEYS and from VAULT_FINGERPRINT_KEY",
    ),
    "kek-is-the-fingerprint-key": (
        lambda shared: {"VAULT_KEK": shared, "VAULT_KEYS": f"1:{new_key()}", "VAULT_FINGERPRINT_KEY": shared},
        "VAULT_KEK must differ from every key of VAULT_KEYS and from VAULT_FINGERPRINT_KEY",
    ),
    "short-kek": (lambda shared: {"VAULT_KEK": shared[:24]}, "VAULT_KEK must be 32 bytes"),
}


@pytest.mark.pci("3.6.1")
@pytest.mark.parametrize("kind", WEAK_KEKS)
def test_production_refuses_a_kek_that_is_no_split_knowledge_or_no_key_of_its_own(kind):
    make, complaint = WEAK_KEKS[kind]
    shared = new_key()

    result = start_django(production_with(**make(shared)))

    assert result.returncode != 0 and "started" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: Production refuses a weak configuration: ")
    assert complaint in last and shared not in result.stderr and shared[:24] not in result.stderr


def test_a_kek_that_cannot_serve_stops_each_entry_point_at_start_up_with_one_line_naming_its_setting(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "VAULT_KEK": base64.b64encode(secrets.token_bytes(16)).decode(),
    }
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *KEY_SETTINGS)}
    complaint = "VAULT_KEK must be 32 bytes (AES-256), got 16"

    def run(*command):
        return subprocess.run(command, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60)

    checked = run(sys.executable, "manage.py", "check")  # as runserver and every command with checks
    served = run(sys.executable, "-c", "import config.wsgi")  # as gunicorn's workers
    worker = run(sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=solo", "--without-mingle")

    assert checked.returncode != 0 and f"(vault.E002) {complaint}" in checked.stderr
    assert served.returncode != 0
    assert served.stderr.strip().splitlines()[-1] == f"django.core.exceptions.ImproperlyConfigured: {complaint}"
    assert worker.returncode != 0 and worker.stderr.strip().splitlines()[-1] == f"celery worker: {complaint}"
    for result in (checked, served, worker):
        assert env["VAULT_KEK"] not in result.stdout + result.stderr


def test_production_names_every_weak_setting_at_once():
    result = start_django(production_with(DJANGO_SECRET_KEY="x", DJANGO_ALLOWED_HOSTS="*"))

    last = result.stderr.strip().splitlines()[-1]
    assert "DJANGO_SECRET_KEY" in last and "DJANGO_ALLOWED_HOSTS" in last


@pytest.mark.pci("4.2.1")
def test_the_deployment_checklist_finds_nothing_under_production_settings():
    clean = {k: v for k, v in os.environ.items() if k not in (*SECRETS, *PRODUCTION, *TEST_RUN_DEFAULTS)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, **production_with()},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_embedded_run_generates_its_keys_once_and_reuses_them(tmp_path):
    from config.settings.secrets import load_or_create_env_file

    saved = {name: os.environ.pop(name, None) for name in (*SECRETS, *KEY_SETTINGS, "ADMIN_PASSWORD", "DEMO_API_KEY")}
    try:
        load_or_create_env_file(tmp_path / "local.env")
        first = os.environ["VAULT_KEK"]
        assert "VAULT_KEYS" not in os.environ and "VAULT_FINGERPRINT_KEY" not in os.environ  # made in the database
        for name in (*SECRETS, "ADMIN_PASSWORD", "DEMO_API_KEY"):
            os.environ.pop(name, None)
        load_or_create_env_file(tmp_path / "local.env")
        assert os.environ["VAULT_KEK"] == first
        assert oct((tmp_path / "local.env").stat().st_mode & 0o777) == "0o600"
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_an_embedded_install_from_before_key_custody_keeps_its_keys_and_gains_a_kek(tmp_path):
    from config.settings.secrets import load_or_create_env_file

    names = (*SECRETS, *KEY_SETTINGS, "ADMIN_PASSWORD", "DEMO_API_KEY")
    saved = {name: os.environ.pop(name, None) for name in names}
    old_keys = {"VAULT_KEYS": f"1:{new_key()}", "VAULT_FINGERPRINT_KEY": new_key()}
    (tmp_path / "local.env").write_text("".join(f"{name}={value}\n" for name, value in old_keys.items()))
    try:
        load_or_create_env_file(tmp_path / "local.env")

        # `make run` then wraps them under the new KEK (migrate_keys_to_kek: tests/vault/test_kek_migration.py).
        assert {name: os.environ[name] for name in old_keys} == old_keys and os.environ["VAULT_KEK"]
        assert "VAULT_KEK=" in (tmp_path / "local.env").read_text()
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
