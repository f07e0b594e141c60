import argparse
import gc
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from tqdm import tqdm

from core.audit import Actor
from merchants.models import Merchant
from vault import importing
from vault.crypto import KeysUnavailable

HELP = """\
Tokenize the cards of a CSV export from another provider for one merchant, and write which token each row got.

The file is UTF-8 CSV (comma separated, double quotes, a byte order mark is fine) with a header line naming its
columns (matched ignoring case and surrounding spaces; no other column is allowed):

  externalReference  required  your reference for the row (1-255 characters); repeated in the mapping file
  cardNumber         required  12 to 19 digits, nothing else, passing the Luhn check
  expiryDate         required  MM/YYYY or MM/YY (05/2031, 5/31), not in the past
  cardHolderName     required  1-255 characters
  address1           optional  billing address: when any of these columns is filled in a row,
  address2           optional    address1 (1-80), postalCode (1-15), city (1-50) and countryCode
  address3           optional    (ISO 3166-1 alpha-2, e.g. GB) are required; address2, address3 (1-80)
  postalCode         optional    and state (1-30) stay optional. An empty cell is an absent value.
  city               optional
  state              optional
  countryCode        optional
  NAME               optional  with --namespace-column NAME: the row's namespace (1-64), empty for none

Every row is checked with the rules of POST /tokens. A row that fails goes to the reject file, one line per
problem: line,externalReference,field,reason,message (reason is the API's error name, e.g. panFailedLuhnCheck,
or namespaceCardLimitReached for a 17th card in a namespace). Card numbers never appear in it, nor on screen.

A card already in the vault for this merchant and namespace, or met earlier in the file, keeps its token (its
stored details are kept too). The mapping file gets externalReference,tokenId,href for every row stored.

Interrupted (Ctrl-C stops after the current batch), the same command resumes where it stopped, from the
checkpoint FILE.progress; it finishes without storing any card twice, and the mapping file holds each row once.

New tokens get a token.created event each, delivered to webhook endpoints as the API's are.
The input file holds card numbers in clear: once the import is complete, destroy it.
"""


class _HelpFormatter(DjangoHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class Command(BaseCommand):
    help = HELP

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, help="The CSV file")
        parser.add_argument("--merchant", required=True, metavar="ID", help="The merchant's id (mer_…)")
        parser.add_argument("--namespace-column", metavar="NAME", help="The column holding each row's namespace")
        parser.add_argument(
            "--mapping-file", type=Path, metavar="PATH", help="Default: beside FILE, cards.csv → cards.mapping.csv"
        )
        parser.add_argument(
            "--reject-file", type=Path, metavar="PATH", help="Default: beside FILE, cards.csv → cards.rejects.csv"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=2000,
            metavar="N",
            help=f"Rows per transaction and checkpoint (default 2000, at most {importing.MAX_BATCH_SIZE:,})",
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Forget the checkpoint and import the file from its start, overwriting the mapping "
            "and reject files (cards already stored keep their tokens)",
        )

    def handle(
        self,
        *args,
        file: Path,
        merchant: str,
        namespace_column,
        mapping_file,
        reject_file,
        batch_size: int,
        restart: bool,
        **options,
    ):
        if not 1 <= batch_size <= importing.MAX_BATCH_SIZE:
            raise CommandError(f"--batch-size must be 1 to {importing.MAX_BATCH_SIZE}")
        owner = Merchant.objects.filter(public_id=merchant).first()
        if owner is None:
            raise CommandError(f"no merchant {merchant}")
        if not owner.is_active:
            raise CommandError(f"merchant {merchant} is deactivated")
        try:
            total = file.stat().st_size
        except OSError as exc:
            raise CommandError(f"cannot read {file}: {exc.strerror}") from None

        # Django's objects (its modules, the app registry: most of this process's) live as long as the process, and
        # the import makes millions of short-lived ones: frozen, the collector's full passes stop walking the first
        # every few thousand rows (a tenth of the import's CPU).
        gc.freeze()
        with (
            _stop_on_signal() as stop,
            tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=None, file=sys.stderr, smoothing=0.1
            ) as bar,
        ):
            rows = 0

            def on_batch(done: importing.BatchDone):
                nonlocal rows
                if done.number == 1:
                    # A resumed run starts where the last one stopped: its rate and ETA count this run only.
                    bar.initial = bar.n = bar.last_print_n = done.offset - done.bytes
                rows += done.rows
                bar.set_postfix_str(
                    f"{rows / max(bar.format_dict['elapsed'], 1e-3):,.0f} cards/s, line {done.line:,}", refresh=False
                )
                bar.update(done.bytes)

            try:
                result = importing.cards_import(
                    merchant=owner,
                    source=file,
                    namespace_column=namespace_column,
                    mapping_path=mapping_file,
                    reject_path=reject_file,
                    batch_size=batch_size,
                    restart=restart,
                    on_batch=on_batch,
                    should_stop=stop,
                    actor=Actor("command:import_cards", merchant=owner),
                )
            except (importing.CardImportError, KeysUnavailable) as exc:
                raise CommandError(str(exc)) from None
        self._summary(result)
        if not result.complete:
            raise CommandError(f"stopped after line {result.line:,}: run the same command again to resume")

    def _summary(self, result: importing.ImportResult) -> None:
        total, run = result.counts, result.run
        if result.already_complete:
            self.stdout.write("This file was imported already (pass --restart to import it again).")
        elif result.resumed_at_line:
            self.stdout.write(f"Resumed at line {result.resumed_at_line:,}.")
        self.stdout.write(
            f"Rows read: {total.rows:,}; imported: {total.imported:,}; reused: {total.reused:,}; "
            f"rejected: {total.rejected:,}"
        )
        if total.differing:
            self.stdout.write(
                f"{total.differing:,} reused row(s) differed from the stored card details, which were kept."
            )
        if not result.already_complete:
            self.stdout.write(f"This run: {run.rows:,} rows in {result.seconds:,.1f} s, {result.rate:,.0f} cards/s")
        self.stdout.write(f"Mapping: {result.mapping_path}")
        self.stdout.write(f"Rejects: {result.reject_path}")
        if result.complete:
            self.stdout.write(self.style.SUCCESS("Import complete."))


@contextmanager
def _stop_on_signal():
    """Ctrl-C or SIGTERM asks the import to stop after the batch in hand (committed and checkpointed); a second one
    interrupts at once."""
    requested = False

    def ask(signum, frame):
        nonlocal requested
        if requested:
            raise KeyboardInterrupt
        requested = True
        sys.stderr.write("\nStopping after this batch (Ctrl-C again to stop at once)…\n")

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # signals reach the main thread only
        return
    previous = {sig: signal.signal(sig, ask) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
