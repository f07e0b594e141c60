"""This process's keys: the stored keys unwrapped on use and looked at again now and then, what keeps them from
serving, and the making of keys (the first ones; new DEKs at the end of a cryptoperiod). See ``vault.keys``."""

import functools
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from vault.crypto import (
    KeyRing,
    KeyRingMismatch,
    KeysUnreachable,
    KeyVersionUnavailable,
    check_value,
    decode_key,
    new_key,
    parse_key_ring,
)
from vault.kek import KEK_SETTINGS, KekUnavailable, kek_provider
from vault.models import DataKey, Token

# The package's logger, whichever of its modules writes (operators filter on it).
logger = logging.getLogger("vault.keys")

# After the KEK provider failed, how long operations needing it answer 503 without asking it again (the answers'
# Retry-After is 1 s too).
KEK_RETRY_SECONDS = 1.0
# The settings this process's keys come from: a change (tests; a process never changes its settings) makes it start
# afresh, as a new process would.
KEY_SETTINGS = KEK_SETTINGS | {"VAULT_KEYS", "VAULT_FINGERPRINT_KEY", "VAULT_ACTIVE_KEY_VERSION"}
LOOK_SETTINGS = {"VAULT_KEY_CHECK_SECONDS", "VAULT_DEK_MAX_AGE_DAYS", "VAULT_DEK_MAX_USES"}

FINGERPRINT_DIFFERS = (
    "VAULT_FINGERPRINT_KEY differs from the one the data was written with: duplicate tokens would follow"
)


# ------------------------------------------------------------------------------------------------------------
# The keys of VAULT_KEYS and VAULT_FINGERPRINT_KEY, for an installation from before key custody
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LegacyKeys:
    keys: dict[int, bytes]
    fingerprint_key: bytes | None
    active_version: int | None  # VAULT_ACTIVE_KEY_VERSION

    def __bool__(self):
        return bool(self.keys or self.fingerprint_key)


@functools.cache
def legacy_keys() -> LegacyKeys:
    """``VAULT_KEYS``, ``VAULT_FINGERPRINT_KEY`` and ``VAULT_ACTIVE_KEY_VERSION``, all optional (only the move to key
    custody needs them). Malformed ones raise ImproperlyConfigured (checked at start-up: ``vault.apps``)."""
    spec, fingerprint = settings.VAULT_KEYS, settings.VAULT_FINGERPRINT_KEY
    return LegacyKeys(
        keys=dict(parse_key_ring(spec)) if spec.strip() else {},
        fingerprint_key=decode_key(fingerprint, "VAULT_FINGERPRINT_KEY") if fingerprint.strip() else None,
        active_version=settings.VAULT_ACTIVE_KEY_VERSION,
    )


# ------------------------------------------------------------------------------------------------------------
# This process's keys
# ------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Look:
    """This process's last look at the stored keys, made at ``at`` (time.monotonic()); a look that is not
    ``settled`` (it stored keys inside the caller's transaction, which may yet roll back) is made again at the next
    card operation."""

    problems: tuple[str, ...]
    at: float
    settled: bool = True


@dataclass
class _Outage:
    """The KEK provider ``provider`` failed: not asked again before ``retry_at`` (time.monotonic())."""

    provider: object
    reason: str
    retry_at: float


class _Mismatch(Exception):
    """A stored key this process cannot use as it is: ``problem`` says which and why, never any key material."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


_ring: KeyRing | None = None
_look: _Look | None = None
_outage: _Outage | None = None
_reported: set[str] = set()  # problems of lazily fetched versions already logged
_activation = threading.Lock()  # threads share the ring: which DEK it encrypts under is compared and changed at once


def key_ring() -> KeyRing:
    """The ring, for work on card data: the fingerprint key and the active DEK unwrapped, other versions unwrapped
    when first read. Looks at the stored keys on first use, then again at most every ``VAULT_KEY_CHECK_SECONDS``
    (``_look_again``). Raises KeyRingMismatch while the keys do not match the data, KeysUnreachable while a key it
    needs is not in memory and the KEK provider cannot unwrap it."""
    look = _look
    if look is None or not look.settled or time.monotonic() - look.at >= settings.VAULT_KEY_CHECK_SECONDS:
        look = _look_again()
    if look.problems:
        raise KeyRingMismatch(list(look.problems))
    return _ring


def key_ring_refresh() -> None:
    """Have this process look at the stored keys again at its next card operation (it did something to them: a new
    DEK, a migration, a retirement), rather than within ``VAULT_KEY_CHECK_SECONDS``."""
    global _look
    _look = None


def kek_outage_known() -> bool:
    """Whether this process's KEK provider failed within the last ``KEK_RETRY_SECONDS`` (card operations needing it
    answer 503 without asking it meanwhile): what the process knows of an outage, at no cost. After that the
    provider must be asked again to know."""
    outage = _outage
    return outage is not None and outage.provider is kek_provider() and time.monotonic() < outage.retry_at


def reset_custody(*, setting, **kwargs):
    """``setting_changed``: a process given other key settings starts afresh, as a new process would."""
    global _ring, _look, _outage
    if setting in KEY_SETTINGS:
        legacy_keys.cache_clear()
        _ring = _look = _outage = None
        _reported.clear()
    elif setting in LOOK_SETTINGS:
        _look = None


def _look_again() -> _Look:
    """Read the stored keys, make the first ones on an empty database, start a new DEK when the cryptoperiod of the
    active one is over, and settle the ring on them (``_settle``). Logs the problems when they appear or change, and
    once when they are gone."""
    global _look
    previous = _look
    rows = _rows()
    created = False
    if not rows:
        created = _first_keys_create()
        rows = _rows()
    problems = tuple(_settle(rows))
    # Only a process whose keys are the data's may start the next DEK (one with another KEK would wrap it under that).
    if not problems and _cryptoperiod_keep(rows):
        created = True
        problems = tuple(_settle(_rows()))
    if problems and (previous is None or previous.problems != problems):
        logger.error("card operations refused until the keys match the data: %s", "; ".join(problems))
    elif not problems and previous is not None and previous.problems:
        logger.info("the keys match the data again: card operations resume")
    # Keys stored inside the caller's transaction are trusted once they are seen committed.
    settled = not (created and transaction.get_connection().in_atomic_block)
    look = _look = _Look(problems=problems, at=time.monotonic(), settled=settled)
    return look


def _rows() -> list[DataKey]:
    return list(DataKey.objects.all())


def _settle(rows: list[DataKey], *, read_again: bool = True) -> list[str]:
    """Make the ring hold the stored fingerprint key and active DEK, keeping what it holds where the check values
    still match (a ring whose keys the rows no longer name, as after a restore, is replaced). Returns the problems
    that keep it from serving. Raises KeysUnreachable when a key it needs cannot be unwrapped and the ring has none
    to go on with.

    Rows whose newest DEK is older than the one the ring encrypts under are read again first: another thread of the
    process may have settled on a DEK stored after they were read. Read again, they are older only after a restore.
    """
    global _ring
    problems = _stored_problems(rows)
    if problems:
        return problems
    fingerprint = next((row for row in rows if row.purpose == DataKey.FINGERPRINT), None)
    live = {row.version: row for row in rows if row.purpose == DataKey.ENCRYPTION and row.retired_at is None}
    if not live:
        return ["no data encryption key is stored: run manage.py rotate_keys --new-dek"]
    active = live[max(live)]
    ring = _ring
    fingerprint_check = fingerprint.check_value if fingerprint else check_value(legacy_keys().fingerprint_key)
    if ring is not None and (
        ring.fingerprint_check_value != fingerprint_check
        or any(not _holds_key_of(ring, version, rows) for version in ring.versions)
    ):
        ring = None  # the rows name other keys than this ring's: start afresh
    if ring is not None and ring.holds(active.version) and ring.active_version == active.version:
        return []
    try:
        if ring is None:
            fingerprint_key = _key_of(fingerprint) if fingerprint else legacy_keys().fingerprint_key
            ring = KeyRing(keys=[(active.version, _key_of(active))], fingerprint_key=fingerprint_key, fetch=_fetch)
        elif not ring.holds(active.version):
            ring.hold(active.version, _key_of(active))
    except _Mismatch as mismatch:
        return [mismatch.problem]
    except KeysUnreachable:
        if _ring is None or ring is not _ring:
            raise
        # A newer DEK this process cannot unwrap yet: it goes on encrypting under the one it holds.
        return []
    with _activation:
        older = read_again and _ring is not None and active.version < _ring.active_version
        if not older:
            ring.activate(active.version)
            _ring = ring
    return _settle(_rows(), read_again=False) if older else []


def _holds_key_of(ring: KeyRing, version: int, rows: list[DataKey]) -> bool:
    """Whether what ``ring`` holds under ``version`` is what the rows say: a version they do not name yet (stored by
    another thread since they were read) contradicts nothing."""
    row = next((r for r in rows if r.purpose == DataKey.ENCRYPTION and r.version == version), None)
    return row is None or not row.check_value or row.check_value == ring.check_value(version)


def _stored_problems(rows: list[DataKey]) -> list[str]:
    """What the rows themselves say keeps this process from serving, before anything is unwrapped: keys from before
    key custody that this process has not been given, or has been given different; values stored without keys."""
    legacy = legacy_keys()
    problems = []
    if not rows and _values_stored():
        problems.append(
            "encrypted values are stored but no key is: restore the keys' table (vault_keycheck) with the data"
        )
    fingerprint = next((row for row in rows if row.purpose == DataKey.FINGERPRINT), None)
    if fingerprint is None and rows and legacy.fingerprint_key is None:
        problems.append(
            "no fingerprint key is stored for the cards and VAULT_FINGERPRINT_KEY is not set: run "
            "manage.py migrate_keys_to_kek with the VAULT_FINGERPRINT_KEY they were written with"
        )
    elif fingerprint is not None and not fingerprint.is_wrapped:
        if legacy.fingerprint_key is None:
            problems.append(
                "the fingerprint key is not wrapped under a KEK yet and VAULT_FINGERPRINT_KEY is not set: run "
                "manage.py migrate_keys_to_kek with the VAULT_FINGERPRINT_KEY the data was written with"
            )
        elif fingerprint.check_value != check_value(legacy.fingerprint_key):
            problems.append(FINGERPRINT_DIFFERS)
    for row in rows:
        if row.purpose != DataKey.ENCRYPTION or row.is_wrapped or row.retired_at is not None:
            continue
        key = legacy.keys.get(row.version)
        if key is None:
            problems.append(
                f"key version {row.version} holds data but is neither wrapped under a KEK nor in VAULT_KEYS: run "
                "manage.py migrate_keys_to_kek with the VAULT_KEYS it was written with"
            )
        elif row.check_value and row.check_value != check_value(key):
            problems.append(f"key version {row.version} in VAULT_KEYS differs from the one the data was written with")
    return problems


def _key_of(row: DataKey) -> bytes:
    """The key of ``row``: unwrapped under the KEK it names, or from VAULT_KEYS / VAULT_FINGERPRINT_KEY while it is
    not wrapped. Raises _Mismatch when that is not the key the data was written with, KeysUnreachable when the KEK
    provider cannot unwrap it now."""
    if not row.is_wrapped:
        legacy = legacy_keys()
        key = legacy.fingerprint_key if row.purpose == DataKey.FINGERPRINT else legacy.keys.get(row.version)
        if key is None or (row.check_value and row.check_value != check_value(key)):
            raise _Mismatch(f"the {row} is neither wrapped under a KEK nor the one in VAULT_KEYS")
        return key
    key = _unwrapped(row)
    if check_value(key) != row.check_value:
        raise _Mismatch(f"the {row} unwraps under {row.kek_id} to another key than the one the data was written with")
    return key


def _unwrapped(row: DataKey) -> bytes:
    """``row``'s key unwrapped by the KEK provider, which is not asked again within KEK_RETRY_SECONDS of a failure."""
    global _outage
    provider = kek_provider()
    outage = _outage
    ongoing = outage is not None and outage.provider is provider
    if ongoing and time.monotonic() < outage.retry_at:
        raise KeysUnreachable(outage.reason)
    try:
        key = provider.unwrap(row.kek_id, bytes(row.wrapped_key))
    except KekUnavailable as exc:
        if not ongoing:
            logger.error(
                "the KEK provider cannot unwrap keys (%s): card operations needing a key not in memory answer 503 "
                "until it can",
                exc,
            )
        _outage = _Outage(provider=provider, reason=str(exc), retry_at=time.monotonic() + KEK_RETRY_SECONDS)
        raise KeysUnreachable(str(exc)) from None
    except ValueError:
        raise _Mismatch(
            f"the {row} does not unwrap under {row.kek_id}: this process's KEK is not the one it was wrapped with"
        ) from None
    if ongoing:
        logger.info("the KEK provider unwraps keys again: card operations resume")
        _outage = None
    return key


def _fetch(version: int) -> bytes:
    """``KeyRing.fetch``: the key of a version the ring does not hold yet, read and unwrapped the first time a value
    under it is. Raises KeyVersionUnavailable (no such key stored), KeyRingMismatch, KeysUnreachable."""
    row = DataKey.objects.filter(purpose=DataKey.ENCRYPTION, version=version).first()
    if row is None:
        logger.error("a stored value is under key version %s, for which no key is stored", version)
        raise KeyVersionUnavailable(version)
    try:
        return _key_of(row)
    except _Mismatch as mismatch:
        if mismatch.problem not in _reported:
            _reported.add(mismatch.problem)
            logger.error("card operations under key version %s refused: %s", version, mismatch.problem)
        raise KeyRingMismatch([mismatch.problem]) from None


def keys_problems(*, every_key: bool = False) -> list[str]:
    """What keeps this process's keys from serving the values stored: one sentence each, naming versions, KEKs and
    settings, never key material; empty when all is well (nothing stored yet is no problem).

    Reads the stored keys (a table of a few rows) and unwraps the fingerprint key and the active DEK when this
    process does not hold them yet (then it does); with ``every_key`` (the system check), every key not retired, so
    that a KEK that is not the data's is found at start-up. A KEK provider out of reach is a problem here, named.
    Stores nothing. Raises DatabaseError when the database cannot be read."""
    rows = _rows()
    if not rows:
        return _stored_problems(rows)
    try:
        problems = _settle(rows)
        if every_key and not problems:
            for row in rows:
                if row.retired_at is None and row.is_wrapped and not _ring_holds(row):
                    try:
                        _ring.hold(row.version, _key_of(row))
                    except _Mismatch as mismatch:
                        problems.append(mismatch.problem)
    except KeysUnreachable as exc:
        return [f"the KEK provider cannot unwrap the keys now: {exc}"]
    return problems


def _ring_holds(row: DataKey) -> bool:
    if row.purpose == DataKey.FINGERPRINT:
        return _ring.fingerprint_check_value == row.check_value
    return _ring.holds(row.version) and _ring.check_value(row.version) == row.check_value


def keys_awaiting_migration() -> list[str]:
    """The stored keys from before key custody that ``migrate_keys_to_kek`` has yet to wrap (and that this process
    serves with from VAULT_KEYS meanwhile), by name."""
    return [
        str(row)
        for row in DataKey.objects.filter(wrapped_key__isnull=True, retired_at__isnull=True).order_by("purpose", "pk")
    ]


# ------------------------------------------------------------------------------------------------------------
# Making keys: the first ones, and new DEKs (cryptoperiods, or an operator)
# ------------------------------------------------------------------------------------------------------------
def encrypted_models() -> list:
    """Every model holding data under the key ring: those naming their ``encrypted_field``."""
    return [model for model in apps.get_models() if getattr(model, "encrypted_field", None)]


def _values_stored() -> bool:
    return any(
        model.objects.filter(**{f"{model.encrypted_field}__isnull": False}).exists() for model in encrypted_models()
    )


def _token_pk_now() -> int | None:
    """The highest token id now; None while there is no token (the next one's id is the sequence's business, and
    PostgreSQL's does not start again at 1 when a table empties)."""
    return Token.objects.aggregate(highest=Max("pk"))["highest"]


def _cards_encrypted_since(start: int | None) -> int:
    """How many tokens were made since the token id ``start`` (None: since a time there was none): the highest id
    less ``start``, or less the lowest id but one. Two lookups on the primary key's index, whatever the count."""
    ids = Token.objects.aggregate(highest=Max("pk"), lowest=Min("pk"))
    if ids["highest"] is None:
        return 0
    return ids["highest"] - (start if start is not None else ids["lowest"] - 1)


def _wrapped_row(*, purpose: str, version: int | None, key: bytes) -> DataKey:
    """A row for the new ``key``, wrapped under the current KEK (KekUnavailable → KeysUnreachable)."""
    try:
        kek_id, wrapped = kek_provider().wrap(key)
    except KekUnavailable as exc:
        raise KeysUnreachable(str(exc)) from None
    started = version is not None
    return DataKey(
        purpose=purpose,
        version=version,
        wrapped_key=wrapped,
        kek_id=kek_id,
        check_value=check_value(key),
        period_started_at=timezone.now() if started else None,
        token_pk_at_start=_token_pk_now() if started else None,
    )


def _first_keys_create() -> bool:
    """On an empty table, store a new fingerprint key and DEK 1, wrapped under the KEK; two processes doing so at
    once store one of each (INSERT … ON CONFLICT DO NOTHING on the unique constraints), and both then read the rows
    stored. Nothing when encrypted values are stored already (their keys are missing: a problem, not a new start).
    Returns whether it tried."""
    if _values_stored():
        return False
    rows = [
        _wrapped_row(purpose=DataKey.FINGERPRINT, version=None, key=new_key()),
        _wrapped_row(purpose=DataKey.ENCRYPTION, version=1, key=new_key()),
    ]
    DataKey.objects.bulk_create(rows, ignore_conflicts=True)
    logger.info("stored the first data encryption key and fingerprint key, wrapped under %s", rows[0].kek_id)
    return True


def _cryptoperiod_over(active: DataKey) -> str | None:
    """Why the cryptoperiod of the active DEK is over, or None. Keys from VAULT_KEYS not wrapped yet have none here:
    it starts once migrate_keys_to_kek has wrapped them (until then, processes of the previous release may serve).
    Nor is a DEK replaced while it is wrapped under another KEK than this process's current one (a KEK rotation
    rolling out): the new one would be wrapped under a KEK the processes not restarted yet do not hold."""
    if not active.is_wrapped or active.period_started_at is None:
        return None
    if active.kek_id != kek_provider().current_kek_id():
        return None
    if timezone.now() - active.period_started_at >= timedelta(days=settings.VAULT_DEK_MAX_AGE_DAYS):
        return f"key version {active.version} is {settings.VAULT_DEK_MAX_AGE_DAYS} days old (VAULT_DEK_MAX_AGE_DAYS)"
    uses = _cards_encrypted_since(active.token_pk_at_start)
    if uses >= settings.VAULT_DEK_MAX_USES:
        return f"key version {active.version} has encrypted {uses:,} cards (VAULT_DEK_MAX_USES)"
    return None


def _cryptoperiod_keep(rows: list[DataKey]) -> bool:
    """Start a new DEK when the active one's cryptoperiod is over (``_cryptoperiod_over``). Returns whether it
    stored one (this process or another: the constraint lets one through)."""
    live = [row for row in rows if row.purpose == DataKey.ENCRYPTION and row.retired_at is None]
    if not live:
        return False
    reason = _cryptoperiod_over(max(live, key=lambda row: row.version))
    if reason is None:
        return False
    try:
        _dek_store(rows=rows, reason=reason, actor=SYSTEM)
    except KeysUnreachable as exc:
        logger.warning("a new data encryption key is due (%s) but cannot be wrapped now: %s", reason, exc)
        return False
    return True


def _dek_store(*, rows: list[DataKey], reason: str, actor: Actor) -> int:
    """Store a new DEK under the version after every one ``rows`` hold; returns the version stored, by this call or
    by a concurrent one that took the same version first (then this one stored nothing, and audits nothing)."""
    version = max((row.version for row in rows if row.purpose == DataKey.ENCRYPTION), default=0) + 1
    row = _wrapped_row(purpose=DataKey.ENCRYPTION, version=version, key=new_key())
    DataKey.objects.bulk_create([row], ignore_conflicts=True)
    if DataKey.objects.filter(purpose=DataKey.ENCRYPTION, version=version, check_value=row.check_value).exists():
        logger.info("started data encryption key version %s: %s", version, reason)
        audit_record(
            actor=actor, action="keys.dek.create", detail={"version": version, "reason": reason, "kek": row.kek_id}
        )
    return version


def dek_create(*, actor: Actor, reason: str = "started by an operator") -> int:
    """Start a new DEK now: stored wrapped under the current KEK, under the next version, it is the active one for
    every process from its next look at the keys (this one at once). Audited (``keys.dek.create``). Returns its
    version; two calls at once store one DEK, and both return its version. The values under older versions stay
    there until ``keys_rotate`` moves them. Refuses, storing nothing, while this process's keys do not match the
    data (KeyRingMismatch: a DEK wrapped under a KEK that is not the data's would be one no other process reads),
    and raises KeysUnreachable when the KEK provider cannot wrap it."""
    key_ring()
    version = _dek_store(rows=_rows(), reason=reason, actor=actor)
    key_ring_refresh()
    return version
