"""An async network-token batch of ``batch`` vault tokens, TSP latency 0, one Celery worker with 2 processes
plus ``celery beat`` (the dispatcher runs every second, and after each chunk of items a worker finishes), on the
run's Redis.

tokens/s = items finished / (batch completed_at - batch created_at). The cards are spread over six issuers of the
seeded registry, whose limits are set to ``issuer_rate`` calls a second; the highest call rate each issuer saw
is the most ``called_at`` moments (the instant each TSP call started) found in any one-second window.
"""

import time
from collections import Counter, defaultdict
from datetime import timedelta

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import BenchError

TARGET = 500
# One BIN inside each of six seeded issuers' ranges (networks/migrations/0002_seed_issuers.py).
BINS = ("444433", "400001", "450000", "555555", "520000", "230000")
# The simulator declines cards ending 0002 and holds those ending 0036 for a step-up (networks/tsp/base.py).
SPECIAL_SUFFIXES = ("0002", "0036")


def batch_cards(count: int):
    """``count`` card numbers, round-robin over BINS, none that the simulator declines or holds for a step-up."""
    n = 0
    produced = 0
    while produced < count:
        for bin_ in BINS:
            number = seed.card_number(bin_, "9", n)
            if not number.endswith(SPECIAL_SUFFIXES) and produced < count:
                produced += 1
                yield number
        n += 1


def highest_rate(moments: list) -> int:
    """The most moments found in any half-open one-second window."""
    moments = sorted(moments)
    best, start = 0, 0
    for end, moment in enumerate(moments):
        while moment - moments[start] >= timedelta(seconds=1):
            start += 1
        best = max(best, end - start + 1)
    return best


def run(ctx: Context) -> dict:
    from networks import services
    from networks.models import Batch, BatchItem, Issuer
    from vault.models import Token

    s = ctx.sizes
    merchant, _ = seed.merchant_with_key("Bench batch")
    seed.tokens_copy(merchant=merchant, numbers=batch_cards(s.batch), count=s.batch)
    tokens = list(Token.objects.filter(merchant=merchant).select_related("merchant").order_by("pk"))
    entries = [services.BatchEntry(token_reference=t.reference, vault_token=t) for t in tokens]
    Issuer.objects.update(rate_limit_per_second=s.issuer_rate, next_call_at=None)

    with ctx.run.celery(database=ctx.main_db, concurrency=2, log="batch", beat=True):
        started = time.monotonic()
        batch = services.batch_create(merchant=merchant, entries=entries)
        created_seconds = time.monotonic() - started
        deadline = time.monotonic() + s.timeout
        while time.monotonic() < deadline:
            batch.refresh_from_db()
            if batch.status == Batch.COMPLETED:
                break
            time.sleep(0.2)
        timed_out = batch.status != Batch.COMPLETED
    items = BatchItem.objects.filter(batch=batch)
    statuses = Counter(items.values_list("status", flat=True))
    last_finish = batch.completed_at
    if timed_out:
        # Report what was done in the time given rather than nothing.
        finished_at = max((f for f in items.values_list("finished_at", flat=True) if f), default=None)
        if finished_at is None:
            raise BenchError(f"no batch item finished within {s.timeout:g} s")
        last_finish = finished_at
    elapsed = (last_finish - batch.created_at).total_seconds()
    done = statuses[BatchItem.SUCCEEDED] + statuses[BatchItem.FAILED]
    rate = round(done / elapsed, 1) if elapsed > 0 else None

    calls = defaultdict(list)
    for issuer_id, called_at in items.exclude(called_at=None).values_list("issuer_id", "called_at"):
        calls[issuer_id].append(called_at)
    issuers = {i.pk: i for i in Issuer.objects.filter(pk__in=calls)}
    per_issuer = [
        {
            "issuer": issuers[pk].name,
            "limit_per_second": issuers[pk].rate_limit_per_second,
            "highest_calls_in_one_second": highest_rate(moments),
            "calls": len(moments),
        }
        for pk, moments in sorted(calls.items())
    ]
    respected = all(r["highest_calls_in_one_second"] <= r["limit_per_second"] for r in per_issuer)
    busiest = max(
        per_issuer, key=lambda row: row["highest_calls_in_one_second"] / row["limit_per_second"], default=None
    )
    return {
        "status": "ok",
        "tokens_per_second": rate,
        "target": f">= {TARGET} tokens/s; no issuer above its limit",
        "met": bool(verdict(rate, at_least=TARGET)) and respected,
        "rate_met": verdict(rate, at_least=TARGET),
        "items": s.batch,
        "statuses": dict(statuses),
        "seconds": round(elapsed, 2),
        "timed_out": timed_out,
        "batch_create_seconds": round(created_seconds, 2),
        "highest_issuer_rate": busiest and busiest["highest_calls_in_one_second"],
        "highest_issuer_limit": busiest and busiest["limit_per_second"],
        "issuer_limits_respected": respected,
        "per_issuer": per_issuer,
        "config": {
            "worker_processes": 2,
            "pool": "prefork",
            "beat": True,
            "tsp_latency_ms": 0,
            "issuer_rate_limit": s.issuer_rate,
        },
    }
