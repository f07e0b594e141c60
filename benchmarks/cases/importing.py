"""``manage.py import_cards`` on generated CSV files of ``import_small`` and ``import_large`` rows, each beside the
storage floor of this schema, measured in the same run on the same database.

- **The floor** (the reference): a ``COPY`` of the same rows, already encrypted, into the product's own tables:
  ``vault_token`` with all its indexes and constraints, and their ``token.created`` events into
  ``notifications_event``, in one transaction on one connection. The rows are made before the clock starts by the
  import's own preparing (``vault.importing.preparing``, for a merchant of the floor's own) and written as the
  import's storage strategy writes them (``writers.Copy.dump``), so the clock sees the database's share of an
  import only. ``ratio`` is import / floor, cards/s over rows/s; the target is >= 0.7.
- A plain ``COPY`` of the CSV file into a scratch table of text columns (no validation, no encryption, no index):
  parsing and writing the rows, a second line for comparison only.

cards/s is rows / wall time of the command (its start-up included); peak RSS is the command process's
``ru_maxrss``. Memory must stay flat in the size of the file: RSS large / small <= 1.2.
"""

import csv
import os
import subprocess
import tempfile
import time
from itertools import islice
from pathlib import Path

from benchmarks import seed
from benchmarks.cases import Context, verdict
from benchmarks.harness import PYTHON, ROOT, BenchError

RATIO_TARGET = 0.7
RSS_TARGET = 1.2
COLUMNS = (
    "externalReference",
    "cardNumber",
    "expiryDate",
    "cardHolderName",
    "address1",
    "postalCode",
    "city",
    "countryCode",
)
FLOOR_BATCH = 10_000  # rows prepared at a time for the floor (memory)


def csv_rows(*, prefix: str, rows: int):
    month, year = seed.EXPIRY
    for n in range(rows):
        yield (
            f"legacy-{n:09d}",
            seed.card_number(prefix, seed.STORED_DIGIT, n),
            f"{month:02d}/{year}",
            seed.HOLDER,
            f"{n % 500 + 1} Baker Street",
            "NW1 6XE",
            "London",
            "GB",
        )


def write_csv(path: Path, *, prefix: str, rows: int) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(csv_rows(prefix=prefix, rows=rows))


def import_cards(ctx: Context, *, database: str, path: Path, merchant_id: str, label: str) -> dict:
    """Run the command as its own process; returns its wall time and peak RSS."""
    log = ctx.run.logs / f"import-{label}.log"
    with open(log, "wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(
            [PYTHON, "manage.py", "import_cards", str(path), "--merchant", merchant_id],
            cwd=ROOT,
            env=ctx.run.env(database=database),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise BenchError(f"import_cards ({label}) exited with {process.returncode}: {log.read_text()[-500:]}")
    return {"seconds": seconds, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def floor_data(*, scratch: Path, prefix: str, rows: int, label: str) -> tuple[str, dict[str, Path]]:
    """The floor's rows, prepared as the import prepares the same file's, as COPY data in files (one per table);
    returns the floor merchant's id and the files by COPY statement. Runs in this process (the runner's Django, on
    the run's main database)."""
    from notifications.models import Event
    from vault.importing.checking import Row
    from vault.importing.preparing import Preparer
    from vault.importing.writers import Copy
    from vault.models import Token

    merchant = seed.merchant_with_key(f"Bench import floor {label}")[0]
    preparer, writer = Preparer(merchant), Copy()
    files = {
        writer.statement(Token): scratch / f"floor-{label}-tokens.copy",
        writer.statement(Event): scratch / f"floor-{label}-events.copy",
    }
    tokens_path, events_path = files.values()
    with (
        open(tokens_path, "wb") as tokens_file,
        open(events_path, "wb") as events_file,
        writer.dump(Token, tokens_file) as dump_tokens,
        writer.dump(Event, events_file) as dump_events,
    ):
        values = csv_rows(prefix=prefix, rows=rows)
        for start in range(0, rows, FLOOR_BATCH):
            batch = []
            for line, (reference, number, expiry, holder, *address) in enumerate(
                islice(values, FLOOR_BATCH), start=start + 2
            ):
                month, year = (int(part) for part in expiry.split("/"))
                batch.append(
                    Row(
                        line,
                        reference,
                        number,
                        holder,
                        month,
                        year,
                        dict(zip(("address1", "postalCode", "city", "countryCode"), address, strict=True)),
                        None,
                    )
                )
            preparer.prepare(batch)
            dump_tokens([row.token for row in batch])
            dump_events([row.event for row in batch])
    return merchant.public_id, files


def floor_seconds(ctx: Context, *, database: str, files: dict[str, Path]) -> float:
    """Seconds for the floor's COPYs, their transaction's commit included, on a connection of their own."""
    import psycopg

    with psycopg.connect(ctx.run.database_url(database)) as conn:
        started = time.monotonic()
        with conn.cursor() as cursor:
            for statement, path in files.items():
                with cursor.copy(statement) as copy, open(path, "rb") as f:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
        conn.commit()
        return time.monotonic() - started


def copy_reference(ctx: Context, *, database: str, path: Path) -> float:
    """Seconds for COPY of the file into a fresh scratch table of text columns."""
    import psycopg

    with psycopg.connect(ctx.run.database_url(database), autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_import_copy")
        conn.execute(f"CREATE TABLE bench_import_copy ({', '.join(f'{c} text' for c in COLUMNS)})")
        started = time.monotonic()
        with (
            conn.cursor() as cursor,
            open(path, "rb") as f,
            cursor.copy("COPY bench_import_copy FROM STDIN WITH (FORMAT csv, HEADER true)") as copy,
        ):
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        seconds = time.monotonic() - started
        conn.execute("DROP TABLE bench_import_copy")
    return seconds


def tokens_of(merchant_id: str) -> int:
    """The merchant's tokens (the runner's Django is on the run's main database)."""
    from vault.models import Token

    return Token.objects.filter(merchant__public_id=merchant_id).count()


def run(ctx: Context) -> dict:
    from django.core.management import get_commands

    if "import_cards" not in get_commands():
        return {"status": "skipped", "reason": "import_cards missing"}

    s = ctx.sizes
    database = ctx.main_db  # the last benchmark: the million rows it adds slow no other
    sizes = {"small": s.import_small, "large": s.import_large}
    figures = {}
    with tempfile.TemporaryDirectory(dir=ctx.run.logs) as scratch:
        for label, rows in sizes.items():
            path = Path(scratch) / f"cards-{label}.csv"
            prefix = ctx.prefix()
            write_csv(path, prefix=prefix, rows=rows)
            # The floor first, then the import: each adds the same rows, so the import meets the larger tables.
            floor_merchant, files = floor_data(scratch=Path(scratch), prefix=prefix, rows=rows, label=label)
            floor = floor_seconds(ctx, database=database, files=files)
            if tokens_of(floor_merchant) != rows:
                raise BenchError(f"the storage floor ({label}) did not store {rows} tokens")
            merchant = seed.merchant_with_key(f"Bench import {label}")[0].public_id
            command = import_cards(ctx, database=database, path=path, merchant_id=merchant, label=label)
            copy_seconds = copy_reference(ctx, database=database, path=path)
            stored = tokens_of(merchant)
            cards_per_second = round(rows / command["seconds"])
            figures[label] = {
                "rows": rows,
                "cards_per_second": cards_per_second,
                "seconds": round(command["seconds"], 2),
                "peak_rss_mb": command["peak_rss_mb"],
                "tokens_stored": stored,
                "floor_rows_per_second": round(rows / floor),
                "floor_seconds": round(floor, 2),
                "ratio": round(cards_per_second / (rows / floor), 3),
                "copy_rows_per_second": round(rows / copy_seconds),
                "copy_seconds": round(copy_seconds, 2),
                "file_mb": round(path.stat().st_size / 2**20, 1),
            }
            if stored != rows:
                raise BenchError(f"import_cards ({label}) stored {stored} tokens for {rows} rows")
    small, large = figures["small"], figures["large"]
    rss_ratio = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    ratio = large["ratio"]
    return {
        "status": "ok",
        "cards_per_second": large["cards_per_second"],
        "floor_rows_per_second": large["floor_rows_per_second"],
        "ratio": ratio,
        "copy_rows_per_second": large["copy_rows_per_second"],
        "copy_ratio": round(large["cards_per_second"] / large["copy_rows_per_second"], 3),
        "rss_ratio": rss_ratio,
        "target": f"import / floor >= {RATIO_TARGET}; peak RSS large / small <= {RSS_TARGET}",
        "met": bool(verdict(ratio, at_least=RATIO_TARGET)) and bool(verdict(rss_ratio, at_most=RSS_TARGET)),
        "ratio_met": verdict(ratio, at_least=RATIO_TARGET),
        "rss_met": verdict(rss_ratio, at_most=RSS_TARGET),
        "small": small,
        "large": large,
        "columns": list(COLUMNS),
    }
