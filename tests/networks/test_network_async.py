"""Asynchronous network-token requests: a real Celery worker on the real Redis broker calls the simulated TSP and the
outcome reaches a real webhook receiver on loopback, signed; transient TSP failures are retried with backoff.

alice is the merchant asking for network tokens and listening for their webhooks.

The retry tests run the task eagerly, in this process (``Task.apply``), once per attempt: a transient failure makes
the request due again later in the database, and the test moves that moment to now, as the wait would, before the
next attempt, so all five attempts take milliseconds. The TSP's transient failures come from the simulator's own
failure rate; where a test needs a given failure, the simulator serving it is made with scripted random draws (its
``rng``). The broker is outside the product: outside the tests marked ``celery``, what is queued is recorded
(``broker``, tests/conftest.py).
"""

import json
import random
from datetime import timedelta

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from config.settings.secrets import new_key
from networks import services, tasks, tsp
from networks.models import NetworkToken, ProvisioningRequest
from networks.tsp.visa import VisaProvider
from notifications.models import Event
from notifications.services import endpoint_create
from tests.cards import declining_card
from tests.conftest import MASTERCARD, VISA, start_celery_worker, stop_celery_worker, wait_for
from tests.receiver import Receiver
from vault import services as vault_services
from vault.keys import key_ring

NETWORK_TOKEN_EVENTS = ["network_token.created", "network_token.failed", "network_token.updated"]


def vault_token(merchant, number=VISA):
    return vault_services.card_tokenize(
        merchant=merchant, card=vault_services.Card(number, "Sherlock Holmes", 5, 2035)
    ).token


def token_number(token: NetworkToken) -> str:
    return key_ring().decrypt(token.key_version, token.dpan_ciphertext, associated_data=token.associated_data())


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def webhooks_to(alice):
    """alice's webhook endpoint at a receiver, for network-token events only (not the vault's token.created)."""
    return lambda receiver: endpoint_create(merchant=alice, url=receiver.url, event_types=NETWORK_TOKEN_EVENTS)


@pytest.fixture
def worker():
    """Starts a real worker when the test says so (after what it must see before the worker runs)."""
    started = []

    def start(**options):
        started.append(start_celery_worker(**options))
        return started[-1]

    yield start
    for process in started:
        stop_celery_worker(process)


def verified_webhooks(receiver, endpoint, count):
    return [
        Webhook(endpoint.secret).verify(request.body, request.headers)
        for request in receiver.wait_for_requests(count, timeout=30)
    ]


# ------------------------------------------------------------------------------------------------------------
# Through a real worker. The transactional database, so the worker sees what the test committed; serialized_rollback
# brings back the issuers the migrations seeded, which the flush after any transactional test wipes.
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_async_request_for_a_vault_token_succeeds_and_sends_a_signed_created_webhook(
    alice, receiver, webhooks_to, worker
):
    endpoint = webhooks_to(receiver)
    card = vault_token(alice)
    worker()

    request = services.provisioning_request_create(merchant=alice, correlation_id="corr-async-1", vault_token=card)

    # This wait includes the worker's start-up, which alone can take tens of seconds on a loaded machine.
    wait_for(lambda: ProvisioningRequest.objects.get(pk=request.pk).status != ProvisioningRequest.PENDING, timeout=120)
    request.refresh_from_db()
    assert request.status == ProvisioningRequest.SUCCEEDED
    assert request.attempts == 1
    token = request.network_token
    assert token.vault_token == card and token.correlation_id == "corr-async-1"

    [payload] = verified_webhooks(receiver, endpoint, 1)
    assert payload["type"] == "network_token.created"
    assert payload["data"]["correlationId"] == "corr-async-1"
    assert payload["data"]["tokenId"] == token.token_id
    body = receiver.requests[0].text
    assert VISA not in body
    assert token_number(token) not in body


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_async_request_for_a_declined_card_fails_with_a_failed_webhook_and_forgets_the_card(
    alice, receiver, webhooks_to, worker
):
    endpoint = webhooks_to(receiver)
    declined = declining_card("400000")
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-async-2", card=tsp.CardData(declined, 5, 2035)
    )
    request.refresh_from_db()
    assert request.card_ciphertext is not None  # kept, encrypted, until a worker takes it
    worker()

    wait_for(lambda: ProvisioningRequest.objects.get(pk=request.pk).status != ProvisioningRequest.PENDING, timeout=120)
    request.refresh_from_db()
    assert request.status == ProvisioningRequest.FAILED
    assert request.failure_code == "tokenizationDeclined"
    assert request.card_ciphertext is None
    assert not NetworkToken.objects.exists()

    [payload] = verified_webhooks(receiver, endpoint, 1)
    assert payload["type"] == "network_token.failed"
    assert payload["data"]["correlationId"] == "corr-async-2"
    assert payload["data"]["requestId"] == request.public_id
    assert payload["data"]["errorName"] == "tokenizationDeclined"
    assert declined not in receiver.requests[0].text


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_card_sent_in_the_request_is_stored_encrypted_and_destroyed_once_the_request_ends(
    alice, receiver, webhooks_to, worker
):
    endpoint = webhooks_to(receiver)
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-async-3", card=tsp.CardData(MASTERCARD, 5, 2035, "Sherlock Holmes")
    )
    request.refresh_from_db()
    ciphertext = bytes(request.card_ciphertext)
    assert MASTERCARD.encode() not in ciphertext
    assert (
        key_ring()
        .decrypt(request.key_version, ciphertext, associated_data=request.associated_data())
        .startswith(MASTERCARD)
    )
    worker()

    wait_for(lambda: ProvisioningRequest.objects.get(pk=request.pk).status != ProvisioningRequest.PENDING, timeout=120)
    request.refresh_from_db()
    assert request.status == ProvisioningRequest.SUCCEEDED
    assert request.card_ciphertext is None
    assert request.network_token.card_last_digits == MASTERCARD[-4:]
    assert request.network_token.vault_token is None

    [payload] = verified_webhooks(receiver, endpoint, 1)
    assert payload["type"] == "network_token.created"
    assert payload["data"]["correlationId"] == "corr-async-3"
    assert MASTERCARD not in receiver.requests[0].text


# ------------------------------------------------------------------------------------------------------------
# Retries, eagerly in this process
# ------------------------------------------------------------------------------------------------------------
class ScriptedRandom(random.Random):
    """Random draws for a simulator (its ``rng``): ``random()`` answers the scripted draws, then draws that never
    fail."""

    def __init__(self, draws):
        super().__init__()
        self.draws = list(draws)

    def random(self):
        return self.draws.pop(0) if self.draws else 0.99


def run_until_it_ends(request) -> int:
    """What the workers and the sweeper do with a request, eagerly: an attempt, and each retry once it is due (its
    wait moved to now); returns how many attempts ran."""
    for attempt in range(1, 2 * services.ASYNC_MAX_ATTEMPTS):
        tasks.run_provisioning_request.apply(args=[request.pk])
        request.refresh_from_db()
        if request.status != ProvisioningRequest.PENDING:
            return attempt
        assert request.next_attempt_at > timezone.now()  # a transient failure: due again later, in the database
        assert request.claimed_until is None and request.claim == ""
        ProvisioningRequest.objects.filter(pk=request.pk).update(next_attempt_at=timezone.now())
    pytest.fail("the request never ended")


@pytest.mark.django_db
def test_an_async_request_whose_tsp_keeps_failing_ends_failed_after_every_retry(alice, settings):
    settings.TSP_FAILURE_RATE = 1.0
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-retry-1", vault_token=vault_token(alice)
    )

    assert run_until_it_ends(request) == services.ASYNC_MAX_ATTEMPTS

    assert request.status == ProvisioningRequest.FAILED
    assert request.failure_code == "networkUnavailable"
    assert request.attempts == services.ASYNC_MAX_ATTEMPTS
    assert request.network_token is None
    failed = Event.objects.get(merchant=alice, type="network_token.failed")
    assert failed.data["correlationId"] == "corr-retry-1"
    assert failed.data["errorName"] == "networkUnavailable"
    assert failed.data["requestId"] == request.public_id
    assert VISA not in json.dumps(failed.data)
    assert not Event.objects.filter(type="network_token.created").exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "first_failure, draws",
    [
        ("unavailable", [0.0, 0.9]),  # fails (< 0.5), and not as a timeout (>= 0.5)
        ("timeout", [0.0, 0.1]),  # fails, as a timeout
    ],
)
def test_an_async_request_retries_a_transient_failure_and_then_succeeds(alice, monkeypatch, first_failure, draws):
    # Visa's token service, as this process's simulators are configured (TSP_SIMULATOR), fails half of its calls:
    # the scripted draws make the first one fail as ``first_failure``.
    scripted = ScriptedRandom(draws)
    monkeypatch.setitem(tsp.SIMULATORS, "VISA", VisaProvider(rng=scripted, failure_rate=0.5))
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-retry-2", vault_token=vault_token(alice)
    )

    run_until_it_ends(request)

    assert scripted.draws == []  # the scripted failure happened
    assert request.status == ProvisioningRequest.SUCCEEDED
    assert request.attempts >= 2
    assert request.network_token is not None
    created = Event.objects.get(merchant=alice, type="network_token.created")
    assert created.data["correlationId"] == "corr-retry-2"
    assert not Event.objects.filter(type="network_token.failed").exists()


@pytest.mark.django_db
def test_an_async_request_waits_while_this_servers_keys_cannot_read_its_card_and_then_succeeds(alice, settings):
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-keys", card=tsp.CardData(VISA, 5, 2035)
    )
    # A worker started without the KEK the card's key is wrapped under (its HSM out of reach would do the same).
    data_kek = settings.VAULT_KEK
    settings.VAULT_KEK = new_key()

    tasks.run_provisioning_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == ProvisioningRequest.PENDING  # not failed: the card is not the request's fault
    assert request.attempts == 0 and request.claim == ""
    assert request.next_attempt_at > timezone.now()
    assert not Event.objects.filter(type="network_token.failed").exists()

    settings.VAULT_KEK = data_kek  # the worker has it again
    ProvisioningRequest.objects.filter(pk=request.pk).update(next_attempt_at=timezone.now())
    tasks.run_provisioning_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == ProvisioningRequest.SUCCEEDED and request.attempts == 1


@pytest.mark.django_db
def test_a_request_whose_worker_died_mid_attempt_is_queued_again_by_the_sweeper_once_its_claim_runs_out(
    alice, broker, django_capture_on_commit_callbacks
):
    request = services.provisioning_request_create(
        merchant=alice, correlation_id="corr-died", card=tsp.CardData(VISA, 5, 2035)
    )
    # A worker claimed the attempt and was killed; its message was taken, its claim still runs.
    ProvisioningRequest.objects.filter(pk=request.pk).update(
        attempts=1, claim="dead-worker", queued_until=None, claimed_until=timezone.now() + timedelta(seconds=60)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.provisioning_requests_sweep() == 0  # its worker may still be at it
    tasks.run_provisioning_request.apply(args=[request.pk])  # a late duplicate message: not its turn either
    assert ProvisioningRequest.objects.get(pk=request.pk).attempts == 1

    ProvisioningRequest.objects.filter(pk=request.pk).update(claimed_until=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.provisioning_requests_sweep() == 1
        assert services.provisioning_requests_sweep() == 0  # queued once, not at every sweep
    assert broker.args_of("run_provisioning_request") == [(request.pk,)]
    tasks.run_provisioning_request.apply(args=[request.pk])

    request.refresh_from_db()
    assert request.status == ProvisioningRequest.SUCCEEDED and request.attempts == 2
    assert request.card_ciphertext is None and request.claimed_until is None
