"""Tokenize and detokenize with the ``pkcs11`` KEK provider, its KEK in an HSM (a SoftHSM2 token made for the run),
beside the ``local`` provider, its KEK from ``VAULT_KEK``: two scratch databases, one gunicorn each, wrk sending to
each in turn.

The HSM wraps and unwraps keys only: each gunicorn worker unwraps the data encryption key and the fingerprint key on
its first card (in the unmeasured warm-up) and keeps them, so a card then costs the same on both sides, and the
ratio pkcs11 / local should be about 1 (target >= 0.95 for both paths). Tokenize sends a new card per request;
detokenize releases one stored card again and again (its merchant's card-data limit lifted, as the forward
benchmark's). The result names the KEK each database's keys are wrapped under, to show which provider served it.
"""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from benchmarks.cases import Context, verdict
from benchmarks.harness import PYTHON, ROOT, BenchError, alternate, softhsm_token

TARGET = 0.95
DETOKENIZE_SCRIPT = Path(__file__).resolve().parent.parent / "wrk" / "forward.lua"  # one constant body per request
PROVIDERS = ("local", "pkcs11")


def seed_database(ctx: Context, database: str, *, prefix: str, tokens: int, env: dict, log: str) -> dict:
    """A merchant with ``tokens`` stored cards and a key that may detokenize, made by ``benchmarks.seed`` in a process
    of ``database`` (and ``env``: its KEK provider), whose first card makes the database's keys."""
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-m", "benchmarks.seed", "--tokens", str(tokens), "--prefix", prefix, "--detokenize"],
        cwd=ROOT,
        env=ctx.run.env(database=database, **env),
        capture_output=True,
        text=True,
    )
    (ctx.run.logs / f"{log}.log").write_text(result.stdout + result.stderr)
    if result.returncode:
        raise BenchError(f"seeding {database} failed (see {log}.log): {result.stderr[-500:]}")
    return {**json.loads(result.stdout.splitlines()[-1]), "seconds": time.monotonic() - started}


def keks_of(ctx: Context, database: str) -> list[str]:
    """The KEKs the keys of ``database`` are wrapped under."""
    from vault.models import DataKey

    with psycopg.connect(ctx.run.database_url(database)) as conn:
        rows = conn.execute(f"SELECT DISTINCT kek_id FROM {DataKey._meta.db_table} ORDER BY kek_id").fetchall()
    return [kek_id for (kek_id,) in rows]


def run(ctx: Context) -> dict:
    s = ctx.sizes
    home = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    try:
        pkcs11 = {**softhsm_token(home, label="bench"), "PKCS11_KEY_LABEL": "bench-kek"}
        databases = {name: ctx.database(f"hsm_{name}") for name in PROVIDERS}
        envs = {"local": {}, "pkcs11": pkcs11}
        # The operator's step: the KEK generated in the HSM.
        ctx.run.manage(["kek_create"], database=databases["pkcs11"], log="hsm-kek-create", env=pkcs11)
        prefix = ctx.prefix()
        seeded = {
            name: seed_database(ctx, databases[name], prefix=prefix, tokens=1, env=envs[name], log=f"hsm-seed-{name}")
            for name in PROVIDERS
        }
        servers = {name: f"hsm-{name}-gunicorn" for name in PROVIDERS}
        with ctx.run.gunicorns(
            {servers[name]: databases[name] for name in PROVIDERS},
            workers=ctx.cores,
            env={servers[name]: envs[name] for name in PROVIDERS},
        ) as urls:
            # Each path's two sides one after the other, so that each pair of figures shares the machine's moods.
            loads = {}
            for name in PROVIDERS:
                # A fresh prefix per wrk run: its counters start again at 1, the cards must not.
                loads[f"tokenize-{name}"] = (
                    f"{urls[servers[name]]}/tokens",
                    lambda key=seeded[name]["api_key"]: {
                        "BENCH_API_KEY": key,
                        "BENCH_MODE": "new",
                        "BENCH_PREFIX": ctx.prefix(),
                    },
                )
            for name in PROVIDERS:
                loads[f"detokenize-{name}"] = (
                    f"{urls[servers[name]]}/tokens/{seeded[name]['token_reference']}/detokenize",
                    {"BENCH_API_KEY": seeded[name]["detokenize_key"], "BENCH_BODY": ""},
                    DETOKENIZE_SCRIPT,
                )
            measured = alternate(
                loads,
                # Twice the others' rounds: the two sides differ by less than a busy machine's moods.
                rounds=2 * s.wrk_rounds,
                seconds=s.wrk_seconds,
                warmup=s.wrk_warmup or min(1.0, s.wrk_seconds),  # every worker's keys unwrapped before measuring
                connections=s.wrk_connections,
                threads=2,
                log=ctx.run.logs / "hsm-wrk.log",
            )
        keks = {name: keks_of(ctx, databases[name]) for name in PROVIDERS}
    finally:
        shutil.rmtree(home, ignore_errors=True)

    result = {"status": "ok", "target": f"pkcs11 / local req/s >= {TARGET}, tokenize and detokenize", "notes": []}
    for path, expected in (("tokenize", "201"), ("detokenize", "200")):
        figures = {name: measured[f"{path}-{name}"].figures() for name in PROVIDERS}
        local, hsm = figures["local"]["requests_per_second"], figures["pkcs11"]["requests_per_second"]
        ratio = round(hsm / local, 3) if local else None
        result[path] = {**figures, "ratio": ratio, "met": verdict(ratio, at_least=TARGET)}
        result["notes"] += [
            f"{path} on {name} answered {figures[name]['statuses']} (all should be {expected})"
            for name in PROVIDERS
            if set(figures[name]["statuses"]) != {expected}
        ]
    ratios = [result[path]["ratio"] for path in ("tokenize", "detokenize")]
    result["ratio"] = min(ratios) if None not in ratios else None
    result["met"] = verdict(result["ratio"], at_least=TARGET)
    result["keks"] = keks
    if not keks["pkcs11"] or any(not kek.startswith("pkcs11:") for kek in keks["pkcs11"]):
        result["notes"].append(f"the pkcs11 database's keys are wrapped under {keks['pkcs11']}, not in the HSM")
    result["config"] = {
        "gunicorn_sync_workers_each": ctx.cores,
        "connections": s.wrk_connections,
        "wrk_threads": 2,
        "hsm": "SoftHSM2 (Debian softhsm2), a token made for the run; CKM_AES_KEY_WRAP",
        "rounds": 2 * s.wrk_rounds,
        "seconds_per_round": s.wrk_seconds,
    }
    return result
