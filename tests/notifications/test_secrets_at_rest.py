"""Webhook signing secrets at rest (issue 17, finding 13): encrypted like cards, under the vault's key ring, bound to
their endpoint, re-encrypted by ``rotate_keys``; shown once by the API, and still signing, during a secret's
rotation too.

alice (tests/conftest.py) creates her endpoint through the API; the database is read as a thief with a copy of it
would read it: every column of the endpoint's row, as bytes.
"""

import base64
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from standardwebhooks.webhooks import Webhook

from notifications import services
from notifications.models import WebhookEndpoint
from tests.receiver import Receiver
from vault.crypto import DecryptionFailed

pytestmark = pytest.mark.pci("3.6.1")


@pytest.fixture
def receiver():
    with Receiver() as server:
        yield server


def stored_row(endpoint_id: str) -> bytes:
    """Every column of the endpoint's row, as the database holds it."""
    table = connection.ops.quote_name(WebhookEndpoint._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE public_id = %s", [endpoint_id])
        row = cursor.fetchone()
    return b"|".join(bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode() for value in row)


def holds(row: bytes, secret: str) -> bool:
    """Whether ``row`` holds ``secret``, as text or as the key bytes it encodes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode() in row or secret.removeprefix("whsec_").encode() in row or key in row


def test_a_new_endpoints_secret_is_shown_once_and_is_not_in_the_database_in_clear(api):
    created = api.post("/webhook-endpoints", {"url": "http://127.0.0.1:9/hook"}, format="json").json()

    assert created["secret"].startswith("whsec_")
    assert not holds(stored_row(created["id"]), created["secret"])
    assert "secret" not in api.get(f"/webhook-endpoints/{created['id']}").json()


def test_during_a_rotation_both_secrets_sign_and_neither_is_in_the_database_in_clear(alice, receiver, api):
    created = api.post("/webhook-endpoints", {"url": receiver.url}, format="json").json()
    rotated = api.post(f"/webhook-endpoints/{created['id']}/rotate-secret").json()
    row = stored_row(created["id"])
    assert not holds(row, created["secret"]) and not holds(row, rotated["secret"])

    event = services.event_emit(merchant=alice, type="token.created", data={"tokenId": "T1"})
    services.events_fan_out()
    [delivery] = event.deliveries.all()
    assert services.delivery_attempt(delivery_id=delivery.pk).succeeded

    [request] = receiver.requests
    for secret in (created["secret"], rotated["secret"]):  # each verifies on its own
        assert Webhook(secret).verify(request.body, request.headers)["data"] == {"tokenId": "T1"}


def test_a_secret_copied_into_another_endpoints_row_does_not_decrypt(alice):
    theirs = services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/one")
    mine = services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/two")
    WebhookEndpoint.objects.filter(pk=mine.pk).update(
        secrets_ciphertext=theirs.secrets_ciphertext, key_version=theirs.key_version
    )

    with pytest.raises(DecryptionFailed):
        WebhookEndpoint.objects.get(pk=mine.pk).signing_secrets()
    assert WebhookEndpoint.objects.get(pk=theirs.pk).secret == theirs.secret


def test_rotate_keys_re_encrypts_the_secrets_under_the_new_key_version_and_they_still_sign(alice):
    endpoint = services.endpoint_create(merchant=alice, url="http://127.0.0.1:9/hook")
    secret = endpoint.secret
    assert endpoint.key_version == 1

    out = StringIO()
    call_command("rotate_keys", "--new-dek", stdout=out, stderr=StringIO())

    stored = WebhookEndpoint.objects.get(pk=endpoint.pk)
    assert stored.key_version == 2
    assert "Retired key version(s) 1" in out.getvalue()  # nothing is left under version 1, secrets included
    assert stored.signing_secrets() == [secret]
