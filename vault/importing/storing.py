"""Storing prepared batches, each in one transaction: the batch's namespaces found or created and locked (the lock
``card_tokenize`` takes for the namespace card limit), the cards the vault holds already looked up, then the new
tokens and their ``token.created`` events written at once (``writers``), and the outbox told
(``notifications.services.events_stored``: the dispatcher makes their deliveries once the batch commits).

Identity is the API's: (merchant, card, namespace). A card already in the vault, or met earlier in the file, maps to
the existing token and its stored details are kept, as the API keeps them on a conflict (the import counts such
rows; it opens no conflict). A migration's cards are new, and looking a batch up costs a fifth of the import, so the
lookup is skipped while batches without namespaces meet no card the vault holds: the unique constraints refuse a
batch holding one, which rolls back whole and is stored again with its lookup.

On PostgreSQL two threads store two batches at once, each on a connection of its own (``Storing``).
"""

import functools
import queue
import threading
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Count
from django.utils import timezone

from merchants.models import Merchant
from notifications.models import Event
from notifications.services import events_stored
from vault import rules
from vault.importing import writers
from vault.importing.checking import Reject, Row
from vault.importing.results import Counts
from vault.models import Namespace, Token
from vault.services.tokenize import billing_address_differs, card_data_destroy

STORING_CONNECTIONS = 2
# Each retry follows the commit of the batch it collided with; a file repeating its cards batch after batch can make
# a batch collide with each newer batch stored beside it, so a few more tries than one collision needs.
STORE_ATTEMPTS = 5
DEADLOCK_DETECTED = "40P01"  # PostgreSQL's SQLSTATE


@dataclass
class Batch:
    """Rows read together: stored in one transaction, then written out and checkpointed together."""

    rows: list[Row]
    rejects: list[Reject]
    read: int  # rows read, valid or not
    offset: int  # where the file resumes after this batch
    line: int
    cards: set[str] = field(init=False)  # its rows' fingerprints
    namespaces: set[str] = field(init=False)

    def __post_init__(self):
        self.cards = {row.token["fingerprint"] for row in self.rows}
        self.namespaces = {row.namespace for row in self.rows if row.namespace is not None}

    def overlaps(self, other: "Batch") -> bool:
        """Whether storing this batch and ``other`` at once could let the later one in the file decide for the
        earlier (hold one card's details, or take a namespace's room)."""
        return not (self.cards.isdisjoint(other.cards) and self.namespaces.isdisjoint(other.namespaces))


@dataclass
class Stored:
    """What storing a batch gave."""

    counts: Counts
    mapped: list[tuple[str, str, str]]  # (externalReference, tokenId, href), in the batch's order
    refused: list[Reject]  # rows the namespace limit refused
    looked_up: bool


@dataclass(slots=True)
class Held:
    """A live token holding a card of the batch: in the vault already, or new in this batch."""

    token_id: str
    href: str
    holder: str
    month: int | None
    year: int | None
    address: dict | None


class Store:
    def __init__(self, *, merchant: Merchant, namespace_column: str | None):
        self.merchant = merchant
        self.namespace_column = namespace_column
        self.base_url = settings.PUBLIC_BASE_URL.rstrip("/")
        self.writer = writers.for_this_database()
        self.look_up = False  # look the next batch's cards up before inserting them

    def batch(self, rows: list[Row]) -> Stored:
        """Store one batch in one transaction (see the module docstring). A batch whose insert a unique constraint
        refuses, or that deadlocks with the batch stored beside it, rolls back whole and is stored again with its
        lookup, which then finds the tokens it collided with."""
        if not rows:
            return Stored(Counts(), [], [], looked_up=False)
        for attempt in range(STORE_ATTEMPTS):
            look_up = self.look_up or attempt > 0
            try:
                with transaction.atomic():
                    stored, found = self._store(rows, look_up=look_up)
            except DatabaseError as exc:
                deadlock = getattr(exc.__cause__, "sqlstate", None) == DEADLOCK_DETECTED
                if attempt == STORE_ATTEMPTS - 1 or not (isinstance(exc, IntegrityError) or deadlock):
                    raise
                continue
            self.look_up = found
            return stored
        raise AssertionError("unreachable")

    def _store(self, rows: list[Row], *, look_up: bool) -> tuple[Stored, bool]:
        """Store ``rows``, after looking their cards up when ``look_up``; returns what ``batch`` returns, and
        whether the lookup found any of them."""
        now = timezone.now()
        namespaces = self._namespaces({row.namespace for row in rows if row.namespace is not None})
        # The namespace limit must know which cards a namespace holds already: a batch with namespaces is looked up.
        looked_up = look_up or bool(namespaces)
        held = self._held(rows, namespaces, now) if looked_up else {}
        found = bool(held)
        room = self._room(namespaces, now)
        stored = Stored(Counts(), [], [], looked_up=looked_up)
        counts, tokens, events = stored.counts, [], []
        for row in rows:
            token = row.token
            namespace = None if row.namespace is None else namespaces[row.namespace]
            key = (token["fingerprint"], None if namespace is None else namespace.pk)
            holder = held.get(key)
            if holder is not None:
                counts.reused += 1
                if (
                    row.holder != holder.holder
                    or row.month != holder.month
                    or row.year != holder.year
                    or billing_address_differs(row.address, holder.address)
                ):
                    counts.differing += 1
                stored.mapped.append((row.reference, holder.token_id, holder.href))
                continue
            if namespace is not None:
                try:
                    rules.namespace_has_room(room[namespace.pk])
                except rules.RuleBroken as broken:
                    stored.refused.append(
                        Reject(row.line, row.reference, [(self.namespace_column, broken.name, broken.message)])
                    )
                    continue
                room[namespace.pk] += 1
                token["namespace_id"] = namespace.pk
            href = f"{self.base_url}/tokens/{token['reference']}"
            held[key] = Held(token["token_id"], href, row.holder, row.month, row.year, row.address)
            tokens.append(token)
            events.append(row.event)
            counts.imported += 1
            stored.mapped.append((row.reference, token["token_id"], href))
        self.writer.write(Token, tokens)
        self.writer.write(Event, events)
        if events:
            events_stored(merchant_id=self.merchant.pk)
        return stored, found

    def _namespaces(self, names: set[str]) -> dict[str, Namespace]:
        """The batch's namespaces by name, created when new, locked (in pk order) as ``card_tokenize`` locks them."""
        if not names:
            return {}
        mine = Namespace.objects.filter(merchant=self.merchant, name__in=names)
        found = {namespace.name: namespace for namespace in mine}
        new = names - found.keys()
        if new:
            Namespace.objects.bulk_create(
                [Namespace(merchant=self.merchant, name=name) for name in new], ignore_conflicts=True
            )
        return {namespace.name: namespace for namespace in mine.select_for_update().order_by("pk")}

    def _held(self, rows: list[Row], namespaces: dict[str, Namespace], now) -> dict[tuple[str, int | None], Held]:
        """Live tokens of the merchant holding the batch's cards, by (fingerprint, namespace), in one query: one arm
        for cards without a namespace, one for the batch's namespaces, each matching one of the partial unique
        indexes. An expired token is destroyed, as ``card_tokenize`` does, and its card gets a new one."""
        live = Token.objects.filter(merchant=self.merchant, deleted_at__isnull=True).order_by()
        columns = (
            "pk",
            "fingerprint",
            "namespace_id",
            "token_id",
            "reference",
            "card_holder_name",
            "expiry_month",
            "expiry_year",
            "billing_address",
            "expires_at",
        )
        arms = []
        plain = {row.token["fingerprint"] for row in rows if row.namespace is None}
        if plain:
            arms.append(live.filter(namespace__isnull=True, fingerprint__in=plain).values_list(*columns))
        spaced = {row.token["fingerprint"] for row in rows if row.namespace is not None}
        if spaced:
            ids = [namespace.pk for namespace in namespaces.values()]
            arms.append(live.filter(namespace_id__in=ids, fingerprint__in=spaced).values_list(*columns))
        found = arms[0].union(*arms[1:], all=True) if len(arms) > 1 else arms[0]
        if connection.vendor == "postgresql":
            # With PostgreSQL's default cost of a random page (4, for spinning disks) the planner prices thousands
            # of index probes above a scan of every token, and a batch's lookup grows with the vault; at the cost
            # of SSDs it probes the index. For this transaction only.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL random_page_cost = 1.1")
        held, expired = {}, []
        for pk, fingerprint, namespace_id, token_id, reference, holder, month, year, address, expires_at in found:
            if expires_at <= now:
                expired.append(pk)
            else:
                held[(fingerprint, namespace_id)] = Held(
                    token_id, f"{self.base_url}/tokens/{reference}", holder, month, year, address
                )
        for token in Token.objects.select_related("merchant", "namespace").filter(pk__in=expired):
            card_data_destroy(token, reason="expired")
        return held

    def _room(self, namespaces: dict[str, Namespace], now) -> Counter:
        """Live cards in each of the batch's namespaces, counted as ``card_tokenize`` counts them."""
        if not namespaces:
            return Counter()
        return Counter(
            dict(
                Token.objects.filter(namespace__in=namespaces.values(), deleted_at__isnull=True, expires_at__gt=now)
                .values("namespace_id")
                .annotate(n=Count("pk"))
                .values_list("namespace_id", "n")
            )
        )


def refresh_statistics() -> None:
    """Tell PostgreSQL's planner how many tokens each merchant holds now (see the package docstring).

    The whole table, indexes included: analysing the merchant column alone left the planner reading a merchant's
    every entry of the card index for each batch. Not ``SKIP_LOCKED``: autovacuum is often at work on the table
    during a large import and would make every refresh a no-op; it gives way to the ``ANALYZE`` within a second.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {connection.ops.quote_name(Token._meta.db_table)}")


_END = object()


class Storing:
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
        self._store = functools.partial(Store, merchant=merchant, namespace_column=namespace_column)
        parallel = connection.vendor == "postgresql" and not connection.in_atomic_block
        self.at_once = STORING_CONNECTIONS if parallel else 1
        self._inline = None if parallel else self._store()
        self._todo: queue.Queue = queue.Queue()
        self._results: dict[int, Stored | BaseException] = {}
        self._stored = threading.Condition()
        self._submitted = self._returned = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"import_cards storing {n}", daemon=True)
            for n in range(self.at_once if parallel else 0)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: Batch) -> None:
        if self._inline is not None:
            self._results[self._submitted] = self._inline.batch(batch.rows)
        else:
            self._todo.put((self._submitted, batch))
        self._submitted += 1

    def result(self) -> Stored:
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
                except BaseException as exc:  # noqa: BLE001 - handed to the calling thread, which raises it
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
