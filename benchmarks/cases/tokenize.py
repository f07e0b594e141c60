"""``POST /tokens`` with a new card per request vs ``POST /bench/bare`` on the same gunicorn, through wrk.

The bare endpoint authenticates the same API key and renders a constant: the ratio is the share of the server's
capacity left once a card is validated, encrypted, fingerprinted, stored and its event written.
"""

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import alternate

TARGET = 0.6


def run(ctx: Context) -> dict:
    s = ctx.sizes
    _, api_key = seed.merchant_with_key("Bench tokenize")
    base = {"BENCH_API_KEY": api_key}
    with ctx.run.gunicorn(database=ctx.main_db, workers=ctx.cores, log="tokenize-gunicorn") as url:
        loads = alternate(
            {
                "bare": (f"{url}/bench/bare", lambda: {**base, "BENCH_MODE": "bare", "BENCH_PREFIX": ctx.prefix()}),
                # A fresh prefix per wrk run: its counters start again at 1, the cards must not.
                "tokenize": (f"{url}/tokens", lambda: {**base, "BENCH_MODE": "new", "BENCH_PREFIX": ctx.prefix()}),
            },
            rounds=s.wrk_rounds,
            seconds=s.wrk_seconds,
            warmup=s.wrk_warmup,
            connections=s.wrk_connections,
            threads=2,
            log=ctx.run.logs / "tokenize-wrk.log",
        )
    bare, tokenize = loads["bare"].figures(), loads["tokenize"].figures()
    ratio = (
        round(tokenize["requests_per_second"] / bare["requests_per_second"], 3) if bare["requests_per_second"] else None
    )
    notes = []
    if set(tokenize["statuses"]) != {"201"}:
        notes.append(f"tokenize answered {tokenize['statuses']} (all should be 201)")
    if set(bare["statuses"]) != {"200"}:
        notes.append(f"bare answered {bare['statuses']} (all should be 200)")
    return {
        "status": "ok",
        "tokenize": tokenize,
        "bare": bare,
        "ratio": ratio,
        "target": f">= {TARGET}",
        "met": verdict(ratio, at_least=TARGET),
        "config": {
            "gunicorn_sync_workers": ctx.cores,
            "connections": s.wrk_connections,
            "wrk_threads": 2,
            "merchant_webhook_endpoints": 0,  # token.created events are written; no delivery is queued
            "rounds": s.wrk_rounds,
            "seconds_per_round": s.wrk_seconds,
            "warmup_seconds": s.wrk_warmup,
        },
        "notes": notes,
    }
