"""Checkpoints and outputs: the mapping file (externalReference, tokenId, href), the reject file (line,
externalReference, field, reason, message) and the checkpoint ``FILE.progress`` that lets a rerun resume.

After each batch commits, its mapping and reject lines are appended and synced, then the checkpoint (byte offset,
line, counters, output sizes) is replaced atomically. A rerun truncates the outputs to the sizes the checkpoint
recorded and carries on from its offset. A run killed between a commit and its checkpoint redoes that batch: its
cards are in the vault by then, so they map to the same tokens and nothing is stored twice.
"""

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.logging import redact
from merchants.models import Merchant
from vault.importing.checking import Reject
from vault.importing.results import CardImportError, Counts

MAPPING_HEADER = ("externalReference", "tokenId", "href")
REJECT_HEADER = ("line", "externalReference", "field", "reason", "message")
CHECKPOINT_VERSION = 1


def default_paths(source: Path) -> tuple[Path, Path, Path]:
    """``cards.csv`` → ``cards.mapping.csv``, ``cards.rejects.csv``, ``cards.csv.progress``."""
    return (
        source.with_name(source.stem + ".mapping.csv"),
        source.with_name(source.stem + ".rejects.csv"),
        source.with_name(source.name + ".progress"),
    )


def csv_bytes(lines) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(lines)
    return buffer.getvalue().encode()


def reject_lines(rejects: list[Reject]):
    for reject in rejects:
        # The reference of a rejected row may be anything, a card number from a slid column included.
        reference = redact(reject.reference)
        for column, name, message in reject.problems:
            yield reject.line, reference, column, name, message


def append(handle, lines) -> None:
    """Append ``lines`` to the output ``handle`` and sync it: the checkpoint written next counts them."""
    data = csv_bytes(lines)
    if data:
        handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())


def _open_private(path: Path, header: tuple[str, ...]) -> None:
    """Create ``path`` afresh (owner-only: it maps references to tokens) with its header line."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(csv_bytes([header]))
        handle.flush()
        os.fsync(handle.fileno())


@dataclass
class State:
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
    def load(cls, path: Path) -> "State | None":
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


def start(
    *,
    merchant: Merchant,
    source: Path,
    identity: dict,
    namespace_column: str | None,
    mapping_path: Path,
    reject_path: Path,
    checkpoint_path: Path,
    restart: bool,
) -> State:
    """The checkpoint to go on from, checked against this run; or a fresh one, with fresh outputs."""
    state = None if restart else State.load(checkpoint_path)
    if state is not None:
        if state.merchant != merchant.public_id:
            raise CardImportError(
                f"{source.name} is being imported for merchant {state.merchant}; "
                "finish that, or pass --restart to import it afresh"
            )
        if state.file != identity:
            raise CardImportError(
                f"{source.name} changed since its import began; pass --restart to import it afresh "
                "(cards already stored keep their tokens)"
            )
        if state.namespace_column != namespace_column:
            raise CardImportError(
                f"the import began with --namespace-column {state.namespace_column or '(none)'}; "
                "resume it with the same, or pass --restart"
            )
        for kind, recorded, given in (
            ("mapping", state.mapping_path, mapping_path),
            ("reject", state.reject_path, reject_path),
        ):
            if Path(recorded) != given:
                raise CardImportError(
                    f"the import began writing its {kind} file to {recorded}; resume it with the "
                    "same path, or pass --restart"
                )
        if state.complete:
            return state
        for path, size in ((mapping_path, state.mapping_size), (reject_path, state.reject_size)):
            # Lines after the checkpoint belong to a batch that is about to be redone.
            try:
                actual = path.stat().st_size
            except FileNotFoundError:
                actual = -1
            if actual < size:
                raise CardImportError(
                    f"{path} is shorter than when the import was interrupted; pass --restart to import the file afresh"
                )
            if actual > size:
                os.truncate(path, size)
        return state

    if not restart:
        for path in (mapping_path, reject_path):
            if path.exists() and path.stat().st_size > 0:
                raise CardImportError(
                    f"{path} exists and there is no import of {source.name} to resume; "
                    "move it away, or pass --restart to overwrite it"
                )
    _open_private(mapping_path, MAPPING_HEADER)
    _open_private(reject_path, REJECT_HEADER)
    state = State(
        merchant=merchant.public_id,
        namespace_column=namespace_column,
        file=identity,
        mapping_path=str(mapping_path),
        reject_path=str(reject_path),
        mapping_size=mapping_path.stat().st_size,
        reject_size=reject_path.stat().st_size,
    )
    state.save(checkpoint_path)
    return state
