"""Bulk import of cards exported by another provider: ``manage.py import_cards`` is a thin shell around
``cards_import``.

The same product as ``POST /tokens``, a file at a time: each row is judged by the card rules (``vault.rules``), each
new card becomes the token ``card_tokenize`` would make (``vault.services.tokenize.token_new``) with the same
``token.created`` event (``vault.events.token_event_data``, written through ``notifications.services.events_new``),
and identity and the namespace card limit are the API's. What is the import's own is how it goes about it:

- ``reading``: the file, streamed a line at a time (nothing is kept from one batch to the next but counters, so
  memory stays flat whatever its size), its header mapped to the known columns;
- ``checking``: a row's columns against the card rules, each problem a line of the reject file (line, external
  reference, field, reason, message), never its card number. A row whose card number also sits in another column
  is rejected, so a file with slid columns cannot leak numbers into the outputs or the vault's clear-text columns;
- ``preparing``: in a reader thread that touches no database, a batch's tokens: fingerprints, ids, ciphertexts (a
  batch at once), events;
- ``storing``: each batch in one transaction, its lookup of the cards the vault holds skipped while a migration's
  cards are new, through a storage strategy (``writers``: ``COPY`` on PostgreSQL, ``bulk_create`` elsewhere), two
  batches at once on PostgreSQL, whose share of a row (COPY, a dozen index entries, foreign-key checks) is larger
  than Python's; a batch sharing a card or a namespace with one being stored waits for it, so the file's order
  decides, as it does on one connection;
- ``checkpoints``: the mapping and reject files and ``FILE.progress``, written in file order after each batch
  commits, from which a rerun resumes without storing any card twice.

**Statistics.** A migration usually fills a new merchant, faster than autovacuum notices. Until PostgreSQL's
statistics say the merchant holds many tokens, its planner looks a batch up by reading all of the merchant's
entries (of the merchant index or the card index) rather than probing for the batch's cards, so each batch costs more
than the one before: a 300,000-card import read 23 million rows, and a million cards into a fresh server went at
10,100 cards/s instead of 17,600. The import therefore runs ``ANALYZE`` on the token table itself each time the
cards it stored double, from ``ANALYZE_FROM`` on (under half a second on a million tokens).
"""

from vault.importing.checkpoints import default_paths
from vault.importing.reading import ADDRESS_COLUMNS, REQUIRED_COLUMNS
from vault.importing.results import BatchDone, CardImportError, Counts, ImportResult
from vault.importing.service import ANALYZE_FROM, MAX_BATCH_SIZE, cards_import

__all__ = [
    "ADDRESS_COLUMNS",
    "ANALYZE_FROM",
    "MAX_BATCH_SIZE",
    "REQUIRED_COLUMNS",
    "BatchDone",
    "CardImportError",
    "Counts",
    "ImportResult",
    "cards_import",
    "default_paths",
]
