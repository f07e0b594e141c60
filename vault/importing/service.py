"""``cards_import``: the file read, checked and prepared a batch at a time in a reader thread, the batches stored
(two at once on PostgreSQL), their outputs and checkpoints written in file order by the calling thread."""

import csv
import fcntl
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path

from django.utils import timezone

from core.audit import Actor, audit_record
from merchants.models import Merchant
from vault.importing import checkpoints, reading, storing
from vault.importing.checking import Reject, Row, row_of
from vault.importing.preparing import Preparer
from vault.importing.results import BatchDone, CardImportError, Counts, ImportResult
from vault.importing.storing import Batch

ANALYZE_FROM = 10_000  # cards stored by a run before it first refreshes the planner's statistics
MAX_BATCH_SIZE = 10_000  # SQLite takes at most 32,766 parameters a query; a batch's lookup uses two per row


def cards_import(
    *,
    merchant: Merchant,
    source: Path,
    namespace_column: str | None = None,
    mapping_path: Path | None = None,
    reject_path: Path | None = None,
    batch_size: int = 2000,
    restart: bool = False,
    actor: Actor | None = None,
    on_batch: Callable[[BatchDone], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    analyze_from: int = ANALYZE_FROM,
) -> ImportResult:
    """Tokenize every valid row of the CSV file ``source`` for ``merchant``; see the package docstring.

    Idempotent and resumable: a rerun after an interruption (a crash, ``should_stop``, an exception from
    ``on_batch``) continues from the last checkpoint and never stores a card twice; a rerun of a finished import
    does nothing (``already_complete``) unless ``restart``, which starts the file over (its cards then map to the
    tokens already stored). Writes tokens, their ``token.created`` events (the dispatcher makes their deliveries),
    namespaces, an audit row when a run starts and when it ends, the mapping file (externalReference, tokenId,
    href), the reject file and the checkpoint. On PostgreSQL it refreshes the planner's statistics of the token table
    each time the cards it stored double, from ``analyze_from`` on. Raises ``CardImportError``.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise CardImportError(f"the batch size must be 1 to {MAX_BATCH_SIZE}")
    source = Path(source)
    default_mapping, default_rejects, checkpoint_path = checkpoints.default_paths(source)
    mapping_path = Path(mapping_path or default_mapping).resolve()
    reject_path = Path(reject_path or default_rejects).resolve()
    if len({source.resolve(), mapping_path, reject_path, checkpoint_path.resolve()}) < 4:
        raise CardImportError("the input, mapping, reject and progress files must be four different files")
    actor = actor or Actor("import_cards", merchant=merchant)
    try:
        handle = open(source, "rb")  # noqa: SIM115 - closed by the `with handle` below
    except OSError as exc:
        raise CardImportError(f"cannot read {source}: {exc.strerror}") from None

    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when the file closes
        except BlockingIOError:
            raise CardImportError(f"another import of {source.name} is running") from None
        lines = reading.Lines(handle)
        reader = csv.reader(lines, strict=True)
        header = reading.header_of(reader, lines)
        layout = reading.layout_of(header, namespace_column)
        state = checkpoints.start(
            merchant=merchant,
            source=source,
            identity=reading.file_identity(handle, header),
            namespace_column=namespace_column,
            mapping_path=mapping_path,
            reject_path=reject_path,
            checkpoint_path=checkpoint_path,
            restart=restart,
        )
        if state.complete:
            return ImportResult(
                counts=state.counts,
                run=Counts(),
                seconds=0.0,
                complete=True,
                already_complete=True,
                line=state.line,
                mapping_path=mapping_path,
                reject_path=reject_path,
            )
        resumed_at = None
        if state.offset:
            resumed_at = state.line + 1
            lines.seek(state.offset, state.line)

        audit_record(
            actor=actor,
            action="cards.import.start",
            object_type="file",
            object_id=source.name[:64],
            detail={"resumed_at_line": resumed_at},
        )
        store = storing.Storing(merchant=merchant, namespace_column=layout.namespace_column)
        batches = reading.Ahead(
            _batches(reader, lines, layout, batch_size, Preparer(merchant)), name="import_cards reader"
        )
        run = Counts()
        started = time.monotonic()
        number = 0
        analyze_at = analyze_from
        stopped = False
        pending: deque[Batch] = deque()  # submitted for storing, outputs not written yet; oldest first
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
                    if waiting is not None and not any(waiting.overlaps(other) for other in pending):
                        store.submit(waiting)
                        pending.append(waiting)
                        waiting = None
                        if len(pending) < store.at_once:
                            continue
                    if not pending:
                        break
                    # The oldest batch's outputs and checkpoint, in file order whichever batch committed first.
                    batch = pending.popleft()
                    stored = store.result()
                    counts = stored.counts
                    counts.rows = batch.read
                    counts.rejected += len(batch.rejects) + len(stored.refused)
                    checkpoints.append(mapping, stored.mapped)
                    checkpoints.append(
                        rejects, checkpoints.reject_lines(sorted(batch.rejects + stored.refused, key=lambda r: r.line))
                    )
                    state.counts.add(counts)
                    read_bytes = batch.offset - state.offset
                    state.offset, state.line = batch.offset, batch.line
                    state.mapping_size, state.reject_size = mapping.tell(), rejects.tell()
                    state.save(checkpoint_path)
                    run.add(counts)
                    number += 1
                    if run.imported >= analyze_at:
                        storing.refresh_statistics()
                        analyze_at = 2 * run.imported
                    if on_batch:
                        on_batch(
                            BatchDone(
                                number=number,
                                rows=batch.read,
                                bytes=read_bytes,
                                offset=batch.offset,
                                line=batch.line,
                                counts=replace(state.counts),
                                looked_up=stored.looked_up,
                            )
                        )
                    if should_stop and should_stop():
                        stopped = True  # no new batch; those being stored are finished and written
                        waiting = None
        finally:
            store.close()
            batches.close()
        if not stopped:
            state.complete = True
            state.save(checkpoint_path)
        seconds = time.monotonic() - started
        audit_record(
            actor=actor,
            action="cards.import.stop" if stopped else "cards.import.finish",
            object_type="file",
            object_id=source.name[:64],
            detail={"line": state.line, "run": asdict(run), "total": asdict(state.counts)},
        )
    return ImportResult(
        counts=state.counts,
        run=run,
        seconds=seconds,
        complete=not stopped,
        resumed_at_line=resumed_at,
        line=state.line,
        mapping_path=mapping_path,
        reject_path=reject_path,
        connections=store.at_once,
    )


def _batches(
    reader, lines: reading.Lines, layout: reading.Layout, batch_size: int, preparer: Preparer
) -> Iterator[Batch]:
    """Read, check and prepare ``batch_size`` rows at a time (the reader thread: no database here); each batch ends
    on a record boundary."""
    rows: list[Row] = []
    rejects: list[Reject] = []
    today = timezone.now().date()
    for line, cells, flaw in reading.records(reader, lines):
        if flaw is not None:
            rejects.append(Reject(line, "", [("", *flaw)]))
        else:
            checked = row_of(cells, layout, line, today=today)
            (rejects if isinstance(checked, Reject) else rows).append(checked)
        if len(rows) + len(rejects) >= batch_size:
            preparer.prepare(rows)
            yield Batch(rows, rejects, len(rows) + len(rejects), lines.offset, lines.line)
            rows, rejects = [], []
            today = timezone.now().date()
    if rows or rejects:
        preparer.prepare(rows)
        yield Batch(rows, rejects, len(rows) + len(rejects), lines.offset, lines.line)
