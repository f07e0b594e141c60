"""What an import tells its caller: the counts, the result of a run, the progress after each batch, and the one error
it raises."""

from dataclasses import asdict, dataclass
from pathlib import Path


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
    connections: int = 1  # database connections that stored batches at once (two on PostgreSQL)

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
    looked_up: bool = False  # its cards were looked up in the vault before they were stored (see storing.Store)
