"""The network-token engine at service level: the simulated TSPs (they are the product: nothing of them is mocked),
the issuer registry, the per-issuer rate limit, events, lifecycle and cryptograms.

alice is a merchant asking for network tokens; bob is another merchant, whose tokenIds must never be alice's.
"""

import json
import random
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.audit import Actor
from core.errors import ApiError
from networks import scheduling, services, tsp
from networks.api.representations import metadata
from networks.errors import TspUnavailable
from networks.models import Issuer, LifecycleEvent, NetworkToken
from networks.tsp.visa import VisaProvider
from notifications.models import Event
from tests.cards import card_number, declining_card, step_up_card
from tests.conftest import AMEX, DISCOVER, JCB, MASTERCARD, MASTERCARD_2_SERIES, VISA, VISA_2
from vault import cards
from vault import services as vault_services
from vault.keys import key_ring
from vault.models import ExpiryExtension

pytestmark = pytest.mark.django_db

TOKEN_BINS = {"VISA": ("489537", 16), "MASTERCARD": ("522000", 16), "AMEX": ("374245", 15)}
AMEX_2 = "371449635398431"  # another public Amex test card


def provision(merchant, number, *, account_id="", email="", correlation_id="c-1", vault_token=None) -> NetworkToken:
    return services.network_token_provision(
        origin=services.Origin(merchant=merchant, correlation_id=correlation_id, vault_token=vault_token),
        card=tsp.CardData(number, 5, 2035),
        account_id=account_id,
        email=email,
    )


def token_number(token: NetworkToken) -> str:
    return key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())


def issuer_named(name: str) -> Issuer:
    return Issuer.objects.get(name=name)


# ------------------------------------------------------------------------------------------------------------
# tokenId rules, exactly as the seed
# ------------------------------------------------------------------------------------------------------------
def test_mastercard_gives_a_new_token_id_for_every_request(alice):
    first = provision(alice, MASTERCARD, account_id="acc-1")
    second = provision(alice, MASTERCARD, account_id="acc-1")

    assert first.token_id != second.token_id
    assert NetworkToken.objects.filter(merchant=alice, network="MASTERCARD").count() == 2


def test_visa_reuses_the_token_id_for_the_same_merchant_card_and_account_id(alice):
    first = provision(alice, VISA, account_id="acc-1")
    again = provision(alice, VISA, account_id="acc-1", correlation_id="c-2")

    assert again.token_id == first.token_id


def test_visa_gives_another_token_id_for_another_account_id(alice):
    assert provision(alice, VISA, account_id="acc-1").token_id != provision(alice, VISA, account_id="acc-2").token_id


def test_visa_gives_another_token_id_for_another_merchant(alice, bob):
    assert provision(alice, VISA, account_id="acc-1").token_id != provision(bob, VISA, account_id="acc-1").token_id


def test_visa_gives_another_token_id_for_another_card(alice):
    assert provision(alice, VISA, account_id="acc-1").token_id != provision(alice, VISA_2, account_id="acc-1").token_id


def test_a_visa_reuse_returns_the_same_stored_row_without_a_duplicate(alice):
    first = provision(alice, VISA, account_id="acc-1", correlation_id="c-1")
    again = provision(alice, VISA, account_id="acc-1", correlation_id="c-2")

    assert again.pk == first.pk
    assert NetworkToken.objects.filter(token_id=first.token_id).count() == 1
    assert NetworkToken.objects.filter(merchant=alice).count() == 1
    assert token_number(again) == token_number(first)  # a reused tokenId keeps its token number


def test_amex_reuses_the_token_id_for_the_same_merchant_card_account_id_and_email(alice):
    first = provision(alice, AMEX, account_id="acc-1", email="sherlock@example.com")
    again = provision(alice, AMEX, account_id="acc-1", email="sherlock@example.com")

    assert again.token_id == first.token_id
    assert again.pk == first.pk
    assert NetworkToken.objects.filter(merchant=alice).count() == 1


def test_amex_gives_another_token_id_for_another_email(alice):
    first = provision(alice, AMEX, account_id="acc-1", email="sherlock@example.com")
    other = provision(alice, AMEX, account_id="acc-1", email="watson@example.com")

    assert other.token_id != first.token_id


def test_amex_gives_another_token_id_for_another_merchant_or_account_id(alice, bob):
    first = provision(alice, AMEX, account_id="acc-1", email="sherlock@example.com")

    assert provision(bob, AMEX, account_id="acc-1", email="sherlock@example.com").token_id != first.token_id
    assert provision(alice, AMEX, account_id="acc-2", email="sherlock@example.com").token_id != first.token_id


def test_amex_without_an_email_is_refused_with_a_validation_error_at_email(alice):
    with pytest.raises(ApiError) as caught:
        provision(alice, AMEX, account_id="acc-1")

    assert caught.value.status_code == 400
    assert [error["jsonPath"] for error in caught.value.validation_errors] == ["$.email"]
    assert not NetworkToken.objects.exists()


# ------------------------------------------------------------------------------------------------------------
# Network token numbers and PAR
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number, email",
    [
        (VISA, ""),
        (VISA_2, ""),
        (MASTERCARD, ""),
        (MASTERCARD_2_SERIES, ""),
        (AMEX, "sherlock@example.com"),
    ],
)
def test_a_network_token_number_is_luhn_valid_in_the_networks_token_bin_and_never_the_card_number(alice, number, email):
    token = provision(alice, number, email=email)
    dpan = token_number(token)
    token_bin, length = TOKEN_BINS[token.network]

    assert cards.luhn_valid(dpan)
    assert dpan.startswith(token_bin)
    assert len(dpan) == length
    assert dpan != number
    assert dpan[-4:] == token.token_last_digits
    assert token.card_last_digits == number[-4:] and token.card_bin == number[:6]


def test_many_network_token_numbers_all_keep_the_rules(alice):
    # Many different cards of each network: the token number rules hold for every one of them, not only for the
    # public test cards.
    Issuer.objects.update(rate_limit_per_second=1000)  # sixty calls: no need to wait for the issuers' clocks
    for prefix, length, email in (("400000", 16, ""), ("555555", 16, ""), ("2720", 16, ""), ("370000", 15, "a@b.c")):
        for seed in range(15):
            number = card_number(prefix, length=length, rng=random.Random(seed))
            if number.endswith(("0002", "0036")):
                continue
            token = provision(alice, number, email=email)
            dpan = token_number(token)
            token_bin, token_length = TOKEN_BINS[token.network]
            assert cards.luhn_valid(dpan) and dpan.startswith(token_bin) and len(dpan) == token_length
            assert dpan != number and dpan[-4:] == token.token_last_digits


def test_the_payment_account_reference_is_stable_per_card_across_merchants_and_requests(alice, bob):
    references = {
        provision(alice, MASTERCARD).payment_account_reference,
        provision(alice, MASTERCARD).payment_account_reference,
        provision(bob, MASTERCARD, account_id="other").payment_account_reference,
    }

    assert len(references) == 1
    assert len(references.pop()) == 29


def test_different_cards_have_different_payment_account_references(alice):
    references = [
        provision(alice, number, email="a@b.c").payment_account_reference
        for number in (VISA, VISA_2, MASTERCARD, MASTERCARD_2_SERIES, AMEX, AMEX_2)
    ]

    assert len(set(references)) == len(references)
    assert all(len(reference) == 29 for reference in references)


# ------------------------------------------------------------------------------------------------------------
# Issuers by BIN
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "number, issuer_name, card_art",
    [
        (VISA, "Baker Street Bank", ["art-bsb-classic", "art-bsb-gold"]),
        (VISA_2, "Visa Test Issuer", ["art-vti-blue"]),
        (MASTERCARD, "Maple Mutual", ["art-maple-world"]),
        (MASTERCARD_2_SERIES, "Two Series Trust", ["art-tst"]),
        (AMEX, "Centurion Test Issuer", ["art-amex-green", "art-amex-platinum"]),
    ],
)
def test_the_issuer_comes_from_the_registry_by_bin_with_its_card_art(alice, number, issuer_name, card_art):
    token = provision(alice, number, email="sherlock@example.com")
    answer = metadata(token)

    assert token.issuer == issuer_named(issuer_name)
    assert answer["issuer"] == {"name": issuer_name}
    assert answer["cardArt"] == card_art


def test_a_visa_card_outside_every_registered_range_gets_an_issuer_of_its_own_bin(alice):
    # The seeds cover every Visa BIN; an operator narrows one range in the admin, leaving 48xxxx-49xxxx unregistered.
    Issuer.objects.filter(name="Northern Lights Credit Union").update(bin_high="479999")
    registered = set(Issuer.objects.values_list("pk", flat=True))

    first = provision(alice, card_number("490000"))
    second = provision(alice, card_number("485555"))
    again = provision(alice, card_number("490000", length=19))

    assert first.issuer.pk not in registered and second.issuer.pk not in registered
    assert (first.issuer.network, first.issuer.bin_low, first.issuer.bin_high) == ("VISA", "490000", "490000")
    assert (second.issuer.bin_low, second.issuer.bin_high) == ("485555", "485555")
    assert not first.issuer.registered
    assert first.issuer.rate_limit_per_second == Issuer._meta.get_field("rate_limit_per_second").default
    assert again.issuer == first.issuer  # one issuer per BIN, not one per card
    assert metadata(first)["issuer"] == {"name": first.issuer.name}


def test_two_unregistered_bins_are_rate_limited_apart(alice):
    # A bank the registry does not list yet is throttled on its own: a busy unknown BIN holds back no other.
    Issuer.objects.filter(name="Northern Lights Credit Union").update(bin_high="479999")
    busy = provision(alice, card_number("490000")).issuer
    idle = provision(alice, card_number("485555")).issuer
    Issuer.objects.filter(pk=busy.pk).update(rate_limit_per_second=1)
    Issuer.objects.filter(pk__in=[busy.pk, idle.pk]).update(next_call_at=None)
    busy.refresh_from_db()
    idle.refresh_from_db()

    busy_waits = [scheduling.reserve_call(busy) for _ in range(3)]

    assert busy_waits[-1] > 1.5
    assert scheduling.reserve_call(idle) == 0


def test_a_catch_all_issuer_left_from_before_gets_no_new_card(alice):
    # What earlier versions made for every BIN outside the registry: it keeps its tokens but leaves the registry.
    Issuer.objects.filter(name="Northern Lights Credit Union").update(bin_high="479999")
    catch_all = Issuer.objects.create(
        name="Other VISA issuers", network="VISA", bin_low="000000", bin_high="999999", registered=False
    )

    token = provision(alice, card_number("490000"))

    assert token.issuer != catch_all
    assert (token.issuer.bin_low, token.issuer.bin_high) == ("490000", "490000")


# ------------------------------------------------------------------------------------------------------------
# Issuer decisions and unsupported networks
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix, length, email", [("400000", 16, ""), ("555555", 16, ""), ("378282", 15, "a@b.c")])
def test_a_card_ending_0002_is_declined_by_its_issuer(alice, prefix, length, email):
    with pytest.raises(ApiError) as caught:
        provision(alice, declining_card(prefix, length=length), email=email)

    assert (caught.value.status_code, caught.value.error_name) == (422, "tokenizationDeclined")
    assert not NetworkToken.objects.exists()
    assert not Event.objects.filter(type="network_token.created").exists()


@pytest.mark.parametrize("prefix, length, email", [("400000", 16, ""), ("555555", 16, ""), ("378282", 15, "a@b.c")])
def test_a_card_ending_0036_needs_a_step_up_and_its_token_is_inactive(alice, prefix, length, email):
    token = provision(alice, step_up_card(prefix, length=length), email=email)

    assert token.status == NetworkToken.INACTIVE


def test_an_approved_card_gets_an_active_token(alice):
    assert provision(alice, VISA).status == NetworkToken.ACTIVE


@pytest.mark.parametrize("number", [DISCOVER, JCB])
def test_networks_without_a_token_service_are_refused(alice, number):
    with pytest.raises(ApiError) as caught:
        provision(alice, number, email="a@b.c")

    assert (caught.value.status_code, caught.value.error_name) == (422, "networkNotSupported")


# ------------------------------------------------------------------------------------------------------------
# Failures and latency (from the settings)
# ------------------------------------------------------------------------------------------------------------
def test_a_tsp_that_always_fails_is_unavailable_transiently_and_answers_502_or_504(alice, settings):
    settings.TSP_FAILURE_RATE = 1.0
    seen = set()
    for _ in range(30):
        with pytest.raises(TspUnavailable) as caught:
            provision(alice, VISA)
        error = caught.value
        assert error.transient
        assert isinstance(error.__cause__, tsp.TspError) and error.__cause__.timeout == error.timed_out
        answer = error.as_api_error()  # what the API's exception handler answers
        assert (answer.status_code, answer.error_name) == (504 if error.timed_out else 502, "networkUnavailable")
        seen.add(answer.status_code)

    assert seen == {502, 504}  # half of the failures are timeouts: 30 draws give both (chance of not: 2**-29)
    assert not NetworkToken.objects.exists()


def test_a_simulator_made_with_its_own_failure_rate_and_random_draws_fails_as_they_say(db, settings):
    settings.TSP_FAILURE_RATE = 0.0
    request = tsp.ProvisionRequest(merchant_id="mer_test", card=tsp.CardData(VISA, 5, 2035))
    failing = VisaProvider(failure_rate=1.0)
    seeded = [VisaProvider(rng=random.Random(7), failure_rate=0.5) for _ in range(2)]

    with pytest.raises(tsp.TspError):
        failing.provision(request)
    outcomes = [[_outcome(provider, request) for _ in range(20)] for provider in seeded]
    assert outcomes[0] == outcomes[1]  # the same draws, the same failures
    assert {"ok", "timeout", "unavailable"} == set(outcomes[0])


def _outcome(provider, request) -> str:
    try:
        provider.provision(request)
    except tsp.TspError as error:
        return "timeout" if error.timeout else "unavailable"
    return "ok"


def test_tsp_latency_comes_from_the_settings(alice, settings):
    settings.TSP_LATENCY_MS = "30-60"

    started = time.monotonic()
    provision(alice, VISA)

    assert time.monotonic() - started >= 0.030


# ------------------------------------------------------------------------------------------------------------
# Rate limit per issuer
# ------------------------------------------------------------------------------------------------------------
def test_reservations_of_one_issuer_are_spaced_by_one_over_its_rate(db):
    Issuer.objects.filter(name="Baker Street Bank").update(rate_limit_per_second=10, next_call_at=None)
    issuer = issuer_named("Baker Street Bank")

    started_at = timezone.now()
    started = time.time()
    waits, starts = [], []
    for _ in range(10):
        before = timezone.now()
        waits.append(scheduling.reserve_call(issuer))
        after = timezone.now()
        # The slot booked: the issuer's clock now ends one interval after its start.
        start = Issuer.objects.values_list("next_call_at", flat=True).get(pk=issuer.pk) - timedelta(seconds=0.1)
        # The wait returned leads to that start from the clock the call read, between the test's two reads.
        assert before + timedelta(seconds=waits[-1]) <= start <= after + timedelta(seconds=waits[-1])
        starts.append(start)
    elapsed = time.time() - started

    assert waits[0] == 0
    # The tenth call starts 9 × 0.1 s after the first; the time spent reserving counts towards that.
    assert waits[-1] + elapsed >= 0.9 - 0.001
    # Each slot starts one interval after the one before at least (more only should the test have stalled longer than
    # an interval between two reservations, the clock having run idle meanwhile). The waits themselves need not
    # grow: a stalled test reads a later clock for the same booking.
    assert all(later - earlier >= timedelta(seconds=0.1) for earlier, later in zip(starts, starts[1:], strict=False))
    issuer.refresh_from_db()
    # Ten slots of 0.1 s from the first reservation, which started no earlier than the test's clock read.
    assert issuer.next_call_at >= started_at + timedelta(seconds=1.0)


def test_calls_to_one_issuer_take_at_least_the_time_its_rate_allows(alice):
    Issuer.objects.filter(name="Baker Street Bank").update(rate_limit_per_second=10, next_call_at=None)

    started = time.monotonic()
    for index in range(10):
        provision(alice, VISA, account_id=f"acc-{index}")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.9


def test_different_issuers_do_not_wait_for_each_other(db):
    Issuer.objects.filter(name__in=["Baker Street Bank", "Maple Mutual"]).update(
        rate_limit_per_second=1, next_call_at=None
    )
    busy, idle = issuer_named("Baker Street Bank"), issuer_named("Maple Mutual")

    busy_waits = [scheduling.reserve_call(busy) for _ in range(5)]

    assert busy_waits[-1] > 3.5  # Baker Street Bank's clock is now seconds ahead
    assert scheduling.reserve_call(idle) == 0
    assert scheduling.reserve_call(issuer_named("Visa Test Issuer")) == 0


# ------------------------------------------------------------------------------------------------------------
# Events, lifecycle, cryptograms
# ------------------------------------------------------------------------------------------------------------
def test_every_provisioning_emits_a_created_event_without_card_or_token_number(alice):
    tokens = [
        provision(alice, VISA, account_id="a"),
        provision(alice, VISA, account_id="a"),
        provision(alice, MASTERCARD),
        provision(alice, AMEX, email="sherlock@example.com"),
    ]

    events = list(Event.objects.filter(merchant=alice, type="network_token.created").order_by("pk"))
    assert [event.data["tokenId"] for event in events] == [token.token_id for token in tokens]
    for event, token, number in zip(events, tokens, (VISA, VISA, MASTERCARD, AMEX), strict=True):
        text = json.dumps(event.data)
        assert number not in text
        assert token_number(token) not in text
        assert event.data["correlationId"] == "c-1"
        assert event.data["cardLastDigits"] == number[-4:]


def test_lifecycle_events_are_stored_and_emitted_as_updated(alice):
    token = provision(alice, VISA)

    services.lifecycle_apply(token=token, type=LifecycleEvent.SUSPENDED, source="tsp-simulator")
    token.refresh_from_db()
    assert token.status == NetworkToken.SUSPENDED
    services.lifecycle_apply(token=token, type=LifecycleEvent.RESUMED, source="tsp-simulator")
    token.refresh_from_db()
    assert token.status == NetworkToken.ACTIVE

    updates = list(Event.objects.filter(merchant=alice, type="network_token.updated").order_by("pk"))
    assert [(event.data["event"], event.data["status"]) for event in updates] == [
        ("SUSPENDED", "SUSPENDED"),
        ("ACTIVE", "ACTIVE"),
    ]
    assert [(e.type, e.old_status, e.new_status) for e in token.lifecycle_events.order_by("pk")] == [
        ("SUSPENDED", "ACTIVE", "SUSPENDED"),
        ("ACTIVE", "SUSPENDED", "ACTIVE"),
    ]
    assert all(VISA not in json.dumps(event.data) for event in updates)


def test_a_card_update_records_the_new_expiry(alice):
    token = provision(alice, VISA)

    services.lifecycle_apply(token=token, type=LifecycleEvent.CARD_UPDATED, source="tsp-simulator", expiry=(7, 2039))

    token.refresh_from_db()
    assert (token.card_expiry_month, token.card_expiry_year) == (7, 2039)
    assert token.status == NetworkToken.ACTIVE
    update = Event.objects.get(merchant=alice, type="network_token.updated")
    assert update.data["event"] == "CARD_UPDATED"
    assert update.data["cardExpiryDate"] == {"month": 7, "year": 2039}


def test_a_deleted_token_loses_its_token_number(alice):
    token = provision(alice, VISA)

    services.lifecycle_apply(token=token, type=LifecycleEvent.DELETED, source="tsp-simulator")

    token.refresh_from_db()
    assert token.status == NetworkToken.DELETED
    assert token.dpan_ciphertext is None and token.key_version is None
    assert Event.objects.get(merchant=alice, type="network_token.updated").data["event"] == "DELETED"


def alices_actor(alice) -> Actor:
    return Actor("api-key:test", merchant=alice)


def test_a_cryptogram_is_only_for_an_active_token(alice):
    inactive = provision(alice, step_up_card("400000"))
    suspended = provision(alice, MASTERCARD)
    services.lifecycle_apply(token=suspended, type=LifecycleEvent.SUSPENDED, source="tsp-simulator")
    suspended.refresh_from_db()

    for token in (inactive, suspended):
        with pytest.raises(ApiError) as caught:
            services.cryptogram_create(token=token, actor=alices_actor(alice), reveal_number=False)
        assert (caught.value.status_code, caught.value.error_name) == (422, "tokenNotActive")


def test_a_cryptogram_includes_the_token_number_only_when_revealed(alice):
    token = provision(alice, VISA)

    plain = services.cryptogram_create(token=token, actor=alices_actor(alice), reveal_number=False)
    revealed = services.cryptogram_create(token=token, actor=alices_actor(alice), reveal_number=True)

    assert plain.token_number is None
    assert revealed.token_number == token_number(token)
    assert plain.cryptogram and plain.cryptogram != revealed.cryptogram  # single-use: a new one each time
    assert plain.eci == "05"
    assert plain.expires_at > timezone.now()
    assert token_number(token) not in repr(revealed) and revealed.cryptogram not in repr(revealed)


def test_a_cryptogram_counts_as_a_use_of_the_vault_token_behind_it(alice, settings):
    settings.TOKENS_ENVIRONMENT = "live"
    vault_token = vault_services.card_tokenize(
        merchant=alice, card=vault_services.Card(VISA, "Sherlock Holmes", 5, 2035)
    ).token
    token = provision(alice, VISA, vault_token=vault_token)
    # Three years into its four: past half of its lifetime, the next use extends it.
    old_expiry = timezone.now() + timedelta(days=365)
    type(vault_token).objects.filter(pk=vault_token.pk).update(
        created_at=old_expiry - vault_services.default_lifetime(), expires_at=old_expiry
    )

    services.cryptogram_create(token=token, actor=alices_actor(alice), reveal_number=False)

    extension = ExpiryExtension.objects.get(token=vault_token)
    assert extension.reason == "cryptogram"
    assert extension.old_expires_at == old_expiry
    vault_token.refresh_from_db()
    assert vault_token.expires_at == old_expiry + vault_services.default_lifetime()


def test_a_cryptogram_for_a_fresh_vault_token_does_not_extend_it(alice):
    vault_token = vault_services.card_tokenize(
        merchant=alice, card=vault_services.Card(VISA, "Sherlock Holmes", 5, 2035)
    ).token
    token = provision(alice, VISA, vault_token=vault_token)

    services.cryptogram_create(token=token, actor=alices_actor(alice), reveal_number=False)

    assert not ExpiryExtension.objects.filter(token=vault_token).exists()
