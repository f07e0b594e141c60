"""Batches of network-token requests: bad items fail at once, the dispatcher releases items fairly across issuers and
within their rate limits, and two real workers on the real broker provision a skewed batch of 1,000 cards without
a spike on any issuer and without starving the small ones.

alice is a merchant tokenizing her card-on-file base in bulk.
"""

import math
import statistics
from collections import Counter
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from networks import scheduling, services
from networks.models import Batch, BatchItem, Issuer, NetworkToken
from notifications.models import Event
from tests.cards import declining_card, distinct_card_numbers, step_up_card
from tests.conftest import (
    AMEX,
    DISCOVER,
    MASTERCARD,
    VISA,
    VISA_2,
    events_of,
    start_celery_worker,
    stop_celery_worker,
    wait_for,
)
from vault import services as vault_services
from vault.models import Token

BIG = "Baker Street Bank"
# The 10 %: 25 cards each at four other issuers, on three networks.
SMALL = {
    "Visa Test Issuer": ("400", 16, ""),
    "Maple Mutual": ("555555", 16, ""),
    "Two Series Trust": ("2300", 16, ""),
    "Centurion Test Issuer": ("3700", 15, "cardholder@example.com"),
}


def vault_tokens(merchant, numbers):
    # One transaction for the lot: a thousand commits to SQLite would cost more than the batch itself.
    with transaction.atomic():
        return [
            vault_services.card_tokenize(
                merchant=merchant, card=vault_services.Card(number, "Card Holder", 5, 2035)
            ).token
            for number in numbers
        ]


def entries_for(tokens, email=""):
    return [services.BatchEntry(token_reference=token.token_id, vault_token=token, email=email) for token in tokens]


def set_rate(name: str, rate: int) -> Issuer:
    Issuer.objects.filter(name=name).update(rate_limit_per_second=rate, next_call_at=None)
    return Issuer.objects.get(name=name)


def most_calls_in_one_second(moments) -> int:
    """The highest number of moments in any window [t, t + 1 s) (windows starting at a call are enough)."""
    moments = sorted(moments)
    most, end = 0, 0
    for start, moment in enumerate(moments):
        while end < len(moments) and moments[end] < moment + timedelta(seconds=1):
            end += 1
        most = max(most, end - start)
    return most


# ------------------------------------------------------------------------------------------------------------
# Accepting a batch
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_bad_items_fail_at_once_with_their_reason_while_the_rest_go_on(alice):
    visa, discover, amex, mastercard = vault_tokens(alice, [VISA, DISCOVER, AMEX, MASTERCARD])

    batch = services.batch_create(
        merchant=alice,
        entries=[
            services.BatchEntry(token_reference=visa.token_id, vault_token=visa),
            services.BatchEntry(token_reference="tok_does_not_exist", vault_token=None),
            services.BatchEntry(token_reference=discover.token_id, vault_token=discover),
            services.BatchEntry(token_reference=amex.token_id, vault_token=amex),  # Amex without an email
            services.BatchEntry(token_reference=mastercard.token_id, vault_token=mastercard),
        ],
    )

    items = list(batch.items.order_by("index"))
    assert [item.status for item in items] == ["PENDING", "FAILED", "FAILED", "FAILED", "PENDING"]
    assert items[1].failure_code == "resourceNotFound"
    assert items[1].token_reference == "tok_does_not_exist"
    assert items[2].failure_code == "networkNotSupported"
    assert items[3].failure_code and "email" in items[3].failure_reason.lower()
    assert all(item.failure_reason and item.finished_at for item in items[1:4])
    assert items[0].issuer.name == BIG and items[4].issuer.name == "Maple Mutual"
    batch.refresh_from_db()
    assert batch.total == 5
    assert batch.status != Batch.COMPLETED


@pytest.mark.django_db
def test_a_batch_of_only_bad_items_is_completed_at_once(alice):
    [discover] = vault_tokens(alice, [DISCOVER])

    batch = services.batch_create(
        merchant=alice,
        entries=[
            services.BatchEntry(token_reference="tok_gone", vault_token=None),
            services.BatchEntry(token_reference=discover.token_id, vault_token=discover),
        ],
    )

    batch.refresh_from_db()
    assert batch.status == Batch.COMPLETED
    assert batch.completed_at is not None
    assert set(batch.items.values_list("status", flat=True)) == {BatchItem.FAILED}


# ------------------------------------------------------------------------------------------------------------
# The dispatcher, called directly; the broker (outside the product) records the chunks (item ids) it was sent
# ------------------------------------------------------------------------------------------------------------
def chunks_sent(broker) -> list[list[int]]:
    """The chunks (item ids) the dispatcher sent to the broker, oldest first."""
    return [chunk for (chunk,) in broker.args_of("run_batch_items")]


def flat(chunks) -> list[int]:
    return [item_id for chunk in chunks for item_id in chunk]


@pytest.mark.django_db
def test_the_dispatcher_releases_two_seconds_of_calls_per_issuer_in_chunks_interleaving_issuers(alice, broker):
    rates = {BIG: 8, "Maple Mutual": 4, "Visa Test Issuer": 2}
    issuers = {name: set_rate(name, rate) for name, rate in rates.items()}
    tokens = (
        vault_tokens(alice, distinct_card_numbers("444433", 30))
        + vault_tokens(alice, distinct_card_numbers("555555", 10))
        + vault_tokens(alice, distinct_card_numbers("400", 10))
    )
    batch = services.batch_create(merchant=alice, entries=entries_for(tokens))

    released = services.batches_dispatch()

    chunks = chunks_sent(broker)
    assert released == len(flat(chunks))
    items = BatchItem.objects.in_bulk(flat(chunks))
    for name, rate in rates.items():
        assert [items[pk].issuer.name for pk in flat(chunks)].count(name) == rate * scheduling.RELEASE_HORIZON_SECONDS
    # Each chunk is half a second of one issuer's calls.
    order = []
    for chunk in chunks:
        [name] = {items[pk].issuer.name for pk in chunk}
        assert len(chunk) == rates[name] // 2, (name, len(chunk))
        order.append(name)
    # Interleaved: an issuer's chunks follow each other only once the other issuers have none left to release.
    for position, (this, following) in enumerate(zip(order, order[1:], strict=False)):
        if this == following:
            assert set(order[position:]) == {this}, order
    assert set(order[: len(rates)]) == set(rates)
    # Within an issuer, first come first served.
    for issuer in issuers.values():
        indexes = [items[pk].index for pk in flat(chunks) if items[pk].issuer_id == issuer.pk]
        assert indexes == sorted(indexes)
    assert all(items[pk].status == BatchItem.QUEUED and items[pk].queued_at for pk in flat(chunks))
    batch.refresh_from_db()
    assert batch.status == Batch.RUNNING

    # Nothing more while two seconds' worth is in flight.
    broker.clear()
    assert services.batches_dispatch() == 0 and chunks_sent(broker) == []

    # Three of the big issuer's calls finish: room for three more of its items, and for nobody else's.
    finished = [pk for pk in items if items[pk].issuer_id == issuers[BIG].pk][:3]
    BatchItem.objects.filter(pk__in=finished).update(status=BatchItem.SUCCEEDED, finished_at=timezone.now())
    services.batches_dispatch()
    assert [BatchItem.objects.get(pk=pk).issuer.name for pk in flat(chunks_sent(broker))] == [BIG] * 3


@pytest.mark.django_db
def test_the_dispatcher_queues_no_more_than_the_workers_are_running(alice, broker):
    set_rate(BIG, 1000)  # the rate leaves room for 2,000 in flight: the workers' pace must set it
    batch = services.batch_create(
        merchant=alice,
        entries=entries_for(vault_tokens(alice, distinct_card_numbers("444433", 3 * scheduling.MIN_QUEUED_ITEMS))),
    )

    assert services.batches_dispatch() == scheduling.MIN_QUEUED_ITEMS
    assert all(len(chunk) == scheduling.CHUNK_MAX_ITEMS for chunk in chunks_sent(broker))
    assert services.batches_dispatch() == 0  # the workers have not taken them yet

    # Two workers take the queued chunks: as much again may wait for them.
    BatchItem.objects.filter(batch=batch, status=BatchItem.QUEUED).update(
        status=BatchItem.RUNNING, called_at=timezone.now()
    )
    assert services.batches_dispatch() == scheduling.MIN_QUEUED_ITEMS
    assert services.batches_dispatch() == 0


@pytest.mark.django_db
def test_the_dispatcher_advances_two_batches_of_one_issuer_together(alice, broker):
    set_rate(BIG, 3)
    numbers = distinct_card_numbers("444433", 20)
    first = services.batch_create(merchant=alice, entries=entries_for(vault_tokens(alice, numbers[:10])))
    second = services.batch_create(merchant=alice, entries=entries_for(vault_tokens(alice, numbers[10:])))

    services.batches_dispatch()

    items = BatchItem.objects.in_bulk(flat(chunks_sent(broker)))
    assert [(items[pk].batch_id, items[pk].index) for pk in flat(chunks_sent(broker))] == [
        (first.pk, 0),
        (second.pk, 0),
        (first.pk, 1),
        (second.pk, 1),
        (first.pk, 2),
        (second.pk, 2),
    ]


@pytest.mark.django_db
def test_the_dispatcher_puts_items_whose_message_was_lost_back_to_pending(alice, broker):
    set_rate(BIG, 1)  # room for two in flight
    batch = services.batch_create(
        merchant=alice, entries=entries_for(vault_tokens(alice, distinct_card_numbers("444433", 4)))
    )
    lost, fresh_1, fresh_2, waiting = batch.items.order_by("index")
    now = timezone.now()
    BatchItem.objects.filter(pk=lost.pk).update(
        status=BatchItem.QUEUED, queued_at=now - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS + 5)
    )
    BatchItem.objects.filter(pk__in=[fresh_1.pk, fresh_2.pk]).update(status=BatchItem.QUEUED, queued_at=now)

    services.batches_dispatch()

    statuses = dict(batch.items.values_list("pk", "status"))
    assert statuses[lost.pk] == BatchItem.PENDING
    assert statuses[fresh_1.pk] == statuses[fresh_2.pk] == BatchItem.QUEUED  # their messages are still on the way
    assert statuses[waiting.pk] == BatchItem.PENDING
    assert chunks_sent(broker) == []  # the two fresh ones fill the issuer's room


@pytest.mark.django_db
def test_an_item_whose_message_was_lost_is_sent_again(alice, broker):
    set_rate(BIG, 5)
    batch = services.batch_create(
        merchant=alice, entries=entries_for(vault_tokens(alice, distinct_card_numbers("444433", 2)))
    )
    lost, crashed = batch.items.order_by("index")
    long_ago = timezone.now() - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS + 5)
    BatchItem.objects.filter(pk=lost.pk).update(status=BatchItem.QUEUED, queued_at=long_ago)
    # A worker died in the middle of this one.
    BatchItem.objects.filter(pk=crashed.pk).update(
        status=BatchItem.RUNNING, queued_at=long_ago, called_at=long_ago, claim="a-dead-workers-claim"
    )

    services.batches_dispatch()

    assert flat(chunks_sent(broker)) == [lost.pk, crashed.pk]
    for item in BatchItem.objects.filter(pk__in=flat(chunks_sent(broker))):
        assert item.status == BatchItem.QUEUED
        assert item.queued_at > long_ago + timedelta(seconds=scheduling.ITEM_LEASE_SECONDS)


@pytest.mark.django_db
def test_items_whose_worker_stopped_go_back_counted_and_are_then_sent_alone(alice, broker):
    # A worker killed while holding a chunk (perhaps by one of its items: out of memory, a crash in native code).
    # Its items come back, each in a chunk of its own, so that an item killing its worker takes no other with it.
    set_rate(BIG, 20)  # chunks of ten
    batch = services.batch_create(
        merchant=alice, entries=entries_for(vault_tokens(alice, distinct_card_numbers("444433", 6)))
    )
    items = list(batch.items.order_by("index"))
    held = [item.pk for item in items[:3]]
    long_ago = timezone.now() - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS + 5)
    BatchItem.objects.filter(pk__in=held).update(
        status=BatchItem.RUNNING, queued_at=long_ago, called_at=long_ago, claim="a-dead-workers-claim"
    )

    services.batches_dispatch()

    assert chunks_sent(broker) == [[item.pk for item in items[3:]], *([pk] for pk in held)]
    assert dict(batch.items.values_list("pk", "abandoned")) == {
        **{pk: 1 for pk in held},
        **{item.pk: 0 for item in items[3:]},
    }


@pytest.mark.django_db
def test_an_item_whose_worker_stops_a_third_time_fails_and_its_batch_completes(alice, api, broker):
    batch = services.batch_create(
        merchant=alice, entries=entries_for(vault_tokens(alice, distinct_card_numbers("444433", 2)))
    )
    deadly, fine = batch.items.order_by("index")
    long_ago = timezone.now() - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS + 5)
    for stop in range(1, services.BATCH_ITEM_MAX_ABANDONED + 1):
        BatchItem.objects.filter(pk=deadly.pk).update(status=BatchItem.RUNNING, called_at=long_ago, claim=f"w{stop}")
        services.batches_dispatch()
        deadly.refresh_from_db()
        assert deadly.abandoned == stop
        assert deadly.status == (BatchItem.FAILED if stop == services.BATCH_ITEM_MAX_ABANDONED else BatchItem.QUEUED)
    services.batch_items_run(item_ids=[fine.pk])

    answer = api.get(f"/network-tokens/batches/{batch.public_id}").json()

    assert answer["status"] == Batch.COMPLETED
    assert answer["counts"]["FAILED"] == 1 and answer["counts"]["SUCCEEDED"] == 1
    assert answer["failedItems"] == [
        {
            "index": 0,
            "token": deadly.token_reference,
            "errorName": "internalErrorOccurred",
            "message": f"The worker provisioning it stopped {services.BATCH_ITEM_MAX_ABANDONED} times",
        }
    ]


# ------------------------------------------------------------------------------------------------------------
# Every item is an asynchronous request of its own: its outcome is a webhook under its own correlation id
# ------------------------------------------------------------------------------------------------------------
def run_batch(broker) -> None:
    """What the dispatcher and the workers do with the pending items, in this process."""
    while services.batches_dispatch():
        chunks = chunks_sent(broker)
        broker.clear()
        for chunk in chunks:
            services.batch_items_run(item_ids=chunk)


@pytest.mark.django_db
def test_every_item_of_a_batch_ends_in_a_webhook_under_its_own_correlation_id(alice, api, broker):
    visa, mastercard, declined, discover = vault_tokens(alice, [VISA, MASTERCARD, declining_card(), DISCOVER])
    items = [
        {"token": visa.token_id, "correlationId": "order-1"},
        {"token": mastercard.token_id},
        {"token": declined.token_id, "correlationId": "order-3"},
        {"token": discover.token_id, "correlationId": "order-4"},
        {"token": "ABCDEFGHJKLMNPQRSTU", "correlationId": "order-5"},
    ]
    accepted = api.post("/network-tokens/batches", {"items": items}, format="json")
    assert accepted.status_code == 202, accepted.content
    batch_id = accepted.json()["id"]

    run_batch(broker)

    created = {data["index"]: data for data in events_of(api, "network_token.created")}
    failed = {data["index"]: data for data in events_of(api, "network_token.failed")}
    assert sorted(created) == [0, 1] and sorted(failed) == [2, 3, 4]
    assert [created[0]["correlationId"], created[1]["correlationId"]] == ["order-1", batch_id]
    assert {data["batchId"] for data in [*created.values(), *failed.values()]} == {batch_id}
    assert created[0]["tokenId"] == NetworkToken.objects.get(vault_token=visa).token_id
    assert [(failed[i]["correlationId"], failed[i]["errorName"]) for i in (2, 3, 4)] == [
        ("order-3", "tokenizationDeclined"),
        ("order-4", "networkNotSupported"),
        ("order-5", "resourceNotFound"),
    ]
    assert all(failed[i]["message"] for i in failed)
    assert api.get(f"/network-tokens/batches/{batch_id}").json()["status"] == Batch.COMPLETED


@pytest.mark.django_db
def test_an_item_whose_worker_stopped_three_times_ends_in_a_failed_webhook(alice, api, broker):
    [token] = vault_tokens(alice, [VISA])
    batch = services.batch_create(
        merchant=alice,
        entries=[
            services.BatchEntry(token_reference=token.token_id, vault_token=token, correlation_id="order-9"),
        ],
    )
    long_ago = timezone.now() - timedelta(seconds=scheduling.ITEM_LEASE_SECONDS + 5)
    for stop in range(services.BATCH_ITEM_MAX_ABANDONED):
        BatchItem.objects.filter(batch=batch).update(status=BatchItem.RUNNING, called_at=long_ago, claim=f"w{stop}")
        services.batches_dispatch()

    [failed] = events_of(api, "network_token.failed")
    assert (failed["batchId"], failed["index"], failed["correlationId"]) == (batch.public_id, 0, "order-9")
    assert failed["errorName"] == "internalErrorOccurred"


@pytest.mark.django_db
def test_a_batch_item_needing_a_step_up_is_announced_once_the_network_activates_its_token(alice, api, broker):
    stepping, plain = vault_tokens(alice, [step_up_card("400000"), VISA])
    items = [{"token": stepping.token_id, "correlationId": "order-1"}, {"token": plain.token_id}]
    batch_id = api.post("/network-tokens/batches", {"items": items}, format="json").json()["id"]

    run_batch(broker)

    waiting = api.get(f"/network-tokens/batches/{batch_id}").json()
    assert waiting["status"] == Batch.COMPLETED  # every item got its answer from the TSP
    assert (waiting["counts"]["PENDING_ACTIVATION"], waiting["counts"]["SUCCEEDED"]) == (1, 1)
    assert [data["index"] for data in events_of(api, "network_token.created")] == [1]
    inactive = NetworkToken.objects.get(vault_token=stepping)
    assert inactive.status == NetworkToken.INACTIVE

    activated = api.post(f"/network-tokens/{inactive.token_id}/simulate-lifecycle", {"event": "ACTIVE"}, format="json")

    assert activated.status_code == 200
    assert api.get(f"/network-tokens/batches/{batch_id}").json()["counts"]["SUCCEEDED"] == 2
    announced = events_of(api, "network_token.created")[-1]
    assert (announced["index"], announced["correlationId"], announced["batchId"]) == (0, "order-1", batch_id)
    assert (announced["tokenId"], announced["status"]) == (inactive.token_id, "ACTIVE")


@pytest.mark.django_db
def test_a_batch_item_whose_token_is_deleted_before_activation_fails(alice, api, broker):
    [stepping] = vault_tokens(alice, [step_up_card("400000")])
    batch_id = api.post("/network-tokens/batches", {"items": [{"token": stepping.token_id}]}, format="json").json()[
        "id"
    ]
    run_batch(broker)
    inactive = NetworkToken.objects.get(vault_token=stepping)

    assert api.delete(f"/network-tokens/{inactive.token_id}").status_code == 204

    batch = api.get(f"/network-tokens/batches/{batch_id}").json()
    assert batch["counts"]["FAILED"] == 1 and batch["counts"]["PENDING_ACTIVATION"] == 0
    assert [item["errorName"] for item in batch["failedItems"]] == ["tokenNotActivated"]
    [failed] = events_of(api, "network_token.failed")
    assert (failed["batchId"], failed["index"], failed["tokenId"]) == (batch_id, 0, inactive.token_id)
    assert events_of(api, "network_token.created") == []


@pytest.mark.django_db
def test_a_batch_item_correlation_id_of_37_characters_answers_400_at_it(alice, api):
    [token] = vault_tokens(alice, [VISA])

    response = api.post(
        "/network-tokens/batches", {"items": [{"token": token.token_id, "correlationId": "c" * 37}]}, format="json"
    )

    assert response.status_code == 400
    assert [(e["errorName"], e["jsonPath"]) for e in response.json()["validationErrors"]] == [
        ("stringIsTooLong", "$.items[0].correlationId"),
    ]


@pytest.mark.django_db
def test_cards_of_banks_outside_the_registry_are_scheduled_per_bin_not_lumped_together(alice, broker):
    # An operator narrows a range, leaving 48xxxx-49xxxx unregistered: two unknown banks, one card-on-file base.
    Issuer.objects.filter(name="Northern Lights Credit Union").update(bin_high="479999")
    first_bank = distinct_card_numbers("490000", 30)
    second_bank = distinct_card_numbers("485555", 10)
    batch = services.batch_create(merchant=alice, entries=entries_for(vault_tokens(alice, first_bank + second_bank)))

    issuers = {item.issuer for item in batch.items.select_related("issuer")}
    assert {(issuer.bin_low, issuer.bin_high, issuer.registered) for issuer in issuers} == {
        ("490000", "490000", False),
        ("485555", "485555", False),
    }
    Issuer.objects.filter(bin_low="490000").update(rate_limit_per_second=5)  # the first bank's limit, set by staff

    services.batches_dispatch()

    # The second bank's items all go at once beside the first's; the first bank gets two seconds of its own rate.
    by_bin = {item.pk: item.issuer.bin_low for item in batch.items.select_related("issuer")}
    released = [by_bin[pk] for pk in flat(chunks_sent(broker))]
    assert released.count("485555") == 10
    assert released.count("490000") == 5 * scheduling.RELEASE_HORIZON_SECONDS


# ------------------------------------------------------------------------------------------------------------
# What a batch item records: when its TSP call started and when it finished (the fairness checks below read them)
# ------------------------------------------------------------------------------------------------------------
def queued_item(merchant, number=VISA) -> BatchItem:
    batch = services.batch_create(merchant=merchant, entries=entries_for(vault_tokens(merchant, [number])))
    item = batch.items.get()
    BatchItem.objects.filter(pk=item.pk).update(status=BatchItem.QUEUED, queued_at=timezone.now())
    return item


@pytest.mark.django_db
def test_a_batch_item_records_its_call_start_after_waiting_for_the_issuers_slot(alice):
    issuer = set_rate(BIG, 2)
    item = queued_item(alice)
    scheduling.reserve_call(issuer)  # another worker's call takes the slot now: this item's call is 0.5 s later
    issuer.refresh_from_db()
    earliest_start = issuer.next_call_at

    services.batch_items_run(item_ids=[item.pk])

    item.refresh_from_db()
    assert item.status == BatchItem.SUCCEEDED
    assert item.called_at >= earliest_start


@pytest.mark.django_db
def test_a_batch_item_records_its_finish_after_the_tsp_answered(alice, settings):
    settings.TSP_LATENCY_MS = "200"
    item = queued_item(alice)

    services.batch_items_run(item_ids=[item.pk])

    item.refresh_from_db()
    assert item.status == BatchItem.SUCCEEDED
    assert item.finished_at >= item.network_token.created_at  # the token is stored once the TSP answered
    assert item.finished_at - item.called_at >= timedelta(milliseconds=200)


# ------------------------------------------------------------------------------------------------------------
# A worker running a chunk
# ------------------------------------------------------------------------------------------------------------
def released(batch) -> list[int]:
    waiting = batch.items.filter(status=BatchItem.PENDING).order_by("index")
    ids = list(waiting.values_list("pk", flat=True))
    BatchItem.objects.filter(pk__in=ids).update(status=BatchItem.QUEUED, queued_at=timezone.now())
    return ids


@pytest.mark.django_db
def test_a_chunk_ends_its_items_and_completes_the_batch_with_the_last_one(alice):
    tokens = vault_tokens(alice, [VISA, MASTERCARD, declining_card()])
    batch = services.batch_create(
        merchant=alice,
        entries=entries_for(tokens)
        + [
            services.BatchEntry(token_reference="tok_gone", vault_token=None),
        ],
    )

    assert services.batch_items_run(item_ids=released(batch)) == 3

    batch.refresh_from_db()
    assert batch.status == Batch.COMPLETED and batch.completed_at and batch.finished == batch.total == 4
    statuses = list(batch.items.order_by("index").values_list("status", "failure_code"))
    assert statuses == [
        ("SUCCEEDED", ""),
        ("SUCCEEDED", ""),
        ("FAILED", "tokenizationDeclined"),
        ("FAILED", "resourceNotFound"),
    ]
    assert Event.objects.filter(merchant=alice, type="network_token.created").count() == 2


@pytest.mark.django_db
def test_a_chunk_sent_twice_is_run_once(alice):
    batch = services.batch_create(merchant=alice, entries=entries_for(vault_tokens(alice, [VISA, MASTERCARD])))
    ids = released(batch)

    assert services.batch_items_run(item_ids=ids) == 2
    assert services.batch_items_run(item_ids=ids) == 0

    assert NetworkToken.objects.filter(merchant=alice).count() == 2
    assert set(batch.items.values_list("attempts", flat=True)) == {1}
    assert Batch.objects.get(pk=batch.pk).finished == 2


@pytest.mark.django_db
def test_one_visa_card_twice_in_a_chunk_is_one_token_with_an_event_for_each_item(alice):
    # Visa gives the same tokenId for the same merchant, card and accountId.
    [token] = vault_tokens(alice, [VISA])
    batch = services.batch_create(merchant=alice, entries=entries_for([token, token]))

    services.batch_items_run(item_ids=released(batch))

    first, second = batch.items.order_by("index")
    assert first.status == second.status == BatchItem.SUCCEEDED
    assert first.network_token_id == second.network_token_id
    assert NetworkToken.objects.filter(merchant=alice).count() == 1
    assert Event.objects.filter(merchant=alice, type="network_token.created").count() == 2


@pytest.mark.django_db
def test_an_item_the_tsp_keeps_failing_goes_back_to_the_dispatcher_then_fails(alice, settings):
    settings.TSP_FAILURE_RATE = 1.0
    batch = services.batch_create(merchant=alice, entries=entries_for(vault_tokens(alice, [VISA])))

    for attempt in range(1, services.BATCH_ITEM_MAX_ATTEMPTS):
        services.batch_items_run(item_ids=released(batch))
        item = batch.items.get()
        assert (item.status, item.attempts) == (BatchItem.PENDING, attempt)
    services.batch_items_run(item_ids=released(batch))

    item = batch.items.get()
    assert item.status == BatchItem.FAILED and item.failure_code == "networkUnavailable"
    assert item.attempts == services.BATCH_ITEM_MAX_ATTEMPTS
    assert Batch.objects.get(pk=batch.pk).status == Batch.COMPLETED


@pytest.mark.django_db
def test_an_item_that_fails_unexpectedly_fails_alone_and_the_batch_completes(alice, caplog):
    tokens = vault_tokens(alice, [VISA, VISA_2, MASTERCARD])
    batch = services.batch_create(merchant=alice, entries=entries_for(tokens))
    # The second card's ciphertext no longer authenticates (damaged at rest): it cannot be read, and never will be.
    damaged = bytearray(Token.objects.get(pk=tokens[1].pk).pan_ciphertext)
    damaged[-1] ^= 0xFF
    Token.objects.filter(pk=tokens[1].pk).update(pan_ciphertext=bytes(damaged))

    assert services.batch_items_run(item_ids=released(batch)) == 3

    statuses = list(batch.items.order_by("index").values_list("status", "failure_code"))
    assert statuses == [("SUCCEEDED", ""), ("FAILED", "internalErrorOccurred"), ("SUCCEEDED", "")]
    assert Batch.objects.get(pk=batch.pk).status == Batch.COMPLETED
    assert "DecryptionFailed" in caplog.text and VISA_2 not in caplog.text


class DatabaseLostAt:
    """A database that goes away (``connection.execute_wrapper``, Django's hook on every query): the ``nth``
    statement matching ``sql`` (and among its parameters ``param``, if given) fails as a lost connection would; every
    other runs."""

    def __init__(self, sql: str, nth: int, *, param=None):
        self.sql, self.nth, self.param, self.seen = sql, nth, param, 0

    def __call__(self, execute, sql, params, many, context):
        if self.sql in sql and (self.param is None or self.param in (params or ())):
            self.seen += 1
            if self.seen == self.nth:
                raise DatabaseError("connection lost")
        return execute(sql, params, many, context)


@pytest.mark.django_db
def test_a_chunk_that_breaks_off_keeps_what_the_tsp_answered_and_hands_back_the_rest(alice):
    # Three cards of three issuers: each call first reserves a slot on its issuer's clock (an UPDATE of the issuer's
    # row), and the database goes away at the third issuer's. Not at the third UPDATE: a busy machine that lets a
    # card's slot pass reserves another for it.
    tokens = vault_tokens(alice, [VISA, VISA_2, MASTERCARD])
    batch = services.batch_create(merchant=alice, entries=entries_for(tokens))
    ids = released(batch)
    third = batch.items.get(index=2).issuer_id
    assert len(set(batch.items.values_list("issuer", flat=True))) == 3

    lost = DatabaseLostAt('UPDATE "networks_issuer"', nth=1, param=third)
    with connection.execute_wrapper(lost), pytest.raises(DatabaseError):
        services.batch_items_run(item_ids=ids)

    assert list(batch.items.order_by("index").values_list("status", flat=True)) == ["SUCCEEDED", "SUCCEEDED", "PENDING"]
    assert NetworkToken.objects.filter(merchant=alice).count() == 2


# ------------------------------------------------------------------------------------------------------------
# 1,000 cards, 90 % at one issuer, through two real workers
# ------------------------------------------------------------------------------------------------------------
# Low enough that the limits, not the workers, set the pace (two worker processes provision about 50 cards a
# second on a two-core machine): a limit the workers never reach would make the window check below vacuous.
BIG_RATE, SMALL_RATE = 50, 10


@pytest.mark.celery
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_skewed_batch_stays_under_every_issuers_rate_and_the_small_issuers_finish_early(alice):
    Issuer.objects.update(rate_limit_per_second=SMALL_RATE, next_call_at=None)
    Issuer.objects.filter(name=BIG).update(rate_limit_per_second=BIG_RATE)
    limits = dict(Issuer.objects.values_list("name", "rate_limit_per_second"))
    # Two worker processes, one with beat (the dispatcher every second); they start while the cards are stored.
    workers = [start_celery_worker(concurrency=4, beat=True), start_celery_worker(concurrency=4)]
    try:
        entries = entries_for(vault_tokens(alice, distinct_card_numbers("444433", 900)))
        for prefix, length, email in SMALL.values():
            entries += entries_for(vault_tokens(alice, distinct_card_numbers(prefix, 25, length=length)), email=email)
        assert len({entry.vault_token.pk for entry in entries}) == 1000

        batch = services.batch_create(merchant=alice, entries=entries)
        assert not batch.items.filter(status=BatchItem.FAILED).exists()
        # About 20 s alone; CI's loaded two cores (six pytest processes and their workers) took over 120 s once.
        wait_for(
            lambda: Batch.objects.get(pk=batch.pk).status == Batch.COMPLETED,
            timeout=300,
            interval=0.25,
            progress=lambda: f"items by status: {Counter(batch.items.values_list('status', flat=True))}",
        )
    finally:
        for worker in workers:
            stop_celery_worker(worker)

    items = list(batch.items.select_related("issuer"))
    assert {item.status for item in items} == {BatchItem.SUCCEEDED}
    assert all(item.attempts == 1 for item in items)
    # Each card provisioned exactly once: one network token (and one created event) per item, none shared.
    assert NetworkToken.objects.filter(merchant=alice).count() == 1000
    assert NetworkToken.objects.filter(merchant=alice).values("vault_token").distinct().count() == 1000
    assert len({item.network_token_id for item in items}) == 1000
    assert Event.objects.filter(merchant=alice, type="network_token.created").count() == 1000

    by_issuer: dict[str, list[BatchItem]] = {}
    for item in items:
        by_issuer.setdefault(item.issuer.name, []).append(item)
    assert {name: len(group) for name, group in by_issuer.items()} == {BIG: 900, **{name: 25 for name in SMALL}}

    # The small issuers are not queued behind the big one: each is done before half of the big one's cards are.
    big_median = statistics.median_low(item.finished_at for item in by_issuer[BIG])
    for name in SMALL:
        assert max(item.finished_at for item in by_issuer[name]) < big_median, name

    # No spike: no second holds more calls to an issuer than its limit, give or take what the measurement itself
    # adds: +1 because a window of one second can hold both ends of a run of calls spaced exactly 1/rate apart, and
    # 5 % because ``called_at`` is stamped by a worker thread after its slot, and on a loaded 2-core machine a
    # thread woken late bunches a few stamps together (52 against 50 seen once). Stamping before the wait, the bug
    # this test was written against, showed 56-58 against 50.
    busiest = {name: most_calls_in_one_second([item.called_at for item in group]) for name, group in by_issuer.items()}
    over = {
        name: f"{calls} calls in one second, limit {limits[name]}"
        for name, calls in busiest.items()
        if calls > limits[name] + 1 + math.ceil(limits[name] * 0.05)
    }
    assert not over, over
