"""Forward destinations (``/forward-destinations``): where alice's forwards may go, and the credentials they fill in.

Actors (tests/conftest.py): alice is a merchant with the default scopes (forwarding included); bob is another
merchant, who must see none of alice's destinations; a key of alice's without ``forwarding`` is refused. DNS is
outside the product: ``dns`` answers ``pay.example.com`` with a public address (no connection is made when a
destination is saved). The test settings allow loopback (``WEBHOOK_ALLOW_LOOPBACK``), as a developer's machine does;
tests of production behaviour turn it off.
"""

import socket
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from core.models import AuditLog
from merchants import services as merchant_services
from tests.conftest import client_for
from vault import forwarding
from vault.crypto import DecryptionFailed
from vault.models import ForwardDestination

PUBLIC = "93.184.216.34"
PROVIDER = "https://pay.example.com/v1"
SECRET = "sk_live_51Hq8ZmKx0Vt7yYh"  # what alice's provider gave her: never in an answer


@pytest.fixture
def dns(monkeypatch):
    """``*.example.com`` names resolve to a public address; anything else goes to the real resolver (IP literals
    do not touch the network)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):
        if host.endswith(".example.com"):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC, int(port or 0)))]
        return real(host, port, family, type, proto, flags)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def create(client, **fields):
    body = {"name": "Acme Payments", "url": PROVIDER, "credentials": {"apiKey": SECRET}, **fields}
    return client.post("/forward-destinations", body, format="json")


def url_error(response) -> dict:
    assert response.status_code == 400, response.content
    [item] = response.json()["validationErrors"]
    assert item["jsonPath"] == "$.url"
    return item


def test_alice_registers_a_destination_and_sees_her_credentials_by_name_only(api, dns):
    response = create(api, description="card payments", credentials={"apiKey": SECRET, "account": "acct_1"})

    assert response.status_code == 201
    body = response.json()
    assert body["id"].startswith("fwd_")
    assert body["name"] == "Acme Payments"
    assert body["url"] == PROVIDER
    assert body["description"] == "card payments"
    assert body["credentials"] == ["account", "apiKey"]
    assert body["enabled"] is True and body["disabledReason"] is None
    assert SECRET not in response.content.decode()


def test_alice_reads_lists_changes_and_deletes_her_destination(api, dns):
    first = create(api, name="first").json()
    second = create(api, name="second").json()

    assert api.get(f"/forward-destinations/{first['id']}").json() == first
    listed = api.get("/forward-destinations", {"pageSize": 1}).json()
    assert [d["id"] for d in listed["_embedded"]["forwardDestinations"]] == [second["id"]]
    assert listed["page"] == {"number": 1, "size": 1, "totalElements": 2, "totalPages": 2}

    changed = api.patch(
        f"/forward-destinations/{first['id']}",
        {"name": "renamed", "url": "https://pay.example.com/v2", "credentials": {"token": "tok_2"}},
        format="json",
    )
    assert changed.status_code == 200
    assert changed.json()["name"] == "renamed"
    assert changed.json()["url"] == "https://pay.example.com/v2"
    assert changed.json()["credentials"] == ["token"]  # replaced, not merged
    assert forwarding.destination_credentials(ForwardDestination.objects.get(public_id=first["id"])) == {
        "token": "tok_2"
    }

    assert api.delete(f"/forward-destinations/{first['id']}").status_code == 204
    assert api.get(f"/forward-destinations/{first['id']}").status_code == 404
    assert [d["id"] for d in api.get("/forward-destinations").json()["_embedded"]["forwardDestinations"]] == [
        second["id"]
    ]


def test_each_change_is_audited_with_alice_as_the_actor_and_no_secret(api, alice, dns):
    destination = create(api).json()
    api.patch(f"/forward-destinations/{destination['id']}", {"credentials": {"apiKey": "sk_2"}}, format="json")
    api.delete(f"/forward-destinations/{destination['id']}")

    rows = AuditLog.objects.filter(object_type="forward_destination", object_id=destination["id"]).order_by("pk")
    assert [row.action for row in rows] == [
        "forward_destination.create",
        "forward_destination.update",
        "forward_destination.delete",
    ]
    assert all(row.merchant == alice for row in rows)
    assert SECRET not in str([row.detail for row in rows]) and "sk_2" not in str([row.detail for row in rows])


def test_a_key_without_the_forwarding_scope_is_refused(alice, dns):
    _, raw = merchant_services.api_key_create(merchant=alice, scopes=["tokens", "webhooks"], name="no-forwarding")
    client = client_for(raw)

    assert create(client).status_code == 403
    assert client.get("/forward-destinations").status_code == 403
    assert not ForwardDestination.objects.exists()


def test_new_keys_get_the_forwarding_scope(alice):
    assert alice.api_keys.get().has_scope("forwarding")


def test_bob_cannot_see_change_or_delete_alices_destination(api, bob_api, dns):
    destination = create(api).json()
    path = f"/forward-destinations/{destination['id']}"

    assert bob_api.get(path).status_code == 404
    assert bob_api.patch(path, {"name": "mine now"}, format="json").status_code == 404
    assert bob_api.delete(path).status_code == 404
    assert bob_api.get("/forward-destinations").json()["_embedded"]["forwardDestinations"] == []
    assert api.get(path).json()["name"] == "Acme Payments"


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/pay",
        "https://192.168.1.1/pay",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fd00::1]/pay",
        "https://127.0.0.1:8443/pay",
        "http://127.0.0.1:8443/pay",
    ],
)
def test_private_and_loopback_urls_are_refused_in_production(api, settings, url):
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    assert "internal address" in url_error(create(api, url=url))["message"]
    assert not ForwardDestination.objects.exists()


def test_a_url_changed_to_a_private_address_is_refused_and_the_old_one_kept(api, settings, dns):
    destination = create(api).json()
    settings.WEBHOOK_ALLOW_LOOPBACK = False

    response = api.patch(f"/forward-destinations/{destination['id']}", {"url": "https://10.0.0.1/"}, format="json")

    url_error(response)
    assert ForwardDestination.objects.get(public_id=destination["id"]).url == PROVIDER


def test_plain_http_is_refused_for_a_public_host(api, dns):
    assert url_error(create(api, url="http://pay.example.com/v1"))["message"] == "The URL must be https://"


def test_plain_http_to_loopback_is_let_through_where_loopback_is_allowed(api):
    # The test settings, like a developer's machine: a provider simulator on loopback.
    assert create(api, url="http://127.0.0.1:8089/pay").status_code == 201


@pytest.mark.parametrize(
    "url", ["https://pay.example.com/v1?key=1", "https://pay.example.com/v1#top", "https://pay.example.com/a/../b"]
)
def test_a_url_is_an_origin_with_a_path_prefix_only(api, dns, url):
    url_error(create(api, url=url))


def test_credentials_are_never_in_any_answer(api, dns):
    created = create(api)
    path = f"/forward-destinations/{created.json()['id']}"
    answers = [
        created,
        api.get(path),
        api.get("/forward-destinations"),
        api.patch(path, {"description": "changed"}, format="json"),
    ]

    for answer in answers:
        assert answer.status_code in (200, 201)
        assert SECRET not in answer.content.decode()


def test_credentials_are_stored_encrypted_and_bound_to_their_destination(api, alice, dns):
    destination = ForwardDestination.objects.get(public_id=create(api).json()["id"])

    raw = bytes(destination.credentials_ciphertext)
    assert SECRET.encode() not in raw and b"apiKey" not in raw
    assert forwarding.destination_credentials(destination) == {"apiKey": SECRET}

    # The ciphertext copied into another destination does not decrypt there.
    other = ForwardDestination.objects.get(public_id=create(api, name="other", credentials={}).json()["id"])
    other.credentials_ciphertext, other.key_version = raw, destination.key_version
    with pytest.raises(DecryptionFailed):
        forwarding.destination_credentials(other)


def test_rotate_keys_re_encrypts_the_credentials_under_the_new_key_version(api, dns):
    destination = ForwardDestination.objects.get(public_id=create(api).json()["id"])
    assert destination.key_version == 1

    out = StringIO()
    call_command("rotate_keys", "--new-dek", stdout=out, stderr=StringIO())

    assert "Retired key version(s) 1" in out.getvalue()  # nothing is left under version 1, credentials included
    stored = ForwardDestination.objects.get(pk=destination.pk)
    assert stored.key_version == 2
    assert forwarding.destination_credentials(stored) == {"apiKey": SECRET}


def test_a_credential_name_holding_a_card_number_is_refused(api, dns):
    response = create(api, credentials={"4444333322221111": SECRET})

    assert response.status_code == 400
    assert response.json()["validationErrors"][0]["errorName"] == "fieldContainsCardNumber"
    assert "4444333322221111" not in response.content.decode()


def test_more_than_twenty_credentials_are_refused(api, dns):
    response = create(api, credentials={f"key{n}": "x" for n in range(21)})

    assert response.status_code == 400
    assert response.json()["validationErrors"][0]["jsonPath"] == "$.credentials"


# ------------------------------------------------------------------------------------------------------------
# The admin: staff disable a destination (forwards to it are then refused) and enable it again.
# ------------------------------------------------------------------------------------------------------------
def test_staff_disable_a_destination_with_confirmation_and_it_is_audited(api, admin_client, dns):
    public_id = create(api).json()["id"]
    destination = ForwardDestination.objects.get(public_id=public_id)
    changelist = reverse("admin:vault_forwarddestination_changelist")

    page = admin_client.get(changelist).content.decode()
    assert "Acme Payments" in page and SECRET not in page
    change = admin_client.get(reverse("admin:vault_forwarddestination_change", args=[destination.pk]))
    assert "apiKey" in change.content.decode() and SECRET not in change.content.decode()

    action = {"action": "disable", "_selected_action": [destination.pk]}
    confirm = admin_client.post(changelist, action)
    assert confirm.status_code == 200 and "Acme Payments" in confirm.content.decode()
    destination.refresh_from_db()
    assert destination.is_enabled  # asked, not done yet

    done = admin_client.post(changelist, {**action, "post": "yes", "reason": "provider reported abuse"})
    assert done.status_code == 302
    destination.refresh_from_db()
    assert not destination.is_enabled and destination.disabled_reason
    assert api.get(f"/forward-destinations/{public_id}").json()["enabled"] is False
    row = AuditLog.objects.get(action="forward_destination.disable")
    assert (
        row.object_id == public_id
        and row.actor == "admin:admin"
        and row.detail == {"reason": "provider reported abuse"}
    )

    admin_client.post(changelist, {"action": "enable", "_selected_action": [destination.pk], "post": "yes"})
    destination.refresh_from_db()
    assert destination.is_enabled
    assert AuditLog.objects.filter(action="forward_destination.enable", object_id=public_id).exists()


def test_the_back_office_group_may_view_and_change_destinations_and_view_forwards(db):
    from django.contrib.auth.models import Group

    codenames = set(Group.objects.get(name="back-office").permissions.values_list("codename", flat=True))
    assert {"view_forwarddestination", "change_forwarddestination", "view_forward"} <= codenames
    assert "delete_forwarddestination" not in codenames and "change_forward" not in codenames


def test_staff_read_the_log_of_forwards_masked_and_cannot_change_it(api, alice, tokenize, admin_client, dns):
    from vault.models import Forward, Token

    destination = ForwardDestination.objects.get(public_id=create(api).json()["id"])
    token = Token.objects.get(token_id=tokenize().json()["tokenId"])
    forward = Forward.objects.create(
        merchant=alice,
        destination=destination,
        token=token,
        method="POST",
        path="/charges?card={{ card.number }}",
        status_code=201,
        duration_ms=1234,
    )

    page = admin_client.get(reverse("admin:vault_forward_changelist")).content.decode()
    assert token.token_id in page and "Acme Payments" in page and "1,234 ms" in page
    assert "{{ card.number }}" in page and "4444333322221111" not in page
    detail = admin_client.get(reverse("admin:vault_forward_change", args=[forward.pk]))
    assert detail.status_code == 200 and 'name="_save"' not in detail.content.decode()
    assert admin_client.get(reverse("admin:vault_forward_add")).status_code == 403
