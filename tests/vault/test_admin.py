"""The back office: masked card data only, deletes as tombstones, conflicts resolved through services, audited.

admin_client is a superuser ("admin"); clerk is a staff user who may only look at the vault, its merchants and API
keys, and the audit log; alice's Sherlock card is the token they look at.
"""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.messages import SUCCESS, WARNING
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from core.models import AuditLog
from merchants import services as merchant_services
from tests.conftest import MASTERCARD, SHERLOCK, VISA, client_for
from vault import services
from vault.models import ExpiryExtension, Token, TokenConflict

MASKED = "4444********1111"
ADDRESS = SHERLOCK["paymentInstrument"]["billingAddress"]


def sherlock_card(number: str = VISA, **changes) -> services.Card:
    fields = {
        "number": number,
        "holder_name": "Sherlock Holmes",
        "expiry_month": 5,
        "expiry_year": 2035,
        "billing_address": ADDRESS,
        **changes,
    }
    return services.Card(**fields)


@pytest.fixture
def token(alice) -> Token:
    return services.card_tokenize(merchant=alice, card=sherlock_card(), namespace="baker-street").token


APPS = {"merchant": "merchants", "apikey": "merchants", "auditlog": "core"}  # the rest are the vault's


def changelist(model: str) -> str:
    return reverse(f"admin:{APPS.get(model, 'vault')}_{model}_changelist")


def change_page(model: str, pk) -> str:
    return reverse(f"admin:{APPS.get(model, 'vault')}_{model}_change", args=[pk])


def listed_token_ids(response) -> set[str]:
    return {token.token_id for token in response.context["cl"].result_list}


def available_actions(response) -> dict:
    form = response.context["action_form"]  # None when the user may run no action at all
    return dict(form.fields["action"].choices) if form else {}


def run_action(client, model: str, action: str, pks, **extra):
    data = {"action": action, "_selected_action": [str(pk) for pk in pks], **extra}
    return client.post(changelist(model), data)


def messages_shown_next(client) -> list[tuple[int, str]]:
    """The messages an action left for the page it redirected to, as (level, text)."""
    return [(m.level, str(m)) for m in client.get(changelist("token")).context["messages"]]


# ------------------------------------------------------------------------------------------------------------
# Tokens: masked only
# ------------------------------------------------------------------------------------------------------------
def test_the_token_list_shows_the_masked_number_and_never_the_full_one(admin_client, token):
    response = admin_client.get(changelist("token"))

    assert response.status_code == 200
    body = response.content.decode()
    assert MASKED in body
    assert token.token_id in body
    assert VISA not in body


def test_the_token_page_shows_the_masked_card_and_its_details_but_no_secret(admin_client, token):
    response = admin_client.get(change_page("token", token.pk))

    assert response.status_code == 200
    body = response.content.decode()
    assert MASKED in body
    assert VISA not in body
    assert "Sherlock Holmes" in body
    assert "05/2035" in body
    assert "221B Baker Street<br>Marylebone<br>Westminster<br>NW1 6XE London<br>Greater London<br>GB" in body
    assert "baker-street" in body
    for secret in ("pan_ciphertext", "fingerprint", token.fingerprint, token.reference):
        assert secret not in body
    # Read-only: no form to save.
    assert 'name="_save"' not in body


def extended_by_a_use(token: Token, settings) -> ExpiryExtension:
    """A use of ``token`` in live with a day left of its four years: the use extends it (in try none does)."""
    settings.TOKENS_ENVIRONMENT = "live"
    now = timezone.now()
    Token.objects.filter(pk=token.pk).update(
        created_at=now - timedelta(days=4 * 365), expires_at=now + timedelta(days=1)
    )
    extension = services.token_use(token=token, reason="detokenize")
    assert extension is not None
    return extension


def test_the_token_page_lists_the_expiry_extensions(admin_client, token, settings):
    extended_by_a_use(token, settings)

    response = admin_client.get(change_page("token", token.pk))

    assert "detokenize" in response.content.decode()


@pytest.mark.pci("10.2.1.2")
def test_opening_a_token_page_writes_an_audit_row(admin_client, token):
    admin_client.get(change_page("token", token.pk), REMOTE_ADDR="10.1.2.3")

    row = AuditLog.objects.get(action="admin.token.view")
    assert (row.actor, row.object_type, row.object_id, row.result, row.origin) == (
        "admin:admin",
        "token",
        token.token_id,
        AuditLog.SUCCESS,
        "10.1.2.3",
    )


def test_a_view_only_clerk_opening_a_token_is_audited_too(clerk, token):
    assert clerk.get(change_page("token", token.pk)).status_code == 200

    assert AuditLog.objects.filter(action="admin.token.view", actor="admin:clerk", object_id=token.token_id).exists()


def test_the_token_list_is_not_audited_as_a_token_view(admin_client, token):
    admin_client.get(changelist("token"))

    assert not AuditLog.objects.filter(action="admin.token.view").exists()


# ------------------------------------------------------------------------------------------------------------
# Tokens: search and filters
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("query", ["1111", "444433", "token_id"])
def test_it_finds_a_token_by_last_four_bin_or_token_id(admin_client, alice, token, query):
    other = services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD)).token
    query = token.token_id if query == "token_id" else query

    response = admin_client.get(changelist("token"), {"q": query})

    assert listed_token_ids(response) == {token.token_id}
    assert other.token_id not in response.content.decode()


def test_a_token_id_typed_in_lower_case_still_finds_the_token(admin_client, alice, token):
    other = services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD)).token

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(changelist("token"), {"q": token.token_id.lower()})

    assert listed_token_ids(response) == {token.token_id}
    assert other.token_id not in response.content.decode()
    # Found by an equality on the term in capitals, which the tokenId's unique index answers, not by iexact's
    # UPPER(token_id) = UPPER(term), which no index answers.
    searches = [q["sql"] for q in queries.captured_queries if token.token_id in q["sql"]]
    assert searches and all(f'"vault_token"."token_id" = \'{token.token_id}\'' in sql for sql in searches)
    assert not any("UPPER(" in sql or " LIKE " in sql for sql in searches)


def test_search_matches_exactly_not_on_parts_of_the_number(admin_client, token):
    response = admin_client.get(changelist("token"), {"q": "3322"})

    assert listed_token_ids(response) == set()


def test_it_refuses_a_full_card_number_as_a_search_and_does_not_echo_it(admin_client, token):
    response = admin_client.get(changelist("token"), {"q": "4444 3333 2222 1111"}, follow=True)

    assert response.redirect_chain[-1][0] == changelist("token")
    body = response.content.decode()
    assert "4444 3333 2222 1111" not in body and VISA not in body
    assert "Full card or token numbers are not accepted" in body


def test_the_expired_filter_separates_expired_tokens_from_live_ones(admin_client, alice, token):
    expired = services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD)).token
    Token.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert listed_token_ids(admin_client.get(changelist("token"), {"expired": "yes"})) == {expired.token_id}
    assert listed_token_ids(admin_client.get(changelist("token"), {"expired": "no"})) == {token.token_id}
    assert listed_token_ids(admin_client.get(changelist("token"))) == {token.token_id, expired.token_id}


def test_the_brand_merchant_and_namespace_filters_work(admin_client, alice, bob, token):
    bobs = services.card_tokenize(merchant=bob, card=sherlock_card(MASTERCARD)).token

    assert listed_token_ids(admin_client.get(changelist("token"), {"brand": "MASTERCARD"})) == {bobs.token_id}
    assert listed_token_ids(admin_client.get(changelist("token"), {"merchant__id__exact": alice.pk})) == {
        token.token_id
    }
    assert listed_token_ids(admin_client.get(changelist("token"), {"namespace": "baker-street"})) == {token.token_id}
    assert listed_token_ids(admin_client.get(changelist("token"), {"namespace": "baker"})) == set()


# ------------------------------------------------------------------------------------------------------------
# Tokens: no add, no edit, delete only as a tombstone
# ------------------------------------------------------------------------------------------------------------
def test_tokens_cannot_be_added_edited_or_deleted_as_rows(admin_client, token):
    assert admin_client.get(reverse("admin:vault_token_add")).status_code == 403
    assert admin_client.post(change_page("token", token.pk), {"description": "x"}).status_code == 403
    assert admin_client.get(reverse("admin:vault_token_delete", args=[token.pk])).status_code == 403
    assert admin_client.post(reverse("admin:vault_token_delete", args=[token.pk]), {"post": "yes"}).status_code == 403
    actions = available_actions(admin_client.get(changelist("token")))
    assert "delete_selected" not in actions
    assert actions["tombstone_selected"] == "Delete selected tokens"


def test_deleting_tokens_asks_for_confirmation_then_leaves_a_tombstone(admin_client, token):
    confirmation = run_action(admin_client, "token", "tombstone_selected", [token.pk], index="0")

    assert confirmation.status_code == 200
    assert "admin/vault/token/delete_selected_confirmation.html" in [t.name for t in confirmation.templates]
    body = confirmation.content.decode()
    assert MASKED in body and VISA not in body
    token.refresh_from_db()
    assert token.deleted_at is None  # nothing happens before "Yes, I'm sure"

    done = run_action(admin_client, "token", "tombstone_selected", [token.pk], post="yes")

    assert done.status_code == 302
    token.refresh_from_db()
    assert token.deleted_at is not None
    assert token.deleted_reason == "deleted"
    assert token.pan_ciphertext is None and token.fingerprint is None
    assert token.masked_number == MASKED
    assert AuditLog.objects.filter(action="token.delete", actor="admin:admin", object_id=token.token_id).exists()


def test_a_deleted_token_is_gone_from_the_api(admin_client, alice, token):
    run_action(admin_client, "token", "tombstone_selected", [token.pk], post="yes")

    response = client_for(alice.raw_key).get("/tokens", {"tokenId": token.token_id})

    assert response.status_code == 404


def test_a_view_only_clerk_cannot_delete_tokens(clerk, token):
    actions = available_actions(clerk.get(changelist("token")))
    assert "tombstone_selected" not in actions

    run_action(clerk, "token", "tombstone_selected", [token.pk], post="yes")

    token.refresh_from_db()
    assert token.deleted_at is None


# ------------------------------------------------------------------------------------------------------------
# Conflicts
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture
def conflict(alice, token) -> TokenConflict:
    """alice sent Sherlock's card again with another holder name and expiry."""
    result = services.card_tokenize(
        merchant=alice, card=sherlock_card(holder_name="John Watson", expiry_month=6), namespace="baker-street"
    )
    assert result.outcome == services.Outcome.CONFLICT
    return result.conflict


def test_the_token_page_shows_the_pending_conflict_beside_the_stored_data(admin_client, token, conflict):
    body = admin_client.get(change_page("token", token.pk)).content.decode()

    table = re.search(r'<table class="vault-conflict">.*?</table>', body, re.S).group()
    assert re.search(r"Card holder name</th><td>Sherlock Holmes</td><td>John Watson</td>", table)
    assert re.search(r"Card expiry</th><td>05/2035</td><td>06/2035</td>", table)
    assert "Billing address" not in table  # only what differs
    # The conflict's own page, where it is applied or dismissed: from the section and from the top of the page.
    conflict_page = change_page("tokenconflict", conflict.pk)
    assert re.findall(r'href="(/admin/vault/tokenconflict/[^"]+)"', body) == [conflict_page, conflict_page]
    assert 'id="pending-conflict"' in body


def test_the_conflict_table_shows_a_differing_scheme_transaction_reference_beside_the_stored_one(admin_client, alice):
    token = services.card_tokenize(merchant=alice, card=sherlock_card(), scheme_transaction_reference="ABC123").token
    conflict = services.card_tokenize(
        merchant=alice, card=sherlock_card(), scheme_transaction_reference="XYZ999"
    ).conflict

    for page in (change_page("token", token.pk), change_page("tokenconflict", conflict.pk)):
        table = re.search(
            r'<table class="vault-conflict">.*?</table>', admin_client.get(page).content.decode(), re.S
        ).group()
        assert re.search(r"Scheme transaction reference</th><td>ABC123</td><td>XYZ999</td>", table), page
        assert "Card holder name" not in table


def test_the_token_page_says_when_no_conflict_is_pending(admin_client, token):
    body = admin_client.get(change_page("token", token.pk)).content.decode()

    assert "No pending conflict." in body
    assert 'class="vault-conflict"' not in body


def test_the_conflict_table_escapes_what_merchants_sent(admin_client, alice, token):
    services.card_tokenize(merchant=alice, card=sherlock_card(holder_name="<b>Moriarty</b>"), namespace="baker-street")

    body = admin_client.get(change_page("token", token.pk)).content.decode()

    assert "&lt;b&gt;Moriarty&lt;/b&gt;" in body
    assert "<b>Moriarty</b>" not in body


def test_the_conflict_list_shows_pending_conflicts(admin_client, token, conflict):
    response = admin_client.get(changelist("tokenconflict"))

    assert response.status_code == 200
    assert token.token_id in response.content.decode()


@pytest.mark.parametrize("action", ["apply", "dismiss"])
def test_applying_or_dismissing_asks_first_showing_stored_and_requested_side_by_side(
    admin_client, token, conflict, action
):
    confirmation = run_action(admin_client, "tokenconflict", action, [conflict.pk], index="0")

    assert confirmation.status_code == 200
    assert "admin/vault/tokenconflict/action_confirmation.html" in [t.name for t in confirmation.templates]
    body = confirmation.content.decode()
    table = re.search(r'<table class="vault-conflict">.*?</table>', body, re.S).group()
    assert re.search(r"Card holder name</th><td>Sherlock Holmes</td><td>John Watson</td>", table)
    assert re.search(r"Card expiry</th><td>05/2035</td><td>06/2035</td>", table)
    assert MASKED in body and VISA not in body
    assert f'name="action" value="{action}"' in body
    # Nothing happens before the submit button; the page showed names, so it counts as a view.
    assert TokenConflict.objects.filter(pk=conflict.pk).exists()
    assert not AuditLog.objects.filter(action=f"token.conflict_{action}").exists()
    assert AuditLog.objects.filter(action="admin.conflict.view", object_id=token.token_id).exists()


@pytest.mark.pci("10.2.1.2")
def test_applying_a_conflict_replaces_the_stored_data_and_is_audited(admin_client, token, conflict):
    response = run_action(admin_client, "tokenconflict", "apply", [conflict.pk], post="yes")

    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.card_holder_name, token.expiry_month) == ("John Watson", 6)
    assert not TokenConflict.objects.filter(pk=conflict.pk).exists()
    row = AuditLog.objects.get(action="token.conflict_apply")
    assert (row.actor, row.object_id, row.result) == ("admin:admin", token.token_id, AuditLog.SUCCESS)


@pytest.mark.pci("10.2.1.2")
def test_dismissing_a_conflict_keeps_the_stored_data_and_is_audited(admin_client, token, conflict):
    response = run_action(admin_client, "tokenconflict", "dismiss", [conflict.pk], post="yes")

    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.card_holder_name, token.expiry_month) == ("Sherlock Holmes", 5)
    assert not TokenConflict.objects.filter(pk=conflict.pk).exists()
    row = AuditLog.objects.get(action="token.conflict_dismiss")
    assert (row.actor, row.object_id, row.result) == ("admin:admin", token.token_id, AuditLog.SUCCESS)


def test_an_expired_conflict_is_not_applied_and_the_failure_is_audited(admin_client, token, conflict):
    TokenConflict.objects.filter(pk=conflict.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    confirmation = run_action(admin_client, "tokenconflict", "apply", [conflict.pk], index="0")
    assert "expired: nothing to apply" in confirmation.content.decode()
    assert "John Watson" not in confirmation.content.decode()
    run_action(admin_client, "tokenconflict", "apply", [conflict.pk], post="yes")

    token.refresh_from_db()
    assert token.card_holder_name == "Sherlock Holmes"
    row = AuditLog.objects.get(action="token.conflict_apply")
    assert (row.actor, row.result, row.detail) == ("admin:admin", AuditLog.FAILURE, {"reason": "no pending conflict"})
    # The service's refusal, in its own words.
    assert messages_shown_next(admin_client) == [
        (SUCCESS, "Applied 0 conflicts."),
        (WARNING, "The token has no pending conflict: 1 conflict left alone."),
    ]


def test_opening_a_conflict_is_audited_as_a_view_of_its_token(admin_client, token, conflict):
    body = admin_client.get(change_page("tokenconflict", conflict.pk)).content.decode()

    assert "John Watson" in body and VISA not in body
    assert AuditLog.objects.filter(action="admin.conflict.view", object_id=token.token_id).exists()


def test_a_view_only_clerk_cannot_apply_a_conflict(clerk, token, conflict):
    assert available_actions(clerk.get(changelist("tokenconflict"))) == {}

    run_action(clerk, "tokenconflict", "apply", [conflict.pk], index="0")
    run_action(clerk, "tokenconflict", "apply", [conflict.pk], post="yes")

    token.refresh_from_db()
    assert token.card_holder_name == "Sherlock Holmes"
    assert not AuditLog.objects.filter(action="token.conflict_apply").exists()


# ------------------------------------------------------------------------------------------------------------
# Every list that finds nothing says so (templates/admin/change_list.html)
# ------------------------------------------------------------------------------------------------------------
def empty_state(response) -> str:
    """The empty state's text and links, as a reader sees them (spaces collapsed, entities unescaped)."""
    body = response.content.decode()
    found = re.search(r'<div class="module empty-results" id="empty-results".*?\n</div>', body, re.S)
    assert found, "no empty state"
    return html.unescape(re.sub(r"\s+", " ", found.group()))


def test_a_list_that_finds_nothing_says_what_was_searched_the_filters_in_use_and_what_to_try(admin_client, bob, token):
    services.card_tokenize(merchant=bob, card=sherlock_card(), namespace="baker-street")  # a second merchant to filter

    response = admin_client.get(changelist("namespace"), {"q": "diogenes", "merchant__id__exact": token.merchant_id})

    said = empty_state(response)
    assert "No namespaces match “diogenes” with the filters chosen." in said
    assert f"Filtered by merchant: {token.merchant}." in said
    assert "Try fewer or other words, or fewer filters" in said  # the namespaces have no hint of their own
    assert f'<a href="{changelist("namespace")}?q=diogenes" id="empty-results-unfiltered">' in said
    assert f'<a href="{changelist("namespace")}" id="empty-results-all">Show all namespaces</a>' in said
    assert "<table" not in said


def test_a_list_filtered_to_nothing_names_each_filter_as_its_sidebar_does(admin_client, alice, token):
    services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD))  # a second brand to filter

    response = admin_client.get(changelist("token"), {"brand": "VISA", "expired": "yes", "namespace": "attic"})

    said = empty_state(response)
    assert "No tokens match the filters chosen." in said
    assert "Filtered by brand: VISA; namespace: attic; expired: Yes." in said
    assert "Try a masked number as the pages show it" in said  # the token list's own hint


def test_the_audit_log_empty_for_an_object_says_which_object_it_looked_for(admin_client, db):
    response = admin_client.get(changelist("auditlog"), {"object_type": "token", "object_id": "7ABCDEFGHJKLMNPQRST"})

    said = empty_state(response)
    assert "Filtered by object type: token; object id: 7ABCDEFGHJKLMNPQRST." in said
    assert "Search by an object's whole id" in said


def test_a_list_with_no_rows_at_all_says_it_has_none_yet(admin_client, db):
    said = empty_state(admin_client.get(changelist("tokenconflict")))

    assert "No token conflicts yet." in said
    assert "Show all" not in said


# ------------------------------------------------------------------------------------------------------------
# Namespaces and expiry extensions
# ------------------------------------------------------------------------------------------------------------
def test_the_namespace_list_shows_how_many_live_cards_each_holds(admin_client, alice, token):
    services.card_tokenize(merchant=alice, card=sherlock_card(MASTERCARD), namespace="baker-street")
    gone = services.card_tokenize(merchant=alice, card=sherlock_card("4111111111111111"), namespace="baker-street")
    services.token_delete(token=gone.token)

    response = admin_client.get(changelist("namespace"), {"q": "baker"})

    assert response.status_code == 200
    body = response.content.decode()
    assert "baker-street" in body
    assert '<td class="field-card_count">2</td>' in body


def test_a_namespace_links_to_its_tokens(admin_client, alice, bob, token):
    services.card_tokenize(merchant=bob, card=sherlock_card(MASTERCARD), namespace="baker-street")
    page = admin_client.get(changelist("namespace"), {"merchant__id__exact": alice.pk}).content.decode()
    [link] = re.findall(r'href="(/admin/vault/token/\?[^"]+)"', page)

    response = admin_client.get(link.replace("&amp;", "&"))

    assert listed_token_ids(response) == {token.token_id}


def test_the_namespace_list_shows_its_merchant_shortly_and_when_it_was_made_as_every_list(admin_client, alice, token):
    alice.name = "Harbour Coffee Roasters of the Northern Quarter"
    alice.save(update_fields=["name"])

    body = admin_client.get(changelist("namespace")).content.decode()

    assert f'<span class="merchant" title="{alice.name} ({alice.public_id})">Harbour Coffee Roaste…</span>' in body
    assert re.search(r'<td class="field-created"><time datetime="[^"]+">[^<]+ UTC</time> <span class="relative">', body)


def test_the_expiry_extension_list_is_read_only(admin_client, token, settings):
    extension = extended_by_a_use(token, settings)

    response = admin_client.get(changelist("expiryextension"))

    assert response.status_code == 200
    assert token.token_id in response.content.decode()
    assert admin_client.get(reverse("admin:vault_expiryextension_add")).status_code == 403
    assert admin_client.post(change_page("expiryextension", extension.pk), {"reason": "x"}).status_code == 403


# ------------------------------------------------------------------------------------------------------------
# Merchants and API keys
# ------------------------------------------------------------------------------------------------------------
def test_the_merchant_list_shows_active_key_counts(admin_client, alice):
    merchant_services.api_key_create(merchant=alice, name="second")

    response = admin_client.get(changelist("merchant"), {"q": alice.public_id})

    assert response.status_code == 200
    assert alice.public_id in response.content.decode()
    assert '<td class="field-active_keys">2</td>' in response.content.decode()


def test_the_api_key_form_offers_the_scopes_and_shows_no_hash(admin_client, alice):
    key = alice.api_keys.get()
    add = admin_client.get(reverse("admin:merchants_apikey_add")).content.decode()
    change = admin_client.get(change_page("apikey", key.pk)).content.decode()

    for scope in ("tokens", "tokens:detokenize", "network-tokens", "webhooks"):
        assert f'value="{scope}"' in add
    assert "key_hash" not in add
    assert key.key_hash not in change and "key_hash" not in change


def test_deactivating_a_merchant_in_the_admin_stops_its_keys(admin_client, alice):
    key = alice.api_keys.get()
    assert admin_client.get(change_page("merchant", alice.pk)).status_code == 200

    response = admin_client.post(
        change_page("merchant", alice.pk),
        {
            "name": alice.name,  # is_active left unticked
            "api_keys-TOTAL_FORMS": "1",
            "api_keys-INITIAL_FORMS": "1",
            "api_keys-MIN_NUM_FORMS": "0",
            "api_keys-MAX_NUM_FORMS": "0",
            "api_keys-0-id": str(key.pk),
            "api_keys-0-merchant": str(alice.pk),
        },
    )

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.is_active is False
    assert client_for(alice.raw_key).get("/tokens").status_code == 401
    row = AuditLog.objects.get(action="admin.merchant.change")
    assert (row.actor, row.object_id, row.detail) == ("admin:admin", alice.public_id, {"is_active": False})


def test_merchants_cannot_be_deleted(admin_client, alice):
    assert admin_client.get(reverse("admin:merchants_merchant_delete", args=[alice.pk])).status_code == 403
    assert "delete_selected" not in available_actions(admin_client.get(changelist("merchant")))


def test_a_revoked_key_no_longer_authenticates(admin_client, alice):
    key = alice.api_keys.get()

    confirmation = run_action(admin_client, "apikey", "revoke", [key.pk], index="0")
    assert confirmation.status_code == 200
    assert key.prefix in confirmation.content.decode()
    assert client_for(alice.raw_key).get("/tokens").status_code == 200  # nothing happens before "Revoke"

    response = run_action(admin_client, "apikey", "revoke", [key.pk], post="yes")

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert client_for(alice.raw_key).get("/tokens").status_code == 401
    assert AuditLog.objects.filter(action="admin.api_key.revoke", object_id=key.prefix).exists()


def test_api_keys_cannot_be_edited_or_deleted(admin_client, alice):
    key = alice.api_keys.get()

    assert admin_client.post(change_page("apikey", key.pk), {"name": "x", "scopes": ["tokens"]}).status_code == 403
    assert admin_client.get(reverse("admin:merchants_apikey_delete", args=[key.pk])).status_code == 403


# ------------------------------------------------------------------------------------------------------------
# Audit log
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.pci("10.3.2")
def test_the_audit_log_is_read_only(admin_client, token):
    admin_client.get(change_page("token", token.pk))
    row = AuditLog.objects.get(action="admin.token.view")

    listing = admin_client.get(changelist("auditlog"), {"q": token.token_id})
    assert listing.status_code == 200
    assert "admin.token.view" in listing.content.decode()

    assert admin_client.get(reverse("admin:core_auditlog_add")).status_code == 403
    assert admin_client.get(reverse("admin:core_auditlog_delete", args=[row.pk])).status_code == 403
    page = admin_client.get(change_page("auditlog", row.pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change_page("auditlog", row.pk), {"action": "x"}).status_code == 403
    assert "delete_selected" not in available_actions(listing)


def test_the_audit_log_filters_by_action_and_result(admin_client, token):
    admin_client.get(change_page("token", token.pk))
    client_for("sk_wrong").get("/tokens")

    failures = admin_client.get(changelist("auditlog"), {"result__exact": AuditLog.FAILURE})
    views = admin_client.get(changelist("auditlog"), {"action__exact": "admin.token.view"})

    assert {row.action for row in failures.context["cl"].result_list} == {"auth.failed"}
    assert {row.action for row in views.context["cl"].result_list} == {"admin.token.view"}


# ------------------------------------------------------------------------------------------------------------
# Every vault page renders for the clerk and never holds a card number
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model", ["merchant", "apikey", "token", "tokenconflict", "namespace", "expiryextension", "auditlog"]
)
def test_every_vault_list_renders_for_a_view_only_clerk_without_card_numbers(clerk, token, conflict, model):
    response = clerk.get(changelist(model))

    assert response.status_code == 200
    assert VISA not in response.content.decode()


# ------------------------------------------------------------------------------------------------------------
# Labels and buttons: the token's status beside its id, its actions on its page, a conflict resolved from its own
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, label",
    [
        ({"expires_at": timezone.now() + timedelta(days=31)}, '<span class="status status-good">Active</span>'),
        ({"expires_at": timezone.now() + timedelta(days=10)}, '<span class="status status-warning">Expiring</span>'),
        ({"expires_at": timezone.now() - timedelta(days=1)}, '<span class="status status-bad">Expired</span>'),
        ({"deleted_at": timezone.now()}, '<span class="status status-quiet">Deleted</span>'),
    ],
    ids=["active", "expiring", "expired", "deleted"],
)
def test_the_token_list_labels_each_token_by_its_status(admin_client, token, change, label):
    Token.objects.filter(pk=token.pk).update(**change)

    body = admin_client.get(changelist("token")).content.decode()

    assert f'<td class="field-status">{label}</td>' in body
    assert "icon-no.svg" not in body and "icon-yes.svg" not in body


def test_the_token_list_shows_status_and_expiry_right_after_the_token_id(admin_client, token):
    body = admin_client.get(changelist("token")).content.decode()

    columns = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', body)
    assert columns[:4] == ["token_id", "status", "expires", "masked_card"]
    assert re.search(
        r'<td class="field-expires"><time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</time>', body
    )


def test_the_token_page_offers_extend_and_an_irreversible_delete_as_buttons(admin_client, token):
    body = admin_client.get(change_page("token", token.pk)).content.decode()

    extend = reverse("admin:vault_token_object_action", args=[token.pk, "extend_expiry"])
    delete = reverse("admin:vault_token_object_action", args=[token.pk, "tombstone_selected"])
    assert f'<a href="{extend}" id="object-action-extend_expiry" class="object-action">Extend expiry</a>' in body
    assert f'<a href="{delete}" id="object-action-tombstone_selected" class="object-action irreversible">' in body


def test_the_delete_button_leads_to_the_same_confirmation_and_back_to_the_token(admin_client, token):
    button = reverse("admin:vault_token_object_action", args=[token.pk, "tombstone_selected"])

    confirmation = admin_client.get(button)
    assert "admin/vault/token/delete_selected_confirmation.html" in [t.name for t in confirmation.templates]
    done = admin_client.post(button, {"action": "tombstone_selected", "_selected_action": [token.pk], "post": "yes"})

    assert done["Location"] == change_page("token", token.pk)
    token.refresh_from_db()
    assert token.is_deleted
    page = admin_client.get(done["Location"]).content.decode()
    assert "Deleted 1 token; its tombstone remains." in page
    assert 'id="object-action-tombstone_selected"' not in page and 'id="object-action-extend_expiry"' not in page


def test_an_action_button_of_a_token_gone_meanwhile_goes_back_to_the_list_and_says_so(admin_client, token):
    button = reverse("admin:vault_token_object_action", args=[token.pk + 1000, "extend_expiry"])

    response = admin_client.get(button, follow=True)

    assert response.redirect_chain == [(changelist("token"), 302)]
    assert [str(m) for m in response.context["messages"]] == ["That token does not exist: was it deleted?"]


def test_a_view_only_clerk_sees_no_action_buttons(clerk, token):
    body = clerk.get(change_page("token", token.pk)).content.decode()

    assert 'id="object-action-' not in body


@pytest.mark.parametrize("action, holder", [("apply", "John Watson"), ("dismiss", "Sherlock Holmes")])
def test_a_conflict_is_resolved_from_its_own_page_and_the_token_page_shows_the_outcome(
    admin_client, token, conflict, action, holder
):
    page = admin_client.get(change_page("tokenconflict", conflict.pk)).content.decode()
    button = reverse("admin:vault_tokenconflict_object_action", args=[conflict.pk, action])
    assert f'href="{button}"' in page
    assert '<span class="status status-warning">Pending</span>' in page

    confirmation = admin_client.get(button)
    assert "admin/vault/tokenconflict/action_confirmation.html" in [t.name for t in confirmation.templates]
    done = admin_client.post(button, {"action": action, "_selected_action": [conflict.pk], "post": "yes"})

    assert done["Location"] == change_page("token", token.pk)
    token.refresh_from_db()
    assert token.card_holder_name == holder
    shown = admin_client.get(done["Location"]).content.decode()
    assert ("Applied 1 conflict." if action == "apply" else "Dismissed 1 conflict.") in shown


def test_an_expired_conflict_offers_dismiss_only_and_is_labelled_expired(admin_client, conflict):
    TokenConflict.objects.filter(pk=conflict.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    page = admin_client.get(change_page("tokenconflict", conflict.pk)).content.decode()

    assert 'id="object-action-dismiss"' in page and 'id="object-action-apply"' not in page
    assert '<span class="status status-quiet">Expired</span>' in page
