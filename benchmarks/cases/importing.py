"""``manage.py import_cards`` on generated CSV files of ``import_small`` and ``import_large`` rows, each beside a
plain PostgreSQL ``COPY`` of the same file into a scratch table of text columns (the physical floor: parsing and
writing the rows; no validation, no encryption, no index).

cards/s is rows / wall time of the command (its start-up included); peak RSS is the command process's
``ru_maxrss``. Memory must stay flat in the size of the file: RSS large / small <= 1.2.
"""

import csv
import os
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import PYTHON, ROOT, BenchError

RATE_TARGET = 20_000
RSS_TARGET = 1.2
COLUMNS = ("externalReference", "cardNumber", "expiryDate", "cardHolderName",
           "address1", "postalCode", "city", "countryCode")


def write_csv(path: Path, *, prefix: str, rows: int) -> None:
    month, year = seed.EXPIRY
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for n in range(rows):
            writer.writerow((f"legacy-{n:09d}", seed.card_number(prefix, seed.STORED_DIGIT, n), f"{month:02d}/{year}",
                             seed.HOLDER, f"{n % 500 + 1} Baker Street", "NW1 6XE", "London", "GB"))


def import_cards(ctx: Context, *, database: str, path: Path, merchant_id: str, label: str) -> dict:
    """Run the command as its own process; returns its wall time and peak RSS."""
    log = ctx.run.logs / f"import-{label}.log"
    with open(log, "wb") as out:
        started = time.monotonic()
        process = subprocess.Popen([PYTHON, "manage.py", "import_cards", str(path), "--merchant", merchant_id],
                                   cwd=ROOT, env=ctx.run.env(database=database), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise BenchError(f"import_cards ({label}) exited with {process.returncode}: "
                         f"{log.read_text()[-500:]}")
    return {"seconds": seconds, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def copy_reference(ctx: Context, *, database: str, path: Path) -> float:
    """Seconds for COPY of the file into a fresh scratch table."""
    import psycopg

    with psycopg.connect(ctx.run.database_url(database), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_import_copy")
        conn.execute(f"CREATE TABLE bench_import_copy ({', '.join(f'{c} text' for c in COLUMNS)})")
        started = time.monotonic()
        with conn.cursor() as cursor, open(path, "rb") as f:
            with cursor.copy("COPY bench_import_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                while chunk := f.read(1 << 20):
                    copy.write(chunk)
        seconds = time.monotonic() - started
        conn.execute("DROP TABLE bench_import_copy")
    return seconds


def run(ctx: Context) -> dict:
    from django.core.management import get_commands

    if "import_cards" not in get_commands():
        return {"status": "skipped", "reason": "import_cards missing"}
    import psycopg

    s = ctx.sizes
    database = ctx.main_db  # the last benchmark: the million rows it adds slow no other
    sizes = {"small": s.import_small, "large": s.import_large}
    figures = {}
    with tempfile.TemporaryDirectory(dir=ctx.run.logs) as scratch:
        for label, rows in sizes.items():
            path = Path(scratch) / f"cards-{label}.csv"
            write_csv(path, prefix=ctx.prefix(), rows=rows)
            merchant = seed.merchant_with_key(f"Bench import {label}")[0].public_id
            command = import_cards(ctx, database=database, path=path, merchant_id=merchant, label=label)
            copy_seconds = copy_reference(ctx, database=database, path=path)
            with psycopg.connect(ctx.run.database_url(database)) as conn:
                stored = conn.execute(
                    "SELECT count(*) FROM vault_token t JOIN vault_merchant m ON m.id = t.merchant_id "
                    "WHERE m.public_id = %s", [merchant]).fetchone()[0]
            figures[label] = {
                "rows": rows,
                "cards_per_second": round(rows / command["seconds"]),
                "seconds": round(command["seconds"], 2),
                "peak_rss_mb": command["peak_rss_mb"],
                "tokens_stored": stored,
                "copy_rows_per_second": round(rows / copy_seconds),
                "copy_seconds": round(copy_seconds, 2),
                "file_mb": round(path.stat().st_size / 2**20, 1),
            }
            if stored != rows:
                raise BenchError(f"import_cards ({label}) stored {stored} tokens for {rows} rows")
    small, large = figures["small"], figures["large"]
    rss_ratio = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    rate = large["cards_per_second"]
    return {
        "status": "ok",
        "cards_per_second": rate,
        "copy_rows_per_second": large["copy_rows_per_second"],
        "copy_ratio": round(rate / large["copy_rows_per_second"], 3),
        "rss_ratio": rss_ratio,
        "target": f">= {RATE_TARGET} cards/s; peak RSS large / small <= {RSS_TARGET}",
        "met": bool(verdict(rate, at_least=RATE_TARGET)) and bool(verdict(rss_ratio, at_most=RSS_TARGET)),
        "rate_met": verdict(rate, at_least=RATE_TARGET),
        "rss_met": verdict(rss_ratio, at_most=RSS_TARGET),
        "small": small,
        "large": large,
        "columns": list(COLUMNS),
    }

