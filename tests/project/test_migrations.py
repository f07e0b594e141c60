"""An installation migrated before the apps were restructured moves on without losing a row or a permission.

Merchants and API keys moved from the vault to ``merchants``, the audit log to ``core`` (their tables stay); the
vault's tokens learned their newest network token (filled in for the tokens there are); events learned whether they
were fanned out (those there are already have their deliveries). The database is taken back to the migrations
before the move, filled through the historical models as the old code wrote it, and migrated forward. The audit
log's request-id index comes after its column, built on PostgreSQL without locking the table.
"""

import base64
import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from config.settings.secrets import new_key
from vault.crypto import check_value

BEFORE = [
    ("vault", "0005_keycheck"),
    ("networks", "0008_requests_live_in_the_database"),
    ("notifications", "0006_heartbeat"),
    ("core", None),
    ("merchants", None),
]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def latest_migrations(transactional_db):
    # A transactional test with serialized_rollback before this one leaves the content-type and permission tables
    # empty (its flush skips post_migrate): a migrate fills them, as on an installation, before the test goes back.
    call_command("migrate", verbosity=0)
    yield
    # A test that failed half-way must not leave its old schema to the tests after it.
    call_command("migrate", verbosity=0)


def migrate(targets) -> object:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state([(app, name) for app, name in targets if name]).apps


def test_rows_permissions_and_links_survive_the_move_to_the_new_apps(settings):
    # The installation's keys, from before key custody: VAULT_KEYS and their check values, as its first card recorded
    # them (the webhook secrets are encrypted under them on the way).
    settings.VAULT_KEYS, settings.VAULT_FINGERPRINT_KEY = f"1:{new_key()}", new_key()
    old = migrate(BEFORE)
    KeyCheck = old.get_model("vault", "KeyCheck")
    for purpose, version, key in (
        ("encryption", 1, settings.VAULT_KEYS[2:]),
        ("fingerprint", None, settings.VAULT_FINGERPRINT_KEY),
    ):
        KeyCheck.objects.create(purpose=purpose, version=version, check_value=check_value(base64.b64decode(key)))
    Merchant, ApiKey, AuditLog = (old.get_model("vault", name) for name in ("Merchant", "ApiKey", "AuditLog"))
    Token, NetworkToken, Issuer = (
        old.get_model("vault", "Token"),
        old.get_model("networks", "NetworkToken"),
        old.get_model("networks", "Issuer"),
    )
    Event, Endpoint = old.get_model("notifications", "Event"), old.get_model("notifications", "WebhookEndpoint")
    Group, Permission = old.get_model("auth", "Group"), old.get_model("auth", "Permission")

    merchant = Merchant.objects.create(name="Alice's Shop", public_id="mer_0123456789abcdef")
    ApiKey.objects.create(merchant=merchant, prefix="sk_abcdefgh", key_hash="0" * 64, scopes=["tokens"])
    AuditLog.objects.create(actor="api-key:sk_abcdefgh", merchant=merchant, action="token.detokenize", result="success")
    now = timezone.now()
    token = Token.objects.create(
        merchant=merchant,
        description="d",
        bin="444433",
        last_four="1111",
        pan_length=16,
        brand="VISA",
        expires_at=now + timedelta(days=7),
        fingerprint="f" * 64,
        pan_ciphertext=b"not a real ciphertext",
        key_version=1,
    )
    issuer = Issuer.objects.create(name="Test bank", network="VISA", bin_low="444433", bin_high="444433")
    common = dict(
        merchant=merchant,
        vault_token=token,
        network="VISA",
        issuer=issuer,
        token_last_digits="4242",
        token_expiry_month=12,
        token_expiry_year=2030,
        card_bin="444433",
        card_last_digits="1111",
        card_expiry_month=5,
        card_expiry_year=2035,
        payment_account_reference="V0010013018999999999999999",
        correlation_id="c",
    )
    NetworkToken.objects.create(token_id="older", status="ACTIVE", created_at=now - timedelta(hours=2), **common)
    NetworkToken.objects.create(token_id="newer", status="ACTIVE", created_at=now - timedelta(hours=1), **common)
    NetworkToken.objects.create(token_id="deleted", status="DELETED", created_at=now, **common)
    Endpoint.objects.create(merchant=merchant, url="https://example.com/hooks", secret="whsec_x")
    event = Event.objects.create(merchant=merchant, type="token.created", data={"tokenId": "x"})
    view_merchant = Permission.objects.get(content_type__app_label="vault", codename="view_merchant")
    view_auditlog = Permission.objects.get(content_type__app_label="vault", codename="view_auditlog")
    Group.objects.create(name="clerks").permissions.add(view_merchant, view_auditlog)

    call_command("migrate", verbosity=0)

    from core.models import AuditLog as NewAuditLog
    from merchants.models import ApiKey as NewApiKey
    from merchants.models import Merchant as NewMerchant
    from notifications.models import Event as NewEvent
    from vault.models import Token as NewToken

    moved = NewMerchant.objects.get(pk=merchant.pk)
    assert moved.public_id == "mer_0123456789abcdef"
    assert NewApiKey.objects.get().merchant == moved
    assert NewAuditLog.objects.get().merchant == moved
    # The permission rows are the same ones, now of the new apps: the groups holding them keep them.
    assert Permission.objects.get(pk=view_merchant.pk).content_type.app_label == "merchants"
    from django.contrib.auth.models import Group as NewGroup

    clerks = NewGroup.objects.get(name="clerks").permissions
    assert clerks.filter(content_type__app_label="merchants", codename="view_merchant").exists()
    assert clerks.filter(content_type__app_label="core", codename="view_auditlog").exists()
    # The newest network token that is not deleted.
    assert NewToken.objects.get(pk=token.pk).network_token_id == "newer"
    # An event written before the change had its deliveries made then: the dispatcher must not make them again.
    assert NewEvent.objects.get(pk=event.pk).fanned_out is True


def request_id_indexes() -> dict[str, dict]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "vault_auditlog")
    return {name: c for name, c in constraints.items() if c["columns"] == ["request_id"] and c["index"]}


def test_the_audit_logs_request_id_index_is_built_after_its_column_and_only_once():
    # An installation with the column (core 0003) and rows in it, before the index.
    old = migrate([("core", "0003_auditlog_request_id")])
    assert request_id_indexes() == {}
    old.get_model("core", "AuditLog").objects.create(
        actor="api-key:sk_abcdefgh", action="token.detokenize", result="success", request_id="r" * 32
    )

    call_command("migrate", verbosity=0)

    # One index, the plain one the admin's exact search uses: no second one for LIKE on PostgreSQL.
    assert list(request_id_indexes()) == ["auditlog_request_id"]
    from core.models import AuditLog

    assert AuditLog.objects.filter(request_id="r" * 32).count() == 1


@pytest.mark.postgres
def test_on_postgresql_the_request_id_index_is_built_without_locking_the_audit_log():
    # What an operator reads before running it on a large vault.
    sql = io.StringIO()
    call_command("sqlmigrate", "core", "0004", stdout=sql)
    assert "CREATE INDEX CONCURRENTLY" in sql.getvalue()
    assert "BEGIN" not in sql.getvalue()  # not in a transaction, which PostgreSQL would refuse

    migrate([("core", "0003_auditlog_request_id")])
    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'auditlog_request_id'::regclass")
        assert cursor.fetchone() == (True,)
