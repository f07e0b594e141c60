"""Key custody: the card keys against the data they wrote (check values), and rotation.

``key_ring()`` hands out the configured ring (``vault.crypto``) only while its keys match the check values stored with
the data; ``keys_rotate`` re-encrypts every card to the active version, and ``key_versions_retire`` says which
versions may then leave the ring.
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import SYSTEM, Actor, audit_record
from vault import selectors
from vault.crypto import KeyRing, KeyRingMismatch, configured_key_ring
from vault.models import KeyCheck

logger = logging.getLogger(__name__)


def key_ring() -> KeyRing:
    """The ring, for work on card data: only while its keys match those the data was written with.

    Checked against the check values stored with the data on first use in a process, then again at most every
    ``VAULT_KEY_CHECK_SECONDS``; raises KeyRingMismatch meanwhile (see ``keys_verify``, which also
    records the check values of keys used for the first time).
    """
    ring = configured_key_ring()
    keys_verify(ring=ring)
    return ring


@dataclass(frozen=True)
class _KeysVerdict:
    """This process's last check of ``ring`` against the data, made at ``checked_at`` (time.monotonic()); a verdict
    that is not ``settled`` is checked again at the next card operation."""

    ring: KeyRing
    problems: tuple[str, ...]
    checked_at: float
    settled: bool = True


_keys_verdict: _KeysVerdict | None = None


def keys_verify(*, ring: KeyRing) -> None:
    """Refuse card work while ``ring`` does not match the keys the data was written with (``key_ring``
    calls this before handing the ring out).

    Asks ``selectors.key_ring_problems`` on the process's first card operation and then at most every
    ``VAULT_KEY_CHECK_SECONDS`` (a couple of queries on a table of a few rows). When all is well, records the check
    values that are new (``key_checks_record``) and asks again: of two processes recording different keys at once,
    one wins and the other sees the difference. Logs one error line when the problems appear or change (not one per
    request), and raises KeyRingMismatch while there are any.
    """
    global _keys_verdict
    verdict = _keys_verdict
    now = time.monotonic()
    if (
        verdict is None
        or verdict.ring is not ring
        or not verdict.settled
        or now - verdict.checked_at >= settings.VAULT_KEY_CHECK_SECONDS
    ):
        problems = selectors.key_ring_problems()
        recorded = not problems and key_checks_record(ring=ring)
        if recorded:
            problems = selectors.key_ring_problems()
        if problems and (verdict is None or verdict.problems != tuple(problems)):
            logger.error("card operations refused until the keys match the data: %s", "; ".join(problems))
        elif not problems and verdict is not None and verdict.ring is ring and verdict.problems:
            logger.info("the keys match the data again: card operations resume")
        # A record written inside the caller's transaction is trusted once it is seen committed.
        settled = not (recorded and transaction.get_connection().in_atomic_block)
        verdict = _keys_verdict = _KeysVerdict(ring=ring, problems=tuple(problems), checked_at=now, settled=settled)
    if verdict.problems:
        raise KeyRingMismatch(list(verdict.problems))


def _forget_keys_verdict() -> None:
    global _keys_verdict
    _keys_verdict = None


def key_checks_record(*, ring: KeyRing) -> bool:
    """Store with the data the check values of the keys ``ring`` uses on it where none is stored yet: the
    fingerprint key's, the active version's (its first use as the active one; a retired version made active again is
    live again), and those of versions in the ring found holding data without one (migration 0005). Returns whether
    it wrote anything.

    Never changes a stored value: a difference is a problem to report (``selectors.key_ring_problems``), not one to
    paper over; ``keys_verify`` calls this only when there is none. Concurrent calls store one row each (the unique
    constraints, with INSERT … ON CONFLICT DO NOTHING).
    """
    recorded = list(KeyCheck.objects.all())
    encryption = {check.version: check for check in recorded if check.purpose == KeyCheck.ENCRYPTION}
    new = []
    if not any(check.purpose == KeyCheck.FINGERPRINT for check in recorded):
        new.append(KeyCheck(purpose=KeyCheck.FINGERPRINT, check_value=ring.fingerprint_check_value))
    if ring.active_version not in encryption:
        new.append(
            KeyCheck(
                purpose=KeyCheck.ENCRYPTION,
                version=ring.active_version,
                check_value=ring.check_value(ring.active_version),
            )
        )
    wrote = False
    with transaction.atomic():
        if new:
            KeyCheck.objects.bulk_create(new, ignore_conflicts=True)
            wrote = True
        active = encryption.get(ring.active_version)
        if active is not None and active.retired_at is not None:
            wrote |= bool(KeyCheck.objects.filter(pk=active.pk).update(retired_at=None))
        for version, check in encryption.items():
            if not check.check_value and version in ring.versions:
                wrote |= bool(
                    KeyCheck.objects.filter(pk=check.pk, check_value="").update(check_value=ring.check_value(version))
                )
    return wrote


def key_versions_retire(*, active: int) -> list[int]:
    """Mark retired every recorded key version but ``active`` that no encrypted value is under any more, and return
    them: such a version may leave the ring (its key stays with the backups made under it).

    Looks each candidate up in every encrypted table, a scan where none is left: ``rotate_keys``'s business, never a
    request's. A process still using a retired version as its active one makes it live again at its next check.
    """
    retired = []
    for check in KeyCheck.objects.filter(purpose=KeyCheck.ENCRYPTION, retired_at__isnull=True).exclude(version=active):
        in_use = any(
            model.objects.filter(key_version=check.version, **{f"{model.encrypted_field}__isnull": False}).exists()
            for model in encrypted_models()
        )
        if not in_use:
            KeyCheck.objects.filter(pk=check.pk, retired_at__isnull=True).update(retired_at=timezone.now())
            retired.append(check.version)
    if retired:
        _forget_keys_verdict()
    return retired


def encrypted_models() -> list:
    """Every model holding data under the key ring: those naming their ``encrypted_field``."""
    return [model for model in apps.get_models() if getattr(model, "encrypted_field", None)]


@dataclass(frozen=True)
class Rotation:
    rotated: int  # values re-encrypted
    retired: list[int]  # key versions no value is under any more (they may leave VAULT_KEYS)


def keys_rotate(
    *, batch_size: int = 500, on_batch: Callable[[int], None] | None = None, actor: Actor = SYSTEM
) -> Rotation:
    """Re-encrypt every encrypted column (card numbers, network token numbers, cards awaiting an async request)
    under the active key version, then retire the versions no value is left under (``key_versions_retire``).

    Works in batches of ``batch_size`` rows, each its own transaction holding row locks only on its batch, so the
    API keeps serving and an interrupted run loses nothing: a rerun picks up the rows still on other versions.
    Versions that hold nothing are retired first too, so a version recorded but never used (activated on one server,
    then not) cannot stop the run. Raises KeyRingMismatch, having changed nothing, while the keys do not match the
    data, and KeyVersionUnavailable when a value is under a version the ring lacks.
    """
    retired = key_versions_retire(active=configured_key_ring().active_version)
    ring = key_ring()
    active = ring.active_version
    rotated = 0
    audit_record(actor=actor, action="keys.rotate.start", detail={"to_version": active})
    for model in encrypted_models():
        field = model.encrypted_field
        last_pk = 0
        while True:
            with transaction.atomic():
                batch = list(
                    model.objects.select_for_update(of=("self",))
                    .filter(pk__gt=last_pk, **{f"{field}__isnull": False})
                    .exclude(key_version=active)
                    .order_by("pk")[:batch_size]
                )
                for row in batch:
                    aad = row.associated_data()
                    plain = ring.decrypt(row.key_version, getattr(row, field), associated_data=aad)
                    row.key_version, ciphertext = ring.encrypt(plain, associated_data=aad)
                    setattr(row, field, ciphertext)
                model.objects.bulk_update(batch, ["key_version", field])
            if not batch:
                break
            last_pk = batch[-1].pk
            rotated += len(batch)
            if on_batch:
                on_batch(len(batch))
    retired += key_versions_retire(active=active)
    audit_record(
        actor=actor,
        action="keys.rotate.finish",
        detail={"to_version": active, "rows": rotated, "retired_versions": retired},
    )
    return Rotation(rotated=rotated, retired=retired)
