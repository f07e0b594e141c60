"""``POST /forward`` of one stored card to a payment provider on loopback vs ``POST /bench/bare`` on the same gunicorn,
through wrk, rounds alternating.

The provider is the webhook benchmark's receiver (``benchmarks.receiver``: one asyncio process answering at once),
so what is measured is the vault's side of a forward: the API key, the card-data rate limit, the token and the
destination read, the card and the credential decrypted, the template filled in and escaped, a connection opened to
the vetted address, the request sent and answered, the answer masked, the ``Forward``, audit rows written. The bare
endpoint takes the same body and authenticates the same key: the ratio is the share of the server's capacity left
to forwards, which spend most of theirs waiting on a second HTTP exchange.
"""

import json
import os
import urllib.request
from pathlib import Path

from benchmarks import seed
from benchmarks.cases import Context
from benchmarks.harness import PYTHON, Load, free_port, wait_until, wrk

SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "forward.lua"
FORWARD_BODY = {
    "method": "POST",
    "path": "/payments",
    "headers": {"Content-Type": "application/json", "Authorization": "Bearer {{ destination.credentials.apiKey }}"},
    "body": '{"amount": 1250, "card": {"number": "{{ card.number }}", "exp_month": "{{ card.expiryMonth }}", '
    '"exp_year": "{{ card.expiryYear }}", "name": "{{ card.holderName }}"}}',
}


def _receiver_up(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/count", timeout=5):
            return True
    except OSError:
        return False


def _stored_card(ctx: Context, merchant) -> str:
    """A token of a card of this run, stored through the product's service; its tokenId."""
    from vault import services

    number = seed.card_number(ctx.prefix(), seed.STORED_DIGIT, 0)
    result = services.card_tokenize(
        merchant=merchant,
        card=services.Card(
            number=number,
            holder_name=seed.HOLDER,
            expiry_month=seed.EXPIRY[0],
            expiry_year=seed.EXPIRY[1],
            billing_address=None,
        ),
    )
    return result.token.token_id


def run(ctx: Context) -> dict:
    from core.audit import Actor
    from vault.forwarding import destination_create

    s = ctx.sizes
    merchant, api_key = seed.merchant_with_key("Bench forward")
    # Every forward releases card data to the provider: the card-data limit (60 a minute by default) would measure
    # itself. The highest a merchant can be given.
    merchant.card_data_rate_limit = "9999/second"
    merchant.save(update_fields=["card_data_rate_limit"])
    token_id = _stored_card(ctx, merchant)
    port = free_port()
    provider = f"http://127.0.0.1:{port}"
    with ctx.run.process(
        [PYTHON, "-m", "benchmarks.receiver", "--port", str(port)], database=ctx.main_db, log="forward-provider"
    ):
        wait_until(lambda: _receiver_up(provider), timeout=30, what="the payment provider")
        destination = destination_create(
            merchant=merchant,
            name="Loopback PSP",
            url=f"{provider}/v1",
            credentials={"apiKey": "sk_bench_provider"},
            actor=Actor("bench"),
        )
        body = json.dumps({**FORWARD_BODY, "destination": destination.public_id, "token": token_id})
        env = {**os.environ, "BENCH_API_KEY": api_key, "BENCH_BODY": body}
        log = ctx.run.logs / "forward-wrk.log"
        loads = {"bare": Load(), "forward": Load()}
        with ctx.run.gunicorn(database=ctx.main_db, workers=ctx.cores, log="forward-gunicorn") as url:
            targets = {"bare": f"{url}/bench/bare", "forward": f"{url}/forward"}
            if s.wrk_warmup:
                for target in targets.values():
                    wrk(
                        target,
                        seconds=s.wrk_warmup,
                        connections=s.wrk_connections,
                        threads=2,
                        env=env,
                        log=log,
                        script=SCRIPT,
                        timeout="40s",
                    )
            for _ in range(s.wrk_rounds):
                for name, target in targets.items():
                    loads[name].add(
                        wrk(
                            target,
                            seconds=s.wrk_seconds,
                            connections=s.wrk_connections,
                            threads=2,
                            env=env,
                            log=log,
                            script=SCRIPT,
                            timeout="40s",
                        )
                    )
    bare, forward = loads["bare"].figures(), loads["forward"].figures()
    ratio = (
        round(forward["requests_per_second"] / bare["requests_per_second"], 3) if bare["requests_per_second"] else None
    )
    notes = []
    if set(forward["statuses"]) != {"200"}:
        notes.append(f"forward answered {forward['statuses']} (all should be 200)")
    if set(bare["statuses"]) != {"200"}:
        notes.append(f"bare answered {bare['statuses']} (all should be 200)")
    return {
        "status": "ok",
        "forward": forward,
        "bare": bare,
        "ratio": ratio,
        "target": "reported",
        "met": None,
        "config": {
            "gunicorn_sync_workers": ctx.cores,
            "connections": s.wrk_connections,
            "wrk_threads": 2,
            "provider": "benchmarks.receiver on loopback (answers 204 at once)",
            "rounds": s.wrk_rounds,
            "seconds_per_round": s.wrk_seconds,
            "warmup_seconds": s.wrk_warmup,
        },
        "notes": notes,
    }
