"""Bulk import of cards exported by another provider: ``manage.py import_cards`` is a thin shell around
``cards_import``.

**Streaming.** The CSV file is read a line at a time (the ``csv`` module pulls lines from a counting wrapper around
the binary file), rows are validated as they come and stored a batch at a time; nothing is kept from one batch to
the next but counters, so memory stays flat whatever the size of the file.

**Validation** applies the API's rules for ``POST /tokens`` (Luhn, 12–19 digits, expiry not in the past, holder name
1–255, billing address lengths, ISO 3166 alpha-2 country, namespace 1–64) with the API's error names. They are
restated here in plain Python because the serializers cost more per row than the rest of the import together; a
test holds the two to the same verdicts. A rejected row goes to the reject file (line, external reference, field,
reason, message), never its card number. The external reference of a rejected row is written with anything that
looks like a card number redacted, and a row whose card number also sits in another column is rejected, so a file
with slid columns cannot leak numbers into the outputs or into the vault's clear-text columns.

**Threads.** A reader thread parses, validates and prepares each batch: fingerprints, token ids, ciphertexts
(``key_ring().encrypt_many`` bound to ``Token.associated_data()``), event payloads. It touches no database. On
PostgreSQL two storing threads, each with its own connection, store two batches at once (``_Storing``): the
database's share of a row (COPY, a dozen index entries, foreign-key checks) is larger than Python's, and one
connection keeps it on one core. While they wait on the database (which releases the GIL) the reader prepares the
next batch, and the calling thread writes the outputs and checkpoints in file order. At most one prepared batch
waits in between. A batch sharing a card or a namespace with one being stored waits for it, so the file's order
decides, as it does on one connection.

**Batches.** Each batch is one transaction: its namespaces are created when new and locked (the lock
``card_tokenize`` takes for the 16-card limit), one query finds the batch's cards already in the vault
(``fingerprint__in``, one arm per partial unique index so both are used), the new tokens and their ``token.created``
events are inserted with one multi-row insert each (``COPY`` on PostgreSQL). Identity is the API's: (merchant, card,
namespace). A card already in the vault, or met earlier in the file, maps to the existing token and its stored
details are kept, as the API keeps them on a conflict (the import counts such rows; it opens no conflict). The
lookup is skipped while batches without namespaces meet no card the vault holds: the unique constraints refuse a
batch holding one, which is then stored again with its lookup (``_Store.batch``). Deliveries to subscribed endpoints
are written due in the same transaction and not queued: the sweeper hands them to the workers at its pace, rather
than a million broker messages at once.

**Resuming.** After each batch commits, its mapping and reject lines are appended and synced, then a checkpoint
next to the input (``FILE.progress``: byte offset, line, counters, output sizes) is replaced atomically. A rerun
truncates the outputs to the sizes the checkpoint recorded and carries on from its offset. A run killed between a
commit and its checkpoint redoes that batch: its cards are in the vault by then, so they map to the same tokens and
nothing is stored twice (that batch's new cards are then counted as reused).

**Statistics.** A migration usually fills a new merchant, faster than autovacuum notices. Until PostgreSQL's
statistics say the merchant holds many tokens, its planner looks a batch up by reading all of the merchant's
entries (of the merchant index or the card index) rather than probing for the batch's cards, so each batch costs more
than the one before: a 300,000-card import read 23 million rows, and a million cards into a fresh server went at
10,100 cards/s instead of 17,600. The import therefore runs ``ANALYZE`` on the token table itself each time the
cards it stored double, from ``ANALYZE_FROM`` on (under half a second on a million tokens).
"""

import base64
import csv
import fcntl
import functools
import hashlib
import io
import json
import os
import queue
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from config.errors import VALIDATION_MESSAGES
from config.http import timestamp
from config.logging import redact
from notifications.models import Delivery, Event, WebhookEndpoint
from vault import cards, services
from vault.crypto import key_ring
from vault.models import TOKEN_ID_RANDOM_BYTES, Merchant, Namespace, Token, new_token_id, token_id_from

# ------------------------------------------------------------------------------------------------------------
# The file
# ------------------------------------------------------------------------------------------------------------
REFERENCE, NUMBER, EXPIRY, HOLDER = "externalReference", "cardNumber", "expiryDate", "cardHolderName"
REQUIRED_COLUMNS = (REFERENCE, NUMBER, EXPIRY, HOLDER)
ADDRESS_COLUMNS = services.BILLING_FIELDS  # address1, address2, address3, postalCode, city, state, countryCode
# (required when any address column of the row is filled, max length), as BillingAddressInput
ADDRESS_RULES = {
    "address1": (True, 80), "address2": (False, 80), "address3": (False, 80), "postalCode": (True, 15),
    "city": (True, 50), "state": (False, 30), "countryCode": (True, 2),
}
REFERENCE_MAX = 255
HOLDER_MAX = 255
NAMESPACE_MAX = 64
YEARS = (2000, 2099)
ANALYZE_FROM = 10_000  # cards stored by a run before it first refreshes the planner's statistics
MAX_BATCH_SIZE = 10_000  # SQLite takes at most 32,766 parameters a query; a batch's lookup uses two per row

DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE

MAPPING_HEADER = ("externalReference", "tokenId", "href")
REJECT_HEADER = ("line", "externalReference", "field", "reason", "message")
MAX_LINE_BYTES = 1 << 20  # a longer "line" is garbage; reading it in pieces keeps memory bounded
CHECKPOINT_VERSION = 1


class CardImportError(Exception):
    """The import cannot start or go on: a bad header, outputs that do not match the checkpoint, another run of
    the same file. The message is safe to print: it never holds card data."""


@dataclass
class Counts:
    rows: int = 0  # data rows read (not the header, not blank lines)
    imported: int = 0  # new tokens
    reused: int = 0  # rows mapped to a token already in the vault or made earlier in the file
    differing: int = 0  # of the reused, those whose holder, expiry or address differ from the stored ones
    rejected: int = 0

    def add(self, other: "Counts") -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class ImportResult:
    counts: Counts  # the whole import, across every run that worked on it
    run: Counts  # this run only
    seconds: float  # this run
    complete: bool  # False when stopped (``should_stop``) before the end of the file
    already_complete: bool = False  # the checkpoint said so: nothing was done
    resumed_at_line: int | None = None
    line: int = 0  # the last line done
    mapping_path: Path | None = None
    reject_path: Path | None = None

    @property
    def rate(self) -> float:
        """Rows per second in this run."""
        return self.run.rows / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class BatchDone:
    """What ``on_batch`` hears after each batch is committed and checkpointed."""

    number: int  # batches done in this run
    rows: int
    bytes: int  # of the file, read for this batch
    offset: int  # bytes of the file done, by this run and those before
    line: int  # the last line done
    counts: Counts  # the whole import so far


def default_paths(source: Path) -> tuple[Path, Path, Path]:
    """``cards.csv`` → ``cards.mapping.csv``, ``cards.rejects.csv``, ``cards.csv.progress``."""
    return (source.with_name(source.stem + ".mapping.csv"), source.with_name(source.stem + ".rejects.csv"),
            source.with_name(source.name + ".progress"))


# ------------------------------------------------------------------------------------------------------------
# The service
# ------------------------------------------------------------------------------------------------------------
def cards_import(*, merchant: Merchant, source: Path, namespace_column: str | None = None,
                 mapping_path: Path | None = None, reject_path: Path | None = None, batch_size: int = 2000,
                 restart: bool = False, actor: services.Actor | None = None,
                 on_batch: Callable[[BatchDone], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> ImportResult:
    """Tokenize every valid row of the CSV file ``source`` for ``merchant``; see the module docstring.

    Idempotent and resumable: a rerun after an interruption (a crash, ``should_stop``, an exception from
    ``on_batch``) continues from the last checkpoint and never stores a card twice; a rerun of a finished import
    does nothing (``already_complete``) unless ``restart``, which starts the file over (its cards then map to the
    tokens already stored). Writes tokens, their ``token.created`` events (and due deliveries for subscribed
    endpoints), namespaces, an audit row when a run starts and when it ends, the mapping file (externalReference,
    tokenId, href), the reject file and the checkpoint. Raises ``CardImportError``.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise CardImportError(f"the batch size must be 1 to {MAX_BATCH_SIZE}")
    source = Path(source)
    default_mapping, default_rejects, checkpoint_path = default_paths(source)
    mapping_path = Path(mapping_path or default_mapping).resolve()
    reject_path = Path(reject_path or default_rejects).resolve()
    if len({source.resolve(), mapping_path, reject_path, checkpoint_path.resolve()}) < 4:
        raise CardImportError("the input, mapping, reject and progress files must be four different files")
    actor = actor or services.Actor("import_cards", merchant=merchant)
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise CardImportError(f"cannot read {source}: {exc.strerror}") from None

    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            raise CardImportError(f"another import of {source.name} is running") from None
        lines = _Lines(handle)
        reader = csv.reader(lines, strict=True)
        header = _header(reader, lines)
        layout = _layout(header, namespace_column)
        state = _start(merchant=merchant, source=source, identity=_file_identity(handle, header),
                       namespace_column=namespace_column, mapping_path=mapping_path, reject_path=reject_path,
                       checkpoint_path=checkpoint_path, restart=restart)
        if state.complete:
            return ImportResult(counts=state.counts, run=Counts(), seconds=0.0, complete=True,
                                already_complete=True, line=state.line, mapping_path=mapping_path,
                                reject_path=reject_path)
        resumed_at = None
        if state.offset:
            resumed_at = state.line + 1
            lines.seek(state.offset, state.line)

        services.audit_record(actor=actor, action="cards.import.start", object_type="file",
                              object_id=source.name[:64], detail={"resumed_at_line": resumed_at})
        storing = _Storing(merchant=merchant, namespace_column=layout.namespace_column)
        batches = _Reader(_prepared_batches(reader, lines, layout, batch_size, _Preparer(merchant)))
        run = Counts()
        started = time.monotonic()
        number = 0
        analyze_at = ANALYZE_FROM
        stopped = False
        pending: deque[_Batch] = deque()  # submitted for storing, outputs not written yet; oldest first
        try:
            with open(mapping_path, "ab") as mapping, open(reject_path, "ab") as rejects:
                batches_left = iter(batches)
                waiting = None  # read, not submitted: it shares cards or namespaces with a batch being stored
                while True:
                    if waiting is None and not stopped:
                        waiting = next(batches_left, None)
                    # A batch sharing a card or a namespace with one being stored waits for it, so the earlier row
                    # in the file wins (its details kept, the namespace limit refusing the later rows) whichever
                    # connection is faster.
                    if waiting is not None and not any(_overlap(waiting, other) for other in pending):
                        storing.submit(waiting)
                        pending.append(waiting)
                        waiting = None
                        if len(pending) < storing.at_once:
                            continue
                    if not pending:
                        break
                    # The oldest batch's outputs and checkpoint, in file order whichever batch committed first.
                    batch = pending.popleft()
                    counts, mapped, refused = storing.result()
                    counts.rows = batch.read
                    counts.rejected += len(batch.rejects) + len(refused)
                    _append(mapping, mapped)
                    _append(rejects, _reject_lines(sorted(batch.rejects + refused, key=lambda r: r.line)))
                    state.counts.add(counts)
                    read_bytes = batch.offset - state.offset
                    state.offset, state.line = batch.offset, batch.line
                    state.mapping_size, state.reject_size = mapping.tell(), rejects.tell()
                    state.save(checkpoint_path)
                    run.add(counts)
                    number += 1
                    if run.imported >= analyze_at:
                        _refresh_statistics()
                        analyze_at = 2 * run.imported
                    if on_batch:
                        on_batch(BatchDone(number=number, rows=batch.read, bytes=read_bytes, offset=batch.offset,
                                           line=batch.line, counts=replace(state.counts)))
                    if should_stop and should_stop():
                        stopped = True  # no new batch; those being stored are finished and written
                        waiting = None
        finally:
            storing.close()
            batches.close()
        if not stopped:
            state.complete = True
            state.save(checkpoint_path)
        seconds = time.monotonic() - started
        services.audit_record(
            actor=actor, action="cards.import.stop" if stopped else "cards.import.finish", object_type="file",
            object_id=source.name[:64], detail={"line": state.line, "run": asdict(run), "total": asdict(state.counts)},
        )
    return ImportResult(counts=state.counts, run=run, seconds=seconds, complete=not stopped,
                        resumed_at_line=resumed_at, line=state.line, mapping_path=mapping_path,
                        reject_path=reject_path)


def _refresh_statistics() -> None:
    """Tell PostgreSQL's planner how many tokens each merchant holds now (see the module docstring).

    The whole table, indexes included: analysing the merchant column alone left the planner reading a merchant's
    every entry of the card index for each batch. Not ``SKIP_LOCKED``: autovacuum is often at work on the table
    during a large import and would make every refresh a no-op; it gives way to the ``ANALYZE`` within a second.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Token._meta.db_table}")


# ------------------------------------------------------------------------------------------------------------
# Reading and preparing (the reader thread: no database here)
# ------------------------------------------------------------------------------------------------------------
class _Lines:
    """The decoded lines of a binary file, counting the bytes and lines consumed. ``csv`` pulls one line at a time
    and only as many as the record needs, so after each record ``offset`` and ``line`` say where the next begins."""

    def __init__(self, handle):
        self.handle = handle
        self.offset = 0
        self.line = 0
        self.flaw: tuple[str, str] | None = None  # what is wrong with a line read; the row loop reads and clears it

    def __iter__(self):
        return self

    def __next__(self) -> str:
        raw = self.handle.readline(MAX_LINE_BYTES)
        if not raw:
            raise StopIteration
        self.offset += len(raw)
        self.line += 1
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            self.flaw = ("rowIsNotUtf8", "The row is not valid UTF-8 text")
            text = raw.decode(errors="replace")
        if b"\0" in raw:
            # The API refuses NUL in any string; PostgreSQL cannot store it in text.
            self.flaw = ("fieldHasInvalidValue", "The row holds a NUL character")
        if self.line == 1 and text.startswith("\ufeff"):
            text = text[1:]  # a byte order mark, as spreadsheet programs write
        return text

    def seek(self, offset: int, line: int) -> None:
        self.handle.seek(offset)
        self.offset, self.line = offset, line


def _file_identity(handle, header: list[str]) -> dict:
    """What tells a rerun it reads the same file: its size, its modification time and its header. Never a hash of
    its content, which holds card numbers."""
    stat = os.fstat(handle.fileno())
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "header_sha256": hashlib.sha256("\x1f".join(header).encode()).hexdigest()}


def _header(reader, lines: _Lines) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise CardImportError("the file is empty: it needs a header line") from None
    except csv.Error:
        raise CardImportError("line 1 (the header) is not valid CSV") from None
    if lines.flaw:
        raise CardImportError("the header line is not UTF-8 text")
    return header


@dataclass(frozen=True)
class _Layout:
    """Where each known column sits in a row."""

    width: int
    reference: int
    number: int
    expiry: int
    holder: int
    address: tuple[tuple[str, int], ...]  # the address columns present
    namespace: int | None
    namespace_column: str | None  # its name in the header
    others: tuple[tuple[str, int], ...]  # every column but the card number: none may hold it


def _layout(header: list[str], namespace_column: str | None) -> _Layout:
    known = {name.lower(): name for name in (*REQUIRED_COLUMNS, *ADDRESS_COLUMNS)}
    if namespace_column:
        if namespace_column.strip().lower() in known:
            raise CardImportError(f"the namespace column cannot be the '{namespace_column}' column")
        known[namespace_column.strip().lower()] = "namespace"
    positions: dict[str, int] = {}
    unknown = []
    for index, cell in enumerate(header):
        name = known.get(cell.strip().lower())
        if name is None:
            unknown.append(cell.strip() or f"(empty, column {index + 1})")
        elif name in positions:
            raise CardImportError(f"the header names the column '{cell.strip()}' twice")
        else:
            positions[name] = index
    if unknown:
        raise CardImportError(
            "unknown column(s) in the header: " + ", ".join(redact(name)[:40] for name in unknown)
            + "; see `manage.py import_cards --help` for the column names"
            + ("" if namespace_column else " (a namespace column needs --namespace-column)")
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if namespace_column and "namespace" not in positions:
        missing.append(namespace_column)
    if missing:
        raise CardImportError(f"missing column(s) in the header: {', '.join(missing)}")
    others = tuple((name if name != "namespace" else namespace_column, index)
                   for name, index in positions.items() if name != NUMBER)
    return _Layout(
        width=len(header),
        reference=positions[REFERENCE],
        number=positions[NUMBER],
        expiry=positions[EXPIRY],
        holder=positions[HOLDER],
        address=tuple((name, positions[name]) for name in ADDRESS_COLUMNS if name in positions),
        namespace=positions.get("namespace"),
        namespace_column=namespace_column,
        others=others,
    )


@dataclass(slots=True)
class _Row:
    """A valid row; once prepared, also the token it becomes if its card is new. The number is dropped as soon as
    it is encrypted and fingerprinted."""

    line: int
    reference: str
    number: str | None
    holder: str
    month: int
    year: int
    address: dict | None
    namespace: str | None
    fingerprint: str = ""
    token_id: str = ""
    href: str = ""
    columns: tuple | str = ()  # the token's columns after merchant and namespace (TOKEN_FIELDS[2:]; see _Preparer)
    event_id: str = ""
    event: tuple | str = ()  # its token.created event (EVENT_FIELDS)


@dataclass(slots=True)
class _Reject:
    line: int
    reference: str
    problems: list[tuple[str, str, str]]  # (field, errorName, message)


@dataclass(slots=True)
class _Batch:
    rows: list[_Row]
    rejects: list[_Reject]
    read: int  # rows read, valid or not
    offset: int  # where the file resumes after this batch
    line: int
    cards: set[str] = field(init=False)  # its rows' fingerprints
    namespaces: set[str] = field(init=False)

    def __post_init__(self):
        self.cards = {row.fingerprint for row in self.rows}
        self.namespaces = {row.namespace for row in self.rows if row.namespace is not None}


def _overlap(batch: _Batch, other: _Batch) -> bool:
    """Whether storing ``batch`` and ``other`` at once could let the later one in the file decide for the earlier."""
    return not (batch.cards.isdisjoint(other.cards) and batch.namespaces.isdisjoint(other.namespaces))


def _prepared_batches(reader, lines: _Lines, layout: _Layout, batch_size: int,
                      preparer: "_Preparer") -> Iterator[_Batch]:
    """Read, validate and prepare ``batch_size`` rows at a time; each batch ends on a record boundary."""
    rows: list[_Row] = []
    rejects: list[_Reject] = []
    this_month = _this_month()
    while True:
        start = lines.line + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error:
            lines.flaw = None
            rejects.append(_Reject(start, "", [("", "rowIsNotValidCsv", "The row is not valid CSV (mind its quotes)")]))
        else:
            if lines.flaw:
                rejects.append(_Reject(start, "", [("", *lines.flaw)]))
                lines.flaw = None
            elif not cells:
                continue  # a blank line
            else:
                parsed = _parse(cells, layout, start, this_month)
                (rejects if isinstance(parsed, _Reject) else rows).append(parsed)
        if len(rows) + len(rejects) >= batch_size:
            preparer.prepare(rows)
            yield _Batch(rows, rejects, len(rows) + len(rejects), lines.offset, lines.line)
            rows, rejects = [], []
            this_month = _this_month()
    if rows or rejects:
        preparer.prepare(rows)
        yield _Batch(rows, rejects, len(rows) + len(rejects), lines.offset, lines.line)


def _this_month() -> tuple[int, int]:
    today = timezone.now().date()
    return today.year, today.month


# The random bytes a row takes, read for a whole batch at once (a system call per value was a tenth of the
# preparing): its token id's (vault.models.token_id_from), then its href reference's and its event id's (as
# secrets.token_urlsafe in new_token_reference and new_event_id).
_ID_BYTES, _REFERENCE_BYTES, _EVENT_ID_BYTES = TOKEN_ID_RANDOM_BYTES, 24, 18
_ROW_RANDOM_BYTES = _ID_BYTES + _REFERENCE_BYTES + _EVENT_ID_BYTES


def _urlsafe(random: bytes) -> str:
    return base64.urlsafe_b64encode(random).rstrip(b"=").decode()


@functools.lru_cache(maxsize=4096)
def _brand_of_bin(bin_: str) -> str:
    return cards.brand_of(bin_)  # no brand range is longer than six digits: the BIN decides


TOKEN_FIELDS = (
    "merchant", "namespace", "token_id", "reference", "description", "fingerprint", "pan_ciphertext", "key_version",
    "bin", "last_four", "pan_length", "brand", "card_holder_name", "expiry_month", "expiry_year", "billing_address",
    "scheme_transaction_reference", "expires_at", "created_at", "updated_at", "deleted_at", "deleted_reason",
)
EVENT_FIELDS = ("public_id", "merchant", "type", "data", "created_at")


class _Preparer:
    """Everything about a new token that needs no database: what ``card_tokenize`` computes before its insert, and
    the payload ``vault.events.token_event`` builds for ``token.created`` (a test holds the two equal).

    On PostgreSQL the columns are rendered here as lines of ``COPY`` text, off the storing thread's critical path
    (``psycopg``'s ``write_row`` cost that thread a third of its time); elsewhere they stay tuples for
    ``executemany``. Either way the merchant and namespace columns come first and are added when storing.
    """

    def __init__(self, merchant: Merchant):
        self.ring = key_ring()
        self.merchant_id = merchant.pk
        self.associated_prefix = f"token:{merchant.pk}:"  # Token.associated_data(), without building a Token
        self.base_url = settings.PUBLIC_BASE_URL.rstrip("/")
        self.json_base_url = json.dumps(self.base_url)[1:-1]
        self.lifetime = services.default_lifetime()
        self.copy = connection.vendor == "postgresql"  # asked here: the reader thread has no connection
        self.db_datetime = connection.ops.adapt_datetimefield_value

    def prepare(self, rows: list[_Row]) -> None:
        now = timezone.now()
        expires_at = now + self.lifetime
        expires_text = timestamp(expires_at)
        if self.copy:
            db_now, db_expires_at = now.isoformat(), expires_at.isoformat()
        else:
            db_now, db_expires_at = self.db_datetime(now), self.db_datetime(expires_at)
        fingerprint, copy = self.ring.fingerprint, self.copy
        prefix, base_url, merchant_id = self.associated_prefix, self.base_url, self.merchant_id
        random = secrets.token_bytes(_ROW_RANDOM_BYTES * len(rows))
        start = 0
        references = []  # the last segment of each href
        for row in rows:
            row.fingerprint = fingerprint(row.number)
            row.token_id = token_id_from(random[start:start + _ID_BYTES]) or new_token_id()
            start += _ID_BYTES
            references.append(_urlsafe(random[start:start + _REFERENCE_BYTES]))
            start += _REFERENCE_BYTES
            row.event_id = "msg_" + _urlsafe(random[start:start + _EVENT_ID_BYTES])  # as new_event_id
            start += _EVENT_ID_BYTES
        key_version, ciphertexts = self.ring.encrypt_many(
            [(row.number, (prefix + row.token_id).encode()) for row in rows]
        )
        for row, reference, ciphertext in zip(rows, references, ciphertexts):
            number, token_id, event_id = row.number, row.token_id, row.event_id
            row.number = None
            row.href = f"{base_url}/tokens/{reference}"
            bin_, last_four, length = number[:6], number[-4:], len(number)
            brand = _brand_of_bin(bin_)
            description = f"{brand.title()} card ending {last_four}"
            address = None if row.address is None else json.dumps(row.address)
            # The payload of vault.events.token_event; written out rather than through json.dumps (three times
            # slower on this nested dict): only the base URL and the namespace can need escaping.
            data = (
                f'{{"tokenId": "{token_id}", "href": "{self.json_base_url}/tokens/{reference}", '
                f'"tokenExpiryDateTime": "{expires_text}", "paymentInstrument": {{"type": "card/masked", '
                f'"cardNumber": "{cards.masked_from_parts(bin_, last_four, length)}", "bin": "{bin_}", '
                f'"brand": "{brand}", "cardExpiryDate": {{"month": {row.month}, "year": {row.year}}}}}'
                + ("}" if row.namespace is None else f', "namespace": {json.dumps(row.namespace)}}}')
            )
            if copy:
                # Ids, digits, hex, base64url and the brand need no escaping; free text does (_copy_text).
                row.columns = (
                    f"{token_id}\t{reference}\t{description}\t{row.fingerprint}\t\\\\x{ciphertext.hex()}\t"
                    f"{key_version}\t{bin_}\t{last_four}\t{length}\t{brand}\t{_copy_text(row.holder)}\t"
                    f"{row.month}\t{row.year}\t{COPY_NULL if address is None else _copy_text(address)}\t"
                    f"{COPY_NULL}\t{db_expires_at}\t{db_now}\t{db_now}\t{COPY_NULL}\t\n"
                )
                row.event = f"{event_id}\t{merchant_id}\ttoken.created\t{_copy_text(data)}\t{db_now}\n"
            else:
                row.columns = (token_id, reference, description, row.fingerprint, ciphertext, key_version, bin_,
                               last_four, length, brand, row.holder, row.month, row.year, address, None,
                               db_expires_at, db_now, db_now, None, "")
                row.event = (event_id, merchant_id, "token.created", data, db_now)


COPY_NULL = "\\N"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    """``value`` as a field of PostgreSQL's COPY text format."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_COPY_ESCAPES)
    return value  # nearly always: four searches cost a fraction of a translate


_END = object()


class _Reader:
    """Runs a batch generator in a thread of its own, at most two batches ahead (one waiting, one being read), so
    with the batches being stored at most five are in memory; iterating yields its batches and re-raises its
    exception, if any. ``close`` stops it."""

    def __init__(self, batches: Iterator[_Batch]):
        self._batches = batches
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="import_cards reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(_END)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator[_Batch]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()


# ------------------------------------------------------------------------------------------------------------
# Validation: the API's rules (vault/api/serializers.py), its error names, none of its cost
# ------------------------------------------------------------------------------------------------------------
def _problem(column: str, name: str, message: str = "") -> tuple[str, str, str]:
    return column, name, message or VALIDATION_MESSAGES[name]


def _length_problem(column: str, value: str, high: int, *, low: int = 1) -> tuple[str, str, str] | None:
    if not value:
        return _problem(column, "fieldIsEmpty")
    if len(value) < low:
        return _problem(column, "stringIsTooShort", f"The value must have at least {low} characters")
    if len(value) > high:
        return _problem(column, "stringIsTooLong", f"The value must have at most {high} characters")
    return None


def card_number_problem(number: str) -> tuple[str, str, str] | None:
    """What the API says of a card number (``CardNumberField``), or None. Messages never quote the number."""
    if not number:
        return _problem(NUMBER, "fieldIsEmpty")
    if not number.isascii() or not number.isdigit():
        return _problem(NUMBER, "stringFailedRegexCheck", "The card number must be digits only")
    low, high = cards.LENGTH_RANGE
    if len(number) < low:
        return _problem(NUMBER, "stringIsTooShort", f"The card number must have at least {low} digits")
    if len(number) > high:
        return _problem(NUMBER, "stringIsTooLong", f"The card number must have at most {high} digits")
    if not cards.luhn_valid(number):
        return _problem(NUMBER, "panFailedLuhnCheck")
    return None


def expiry_of(text: str, this_month: tuple[int, int]) -> tuple[int, int] | tuple[str, str, str]:
    """``MM/YYYY`` or ``MM/YY`` → (month, year), or the problem, judged as the API judges ``cardExpiryDate``."""
    if not text:
        return _problem(EXPIRY, "fieldIsEmpty")
    month_text, slash, year_text = text.partition("/")
    if (not slash or not month_text.isascii() or not month_text.isdigit() or not year_text.isascii()
            or not year_text.isdigit() or len(month_text) > 2 or len(year_text) not in (2, 4)):
        return _problem(EXPIRY, "dateHasInvalidFormat", "The expiry date must look like MM/YYYY or MM/YY")
    month = int(month_text)
    year = int(year_text) + (2000 if len(year_text) == 2 else 0)
    if month < 1:
        return _problem(EXPIRY, "integerIsTooSmall", "The expiry month must be 1 to 12")
    if month > 12:
        return _problem(EXPIRY, "integerIsTooLarge", "The expiry month must be 1 to 12")
    if year < YEARS[0]:
        return _problem(EXPIRY, "integerIsTooSmall", f"The expiry year must be {YEARS[0]} to {YEARS[1]}")
    if year > YEARS[1]:
        return _problem(EXPIRY, "integerIsTooLarge", f"The expiry year must be {YEARS[0]} to {YEARS[1]}")
    if (year, month) < this_month:
        return _problem(EXPIRY, "fieldHasInvalidValue", "The card expiry date is in the past")
    return month, year


def _address_of(cells: list[str], layout: _Layout, problems: list) -> dict | None:
    values = {name: cells[index] for name, index in layout.address if cells[index]}
    if not values:
        return None
    for name, (required, high) in ADDRESS_RULES.items():
        value = values.get(name)
        if value is None:
            if required:
                problems.append(_problem(name, "fieldIsMissing", "Required when any address column is filled"))
        elif name == "countryCode":
            if len(value) != 2:
                problems.append(_problem(name, "stringIsTooShort" if len(value) < 2 else "stringIsTooLong",
                                         "The country code must have 2 letters"))
            elif value not in cards.COUNTRY_CODES:
                problems.append(_problem(name, "fieldHasInvalidValue",
                                         "The country code must be an ISO 3166-1 alpha-2 code, e.g. GB"))
        elif len(value) > high:
            problems.append(_problem(name, "stringIsTooLong", f"The value must have at most {high} characters"))
    # In the order of BILLING_FIELDS, as the API stores it.
    return {name: values[name] for name in ADDRESS_COLUMNS if name in values}


def _parse(cells: list[str], layout: _Layout, line: int, this_month: tuple[int, int]) -> _Row | _Reject:
    if len(cells) != layout.width:
        return _Reject(line, cells[layout.reference] if len(cells) > layout.reference else "", [
            _problem("", "rowHasWrongNumberOfColumns",
                     f"The row has {len(cells)} columns, the header {layout.width}"),
        ])
    problems = []
    reference = cells[layout.reference]
    number = cells[layout.number]
    holder = cells[layout.holder]
    problem = _length_problem(REFERENCE, reference, REFERENCE_MAX)
    if problem:
        problems.append(problem)
    problem = card_number_problem(number)
    if problem:
        problems.append(problem)
    expiry = expiry_of(cells[layout.expiry], this_month)
    if len(expiry) == 3:
        problems.append(expiry)
    problem = _length_problem(HOLDER, holder, HOLDER_MAX)
    if problem:
        problems.append(problem)
    address = _address_of(cells, layout, problems) if layout.address else None
    namespace = None
    if layout.namespace is not None:
        namespace = cells[layout.namespace] or None
        if namespace is not None and len(namespace) > NAMESPACE_MAX:
            problems.append(_problem(layout.namespace_column, "stringIsTooLong",
                                     f"The namespace must have at most {NAMESPACE_MAX} characters"))
    if number and len(number) >= cards.LENGTH_RANGE[0]:
        # A file whose columns slid: the number must not reach a column kept or written in clear.
        for name, index in layout.others:
            if number in cells[index]:
                problems.append(_problem(name, "fieldHasInvalidValue", "The column holds the card number"))
    if problems:
        return _Reject(line, reference, problems)
    return _Row(line, reference, number, holder, expiry[0], expiry[1], address, namespace)


# ------------------------------------------------------------------------------------------------------------
# Storing (the calling thread, or two storing threads on PostgreSQL)
# ------------------------------------------------------------------------------------------------------------
class _Rows:
    """Multi-row inserts into one model's table: ``COPY`` on PostgreSQL, ``executemany`` elsewhere.

    The ORM's ``bulk_create`` prepares every value of every row through its field (profiled: four fifths of the
    import's time); these rows are tuples already in the database's terms (see ``_Preparer``). Columns are named
    through the model's fields, and a test holds ``TOKEN_FIELDS`` and ``EVENT_FIELDS`` to the models' fields.
    """

    def __init__(self, model, fields: tuple[str, ...]):
        quote = connection.ops.quote_name
        self.table = quote(model._meta.db_table)
        self.columns = ", ".join(quote(model._meta.get_field(name).column) for name in fields)
        self.placeholders = ", ".join(["%s"] * len(fields))

    def insert(self, rows: list[tuple] | list[str]) -> None:
        """Insert ``rows``: lines of COPY text on PostgreSQL, tuples elsewhere."""
        if not rows:
            return
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # The driver's cursor, so its errors wrapped by hand: a duplicate card must be an IntegrityError,
                # which _Store.batch retries.
                with connection.wrap_database_errors:
                    with cursor.cursor.copy(f"COPY {self.table} ({self.columns}) FROM STDIN") as copy:
                        copy.write("".join(rows))
            else:
                cursor.executemany(f"INSERT INTO {self.table} ({self.columns}) VALUES ({self.placeholders})", rows)


STORING_CONNECTIONS = 2
# Each retry follows the commit of the batch it collided with; a file repeating its cards batch after batch can make
# a batch collide with each newer batch stored beside it, so a few more tries than one collision needs.
STORE_ATTEMPTS = 5


class _Storing:
    """Stores batches and hands back what each gave, in the order they were submitted.

    On PostgreSQL, ``STORING_CONNECTIONS`` threads store batches at once, each on a connection of its own: the
    database does most of an import's work (COPY, index upkeep, foreign-key checks, the lookup), and one connection
    keeps it on one core. Batches may then commit out of file order; their outputs and checkpoints are still
    written in order, so a rerun after a crash redoes the batches after the last checkpoint as ever, and finds the
    cards of any that committed. Two batches holding the same card (or namespaces) wait on each other's locks: the
    later one fails on the unique constraint or deadlocks, rolls back, and its retry finds the other's tokens.

    Elsewhere, and inside a caller's transaction (whose rows another connection cannot see), batches are stored one
    at a time, in the calling thread.
    """

    def __init__(self, *, merchant: Merchant, namespace_column: str | None):
        self._store = functools.partial(_Store, merchant=merchant, namespace_column=namespace_column)
        parallel = connection.vendor == "postgresql" and not connection.in_atomic_block
        self.at_once = STORING_CONNECTIONS if parallel else 1
        self._inline = None if parallel else self._store()
        self._todo: queue.Queue = queue.Queue()
        self._results: dict[int, object] = {}
        self._stored = threading.Condition()
        self._submitted = self._returned = 0
        self._threads = [threading.Thread(target=self._work, name=f"import_cards storing {n}", daemon=True)
                         for n in range(self.at_once if parallel else 0)]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: _Batch) -> None:
        if self._inline is not None:
            self._results[self._submitted] = self._inline.batch(batch.rows)
        else:
            self._todo.put((self._submitted, batch))
        self._submitted += 1

    def result(self) -> tuple[Counts, list[tuple[str, str, str]], list[_Reject]]:
        """What storing the oldest batch not asked about yet gave (waiting for it); re-raises its exception."""
        with self._stored:
            self._stored.wait_for(lambda: self._returned in self._results)
            result = self._results.pop(self._returned)
        self._returned += 1
        if isinstance(result, BaseException):
            raise result
        return result

    def _work(self) -> None:
        store = None
        try:
            while (item := self._todo.get()) is not _END:
                number, batch = item
                try:
                    store = store or self._store()
                    result = store.batch(batch.rows)
                except BaseException as exc:  # handed to the calling thread, which raises it
                    result = exc
                with self._stored:
                    self._results[number] = result
                    self._stored.notify_all()
        finally:
            connection.close()  # this thread's own

    def close(self) -> None:
        """Let the batches submitted finish, then stop the threads."""
        for _ in self._threads:
            self._todo.put(_END)
        for thread in self._threads:
            thread.join()


@dataclass(slots=True)
class _Stored:
    """A live token of the vault holding a card of the batch (a prepared ``_Row`` stands in for one it adds)."""

    token_id: str
    href: str
    holder: str
    month: int | None
    year: int | None
    address: dict | None


class _Store:
    def __init__(self, *, merchant: Merchant, namespace_column: str | None):
        self.merchant = merchant
        self.namespace_column = namespace_column
        self.base_url = settings.PUBLIC_BASE_URL.rstrip("/")
        self.tokens = _Rows(Token, TOKEN_FIELDS)
        self.events = _Rows(Event, EVENT_FIELDS)
        self.look_up = False  # look the next batch's cards up before inserting them (see batch)

    def batch(self, rows: list[_Row]) -> tuple[Counts, list[tuple[str, str, str]], list[_Reject]]:
        """Store one batch in one transaction: returns its counts, its mapping lines and the rows the namespace
        limit refused.

        A migration's cards are new to the vault, and looking a batch up costs a fifth of the import. So a batch
        without namespaces is inserted without a lookup first unless the one before met cards the vault held (a
        rerun, a file of cards stored already); should one of its cards be in the vault, the unique constraint
        refuses the batch, which rolls back whole and is stored again with its lookup.
        """
        if not rows:
            return Counts(), [], []
        for attempt in range(STORE_ATTEMPTS):
            try:
                with transaction.atomic():
                    result, found = self._store(rows, look_up=self.look_up or attempt > 0)
            except DatabaseError as exc:
                # A card of the batch was in the vault already (inserted without a lookup), or a request through the
                # API, another import or the batch stored beside this one stored one of these cards (or namespaces)
                # between the lookup and the insert, or two batches inserting the same cards in another order
                # deadlocked: the batch rolled back whole, and looking again finds those tokens.
                deadlock = getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_DETECTED
                if attempt == STORE_ATTEMPTS - 1 or not (isinstance(exc, IntegrityError) or deadlock):
                    raise
                continue
            self.look_up = found
            return result
        raise AssertionError("unreachable")

    def _store(self, rows: list[_Row], *, look_up: bool):
        """Store ``rows``, after looking their cards up in the vault when ``look_up``; returns what ``batch``
        returns, and whether the lookup found any of them."""
        now = timezone.now()
        namespaces = self._namespaces({row.namespace for row in rows if row.namespace is not None})
        # The namespace limit must know which cards a namespace holds already: a batch with namespaces is looked up.
        stored = self._stored(rows, namespaces, now) if look_up or namespaces else {}
        found = bool(stored)
        room = self._room(namespaces, now)
        limit = settings.NAMESPACE_CARD_LIMIT
        merchant_id = self.merchant.pk
        copy = connection.vendor == "postgresql"
        counts = Counts()
        mapped: list[tuple[str, str, str]] = []
        refused: list[_Reject] = []
        tokens: list[tuple] = []
        events: list[tuple] = []
        event_ids: list[str] = []
        for row in rows:
            namespace_id = None if row.namespace is None else namespaces[row.namespace]
            key = (row.fingerprint, namespace_id)
            token = stored.get(key)
            if token is not None:
                counts.reused += 1
                if (row.holder != token.holder or row.month != token.month or row.year != token.year
                        or services.billing_address_differs(row.address, token.address)):
                    counts.differing += 1
                mapped.append((row.reference, token.token_id, token.href))
                continue
            if namespace_id is not None:
                if room[namespace_id] >= limit:
                    refused.append(_Reject(row.line, row.reference, [_problem(
                        self.namespace_column, "namespaceCardLimitReached",
                        f"The namespace already holds {limit} cards, the most it can hold")]))
                    continue
                room[namespace_id] += 1
            if copy:
                tokens.append(f"{merchant_id}\t{COPY_NULL if namespace_id is None else namespace_id}\t{row.columns}")
            else:
                tokens.append((merchant_id, namespace_id, *row.columns))
            events.append(row.event)
            event_ids.append(row.event_id)
            stored[key] = row
            counts.imported += 1
            mapped.append((row.reference, row.token_id, row.href))
        self.tokens.insert(tokens)
        self.events.insert(events)
        self._deliveries(event_ids, now)
        return (counts, mapped, refused), found

    def _namespaces(self, names: set[str]) -> dict[str, int]:
        """The batch's namespaces by name, created when new, locked (in pk order) as ``card_tokenize`` locks them."""
        if not names:
            return {}
        ids = dict(Namespace.objects.filter(merchant=self.merchant, name__in=names).values_list("name", "pk"))
        if names - ids.keys():
            Namespace.objects.bulk_create([Namespace(merchant=self.merchant, name=name) for name in names - ids.keys()],
                                          ignore_conflicts=True)
            ids = dict(Namespace.objects.filter(merchant=self.merchant, name__in=names).values_list("name", "pk"))
        list(Namespace.objects.select_for_update().filter(pk__in=ids.values()).order_by("pk").values_list("pk"))
        return ids

    def _stored(self, rows: list[_Row], namespaces: dict[str, int], now) -> dict[tuple[str, int | None], _Stored]:
        """Live tokens of the merchant holding the batch's cards, by (fingerprint, namespace), in one query: one arm
        for cards without a namespace, one for the batch's namespaces, each matching one of the partial unique
        indexes. An expired token is destroyed, as ``card_tokenize`` does, and its card gets a new one."""
        live = Token.objects.filter(merchant=self.merchant, deleted_at__isnull=True).order_by()
        columns = ("pk", "fingerprint", "namespace_id", "token_id", "reference", "card_holder_name", "expiry_month",
                   "expiry_year", "billing_address", "expires_at")
        arms = []
        plain = {row.fingerprint for row in rows if row.namespace is None}
        if plain:
            arms.append(live.filter(namespace__isnull=True, fingerprint__in=plain).values_list(*columns))
        spaced = {row.fingerprint for row in rows if row.namespace is not None}
        if spaced:
            arms.append(live.filter(namespace_id__in=namespaces.values(), fingerprint__in=spaced).values_list(*columns))
        found = arms[0].union(*arms[1:], all=True) if len(arms) > 1 else arms[0]
        if connection.vendor == "postgresql":
            # With PostgreSQL's default cost of a random page (4, for spinning disks) the planner prices thousands
            # of index probes above a scan of every token, and a batch's lookup grows with the vault; at the cost
            # of SSDs it probes the index. For this transaction only.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL random_page_cost = 1.1")
        stored, expired = {}, []
        for pk, fingerprint, namespace_id, token_id, reference, holder, month, year, address, expires_at in found:
            if expires_at <= now:
                expired.append(pk)
            else:
                stored[(fingerprint, namespace_id)] = _Stored(token_id, f"{self.base_url}/tokens/{reference}", holder,
                                                              month, year, address)
        for token in Token.objects.select_related("merchant", "namespace").filter(pk__in=expired):
            services._destroy(token, reason="expired")
        return stored

    def _room(self, namespaces: dict[str, int], now) -> Counter:
        """Live cards in each of the batch's namespaces, counted as ``card_tokenize`` counts them."""
        if not namespaces:
            return Counter()
        return Counter(dict(
            Token.objects.filter(namespace_id__in=namespaces.values(), deleted_at__isnull=True, expires_at__gt=now)
            .values("namespace_id").annotate(n=Count("pk")).values_list("namespace_id", "n")
        ))

    def _deliveries(self, event_ids: list[str], now) -> None:
        """Deliveries of the batch's events to the merchant's subscribed endpoints, due now and left to the sweeper
        (``notifications.services.deliveries_sweep``): no broker message per event, whatever the size of the file."""
        if not event_ids:
            return
        endpoints = [endpoint for endpoint in WebhookEndpoint.objects.filter(merchant=self.merchant, is_enabled=True)
                     if endpoint.wants("token.created")]
        if not endpoints:
            return
        pks = Event.objects.filter(public_id__in=event_ids).values_list("pk", flat=True)
        Delivery.objects.bulk_create([
            Delivery(event_id=pk, endpoint=endpoint, next_attempt_at=now, created_at=now, updated_at=now)
            for pk in pks for endpoint in endpoints
        ])


# ------------------------------------------------------------------------------------------------------------
# Outputs and the checkpoint
# ------------------------------------------------------------------------------------------------------------
def _csv_bytes(lines) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode()


def _reject_lines(rejects: list[_Reject]):
    for reject in rejects:
        # The reference of a rejected row may be anything, a card number from a slid column included.
        reference = redact(reject.reference)
        for column, name, message in reject.problems:
            yield reject.line, reference, column, name, message


def _append(handle, lines) -> None:
    data = _csv_bytes(lines)
    if data:
        handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def _open_private(path: Path, header: tuple[str, ...]) -> None:
    """Create ``path`` afresh (owner-only: it maps references to tokens) with its header line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(_csv_bytes([header]))
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class _State:
    """The checkpoint: what is done, where the file resumes, how long each output was when it was written."""

    merchant: str
    namespace_column: str | None
    file: dict
    mapping_path: str
    reject_path: str
    offset: int = 0
    line: int = 0
    mapping_size: int = 0
    reject_size: int = 0
    complete: bool = False
    counts: Counts = field(default_factory=Counts)
    version: int = CHECKPOINT_VERSION

    def save(self, path: Path) -> None:
        temporary = path.with_name(path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(asdict(self)))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: Path) -> "_State | None":
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            raise CardImportError(f"the progress file {path} is unreadable; remove it and pass --restart") from None
        if data.get("version") != CHECKPOINT_VERSION:
            raise CardImportError(f"the progress file {path} is from another version; pass --restart")
        data["counts"] = Counts(**data["counts"])
        return cls(**data)


def _start(*, merchant, source, identity, namespace_column, mapping_path, reject_path, checkpoint_path,
           restart) -> _State:
    """The checkpoint to go on from, checked against this run; or a fresh one, with fresh outputs."""
    state = None if restart else _State.load(checkpoint_path)
    if state is not None:
        if state.merchant != merchant.public_id:
            raise CardImportError(f"{source.name} is being imported for merchant {state.merchant}; "
                                  "finish that, or pass --restart to import it afresh")
        if state.file != identity:
            raise CardImportError(f"{source.name} changed since its import began; pass --restart to import it afresh "
                                  "(cards already stored keep their tokens)")
        if state.namespace_column != namespace_column:
            raise CardImportError(f"the import began with --namespace-column {state.namespace_column or '(none)'}; "
                                  "resume it with the same, or pass --restart")
        for kind, recorded, given in (("mapping", state.mapping_path, mapping_path),
                                      ("reject", state.reject_path, reject_path)):
            if Path(recorded) != given:
                raise CardImportError(f"the import began writing its {kind} file to {recorded}; resume it with the "
                                      "same path, or pass --restart")
        if state.complete:
            return state
        for path, size in ((mapping_path, state.mapping_size), (reject_path, state.reject_size)):
            # Lines after the checkpoint belong to a batch that is about to be redone.
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                actual = -1
            if actual < size:
                raise CardImportError(f"{path} is shorter than when the import was interrupted; "
                                      "pass --restart to import the file afresh")
            if actual > size:
                os.truncate(path, size)
        return state

    if not restart:
        for path in (mapping_path, reject_path):
            if path.exists() and path.stat().st_size > 0:
                raise CardImportError(f"{path} exists and there is no import of {source.name} to resume; "
                                      "move it away, or pass --restart to overwrite it")
    _open_private(mapping_path, MAPPING_HEADER)
    _open_private(reject_path, REJECT_HEADER)
    state = _State(merchant=merchant.public_id, namespace_column=namespace_column, file=identity,
                   mapping_path=str(mapping_path), reject_path=str(reject_path),
                   mapping_size=mapping_path.stat().st_size, reject_size=reject_path.stat().st_size)
    state.save(checkpoint_path)
    return state
