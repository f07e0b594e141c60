"""The repeat-tokenize path (200: the card is already stored, same data) with a small and a large vault.

Two scratch databases hold ``retokenize_small`` and ``retokenize_large`` tokens of one merchant each, written with
COPY (valid ciphertexts and fingerprints, see ``benchmarks.seed``); one gunicorn serves each; wrk sends cards
drawn at random from the stored ones to each in turn. The identity lookup goes through the fingerprint index, so
p50 should hardly depend on the vault's size.
"""

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import PYTHON, ROOT, BenchError, alternate

TARGET = 1.3


def _seed(ctx: Context, database: str, count: int, prefix: str) -> dict:
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks.seed", "--tokens", str(count), "--prefix", prefix],
        cwd=ROOT,
        env=ctx.run.env(database=database),
        capture_output=True,
        text=True,
    )
    (ctx.run.logs / f"retokenize-seed-{database}.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise BenchError(f"seeding {count} tokens failed: {result.stderr[-500:]}")
    return {**json.loads(result.stdout.splitlines()[-1]), "seconds": time.monotonic() - started}


def run(ctx: Context) -> dict:
    s = ctx.sizes
    prefix = ctx.prefix()
    sizes = {"small": s.retokenize_small, "large": s.retokenize_large}
    databases = {name: ctx.database(f"retokenize_{name}") for name in sizes}
    with ThreadPoolExecutor(2) as pool:
        seeded = dict(
            zip(sizes, pool.map(lambda name: _seed(ctx, databases[name], sizes[name], prefix), sizes), strict=True)
        )
    holder, (month, year) = seed.HOLDER, seed.EXPIRY

    def load(name):
        return {
            "BENCH_API_KEY": seeded[name]["api_key"],
            "BENCH_MODE": "repeat",
            "BENCH_PREFIX": prefix,
            "BENCH_STORED": str(sizes[name]),
            "BENCH_HOLDER": holder,
            "BENCH_MONTH": str(month),
            "BENCH_YEAR": str(year),
        }

    servers = {f"retokenize-{name}-gunicorn": databases[name] for name in sizes}
    with ctx.run.gunicorns(servers, workers=ctx.cores) as urls:
        loads = alternate(
            {name: (f"{urls[f'retokenize-{name}-gunicorn']}/tokens", load(name)) for name in sizes},
            rounds=s.wrk_rounds,
            seconds=s.wrk_seconds,
            warmup=s.wrk_warmup,
            connections=s.wrk_connections,
            threads=2,
            log=ctx.run.logs / "retokenize-wrk.log",
        )
    small, large = loads["small"].figures(), loads["large"].figures()
    ratio = round(large["p50_ms"] / small["p50_ms"], 3) if small["p50_ms"] and large["p50_ms"] else None
    notes = [
        f"{name} answered {figures['statuses']} (all should be 200)"
        for name, figures in (("small", small), ("large", large))
        if set(figures["statuses"]) != {"200"}
    ]
    return {
        "status": "ok",
        "small": {"stored_tokens": sizes["small"], **small},
        "large": {"stored_tokens": sizes["large"], **large},
        "ratio": ratio,
        "target": f"p50 large / small <= {TARGET}",
        "met": verdict(ratio, at_most=TARGET),
        "seeding_seconds": {name: round(seeded[name]["seconds"], 1) for name in sizes},
        "notes": notes,
    }
