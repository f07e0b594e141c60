"""``manage.py rotate_kek`` with ``rotate_kek_small`` and ``rotate_kek_large`` cards stored (10,000 and 1,000,000), on
the ``pkcs11`` provider: the time of a KEK rotation should not depend on the number of cards, since it re-wraps the
keys (a DEK and the fingerprint key here) and never touches a card.

Each database is filled the cheapest real way: ``benchmarks.seed`` stores a thousand real cards under the HSM's KEK
``A`` (encrypted by the key ring, the database's keys made on the way), then one ``INSERT … SELECT`` over
``generate_series`` copies them to the size, each copy a token of its own (id, reference, fingerprint) with the same
ciphertext, which rotate_kek never reads. Then the operator's steps: ``kek_create --label B``, and ``rotate_kek`` with
``PKCS11_KEY_LABEL=B``, timed twice: the process as run by hand (Python's and Django's start and the start-up check
of the HSM included, most of it), and the command's own work within it (the target's measure). Afterwards every key
must be wrapped under ``B``.
"""

import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from benchmarks.cases import Context
from benchmarks.cases.hsm import keks_of, seed_database
from benchmarks.harness import softhsm_token

# Not slower with a hundred times the cards, but for noise: each takes well under a second, so a ratio would measure
# the machine's hiccups.
TOLERANCE_SECONDS = 1.0
REAL_CARDS = 1000


def fill(ctx: Context, database: str, count: int) -> float:
    """Copy the database's tokens until it holds ``count``; returns the seconds it took."""
    from vault.models import Token

    table = Token._meta.db_table
    started = time.monotonic()
    with psycopg.connect(ctx.run.database_url(database), autocommit=True) as conn:
        real = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        copies = -(-count // real) - 1
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND column_name <> 'id' "
                "ORDER BY ordinal_position",
                [table],
            ).fetchall()
        ]
        own = {
            "token_id": "substr(upper(md5(t.token_id || '-' || g)), 1, length(t.token_id))",
            "reference": "substr(md5('r' || t.reference || '-' || g) || md5(t.reference || g), 1, length(t.reference))",
            "fingerprint": "md5('f' || t.fingerprint || '-' || g) || md5(t.fingerprint || g)",
        }
        selected = ", ".join(own.get(name, f"t.{name}") for name in columns)
        if copies:
            conn.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) SELECT {selected} FROM {table} t "
                f"CROSS JOIN generate_series(1, %s) g LIMIT %s",
                [copies, count - real],
            )
        conn.execute(f"VACUUM ANALYZE {table}")
        stored = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    if stored != count:
        raise RuntimeError(f"{database} holds {stored} tokens, not {count}")
    return time.monotonic() - started


def timed(ctx: Context, args: list[str], *, database: str, env: dict, log: str) -> tuple[float, str]:
    started = time.monotonic()
    out = ctx.run.manage(args, database=database, log=log, env=env)
    return round(time.monotonic() - started, 2), out


# rotate_kek run by Django's shell, which times the command alone once Django is set up.
ROTATE = (
    "import time; from django.core.management import call_command; started = time.perf_counter(); "
    "call_command('rotate_kek'); print(f'rotate_kek took {time.perf_counter() - started:.4f} s')"
)


def run(ctx: Context) -> dict:
    s = ctx.sizes
    sizes = {"small": s.rotate_kek_small, "large": s.rotate_kek_large}
    home = Path(tempfile.mkdtemp(prefix="bench-softhsm-"))
    try:
        hsm = softhsm_token(home, label="bench-rotation")
        before, after = {**hsm, "PKCS11_KEY_LABEL": "kek-a"}, {**hsm, "PKCS11_KEY_LABEL": "kek-b"}
        databases = {name: ctx.database(f"rotate_kek_{name}") for name in sizes}
        ctx.run.manage(["kek_create"], database=databases["small"], log="rotate-kek-create-a", env=before)
        prefix = ctx.prefix()
        real = {name: min(REAL_CARDS, sizes[name]) for name in sizes}

        def prepare(name):
            seed_database(
                ctx, databases[name], prefix=prefix, tokens=real[name], env=before, log=f"rotate-kek-seed-{name}"
            )
            return fill(ctx, databases[name], sizes[name])

        with ThreadPoolExecutor(2) as pool:
            filled = dict(zip(sizes, pool.map(prepare, sizes), strict=True))
        made_seconds, made = timed(
            ctx,
            ["kek_create", "--label", "kek-b"],
            database=databases["small"],
            env=before,
            log="rotate-kek-create-b",
        )
        results = {}
        for name in sizes:
            wall, out = timed(
                ctx, ["shell", "--command", ROTATE], database=databases[name], env=after, log=f"rotate-kek-{name}"
            )
            rewrapped = re.search(r"Re-wrapped (\d+) key", out)
            results[name] = {
                "cards": sizes[name],
                "seconds": float(re.search(r"rotate_kek took ([0-9.]+) s", out).group(1)),
                "process_seconds": wall,
                "keys_rewrapped": int(rewrapped.group(1)) if rewrapped else None,
                "keks_after": keks_of(ctx, databases[name]),
                "fill_seconds": round(filled[name], 1),
            }
    finally:
        shutil.rmtree(home, ignore_errors=True)

    small, large = results["small"], results["large"]
    ratio = round(large["seconds"] / small["seconds"], 3) if small["seconds"] else None
    met = large["seconds"] <= small["seconds"] + TOLERANCE_SECONDS
    notes = [
        f"{name}: keys wrapped under {r['keks_after']} after the rotation (all should be pkcs11:kek-b)"
        for name, r in results.items()
        if r["keks_after"] != ["pkcs11:kek-b"]
    ]
    return {
        "status": "ok",
        "small": small,
        "large": large,
        "ratio": ratio,
        "target": f"seconds at {sizes['large']:,} cards <= at {sizes['small']:,} + {TOLERANCE_SECONDS:g}",
        "tolerance_seconds": TOLERANCE_SECONDS,
        "met": met and not notes,
        "kek_create_seconds": made_seconds,
        "kek_create_said": made.strip(),
        "notes": notes,
    }
