"""Webhook deliveries to a receiver on loopback (``benchmarks.receiver``), one Celery worker with 2 processes.

Two phases, because one burst cannot give both figures honestly:

- **throughput**: ``webhook`` events are emitted (``event_emit``, the product's outbox, its messages queued to
  Redis) while no worker runs; then the worker starts and drains them. deliveries/s = deliveries / (last arrival -
  first arrival). The latency of these is mostly time spent waiting in the queue, so it is not reported.
- **latency**: with the worker running, more events are emitted for ``webhook_latency_seconds`` at a steady rate,
  each in its own transaction: ``webhook_latency_rate`` a second, or half the throughput just measured if that is
  less (a queue fed faster than it drains measures the queue); p50/p99 of arrival - ``Event.created_at``.
"""

import json
import math
import statistics
import time
import urllib.request

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import PYTHON, BenchError, free_port, wait_until

TARGET = 500
EMIT_TRANSACTION = 500  # events per transaction while filling the queue


def _get(url: str):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _count(url: str) -> int:
    try:
        return _get(f"{url}/count")
    except OSError:
        return -1


def _emit(merchant, n: int):
    from notifications.services import event_emit

    return event_emit(merchant=merchant, type="token.created", data={"tokenId": f"BENCH{n:014d}", "bench": True})


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[max(0, math.ceil(p / 100 * len(values)) - 1)]  # nearest rank


def run(ctx: Context) -> dict:
    from django.db import transaction

    from notifications.models import Delivery, Event
    from notifications.services import endpoint_create

    s = ctx.sizes
    merchant, _ = seed.merchant_with_key("Bench webhooks")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with ctx.run.process(
        [PYTHON, "-m", "benchmarks.receiver", "--port", str(port)], database=ctx.main_db, log="webhook-receiver"
    ):
        wait_until(lambda: _count(url) >= 0, timeout=30, what="the webhook receiver")
        endpoint_create(merchant=merchant, url=f"{url}/hook", event_types=["token.created"])

        # Throughput: fill the queue, then let the worker drain it.
        started = time.monotonic()
        for first in range(0, s.webhook, EMIT_TRANSACTION):
            with transaction.atomic():
                for n in range(first, min(s.webhook, first + EMIT_TRANSACTION)):
                    _emit(merchant, n)
        emit_seconds = time.monotonic() - started

        with ctx.run.celery(database=ctx.main_db, concurrency=2, log="webhook"):
            wait_until(
                lambda: _count(url) >= s.webhook,
                timeout=s.timeout,
                interval=0.2,
                what=f"{s.webhook} webhook deliveries",
            )
            burst = _get(f"{url}/dump")

            burst_first = {}
            for webhook_id, arrived in burst:
                burst_first.setdefault(webhook_id, arrived)
            burst_times = sorted(burst_first.values())
            span = burst_times[-1] - burst_times[0] if len(burst_times) > 1 else 0
            rate = round((len(burst_times) - 1) / span, 1) if span > 0 else None

            # Latency: a steady trickle the worker can keep up with.
            offered = min(s.webhook_latency_rate, rate / 2 if rate else s.webhook_latency_rate)
            count = max(1, round(offered * s.webhook_latency_seconds))
            latency_events = []
            clock = time.monotonic()
            for i in range(count):
                pause = clock + i / offered - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                latency_events.append(_emit(merchant, s.webhook + i))
            wait_until(
                lambda: _count(url) >= s.webhook + count,
                timeout=s.timeout,
                interval=0.2,
                what="the latency phase's deliveries",
            )
            arrivals = _get(f"{url}/dump")

    first_arrival = {}
    for webhook_id, arrived in arrivals:
        first_arrival.setdefault(webhook_id, arrived)
    latencies = []
    for event in latency_events:
        if event.public_id not in first_arrival:
            raise BenchError(f"event {event.public_id} never arrived")
        latencies.append((first_arrival[event.public_id] - event.created_at.timestamp()) * 1000)
    delivered = Delivery.objects.filter(endpoint__merchant=merchant, status=Delivery.SUCCEEDED).count()
    events = Event.objects.filter(merchant=merchant).count()
    return {
        "status": "ok",
        "deliveries_per_second": rate,
        "target": f">= {TARGET} deliveries/s",
        "met": verdict(rate, at_least=TARGET),
        "deliveries": len(burst_times),
        "seconds": round(span, 2),
        "latency_p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "latency_mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "latency_events": len(latencies),
        "latency_offered_per_second": round(offered, 1),
        "duplicates_at_receiver": len(arrivals) - len(first_arrival),
        "events": events,
        "deliveries_succeeded": delivered,
        "emit_seconds": round(emit_seconds, 2),
        "config": {"worker_processes": 2, "pool": "prefork", "receiver": "asyncio, keep-alive, 204 at once"},
    }
