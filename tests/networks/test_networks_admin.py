"""The network-token back office: masked pages, lifecycle actions through services, audited, for operators only;
the issuer registry, the back office's.

olive is an operator (a staff user in the ``operators`` group, which migration networks 0003 gives the network
tokens); bea is back-office staff in the ``back-office`` group, which owns the issuer registry; clerk is staff who may
view the vault and nothing of the networks; wanda may view every network page and run nothing; admin_client is a
superuser ("admin"). alice is the merchant whose network tokens they look at. The broker is outside the product: what
is queued is only recorded (``broker``, tests/conftest.py); the TSP simulator is the product and runs for real (no
latency in tests).
"""

import re
from datetime import date

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.messages import ERROR, SUCCESS, WARNING
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.html import format_html

from core.models import AuditLog
from networks import services, tsp
from networks.api.representations import metadata
from networks.models import Batch, BatchItem, Issuer, LifecycleEvent, NetworkToken, ProvisioningRequest
from notifications.models import Event
from tests.cards import step_up_card
from tests.conftest import MASTERCARD, VISA, logged_in, staff_in
from vault import services as vault_services
from vault.keys import key_ring


# ------------------------------------------------------------------------------------------------------------
# Actors and fixtures
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def back_office(db, django_user_model) -> Client:
    """bea, back-office staff: the ``back-office`` group (vault 0002), which owns the issuer registry."""
    return staff_in(django_user_model, "bea", "back-office")


@pytest.fixture
def wanda(db, django_user_model) -> Client:
    """May view every network page and change nothing."""
    user = django_user_model.objects.create_user("wanda", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="networks", codename__startswith="view_")
    )
    return logged_in(user)


def provision(merchant, *, number: str = VISA, account_id: str = "acct", correlation_id: str = "c-1") -> NetworkToken:
    return services.network_token_provision(
        origin=services.Origin(merchant=merchant, correlation_id=correlation_id),
        card=tsp.CardData(number, 5, 2035),
        account_id=account_id,
    )


@pytest.fixture
def token(alice) -> NetworkToken:
    """alice's Visa network token for the Sherlock card, ACTIVE."""
    return provision(alice)


def token_number(token: NetworkToken) -> str:
    return key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())


def changelist(model: str) -> str:
    return reverse(f"admin:networks_{model}_changelist")


def change_page(model: str, pk) -> str:
    return reverse(f"admin:networks_{model}_change", args=[pk])


def available_actions(response) -> dict:
    form = response.context["action_form"]  # None when the user may run no action at all
    return {name: label for name, label in form.fields["action"].choices if name} if form else {}


def run_action(client, action: str, tokens, **extra):
    """``index`` in ``extra``: chosen from the list; ``post="yes"``: confirmed on the intermediate page."""
    data = {"action": action, "_selected_action": [str(t.pk) for t in tokens], **extra}
    return client.post(changelist("networktoken"), data, follow=bool(extra.get("post")))


def shown_messages(response, level=None) -> list[str]:
    return [str(m) for m in response.context["messages"] if level is None or m.level == level]


def listed(response) -> list:
    return list(response.context["cl"].result_list)


def updates_for(merchant) -> list[Event]:
    return list(Event.objects.filter(merchant=merchant, type="network_token.updated").order_by("pk"))


def refreshed(token: NetworkToken) -> NetworkToken:
    return NetworkToken.objects.get(pk=token.pk)


# ------------------------------------------------------------------------------------------------------------
# Who sees what
# ------------------------------------------------------------------------------------------------------------
def test_an_operator_can_list_and_open_network_tokens_and_see_their_lifecycle_history(operator, alice, token):
    services.lifecycle_apply(token=token, type=LifecycleEvent.SUSPENDED, source="tsp:visa")

    listing = operator.get(changelist("networktoken"))

    assert listing.status_code == 200
    body = listing.content.decode()
    assert token.token_id in body and "444433…1111" in body and "Baker Street Bank" in body
    assert set(available_actions(listing)) == {"suspend", "resume", "delete", "card_updated"}

    page = operator.get(change_page("networktoken", token.pk))

    assert page.status_code == 200
    body = page.content.decode()
    assert token.payment_account_reference in body
    assert token.token_last_digits in body and "05/2035" in body and "c-1" in body
    history = re.search(r'id="lifecycle_events-group".*?</table>', body, re.S).group()
    assert "tsp:visa" in history and "SUSPENDED" in history  # the event, and the status it moved the token along
    assert '<span class="status status-good">Active</span> → <span class="status status-warning">Suspended' in history


def test_opening_a_network_token_writes_an_audit_row_and_listing_does_not(operator, alice, token):
    operator.get(changelist("networktoken"))
    assert not AuditLog.objects.filter(action="admin.network_token.view").exists()

    operator.get(change_page("networktoken", token.pk), REMOTE_ADDR="10.1.2.3")

    row = AuditLog.objects.get(action="admin.network_token.view")
    assert (row.actor, row.object_type, row.object_id, row.result, row.origin) == (
        "admin:olive",
        "network_token",
        token.token_id,
        AuditLog.SUCCESS,
        "10.1.2.3",
    )
    assert row.detail == {"merchant": alice.public_id}


@pytest.mark.parametrize("model", ["networktoken", "issuer", "provisioningrequest", "batch", "batchitem"])
def test_a_staff_user_outside_the_operators_group_gets_403_on_the_network_pages(clerk, token, model):
    pk = {"networktoken": token.pk, "issuer": token.issuer_id}.get(model)

    assert clerk.get(changelist(model)).status_code == 403
    if pk is not None:
        assert clerk.get(change_page(model, pk)).status_code == 403


def test_a_staff_user_outside_the_operators_group_cannot_run_an_action(clerk, alice, token):
    response = run_action(clerk, "suspend", [token], post="yes")

    assert response.status_code == 403
    assert refreshed(token).status == NetworkToken.ACTIVE
    assert not LifecycleEvent.objects.exists()
    assert not AuditLog.objects.filter(action__startswith="admin.network_token.").exists()


def test_a_view_only_user_sees_the_tokens_and_can_run_no_action(wanda, alice, token):
    listing = wanda.get(changelist("networktoken"))
    assert listing.status_code == 200
    assert available_actions(listing) == {}
    assert wanda.get(change_page("networktoken", token.pk)).status_code == 200

    run_action(wanda, "suspend", [token], post="yes")
    run_action(wanda, "delete", [token], post="yes")

    assert refreshed(token).status == NetworkToken.ACTIVE
    assert not LifecycleEvent.objects.exists()
    assert updates_for(alice) == []


def test_network_token_pages_are_read_only_even_for_operators_and_superusers(operator, admin_client, token):
    for client in (operator, admin_client):
        page = client.get(change_page("networktoken", token.pk))
        assert page.status_code == 200
        assert 'name="_save"' not in page.content.decode()
        assert client.post(change_page("networktoken", token.pk), {"status": "DELETED"}).status_code == 403
        assert client.get(reverse("admin:networks_networktoken_add")).status_code == 403
        assert client.get(reverse("admin:networks_networktoken_delete", args=[token.pk])).status_code == 403
        assert "delete_selected" not in available_actions(client.get(changelist("networktoken")))
    assert refreshed(token).status == NetworkToken.ACTIVE


def test_the_vault_token_is_a_link_only_for_who_may_open_it(operator, admin_client, alice):
    card = vault_services.Card(number=VISA, holder_name="Sherlock Holmes", expiry_month=5, expiry_year=2035)
    vault_token = vault_services.card_tokenize(merchant=alice, card=card).token
    token = services.network_token_provision(
        origin=services.Origin(merchant=alice, correlation_id="c-2", vault_token=vault_token),
        card=services.card_from_vault(vault_token),
    )
    link = reverse("admin:vault_token_change", args=[vault_token.pk])

    as_admin = admin_client.get(change_page("networktoken", token.pk)).content.decode()
    as_operator = operator.get(change_page("networktoken", token.pk)).content.decode()

    assert f'<a href="{link}">{vault_token.token_id}</a>' in as_admin
    assert vault_token.token_id in as_operator and link not in as_operator  # operators cannot open the vault


# ------------------------------------------------------------------------------------------------------------
# Search and filters
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["token_id", "last_digits", "par"])
def test_a_network_token_is_found_by_token_id_last_digits_or_par_exactly(operator, alice, token, query):
    other = provision(alice, number=MASTERCARD)
    term = {"token_id": token.token_id, "last_digits": token.token_last_digits, "par": token.payment_account_reference}[
        query
    ]

    assert [t.pk for t in listed(operator.get(changelist("networktoken"), {"q": term}))] == [token.pk]
    assert listed(operator.get(changelist("networktoken"), {"q": term[:-1]})) == []
    assert other.token_id not in operator.get(changelist("networktoken"), {"q": term}).content.decode()


def test_a_search_that_looks_like_a_card_or_token_number_is_refused(operator, token):
    for number in (VISA, "4444 3333 2222 1111", token_number(token)):
        response = operator.get(changelist("networktoken"), {"q": number}, follow=True)

        assert response.redirect_chain == [(changelist("networktoken"), 302)]
        assert shown_messages(response, ERROR) == [
            "Full card or token numbers are not accepted here: search by last four digits or BIN."
        ]
        assert number not in response.content.decode()


def test_network_tokens_are_filtered_by_network_status_and_issuer(operator, alice, token):
    mastercard = provision(alice, number=MASTERCARD)
    services.lifecycle_apply(token=mastercard, type=LifecycleEvent.SUSPENDED, source="tsp:mastercard")

    def pks(**query):
        return {t.pk for t in listed(operator.get(changelist("networktoken"), query))}

    assert pks(network__exact="MASTERCARD") == {mastercard.pk}
    assert pks(status__exact="ACTIVE") == {token.pk}
    assert pks(issuer__id__exact=str(token.issuer_id)) == {token.pk}
    assert pks() == {token.pk, mastercard.pk}


# ------------------------------------------------------------------------------------------------------------
# Lifecycle actions
# ------------------------------------------------------------------------------------------------------------
def test_suspend_resume_and_delete_go_through_confirmation_pages_change_the_status_and_are_audited_and_sent(
    operator, alice, token
):
    for action, before, after, event_type in [
        ("suspend", "ACTIVE", "SUSPENDED", LifecycleEvent.SUSPENDED),
        ("resume", "SUSPENDED", "ACTIVE", LifecycleEvent.RESUMED),
        ("delete", "ACTIVE", "DELETED", LifecycleEvent.DELETED),
    ]:
        confirmation = run_action(operator, action, [token], index="0")

        assert confirmation.status_code == 200
        assert "admin/networks/action_confirmation.html" in [t.name for t in confirmation.templates]
        assert token.token_id in confirmation.content.decode()
        assert refreshed(token).status == before  # nothing happens before the confirmation

        done = run_action(operator, action, [token], post="yes")

        assert done.status_code == 200
        assert refreshed(token).status == after
        assert len(shown_messages(done, SUCCESS)) == 1
        event = LifecycleEvent.objects.filter(network_token=token).first()
        assert (event.type, event.old_status, event.new_status, event.source) == (
            event_type,
            before,
            after,
            "admin:olive",
        )
        row = AuditLog.objects.get(action=f"admin.network_token.{action}")
        assert (row.actor, row.object_type, row.object_id, row.result, row.origin) == (
            "admin:olive",
            "network_token",
            token.token_id,
            AuditLog.SUCCESS,
            "127.0.0.1",
        )
        assert row.detail == {"merchant": alice.public_id, "status_before": before, "status_after": after}

    assert LifecycleEvent.objects.filter(network_token=token).count() == 3
    sent = updates_for(alice)
    assert [(e.data["event"], e.data["status"], e.data["tokenId"]) for e in sent] == [
        ("SUSPENDED", "SUSPENDED", token.token_id),
        ("ACTIVE", "ACTIVE", token.token_id),
        ("DELETED", "DELETED", token.token_id),
    ]
    deleted = refreshed(token)
    assert (deleted.dpan_ciphertext, deleted.key_version) == (None, None)


def test_the_card_updated_form_records_the_new_expiry_and_last_digits(operator, alice, token):
    form_page = run_action(operator, "card_updated", [token], index="0")
    body = form_page.content.decode()
    assert 'name="expiry_month"' in body and 'name="expiry_year"' in body and 'name="card_last_digits"' in body

    run_action(
        operator, "card_updated", [token], post="yes", expiry_month="8", expiry_year="2031", card_last_digits="4242"
    )

    updated = refreshed(token)
    assert (updated.card_expiry_month, updated.card_expiry_year, updated.card_last_digits) == (8, 2031, "4242")
    assert updated.status == NetworkToken.ACTIVE
    event = LifecycleEvent.objects.get(network_token=token)
    assert event.type == LifecycleEvent.CARD_UPDATED
    assert event.detail == {"cardExpiryDate": {"month": 8, "year": 2031}, "cardLastDigits": "4242"}
    [sent] = updates_for(alice)
    assert sent.data["event"] == "CARD_UPDATED"
    assert sent.data["cardExpiryDate"] == {"month": 8, "year": 2031}
    row = AuditLog.objects.get(action="admin.network_token.card_updated")
    assert row.detail["changed"] == ["cardExpiryDate", "cardLastDigits"]
    page = operator.get(change_page("networktoken", token.pk)).content.decode()
    assert "08/2031" in page and "card expiry 08/2031, card last digits 4242" in page


def test_the_card_updated_form_may_record_only_a_new_expiry(operator, token):
    run_action(operator, "card_updated", [token], post="yes", expiry_month="1", expiry_year=str(date.today().year + 3))

    updated = refreshed(token)
    assert (updated.card_expiry_month, updated.card_expiry_year) == (1, date.today().year + 3)
    assert updated.card_last_digits == "1111"


@pytest.mark.parametrize(
    "data, error",
    [
        ({}, "Give the new expiry, the new last four digits, or both."),
        ({"expiry_month": "8"}, "Give both the month and the year of the new expiry, or neither."),
        ({"expiry_month": "1", "expiry_year": "2001"}, "The new expiry is in the past."),
        ({"card_last_digits": "42"}, "Four digits, the last four of the reissued card."),
    ],
)
def test_the_card_updated_form_refuses_what_is_not_a_new_expiry_or_last_four(operator, token, data, error):
    response = run_action(operator, "card_updated", [token], post="yes", **data)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not LifecycleEvent.objects.exists()
    assert not AuditLog.objects.filter(action="admin.network_token.card_updated").exists()


def test_tokens_in_the_wrong_state_are_skipped_with_a_warning(operator, alice, token):
    suspended = provision(alice, account_id="other")
    services.lifecycle_apply(token=suspended, type=LifecycleEvent.SUSPENDED, source="tsp:visa")
    updates_before = len(updates_for(alice))

    confirmation = run_action(operator, "suspend", [token, suspended], index="0")
    assert "1 of these tokens is not ACTIVE and will be left alone." in confirmation.content.decode()

    done = run_action(operator, "suspend", [token, suspended], post="yes")

    assert shown_messages(done, SUCCESS) == ["Suspended 1 network token."]
    assert shown_messages(done, WARNING) == [
        "1 network token left alone: A SUSPENDED network token cannot become SUSPENDED."
    ]
    assert refreshed(token).status == refreshed(suspended).status == NetworkToken.SUSPENDED
    assert LifecycleEvent.objects.filter(network_token=suspended).count() == 1  # only the TSP's
    assert [r.object_id for r in AuditLog.objects.filter(action="admin.network_token.suspend")] == [token.token_id]
    assert len(updates_for(alice)) == updates_before + 1

    done = run_action(operator, "resume", [token], post="yes")
    done = run_action(operator, "resume", [token], post="yes")

    assert shown_messages(done, WARNING) == ["1 network token left alone: A ACTIVE network token cannot become ACTIVE."]
    assert refreshed(token).status == NetworkToken.ACTIVE


def test_resume_activates_a_token_waiting_for_its_step_up_and_its_request_is_announced(operator, alice, token):
    # The service's rule (networks.services.LIFECYCLE_FROM): an INACTIVE token becomes ACTIVE once its issuer's
    # step-up is done, and the request waiting for it then succeeds.
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="c-step-up", card=tsp.CardData(step_up_card(), 5, 2035)
    )
    services.provisioning_request_run(request_id=request.pk)
    request.refresh_from_db()
    inactive = request.network_token
    assert (request.status, inactive.status) == (ProvisioningRequest.PENDING_ACTIVATION, NetworkToken.INACTIVE)

    confirmation = run_action(operator, "resume", [inactive, token], index="0").content.decode()
    assert "1 of these tokens is not SUSPENDED or INACTIVE and will be left alone." in confirmation

    done = run_action(operator, "resume", [inactive], post="yes")

    assert shown_messages(done, SUCCESS) == ["Resumed 1 network token."]
    assert refreshed(inactive).status == NetworkToken.ACTIVE
    assert ProvisioningRequest.objects.get(pk=request.pk).status == ProvisioningRequest.SUCCEEDED
    [created] = Event.objects.filter(merchant=alice, type="network_token.created", data__tokenId=inactive.token_id)
    assert (created.data["correlationId"], created.data["requestId"]) == ("c-step-up", request.public_id)
    row = AuditLog.objects.get(action="admin.network_token.resume")
    assert (row.object_id, row.detail["status_before"], row.detail["status_after"]) == (
        inactive.token_id,
        "INACTIVE",
        "ACTIVE",
    )


def test_a_deleted_token_takes_no_further_lifecycle_action(operator, alice, token):
    run_action(operator, "delete", [token], post="yes")

    for action, extra in [("resume", {}), ("delete", {}), ("card_updated", {"card_last_digits": "4242"})]:
        done = run_action(operator, action, [token], post="yes", **extra)
        assert len(shown_messages(done, WARNING)) == 1

    assert refreshed(token).card_last_digits == "1111"
    assert LifecycleEvent.objects.filter(network_token=token).count() == 1
    assert len(updates_for(alice)) == 1


# ------------------------------------------------------------------------------------------------------------
# The token's own page: its actions as buttons, its status as a label, its dates with their relative time
# ------------------------------------------------------------------------------------------------------------
def buttons_on(client, model: str, pk) -> dict[str, str]:
    """The object's action buttons on its page: name -> classes."""
    body = client.get(change_page(model, pk)).content.decode()
    return dict(re.findall(r'id="object-action-(\w+)" class="([^"]*)"', body))


def test_a_token_page_offers_the_lifecycle_buttons_its_status_allows(operator, alice, token):
    assert set(buttons_on(operator, "networktoken", token.pk)) == {"suspend", "card_updated", "delete"}
    assert "irreversible" in buttons_on(operator, "networktoken", token.pk)["delete"]
    assert "irreversible" not in buttons_on(operator, "networktoken", token.pk)["suspend"]

    services.lifecycle_apply(token=token, type=LifecycleEvent.SUSPENDED, source="tsp:visa")
    assert set(buttons_on(operator, "networktoken", token.pk)) == {"resume", "card_updated", "delete"}

    services.lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source="tsp:visa")
    assert buttons_on(operator, "networktoken", token.pk) == {}


def test_who_may_not_run_the_lifecycle_sees_no_button(wanda, admin_client, token):
    assert buttons_on(wanda, "networktoken", token.pk) == {}
    assert set(buttons_on(admin_client, "networktoken", token.pk)) == {"suspend", "card_updated", "delete"}


def test_the_suspend_button_leads_to_the_confirmation_then_back_to_the_token(operator, alice, token):
    url = reverse("admin:networks_networktoken_object_action", args=[token.pk, "suspend"])

    confirmation = operator.get(url)

    assert "admin/networks/action_confirmation.html" in [t.name for t in confirmation.templates]
    assert token.token_id in confirmation.content.decode()
    assert refreshed(token).status == NetworkToken.ACTIVE

    done = operator.post(url, {"action": "suspend", "_selected_action": [token.pk], "post": "yes"}, follow=True)

    assert done.redirect_chain == [(change_page("networktoken", token.pk), 302)]
    assert shown_messages(done, SUCCESS) == ["Suspended 1 network token."]
    assert refreshed(token).status == NetworkToken.SUSPENDED
    assert AuditLog.objects.get(action="admin.network_token.suspend").actor == "admin:olive"


def test_a_button_for_an_action_the_status_refuses_changes_nothing(operator, alice, token):
    url = reverse("admin:networks_networktoken_object_action", args=[token.pk, "resume"])

    done = operator.post(url, {"action": "resume", "_selected_action": [token.pk], "post": "yes"}, follow=True)

    assert shown_messages(done, WARNING) == ["1 network token left alone: A ACTIVE network token cannot become ACTIVE."]
    assert refreshed(token).status == NetworkToken.ACTIVE


def test_statuses_show_as_labels_and_dates_with_their_relative_time(operator, alice, token):
    services.lifecycle_apply(token=token, type=LifecycleEvent.SUSPENDED, source="tsp:visa")

    listing = operator.get(changelist("networktoken")).content.decode()
    page = operator.get(change_page("networktoken", token.pk)).content.decode()

    assert '<span class="status status-warning">Suspended</span>' in listing
    assert re.search(
        r'<time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time> <span class="relative">'
        r"\(just now\)</span>",
        listing,
    )
    # The merchant's short name, its whole name and id on hover.
    merchant = format_html('<span class="merchant" title="{} ({})">{}</span>', alice.name, alice.public_id, alice.name)
    assert merchant in listing
    assert '<span class="status status-warning">Suspended</span>' in page
    assert "(just now)" in page


def test_a_network_token_is_found_by_its_vault_tokenid(operator, alice, token):
    card = vault_services.Card(number=MASTERCARD, holder_name="Irene Adler", expiry_month=5, expiry_year=2035)
    vault_token = vault_services.card_tokenize(merchant=alice, card=card).token
    from_vault = services.network_token_provision(
        origin=services.Origin(merchant=alice, correlation_id="c-vault", vault_token=vault_token),
        card=services.card_from_vault(vault_token),
    )

    request = services.provisioning_request_create(
        merchant=alice, correlation_id="c-vault-async", vault_token=vault_token
    )

    for model, row in (("networktoken", from_vault), ("provisioningrequest", request)):
        for term in (vault_token.token_id, vault_token.token_id.lower()):
            with CaptureQueriesContext(connection) as queries:
                found = listed(operator.get(changelist(model), {"q": term}))

            assert [r.pk for r in found] == [row.pk]
            # An equality the tokenId's unique index answers, not UPPER() (or LIKE) of every joined vault token's.
            searches = [q["sql"] for q in queries if '"vault_token"."token_id"' in q["sql"]]
            assert searches and all(re.search(r'[^(]"vault_token"\."token_id" = ', sql) for sql in searches)


def test_a_pending_request_offers_retry_now_on_its_page_and_an_ended_one_does_not(operator, alice):
    pending = services.provisioning_request_create(
        merchant=alice, correlation_id="c-pending", card=tsp.CardData(VISA, 5, 2035)
    )
    declined = services.provisioning_request_create(
        merchant=alice, correlation_id="c-declined", card=tsp.CardData("4000000000000002", 5, 2035)
    )
    services.provisioning_request_run(request_id=declined.pk)

    assert buttons_on(operator, "provisioningrequest", pending.pk) == {"retry_now": "object-action"}
    assert buttons_on(operator, "provisioningrequest", declined.pk) == {}

    url = reverse("admin:networks_provisioningrequest_object_action", args=[pending.pk, "retry_now"])
    done = operator.post(url, {"action": "retry_now", "_selected_action": [pending.pk], "post": "yes"}, follow=True)

    assert shown_messages(done, SUCCESS) == ["1 request will be attempted now."]
    assert AuditLog.objects.get(action="admin.network_token_request.retry_now").object_id == pending.public_id


# ------------------------------------------------------------------------------------------------------------
# No token number, no card number, no ciphertext anywhere
# ------------------------------------------------------------------------------------------------------------
def test_no_admin_page_contains_the_full_token_number_nor_the_card_number(operator, admin_client, alice, token):
    dpan = token_number(token)
    card = vault_services.Card(number=MASTERCARD, holder_name="Irene Adler", expiry_month=5, expiry_year=2035)
    vault_token = vault_services.card_tokenize(merchant=alice, card=card).token
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="c-async", card=tsp.CardData(VISA, 5, 2035), account_id="async"
    )
    batch = services.batch_create(
        merchant=alice,
        entries=[
            services.BatchEntry(token_reference=vault_token.token_id, vault_token=vault_token),
            # A merchant who sent a card number where a token reference belongs: refused, and never shown whole.
            services.BatchEntry(token_reference=VISA, vault_token=None),
        ],
    )
    item = BatchItem.objects.get(batch=batch, index=1)
    assert item.status == BatchItem.FAILED

    pages = [
        changelist("networktoken"),
        change_page("networktoken", token.pk),
        changelist("issuer"),
        change_page("issuer", token.issuer_id),
        changelist("provisioningrequest"),
        change_page("provisioningrequest", request.pk),
        changelist("batch"),
        change_page("batch", batch.pk),
        changelist("batchitem"),
        change_page("batchitem", item.pk),
    ]
    for client in (operator, admin_client):
        responses = [client.get(url) for url in pages]
        responses += [
            run_action(client, action, [token], index="0") for action in ("suspend", "resume", "delete", "card_updated")
        ]
        for response in responses:
            assert response.status_code == 200
            body = response.content.decode()
            assert dpan not in body
            assert VISA not in body and MASTERCARD not in body
            assert "ciphertext" not in body.lower()
    # A card number pasted as a batch reference was never stored in clear in the first place.
    assert "[REDACTED]" in admin_client.get(change_page("batch", batch.pk)).content.decode()

    run_action(operator, "delete", [token], post="yes")
    for url in (changelist("networktoken"), change_page("networktoken", token.pk)):
        assert dpan not in operator.get(url).content.decode()
    assert dpan not in str([e.data for e in Event.objects.all()])


# ------------------------------------------------------------------------------------------------------------
# Issuers
# ------------------------------------------------------------------------------------------------------------
def issuer_form(issuer: Issuer, **changes) -> dict:
    data = {
        "name": issuer.name,
        "network": issuer.network,
        "bin_low": issuer.bin_low,
        "bin_high": issuer.bin_high,
        "card_art_ids": ", ".join(issuer.card_art_ids),
        "rate_limit_per_second": issuer.rate_limit_per_second,
    }
    return {**data, **changes}


def confirmed(form: dict) -> dict:
    """The form as the confirmation page posts it again."""
    return {**form, "_confirmed": "yes"}


def test_back_office_staff_change_an_issuers_rate_limit_only_once_they_confirm_old_and_new(back_office, token):
    issuer = token.issuer
    Issuer.objects.filter(pk=issuer.pk).update(next_call_at=None)
    form = issuer_form(issuer, rate_limit_per_second="5")

    confirmation = back_office.post(change_page("issuer", issuer.pk), form)

    assert confirmation.status_code == 200
    assert "admin/change_confirmation.html" in [t.name for t in confirmation.templates]
    body = confirmation.content.decode()
    table = re.search(r'<table id="change-confirmation">.*?</table>', body, re.S).group()
    assert re.search(r"Rate limit per second</th><td[^>]*>50</td><td[^>]*>5</td>", table)
    assert "Name" not in table  # only what changes
    assert 'name="_confirmed" value="yes"' in body and 'name="rate_limit_per_second" value="5"' in body
    issuer.refresh_from_db()
    assert issuer.rate_limit_per_second == 50  # nothing before the confirmation
    assert not AuditLog.objects.filter(action="admin.issuer.change").exists()

    response = back_office.post(change_page("issuer", issuer.pk), confirmed(form))

    assert response.status_code == 302
    issuer.refresh_from_db()
    assert issuer.rate_limit_per_second == 5
    assert issuer.card_art_ids == ["art-bsb-classic", "art-bsb-gold"]
    row = AuditLog.objects.get(action="admin.issuer.change")
    assert (row.actor, row.object_type, row.object_id, row.detail) == (
        "admin:bea",
        "issuer",
        str(issuer.pk),
        {"rate_limit_per_second": 5},
    )


def test_a_new_bin_range_is_confirmed_with_the_old_range_beside_it(back_office, token):
    issuer = token.issuer
    form = issuer_form(issuer, bin_low="444400", bin_high="444499")

    body = back_office.post(change_page("issuer", issuer.pk), form).content.decode()

    table = re.search(r'<table id="change-confirmation">.*?</table>', body, re.S).group()
    assert re.search(rf"<td[^>]*>{issuer.bin_low}</td><td[^>]*>444400</td>", table)
    assert re.search(rf"<td[^>]*>{issuer.bin_high}</td><td[^>]*>444499</td>", table)
    assert (Issuer.objects.get(pk=issuer.pk).bin_low, Issuer.objects.get(pk=issuer.pk).bin_high) == (
        issuer.bin_low,
        issuer.bin_high,
    )

    back_office.post(change_page("issuer", issuer.pk), confirmed(form))

    issuer.refresh_from_db()
    assert (issuer.bin_low, issuer.bin_high) == ("444400", "444499")


def test_a_wrong_rate_shows_the_form_errors_not_a_confirmation(back_office, token):
    response = back_office.post(change_page("issuer", token.issuer_id), issuer_form(token.issuer, bin_low="4444"))

    assert "admin/change_confirmation.html" not in [t.name for t in response.templates]
    assert "A BIN is six digits." in response.content.decode()


def test_the_back_office_owns_issuers_and_operators_only_look(db):
    def held(group: str) -> set[str]:
        return set(
            Group.objects.get(name=group)
            .permissions.filter(content_type__app_label="networks", content_type__model="issuer")
            .values_list("codename", flat=True)
        )

    assert held("back-office") == {"view_issuer", "change_issuer"}
    assert held("operators") == {"view_issuer"}


def test_the_issuer_form_takes_card_art_ids_as_one_comma_separated_line(admin_client, token):
    issuer = token.issuer
    page = admin_client.get(change_page("issuer", issuer.pk)).content.decode()
    assert 'value="art-bsb-classic, art-bsb-gold"' in page

    admin_client.post(
        change_page("issuer", issuer.pk), issuer_form(issuer, card_art_ids=" art-new ,art-bsb-gold,, art-new")
    )

    issuer.refresh_from_db()
    assert issuer.card_art_ids == ["art-new", "art-bsb-gold"]
    assert metadata(refreshed(token))["cardArt"] == ["art-new", "art-bsb-gold"]


@pytest.mark.parametrize(
    "changes, error",
    [
        ({"bin_low": "444434", "bin_high": "444433"}, "The range ends before it starts"),
        ({"bin_low": "4444"}, "A BIN is six digits."),
        ({"rate_limit_per_second": "0"}, "greater than or equal to 1"),
        ({"card_art_ids": "art one"}, "Card art ids are letters"),
    ],
)
def test_the_issuer_form_refuses_a_wrong_range_rate_or_card_art(admin_client, token, changes, error):
    issuer = token.issuer

    response = admin_client.post(change_page("issuer", issuer.pk), issuer_form(issuer, **changes))

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not AuditLog.objects.filter(action="admin.issuer.change").exists()


def test_a_new_issuer_is_added_only_once_staff_confirm_its_range_and_rate_limit(admin_client, alice):
    form = {
        "name": "Reissue Bank",
        "network": "MASTERCARD",
        "bin_low": "555550",
        "bin_high": "555559",
        "card_art_ids": "art-rb",
        "rate_limit_per_second": "7",
    }

    confirmation = admin_client.post(reverse("admin:networks_issuer_add"), form)

    assert confirmation.status_code == 200
    assert "admin/change_confirmation.html" in [t.name for t in confirmation.templates]
    body = confirmation.content.decode()
    assert "Add this issuer?" in body
    table = re.search(r'<table id="change-confirmation">.*?</table>', body, re.S).group()
    shown = dict(re.findall(r'<th scope="row">([^<]+)</th><td class="new-value">([^<]*)</td>', table))
    assert shown == {
        "Name": "Reissue Bank",
        "Network": "MASTERCARD",
        "Bin low": "555550",
        "Bin high": "555559",
        "Card art ids": "art-rb",
        "Rate limit per second": "7",
    }
    assert 'class="old-value"' not in table  # nothing to compare with
    assert not Issuer.objects.filter(name="Reissue Bank").exists()  # nothing before the confirmation

    response = admin_client.post(reverse("admin:networks_issuer_add"), confirmed(form))

    assert response.status_code == 302
    issuer = Issuer.objects.get(name="Reissue Bank")
    assert (issuer.bin_low, issuer.bin_high, issuer.rate_limit_per_second) == ("555550", "555559", 7)
    assert AuditLog.objects.get(action="admin.issuer.create").object_id == str(issuer.pk)


def test_a_new_issuer_with_a_wrong_range_shows_the_form_errors_not_a_confirmation(admin_client, db):
    form = {"name": "Backwards Bank", "network": "VISA", "bin_low": "444499", "bin_high": "444400"}

    response = admin_client.post(reverse("admin:networks_issuer_add"), {**form, "rate_limit_per_second": "7"})

    assert "admin/change_confirmation.html" not in [t.name for t in response.templates]
    assert "The range ends before it starts" in response.content.decode()
    assert not Issuer.objects.filter(name="Backwards Bank").exists()


def test_issuers_are_listed_with_their_token_counts_and_found_by_name_or_bin(operator, alice, token):
    provision(alice, account_id="second")

    rows = {i.name: i for i in listed(operator.get(changelist("issuer")))}

    assert rows["Baker Street Bank"].token_count == 2 and rows["Maple Mutual"].token_count == 0
    # Every range that holds the BIN: Baker Street's own, and the wide one it was carved out of.
    assert {i.name for i in listed(operator.get(changelist("issuer"), {"q": "444433"}))} == {
        "Baker Street Bank",
        "Northern Lights Credit Union",
    }
    assert [i.name for i in listed(operator.get(changelist("issuer"), {"q": "222300"}))] == ["Two Series Trust"]
    assert [i.name for i in listed(operator.get(changelist("issuer"), {"q": "maple"}))] == ["Maple Mutual"]


def test_an_operator_sees_issuers_but_cannot_edit_them(operator, token):
    issuer = token.issuer

    page = operator.get(change_page("issuer", issuer.pk))

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert (
        operator.post(change_page("issuer", issuer.pk), issuer_form(issuer, rate_limit_per_second="1")).status_code
        == 403
    )
    issuer.refresh_from_db()
    assert issuer.rate_limit_per_second == 50


# ------------------------------------------------------------------------------------------------------------
# Requests and batches
# ------------------------------------------------------------------------------------------------------------
def test_a_provisioning_request_is_listed_with_its_outcome(operator, alice):
    declined = services.provisioning_request_create(
        merchant=alice, correlation_id="c-declined", card=tsp.CardData("4000000000000002", 5, 2035)
    )
    services.provisioning_request_run(request_id=declined.pk)

    listing = operator.get(changelist("provisioningrequest"))

    assert listing.status_code == 200
    body = listing.content.decode()
    assert declined.public_id in body and "c-declined" in body and "tokenizationDeclined" in body
    assert [r.pk for r in listed(operator.get(changelist("provisioningrequest"), {"q": "c-declined"}))] == [declined.pk]
    page = operator.get(change_page("provisioningrequest", declined.pk)).content.decode()
    assert "destroyed when the request ended" in page
    assert ProvisioningRequest.objects.get(pk=declined.pk).status == ProvisioningRequest.FAILED


def test_a_batch_shows_its_counts_by_state_and_its_failed_items(operator, alice):
    card = vault_services.Card(number=MASTERCARD, holder_name="Irene Adler", expiry_month=5, expiry_year=2035)
    vault_token = vault_services.card_tokenize(merchant=alice, card=card).token
    batch = services.batch_create(
        merchant=alice,
        entries=[
            services.BatchEntry(token_reference=vault_token.token_id, vault_token=vault_token),
            services.BatchEntry(token_reference="tok_missing", vault_token=None),
        ],
    )

    [row] = listed(operator.get(changelist("batch")))

    assert (row.total, row.pending_count, row.failed_count, row.succeeded_count) == (2, 1, 1, 0)
    page = operator.get(change_page("batch", batch.pk)).content.decode()
    assert "tok_missing" in page and "resourceNotFound" in page and "The vault token does not exist" in page
    failed_link = f"{changelist('batchitem')}?batch={batch.public_id}&amp;status__exact=FAILED"
    assert failed_link in page

    items = operator.get(changelist("batchitem"), {"batch": batch.public_id, "status__exact": "FAILED"})
    assert [i.token_reference for i in listed(items)] == ["tok_missing"]
    assert listed(operator.get(changelist("batchitem"), {"batch": "bat_other"})) == []
    by_issuer = operator.get(
        changelist("batchitem"), {"issuer__id__exact": str(Issuer.objects.get(name="Maple Mutual").pk)}
    )
    assert [i.token_reference for i in listed(by_issuer)] == [vault_token.token_id]


# ------------------------------------------------------------------------------------------------------------
# Queries and the group
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["networktoken", "issuer", "provisioningrequest", "batch", "batchitem"])
def test_the_lists_take_as_many_queries_for_many_rows_as_for_one(operator, alice, bob, model):
    card = vault_services.Card(number=MASTERCARD, holder_name="Irene Adler", expiry_month=5, expiry_year=2035)
    vault_token = vault_services.card_tokenize(merchant=alice, card=card).token

    def add_rows(merchant, number: int) -> None:
        token = provision(merchant, account_id=f"acct-{number}")
        services.lifecycle_apply(token=token, type=LifecycleEvent.SUSPENDED, source="tsp:visa")
        provision(merchant, number=MASTERCARD)
        services.provisioning_request_create(
            merchant=merchant, correlation_id=f"c-{number}", card=tsp.CardData(VISA, 5, 2035)
        )
        services.batch_create(
            merchant=merchant,
            entries=[
                services.BatchEntry(token_reference=vault_token.token_id, vault_token=vault_token),
                services.BatchEntry(token_reference=f"tok_missing_{number}", vault_token=None),
            ],
        )

    def queries_for_the_list() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(changelist(model)).status_code == 200
        return len(queries)

    add_rows(alice, 0)
    queries_for_the_list()  # warm caches (content types, sessions) out of the count
    one = queries_for_the_list()
    for number in range(1, 6):
        add_rows(alice if number % 2 else bob, number)

    assert queries_for_the_list() == one
    assert NetworkToken.objects.count() == 12 and Batch.objects.count() == 6


def test_the_operators_group_holds_the_network_token_permissions_after_migrate(db):
    group = Group.objects.get(name="operators")

    held = {p.codename for p in group.permissions.filter(content_type__app_label="networks")}

    assert held == {
        "view_networktoken",
        "change_networktoken",
        "view_lifecycleevent",
        "view_issuer",
        "view_provisioningrequest",
        "change_provisioningrequest",
        "view_batch",
        "view_batchitem",
    }  # change_provisioningrequest: retrying a stuck request
    assert group.permissions.filter(content_type__app_label="notifications", codename="change_delivery").exists()
    assert not group.permissions.filter(content_type__app_label="vault").exists()
