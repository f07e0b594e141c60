"""Reading the file: UTF-8 CSV a line at a time (a byte order mark, CRLF and loose header case are fine), its header
mapped to the known columns, and a thread that reads ahead. Nothing here touches the database or judges a value.
"""

import csv
import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from core.logging import redact
from vault import rules
from vault.importing.results import CardImportError

REFERENCE, NUMBER, EXPIRY, HOLDER = "externalReference", "cardNumber", "expiryDate", "cardHolderName"
REQUIRED_COLUMNS = (REFERENCE, NUMBER, EXPIRY, HOLDER)
ADDRESS_COLUMNS = tuple(rules.ADDRESS_LINES)  # address1, address2, address3, postalCode, city, state, countryCode
MAX_LINE_BYTES = 1 << 20  # a longer "line" is garbage; reading it in pieces keeps memory bounded


class Lines:
    """The decoded lines of a binary file, counting the bytes and lines consumed. ``csv`` pulls one line at a time
    and only as many as the record needs, so after each record ``offset`` and ``line`` say where the next begins."""

    def __init__(self, handle):
        self.handle = handle
        self.offset = 0
        self.line = 0
        self.flaw: tuple[str, str] | None = None  # what is wrong with a line read; ``records`` reads and clears it

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


def file_identity(handle, header: list[str]) -> dict:
    """What tells a rerun it reads the same file: its size, its modification time and its header. Never a hash of
    its content, which holds card numbers."""
    stat = os.fstat(handle.fileno())
    return {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "header_sha256": hashlib.sha256("\x1f".join(header).encode()).hexdigest(),
    }


def header_of(reader, lines: Lines) -> list[str]:
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
class Layout:
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


def layout_of(header: list[str], namespace_column: str | None) -> Layout:
    """The layout the header describes; raises CardImportError for an unknown, repeated or missing column."""
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
            "unknown column(s) in the header: "
            + ", ".join(redact(name)[:40] for name in unknown)
            + "; see `manage.py import_cards --help` for the column names"
            + ("" if namespace_column else " (a namespace column needs --namespace-column)")
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if namespace_column and "namespace" not in positions:
        missing.append(namespace_column)
    if missing:
        raise CardImportError(f"missing column(s) in the header: {', '.join(missing)}")
    others = tuple(
        (name if name != "namespace" else namespace_column, index)
        for name, index in positions.items()
        if name != NUMBER
    )
    return Layout(
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


def records(reader, lines: Lines) -> Iterator[tuple[int, list[str] | None, tuple[str, str] | None]]:
    """``(line, cells, None)`` for each record of the file after the header, or ``(line, None, (errorName,
    message))`` for one that is not valid CSV or UTF-8 or holds a NUL; blank lines are skipped. ``line`` is where
    the record begins; ``lines.offset`` says where the next one does."""
    while True:
        start = lines.line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error:
            lines.flaw = None
            yield start, None, ("rowIsNotValidCsv", "The row is not valid CSV (mind its quotes)")
            continue
        if lines.flaw:
            flaw, lines.flaw = lines.flaw, None
            yield start, None, flaw
        elif cells:
            yield start, cells, None


_END = object()


class Ahead:
    """Runs an iterator in a thread of its own, at most two items ahead (one waiting, one being made); iterating
    yields its items and re-raises its exception, if any. ``close`` stops it."""

    def __init__(self, items: Iterator, *, name: str):
        self._items = items
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread, which raises it
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stopping.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def __iter__(self) -> Iterator:
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
